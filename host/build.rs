//! Embeds the default guardrail plugins into the binary, so they load at start with no files
//! and no config. They come built and committed in `plugins/dist/` (so a fresh checkout needs
//! no WASM toolchain; CI rebuilds them from source and checks the bytes match), or from
//! `BITROUTER_DEFAULT_PLUGINS_DIR` (e.g. `target/plugins` after scripts/build-plugins.sh).
//! Should a file be missing, the binary still builds and says at start which patterns it lacks.

use std::fmt::Write as _;
use std::path::PathBuf;

/// The built-in patterns, one plugin each; the id is the plugin's and its pattern's.
const DEFAULTS: &[&str] = &[
    "api_keys",
    "private_keys",
    "credentials",
    "pii_emails",
    "pii_phone_numbers",
    "ip_addresses",
    "suspicious_commands",
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    println!("cargo:rerun-if-env-changed=BITROUTER_DEFAULT_PLUGINS_DIR");
    let dir = std::env::var_os("BITROUTER_DEFAULT_PLUGINS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir.join("../plugins/dist"));
    let mut code = String::from(
        "/// Written by host/build.rs: the default guardrail plugins found at build time.\n\
         pub static DEFAULT_PLUGINS: &[(&str, Option<crate::plugins::EmbeddedPlugin>)] = &[\n",
    );
    for id in DEFAULTS {
        let wasm = dir.join(format!("{id}.wasm"));
        let manifest = dir.join(format!("{id}.plugin.toml"));
        // Watching a missing file makes cargo rerun this script until the file appears.
        println!("cargo:rerun-if-changed={}", wasm.display());
        println!("cargo:rerun-if-changed={}", manifest.display());
        if wasm.is_file() && manifest.is_file() {
            let _ = writeln!(
                code,
                "    ({id:?}, Some(crate::plugins::EmbeddedPlugin {{ wasm: include_bytes!({:?}), manifest: include_str!({:?}) }})),",
                wasm.canonicalize().expect("exists"),
                manifest.canonicalize().expect("exists"),
            );
        } else {
            let _ = writeln!(code, "    ({id:?}, None),");
        }
    }
    code.push_str("];\n");
    let out =
        PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it")).join("default_plugins.rs");
    std::fs::write(out, code).expect("OUT_DIR is writable");
}
