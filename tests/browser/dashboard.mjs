#!/usr/bin/env node
// Real-browser test of the admin dashboard: loads GET /admin in Debian's headless Chromium
// (driven by playwright-core, no browser download), waits for the data to render, and checks
// that the numbers shown match GET /admin/metrics and GET /admin/spend fetched directly. Also
// checks the page logs no console errors and makes no failed requests, that the charts drew,
// and that the token prompt appears on a 401 and then sends `Authorization: Bearer`. The
// Plugins, Policies and Updates panels are compared with GET /admin/plugins, and a made-up
// /admin/plugins document (a pulled plugin, a policy from the cache, a failed update, markup
// in every string) checks what the panels show for states a test gateway rarely reaches.
//
//   node tests/browser/dashboard.mjs BASE_URL SCREENSHOT.png [--allow-empty] [--plugins-only]
//
// --plugins-only checks the page's plugin panels only (a gateway that served nothing).
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
const pluginsOnly = args.includes("--plugins-only");
const [base, shotPath] = args.filter((a) => !a.startsWith("--"));
if (!base || !shotPath) {
  console.error("usage: node tests/browser/dashboard.mjs BASE_URL SCREENSHOT.png [--allow-empty] [--plugins-only]");
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

// ---- the plugin panels against an /admin/plugins document ------------------------------------
// The page's rules, restated: the digest is the one in `…@sha256:<hex>` when the reference has
// one, else the component's sha256; a built-in plugin's path is `builtin:<id>`.
const digestOf = (ref, sha256) => {
  const m = /@sha256:([0-9a-f]+)/i.exec(ref || "");
  return m ? m[1] : String(sha256 || "").replace(/^sha256:/, "");
};
const NOT_CHECKED = "no followed OCI tags / not checked yet";

function comparePlugins(doc, shown) {
  const errs = [];
  // `got` defaults to the element's text; pass its data-value to compare the raw value.
  const same = (id, want, got = shown[id]?.text) => {
    if (!shown[id]) errs.push(`${id}: not on the page (want ${JSON.stringify(want)})`);
    else if (got !== want) errs.push(`${id}: page shows ${JSON.stringify(got)}, /admin/plugins says ${JSON.stringify(want)}`);
  };
  const signer = (id, key, scope) => {
    same(id, key ? `${key.slice(0, 16)}… scope ${scope}` : "—");
    same(id, key ?? "", shown[id]?.value);
  };
  const digest = (id, hex) => {
    same(id, hex ? hex.slice(0, 12) : "—");
    same(id, hex, shown[id]?.value);
  };
  const loaded = (id, ms) => {
    same(id, String(ms), shown[id]?.value);
    same(id, shown[id]?.local);
  };
  const list = (what, shownIds, ids) => {
    if (JSON.stringify(shownIds) !== JSON.stringify(ids)) errs.push(`${what}: page lists ${JSON.stringify(shownIds)}, /admin/plugins has ${JSON.stringify(ids)}`);
  };

  list("plugins", shown.__pluginRows, (doc.plugins || []).map((p) => p.id));
  for (const p of doc.plugins || []) {
    const t = (what) => `plugin-${what}-${p.id}`;
    const builtin = !p.origin && String(p.path).startsWith("builtin:");
    same(t("source"), p.origin || (builtin ? "built-in" : p.path));
    digest(t("digest"), digestOf(p.origin, p.sha256));
    same(t("version"), p.version);
    signer(t("signer"), p.signer, p.trust_scope);
    same(t("verified"), String(p.verified), shown[t("verified")]?.value);
    same(t("verified"), p.verified ? "✓ verified" : builtin ? "built-in" : "no");
    same(t("pinned"), String(p.pinned), shown[t("pinned")]?.value);
    same(t("policy"), p.policy ?? "—");
    loaded(t("loaded-at"), p.loaded_at_ms);
  }

  const policies = doc.policies || [];
  list("policies", shown.__policyRows, policies.map((p) => p.id));
  if (!policies.length) same("policies-none", "none");
  for (const p of policies) {
    const t = (what) => `policy-${what}-${p.id}`;
    same(t("version"), p.version);
    same(t("description"), p.description ?? "—");
    same(t("source"), p.source);
    digest(t("digest"), digestOf(p.source, null));
    signer(t("signer"), p.signer, p.trust_scope);
    same(t("verified"), String(p.verified), shown[t("verified")]?.value);
    same(t("pinned"), String(p.pinned), shown[t("pinned")]?.value);
    same(t("from"), p.from_store ? "from cache (registry unreachable)" : p.source.startsWith("oci://") ? "registry" : "file");
    same(t("plugins"), p.plugins.join(", ") || "—");
    loaded(t("loaded-at"), p.loaded_at_ms);
  }

  const u = doc.updates || {};
  if (u.last_check_ms === null || u.last_check_ms === undefined) {
    same("updates-last-check", NOT_CHECKED);
  } else {
    same("updates-last-check", String(u.last_check_ms), shown["updates-last-check"]?.value);
    const text = shown["updates-last-check"]?.text || "";
    if (!shown.__updatesLocal || !text.startsWith(shown.__updatesLocal)) errs.push(`updates-last-check: page shows ${JSON.stringify(text)}, not the time ${u.last_check_ms}`);
    same("updates-outcome", u.last_outcome ?? "—");
  }
  if (u.last_error && u.last_check_ms) same("updates-error", u.last_error);
  else if (shown["updates-error"]) errs.push(`updates-error: page shows ${JSON.stringify(shown["updates-error"].text)} but /admin/plugins has no error`);
  same("updates-applied", String(u.applied ?? 0), shown["updates-applied"]?.value);
  same("updates-failed", String(u.failed ?? 0), shown["updates-failed"]?.value);
  return errs;
}

// A made-up /admin/plugins document: a plugin pulled from a registry (signed, pinned, part of
// a policy), an unsigned local one, a policy served from the cache, and a failed update;
// markup in the strings must show as text.
const EVIL = `<img src=x onerror="window.__xss=1"><i>x</i>`;
const PULLED_DIGEST = "abcdef012345" + "9".repeat(52);
const MADE_UP = {
  plugins: [
    {
      id: "pulled", version: "1.2.3", world: "guardrail", path: "/var/lib/bitrouter/artifacts/sha256/ff.wasm",
      sha256: "f".repeat(64), wasi: false, signer: "0123456789abcdef".repeat(4), trust_scope: "ghcr.io/acme/*",
      verified: true, pinned: true, origin: `oci://ghcr.io/acme/pulled:1@sha256:${PULLED_DIGEST}`, policy: "made-up",
      loaded_at_ms: Date.UTC(2026, 0, 2, 3, 4, 5), compiled: "cache", calls: 7, failures: 2, traps: 1, deadlines: 1,
      memory: 0, invalid_results: 0,
    },
    {
      id: "unsigned", version: "0.1.0", world: "observer", path: `/etc/bitrouter/${EVIL}.wasm`, sha256: "1234567890ab" + "0".repeat(52),
      wasi: true, signer: null, trust_scope: null, verified: false, pinned: false, origin: null, policy: null,
      loaded_at_ms: Date.UTC(2026, 0, 2, 3, 4, 6), compiled: "compiled", calls: 0, failures: 0, traps: 0, deadlines: 0,
      memory: 0, invalid_results: 0,
    },
  ],
  policies: [{
    key: "guardrails.policies[0]", id: "made-up", version: "2026.1.0", description: EVIL,
    source: "oci://ghcr.io/acme/policy:stable@sha256:0badc0ffee00" + "1".repeat(52), signer: "ab".repeat(32), trust_scope: "*",
    verified: true, pinned: false, from_store: true, plugins: ["pulled", "unsigned"], loaded_at_ms: Date.UTC(2026, 0, 2, 3, 4, 5),
  }],
  updates: { last_check_ms: Date.now() - 60000, last_outcome: "failed", last_error: `ghcr.io unreachable ${EVIL}`, applied: 3, failed: 2 },
  guardrail_patterns: [],
  missing_builtins: [],
};

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
  const readPageOf = (p) => p.evaluate(() => {
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
    out.__pluginRows = [...document.querySelectorAll('[data-testid^="plugin-row-"]')].map((r) => r.dataset.testid.slice("plugin-row-".length));
    out.__policyRows = [...document.querySelectorAll('[data-testid^="policy-row-"]')].map((r) => r.dataset.testid.slice("policy-row-".length));
    out.__policies = document.getElementById("policies").textContent.trim();
    out.__updates = document.getElementById("updates").textContent.trim();
    // What the page's locale makes of each "loaded at" time, to compare its text.
    for (const e of document.querySelectorAll('[data-testid^="plugin-loaded-at-"], [data-testid^="policy-loaded-at-"]')) out[e.dataset.testid].local = new Date(Number(e.dataset.value)).toLocaleString();
    const u = document.querySelector('[data-testid="updates-last-check"]');
    if (u && u.dataset.value) out.__updatesLocal = new Date(Number(u.dataset.value)).toLocaleString();
    return out;
  });
  const readPage = () => readPageOf(page);

  async function checkMadeUpPlugins() {
    const ctx = await browser.newContext({ viewport: { width: 1440, height: 1000 } });
    const p = await ctx.newPage();
    const errors = [];
    p.on("pageerror", (e) => errors.push(`uncaught: ${e.message}`));
    p.on("console", (msg) => { if (msg.type() === "error") errors.push(msg.text()); });
    await p.route(/\/admin\/plugins/, (route) => route.fulfill({ status: 200, contentType: "application/json", body: JSON.stringify(MADE_UP) }));
    try {
      await p.goto(origin + "/admin");
      await p.waitForFunction(() => document.body.dataset.state === "ready", null, { timeout: 20000 });
      const shown = await readPageOf(p);
      for (const e of comparePlugins(MADE_UP, shown)) fail(`made-up plugins: ${e}`);
      // The same, spelled out rather than derived.
      const want = {
        "plugin-source-pulled": MADE_UP.plugins[0].origin,
        "plugin-digest-pulled": "abcdef012345",
        "plugin-signer-pulled": "0123456789abcdef… scope ghcr.io/acme/*",
        "plugin-verified-pulled": "✓ verified",
        "plugin-pinned-pulled": "pinned",
        "plugin-policy-pulled": "made-up",
        "plugin-source-unsigned": `/etc/bitrouter/${EVIL}.wasm`,
        "plugin-digest-unsigned": "1234567890ab",
        "plugin-signer-unsigned": "—",
        "plugin-verified-unsigned": "no",
        "policy-description-made-up": EVIL,
        "policy-digest-made-up": "0badc0ffee00",
        "policy-signer-made-up": "abababababababab… scope *",
        "policy-from-made-up": "from cache (registry unreachable)",
        "policy-plugins-made-up": "pulled, unsigned",
        "updates-outcome": "failed",
        "updates-error": `ghcr.io unreachable ${EVIL}`,
        "updates-applied": "3",
        "updates-failed": "2",
      };
      for (const [id, text] of Object.entries(want)) {
        if (shown[id]?.text !== text) fail(`made-up plugins: ${id} shows ${JSON.stringify(shown[id]?.text)}, want ${JSON.stringify(text)}`);
      }
      if (!/ago\)$/.test(shown["updates-last-check"]?.text || "")) fail(`made-up plugins: updates-last-check shows ${JSON.stringify(shown["updates-last-check"]?.text)}`);
      const injected = await p.evaluate(() => ({ xss: window.__xss ?? null, tags: document.querySelectorAll(["plugins-body", "policies", "updates"].map((id) => `#${id} img, #${id} i`).join(", ")).length }));
      if (injected.xss !== null || injected.tags) fail(`made-up plugins: markup from /admin/plugins became elements (${JSON.stringify(injected)})`);
      for (const e of errors) fail(`made-up plugins: console error: ${e}`);
      log("made-up plugins: pulled plugin, cached policy and failed update shown; markup stays text");
    } catch (e) {
      fail(`made-up plugins: ${e.message.split("\n")[0]}`);
    }
    await ctx.close();
  }

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
        if (e.mid_stream_failovers > 0) expectNum(`mid-stream-${r}/${ep}`, e.mid_stream_failovers);
      }
      for (const [limit, n] of Object.entries(s.rate_limited || {})) {
        expectNum(`rate-limited-${r}/${limit}`, n);
      }
      for (const [who, limits] of Object.entries(s.rate_limited_callers || {})) {
        for (const [limit, n] of Object.entries(limits)) expectNum(`rate-limited-caller-${r}/${who}/${limit}`, n);
      }
    }
    if (!Object.values(m.routes || {}).some((s) => Object.keys(s.rate_limited || {}).length > 0)) {
      errs.push("no route has a rate-limited request: the page's table is not checked");
    }
    if (!Object.values(m.routes || {}).some((s) => Object.keys(s.rate_limited_callers || {}).length > 0)) {
      errs.push("no route has a rate-limited caller: the page's callers table is not checked");
    }
    if (!Object.values(m.routes || {}).some((s) => Object.values(s.endpoints || {}).some((e) => e.mid_stream_failovers > 0))) {
      errs.push("no endpoint has a mid-stream failover: the page's column is not checked");
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
  let m, spend, shown, plugins;
  const deadline = Date.now() + 25000; // the page refreshes metrics every 2 s and spend every 10 s
  for (;;) {
    shown = await readPage();
    const since = shown.__since ? `&since=${encodeURIComponent(shown.__since)}` : "";
    m = await getJson("/admin/metrics");
    spend = {};
    for (const g of ["account", "model", "provider"]) spend[g] = await getJson(`/admin/spend?group_by=${g}${since}`);
    plugins = await getJson("/admin/plugins");
    errs = [...(pluginsOnly ? [] : compare(m, spend, shown)), ...comparePlugins(plugins, shown)];
    if (!errs.length || Date.now() > deadline) break;
    await page.waitForTimeout(1000);
  }
  if (!allowEmpty && !pluginsOnly && !(m.requests > 0)) errs.push("the gateway has served no requests: nothing to compare (pass --allow-empty to accept that)");
  errs.forEach(fail);

  // The charts drew something: some non-background pixels on each canvas.
  for (const id of pluginsOnly ? [] : ["chart-rate", "chart-errors", "chart-latency"]) {
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

  // What the plugin panels show, for the caller to check against what it configured.
  log(`plugins shown: ${shown.__pluginRows.map((id) => `${id} [${shown[`plugin-source-${id}`]?.text} ${shown[`plugin-digest-${id}`]?.text}${shown[`plugin-policy-${id}`]?.value ? ` policy ${shown[`plugin-policy-${id}`].value}` : ""}]`).join(", ") || "(none)"}`);
  log(`policies shown: ${shown.__policyRows.length ? shown.__policyRows.map((id) => `${id} ${shown[`policy-version-${id}`]?.text} ${shown[`policy-verified-${id}`]?.text} (${shown[`policy-plugins-${id}`]?.text})`).join(", ") : shown.__policies}`);
  log(`updates shown: ${shown["updates-last-check"]?.text}`);

  // ---- made-up /admin/plugins states: a pulled plugin, a cached policy, a failed update -------
  if (!pluginsOnly) await checkMadeUpPlugins();

  // ---- auth: a 401 shows the token field; the token is kept and sent as a bearer token ---------
  if (!pluginsOnly) {
    const ctx = await browser.newContext();
    const p = await ctx.newPage();
    const seen = [];
    const pluginAuth = [];
    await p.route(/\/admin\/(metrics|spend|plugins)/, (route) => {
      const auth = route.request().headers().authorization || "";
      seen.push(auth);
      if (route.request().url().includes("/admin/plugins")) pluginAuth.push(auth);
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
      if (!pluginAuth.includes("Bearer test-admin-token")) fail(`auth: /admin/plugins was never asked with the bearer token (${JSON.stringify(pluginAuth)})`);
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
  if (!pluginsOnly) log(`compared: ${m.requests} requests, ${m.errors} errors, ${routes.length} routes (${routes.join(", ")}), spend ${spend.account.total.cost_usd} USD over ${spend.account.total.requests} ledger rows`);
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
