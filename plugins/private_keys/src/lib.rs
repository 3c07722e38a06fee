//! `private_keys`: PEM-encoded private keys in text the model will see (default action: block).
//!
//! The host's regex finds the armour line: `-----BEGIN <up to 3 words> PRIVATE KEY-----`
//! (RSA, EC, DSA, OPENSSH, ENCRYPTED, PKCS#8's bare `PRIVATE KEY` which also carries Ed25519
//! and X25519 keys), `-----BEGIN PGP PRIVATE KEY BLOCK-----`, and the SSH2 (RFC 4716) form
//! `---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----`. `check` then looks at what follows:
//!
//! * key material (a line of 16+ base64 characters, or the `Proc-Type:` / `DEK-Info:` /
//!   `Comment:` headers of encrypted and SSH2 keys), or nothing at all (the text ends right
//!   after the armour line: a key cut off by a chunk boundary or a truncated paste) makes it a
//!   finding;
//! * the span is widened over the key body, line by line, through the matching `-----END …`
//!   line when it is there, so `redact` removes the whole key, not just its armour line.
//!   Lines may be separated by real newlines, `\r\n`, spaces (a key pasted on one line), an
//!   escaped `\n` (a key inside a JSON string, e.g. a GCP service-account file) with any
//!   number of backslashes (`\\n`: that JSON string inside a JSON log line), e-mail quoting
//!   (`> ` or `>> ` at each line's start), or string literals, one per line (`"…\n" +`
//!   newline `"…"`, C's adjacent literals, array elements); `\/` counts as `/`;
//! * an armour line followed by anything else (`"`, `...`, prose, code) is a mention, not a
//!   key: `if line.starts_with("-----BEGIN RSA PRIVATE KEY-----")`, or documentation showing
//!   `-----BEGIN PRIVATE KEY-----\n...\n-----END PRIVATE KEY-----`, or an empty BEGIN/END pair.
//!
//! `max-match-len` is the armour line's bound (what the streaming window must hold to catch
//! a key split across chunks); findings are wider when the body is in the same text.
//!
//! Deliberately not detected: public keys and certificates (`PUBLIC KEY`, `CERTIFICATE`),
//! PuTTY `.ppk` files, raw base64 or hex key material without armour, JWK JSON keys.

use bitrouter_plugin::guardrail::*;

const ID: &str = "private_keys";

const REGEX: &str = concat!(
    r"-----BEGIN (?:[A-Z0-9]{1,16} ){0,3}PRIVATE KEY(?: BLOCK)?-----",
    r"|---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----",
);
/// `-----BEGIN ` + 3 × 17 + `PRIVATE KEY BLOCK-----`.
const MAX_LEN: u32 = 96;
/// How far past the armour line the body (and the END line) is looked for.
const MAX_BODY: usize = 16 * 1024;

struct PrivateKeys;

impl Guardrail for PrivateKeys {
    fn describe() -> Vec<Pattern> {
        vec![
            Pattern::new(
                ID,
                "PEM-encoded private keys (RSA, EC, DSA, OpenSSH, PKCS#8, encrypted, PGP, SSH2)",
            )
            .directions(Directions::REQUEST)
            .action(Action::Block)
            .regex(REGEX)
            .max_match_len(MAX_LEN),
        ]
    }

    fn check(_pattern: &str, text: &str, candidates: Vec<Span>) -> Vec<Finding> {
        let mut findings: Vec<Finding> = Vec::new();
        for span in candidates {
            // A key's body may contain no second BEGIN; skip candidates inside a widened span.
            if findings.last().is_some_and(|f| (span.start) < f.span.end) {
                continue;
            }
            if let Some(end) = key_end(text, span.end as usize) {
                findings.push(Finding::new(ID, Span::new(span.start as usize, end)));
            }
        }
        findings
    }
}

