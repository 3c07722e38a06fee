//! `bitrouter plugin new`: scaffolds a plugin project from templates compiled into the
//! binary (`host/templates/plugin/`), with the WIT contract copied beside it, so a new plugin
//! builds anywhere without this repository.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

#[derive(clap::Args)]
pub struct NewArgs {
    name: String,
    #[arg(long, value_enum)]
    lang: Lang,
    #[arg(long, value_enum, default_value_t = NewWorld::Guardrail)]
    world: NewWorld,
    /// Where to create the project folder (default: the current folder).
    #[arg(long)]
    dir: Option<PathBuf>,
}

impl NewArgs {
    pub fn run(self) -> anyhow::Result<()> {
        new_plugin(self.lang, self.world, &self.name, self.dir.as_deref()).map(|_| ())
    }
}

/// The language of a new plugin.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Js,
    Python,
    C,
}

/// The world a new plugin implements.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NewWorld {
    Guardrail,
    Observer,
    ProviderAdapter,
}

impl NewWorld {
    fn name(self) -> &'static str {
        match self {
            NewWorld::Guardrail => "guardrail",
            NewWorld::Observer => "observer",
            NewWorld::ProviderAdapter => "provider-adapter",
        }
    }
}

const WIT: &[(&str, &str)] = &[
    ("wit/types.wit", include_str!("../../../../wit/types.wit")),
    (
        "wit/guardrail.wit",
        include_str!("../../../../wit/guardrail.wit"),
    ),
    (
        "wit/observer.wit",
        include_str!("../../../../wit/observer.wit"),
    ),
    (
        "wit/provider-adapter.wit",
        include_str!("../../../../wit/provider-adapter.wit"),
    ),
    ("wit/worlds.wit", include_str!("../../../../wit/worlds.wit")),
];

const README: &str = include_str!("../../../templates/plugin/README.md.tmpl");

/// The files of a project: (path relative to the project, template).
fn templates(lang: Lang, world: NewWorld) -> Vec<(&'static str, &'static str)> {
    match (lang, world) {
        (Lang::Rust, w) => vec![
            (
                "Cargo.toml",
                include_str!("../../../templates/plugin/rust/Cargo.toml.tmpl"),
            ),
            (
                "src/lib.rs",
                match w {
                    NewWorld::Guardrail => {
                        include_str!("../../../templates/plugin/rust/guardrail.rs")
                    }
                    NewWorld::Observer => {
                        include_str!("../../../templates/plugin/rust/observer.rs")
                    }
                    NewWorld::ProviderAdapter => {
                        include_str!("../../../templates/plugin/rust/provider-adapter.rs")
                    }
                },
            ),
            (
                "build.sh",
                include_str!("../../../templates/plugin/rust/build.sh"),
            ),
        ],
        (Lang::Js, _) => vec![
            (
                "guardrail.js",
                include_str!("../../../templates/plugin/js/guardrail.js"),
            ),
            (
                "package.json",
                include_str!("../../../templates/plugin/js/package.json.tmpl"),
            ),
            (
                "build.sh",
                include_str!("../../../templates/plugin/js/build.sh"),
            ),
        ],
        (Lang::Python, _) => vec![
            (
                "app.py",
                include_str!("../../../templates/plugin/python/app.py"),
            ),
            (
                "build.sh",
                include_str!("../../../templates/plugin/python/build.sh"),
            ),
        ],
        (Lang::C, _) => vec![
            (
                "guardrail.c",
                include_str!("../../../templates/plugin/c/guardrail.c"),
            ),
            (
                "build.sh",
                include_str!("../../../templates/plugin/c/build.sh"),
            ),
        ],
    }
}

/// Files copied as they are. The C bindings are committed generated output (the same
/// wit-bindgen-c and adapter versions as examples/plugins/c-guardrail; CI checks they are
/// current), so a C author needs clang and wasm-tools only.
fn verbatim(lang: Lang) -> Vec<(&'static str, &'static [u8])> {
    match lang {
        Lang::C => vec![
            (
                "bindings/guardrail.c",
                include_bytes!("../../../templates/plugin/c/bindings/guardrail.c"),
            ),
            (
                "bindings/guardrail.h",
                include_bytes!("../../../templates/plugin/c/bindings/guardrail.h"),
            ),
            (
                "bindings/guardrail_component_type.o",
                include_bytes!("../../../templates/plugin/c/bindings/guardrail_component_type.o"),
            ),
            (
                "bindings/wasi_snapshot_preview1.reactor.wasm",
                include_bytes!(
                    "../../../templates/plugin/c/bindings/wasi_snapshot_preview1.reactor.wasm"
                ),
            ),
        ],
        _ => Vec::new(),
    }
}

