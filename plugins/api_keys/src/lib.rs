//! `api_keys`: provider API keys in text the model will see (default action: redact).
//!
//! Detects, by prefix, length and alphabet:
//! * OpenAI: legacy `sk-` + 32–64 letters/digits, `sk-proj-…`, `sk-svcacct-…`, `sk-admin-…`,
//!   `sk-None-…` (40+ characters of `[A-Za-z0-9_-]` after the prefix);
//! * Anthropic: `sk-ant-api03-…`, `sk-ant-admin01-…`, `sk-ant-oat01-…` (32+ after the prefix);
//! * AWS access key ids: `AKIA`, `ASIA`, `ABIA`, `ACCA` + 16 upper-case letters/digits;
//! * GCP API keys: `AIza` + exactly 35 of `[A-Za-z0-9_-]`;
//! * GitHub tokens: `ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_` + 36 or more letters/digits, and
//!   fine-grained `github_pat_` + 40 or more of `[A-Za-z0-9_]`;
//! * Stripe secret and restricted keys: `sk_` / `rk_` + `live_` / `test_` / `prod_` + 16 or
//!   more letters/digits;
//! * any of these split in two to four pieces by a shell line continuation (`sk-proj-ab…\`
//!   newline `cd…`) or string concatenation (`"sk-ant-…" +` newline `"…"`, Python's implicit
//!   `("ghp_…"` newline `"…")`): the pieces joined must be a key; the finding runs from the
//!   first piece to the last, joiners included, so `redact` removes all of it;
//! * AWS secret access keys after their name (`aws_secret_access_key = …`,
//!   `AWS_SECRET_ACCESS_KEY=…`, `"SecretAccessKey": "…"`, `aws configure set
//!   aws_secret_access_key …`): exactly 40 of `[A-Za-z0-9/+]` with upper and lower case and a
//!   digit or symbol (a 40-hex digest next to the word is not one); the finding is the value.
//!
//! Precision rules in `check`: the key must stand alone (not glued to a preceding letter,
//! digit, `_` or `-`, so `task-…`, `disk-…`, `mask_sk_live…` are not keys; not followed by more
//! key characters beyond the declared maximum), its body must mix letters and digits (AWS and
//! GCP ids: contain letters), and it must not be a placeholder (a run of 6 or more identical characters such as `xxxxxx` or
//! `000000`, or fewer than 8 distinct characters). An `sk-` key without a known sub-prefix must
//! be letters and digits only, so prose such as `sk-this-is-not-a-key-at-all` is not flagged.
//!
//! Deliberately not detected: bare 40-character base64 strings without the secret access
//! key's name (indistinguishable from hashes without context), publishable keys (`pk_live_…`,
//! public by design), OAuth client ids, JWTs, pre-2021 40-hex GitHub tokens without a prefix,
//! other vendors' keys (add them as custom patterns or another plugin).

use bitrouter_plugin::guardrail::*;

const ID: &str = "api_keys";

/// What joins the pieces of a split key: `\` and a line break (shell), or a closing quote,
/// an optional `+` and line break, and an opening quote (`"sk-…" + "…"`, Python's implicit
/// concatenation over lines).
macro_rules! JOIN {
    () => {
        r#"(?:\\\r?\n[ \t]{0,16}|["'][ \t]{0,8}\+?[ \t]{0,8}(?:\r?\n[ \t]{0,16}\+?[ \t]{0,8})?["'])"#
    };
}

