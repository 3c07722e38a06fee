#!/usr/bin/env python3
"""Writes clean.txt: ordinary prose, Rust, Python and JavaScript code, config files and log
lines, generated from templates with a fixed seed (no third-party text). Every default
guardrail must find nothing in it; the engine's benchmark measures MB/s over it.

It deliberately contains the near misses the patterns must not flag: dates, times, versions,
UUIDs, hex digests, `std::` paths, decorators, `password` in code, `curl` without a pipe to a
shell, `rm -rf target/`, loopback addresses, ports, plain long numbers.

    python3 tests/guardrails/corpus/generate.py   # rewrites clean.txt next to this file
"""
import os
import random

R = random.Random(20240611)
TARGET = 400_000

NOUNS = ["gateway", "router", "request", "response", "stream", "provider", "model", "token",
         "budget", "cache", "window", "pattern", "plugin", "endpoint", "route", "header",
         "client", "server", "queue", "ledger", "policy", "adapter", "observer", "config",
         "deadline", "buffer", "chunk", "retry", "failover", "message", "prompt", "tool call",
         "schema", "dialect", "worker", "thread", "socket", "connection", "timeout", "batch"]
VERBS = ["forwards", "rejects", "retries", "records", "streams", "parses", "validates",
         "encodes", "decodes", "buffers", "releases", "counts", "routes", "caches", "logs",
         "measures", "compresses", "schedules", "drops", "merges", "splits", "renders"]
ADJS = ["slow", "fast", "empty", "partial", "stale", "fresh", "large", "small", "invalid",
        "valid", "idle", "busy", "upstream", "downstream", "cached", "pending", "final"]
ADVS = ["quickly", "eventually", "twice", "once", "carefully", "silently", "lazily",
        "eagerly", "in order", "at most once", "without blocking"]
NAMES = ["Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy"]
PLACES = ["the staging cluster", "the build farm", "our laptop", "the test rig",
          "the second region", "the canary pool", "a cold cache", "the night batch"]


def sentence():
    n1, n2 = R.choice(NOUNS), R.choice(NOUNS)
    forms = [
        lambda: f"The {R.choice(ADJS)} {n1} {R.choice(VERBS)} the {n2} {R.choice(ADVS)}.",
        lambda: f"When a {n1} is {R.choice(ADJS)}, the {n2} {R.choice(VERBS)} it {R.choice(ADVS)}.",
        lambda: f"{R.choice(NAMES)} noticed that {R.choice(PLACES)} {R.choice(VERBS)} every {n1} within {R.randint(2, 950)} ms.",
        lambda: f"In version {R.randint(0, 3)}.{R.randint(0, 30)}.{R.randint(0, 9)} the {n1} no longer {R.choice(VERBS)} {R.choice(ADJS)} {n2}s.",
        lambda: f"About {R.randint(2, 98)}% of the {n1}s in {R.choice(PLACES)} were {R.choice(ADJS)} on {R.randint(2015, 2025)}-{R.randint(1, 12):02}-{R.randint(1, 28):02}.",
        lambda: f"Set the {n1} limit to {R.randint(1, 64) * 1024} bytes and the {n2} deadline to {R.randint(1, 30)} s.",
        lambda: f"A password is never logged; the {n1} only {R.choice(VERBS)} a hash of it.",
        lambda: f"Section {R.randint(1, 9)}.{R.randint(1, 9)} explains why the {n1} {R.choice(VERBS)} the {n2}.",
        lambda: f"We measured {R.randint(100, 9999)} requests per second between {R.randint(8, 11)}:{R.randint(0, 59):02} and {R.randint(12, 17)}:{R.randint(0, 59):02}.",
        lambda: f"Ask-sklearn style helpers and task-specific {n1}s should stay out of the {n2}.",
        lambda: f"The {n1} uses the basic approach: {R.choice(VERBS)} first, then {R.choice(VERBS)}.",
        lambda: f"Ticket {R.randint(10000, 99999)} tracks the {R.choice(ADJS)} {n1}; the fix landed in build {R.randint(1000, 9999)}.",
    ]
    return R.choice(forms)()


def prose():
    heading = f"## The {R.choice(ADJS)} {R.choice(NOUNS)}\n\n"
    paras = []
    for _ in range(R.randint(2, 4)):
        paras.append(" ".join(sentence() for _ in range(R.randint(3, 7))))
    return heading + "\n\n".join(paras) + "\n\n"


