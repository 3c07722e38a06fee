//! `credentials`: passwords written inline, in text the model will see (default action: block).
//!
//! Detects three shapes; the finding's span is the **secret only** (the password, the
//! base64 token), so `redact` keeps the surrounding structure readable
//! (`postgres://app:[REDACTED:credentials]@db/prod`):
//!
//! 1. **Assignments** of a password-named key: `password`, `passwd`, `passphrase` (also as
//!    the end of a longer key: `DB_PASSWORD`, `PGPASSWORD`, `userPassword`,
//!    `spring.datasource.password`, `--password`) and the ambiguous short names `pass` and
//!    `pwd` (only as a whole word and only with `=`), followed by `=`, `:`, `:=` or `=>`, the
//!    key and the value optionally quoted: `password=hunter2`, `"password": "s3cr3t pass"`,
//!    `POSTGRES_PASSWORD: hunter2`, `Password=secret;` (ADO.NET), `?user=a&password=b`.
//! 2. **HTTP basic auth**: `Basic <base64>` whose base64 decodes to printable `user:password`.
//! 3. **Credentials in URLs** and connection strings: `scheme://user:password@host` for any
//!    scheme (postgres, postgresql, mysql, mongodb, mongodb+srv, redis, rediss, amqp, amqps,
//!    https, ftp, …), including an empty user (`redis://:secret@host`).
//!
//! Precision rules in `check` (code, logs and prose are full of the word "password"):
//! * values that are not literals: variables and attribute paths (`password=password,`,
//!   `password=self.password`, `password: args.pw`), calls (`getpass()`), type annotations
//!   (`password: str`, `password: String,`, `password: Option<String>`), a spaced `=` with a
//!   letters-only value (`username, password = auth`: code; so an INI line
//!   `password = secret` is missed, `password = s3cret` is not), templates and
//!   environment references (`${DB_PASS}`, `$PASSWORD`, `{{ .Values.password }}`,
//!   `%(password)s`, `%PASSWORD%`), comparisons (`password == x`), paths (`/run/secrets/x`);
//! * placeholders and masks: `***`, `xxxx`, `...`, `<password>`, `[REDACTED]`, `changeme`
//!   is a real password (flagged) but `password`, `pass`, `secret`, `your_password…`,
//!   `redacted`, `null`, `none`, `true`, … are not;
//! * prose: an unquoted all-letter value followed by more words (`Password: must be 8
//!   characters`) is a sentence, not a leak; `bypass=`, `compass:` and `pass`/`pwd` glued to
//!   a preceding letter are not password keys; `PASS: TestFoo` (test output) is not an
//!   assignment (`pass` needs `=`); keys that name a hash (`hashed_password`,
//!   `password_hash` never matches) are skipped;
//! * basic auth must decode to printable `user:password` (so "Basic authentication" is
//!   not a header); URL passwords follow the same placeholder rules, and `host:port@` or a
//!   multi-host `host:1,host2:2@` is not a user and password.
//!
//! Deliberately not detected: passwords in prose (`my password is hunter2`), SQL
//! (`IDENTIFIED BY 'x'`, `WITH PASSWORD 'x'`), command-line flags with a space
//! (`--password hunter2`, `mysql -phunter2`), scheme-less DSNs (`user:pass@tcp(host)/db`),
//! bearer tokens and generic `secret=`/`token=` assignments (too broad to block by default;
//! `api_keys` covers the vendor tokens).

use bitrouter_plugin::guardrail::*;

const ID: &str = "credentials";