/// One alternative per vendor family, each starting with a literal prefix so the host's
/// automaton rejects ordinary text cheaply. Every repetition is bounded.
const REGEX: &str = concat!(
    // A key split by a shell line continuation or string concatenation: the first piece,
    // then one to three joiners, each followed by more key characters. First, so that it
    // wins over the whole-key alternatives that match its first piece.
    r"(?:sk-|AKIA|ASIA|ABIA|ACCA|AIza|gh[pousr]_|github_pat_|[sr]k_(?:live|test|prod)_)",
    r"[A-Za-z0-9_-]{0,200}(?:",
    JOIN!(),
    r"[A-Za-z0-9_-]{1,200}){1,3}",
    // An AWS secret access key after its name: `aws_secret_access_key = …`,
    // `"SecretAccessKey": "…"`, `aws configure set aws_secret_access_key …`.
    r#"|(?i:secret[_-]?access[_-]?key)["']?[ \t]{0,4}[:=]?[ \t]{0,4}["']?[A-Za-z0-9/+]{40}"#,
    // Whole keys.
    r"|sk-[A-Za-z0-9_-]{20,250}",
    r"|(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}",
    r"|AIza[A-Za-z0-9_-]{35}",
    r"|gh[pousr]_[A-Za-z0-9]{36,251}",
    r"|github_pat_[A-Za-z0-9_]{22,244}",
    r"|[sr]k_(?:live|test|prod)_[A-Za-z0-9]{10,247}",
);
/// A whole key is at most 256 bytes; a split one 15 + 200 + 3 × (46 + 200) = 953.
const MAX_LEN: u32 = 960;

struct ApiKeys;

impl Guardrail for ApiKeys {
    fn describe() -> Vec<Pattern> {
        vec![
            Pattern::new(
                ID,
                "API keys of OpenAI, Anthropic, AWS (access key ids), GCP, GitHub and Stripe",
            )
            .directions(Directions::REQUEST)
            .action(Action::Redact)
            .regex(REGEX)
            .max_match_len(MAX_LEN),
        ]
    }

    fn check(_pattern: &str, text: &str, candidates: Vec<Span>) -> Vec<Finding> {
        candidates
            .into_iter()
            .filter_map(|span| key_in(text, span.range()))
            .map(|r| Finding::new(ID, Span::new(r.start, r.end)))
            .collect()
    }
}

type Range = core::ops::Range<usize>;

