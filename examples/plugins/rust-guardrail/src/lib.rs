//! Flags internal document ids, `CONFIDENTIAL-` followed by six digits.
//!
//! * `confidential-id`: the plain form. The host finds candidates with the declared regex;
//!   `check` drops the documentation placeholder `CONFIDENTIAL-000000` and ids glued to
//!   more digits, and redacts the rest as `CONFIDENTIAL-######`.
//! * `confidential-id-obfuscated`: the same id disguised with separators, zero-width
//!   characters or Cyrillic look-alike letters (`C O N F I D E N T I A L 1 2 3 4 5 6`,
//!   `CОNFIDENTIAL-123456` with a Cyrillic `О`). A regex cannot express "this word, after
//!   Unicode folding, ignoring separators between any two letters", so `scan` does it.

use bitrouter_plugin::guardrail::*;

const PLAIN: &str = "confidential-id";
const OBFUSCATED: &str = "confidential-id-obfuscated";
const WORD: &[u8] = b"CONFIDENTIAL";

struct ConfidentialIds;

impl Guardrail for ConfidentialIds {
    fn describe() -> Vec<Pattern> {
        vec![
            Pattern::new(PLAIN, "Internal document id (CONFIDENTIAL-NNNNNN)")
                .regex(r"CONFIDENTIAL-\d{6}")
                .max_match_len(19)
                .action(Action::Redact),
            Pattern::new(
                OBFUSCATED,
                "Internal document id disguised with separators or look-alike letters",
            )
            .max_match_len(160)
            .action(Action::Block),
        ]
    }

    fn check(_pattern: &str, text: &str, candidates: Vec<Span>) -> Vec<Finding> {
        candidates
            .into_iter()
            .filter(|span| {
                let id = &text[span.range()];
                let glued = text[span.end as usize..]
                    .bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_digit());
                id != "CONFIDENTIAL-000000" && !glued
            })
            .map(|span| Finding::new(PLAIN, span).replace_with("CONFIDENTIAL-######"))
            .collect()
    }

    fn scan(_direction: Direction, text: &str) -> Vec<Finding> {
        let mut findings = Vec::new();
        let mut pos = 0;
        // Every character a reader would take for a `C` may start an id.
        while let Some(rel) = text[pos..].find(|ch| fold(ch) == Some(b'C')) {
            let start = pos + rel;
            match match_at(text, start) {
                Some(end) => {
                    // The plain form is the regex pattern's job.
                    let plain = end - start == 19 && text[start..end].starts_with("CONFIDENTIAL-");
                    if !plain {
                        findings.push(Finding::new(OBFUSCATED, Span::new(start, end)));
                    }
                    pos = end;
                }
                None => pos = start + text[start..].chars().next().map_or(1, char::len_utf8),
            }
        }
        findings
    }
}

/// The end of an id starting at `start`: the letters of `CONFIDENTIAL` then six digits, as
/// a reader sees them (case, look-alike letters and separators folded away), within 160
/// bytes.
fn match_at(text: &str, start: usize) -> Option<usize> {
    let mut matched = 0;
    for (i, ch) in text[start..].char_indices() {
        if i > 160 {
            return None;
        }
        let b = fold(ch)?;
        if b == 0 {
            continue;
        }
        let ok = match WORD.get(matched) {
            Some(&want) => b == want,
            None => b.is_ascii_digit(),
        };
        if !ok {
            return None;
        }
        matched += 1;
        if matched == WORD.len() + 6 {
            return Some(start + i + ch.len_utf8());
        }
    }
    None
}

/// `Some(0)`: a separator to skip; `Some(b)`: the ASCII letter or digit a reader sees;
/// `None`: anything else (ends a match).
fn fold(ch: char) -> Option<u8> {
    Some(match ch {
        'a'..='z' | 'A'..='Z' | '0'..='9' => ch.to_ascii_uppercase() as u8,
        ' ' | '-' | '_' | '.' | '\u{200B}' | '\u{200C}' | '\u{200D}' | '\u{2060}' | '\u{FEFF}' => 0,
        // Cyrillic and Greek capitals and lowercase that look like Latin letters.
        'А' | 'а' | 'Α' => b'A',
        'С' | 'с' | 'Ϲ' => b'C',
        'Е' | 'е' | 'Ε' => b'E',
        'І' | 'і' | 'Ι' => b'I',
        'О' | 'о' | 'Ο' | 'ο' => b'O',
        'Т' | 'Τ' => b'T',
        'Н' | 'Ν' => b'N',
        'Ⅼ' => b'L',
        _ => return None,
    })
}

bitrouter_plugin::export_guardrail!(ConfidentialIds);
