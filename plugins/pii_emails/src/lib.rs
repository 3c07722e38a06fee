//! `pii_emails`: email addresses in text the model will see (default action: warn).
//!
//! The host's regex starts at the literal `@` (cheap to reject: most text has none) and
//! takes a domain-shaped run after it; `check` widens the span back over the local part and
//! validates both halves:
//!
//! * local part: 1–64 of `A-Z a-z 0-9 . _ % + -` (and `'` between letters), no leading, trailing or doubled dot;
//! * domain: 2–10 labels of letters, digits and inner hyphens (1–63 each, 253 in all); the
//!   top-level label is 2–24 letters or an `xn--` punycode label, and not a file extension
//!   (`icon@2x.png`, `logo@3x.webp`);
//! * context: not a package or version pin (`lodash@4.17.21`, `@scope/pkg@1.2.3`: numeric
//!   top-level label), not a decorator or CSS at-rule (`@app.route`, `@media`: no local
//!   part), not SSH/scp or git remotes (`git@github.com:org/repo.git`: followed by `:path`),
//!   not the user of a URL (`ssh://git@host`), not Python's matrix product on attributes
//!   (`x@self.weight`), not the `password@host` of a URL (`https://user:pw@host.com`).
//!
//! Examples are still addresses: `user@example.com` is flagged (the action decides what
//! happens). Deliberately not detected: quoted or non-ASCII local parts, IP-literal domains
//! (`a@[10.0.0.1]`), obfuscated forms (`alice at example dot com`), addresses without a dot in
//! the domain (`root@localhost`).

use bitrouter_plugin::guardrail::*;

const ID: &str = "pii_emails";

const REGEX: &str = r"@[A-Za-z0-9][A-Za-z0-9-]{0,62}\.[A-Za-z0-9.-]{2,190}";
/// 64 (local part) + 1 + 253 (domain).
const MAX_LEN: u32 = 320;

struct PiiEmails;

impl Guardrail for PiiEmails {
    fn describe() -> Vec<Pattern> {
        vec![
            Pattern::new(ID, "Email addresses")
                .directions(Directions::REQUEST)
                .action(Action::Warn)
                .regex(REGEX)
                .max_match_len(MAX_LEN),
        ]
    }

    fn check(_pattern: &str, text: &str, candidates: Vec<Span>) -> Vec<Finding> {
        candidates
            .into_iter()
            .filter_map(|span| email(text, span.range()))
            .map(|r| Finding::new(ID, Span::new(r.start, r.end)))
            .collect()
    }
}

const LOCAL_MAX: usize = 64;

/// File extensions that look like top-level domains after `name@2x.`.
const NOT_TLDS: &[&[u8]] = &[
    b"png", b"jpg", b"jpeg", b"gif", b"svg", b"webp", b"ico", b"bmp", b"avif", b"js", b"mjs",
    b"cjs", b"ts", b"tsx", b"jsx", b"css", b"scss", b"less", b"html", b"htm", b"json", b"yaml",
    b"yml", b"toml", b"xml", b"txt", b"md", b"py", b"rs", b"go", b"java", b"kt", b"rb", b"php",
    b"cpp", b"hpp", b"sh", b"lock", b"log", b"zip", b"gz", b"tgz", b"tar", b"wasm", b"map", b"vue",
    b"pdf", b"csv", b"mp4", b"mp3", b"woff", b"woff2", b"ttf",
];

fn email(text: &str, m: core::ops::Range<usize>) -> Option<core::ops::Range<usize>> {
    let bytes = text.as_bytes();
    let at = m.start;

    // Local part: back from the `@`.
    let local_ok =
        |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-');
    let mut start = at;
    // An apostrophe between letters (`o'neil@…`) belongs to the address; one next to a
    // quote or space (`'alice@…'`) does not.
    let apostrophe = |i: usize| {
        bytes[i] == b'\''
            && i > 0
            && bytes[i - 1].is_ascii_alphanumeric()
            && bytes.get(i + 1).is_some_and(u8::is_ascii_alphanumeric)
    };
    while start > 0 && (local_ok(bytes[start - 1]) || apostrophe(start - 1)) {
        start -= 1;
        if at - start > LOCAL_MAX {
            return None;
        }
    }
    while start < at && matches!(bytes[start], b'.' | b'-' | b'+') {
        start += 1;
    }
    let local = &bytes[start..at];
    if local.is_empty() || local.ends_with(b".") || contains(local, b"..") {
        return None;
    }
    // `ssh://git@host`, `https://user@host`: the user of a URL.
    if start > 0 && bytes[start - 1] == b'/' {
        return None;
    }
    // `https://user:pass@host`: the password and host of a URL, not an address.
    if start > 0 && bytes[start - 1] == b':' {
        let token_start = bytes[..start - 1]
            .iter()
            .rposition(|b| {
                b.is_ascii_whitespace() || matches!(b, b'"' | b'\'' | b'(' | b'<' | b'`')
            })
            .map_or(0, |i| i + 1);
        // … and `user%40x:pass@host` (an authority): only a plain word such as `mailto:` or
        // `Email:` may come right before an address's `:`.
        let word = &bytes[token_start..start - 1];
        if contains(&bytes[token_start..start], b"://") || !word.iter().all(u8::is_ascii_alphabetic)
        {
            return None;
        }
    }
    // Non-ASCII letters glued to the local part: part of a word we cannot judge.
    if start > 0 && bytes[start - 1] >= 0x80 {
        return None;
    }

    // Domain: trim what cannot end one.
    let mut end = m.end;
    while end > at + 1 && matches!(bytes[end - 1], b'.' | b'-') {
        end -= 1;
    }
    let domain = &bytes[at + 1..end];
    if domain.len() > 253 || contains(domain, b"..") {
        return None;
    }
    let labels: Vec<&[u8]> = domain.split(|&b| b == b'.').collect();
    if labels.len() < 2 || labels.len() > 10 {
        return None;
    }
    for label in &labels {
        if label.is_empty()
            || label.len() > 63
            || label[0] == b'-'
            || label[label.len() - 1] == b'-'
        {
            return None;
        }
        // Hyphens in the 3rd and 4th positions are reserved (RFC 5891) except for `xn--`.
        if label.get(2..4) == Some(b"--") && !label[..2].eq_ignore_ascii_case(b"xn") {
            return None;
        }
    }
    let tld = labels[labels.len() - 1].to_ascii_lowercase();
    let tld_ok = (tld.len() >= 2 && tld.len() <= 24 && tld.iter().all(u8::is_ascii_alphabetic))
        || (tld.starts_with(b"xn--") && tld.len() > 5);
    if !tld_ok || NOT_TLDS.contains(&tld.as_slice()) {
        return None;
    }
    let first = labels[0].to_ascii_lowercase();
    if matches!(first.as_slice(), b"self" | b"this" | b"cls") {
        return None; // `x@self.weight`: a matrix product
    }

    // What follows: more name characters mean this was not the end of an address; `:path`
    // is an scp/git remote; `(` a call.
    match bytes.get(end) {
        Some(b) if b.is_ascii_alphanumeric() || *b == b'_' || *b >= 0x80 => return None,
        Some(b'(') => return None,
        Some(b':') if bytes.get(end + 1).is_some_and(|b| !b.is_ascii_whitespace()) => return None,
        _ => {}
    }
    Some(start..end)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

bitrouter_plugin::export_guardrail!(PiiEmails);
