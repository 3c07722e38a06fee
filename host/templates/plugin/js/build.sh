#!/usr/bin/env bash
# Builds {{name}} into target/plugin/{{name}}.wasm + .plugin.toml. Needs Node.js >= 20,
# `npm install` here, and wasm-tools is not needed (componentize-js writes the component).
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p target/plugin
node node_modules/@bytecodealliance/componentize-js/src/cli.js guardrail.js \
  --wit wit --world-name guardrail -d http fetch-event -o target/plugin/{{name}}.wasm
sha=$(sha256sum target/plugin/{{name}}.wasm | cut -d' ' -f1)
printf 'id = "{{name}}"\nversion = "0.1.0"\nworld = "guardrail"\nsha256 = "%s"\ncapabilities = []\nstateless = true\n' "$sha" \
  > target/plugin/{{name}}.plugin.toml
echo "built target/plugin/{{name}}.wasm (sha256 $sha)"
