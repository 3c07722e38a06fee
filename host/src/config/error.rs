//! Configuration errors that name the file, the line, the key and what was expected, so a
//! typo is fixed from the message alone.

use std::fmt;
use std::path::{Path, PathBuf};

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read the config file: {error}", file.display())]
    Read {
        /// The config file.
        file: PathBuf,
        // Not named `source` (thiserror would chain it): the message already carries it,
        // and `{:#}` would print it twice.
        /// The I/O error.
        error: std::io::Error,
    },
    /// A value in the file is wrong.
    #[error("{0}")]
    Invalid(Box<Invalid>),
}

/// A value in the file that is wrong: where, and what was expected instead.
#[derive(Debug)]
pub struct Invalid {
    /// The config file.
    pub file: PathBuf,
    /// The line of the key, 1-based, when it can be found.
    pub line: Option<usize>,
    /// The dotted key (`server.listen`, `models.fast.endpoints[0].provider`); empty for a
    /// syntax error.
    pub key: String,
    /// What was expected instead.
    pub message: String,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": `{}`", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl ConfigError {
    /// An [`Invalid`] error at `key` of `file`.
    pub fn invalid(
        file: &Path,
        line: Option<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ConfigError::Invalid(Box::new(Invalid {
            file: file.to_owned(),
            line,
            key: key.into(),
            message: message.into(),
        }))
    }
}

/// Finds the line (1-based) of a dotted key path such as `models.smart.endpoints` in YAML
/// text, by following indentation. serde reports lines for type errors only; checks that run
/// after parsing (an unknown provider, a missing key) use this to point at the line.
pub fn locate(text: &str, path: &str) -> Option<usize> {
    let mut parent_indent: Option<usize> = None;
    let mut start = 0usize;
    let mut found = None;
    let lines: Vec<&str> = text.lines().collect();
    for segment in path.split('.') {
        let (name, index) = match segment.split_once('[') {
            Some((n, i)) => (n, i.trim_end_matches(']').parse::<usize>().ok()),
            None => (segment, None),
        };
        let mut hit = None;
        for (i, line) in lines.iter().enumerate().skip(start) {
            let trimmed = line.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let indent = line.len() - trimmed.len();
            if let Some(p) = parent_indent
                && indent <= p
                && i > start
            {
                break;
            }
            let key = trimmed.trim_start_matches("- ");
            let bare = key
                .split(':')
                .next()
                .unwrap_or("")
                .trim()
                .trim_matches(|c| c == '"' || c == '\'');
            if bare == name
                && key[bare.len()..]
                    .trim_start_matches(['"', '\''])
                    .starts_with(':')
            {
                hit = Some((i, indent));
                break;
            }
        }
        let (mut line, indent) = hit?;
        if let Some(want) = index {
            // Walk to the want-th `- ` item under this key.
            let mut seen = 0;
            let mut item = None;
            for (i, l) in lines.iter().enumerate().skip(line + 1) {
                let t = l.trim_start();
                if t.is_empty() || t.starts_with('#') {
                    continue;
                }
                if l.len() - t.len() <= indent && !t.starts_with("- ") {
                    break;
                }
                if t.starts_with("- ") {
                    if seen == want {
                        item = Some(i);
                        break;
                    }
                    seen += 1;
                }
            }
            line = item.unwrap_or(line);
            parent_indent = Some(lines[line].len() - lines[line].trim_start().len());
            start = line;
            found = Some(line + 1);
            continue;
        }
        parent_indent = Some(indent);
        start = line + 1;
        found = Some(line + 1);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_nested_keys_and_list_items() {
        let text = "server:\n  listen: x\nmodels:\n  fast:\n    endpoints:\n      - provider: a\n        model_id: m\n      - provider: b\n        model_id: n\n";
        assert_eq!(locate(text, "server.listen"), Some(2));
        assert_eq!(locate(text, "models.fast"), Some(4));
        assert_eq!(locate(text, "models.fast.endpoints[1]"), Some(8));
        assert_eq!(locate(text, "models.fast.endpoints[1].model_id"), Some(9));
        assert_eq!(locate(text, "models.slow"), None);
    }
}
