//! Writes what the C guardrail needs from the Rust ecosystem into one directory:
//!
//! * `guardrail.h`, `guardrail.c`, `guardrail_component_type.o`: the C bindings of the world
//!   `bitrouter:plugin/guardrail` (wit-bindgen's C generator, the `wit-bindgen-c` crate), or
//!   of the world named (`observer.*`, `provider_adapter.*`: scripts/build-polyglot-plugins.sh
//!   writes all three, which the C templates of `bitrouter plugin new` commit);
//! * `wasi_snapshot_preview1.reactor.wasm`: the WASI preview1 -> preview2 adapter that
//!   `wasm-tools component new --adapt` needs (the `wasi-preview1-component-adapter-provider`
//!   crate, pinned to the host's wasmtime version).
//!
//! Usage: `c-guardrail-bindgen WIT_DIR WORLD OUT_DIR`

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use wit_bindgen_core::Files;
use wit_bindgen_core::wit_parser::Resolve;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [wit, world, out] = args.as_slice() else {
        bail!("usage: c-guardrail-bindgen WIT_DIR WORLD OUT_DIR");
    };
    let out = PathBuf::from(out);
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;

    let mut resolve = Resolve::default();
    let (pkg, _) = resolve
        .push_path(wit)
        .with_context(|| format!("reading WIT from {wit}"))?;
    let world = resolve.select_world(&[pkg], Some(world))?;
    let mut files = Files::default();
    wit_bindgen_c::Opts::default()
        .build()
        .generate(&mut resolve, world, &mut files)?;
    for (name, contents) in files.iter() {
        std::fs::write(out.join(name), contents).with_context(|| format!("writing {name}"))?;
    }

    let adapter = format!(
        "{}.reactor.wasm",
        wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME
    );
    std::fs::write(
        out.join(&adapter),
        wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
    )
    .with_context(|| format!("writing {adapter}"))?;
    Ok(())
}
