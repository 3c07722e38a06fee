#!/usr/bin/env bash
# The seven default guardrail plugins are committed, built, in plugins/dist/ (so a fresh
# checkout builds a complete binary with no WASM toolchain: host/build.rs embeds them). This
# script compares them with the ones scripts/build-plugins.sh just built into target/plugins/.
#
#   exit 0  identical: the committed components are what the sources build to
#   exit 3  the toolchain differs from the one recorded in plugins/dist/<id>.plugin.toml, so
#           the bytes cannot be compared; says so plainly. CI then tests the rebuilt ones
#           (BITROUTER_DEFAULT_PLUGINS_DIR=target/plugins).
#   exit 1  same toolchain, different bytes: plugins/dist/ is stale or the build is not
#           reproducible. `scripts/check-default-plugins.sh --update` copies the rebuilt ones in.
#
# Usage: scripts/check-default-plugins.sh [--update]
set -euo pipefail
cd "$(dirname "$0")/.."
DEFAULTS=(api_keys private_keys credentials pii_emails pii_phone_numbers ip_addresses suspicious_commands)
BUILT=target/plugins
DIST=plugins/dist

if [ "${1:-}" = "--update" ]; then
  mkdir -p "$DIST"
  for id in "${DEFAULTS[@]}"; do
    cp "$BUILT/$id.wasm" "$BUILT/$id.plugin.toml" "$DIST/"
  done
  echo "check-default-plugins: copied ${#DEFAULTS[@]} components from $BUILT/ into $DIST/"
  exit 0
fi

field() { sed -n "s/^$2 = \"\(.*\)\"/\1/p" "$1" | head -1; }
stale=() toolchain=()
for id in "${DEFAULTS[@]}"; do
  for f in "$BUILT/$id.wasm" "$BUILT/$id.plugin.toml" "$DIST/$id.wasm" "$DIST/$id.plugin.toml"; do
    [ -f "$f" ] || { echo "check-default-plugins: $f is missing (run scripts/build-plugins.sh)" >&2; exit 1; }
  done
  if cmp -s "$BUILT/$id.wasm" "$DIST/$id.wasm"; then continue; fi
  for tool in rustc wasm-tools; do
    want=$(field "$DIST/$id.plugin.toml" "$tool") got=$(field "$BUILT/$id.plugin.toml" "$tool")
    if [ "$want" != "$got" ]; then
      toolchain+=("$id: $DIST was built with $tool '$want', this machine has '$got'")
      continue 2
    fi
  done
  stale+=("$id: sha256 $(field "$DIST/$id.plugin.toml" sha256) committed, $(field "$BUILT/$id.plugin.toml" sha256) rebuilt")
done

if [ ${#stale[@]} -gt 0 ]; then
  echo "check-default-plugins: the committed default plugins differ from what their sources build to, with the same toolchain:" >&2
  printf '  - %s\n' "${stale[@]}" >&2
  echo "if the source change is intended: scripts/build-plugins.sh && scripts/check-default-plugins.sh --update, and commit plugins/dist/" >&2
  exit 1
fi
if [ ${#toolchain[@]} -gt 0 ]; then
  echo "check-default-plugins: cannot compare byte for byte, the toolchain differs (not an error; the tests use the rebuilt components):"
  printf '  - %s\n' "${toolchain[@]}"
  exit 3
fi
echo "check-default-plugins: plugins/dist/ matches a rebuild from source (${#DEFAULTS[@]} components, byte for byte)"