/// `Some(end of the finding)` when the armour line ending at `from` starts a key.
fn key_end(text: &str, from: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let limit = bytes.len().min(from + MAX_BODY);
    let mut pos = from;
    let mut material = false;
    let mut end = from;
    loop {
        let next = skip_separators(bytes, pos, limit);
        if next >= limit {
            // The text ends after the armour line (and maybe part of the body): a truncated
            // key is still a key, a bare armour line at the very end may be the start of one.
            return if material || next == bytes.len() {
                Some(end)
            } else {
                None
            };
        }
        pos = next;
        let rest = &bytes[pos..limit];
        if rest.starts_with(b"-----END ") || rest.starts_with(b"---- END ") {
            if !material {
                return None; // An empty BEGIN/END pair: a placeholder.
            }
            let close: &[u8] = if rest[4] == b'-' { b"-----" } else { b" ----" };
            let line = &rest[5..rest.len().min(120)];
            return Some(match find(line, close) {
                Some(i) if contains(&line[..i], b"PRIVATE KEY") => pos + 5 + i + close.len(),
                _ => end,
            });
        }
        if ["Proc-Type:", "DEK-Info:", "Comment:"]
            .iter()
            .any(|h| rest.starts_with(h.as_bytes()))
        {
            // A header line runs to the end of the line (real or escaped newline).
            let len = rest
                .iter()
                .enumerate()
                .position(|(i, &b)| {
                    b == b'\n'
                        || b == b'\r'
                        || (b == b'\\' && {
                            let k = rest[i..].iter().take_while(|&&c| c == b'\\').count();
                            rest.get(i + k) == Some(&b'n')
                        })
                })
                .unwrap_or(rest.len());
            material = true;
            pos += len;
            end = pos;
            continue;
        }
        let run = base64_run(rest);
        let token_end = pos + run;
        // What follows a short token decides: the last line of a body is short, but a short
        // word followed by prose is not key material.
        let ends_body = run > 0 && {
            let after = skip_separators(bytes, token_end, limit);
            after >= limit
                || bytes[after..].starts_with(b"-----END ")
                || bytes[after..].starts_with(b"---- END ")
                || bytes[after] == b'=' // a PGP armour checksum line follows
        };
        let token_done = bytes
            .get(token_end)
            .is_none_or(|&b| matches!(b, b'\n' | b'\r' | b' ' | b'\t' | b'\\' | b'"' | b'\''));
        // A log that cut the key short: `…LK87... (truncated, 718 more bytes)`.
        let truncated = run >= 16
            && (bytes[token_end..].starts_with(b"...")
                || bytes[token_end..].starts_with("…".as_bytes()));
        if truncated {
            return Some(token_end);
        }
        if run > 0
            && token_done
            && (run >= 16 || (material && (ends_body || rest[run - 1] == b'=')))
        {
            material = true;
            pos = token_end;
            end = pos;
            continue;
        }
        return material.then_some(end);
    }
}

/// Skips what separates the lines of a key in the forms keys travel in: whitespace;
/// escaped `\n` / `\r` / `\t` with any number of backslashes (`\\n` is a key in a JSON
/// string inside a JSON log line); e-mail quoting (`> ` or `>> ` after a line break); and
/// one string literal per line (`"…\n" +` newline `"…"`, C's adjacent `"…"` `"…"`, a
/// `,` between array elements).
fn skip_separators(bytes: &[u8], mut pos: usize, limit: usize) -> usize {
    while pos < limit {
        match bytes[pos] {
            b'\n' | b'\r' => {
                pos += 1;
                while pos < limit && matches!(bytes[pos], b'>' | b' ' | b'\t') {
                    pos += 1;
                }
            }
            b' ' | b'\t' => pos += 1,
            b'\\' => {
                let slashes = bytes[pos..limit]
                    .iter()
                    .take_while(|&&b| b == b'\\')
                    .count();
                if matches!(bytes.get(pos + slashes), Some(b'n' | b'r' | b't')) {
                    pos += slashes + 1;
                } else {
                    break;
                }
            }
            b'"' | b'\'' => match literal_join(bytes, pos, limit) {
                Some(next) => pos = next,
                None => break,
            },
            _ => break,
        }
    }
    pos
}

/// At a closing quote: `Some(after the next opening quote)` when the quote ends one string
/// literal and another starts (`"` [`+`|`,`] line break [`+`] `"`), else `None` (a quote
/// right after the armour line with no key inside it is a mention: `starts_with("-----…")`).
fn literal_join(bytes: &[u8], pos: usize, limit: usize) -> Option<usize> {
    let quote = bytes[pos];
    let mut i = pos + 1;
    let mut joiner = false;
    while i < limit {
        match bytes[i] {
            b' ' | b'\t' | b'\r' | b'\n' => {}
            b'+' | b',' if !joiner => joiner = true,
            // A line continuation between the literals (a C macro, a shell string).
            b'\\' if matches!(bytes.get(i + 1), Some(b'\n' | b'\r')) => {}
            b if b == quote => return Some(i + 1),
            _ => return None,
        }
        i += 1;
    }
    None
}

/// The length of the base64 at the start of `s`; `\/` (JSON's optional escape of `/`)
/// counts as a `/`.
fn base64_run(s: &[u8]) -> usize {
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b if b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=' => i += 1,
            b'\\' if s.get(i + 1) == Some(&b'/') => i += 2,
            _ => break,
        }
    }
    i
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    find(haystack, needle).is_some()
}

bitrouter_plugin::export_guardrail!(PrivateKeys);
