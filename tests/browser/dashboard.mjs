#!/usr/bin/env node
// Real-browser test of the admin dashboard: loads GET /admin in Debian's headless Chromium
// (driven by playwright-core, no browser download), waits for the data to render, and checks
// that the numbers shown match GET /admin/metrics and GET /admin/spend fetched directly. Also
// checks the page logs no console errors and makes no failed requests, that the charts drew,
// and that the token prompt appears on a 401 and then sends `Authorization: Bearer`.
//
//   node tests/browser/dashboard.mjs BASE_URL SCREENSHOT.png [--allow-empty]
//
// Exit 0 when everything matches, 1 on a mismatch (each one listed), 2 on a setup problem.
// Setup: apt-get install -y --no-install-recommends chromium && npm ci --prefix tests/browser

import { existsSync, mkdirSync } from "node:fs";
import { dirname, resolve } from "node:path";

const CHROMIUM = process.env.BITROUTER_CHROMIUM || "/usr/bin/chromium";
const SETUP =
  "DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium && npm ci --prefix tests/browser";
const LAUNCH_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

const args = process.argv.slice(2);
const allowEmpty = args.includes("--allow-empty");
const [base, shotPath] = args.filter((a) => !a.startsWith("--"));
if (!base || !shotPath) {
  console.error("usage: node tests/browser/dashboard.mjs BASE_URL SCREENSHOT.png [--allow-empty]");
  process.exit(2);
}
const origin = base.replace(/\/+$/, "");
// A hung browser must not hang the caller: give up after 120 s whatever happens.
setTimeout(() => {
  console.error("FAIL: the browser test did not finish within 120 s");
  process.exit(3);
}, 120000).unref();

function setupFail(msg) {
  console.error(`SETUP: ${msg}\n  run: ${SETUP}`);
  process.exit(2);
}

let chromium;
try {
  ({ chromium } = await import("playwright-core"));
} catch (e) {
  setupFail(`playwright-core is not installed in tests/browser/node_modules (${e.code || e.message})`);
}
if (!existsSync(CHROMIUM)) setupFail(`no Chromium at ${CHROMIUM}`);

const problems = [];
const fail = (msg) => problems.push(msg);
const log = (msg) => console.log(msg);

// The same formatting the page uses, to compare what a person sees with the JSON.
const num = (text) => (text === null || text === "" || text === "—" ? null : Number(text.replace(/[,$%\s]/g, "")));
const pct = (r) => (r * 100).toFixed(2) + "%";

async function getJson(path) {
  const r = await fetch(origin + path, { headers: { accept: "application/json" } });
  if (!r.ok) throw new Error(`${path} answered ${r.status}: ${await r.text()}`);
  return r.json();
}

