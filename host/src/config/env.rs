//! `${VAR}` expansion: the process environment first, then the `.env` beside the config.

use std::collections::HashMap;
use std::path::Path;

/// Environment lookups: the process environment first, then the `.env` beside the config.
pub(super) struct Env {
    dotenv: HashMap<String, String>,
}

impl Env {
    pub(super) fn load(config_dir: Option<&Path>) -> Self {
        let mut dotenv = HashMap::new();
        if let Some(dir) = config_dir
            && let Ok(iter) = dotenvy::from_path_iter(dir.join(".env"))
        {
            dotenv.extend(iter.flatten());
        }
        Env { dotenv }
    }

    pub(super) fn get(&self, name: &str) -> Option<String> {
        std::env::var(name)
            .ok()
            .or_else(|| self.dotenv.get(name).cloned())
            .filter(|v| !v.is_empty())
    }

    /// Expands `${VAR}` and `${VAR:-default}`; an unset variable expands to nothing.
    pub(super) fn expand(&self, s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            match after.find('}') {
                Some(end) => {
                    let inner = &after[..end];
                    let (name, default) = match inner.split_once(":-") {
                        Some((n, d)) => (n, Some(d)),
                        None => (inner, None),
                    };
                    match self.get(name.trim()) {
                        Some(v) => out.push_str(&v),
                        None => out.push_str(default.unwrap_or("")),
                    }
                    rest = &after[end + 1..];
                }
                None => {
                    out.push_str(&rest[start..]);
                    rest = "";
                }
            }
        }
        out.push_str(rest);
        out
    }

    pub(super) fn expand_opt(&self, s: Option<&String>) -> Option<String> {
        s.map(|s| self.expand(s)).filter(|s| !s.is_empty())
    }
}