def ident():
    return R.choice(ADJS) + "_" + R.choice(NOUNS).replace(" ", "_")


def rust():
    a, b = ident(), ident()
    ty = "".join(w.capitalize() for w in R.choice(NOUNS).split()) + R.choice(["State", "Config", "Stats", "Error"])
    n = R.randint(2, 4096)
    return f"""```rust
/// Tracks the {a.replace('_', ' ')} for one {R.choice(NOUNS)}.
#[derive(Debug, Clone, Default)]
pub struct {ty} {{
    pub {a}: u64,
    pub {b}: std::collections::HashMap<String, Vec<u8>>,
    limit: usize,
}}

impl {ty} {{
    pub fn new(limit: usize) -> Self {{
        Self {{ limit, ..Default::default() }}
    }}

    pub fn record(&mut self, key: &str, bytes: &[u8]) -> Result<(), std::io::Error> {{
        if bytes.len() > self.limit {{
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "too large"));
        }}
        self.{a} = self.{a}.saturating_add(bytes.len() as u64);
        self.{b}.entry(key.to_owned()).or_default().extend_from_slice(bytes);
        let ratio = self.{a} as f64 / {n}.0_f64;
        tracing::debug!(ratio, key, "recorded {{}} bytes", bytes.len());
        Ok(())
    }}
}}

#[cfg(test)]
mod tests {{
    use super::*;

    #[test]
    fn records_until_the_limit() {{
        let mut s = {ty}::new({n});
        assert!(s.record("a", &[0u8; 16]).is_ok());
        assert_eq!(s.{a}, 16);
        let password = std::env::var("TEST_PASSWORD").unwrap_or_default();
        assert!(password.len() < usize::MAX);
        let addr: std::net::SocketAddr = "127.0.0.1:{R.randint(1024, 65535)}".parse().unwrap();
        assert!(addr.ip().is_loopback());
    }}
}}
```

"""


def python():
    a, b = ident(), ident()
    cls = "".join(w.capitalize() for w in R.choice(NOUNS).split()) + "Client"
    return f"""```python
import os
import hashlib
from dataclasses import dataclass, field


@dataclass
class {cls}:
    base_url: str = "http://localhost:{R.randint(3000, 9999)}"
    timeout: float = {R.randint(1, 60)}.{R.randint(0, 9)}
    {a}: list[str] = field(default_factory=list)

    def login(self, username: str, password: str) -> bool:
        digest = hashlib.sha256(password.encode()).hexdigest()
        self.{a}.append(digest[:{R.randint(6, 12)}])
        return self._post("/login", user=username, password=password)

    def _post(self, path, **kwargs):
        password = kwargs.pop("password", None)
        return password is not None and path.startswith("/")


@property
def {b}(self):
    return [x @ self.weights for x in self.inputs]


def main():
    client = {cls}(timeout=float(os.environ.get("TIMEOUT", "{R.randint(1, 9)}.5")))
    ok = client.login(os.environ["APP_USER"], password=os.environ["APP_PASSWORD"])
    print(f"login ok={{ok}} after {{client.timeout:.1f}}s, version {R.randint(1, 3)}.{R.randint(0, 12)}.{R.randint(0, 20)}")


if __name__ == "__main__":
    main()
```

"""


def javascript():
    a = ident()
    fn = R.choice(VERBS) + "".join(w.capitalize() for w in R.choice(NOUNS).split())
    return f"""```js
import {{ createHash }} from "node:crypto";
import express from "express";

const app = express();
const PORT = process.env.PORT ?? {R.randint(3000, 9999)};

export async function {fn}(req, res) {{
  const {{ username, password }} = req.body;
  if (!username || !password) {{
    return res.status(400).json({{ error: "missing credentials" }});
  }}
  const {a} = createHash("sha256").update(password).digest("hex");
  const started = Date.now();
  const rows = await db.query("SELECT id FROM users WHERE name = $1", [username]);
  console.log(`query took ${{Date.now() - started}}ms for ${{rows.length}} rows`);
  return res.json({{ ok: rows.length === 1, hash: {a}.slice(0, 8) }});
}}

app.post("/api/v1/{fn.lower()}", {fn});
app.listen(PORT, "0.0.0.0", () => console.log(`listening on http://127.0.0.1:${{PORT}}`));
```

"""


