#!/usr/bin/env bash
# Builds {{name}} into target/plugin/{{name}}.wasm and its manifest
# target/plugin/{{name}}.plugin.toml (plugin.toml plus the component's sha256).
#
# componentize-py (pinned in requirements.txt) bundles app.py with a CPython runtime into a
# component; wasm-tools is not needed.
set -euo pipefail
cd "$(dirname "$0")"
# componentize-py is best installed in a virtual environment here (see below).
export PATH="$PWD/.venv/bin:$PATH"

# Prerequisites: name each missing one, then the commands that install them.
missing=() install=()
need() { # need WHAT INSTALL-COMMAND
  missing+=("$1")
  local c
  for c in "${install[@]}"; do [ "$c" = "$2" ] && return; done
  install+=("$2")
}
pinned=$(sed -n 's/^componentize-py==//p' requirements.txt)
found=$(componentize-py --version 2>/dev/null | awk '{print $2}' || true)
[ "$found" = "$pinned" ] ||
  need "componentize-py $pinned (found: ${found:-none})" \
    "cd $PWD && python3 -m venv .venv && .venv/bin/pip install -r requirements.txt"
if [ ${#missing[@]} -gt 0 ]; then
  echo "build.sh: cannot build {{name}}; missing:" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  echo "install with:" >&2
  printf '  %s\n' "${install[@]}" >&2
  exit 1
fi

mkdir -p target/plugin
componentize-py -d wit -w {{world}} componentize app -o target/plugin/{{name}}.wasm

sha=$(sha256sum target/plugin/{{name}}.wasm | cut -d' ' -f1)
{
  echo "# Written by build.sh from plugin.toml; edit plugin.toml instead."
  echo "sha256 = \"$sha\""
  grep -v '^sha256 *=' plugin.toml
} >target/plugin/{{name}}.plugin.toml
echo "built target/plugin/{{name}}.wasm (sha256 $sha)"
