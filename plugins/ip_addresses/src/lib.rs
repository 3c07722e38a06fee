//! `ip_addresses`: IPv4 and IPv6 addresses in text the model will see (default action: warn).
//!
//! IPv4: four decimal octets `0–255` without leading zeros. IPv6: the full eight-group form
//! and the `::`-compressed form with at least one group on each side of the `::`
//! (`2001:db8::8a2e:370:7334`, `fe80::1`), validated by parsing. The span is the address
//! alone (no port, CIDR suffix, zone or brackets).
//!
//! Not findings, by rule in `check`:
//! * loopback and unspecified addresses: `127.0.0.0/8`, `0.0.0.0` (and all of `0.0.0.0/8`),
//!   `::1`, `::`; the broadcast address `255.255.255.255` and netmasks (`255.255.255.0`,
//!   `255.255.240.0`: contiguous ones then zeros), which are not hosts;
//! * dotted numbers that are something else: part of a longer dotted or digit run
//!   (`1.2.3.4.5`, SNMP OIDs `1.3.6.1.4.1`, `12345.6.7.8`), glued to letters (`v1.2.3.4`,
//!   `1.2.3.4-beta`), user-agent versions (`Chrome/120.0.0.0`), numbers introduced by a word
//!   that makes them versions or section numbers (`version 10.0.0.1`,
//!   `"version": "1.2.3.4"`, `AssemblyVersion("1.0.0.0")`, `section 1.2.3.4`, `§4.2.3.1`),
//!   and `N.0.0.0` for N < 10 (`'1.0.0.0'` is a version far more often than a host);
//! * IPv6 look-alikes: Rust/C++ paths (`a::b`, `std::f64`), hex digests and fingerprints
//!   joined by colons (`16:27:ac:…`: glued to more groups), time stamps (not eight groups,
//!   no `::`); an IPv6 candidate must contain a decimal digit and either three groups or a
//!   first group of three or more digits.
//!
//! Private ranges (10/8, 172.16/12, 192.168/16), documentation ranges and multicast
//! addresses are flagged: they still describe a network. Deliberately not detected: IPv6
//! forms with `::` at either end (`::ffff:10.0.0.1`, `2001:db8::`; the embedded IPv4 part of
//! the first is still caught), integer or hex-encoded addresses.

use bitrouter_plugin::guardrail::*;

const ID: &str = "ip_addresses";

/// `(?-u:\b)` keeps candidates from starting inside a longer number or identifier.
const REGEX: &str = concat!(
    r"(?-u:\b)[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}",
    r"|(?-u:\b)[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){7}",
    r"|(?-u:\b)[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){0,5}::[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){0,5}",
);
/// The longest alternative: 4 + 5 × 5 + 2 + 4 + 5 × 5 = 60 bytes.
const MAX_LEN: u32 = 64;

struct IpAddresses;

impl Guardrail for IpAddresses {
    fn describe() -> Vec<Pattern> {
        vec![
            Pattern::new(
                ID,
                "IPv4 and IPv6 addresses, except loopback and unspecified",
            )
            .directions(Directions::REQUEST)
            .action(Action::Warn)
            .regex(REGEX)
            .max_match_len(MAX_LEN),
        ]
    }

    fn check(_pattern: &str, text: &str, candidates: Vec<Span>) -> Vec<Finding> {
        candidates
            .into_iter()
            .filter(|span| {
                let r = span.range();
                if text[r.clone()].contains(':') {
                    ipv6(text, r)
                } else {
                    ipv4(text, r)
                }
            })
            .map(|span| Finding::new(ID, span))
            .collect()
    }
}

type Range = core::ops::Range<usize>;