const browser = await chromium.launch({ executablePath: CHROMIUM, args: LAUNCH_ARGS, timeout: 30000 });
let exitCode = 0;
try {
  const context = await browser.newContext({ viewport: { width: 1440, height: 1000 }, deviceScaleFactor: 1 });
  const page = await context.newPage();
  const consoleErrors = [];
  const badRequests = [];
  page.on("console", (m) => {
    if (m.type() === "error") consoleErrors.push(`${m.text()} (${m.location()?.url || "?"})`);
  });
  page.on("pageerror", (e) => consoleErrors.push(`uncaught: ${e.message}`));
  page.on("requestfailed", (r) => badRequests.push(`${r.method()} ${r.url()}: ${r.failure()?.errorText}`));
  page.on("response", (r) => {
    if (r.status() >= 400) badRequests.push(`${r.request().method()} ${r.url()}: HTTP ${r.status()}`);
  });

  // ---- load ------------------------------------------------------------------------------------
  const resp = await page.goto(origin + "/admin", { waitUntil: "load", timeout: 30000 });
  if (!resp || resp.status() !== 200) fail(`GET /admin answered ${resp?.status()}`);
  const headers = resp ? await resp.allHeaders() : {};
  if (!(headers["content-type"] || "").startsWith("text/html")) fail(`GET /admin content-type ${headers["content-type"]}`);
  if (!headers["content-security-policy"]) fail("GET /admin has no content-security-policy header");
  try {
    await page.waitForFunction(
      () => document.body.dataset.state === "ready" && Number(document.body.dataset.refreshes) >= 2,
      null,
      { timeout: 30000 },
    );
  } catch {
    const state = await page.evaluate(() => ({ state: document.body.dataset.state, refreshes: document.body.dataset.refreshes, error: document.getElementById("error-banner").textContent }));
    throw new Error(`the dashboard never rendered its data: ${JSON.stringify(state)}`);
  }
  log(`loaded ${origin}/admin (${await page.evaluate(() => document.getElementById("version").textContent)})`);

  // Expand every route so its endpoint rows show.
  for (const t of await page.locator('tr.route button.toggle:not([disabled])').all()) await t.click();

  // ---- compare with the JSON endpoints ---------------------------------------------------------
  const readPage = () => page.evaluate(() => {
    const q = (id) => {
      const e = document.querySelector(`[data-testid="${CSS.escape(id)}"]`);
      return e ? { text: e.textContent.trim(), value: e.dataset.value ?? null, visible: !!e.offsetParent } : null;
    };
    const ids = [...document.querySelectorAll("[data-testid]")].map((e) => e.dataset.testid);
    const out = {};
    for (const id of ids) out[id] = q(id);
    out.__routes = [...document.querySelectorAll("tr.route")].map((r) => r.dataset.route);
    out.__since = document.getElementById("spend-total-usd").dataset.since;
    out.__guardrails = document.getElementById("guardrails").textContent.trim();
    out.__chartPoints = Number(document.getElementById("chart-rate").dataset.points || 0);
    return out;
  });

  function compare(m, spend, shown) {
    const errs = [];
    const expectNum = (id, want) => {
      const s = shown[id];
      if (!s) return errs.push(`${id}: not on the page (want ${want})`);
      if (num(s.text) !== want) errs.push(`${id}: page shows ${JSON.stringify(s.text)}, JSON says ${want}`);
    };
    expectNum("total-requests", m.requests);
    expectNum("total-errors", m.errors);
    expectNum("in-flight", m.in_flight);
    if (shown["error-rate"]?.text !== pct(m.error_rate)) errs.push(`error-rate: page shows ${shown["error-rate"]?.text}, JSON says ${pct(m.error_rate)}`);
    const routes = Object.keys(m.routes || {});
    if (shown.__routes.length !== routes.length || routes.some((r) => !shown.__routes.includes(r))) {
      errs.push(`routes: page lists ${JSON.stringify(shown.__routes)}, JSON has ${JSON.stringify(routes)}`);
    }
    for (const [r, s] of Object.entries(m.routes || {})) {
      expectNum(`route-requests-${r}`, s.requests);
      expectNum(`route-errors-${r}`, s.errors);
      if (shown[`route-error-rate-${r}`]?.text !== pct(s.error_rate)) errs.push(`route-error-rate-${r}: page shows ${shown[`route-error-rate-${r}`]?.text}, JSON says ${pct(s.error_rate)}`);
      for (const [ep, e] of Object.entries(s.endpoints || {})) {
        expectNum(`endpoint-requests-${r}/${ep}`, e.requests);
        expectNum(`endpoint-errors-${r}/${ep}`, e.errors);
        if (!shown[`endpoint-row-${r}/${ep}`]?.visible) errs.push(`endpoint-row-${r}/${ep}: not visible after expanding ${r}`);
        if (e.errors > 0 && !shown[`failing-${r}/${ep}`]) errs.push(`failing-${r}/${ep}: endpoint with ${e.errors} errors missing from the failures panel`);
      }
    }
    const routed = Object.values(m.routes || {}).reduce((a, s) => a + s.requests, 0);
    if (m.requests > routed) expectNum("unrouted-requests", m.requests - routed);
    // Spend: the page's window (`since`) and the same query made directly.
    const total = spend.account.total;
    const t = shown["spend-total-usd"];
    if (!t || t.value !== total.cost_usd) errs.push(`spend-total-usd: page holds ${t?.value}, JSON says ${total.cost_usd}`);
    if (!t || num(t.text) !== Number(total.cost_usd)) errs.push(`spend-total-usd: page shows ${t?.text}, JSON says ${total.cost_usd} USD`);
    expectNum("spend-total-requests", total.requests);
    for (const g of ["account", "model", "provider"]) {
      for (const row of spend[g].groups) {
        const key = row.key ?? "(none)";
        expectNum(`spend-${g}-requests-${key}`, row.requests);
        const c = shown[`spend-${g}-cost-${key}`];
        if (!c || c.value !== row.cost_usd || num(c.text) !== Number(row.cost_usd)) {
          errs.push(`spend-${g}-cost-${key}: page shows ${c?.text} (${c?.value}), JSON says ${row.cost_usd}`);
        }
      }
    }
    const patterns = m.guardrails?.enabled ? Object.entries(m.guardrails.patterns || {}) : [];
    if (!patterns.length && !shown.__guardrails.includes("guardrail")) errs.push(`guardrails panel: ${JSON.stringify(shown.__guardrails)}`);
    for (const [p, v] of patterns) {
      expectNum(`guardrail-block-${p}`, v.findings.block);
      expectNum(`guardrail-redact-${p}`, v.findings.redact);
      expectNum(`guardrail-warn-${p}`, v.findings.warn);
      expectNum(`guardrail-failures-${p}`, v.plugin_failures);
    }
    if (shown.__chartPoints < 2) errs.push(`charts: only ${shown.__chartPoints} samples after 2 refreshes`);
    return errs;
  }

  let errs = [];
  let m, spend, shown;
  const deadline = Date.now() + 25000; // the page refreshes metrics every 2 s and spend every 10 s
  for (;;) {
    shown = await readPage();
    const since = shown.__since ? `&since=${encodeURIComponent(shown.__since)}` : "";
    m = await getJson("/admin/metrics");
    spend = {};
    for (const g of ["account", "model", "provider"]) spend[g] = await getJson(`/admin/spend?group_by=${g}${since}`);
    errs = compare(m, spend, shown);
    if (!errs.length || Date.now() > deadline) break;
    await page.waitForTimeout(1000);
  }
  if (!allowEmpty && !(m.requests > 0)) errs.push("the gateway has served no requests: nothing to compare (pass --allow-empty to accept that)");
  errs.forEach(fail);

  // The charts drew something: some non-background pixels on each canvas.
  for (const id of ["chart-rate", "chart-errors", "chart-latency"]) {
    const inked = await page.evaluate((id) => {
      const c = document.getElementById(id);
      const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
      let n = 0;
      for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
      return n;
    }, id);
    if (inked < 200) fail(`${id}: the canvas is (nearly) blank (${inked} pixels drawn)`);
  }

  mkdirSync(dirname(resolve(shotPath)), { recursive: true });
  await page.screenshot({ path: shotPath, fullPage: true });
  log(`screenshot: ${resolve(shotPath)}`);

  for (const e of consoleErrors) fail(`console error: ${e}`);
  for (const r of badRequests) fail(`failed request: ${r}`);

  // ---- auth: a 401 shows the token field; the token is kept and sent as a bearer token ---------
  {
    const ctx = await browser.newContext();
    const p = await ctx.newPage();
    const seen = [];
    await p.route(/\/admin\/(metrics|spend)/, (route) => {
      const auth = route.request().headers().authorization || "";
      seen.push(auth);
      if (auth === "Bearer test-admin-token") return route.continue();
      return route.fulfill({
        status: 401,
        contentType: "application/json",
        body: JSON.stringify({ error: { message: "admin token required", type: "authentication_error" } }),
      });
    });
    await p.goto(origin + "/admin");
    const field = p.getByTestId("auth-token");
    try {
      await field.waitFor({ state: "visible", timeout: 20000 });
      await field.fill("test-admin-token");
      await p.getByTestId("auth-save").click();
      await p.waitForFunction(() => document.body.dataset.state === "ready", null, { timeout: 20000 });
      const stored = await p.evaluate(() => sessionStorage.getItem("bitrouter.admin.token"));
      if (stored !== "test-admin-token") fail(`auth: sessionStorage holds ${JSON.stringify(stored)}`);
      if (!(await p.getByTestId("auth-panel").isHidden())) fail("auth: the token panel stays open after a good token");
      if (!seen.includes("Bearer test-admin-token")) fail(`auth: no request carried the bearer token (${JSON.stringify(seen)})`);
      // A reload in the same tab keeps the token: no prompt.
      await p.reload();
      await p.waitForFunction(() => document.body.dataset.state === "ready", null, { timeout: 20000 });
      if (!(await p.getByTestId("auth-panel").isHidden())) fail("auth: the token was not kept across a reload");
      log("auth: 401 → token field → bearer token sent and kept in sessionStorage");
    } catch (e) {
      fail(`auth flow: ${e.message.split("\n")[0]}`);
    }
    await ctx.close();
  }

  const routes = Object.keys(m.routes || {});
  log(`compared: ${m.requests} requests, ${m.errors} errors, ${routes.length} routes (${routes.join(", ")}), spend ${spend.account.total.cost_usd} USD over ${spend.account.total.requests} ledger rows`);
} catch (e) {
  fail(`the browser test crashed: ${e.stack || e}`);
} finally {
  await browser.close();
}

if (problems.length) {
  console.error(`FAIL: the dashboard disagrees with the gateway or misbehaved (${problems.length} problem${problems.length === 1 ? "" : "s"}):`);
  for (const p of problems) console.error("  - " + p);
  exitCode = 1;
} else {
  console.log("OK: the dashboard shows what /admin/metrics and /admin/spend say");
}
process.exit(exitCode);
