#!/usr/bin/env bash
# Scaffolds a guardrail with `bitrouter plugin new` in every language, builds each with the
# build.sh the scaffold ships, and runs the result through `bitrouter plugin test`: the
# templates a user starts from must build and work, not only exist. Also checks that the C
# template's committed bindings are what wit-bindgen-c generates from wit/ today
# (scripts/build-polyglot-plugins.sh writes a fresh copy to target/polyglot/c-bindings/).
#
# Needs the toolchains of scripts/build-plugins.sh and scripts/install-polyglot-toolchains.sh,
# and a built bitrouter binary.
# Usage: scripts/check-plugin-templates.sh [BITROUTER_BIN] [rust js python c ...]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BIN=${1:-target/debug/bitrouter}
shift || true
BIN=$(realpath "$BIN")
langs=("$@")
[ ${#langs[@]} -gt 0 ] || langs=(rust js python c)
export PATH="$ROOT/.venv/bin:$PATH"

fresh="$ROOT/target/polyglot/c-bindings"
committed="$ROOT/host/templates/plugin/c/bindings"
if [ -d "$fresh" ]; then
  for f in "$committed"/*; do
    if ! cmp -s "$f" "$fresh/$(basename "$f")"; then
      echo "check-plugin-templates: $f differs from a fresh wit-bindgen-c output ($fresh);" >&2
      echo "  copy it: cp $fresh/* $committed/" >&2
      exit 1
    fi
  done
  echo "check-plugin-templates: the C template's bindings match a fresh generation"
fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
for lang in "${langs[@]}"; do
  started=$(date +%s)
  name="tmpl-$lang"
  "$BIN" plugin new --lang "$lang" --dir "$WORK" "$name" >/dev/null
  dir="$WORK/$name"
  if [ "$lang" = js ]; then
    # The example guardrail pins the same componentize-js; reuse its install (npm ci) rather
    # than fetching again.
    ln -s "$ROOT/examples/plugins/js-guardrail/node_modules" "$dir/node_modules"
  fi
  if [ "$lang" = rust ]; then
    # The target dir and RUSTFLAGS of scripts/build-plugins.sh: the standard library it
    # built for wasm32 (-Zbuild-std, a minute or more) is reused instead of built again.
    export CARGO_TARGET_DIR="$ROOT/target/guests"
    export RUSTFLAGS="--remap-path-prefix=$ROOT=/bitrouter --remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=/cargo"
    # build.sh copies from the crate's own target/; point it at the shared one.
    ln -s "$CARGO_TARGET_DIR" "$dir/target" 2>/dev/null || true
    mkdir -p "$CARGO_TARGET_DIR"
  fi
  if ! (cd "$dir" && ./build.sh >"$WORK/$lang.log" 2>&1); then
    echo "check-plugin-templates: the $lang template did not build:" >&2
    cat "$WORK/$lang.log" >&2
    exit 1
  fi
  unset CARGO_TARGET_DIR RUSTFLAGS
  # The gateway's default 10 ms call deadline fits the interpreted runtimes in a release
  # build; this is a debug binary on a shared CI machine.
  deadline=()
  case $lang in js | python) deadline=(--call-deadline 2s) ;; esac
  if ! out=$("$BIN" plugin test "$dir/target/plugin/$name.wasm" "${deadline[@]}" --text "order SAMPLE-1234 shipped"); then
    echo "check-plugin-templates: bitrouter plugin test failed on the $lang template" >&2
    exit 1
  fi
  if ! grep -q '"pattern": *"sample-id"\|"pattern":"sample-id"\|sample-id' <<<"$out"; then
    echo "check-plugin-templates: the $lang template built but found nothing in 'SAMPLE-1234':" >&2
    echo "$out" >&2
    exit 1
  fi
  none=$("$BIN" plugin test "$dir/target/plugin/$name.wasm" "${deadline[@]}" --text "nothing to see here")
  if grep -q 'sample-id' <<<"$none"; then
    echo "check-plugin-templates: the $lang template flagged text without a sample id:" >&2
    echo "$none" >&2
    exit 1
  fi
  echo "check-plugin-templates: $lang template builds and flags SAMPLE-1234 ($(($(date +%s) - started))s)"
done
