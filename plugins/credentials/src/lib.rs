//! `credentials`: passwords written inline, in text the model will see (default action: block).
//!
//! The finding's span is the **secret only** (the password, the base64 token), so `redact`
//! keeps the surrounding structure readable (`postgres://app:[REDACTED:credentials]@db/prod`).
//! The host's regex finds candidates, one alternative per shape family, each starting with
//! a keyword or a literal where the shape has one; `check` parses the shape around the
//! candidate and applies the precision rules. The families, one module each:
//!
//! * [`assignment`]: a password-named key and a value: `password=hunter2`,
//!   `"password": "s3cr3t pass"`, `POSTGRES_PASSWORD: hunter2`, `Password=secret;`
//!   (ADO.NET), `?user=a&password=b`, `--password=x`, `pass=`/`pwd=` as whole words; XML and
//!   .NET config (`<add key="DbPassword" value="…"/>`, `<password>…</password>`).
//! * [`spaced`]: the keyword followed by a space: `--password X` (command-line flags),
//!   `.netrc` (`machine h login u password X`), SQL `WITH PASSWORD 'X'`, prose ("the admin
//!   password for staging is X", "Password for the VPN: X", "use X as the password") and
//!   `echo X | docker login --password-stdin`.
//! * [`command_line`]: tools whose short flags carry a password: `curl -u user:X`,
//!   `sshpass -p X`, `redis-cli -a X`, `mysql -pX`, `htpasswd -b file user X`,
//!   `ldapsearch -w X`, `sqlcmd -P X`, `docker login -p X`.
//! * [`connection`]: `scheme://user:X@host` URLs (a raw `#` in the password included),
//!   HTTP `Basic <base64 of user:X>`, SQL `IDENTIFIED BY 'X'`, Oracle `user/X@//host:port/svc`
//!   (`sqlplus user/X@alias` is a command line), and `.pgpass` lines `host:port:db:user:X`.
//!
//! What is not a password (see each module for its own rules): code (variables, attribute
//! paths, calls, type annotations, comparisons), templates and environment references
//! (`${DB_PASS}`, `$PASSWORD`, `{{ .Values.password }}`, `%(password)s`, `%PASSWORD%`),
//! placeholders and masks ([`placeholder`]: `***`, `<password>`, `<redacted>`, `changeme`,
//! `replace-me`, `your_password…`), YAML tags (`!vault |` with its `$ANSIBLE_VAULT` body,
//! `!secret name`), hashes (`hashed_password`), prose without a literal ("the password is
//! stored in Vault"), paths and URLs.
//!
//! Deliberately not detected: bearer tokens and generic `secret=`/`token=` assignments (too
//! broad to block by default; `api_keys` covers the vendor tokens), an all-lower-case word
//! given as a password in prose ("my password is sunshine": indistinguishable from a
//! sentence), scheme-less DSNs (`user:pass@tcp(host)/db`).

use bitrouter_plugin::guardrail::*;

mod assignment;
mod command_line;
mod connection;
mod spaced;
mod text;

const ID: &str = "credentials";

/// One alternative per shape family, each as short as tells the family apart and starting
/// with a literal: `check` reads the rest of the shape from the text. Two budgets decide
/// the form, both measured on the clean corpus (best of 15 runs):
/// * with the six other default patterns as one automaton (the engine's first pass): an
///   alternative that can start at any letter multiplies its states (an Oracle `user/secret@`
///   read from the user: 491 → 2 MB/s; full value classes in every alternative: 671 → 530);
///   these short ones cost 3 % (690 → 667 MB/s);
/// * alone (the pass that collects this pattern's candidates once the first pass hit): its
///   literal prefixes must stay few enough for the regex crate's Teddy prefilter. Every
///   case-insensitive keyword spelled out (`(?i:password)`: 256 variants) or a bare `@`
///   dropped it to 630–700 MB/s; the spellings below (`[Pp]ass|PASS`) keep it at 3.2 GB/s
///   (the first wave's three alternatives: 3.2–4.6 GB/s).
const REGEX: &str = concat!(
    // The keywords: `password`, `passwd`, `passphrase` (assignments, XML, escaped JSON, flags,
    // .netrc, SQL, prose, CSV headers), and the short keys `pass`/`pwd` with a separator
    // (`pass=`, `pwd:`, `pass\":`) or as a CSV header field (`pass,`).
    r#"(?:[Pp]ass|PASS)(?:(?i:word|wd|phrase)|["']?[ \t]{0,4}(?:[:=]|\\{1,8}")|[,;\t\r\n])"#,
    r#"|(?:[Pp]wd|PWD)(?:["']?[ \t]{0,4}(?:[:=]|\\{1,8}")|[,;\t\r\n])"#,
    // HTTP basic auth.
    r"|(?:[Bb]asic|BASIC)[ \t]{1,4}[A-Za-z0-9+/]{8}",
    // The userinfo of a URL, from the literal `://` (`check` finds the scheme before it):
    // printable ASCII but for `"'/:<>?@` (and `#` in the user).
    r"|://[\x21\x24-\x26\x28-\x2E\x30-\x39\x3B\x3D\x41-\x7E]{0,64}:[\x21\x23-\x26\x28-\x2E\x30-\x3B\x3D\x41-\x7E]{1,128}@",
    // SQL `IDENTIFIED [WITH plugin] BY 'secret'`.
    r"|(?:[Ii]dentified|IDENTIFIED)[ \t]",
    // Oracle `user/secret@//host…`, JDBC `thin:user/secret@…`, `user/secret@host:1521/svc`:
    // `check` reads `user/secret` around them.
    r"|@//[A-Za-z0-9_.-]|:thin:[A-Za-z]|:1521[/:]",
    // `.pgpass` named: the entry before it on its line, or the file's lines after it.
    r"|\.pgpass",
    // Tools whose short flags carry a password (` login`: `docker login` and its kin).
    r"|(?:curl|sshpass|redis-cli|mysql[a-z]{0,6}|mariadb(?:-dump)?|htpasswd|sqlcmd|ldap[a-z]{3,6}",
    r"|sqlplus|rman|expdp|impdp|sqlldr|dgmgrl| login)[ \t]",
    // A CSV header's column named `secret`.
    r"|(?:[Ss]ecret|SECRET)[,;\t\r\n]",
);
/// The longest alternative: the URL's 3 + 64 + 1 + 128 + 1. Findings are values of at most
/// 128 characters (4 bytes each in any script) and may lie outside the match.
const MAX_LEN: u32 = 544;

