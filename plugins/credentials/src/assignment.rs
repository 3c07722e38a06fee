//! A password-named key and its value: `password=hunter2`, `"password": "s3cr3t pass"`,
//! `POSTGRES_PASSWORD: hunter2`, `Password=secret;` (ADO.NET), `?user=a&password=b`,
//! `--password=x`; the keys `password`, `passwd`, `passphrase` (also as the end of a longer
//! key: `DB_PASSWORD`, `PGPASSWORD`, `userPassword`, `spring.datasource.password`) and the
//! ambiguous short names `pass` and `pwd` (only as a whole word and only with `=`), with
//! `=`, `:`, `:=` or `=>`, key and value optionally quoted. XML and .NET configuration:
//! `<add key="DbPassword" value="…"/>` and `<password>…</password>` (Maven `settings.xml`).
//!
//! Precision rules: values that are not literals (variables and attribute paths
//! `password=password,`, `password=self.password`; calls `getpass()`; type annotations
//! `password: str`, `password: Option<String>`; a spaced `=` with a letters-only value
//! `username, password = auth`; templates and references; comparisons `password == x`;
//! paths), placeholders ([`placeholder`]), prose (`Password: must be 8 characters`),
//! `bypass=`/`compass:` (the short keys glued to a letter), `PASS: TestFoo` (test output:
//! `pass` needs `=`), and keys naming a hash (`hashed_password`).

use crate::Range;
use crate::text::{contains, ident, keyword_len, path_or_url, placeholder};

/// The assignment family at the keyword starting at `key`: `Some((finding or none, end))`
/// when the text there has one of its shapes (the finding then decides alone, and nothing
/// before `end` is another candidate: `${DB_PASSWORD:?must be set}` is one value), `None`
/// when it has none (the keyword's other families may read it).
pub fn shape(text: &str, key: usize) -> Option<(Option<Range>, usize)> {
    let bytes = text.as_bytes();
    let key_len = keyword_len(&bytes[key..]);
    let after = key + key_len;
    if key > 0 && bytes[key - 1] == b'<' && bytes.get(after) == Some(&b'>') {
        // `<password>secret</`
        let value_end = quoted_end(text, after + 1, b'<', false)?;
        if !bytes[value_end..].starts_with(b"</") {
            return None;
        }
        return Some((xml_element(text, key - 1..value_end + 2), value_end + 2));
    }
    if let Some(end) = assignment_end(text, after) {
        return Some((assignment(text, key..end), end));
    }
    if let Some(end) = escaped_json_end(text, after) {
        return Some((escaped_json(text, key..end), end));
    }
    if let Some(end) = xml_attribute_end(text, after) {
        return Some((xml_attribute(text, key..end), end));
    }
    None
}

/// Up to `max` blanks from `i`.
fn blanks(bytes: &[u8], mut i: usize, max: usize) -> usize {
    let limit = i + max;
    while i < limit && matches!(bytes.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    i
}

/// From just after an opening quote (or, when `closed` is false, from the value's start):
/// where 1–128 characters that are not `stop`, `\r` or `\n` end. With `closed`, the `stop`
/// quote must follow, and the end is after it.
fn quoted_end(text: &str, start: usize, stop: u8, closed: bool) -> Option<usize> {
    let mut n = 0;
    for (i, c) in text[start..].char_indices() {
        if c as u32 == stop as u32 || c == '\r' || c == '\n' || n == 128 {
            if n == 0 || (closed && c as u32 != stop as u32) {
                return None;
            }
            return Some(if closed { start + i + 1 } else { start + i });
        }
        n += 1;
    }
    (!closed && n > 0).then_some(text.len())
}

/// The bytes of an unquoted value: printable ASCII but for `"&'(),;<>` and `` ` ``.
fn unquoted_byte(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x25 | 0x2A | 0x2B | 0x2D..=0x3A | 0x3D | 0x3F..=0x5F | 0x61..=0x7E)
}

/// `password` + optional closing quote + `=`, `:`, `:=` or `=>` + value (quoted, or 1–128
/// unquoted bytes): the end of the value.
fn assignment_end(text: &str, after_key: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut i = after_key;
    if matches!(bytes.get(i), Some(b'"' | b'\'')) {
        i += 1;
    }
    i = blanks(bytes, i, 4);
    let rest = &bytes[i..];
    if rest.starts_with(b":=") || rest.starts_with(b"=>") {
        i += 2;
    } else if matches!(rest.first(), Some(b':' | b'=')) {
        i += 1;
    } else {
        return None;
    }
    i = blanks(bytes, i, 4);
    match bytes.get(i)? {
        q @ (b'"' | b'\'') => quoted_end(text, i + 1, *q, true),
        _ => {
            let n = bytes[i..]
                .iter()
                .take(128)
                .take_while(|&&b| unquoted_byte(b))
                .count();
            (n > 0).then_some(i + n)
        }
    }
}

/// `password\":\"secret\"` (any number of backslashes): the end of the closing quote.
fn escaped_json_end(text: &str, after_key: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let escaped_quote = |i: usize| -> Option<usize> {
        let n = bytes[i..]
            .iter()
            .take(8)
            .take_while(|&&b| b == b'\\')
            .count();
        (n > 0 && bytes.get(i + n) == Some(&b'"')).then_some(i + n + 1)
    };
    let mut i = escaped_quote(after_key)?;
    i = blanks(bytes, i, 4);
    if bytes.get(i) != Some(&b':') {
        return None;
    }
    i = blanks(bytes, i + 1, 4);
    i = escaped_quote(i)?;
    let value_end = quoted_end(text, i, b'\\', false)?;
    if bytes.get(value_end) != Some(&b'\\') || bytes[i..value_end].contains(&b'"') {
        return None;
    }
    escaped_quote(value_end)
}