const REGEX: &str = concat!(
    // 1. key, optional closing quote, separator, optional opening quote, value.
    r#"(?i:pass(?:word|wd|phrase)?|pwd)["']?[ \t]{0,4}(?::=|=>|[:=])[ \t]{0,4}"#,
    r#"(?:"[^"\r\n]{1,128}"|'[^'\r\n]{1,128}'|[\x21\x23-\x25\x2A\x2B\x2D-\x3A\x3D\x3F-\x5F\x61-\x7E]{1,128})"#,
    // 2. basic auth.
    r"|(?i:basic)[ \t]{1,4}[A-Za-z0-9+/]{8,256}={0,2}",
    // 3. userinfo of a URL: starts at the literal `://`; `check` finds the scheme before it.
    // (printable ASCII but for `"#'/:<>?@`: RFC 3986 userinfo is percent-encoded ASCII)
    r"|://[\x21\x24-\x26\x28-\x2E\x30-\x39\x3B\x3D\x41-\x7E]{0,64}:[\x21\x24-\x26\x28-\x2E\x30-\x3B\x3D\x41-\x7E]{1,128}@",
);
/// A quoted value may be 128 characters of any script (4 bytes each): 10 + 1 + 4 + 2 + 4 +
/// 1 + 512 + 1 = 535 bytes; the other shapes are ASCII and shorter.
const MAX_LEN: u32 = 544;

struct Credentials;

impl Guardrail for Credentials {
    fn describe() -> Vec<Pattern> {
        vec![
            Pattern::new(
                ID,
                "Inline passwords, HTTP basic-auth headers, credentials in URLs and database \
                 connection strings",
            )
            .directions(Directions::REQUEST)
            .action(Action::Block)
            .regex(REGEX)
            .max_match_len(MAX_LEN),
        ]
    }

    fn check(_pattern: &str, text: &str, candidates: Vec<Span>) -> Vec<Finding> {
        candidates
            .into_iter()
            .filter_map(|span| {
                let m = span.range();
                let secret = if text[m.clone()].starts_with("://") {
                    url_password(text, m)
                } else if text.as_bytes()[m.start].eq_ignore_ascii_case(&b'b') {
                    basic_auth(text, m)
                } else {
                    assignment(text, m)
                }?;
                Some(Finding::new(ID, Span::new(secret.start, secret.end)))
            })
            .collect()
    }
}

type Range = core::ops::Range<usize>;

// ------------------------------------------------------------------ 1. assignments