fn ipv4(text: &str, r: Range) -> bool {
    let bytes = text.as_bytes();
    let mut octets = [0u8; 4];
    for (i, part) in text[r.clone()].split('.').enumerate() {
        if part.len() > 1 && part.starts_with('0') {
            return false; // leading zeros: octal or a date/version, not an address
        }
        match part.parse::<u8>() {
            Ok(v) => octets[i] = v,
            Err(_) => return false,
        }
    }
    let before = r.start.checked_sub(1).map(|i| bytes[i]);
    let before2 = r.start.checked_sub(2).map(|i| bytes[i]);
    match before {
        Some(b) if b.is_ascii_alphanumeric() || b == b'_' || b == b'.' => return false,
        // `Chrome/120.0.0.0`; but `http://10.0.0.1` is an address.
        Some(b'/') if before2 != Some(b'/') => return false,
        Some(b'-') if before2.is_some_and(|b| b.is_ascii_alphabetic()) => return false,
        _ => {}
    }
    let after = bytes.get(r.end).copied();
    let after2 = bytes.get(r.end + 1).copied();
    match after {
        Some(b) if b.is_ascii_alphanumeric() || b == b'_' => return false,
        // `1.2.3.4.5`, `1.2.3.4.nip.io`, `1.2.3.4-beta`; but `10.0.0.1-10.0.0.9` is a range.
        Some(b'.') if after2.is_some_and(|b| b.is_ascii_alphanumeric()) => return false,
        Some(b'-') if after2.is_some_and(|b| b.is_ascii_alphabetic()) => return false,
        _ => {}
    }
    // `§4.2.3.1`: a section number.
    if bytes[..r.start].ends_with("§".as_bytes()) || version_context(bytes, r.start) {
        return false;
    }
    let [a, b, c, d] = octets;
    if a == 127 || a == 0 {
        return false; // loopback, unspecified / "this network"
    }
    if a < 10 && (b, c, d) == (0, 0, 0) {
        return false; // `1.0.0.0`, `2.0.0.0`: four-part versions, not hosts
    }
    let mask = u32::from_be_bytes([a, b, c, d]);
    // Netmasks (contiguous ones then zeros, including the broadcast all-ones).
    if a == 255 && mask.leading_ones() + mask.trailing_zeros() == 32 {
        return false;
    }
    true
}

/// The word before the number makes it a version or a section number.
fn version_context(bytes: &[u8], start: usize) -> bool {
    let mut i = start;
    // Skip `": "`, `= `, `("`, `v`-less separators.
    while i > 0
        && matches!(
            bytes[i - 1],
            b' ' | b'\t' | b'"' | b'\'' | b':' | b'=' | b'(' | b'@'
        )
    {
        i -= 1;
        if start - i > 6 {
            break;
        }
    }
    let word_end = i;
    while i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_') {
        i -= 1;
        if word_end - i > 40 {
            return false;
        }
    }
    let word = bytes[i..word_end].to_ascii_lowercase();
    const WORDS: &[&[u8]] = &[
        b"version",
        b"ver",
        b"v",
        b"release",
        b"build",
        b"firmware",
        b"section",
        b"chapter",
        b"figure",
        b"table",
        b"step",
        b"rule",
        b"clause",
        b"item",
        b"oid",
        b"rev",
        b"revision",
    ];
    WORDS.contains(&word.as_slice()) || word.ends_with(b"version")
}

fn ipv6(text: &str, r: Range) -> bool {
    let bytes = text.as_bytes();
    let s = &text[r.clone()];
    let Ok(addr) = s.parse::<core::net::Ipv6Addr>() else {
        return false;
    };
    if addr.is_loopback() || addr.is_unspecified() {
        return false;
    }
    let hexish = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':' || b == b'.';
    if r.start > 0 && hexish(bytes[r.start - 1]) {
        return false;
    }
    match bytes.get(r.end) {
        Some(&b) if b.is_ascii_alphanumeric() || b == b'_' => return false,
        // Glued to more groups (a digest or fingerprint joined by colons) or a path.
        Some(b':' | b'.') if bytes.get(r.end + 1).is_some_and(u8::is_ascii_hexdigit) => {
            return false;
        }
        _ => {}
    }
    let groups = s.split(':').filter(|g| !g.is_empty()).count();
    let first = s.split(':').next().unwrap_or("");
    s.bytes().any(|b| b.is_ascii_digit()) && (groups >= 3 || first.len() >= 3)
}

bitrouter_plugin::export_guardrail!(IpAddresses);
