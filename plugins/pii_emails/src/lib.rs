//! `pii_emails`: email addresses in text the model will see (default action: warn).
//!
//! The host's regex starts at the literal `@` (cheap to reject: most text has none) and
//! takes a domain-shaped run after it; `check` widens the span back over the local part and
//! validates both halves:
//!
//! * local part: 1–64 of `A-Z a-z 0-9 . _ % + -` (and `'` between letters), no leading,
//!   trailing or doubled dot; or quoted (`"jane doe"@example.org`, the quotes included);
//! * domain: 2–10 labels of letters (any script: `bücher.example`, `пример.рф`), digits and
//!   inner hyphens (1–63 each, 253 in all); the top-level label is 2–24 letters, an `xn--`
//!   punycode label or 2+ letters of another script, and not a file extension
//!   (`icon@2x.png`, `logo@3x.webp`);
//! * percent-encoded (`?email=jane.doe%40example.com`): the `%40` is the `@`, and an encoded
//!   delimiter before the local part ends it (`mailto%3Ajane%40…` is `jane%40…`);
//! * context: not a package or version pin (`lodash@4.17.21`, `@scope/pkg@1.2.3`: numeric
//!   top-level label), not a decorator or CSS at-rule (`@app.route`, `@media`: no local
//!   part), not SSH/scp or git remotes (`git@github.com:org/repo.git`: followed by `:path`),
//!   not the user of a URL (`ssh://git@host`), not the `password@host` of a URL
//!   (`https://user:pw@host.com`); after a `:` only a plain word (`Email:`, `mailto:`) or a
//!   vCard/iCalendar property with parameters (`EMAIL;TYPE=work:`, `ORGANIZER;CN=Jo:mailto:`);
//!   not Python's matrix product (`x@self.weight`, and `attn.probs@value.layer` right after
//!   `=`, `(`, `,`, an operator or `return` unless the top-level label is a common TLD).
//!
//! Examples are still addresses: `user@example.com` is flagged (the action decides what
//! happens). Deliberately not detected: non-ASCII local parts, IP-literal domains
//! (`a@[10.0.0.1]`), obfuscated forms (`alice at example dot com`), addresses without a dot in
//! the domain (`root@localhost`).

use bitrouter_plugin::guardrail::*;

const ID: &str = "pii_emails";

/// From the `@` (or its percent-encoding `%40`, as in `?email=jane%40example.com`): a
/// domain-shaped run, its letters from any script (`bücher.example`, `пример.рф`).
const REGEX: &str = concat!(
    r"(?:@|%40)[A-Za-z0-9\x{80}-\x{10FFFF}][A-Za-z0-9\x{80}-\x{10FFFF}-]{0,62}",
    r"\.[A-Za-z0-9.\x{80}-\x{10FFFF}-]{2,160}",
);
/// The match: 3 + 63 × 4 + 1 + 160 × 4 = 896 bytes; the finding adds the local part (64,
/// and 2 quotes) and loses nothing: 962.
const MAX_LEN: u32 = 968;

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
    // Where the domain starts: after `@` or `%40`.
    let domain_start = if bytes[at] == b'@' { at + 1 } else { at + 3 };

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
    // In a percent-encoded address, an encoded delimiter (`mailto%3Ajane`, `a%3Db`) ends
    // the local part. (With a literal `@`, `%20` before it is a URL's userinfo.)
    let mut i = start;
    while bytes[at] == b'%' && i + 2 < at {
        if bytes[i] == b'%' && encoded_delimiter(&bytes[i + 1..i + 3]) {
            start = i + 3;
            i += 3;
        } else {
            i += 1;
        }
    }
    // A quoted local part: `"jane doe"@example.org`.
    let quoted = start == at && at > 0 && bytes[at - 1] == b'"';
    if quoted {
        start = quoted_local(bytes, at)?;
    }
    while start < at && matches!(bytes[start], b'.' | b'-' | b'+') {
        start += 1;
    }
    let local = &bytes[start..at];
    if local.is_empty() || (!quoted && (local.ends_with(b".") || contains(local, b".."))) {
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
        // `Email:` may come right before an address's `:`, or a vCard / iCalendar property
        // with parameters (`EMAIL;TYPE=work:`, `ORGANIZER;CN=Jo Ann:mailto:`: the word after
        // the last `;`, `=` or `:`).
        let token = &bytes[token_start..start - 1];
        let word_start = token
            .iter()
            .rposition(|b| matches!(b, b';' | b'=' | b':' | b','))
            .map_or(0, |i| i + 1);
        let word = &token[word_start..];
        if contains(&bytes[token_start..start], b"://")
            || word.is_empty()
            || !word.iter().all(u8::is_ascii_alphabetic)
            || (word_start > 0 && !word.eq_ignore_ascii_case(b"mailto") && !vcard_property(token))
        {
            return None;
        }
    }
    // `postgres://app:eQr*gVg@db.internal/x`: the authority of a URL (no `/` or `?` between
    // its `://` and the `@`), whatever the local part's scan stopped at.
    if url_authority(bytes, start) {
        return None;
    }
    // Non-ASCII letters glued to the local part: part of a word we cannot judge.
    if start > 0 && bytes[start - 1] >= 0x80 {
        return None;
    }

    // Domain: trim what cannot end one.
    let mut end = m.end;
    while end > domain_start && matches!(bytes[end - 1], b'.' | b'-') {
        end -= 1;
    }
    let domain = &bytes[domain_start..end];
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
        || (tld.starts_with(b"xn--") && tld.len() > 5)
        || (tld.len() >= 4 && tld.iter().all(|&b| b >= 0x80) && idn_letters(&tld));
    if !tld_ok || NOT_TLDS.contains(&tld.as_slice()) {
        return None;
    }
    let first = labels[0].to_ascii_lowercase();
    if matches!(first.as_slice(), b"self" | b"this" | b"cls") {
        return None; // `x@self.weight`: a matrix product
    }
    if !quoted && matrix_product(bytes, start, local, &tld) {
        return None;
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

/// Whether `start` lies in the authority of a URL: the token holding it has a `://` with no
/// `/` or `?` after it.
fn url_authority(bytes: &[u8], start: usize) -> bool {
    let token_start = bytes[..start]
        .iter()
        .rposition(|b| b.is_ascii_whitespace() || matches!(b, b'"' | b'\'' | b'<' | b'(' | b'`'))
        .map_or(0, |i| i + 1);
    let token = &bytes[token_start..start];
    match token.windows(3).rposition(|w| w == b"://") {
        // (`#` too may be in the authority: a password the user did not percent-encode.)
        Some(i) => !token[i + 3..].iter().any(|b| matches!(b, b'/' | b'?')),
        None => false,
    }
}

/// `%XX` that decodes to a character an unquoted local part cannot hold.
fn encoded_delimiter(hex: &[u8]) -> bool {
    let v = |b: u8| (b as char).to_digit(16);
    let (Some(h), Some(l)) = (v(hex[0]), v(hex[1])) else {
        return false;
    };
    let c = (h * 16 + l) as u8;
    !(c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'+' | b'-'))
}

