//! Connection strings and their relatives:
//!
//! * URLs `scheme://user:X@host` for any scheme (postgres, mysql, mongodb+srv, redis, amqp,
//!   https, ftp, …), an empty user included (`redis://:X@host`), a raw `#` in the password
//!   too (`postgres://u:ab#cd@host/db`: the user did not percent-encode it). `host:port@`
//!   and a multi-host `host:1,host2:2@` are not a user and a password.
//! * HTTP basic auth: `Basic <base64>` that decodes to printable `user:X` (so "Basic
//!   authentication" is not a header).
//! * SQL `IDENTIFIED BY 'X'` (MySQL/MariaDB/Oracle; `IDENTIFIED WITH plugin BY 'X'`);
//!   `IDENTIFIED BY PASSWORD '*hash'` is a hash.
//! * Oracle connect strings: `user/X@//host:port/service`, `user/X@host:port/service`,
//!   `jdbc:oracle:thin:user/X@host:1521:SID` (`user/X@alias` after `sqlplus` and friends is
//!   read by `command_line`). Not `@scope/pkg@1`, `github.com/org/repo@v1` (a path before
//!   the user), `image/name@sha256:…` (no port after the `@`).
//! * `.pgpass` lines `host:port:database:user:X` (`*` wildcards allowed): a line of its own
//!   (indented at most), or the entry before `>> ~/.pgpass` on its line.
//!
//! URL, SQL and Oracle passwords follow the placeholder rules ([`placeholder`]).

use crate::Range;
use crate::text::{line_end, line_start, placeholder, word};

pub fn basic_auth(text: &str, m: Range) -> Option<Range> {
    let bytes = text.as_bytes();
    let s = &bytes[m.clone()];
    if !(s.len() > 6 && s[..5].eq_ignore_ascii_case(b"basic") && matches!(s[5], b' ' | b'\t')) {
        return None;
    }
    // The regex took 8 characters of the token: the rest is up to 256 and `=` padding.
    let b64 = |b: &u8| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/';
    let token_start = m.end - 8;
    let run = bytes[token_start..]
        .iter()
        .take(256)
        .take_while(|b| b64(b))
        .count();
    let pad = bytes[token_start + run..]
        .iter()
        .take(2)
        .take_while(|&&b| b == b'=')
        .count();
    let m = m.start..token_start + run + pad;
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

pub fn url_password(text: &str, m: Range) -> Option<Range> {
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

/// `IDENTIFIED [WITH plugin] BY 'secret'`: the candidate is `identified` and a blank.
pub fn identified_by(text: &str, m: Range) -> Option<Range> {
    let bytes = text.as_bytes();
    if !(m.len() == 11 && bytes[m.start..m.start + 10].eq_ignore_ascii_case(b"identified")) {
        return None;
    }
    if m.start > 0 && bytes[m.start - 1].is_ascii_alphanumeric() {
        return None;
    }
    let end = line_end(bytes, m.end);
    let mut w = word(bytes, m.end, end)?;
    if bytes[w.range.clone()].eq_ignore_ascii_case(b"with") {
        let plugin = word(bytes, w.next, end)?;
        w = word(bytes, plugin.next, end)?;
    }
    if !bytes[w.range.clone()].eq_ignore_ascii_case(b"by") {
        return None;
    }
    let w = word(bytes, w.next, end)?;
    let mut value = w.range.clone();
    if !w.quoted {
        // `BY secret;` — the statement's end is not the password's.
        while value.end > value.start && matches!(bytes[value.end - 1], b';' | b',') {
            value.end -= 1;
        }
    }
    let v = &bytes[value.clone()];
    if v.len() < 3 || v.len() > 128 || placeholder(v) || v.eq_ignore_ascii_case(b"password") {
        return None;
    }
    if !w.quoted && v.starts_with(b"*") {
        return None;
    }
    Some(value)
}

/// Oracle, from the candidate: `@//host` (the `@` is the candidate's start), `:thin:user/…@`
/// (the `@` after it), `host:1521/` (the `@` before the host).
pub fn oracle(text: &str, m: Range) -> Option<Range> {
    let bytes = text.as_bytes();
    let s = &bytes[m.clone()];
    let at = if s.starts_with(b"@//") {
        m.start
    } else if s.starts_with(b":thin:") {
        let from = m.start + 6;
        from + bytes[from..(from + 100).min(bytes.len())]
            .iter()
            .take_while(|b| !b.is_ascii_whitespace() && !matches!(b, b'"' | b'\''))
            .position(|&b| b == b'@')?
    } else {
        // `:1521/`: back over the host name to its `@`.
        let host = bytes[..m.start]
            .iter()
            .rev()
            .take(128)
            .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
            .count();
        let at = m.start.checked_sub(host + 1)?;
        (host > 0 && bytes[at] == b'@').then_some(at)?
    };
    oracle_secret(bytes, at)
}

/// The secret of `user/secret` ending right before `at` (an `@`, or the word's end for a
/// local `sqlplus user/secret`).
pub fn oracle_secret(bytes: &[u8], at: usize) -> Option<Range> {
    let slash = bytes[at.saturating_sub(65)..at]
        .iter()
        .rposition(|&b| b == b'/')?
        + at.saturating_sub(65);
    let value = slash + 1..at;
    let v = &bytes[value.clone()];
    if v.iter()
        .any(|b| b.is_ascii_whitespace() || matches!(b, b'"' | b'\'' | b'`' | b'@'))
    {
        return None;
    }
    let user_start = bytes[..slash]
        .iter()
        .rposition(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'_' | b'$' | b'#')))
        .map_or(0, |i| i + 1);
    let user = &bytes[user_start..slash];
    if user.is_empty() || user.len() > 30 || !user[0].is_ascii_alphabetic() {
        return None;
    }
    // `@scope/pkg@1`, `org/repo@v1`, `a.b/c@d`: a path or a package, not a user.
    let before = user_start.checked_sub(1).map(|i| bytes[i]);
    if before.is_some_and(|b| matches!(b, b'@' | b'/' | b'.' | b'-' | b'~' | b'\\')) {
        return None;
    }
    if v.len() < 3 || placeholder(v) {
        return None;
    }
    Some(value)
}

