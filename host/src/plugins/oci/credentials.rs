//! The login for a registry, in the docker CLI's order: `plugins.registries.<host>`
//! (`username` + `password_env`) first; else the docker `config.json` (`$DOCKER_CONFIG`, else
//! `~/.docker`): the credential helper `credHelpers.<host>` names, else the `credsStore`
//! helper, else `auths.<host>.auth`; else anonymous.
//!
//! A helper is the program `docker-credential-<name>` on `PATH`, asked with `get` and the
//! server on stdin, answering `{"Username": …, "Secret": …}` (the docker-credential-helpers
//! protocol, which `ecr-login`, `gcloud`, `osxkeychain`, `pass`, `desktop` … speak). Not the
//! `docker_credential` crate: it waits for a helper without a time limit, and a helper stuck
//! on a locked keychain would then hang a gateway's start or reload; here a helper gets
//! [`HELPER_TIMEOUT`] and is killed after it. A helper that says it has no credentials for
//! the server leaves the request to `auths`, then anonymous, as docker does; one that fails
//! otherwise is an error naming it, not a silent anonymous request that the registry then
//! refuses with a bare 401.

use std::ffi::OsStr;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use oci_client::secrets::RegistryAuth;

use super::Registries;

/// How long a credential helper may take to answer.
pub const HELPER_TIMEOUT: Duration = Duration::from_secs(10);

/// The most a helper's answer may be: a user name and a token fit in a few KiB.
const MAX_ANSWER: usize = 64 * 1024;

/// The server name the docker CLI files Docker Hub's credentials under.
const DOCKER_HUB: &str = "https://index.docker.io/v1/";

/// The credentials for `registry` (`host` or `host:port`), or why they cannot be had.
pub fn auth_for(registry: &str, registries: &Registries) -> Result<RegistryAuth, String> {
    auth_from(registry, registries, docker_config_dir())
}

/// [`auth_for`] with the docker config folder given.
fn auth_from(
    registry: &str,
    registries: &Registries,
    docker_config: Option<PathBuf>,
) -> Result<RegistryAuth, String> {
    if let Some(login) = registries.get(registry)
        && let Some(user) = &login.username
    {
        let password = login
            .password_env
            .as_deref()
            .and_then(|v| std::env::var(v).ok())
            .unwrap_or_default();
        return Ok(RegistryAuth::Basic(user.clone(), password));
    }
    let Some(dir) = docker_config else {
        return Ok(RegistryAuth::Anonymous);
    };
    let path = dir.join("config.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(RegistryAuth::Anonymous);
    };
    let doc: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        format!(
            "{}: not JSON ({e}), so no docker login can be read from it",
            path.display()
        )
    })?;
    from_docker_config(&doc, registry, |helper, server| {
        ask_helper(
            OsStr::new(&format!("docker-credential-{helper}")),
            server,
            HELPER_TIMEOUT,
        )
    })
}

fn docker_config_dir() -> Option<PathBuf> {
    std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")))
}

/// The name the docker CLI keys `registry`'s entries by.
fn server_name(registry: &str) -> &str {
    match registry {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB,
        other => other,
    }
}

/// What a docker `config.json` says for `registry`; `ask` runs a helper by name for a server.
fn from_docker_config(
    doc: &serde_json::Value,
    registry: &str,
    ask: impl Fn(&str, &str) -> Result<Option<RegistryAuth>, String>,
) -> Result<RegistryAuth, String> {
    let server = server_name(registry);
    let helper = doc["credHelpers"][server]
        .as_str()
        .or_else(|| doc["credHelpers"][registry].as_str())
        .or_else(|| doc["credsStore"].as_str())
        .filter(|h| !h.is_empty());
    if let Some(helper) = helper {
        // The name becomes part of a program name looked up on PATH: a path is not a name.
        if helper.contains(['/', '\\']) || helper.starts_with('.') {
            return Err(format!(
                "docker config: credential helper `{helper}` for {registry} is not a helper name"
            ));
        }
        if let Some(auth) = ask(helper, server)
            .map_err(|e| format!("docker credential helper `{helper}` for {registry}: {e}"))?
        {
            return Ok(auth);
        }
    }
    // Docker Hub's entry is filed under its server name; any other under the host.
    let key = if doc["auths"][server].is_null() {
        registry
    } else {
        server
    };
    let Some(auth) = doc["auths"][key]["auth"].as_str().filter(|a| !a.is_empty()) else {
        return Ok(RegistryAuth::Anonymous);
    };
    let (user, password) = B64
        .decode(auth)
        .ok()
        .and_then(|d| String::from_utf8(d).ok())
        .and_then(|d| d.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned())))
        .ok_or_else(|| format!("docker config: auths.{key}.auth is not base64 of user:password"))?;
    Ok(RegistryAuth::Basic(user, password))
}

