#!/usr/bin/env bash
# Builds {{name}} into target/plugin/{{name}}.wasm and its manifest
# target/plugin/{{name}}.plugin.toml (plugin.toml plus the component's sha256).
#
# componentize-js (pinned in package.json and package-lock.json, with preview2-shim, which
# componentize-js 0.23 imports without declaring it) bundles {{source}} with the
# StarlingMonkey JavaScript runtime into a component; wasm-tools is not needed.
set -euo pipefail
cd "$(dirname "$0")"
CJS=node_modules/@bytecodealliance/componentize-js

# Prerequisites: name each missing one, then the commands that install them.
missing=() install=()
need() { # need WHAT INSTALL-COMMAND
  missing+=("$1")
  local c
  for c in "${install[@]}"; do [ "$c" = "$2" ] && return; done
  install+=("$2")
}
NODE_HINT="Node.js 20 or later: your distribution's nodejs package if it is that recent, else https://nodejs.org/en/download"
if ! command -v node >/dev/null; then
  need "Node.js >= 20" "$NODE_HINT"
elif ! node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)'; then
  need "Node.js >= 20 (found $(node --version))" "$NODE_HINT"
fi
pinned=$(sed -n 's/.*"@bytecodealliance\/componentize-js": *"\([^"]*\)".*/\1/p' package.json)
installed=$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$CJS/package.json" 2>/dev/null | head -1 || true)
[ "$installed" = "$pinned" ] ||
  need "componentize-js $pinned in node_modules (found: ${installed:-none})" "cd $PWD && npm ci"
if [ ${#missing[@]} -gt 0 ]; then
  echo "build.sh: cannot build {{name}}; missing:" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  echo "install with:" >&2
  printf '  %s\n' "${install[@]}" >&2
  exit 1
fi

mkdir -p target/plugin
# `-d http fetch-event`: the component imports no wasi:http, which the gateway does not
# provide. (componentize-js is called directly: `jco componentize` needs the network.)
node "$CJS/src/cli.js" {{source}} --wit wit --world-name {{world}} -d http fetch-event \
  -o target/plugin/{{name}}.wasm

sha=$(sha256sum target/plugin/{{name}}.wasm | cut -d' ' -f1)
{
  echo "# Written by build.sh from plugin.toml; edit plugin.toml instead."
  echo "sha256 = \"$sha\""
  grep -v '^sha256 *=' plugin.toml
} >target/plugin/{{name}}.plugin.toml
echo "built target/plugin/{{name}}.wasm (sha256 $sha)"