/// The opening quote of `"…"@`, when the quoted part is a plausible local part (1–64
/// printable characters on one line) standing on its own.
fn quoted_local(bytes: &[u8], at: usize) -> Option<usize> {
    let close = at - 1;
    let open = bytes[close.saturating_sub(LOCAL_MAX + 1)..close]
        .iter()
        .rposition(|&b| b == b'"')?
        + close.saturating_sub(LOCAL_MAX + 1);
    let inner = &bytes[open + 1..close];
    if inner.is_empty()
        || inner
            .iter()
            .any(|&b| b < 0x20 || b == b'\\' || b == b'<' || b == b'>')
    {
        return None;
    }
    let before = open.checked_sub(1).map(|i| bytes[i]);
    before
        .is_none_or(|b| {
            b.is_ascii_whitespace() || matches!(b, b'<' | b'(' | b',' | b':' | b';' | b'[' | b'=')
        })
        .then_some(open)
}

/// `EMAIL;TYPE=work`, `ORGANIZER;CN=Jo Ann:mailto`, `ATTENDEE;ROLE=REQ-PARTICIPANT;CN=x`: a
/// vCard or iCalendar property name (upper-case letters and `-`) and its parameters.
fn vcard_property(token: &[u8]) -> bool {
    let name_len = token
        .iter()
        .take_while(|b| b.is_ascii_uppercase() || **b == b'-')
        .count();
    name_len >= 2 && token.get(name_len) == Some(&b';')
}

/// A top-level label in another script: letters (any multi-byte UTF-8 character but the
/// punctuation blocks: `。`, `，`, `…`, full-width forms).
fn idn_letters(tld: &[u8]) -> bool {
    let Ok(s) = core::str::from_utf8(tld) else {
        return false;
    };
    s.chars().all(|c| c.is_alphabetic())
}

/// Python's `@` between dotted names (`attn.probs@value.layer`): a dotted local part right
/// after code (`= `, `(`, `[`, `,`, an operator, `return`) with a top-level label that is
/// not a common TLD. A real address in code is in a string: `"jane.doe@example.com"`.
fn matrix_product(bytes: &[u8], start: usize, local: &[u8], tld: &[u8]) -> bool {
    if !local.contains(&b'.') || COMMON_TLDS.contains(&tld) {
        return false;
    }
    let before = &bytes[..start];
    let trimmed = before.trim_ascii_end();
    let code = matches!(
        trimmed.last(),
        Some(b'=' | b'(' | b'[' | b',' | b'+' | b'-' | b'*' | b'/')
    ) || trimmed.ends_with(b"return");
    code && (trimmed.len() < before.len() || matches!(before.last(), Some(b'(' | b'[')))
}

/// The top-level domains of most addresses; in code context an address must end in one.
const COMMON_TLDS: &[&[u8]] = &[
    b"com", b"org", b"net", b"edu", b"gov", b"mil", b"int", b"io", b"co", b"ai", b"dev", b"app",
    b"info", b"biz", b"me", b"us", b"uk", b"de", b"fr", b"nl", b"be", b"ch", b"at", b"es", b"it",
    b"pt", b"se", b"no", b"dk", b"fi", b"pl", b"cz", b"ru", b"ua", b"jp", b"cn", b"kr", b"in",
    b"au", b"nz", b"ca", b"br", b"mx", b"ar", b"za", b"ie", b"il", b"tr", b"gr", b"hu", b"ro",
    b"sg", b"hk", b"tw", b"example", b"test", b"local", b"email", b"mail", b"cloud", b"tech",
    b"online", b"site", b"xyz", b"eu", b"museum", b"shop", b"store", b"team", b"agency",
];

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

bitrouter_plugin::export_guardrail!(PiiEmails);
