//! `pii_phone_numbers`: phone numbers in text the model will see (default action: warn).
//!
//! Detected forms (the span is the number as written, with its `+` and parentheses):
//! * **international**: `+` (or `%2B`, as in a query string: `phone=%2B14155552671`) and a
//!   valid ITU country code, then 8–15 digits in all (E.164),
//!   with or without spaces, dots, dashes, a parenthesised area code or the `(0)` trunk
//!   prefix: `+14155552671`, `+1 (415) 555-2671`, `+44 (0)20 7946 0958`, `+33 1 23 45 67 89`,
//!   `+49 30 12345678`, `+91 98765 43210`, `+91-9876543210`, `+81 3-1234-5678`; numbers
//!   after `+1` must be valid NANP numbers (11 digits);
//! * **North American** (NANP), separated: `(415) 555-2671`, `415-555-2671`,
//!   `415.555.2671`, `415 555 2671`, `1-800-555-0199`; area code and exchange start with
//!   2–9 and are not `N11` service codes, separators are consistent;
//! * **national with a trunk `0`**, separated: `020 7946 0958`, `(02) 9876 5432`,
//!   `06 12 34 56 78`, `01.23.45.67.89`, `0412 345 678`, `030 1234567`: 9–12 digits, one
//!   kind of separator, 2–4 digit groups after the area code; after the area code a `/`
//!   (German: `030/12345678`, `089/123 456 78`, `0160/1234567`) or a `-` before
//!   space-separated groups (Indian STD codes: `022-2345 6789`); German mobiles
//!   (`0151 23456789`, 12 digits), Indian landlines and mobiles (`011-23456789`,
//!   `080 2345 6789`, `098765 43210`).
//!
//! A number may follow a `,` (a CSV field after numeric ones: `17,3,19.99,415-555-0132`).
//!
//! Not phone numbers, by rule in `check`: plain digit runs without `+` (`4155552671`,
//! timestamps, ids: too ambiguous), anything glued to letters, digits, `_`, `/`, `#`, or to
//! `.`/`-`/`:` plus a digit (versions `1.415.555.2671.3`, ranges, UUIDs and their digit
//! groups, times), dates (`2024-01-15`, `15.01.2024`, `01-15-2024`: wrong shape or too few
//! digits), IPv4 addresses, card numbers (too many digits), `+` arithmetic (`n+12345678`),
//! numbers with mixed separators (`020.7946 0958`), more than 15 digits, the tail of a longer
//! run of digit groups (an IBAN: `DE89 3704 0044 0532 0130 00`), the shape of a US social
//! security number (`078-05-1120`).
//!
//! Deliberately not detected: 7-digit local numbers (`555-0199`), national numbers without
//! separators or a `+`, vanity numbers (`1-800-FLOWERS`), extensions (`x123`, not included
//! in the span).

use bitrouter_plugin::guardrail::*;

const ID: &str = "pii_phone_numbers";

const REGEX: &str = concat!(
    // international, with `+` or its percent-encoding `%2B` (a query string)
    r"(?:\+|%2[Bb])[1-9](?:[ .-]?\(?[0-9]{1,6}\)?){1,8}",
    // parenthesised area code: NANP or trunk 0
    r"|\((?:0[1-9][0-9]{0,3}|[2-9][0-9]{2})\)[ .-]?[0-9]{2,8}(?:[ .-][0-9]{2,8}){0,3}",
    // NANP, separated
    r"|(?-u:\b)(?:1[ .-])?[2-9][0-9]{2}[ .-][2-9][0-9]{2}[ .-][0-9]{4}",
    // national with a trunk 0: one kind of separator, then one group of 5–8 digits or two
    // to four groups (so dates, times and decimals such as `01-15`, `01.281` are no
    // candidates); after the area code a `/` (German `030/12345678`) or a `-` before
    // space-separated groups (Indian `022-2345 6789`)
    r"|(?-u:\b)0[1-9][0-9]{0,4}(?: [0-9]{5,8}| [0-9]{2,4} [0-9]{2,8}(?: [0-9]{2,8}){0,2}",
    r"|-[0-9]{5,8}|-[0-9]{2,4}-[0-9]{2,8}(?:-[0-9]{2,8}){0,2}",
    r"|\.[0-9]{5,8}|\.[0-9]{2,4}\.[0-9]{2,8}(?:\.[0-9]{2,8}){0,2}",
    r"|[/-] ?[0-9]{2,8}(?: [0-9]{2,8}){1,3}|/[0-9]{5,8})",
);
/// The international alternative's bound: `%2B`, a digit, then 8 × 9 = 76.
const MAX_LEN: u32 = 80;