struct Credentials;

impl Guardrail for Credentials {
    fn describe() -> Vec<Pattern> {
        vec![
            Pattern::new(
                ID,
                "Passwords: assignments, command-line flags, connection strings and URLs, \
                 HTTP basic auth, SQL, .netrc and .pgpass, XML config, prose",
            )
            .directions(Directions::REQUEST)
            .action(Action::Block)
            .regex(REGEX)
            .max_match_len(MAX_LEN),
        ]
    }

    fn check(_pattern: &str, text: &str, candidates: Vec<Span>) -> Vec<Finding> {
        let mut secrets: Vec<Range> = Vec::new();
        let mut read_to = 0;
        for span in candidates {
            let m = span.range();
            if m.start < read_to {
                continue; // inside a value an earlier candidate read
            }
            let (found, end) = secrets_of(text, m.clone());
            read_to = read_to.max(end);
            for secret in found {
                if !secrets
                    .iter()
                    .any(|s| s.start < secret.end && secret.start < s.end)
                {
                    secrets.push(secret);
                }
            }
        }
        secrets.retain(|s| s.len() <= MAX_LEN as usize);
        secrets.sort_by_key(|s| s.start);
        secrets
            .into_iter()
            .map(|s| Finding::new(ID, Span::new(s.start, s.end)))
            .collect()
    }
}

type Range = core::ops::Range<usize>;

/// The secrets one candidate stands for, and where the text it read ends: its first bytes
/// say which family's shape to read.
fn secrets_of(text: &str, m: Range) -> (Vec<Range>, usize) {
    let end = m.end;
    let s = &text.as_bytes()[m.clone()];
    let keyword = text::keyword_len(s);
    if keyword > 0 {
        if let Some((found, read_to)) = assignment::shape(text, m.start) {
            return (found.into_iter().collect(), read_to);
        }
    }
    (secrets_of_shape(text, m, keyword), end)
}

fn secrets_of_shape(text: &str, m: Range, keyword: usize) -> Vec<Range> {
    let s = &text.as_bytes()[m.clone()];
    if s.starts_with(b"://") {
        return connection::url_password(text, m).into_iter().collect();
    }
    if s.starts_with(b"@//") || s.starts_with(b":thin:") || s.starts_with(b":1521") {
        return connection::oracle(text, m).into_iter().collect();
    }
    if s == b".pgpass" {
        return connection::pgpass_named(text, m);
    }
    if command_line::is_tool(s) {
        return command_line::secrets(text, m);
    }
    if let Some(field) = csv_header_field(text, s, m.clone()) {
        return spaced::csv_column(text.as_bytes(), field).unwrap_or_default();
    }
    if keyword > 0 {
        if keyword >= 6 {
            return spaced::secrets(text, m.start..m.start + keyword);
        }
        return Vec::new();
    }
    let found =
        connection::basic_auth(text, m.clone()).or_else(|| connection::identified_by(text, m));
    found.into_iter().collect()
}

/// The header field of a `secret,` candidate (without its separator), when a separator or
/// the line's start is before it.
fn csv_header_field(text: &str, s: &[u8], m: Range) -> Option<Range> {
    let sep = |b: &u8| matches!(b, b',' | b';' | b'\t' | b'\r' | b'\n');
    if !sep(s.last()?) {
        return None;
    }
    let field = m.start..m.end - 1;
    let names: [&[u8]; 5] = [b"secret", b"pass", b"pwd", b"password", b"passwd"];
    let before = m.start.checked_sub(1).map(|i| text.as_bytes()[i]);
    let named = names
        .iter()
        .any(|n| s[..s.len() - 1].eq_ignore_ascii_case(n));
    (named && before.is_none_or(|b| sep(&b))).then_some(field)
}

bitrouter_plugin::export_guardrail!(Credentials);