/// Runs `program get` with `server` on stdin, within `timeout`. `None`: the helper has no
/// credentials for the server.
fn ask_helper(
    program: &OsStr,
    server: &str,
    timeout: Duration,
) -> Result<Option<RegistryAuth>, String> {
    let mut child = Command::new(program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                format!("{} is not on PATH", program.to_string_lossy())
            }
            _ => format!("cannot run {}: {e}", program.to_string_lossy()),
        })?;
    let pid = child.id();
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading leaves a closed pipe: its exit status says why.
        let _ = stdin.write_all(server.as_bytes());
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(timeout) {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => {
            kill(pid);
            return Err(format!(
                "no answer within {} s (killed)",
                timeout.as_secs_f64()
            ));
        }
    };
    if out.stdout.len() > MAX_ANSWER {
        return Err(format!(
            "an answer of {} bytes, over {MAX_ANSWER}",
            out.stdout.len()
        ));
    }
    if !out.status.success() {
        let said = String::from_utf8_lossy(if out.stdout.is_empty() {
            &out.stderr
        } else {
            &out.stdout
        })
        .trim()
        .chars()
        .take(300)
        .collect::<String>();
        // docker-credential-helpers' ErrCredentialsNotFound.
        if said.contains("credentials not found") {
            return Ok(None);
        }
        return Err(format!("exit {}: {said}", out.status));
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Answer {
        username: String,
        secret: String,
    }
    let answer: Answer = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("an answer that is not {{\"Username\", \"Secret\"}} JSON: {e}"))?;
    if answer.username == "<token>" {
        // An identity (refresh) token needs the registry's OAuth2 token exchange, which the
        // registry client does not do.
        return Err(
            "an identity token, which bitrouter cannot use: set plugins.registries.<host> instead"
                .into(),
        );
    }
    Ok(Some(RegistryAuth::Basic(answer.username, answer.secret)))
}