struct PiiPhoneNumbers;

impl Guardrail for PiiPhoneNumbers {
    fn describe() -> Vec<Pattern> {
        vec![
            Pattern::new(
                ID,
                "Phone numbers: international (E.164) and common national formats",
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
            .filter_map(|span| phone(text, span.range()))
            .map(|r| Finding::new(ID, Span::new(r.start, r.end)))
            .collect()
    }
}

type Range = core::ops::Range<usize>;

/// The number, as tokens.
#[derive(Default)]
struct Parsed {
    /// Digit groups, in order.
    groups: Vec<Range>,
    /// Which groups were written in parentheses.
    paren: Vec<bool>,
    /// The separators between groups (`b' '`, `b'.'`, `b'-'`, 0 for none), after `)`
    /// removed.
    seps: Vec<u8>,
    digits: usize,
}

/// The digit groups of `s`, read after its international prefix (`+` or `%2B`, `plus` bytes
/// long; 0 without one).
fn parse(s: &[u8], plus: usize) -> Option<Parsed> {
    let mut p = Parsed::default();
    let mut i = plus;
    let mut sep = 0u8;
    let mut open = false;
    while i < s.len() {
        match s[i] {
            b'0'..=b'9' => {
                let start = i;
                while i < s.len() && s[i].is_ascii_digit() {
                    i += 1;
                }
                if !p.groups.is_empty() {
                    p.seps.push(sep);
                }
                p.digits += i - start;
                p.groups.push(start..i);
                p.paren.push(open);
                sep = 0;
                continue;
            }
            b'(' if !open => open = true,
            b')' if open => open = false,
            b' ' | b'.' | b'-' if sep == 0 => sep = s[i],
            // `030/12345678`, `089/ 123 456`: only right after the area code (`trunk`).
            b'/' if sep == 0 && p.groups.len() == 1 => sep = b'/',
            b' ' if sep == b'/' => {}
            _ => return None,
        }
        i += 1;
    }
    (!open).then_some(p)
}

fn phone(text: &str, m: Range) -> Option<Range> {
    let bytes = text.as_bytes();
    let mut end = m.end;
    // The international alternative may take a `)` that closes the surrounding text:
    // `(call +1 415 555 2671)`.
    let count = |b: u8, r: &[u8]| r.iter().filter(|&&x| x == b).count();
    if bytes[end - 1] == b')'
        && count(b')', &bytes[m.start..end]) > count(b'(', &bytes[m.start..end])
    {
        end -= 1;
    }
    // ... or a trailing separator: `+1 415 555 2671.`
    while matches!(bytes[end - 1], b' ' | b'.' | b'-') {
        end -= 1;
    }
    let s = &bytes[m.start..end];
    let plus = if s[0] == b'+' {
        1
    } else if s.len() > 3 && s[..3].eq_ignore_ascii_case(b"%2B") {
        3
    } else {
        0
    };
    if !context_ok(bytes, m.start, end, plus > 0) {
        return None;
    }
    let p = parse(s, plus)?;
    if p.seps.contains(&b'/') && (plus > 0 || s[0] != b'0') {
        return None;
    }
    let group = |i: usize| &s[p.groups[i].clone()];
    let ok = if plus > 0 {
        international(&p, s)
    } else if p.paren[0] {
        let area = group(0);
        if area[0] == b'0' {
            trunk(&p, s)
        } else {
            // (415) 555-2671
            p.groups.len() == 3
                && group(1).len() == 3
                && group(2).len() == 4
                && nanp(area, group(1))
                && matches!(p.seps[1], b'-' | b'.' | b' ')
        }
    } else if s[0] == b'0' {
        trunk(&p, s)
    } else {
        // 415-555-2671, 1-800-555-0199
        let g = if group(0) == b"1" && p.groups.len() == 4 {
            1
        } else {
            0
        };
        p.groups.len() == g + 3
            && p.seps.iter().all(|&x| x == p.seps[0] && x != 0)
            && nanp(group(g), group(g + 1))
            && group(g + 2).len() == 4
    };
    ok.then_some(m.start..end)
}

/// The characters around the number must not make it part of something longer. A `,` is a
/// field separator (a CSV row: `17,3,19.99,415-555-0132`), never part of a number.
fn context_ok(bytes: &[u8], start: usize, end: usize, international: bool) -> bool {
    let before = start.checked_sub(1).map(|i| bytes[i]);
    let before2 = start.checked_sub(2).map(|i| bytes[i]);
    match before {
        Some(b)
            if b.is_ascii_alphanumeric()
                || matches!(b, b'_' | b'/' | b'\\' | b'#' | b'+' | b'$' | b'%' | b'^') =>
        {
            return false;
        }
        Some(b'.' | b'-' | b':') if before2.is_some_and(|b| b.is_ascii_digit()) => {
            return false;
        }
        // A national number that is the tail of a longer run of space-separated digit groups:
        // an IBAN (`DE89 3704 0044 0532 0130 00`), an account number. (`Suite 100 (415)
        // 555-0132` keeps its number.)
        Some(b' ')
            if !international
                && bytes[start] == b'0'
                && before2.is_some_and(|b| b.is_ascii_digit()) =>
        {
            return false;
        }
        Some(b'-' | b'.') if before2.is_some_and(|b| b.is_ascii_alphabetic()) => return false,
        _ => {}
    }
    let after = bytes.get(end).copied();
    let after2 = bytes.get(end + 1).copied();
    match after {
        Some(b) if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'/' | b'%' | b'@') => false,
        Some(b'.' | b'-' | b':') if after2.is_some_and(|b| b.is_ascii_alphanumeric()) => {
            // `415-555-2671.` ends a sentence; `.5`, `-99`, `:30`, `,5` continue a number.
            !after2.is_some_and(|b| b.is_ascii_digit())
                && after != Some(b'-')
                && after != Some(b'.')
        }
        _ => true,
    }
}

/// NANP: area code and exchange `[2-9]XX`, neither an `N11` service code.
fn nanp(area: &[u8], exchange: &[u8]) -> bool {
    let ok = |g: &[u8]| g.len() == 3 && (b'2'..=b'9').contains(&g[0]) && &g[1..] != b"11";
    ok(area) && ok(exchange)
}

/// National numbers with a trunk `0`: 9–12 digits (German mobiles `0151 23456789` have 12),
/// one separator kind after the area code.
fn trunk(p: &Parsed, s: &[u8]) -> bool {
    let first = &s[p.groups[0].clone()];
    if first.len() < 2 || first[1] == b'0' || p.groups.len() < 2 {
        return false;
    }
    if !(9..=12).contains(&p.digits) {
        return false;
    }
    // `078-05-1120`: the shape of a US social security number, not a phone number.
    let lens: Vec<usize> = p.groups.iter().map(|g| g.len()).collect();
    if lens == [3, 2, 4] && p.seps == [b'-', b'-'] {
        return false;
    }
    // After the area code the first separator may differ (or be absent after parentheses):
    // `(030) 1234567`, `030/123 456 78`, `030/1234567`, `022-2345 6789`.
    let seps: &[u8] = if p.paren[0]
        || (matches!(p.seps[0], b'/' | b'-') && p.seps[1..].iter().all(|&x| x == b' '))
    {
        &p.seps[1..]
    } else {
        &p.seps[..]
    };
    if seps.first() == Some(&0) || seps.iter().any(|&x| x != seps[0]) {
        return false;
    }
    if p.seps[0] == 0 && !p.paren[0] {
        return false;
    }
    // Four dotted groups of up to three digits: an IPv4 address, not a phone number.
    let dotted = seps.iter().all(|&x| x == b'.');
    if dotted && p.groups.len() == 4 && p.groups.iter().all(|g| g.len() <= 3) {
        return false;
    }
    p.groups[1..].iter().all(|g| (2..=8).contains(&g.len()))
}

fn international(p: &Parsed, s: &[u8]) -> bool {
    if !(8..=15).contains(&p.digits) {
        return false;
    }
    let digits: Vec<u8> = p
        .groups
        .iter()
        .flat_map(|g| s[g.clone()].iter().copied())
        .collect();
    let Some(cc_len) = country_code_len(&digits) else {
        return false;
    };
    // The country code must not be split from or glued oddly into the first group:
    // `+1 415…`, `+14155552671`, `+44 20…` are fine; `+4 4 20…` is not.
    if p.groups[0].len() < cc_len {
        return false;
    }
    if digits[0] == b'1' && cc_len == 1 {
        // NANP: +1 and ten digits, valid area code and exchange.
        return digits.len() == 11 && nanp(&digits[1..4], &digits[4..7]);
    }
    // Separated: groups of at most 8 digits, and at most one single-digit group besides a
    // `(0)` trunk prefix (`+33 1 23 45 67 89` has one; `+4 1 2 3 4 5 6 7` is not a number).
    if p.groups.len() > 1 {
        let mut singles = 0;
        for (i, g) in p.groups.iter().enumerate() {
            let g = &s[g.clone()];
            // `+91-9876543210`: a country code, then the whole subscriber number.
            let whole = p.groups.len() == 2 && i == 1 && g.len() <= 12;
            if g.len() > 8 && !whole {
                return false;
            }
            if g.len() == 1 && !(g == b"0" && p.paren[i]) {
                singles += 1;
            }
        }
        if singles > 1 || p.groups.len() > 7 {
            return false;
        }
        // Spaces and at most one other kind of separator (`+7 495 123-45-67`), not dots and
        // dashes mixed.
        let mut kinds = p.seps.iter().filter(|&&x| x != 0 && x != b' ');
        if let Some(&k) = kinds.next()
            && kinds.any(|&x| x != k)
        {
            return false;
        }
    }
    digits.len() - cc_len >= 6
}

/// Length of the ITU-T E.164 country code `digits` starts with, if it is assigned.
fn country_code_len(d: &[u8]) -> Option<usize> {
    if d.len() < 3 {
        return None;
    }
    let two = (d[0] - b'0') as u32 * 10 + (d[1] - b'0') as u32;
    let three = two * 10 + (d[2] - b'0') as u32;
    match d[0] {
        b'1' | b'7' => return Some(1),
        b'0' => return None,
        _ => {}
    }
    const TWO: &[u32] = &[
        20, 27, 30, 31, 32, 33, 34, 36, 39, 40, 41, 43, 44, 45, 46, 47, 48, 49, 51, 52, 53, 54, 55,
        56, 57, 58, 60, 61, 62, 63, 64, 65, 66, 81, 82, 84, 86, 90, 91, 92, 93, 94, 95, 98,
    ];
    if TWO.contains(&two) {
        return Some(2);
    }
    // Three-digit codes: the rest of zones 2–9, minus the unassigned blocks.
    const UNASSIGNED: &[u32] = &[
        210, 214, 215, 217, 219, 259, 280, 281, 282, 283, 284, 285, 286, 287, 288, 289, 292, 293,
        294, 295, 296, 384, 422, 424, 425, 426, 427, 428, 429, 671, 684, 693, 694, 695, 696, 697,
        698, 699, 801, 802, 803, 804, 805, 806, 807, 809, 830, 831, 832, 833, 834, 835, 836, 837,
        838, 839, 851, 854, 857, 858, 859, 871, 872, 873, 874, 875, 876, 877, 878, 879, 884, 885,
        887, 889, 890, 891, 892, 893, 894, 895, 896, 897, 898, 899, 969, 978, 990, 997, 999,
    ];
    (!UNASSIGNED.contains(&three)).then_some(3)
}

bitrouter_plugin::export_guardrail!(PiiPhoneNumbers);