/// `.pgpass` named: the entry before the name on its line (`echo '…' >> ~/.pgpass`), and
/// the file's lines after it (`cat ~/.pgpass`, a `# ~/.pgpass` heading).
pub fn pgpass_named(text: &str, m: Range) -> Vec<Range> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let start = line_start(bytes, m.start);
    let line = &bytes[start..m.start];
    // The last word of the line before the name holding four `:`.
    if let Some(entry) = line
        .split(|b| b.is_ascii_whitespace())
        .filter(|w| w.iter().filter(|&&b| b == b':').count() >= 4)
        .next_back()
    {
        let entry_start = start + (entry.as_ptr() as usize - line.as_ptr() as usize);
        if let Some(v) = pgpass_entry(bytes, entry_start..entry_start + entry.len(), false) {
            found.push(v);
        }
    }
    found.extend(pgpass_lines(bytes, line_end(bytes, m.end)));
    found
}

/// The entries of a `.pgpass` file from `pos` on: up to 100 lines of entries, comments and
/// blank lines, to the first line that is none of these.
pub fn pgpass_lines(bytes: &[u8], pos: usize) -> Vec<Range> {
    let mut found = Vec::new();
    for line in crate::text::lines_after(bytes, pos).take(100) {
        let content = bytes[line.clone()].trim_ascii();
        if content.is_empty() || content.starts_with(b"#") {
            continue;
        }
        let lead = line.len() - bytes[line.clone()].trim_ascii_start().len();
        match pgpass_entry(
            bytes,
            line.start + lead..line.start + lead + content.len(),
            true,
        ) {
            Some(v) => found.push(v),
            None => break,
        }
    }
    found
}

/// `host:port:database:user:secret` (quotes around it allowed): the secret. On a line of its
/// own (`strict`), the host must look like one: `*`, `localhost` or a dotted name.
fn pgpass_entry(bytes: &[u8], mut entry: Range, strict: bool) -> Option<Range> {
    while entry.start < entry.end && matches!(bytes[entry.start], b'"' | b'\'') {
        entry.start += 1;
    }
    let fields: Vec<&[u8]> = bytes[entry.clone()].splitn(5, |&b| b == b':').collect();
    let [host, port, db, user, secret] = fields[..] else {
        return None;
    };
    let host_ok = !host.is_empty()
        && !host.iter().any(u8::is_ascii_whitespace)
        && (!strict
            || host == b"*"
            || host.eq_ignore_ascii_case(b"localhost")
            || (host.contains(&b'.') && host.iter().any(u8::is_ascii_alphabetic)));
    let port_ok = port == b"*"
        || (!port.is_empty() && port.len() <= 5 && port.iter().all(u8::is_ascii_digit));
    if !host_ok
        || !port_ok
        || db.is_empty()
        || user.is_empty()
        || secret.iter().any(u8::is_ascii_whitespace)
    {
        return None;
    }
    pgpass_value(bytes, entry.end - secret.len()..entry.end)
}

fn pgpass_value(bytes: &[u8], mut value: Range) -> Option<Range> {
    // A closing quote of `echo '…'` is not part of the password.
    while value.end > value.start && matches!(bytes[value.end - 1], b'"' | b'\'') {
        value.end -= 1;
    }
    let v = &bytes[value.clone()];
    if v.len() < 3 || placeholder(v) {
        return None;
    }
    Some(value)
}