#[allow(unsafe_code)]
fn kill(pid: u32) {
    #[cfg(unix)]
    // SAFETY: kill takes plain integers; the pid is our own child, not yet reaped (the thread
    // waiting for it has not returned).
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGKILL);
    }
    #[cfg(not(unix))]
    let _ = pid;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, password: &str) -> RegistryAuth {
        RegistryAuth::Basic(user.into(), password.into())
    }

    fn same(a: &RegistryAuth, b: &RegistryAuth) -> bool {
        match (a, b) {
            (RegistryAuth::Anonymous, RegistryAuth::Anonymous) => true,
            (RegistryAuth::Basic(u1, p1), RegistryAuth::Basic(u2, p2)) => u1 == u2 && p1 == p2,
            (RegistryAuth::Bearer(t1), RegistryAuth::Bearer(t2)) => t1 == t2,
            _ => false,
        }
    }

    /// One row of a helper table: helper, server, and its answer (user, secret).
    type Row = (
        &'static str,
        &'static str,
        Option<(&'static str, &'static str)>,
    );

    /// A helper on a fixed table: `(helper, server) -> answer`.
    fn helpers(
        table: &'static [Row],
    ) -> impl Fn(&str, &str) -> Result<Option<RegistryAuth>, String> {
        move |helper, server| {
            table
                .iter()
                .find(|(h, s, _)| *h == helper && *s == server)
                .map(|(_, _, a)| a.map(|(u, p)| basic(u, p)))
                .ok_or_else(|| format!("{helper} was not expected for {server}"))
        }
    }

    #[test]
    fn docker_config_order_helper_then_store_then_auths_then_anonymous() {
        let auth = B64.encode("alice:pw");
        let doc = serde_json::json!({
            "credHelpers": { "ecr.example:5000": "ecr", "https://index.docker.io/v1/": "hub" },
            "credsStore": "desktop",
            "auths": { "old.example": { "auth": auth }, "none.example": {} }
        });
        let table: &[Row] = &[
            ("ecr", "ecr.example:5000", Some(("AWS", "token"))),
            ("hub", DOCKER_HUB, Some(("bob", "hubpw"))),
            ("desktop", "old.example", None),
            ("desktop", "none.example", None),
            ("desktop", "store.example", Some(("carol", "x"))),
        ];
        let ask = helpers(table);
        for (registry, want) in [
            ("ecr.example:5000", basic("AWS", "token")),
            ("docker.io", basic("bob", "hubpw")),
            ("store.example", basic("carol", "x")),
            // The store has nothing: auths, then anonymous.
            ("old.example", basic("alice", "pw")),
            ("none.example", RegistryAuth::Anonymous),
        ] {
            let got = from_docker_config(&doc, registry, &ask).unwrap();
            assert!(same(&got, &want), "{registry}: {got:?}");
        }
        // Without helpers, auths alone.
        let doc = serde_json::json!({ "auths": { "old.example": { "auth": B64.encode("a:b") } } });
        let got = from_docker_config(&doc, "old.example", |_, _| unreachable!()).unwrap();
        assert!(same(&got, &basic("a", "b")));
        let got = from_docker_config(&doc, "other.example", |_, _| unreachable!()).unwrap();
        assert!(same(&got, &RegistryAuth::Anonymous));
    }

    #[test]
    fn bad_helper_names_and_auths_are_errors_that_say_what() {
        let doc = serde_json::json!({ "credsStore": "../../bin/sh" });
        let e = from_docker_config(&doc, "r.example", |_, _| unreachable!()).unwrap_err();
        assert!(e.contains("not a helper name"), "{e}");
        for auth in ["!!".to_owned(), B64.encode("no-colon")] {
            let doc = serde_json::json!({ "auths": { "r.example": { "auth": auth } } });
            let e = from_docker_config(&doc, "r.example", |_, _| unreachable!()).unwrap_err();
            assert!(e.contains("auths.r.example.auth is not base64"), "{e}");
        }
        let doc = serde_json::json!({ "credsStore": "broken" });
        let e =
            from_docker_config(&doc, "r.example", |_, _| Err("exit 3: boom".into())).unwrap_err();
        assert!(
            e.contains("docker credential helper `broken` for r.example: exit 3: boom"),
            "{e}"
        );
    }

    #[test]
    fn the_config_login_comes_first_and_a_docker_config_that_is_not_json_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let docker = Some(dir.path().to_path_buf());
        // No config.json: anonymous.
        let got = auth_from("r.example", &Registries::new(), docker.clone()).unwrap();
        assert!(same(&got, &RegistryAuth::Anonymous));
        std::fs::write(dir.path().join("config.json"), "{ not json").unwrap();
        let e = auth_from("r.example", &Registries::new(), docker.clone()).unwrap_err();
        assert!(e.contains("config.json: not JSON"), "{e}");
        // `plugins.registries` wins without reading the docker config.
        let mut registries = Registries::new();
        registries.insert(
            "r.example".into(),
            super::super::RegistryLogin {
                username: Some("ci".into()),
                password_env: Some("BITROUTER_TEST_SURELY_UNSET_PASSWORD".into()),
                plain_http: false,
            },
        );
        let got = auth_from("r.example", &registries, docker).unwrap();
        assert!(same(&got, &basic("ci", "")), "{got:?}");
    }

    /// A helper script in `dir`, made executable.
    #[cfg(unix)]
    fn script(dir: &std::path::Path, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("docker-credential-test");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[cfg(unix)]
    #[test]
    fn a_helper_program_is_asked_over_its_protocol_and_bounded_in_time() {
        let dir = tempfile::tempdir().unwrap();
        let ask = |body: &str, timeout| {
            let path = script(dir.path(), body);
            ask_helper(path.as_os_str(), "r.example:5000", timeout)
        };
        let second = Duration::from_secs(5);
        // The protocol: `get`, the server on stdin, JSON on stdout.
        let got = ask(
            r#"[ "$1" = get ] || exit 9; read server; printf '{"ServerURL":"%s","Username":"u-%s","Secret":"s"}' "$server" "$server""#,
            second,
        )
        .unwrap()
        .unwrap();
        assert!(same(&got, &basic("u-r.example:5000", "s")), "{got:?}");
        // Nothing stored for the server: not an error.
        let got = ask(
            "echo 'credentials not found in native keychain'; exit 1",
            second,
        )
        .unwrap();
        assert!(got.is_none());
        // Failures say what the helper said.
        let e = ask("echo 'keychain locked' >&2; exit 3", second).unwrap_err();
        assert!(e.contains("keychain locked"), "{e}");
        let e = ask("echo not-json", second).unwrap_err();
        assert!(e.contains("not {\"Username\""), "{e}");
        let e = ask(r#"echo '{"Username":"<token>","Secret":"r"}'"#, second).unwrap_err();
        assert!(e.contains("identity token"), "{e}");
        // A helper that never answers is killed at the limit.
        let e = ask("sleep 30", Duration::from_millis(300)).unwrap_err();
        assert!(e.contains("no answer within 0.3 s"), "{e}");
        let e = ask_helper(
            OsStr::new("docker-credential-surely-not-installed"),
            "r",
            second,
        )
        .unwrap_err();
        assert!(e.contains("is not on PATH"), "{e}");
    }
}