fn assignment(text: &str, m: Range) -> Option<Range> {
    let bytes = text.as_bytes();
    let s = &bytes[m.clone()];
    let key_len = s.iter().take_while(|b| b.is_ascii_alphabetic()).count();
    let key = s[..key_len].to_ascii_lowercase();
    let before = m.start.checked_sub(1).map(|i| bytes[i]);
    let ambiguous = key == b"pass" || key == b"pwd";
    if ambiguous && before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'$') {
        return None; // bypass=, compass:, cwd/pwd inside identifiers
    }
    // `passwordless`, `passwords` are not matched by the regex; hashes are not passwords.
    let ident_start = bytes[..m.start]
        .iter()
        .rposition(|b| !(b.is_ascii_alphanumeric() || *b == b'_' || *b == b'.' || *b == b'-'))
        .map_or(0, |i| i + 1);
    let prefix = bytes[ident_start..m.start].to_ascii_lowercase();
    if contains(&prefix, b"hash") || contains(&prefix, b"salt") || contains(&prefix, b"confirm") {
        return None;
    }

    // Separator and quotes.
    let mut i = key_len;
    let key_quote = matches!(s.get(i), Some(b'"' | b'\''));
    if key_quote {
        i += 1;
    }
    while matches!(s.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    let spaced = i > key_len + usize::from(key_quote);
    let sep_start = i;
    while matches!(s.get(i), Some(b':' | b'=' | b'>')) {
        i += 1;
    }
    let sep = &s[sep_start..i];
    let spaced = spaced || matches!(s.get(i), Some(b' ' | b'\t'));
    if !matches!(sep, b"=" | b":" | b":=" | b"=>") {
        return None; // `password == x`, `password=>>`
    }
    if ambiguous && sep != b"=" {
        return None; // `PASS: TestFoo`, `pwd: /home/me`
    }
    while matches!(s.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    let quote = matches!(s.get(i), Some(b'"' | b'\''));
    let value = if quote {
        m.start + i + 1..m.end - 1
    } else {
        m.start + i..m.end
    };
    let v = &bytes[value.clone()];
    if v.first() == Some(&b'=') {
        return None; // `password == x`
    }
    if placeholder(v) {
        return None;
    }
    if !quote && !unquoted_literal(text, v, value.end, spaced, sep != b":") {
        return None;
    }
    if ambiguous && !quote && v.iter().all(u8::is_ascii_digit) {
        return None; // `pass = 0`, a counter
    }
    Some(value)
}

/// An unquoted value that is a literal password, not code or prose.
fn unquoted_literal(text: &str, v: &[u8], end: usize, spaced: bool, sep_eq: bool) -> bool {
    let bytes = text.as_bytes();
    let next = bytes.get(end).copied();
    if v.len() < 3 {
        return false;
    }
    let ident = |w: &[u8]| {
        !w.is_empty()
            && (w[0].is_ascii_alphabetic() || w[0] == b'_')
            && w.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_')
    };
    // Calls, generics, indexing: `getpass()`, `Option<String>`.
    if matches!(next, Some(b'(' | b'<')) {
        return false;
    }
    // Attribute paths: `self.password`, `process.env.DB_PASS`, `z.string`.
    if v.contains(&b'.') && v.split(|&b| b == b'.').all(ident) {
        return false;
    }
    if v.contains(&b'[') || v.contains(&b'{') {
        return false;
    }
    if ident(v) {
        // Keyword arguments and fields passing a variable through: `password=password,`,
        // `login(user, pwd=pw)`, `password = input;` (but `Password=secret;` in a
        // connection string is a literal), `password: A | B`.
        if matches!(next, Some(b',' | b')' | b'|')) || (next == Some(b';') && spaced) {
            return false;
        }
        // `username, password = auth`: a code assignment from a variable (letters and `_`
        // only, no digits); `PASSWORD=secret` (no spaces) and `password = hunter2` (INI) stand.
        if spaced && sep_eq && v.iter().all(|b| b.is_ascii_alphabetic() || *b == b'_') {
            return false;
        }
        // A variable named after the secret: `db_password`, `dbPassword`, `DB_PASS` (but
        // `mailpass99` is a literal).
        let lower = v.to_ascii_lowercase();
        let named =
            contains(&lower, b"pass") || contains(&lower, b"pwd") || contains(&lower, b"secret");
        let compound = v.contains(&b'_')
            || v.windows(2)
                .any(|w| w[0].is_ascii_lowercase() && w[1].is_ascii_uppercase());
        if named && compound {
            return false;
        }
    }
    // Prose: `Password: must be at least 8 characters`.
    if v.iter().all(u8::is_ascii_alphabetic)
        && next == Some(b' ')
        && bytes.get(end + 1).is_some_and(u8::is_ascii_alphabetic)
    {
        return false;
    }
    // Paths and URLs are not passwords.
    !(v[0] == b'/' || v.starts_with(b"~/") || v.starts_with(b"./") || contains(v, b"://"))
}

/// Masks, templates and well-known placeholder words.
fn placeholder(v: &[u8]) -> bool {
    if v.is_empty() {
        return true;
    }
    if v.iter().all(|b| {
        matches!(
            b,
            b'*' | b'x' | b'X' | b'.' | b'#' | b'-' | b'_' | b'?' | b'0'
        )
    }) {
        return true;
    }
    if matches!(v[0], b'$' | b'%' | b'{' | b'<' | b'[' | b'@' | b'#') {
        return true;
    }
    if contains(v, b"{{") || contains(v, b"${") || contains(v, b"***") || contains(v, b"...") {
        return true;
    }
    let lower = v.to_ascii_lowercase();
    const WORDS: &[&[u8]] = &[
        b"password",
        b"passwd",
        b"pass",
        b"pwd",
        b"passphrase",
        b"secret",
        b"redacted",
        b"hidden",
        b"masked",
        b"removed",
        b"filtered",
        b"null",
        b"none",
        b"nil",
        b"undefined",
        b"true",
        b"false",
        b"required",
        b"optional",
        b"string",
        b"str",
        b"&str",
        b"bool",
        b"int",
        b"number",
        b"text",
        b"any",
        b"bytes",
        b"secretstr",
        b"secretstring",
        b"char",
        b"varchar",
        b"object",
        b"env",
        b"todo",
        b"tbd",
        b"example",
        b"sample",
        b"placeholder",
        b"mypassword",
        b"my_password",
        b"my-password",
        b"new_password",
        b"old_password",
        b"user_password",
        b"db_password",
        b"enter",
        b"empty",
        b"blank",
        b"value",
    ];
    if WORDS.contains(&lower.as_slice()) {
        return true;
    }
    lower.starts_with(b"your") || lower.starts_with(b"<your") || lower.starts_with(b"insert")
}

// ------------------------------------------------------------------ 2. basic auth

fn basic_auth(text: &str, m: Range) -> Option<Range> {
    let bytes = text.as_bytes();
    if m.start > 0 && bytes[m.start - 1].is_ascii_alphanumeric() {
        return None;
    }
    if bytes
        .get(m.end)
        .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-')
    {
        return None;
    }
    let token_start = m.start
        + 5
        + bytes[m.start + 5..m.end]
            .iter()
            .take_while(|b| **b == b' ' || **b == b'\t')
            .count();
    let token = &bytes[token_start..m.end];
    let decoded = base64(token)?;
    let text = core::str::from_utf8(&decoded).ok()?;
    if text.chars().any(|c| c.is_control()) {
        return None;
    }
    let (user, password) = text.split_once(':')?;
    if user.is_empty() || user.len() > 128 || user.contains(' ') || password.is_empty() {
        return None;
    }
    if placeholder(password.as_bytes()) {
        return None;
    }
    Some(token_start..m.end)
}

fn base64(token: &[u8]) -> Option<Vec<u8>> {
    let data: &[u8] = {
        let mut end = token.len();
        while end > 0 && token[end - 1] == b'=' {
            end -= 1;
        }
        &token[..end]
    };
    if data.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(data.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for &b in data {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

// ------------------------------------------------------------------ 3. URLs

fn url_password(text: &str, m: Range) -> Option<Range> {
    let bytes = text.as_bytes();
    // The scheme before `://`: a letter, then letters, digits, `+`, `-`, `.`.
    let scheme_start = bytes[..m.start]
        .iter()
        .rposition(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')))
        .map_or(0, |i| i + 1);
    let scheme = &bytes[scheme_start..m.start];
    if scheme.is_empty() || scheme.len() > 32 || !scheme[0].is_ascii_alphabetic() {
        return None;
    }
    // A host must follow the `@`.
    if !bytes
        .get(m.end)
        .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'[' || *b == b'_')
    {
        return None;
    }
    let userinfo = &bytes[m.start + 3..m.end - 1];
    let colon = userinfo.iter().position(|&b| b == b':')?;
    let (user, password) = (&userinfo[..colon], &userinfo[colon + 1..]);
    if placeholder(password) {
        return None;
    }
    // `http://host:8080@…` is a host and a port, not a user and a password; nor is
    // `https://host:123,host2:456@…` (a multi-host URL).
    let port = password.iter().take_while(|b| b.is_ascii_digit()).count();
    if user.contains(&b'.')
        && port > 0
        && port <= 5
        && (port == password.len() || password[port] == b',')
    {
        return None;
    }
    let start = m.start + 3 + colon + 1;
    Some(start..m.end - 1)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

bitrouter_plugin::export_guardrail!(Credentials);
