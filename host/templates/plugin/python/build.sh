#!/usr/bin/env bash
# Builds {{name}} into target/plugin/{{name}}.wasm + .plugin.toml. Needs componentize-py
# (pip install componentize-py).
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p target/plugin
componentize-py -d wit -w guardrail componentize app -o target/plugin/{{name}}.wasm
sha=$(sha256sum target/plugin/{{name}}.wasm | cut -d' ' -f1)
printf 'id = "{{name}}"\nversion = "0.1.0"\nworld = "guardrail"\nsha256 = "%s"\ncapabilities = []\nstateless = true\n' "$sha" \
  > target/plugin/{{name}}.plugin.toml
echo "built target/plugin/{{name}}.wasm (sha256 $sha)"