def hexstr(n):
    return "".join(R.choice("0123456789abcdef") for _ in range(n))


def uuid():
    h = hexstr(32)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"


def logs():
    lines = []
    for _ in range(R.randint(20, 40)):
        ts = f"2024-{R.randint(1, 12):02}-{R.randint(1, 28):02}T{R.randint(0, 23):02}:{R.randint(0, 59):02}:{R.randint(0, 59):02}.{R.randint(0, 999):03}Z"
        level = R.choice(["INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"])
        route = R.choice(["/v1/chat/completions", "/v1/messages", "/v1/responses", "/healthz", "/metrics"])
        status = R.choice([200, 200, 200, 201, 400, 401, 429, 500, 502, 503])
        kind = R.randint(0, 9)
        if kind < 5:
            lines.append(f'{ts} {level} bitrouter::server: request id={uuid()} method=POST path={route} status={status} latency_ms={R.randint(1, 9000)} bytes={R.randint(100, 999999)}')
        elif kind == 5:
            lines.append(f'{ts} {level} bitrouter::router: failover attempt={R.randint(1, 3)} endpoint=openai:gpt-{R.randint(3, 5)}o upstream_status={status} retry_after_ms={R.randint(100, 5000)}')
        elif kind == 6:
            lines.append(f'{ts} {level} bitrouter::ledger: flushed {R.randint(1, 512)} rows in {R.randint(1, 99)}.{R.randint(0, 999):03} ms (commit {hexstr(12)})')
        elif kind == 7:
            lines.append(f'{ts} {level} bitrouter::server: listening on 127.0.0.1:{R.randint(1024, 65535)} and 0.0.0.0:{R.randint(1024, 65535)} (pid {R.randint(100, 99999)})')
        elif kind == 8:
            lines.append(f'[{R.randint(10, 31)}/Mar/2024:{R.randint(0, 23):02}:{R.randint(0, 59):02}:{R.randint(0, 59):02} +0000] "GET {route} HTTP/1.1" {status} {R.randint(100, 99999)} "-" "Mozilla/5.0 (X11; Linux x86_64) Chrome/{R.randint(100, 130)}.0.{R.randint(1000, 6999)}.{R.randint(10, 200)} Safari/537.36"')
        else:
            lines.append(f'{ts} {level} bitrouter::plugins: plugin=api_keys calls={R.randint(1, 99999)} failures=0 p50_us={R.randint(3, 9)}.{R.randint(0, 9)} sha256={hexstr(64)}')
    return "```text\n" + "\n".join(lines) + "\n```\n\n"


def config():
    return f"""```yaml
server:
  listen: 127.0.0.1:{R.randint(1024, 65535)}
  request_timeout: {R.randint(5, 120)}s
  body_limit: {R.randint(1, 64)} MiB
database:
  url: sqlite://data/bitrouter.db
  pool_size: {R.randint(2, 32)}
models:
  default:
    endpoints: [openai:gpt-4o-mini, anthropic:claude-{R.randint(3, 4)}-{R.randint(1, 9)}-sonnet]
    max_tokens: {R.randint(256, 8192)}
```

```sh
cargo build --release --locked
curl -fsSL -o /tmp/bitrouter.tar.gz https://example.invalid/releases/v{R.randint(0, 2)}.{R.randint(0, 20)}.{R.randint(0, 9)}/bitrouter.tar.gz
sha256sum /tmp/bitrouter.tar.gz
tar -xzf /tmp/bitrouter.tar.gz -C /opt/bitrouter --strip-components={R.randint(1, 2)}
rm -rf target/ /tmp/bitrouter-build-{R.randint(1, 999)}
docker run --rm -p {R.randint(3000, 9000)}:{R.randint(3000, 9000)} -e RUST_LOG=info bitrouter:{R.randint(0, 2)}.{R.randint(0, 20)}
```

"""


def main():
    parts = []
    size = 0
    makers = [prose, prose, prose, rust, python, javascript, logs, config]
    while size < TARGET:
        part = R.choice(makers)()
        parts.append(part)
        size += len(part.encode())
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "clean.txt")
    with open(out, "w", encoding="utf-8", newline="\n") as f:
        f.write("".join(parts))
    print(f"wrote {out}: {size} bytes")


if __name__ == "__main__":
    main()