/// A plugin id and crate name: what the manifest and the config accept.
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.as_bytes()[0].is_ascii_lowercase()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Writes the project `name` into `dir/name` (which must not exist) and returns its path.
pub fn new_plugin(
    lang: Lang,
    world: NewWorld,
    name: &str,
    dir: Option<&Path>,
) -> anyhow::Result<PathBuf> {
    if !valid_name(name) {
        bail!(
            "invalid plugin name {name:?}: expected 1-64 characters of [a-z0-9_-], starting with a letter"
        );
    }
    if lang != Lang::Rust && world != NewWorld::Guardrail {
        bail!(
            "`plugin new --lang {}` has a guardrail template only; use --lang rust for the {} world",
            match lang {
                Lang::Js => "js",
                Lang::Python => "python",
                Lang::C => "c",
                Lang::Rust => "rust",
            },
            world.name()
        );
    }
    let root = dir.unwrap_or(Path::new(".")).join(name);
    if root.exists() {
        bail!(
            "{} already exists; pick another name or folder",
            root.display()
        );
    }
    let (lang_name, build, usage) = match lang {
        Lang::Rust => ("Rust", "./build.sh", usage(world, name)),
        Lang::Js => (
            "JavaScript",
            "npm install && ./build.sh",
            usage(world, name),
        ),
        Lang::Python => (
            "Python",
            "pip install componentize-py && ./build.sh",
            usage(world, name),
        ),
        Lang::C => ("C", "./build.sh", usage(world, name)),
    };
    let crate_name = name.replace('-', "_");
    let extra_deps = if world == NewWorld::ProviderAdapter {
        "serde_json = \"1\"\n"
    } else {
        ""
    };
    let fill = |t: &str| {
        t.replace("{{name}}", name)
            .replace("{{crate}}", &crate_name)
            .replace("{{world}}", world.name())
            .replace("{{lang}}", lang_name)
            .replace("{{build}}", build)
            .replace("{{usage}}", &usage)
            .replace("{{extra_deps}}", extra_deps)
    };
    let mut files: Vec<(&str, Vec<u8>)> = templates(lang, world)
        .into_iter()
        .map(|(p, t)| (p, fill(t).into_bytes()))
        .collect();
    files.push(("README.md", fill(README).into_bytes()));
    files.extend(WIT.iter().map(|(p, t)| (*p, t.as_bytes().to_vec())));
    files.extend(verbatim(lang).into_iter().map(|(p, b)| (p, b.to_vec())));
    for (rel, text) in &files {
        let path = root.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if rel.ends_with(".sh") {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                    .with_context(|| format!("cannot make {} executable", path.display()))?;
            }
        }
    }
    println!(
        "created {} ({} {} plugin, {} files)",
        root.display(),
        lang_name,
        world.name(),
        files.len()
    );
    println!("build it with:\n  cd {} && {build}", root.display());
    Ok(root)
}

/// How the built plugin is used, for the README.
fn usage(world: NewWorld, name: &str) -> String {
    match world {
        NewWorld::Guardrail => format!(
            "bitrouter plugin test target/plugin/{name}.wasm --text 'see SAMPLE-1234'\n# bitrouter.yaml:\n#   guardrails:\n#     plugins:\n#       - path: {name}/target/plugin/{name}.wasm"
        ),
        NewWorld::Observer => format!(
            "# bitrouter.yaml:\n#   plugins:\n#     observers:\n#       - path: {name}/target/plugin/{name}.wasm"
        ),
        NewWorld::ProviderAdapter => format!(
            "# bitrouter.yaml:\n#   providers:\n#     mine:\n#       api_protocol: plugin\n#       adapter: {{ path: {name}/target/plugin/{name}.wasm }}\n#       api_base: https://api.example.com\n#       api_key: ${{MINE_API_KEY}}"
        ),
    }
}