/// `Password" value="secret"`: the end of the value's closing quote.
fn xml_attribute_end(text: &str, after_key: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    if !matches!(bytes.get(after_key), Some(b'"' | b'\'')) {
        return None;
    }
    let mut i = blanks(bytes, after_key + 1, 4);
    if i == after_key + 1 || !bytes[i..].get(..5)?.eq_ignore_ascii_case(b"value") {
        return None;
    }
    i = blanks(bytes, i + 5, 4);
    if bytes.get(i) != Some(&b'=') {
        return None;
    }
    i = blanks(bytes, i + 1, 4);
    match bytes.get(i)? {
        q @ (b'"' | b'\'') => quoted_end(text, i + 1, *q, true),
        _ => None,
    }
}

pub fn assignment(text: &str, m: Range) -> Option<Range> {
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
    // psql's `PASSWORD :'var'` interpolates a variable.
    if quote && sep == b":" && s[sep_start - 1].is_ascii_whitespace() && i == sep_start + 1 {
        return None;
    }
    let mut value = if quote {
        m.start + i + 1..m.end - 1
    } else {
        m.start + i..m.end
    };
    if !quote {
        value.end = whole_value_end(bytes, ident_start, value.clone(), sep);
    }
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

/// Where an unquoted value really ends, when its context says more than the regex's value
/// class: in a connection string (`…;User ID=sa;Password=6J5t(63;Encrypt=True`) at the
/// next `;` or quote; on a configuration line of its own (`REDIS_PASSWORD: A2sz~Ht,rN`,
/// `DB_PASSWORD=a,b`) at the line's end, when the rest is one blank-free word.
fn whole_value_end(bytes: &[u8], ident_start: usize, value: Range, sep: &[u8]) -> usize {
    let line_end = crate::text::line_end(bytes, value.end);
    let before_key = bytes[..ident_start].trim_ascii_end();
    if sep == b"=" && before_key.last() == Some(&b';') {
        let rest = &bytes[value.end..line_end];
        let stop = rest
            .iter()
            .position(|b| matches!(b, b';' | b'"' | b'\''))
            .unwrap_or(rest.len());
        if !rest[..stop].iter().any(u8::is_ascii_whitespace) && value.len() + stop <= 128 {
            return value.end + stop;
        }
        return value.end;
    }
    let line_start = crate::text::line_start(bytes, ident_start);
    let indent_only = bytes[line_start..ident_start]
        .iter()
        .all(|b| b.is_ascii_whitespace())
        || bytes[line_start..ident_start].trim_ascii() == b"export";
    let rest = &bytes[value.end..line_end];
    let rest_trimmed = rest.trim_ascii_end();
    if indent_only
        && !rest_trimmed.is_empty()
        && !matches!(rest_trimmed.last(), Some(b',' | b';' | b')'))
        && !rest_trimmed.iter().any(u8::is_ascii_whitespace)
        && !matches!(rest_trimmed[0], b'(' | b'<' | b'[' | b'{' | b'.')
        && value.len() + rest_trimmed.len() <= 128
    {
        return value.end + rest_trimmed.len();
    }
    value.end
}

/// An unquoted value that is a literal password, not code or prose.
pub fn unquoted_literal(text: &str, v: &[u8], end: usize, spaced: bool, sep_eq: bool) -> bool {
    let bytes = text.as_bytes();
    let next = bytes.get(end).copied();
    if v.len() < 3 {
        return false;
    }
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
    !path_or_url(v)
}

/// A JSON string inside a JSON string (a log line's payload): `\"password\":\"secret\"`,
/// any number of backslashes before the quotes.
pub fn escaped_json(text: &str, m: Range) -> Option<Range> {
    let bytes = text.as_bytes();
    let s = &bytes[m.clone()];
    if s.last() != Some(&b'"') {
        return None;
    }
    let colon = s.iter().position(|&b| b == b':')?;
    let open = colon + s[colon..].iter().position(|&b| b == b'"')? + 1;
    let mut close = s.len() - 1;
    while close > open && s[close - 1] == b'\\' {
        close -= 1;
    }
    let value = m.start + open..m.start + close;
    let v = &bytes[value.clone()];
    (v.len() >= 3 && !placeholder(v)).then_some(value)
}

/// `key="DbPassword" value="secret"`: the candidate runs from the keyword to the value's
/// closing quote.
pub fn xml_attribute(text: &str, m: Range) -> Option<Range> {
    let bytes = text.as_bytes();
    let s = &bytes[m.clone()];
    let close = *s.last()?;
    let open = s[..s.len() - 1].iter().rposition(|&b| b == close)?;
    // The key attribute's value must be the whole password name: `key="DbPassword"`, not
    // `key="PasswordPolicy"` (the regex ends the name at the keyword).
    let name_quote = crate::text::keyword_len(s);
    if !matches!(s.get(name_quote), Some(b'"' | b'\'')) {
        return None;
    }
    let value = m.start + open + 1..m.end - 1;
    let v = &bytes[value.clone()];
    if placeholder(v) || v.len() < 3 {
        return None;
    }
    Some(value)
}

/// `<password>secret</password>`.
pub fn xml_element(text: &str, m: Range) -> Option<Range> {
    let bytes = text.as_bytes();
    let s = &bytes[m.clone()];
    let open = s.iter().position(|&b| b == b'>')? + 1;
    let value = m.start + open..m.end - 2;
    let v = &bytes[value.clone()];
    let v_trim = v.trim_ascii();
    if placeholder(v_trim) || v_trim.len() < 3 || v_trim.len() != v.len() {
        return None;
    }
    Some(value)
}