/// The key a candidate holds, if it is one.
fn key_in(text: &str, m: Range) -> Option<Range> {
    let bytes = text.as_bytes();
    let s = &bytes[m.clone()];
    let before = m.start.checked_sub(1).map(|i| bytes[i]);
    let after = bytes.get(m.end).copied();
    if s[0].eq_ignore_ascii_case(&b's') && s.len() > 6 && s[..6].eq_ignore_ascii_case(b"secret") {
        return aws_secret(bytes, m);
    }
    let joiner = s.iter().position(|&b| matches!(b, b'\\' | b'"' | b'\''));
    let Some(first_end) = joiner else {
        return is_key(s, before, after).then_some(m);
    };
    // A split key: the pieces joined must be a key. Two quoted words on one line with no
    // `+` (`"sk-…" "next argument"`) are a whole key and another argument.
    let first = m.start..m.start + first_end;
    let joiner_end = first_end
        + s[first_end..]
            .iter()
            .skip(1)
            .position(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-')
            .map_or(0, |i| i + 1);
    let joiner = &s[first_end..joiner_end];
    let concatenated = joiner.contains(&b'+') || joiner.contains(&b'\n') || joiner[0] == b'\\';
    if !concatenated && is_key(&bytes[first.clone()], before, Some(s[first_end])) {
        return Some(first);
    }
    let joined: Vec<u8> = pieces(s).concat();
    is_key(&joined, before, after).then_some(m)
}

/// The key characters of a split key, piece by piece (the regex guarantees the shape).
fn pieces(s: &[u8]) -> Vec<&[u8]> {
    s.split(|b| !(b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-'))
        .filter(|p| !p.is_empty())
        .collect()
}

/// `aws_secret_access_key = <40>`: the 40 characters, when they are one whole random
/// token (upper and lower case and a digit or symbol: not a hex digest, not a word).
fn aws_secret(bytes: &[u8], m: Range) -> Option<Range> {
    let value = m.end - 40..m.end;
    let v = &bytes[value.clone()];
    if m.start > 0 && bytes[m.start - 1].is_ascii_alphanumeric() {
        return None; // `my_secret_access_key_id…` is handled by the name; `xsecret…` is not it
    }
    let glued =
        |b: Option<&u8>| b.is_some_and(|&b| b.is_ascii_alphanumeric() || b == b'/' || b == b'+');
    if glued(bytes.get(value.end)) || glued(value.start.checked_sub(1).map(|i| &bytes[i])) {
        return None;
    }
    let upper = v.iter().any(u8::is_ascii_uppercase);
    let lower = v.iter().any(u8::is_ascii_lowercase);
    let other = v
        .iter()
        .any(|b| b.is_ascii_digit() || *b == b'/' || *b == b'+');
    (upper && lower && other && plausible(v, false)).then_some(value)
}

fn is_key(key: &[u8], before: Option<u8>, after: Option<u8>) -> bool {
    let glued_before = before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if glued_before {
        return false;
    }
    // A key character right after the match: the token is longer than any key of this kind
    // (or, for fixed-length kinds, is some other identifier that merely starts like a key).
    let glued_after =
        |extra: &[u8]| after.is_some_and(|b| b.is_ascii_alphanumeric() || extra.contains(&b));

    if let Some(body) = key.strip_prefix(b"sk-") {
        if glued_after(b"_-") {
            return false;
        }
        return openai_or_anthropic(body);
    }
    if key.starts_with(b"AKIA")
        || key.starts_with(b"ASIA")
        || key.starts_with(b"ABIA")
        || key.starts_with(b"ACCA")
    {
        return !glued_after(b"_") && key.len() == 20 && plausible(&key[4..], false);
    }
    if let Some(body) = key.strip_prefix(b"AIza") {
        return !glued_after(b"_-") && body.len() == 35 && plausible(body, false);
    }
    if let Some(body) = key.strip_prefix(b"github_pat_") {
        return !glued_after(b"_") && body.len() >= 40 && plausible(body, true);
    }
    if key.starts_with(b"gh") && key.get(3) == Some(&b'_') {
        return !glued_after(b"") && key.len() >= 40 && plausible(&key[4..], true);
    }
    // Stripe: sk_/rk_ + live_/test_/prod_.
    let body = &key[key[3..]
        .iter()
        .position(|&b| b == b'_')
        .map_or(0, |i| i + 4)..];
    !glued_after(b"") && body.len() >= 16 && plausible(body, true)
}

/// `body` is what follows `sk-`.
fn openai_or_anthropic(body: &[u8]) -> bool {
    if let Some(rest) = body.strip_prefix(b"ant-") {
        // ant-api03-, ant-admin01-, ant-oat01-: a known word, two digits, a dash.
        let word_len = rest.iter().take_while(|b| b.is_ascii_lowercase()).count();
        let word = &rest[..word_len];
        let known = matches!(word, b"api" | b"admin" | b"oat");
        let digits = rest.get(word_len..word_len + 2);
        let dash = rest.get(word_len + 2) == Some(&b'-');
        if !(known && digits.is_some_and(|d| d.iter().all(u8::is_ascii_digit)) && dash) {
            return false;
        }
        let secret = &rest[word_len + 3..];
        return secret.len() >= 32 && plausible(secret, true);
    }
    for prefix in [&b"proj-"[..], b"svcacct-", b"admin-", b"None-"] {
        if let Some(secret) = body.strip_prefix(prefix) {
            return secret.len() >= 40 && plausible(secret, true);
        }
    }
    // Legacy and user keys: `sk-` + letters and digits only (48 for OpenAI; other
    // OpenAI-compatible providers use 32 hex digits or similar).
    (32..=64).contains(&body.len())
        && body.iter().all(u8::is_ascii_alphanumeric)
        && plausible(body, true)
}

/// Random-looking: letters and (when `digits`) digits both present, at least 8 distinct
/// characters, no run of 6 identical characters (`xxxxxx`, `000000`: placeholders).
fn plausible(body: &[u8], digits: bool) -> bool {
    let has_letter = body.iter().any(u8::is_ascii_alphabetic);
    let has_digit = body.iter().any(u8::is_ascii_digit);
    if !has_letter || (digits && !has_digit) {
        return false;
    }
    let mut seen = [false; 128];
    let mut distinct = 0;
    let mut run = 0;
    let mut prev = 0u8;
    for &b in body {
        if b < 128 && !seen[b as usize] {
            seen[b as usize] = true;
            distinct += 1;
        }
        run = if b == prev { run + 1 } else { 1 };
        if run >= 6 {
            return false;
        }
        prev = b;
    }
    distinct >= 8
}

bitrouter_plugin::export_guardrail!(ApiKeys);
