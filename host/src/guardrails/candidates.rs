//! `Candidates`: every match of every regex of one direction in one text, each pattern's
//! matches exactly as its own regex would find them one after another (so patterns whose
//! matches overlap are all found), without a pass per pattern over the whole text.
//!
//! Where the time went before this module (`examples/scan_profile.rs`, the 394 KB near-miss
//! corpus, a 2-CPU VM whose lazy DFA runs ~490 MB/s): one pass per pattern from the first
//! candidate on, 3.5 ms in all, of which the two patterns that start at a digit
//! (`pii_phone_numbers`, `ip_addresses`) took 1.58 and 0.82 ms. Nothing prefilters them:
//! a DFA reads each byte, and `pii_phone_numbers`' literal prefilter (`+`, `(`, the digits)
//! fires so often that it halved its speed (1.58 ms with it, 0.81 ms without). So patterns
//! come in two kinds:
//!
//! * **selective**: the regex's prefixes are literals rare enough for a SIMD prefilter to
//!   skip most of the text (`credentials` 1.9 GB/s, `api_keys` 4.9, `private_keys` and
//!   `pii_emails` 20). Each runs its own pass: it costs little, and is exact by itself.
//! * **the rest** share one pass, a DFA over all of them with no prefilter, whose speed
//!   barely depends on how many there are (0.82–0.86 ms for one or both here). A pattern's
//!   matches that this leftmost-first pass did not report are those that start inside a
//!   match it did report (the pass resumes at each match's end, and the leftmost start at
//!   or after any position is always reported), so each pattern's own regex then runs only
//!   over windows from each reported match to its end plus the pattern's longest match
//!   (merged where they meet). Within those windows its matches, in order, are exactly its
//!   whole-text matches: none can start outside them. A pattern with no longest match
//!   (`+`, `*`) gets windows that run to the end of the text.
//!
//! * **split**: a pattern whose regex is an alternation of selective branches, though the
//!   alternation as a whole is not (`suspicious_commands`: the literal set of all ten
//!   branches together is cut down to short, common prefixes such as `sh `, `dd `, `> `, and
//!   the regex ran at 958 MB/s on the near-miss corpus; each branch alone keeps its longer
//!   literals and runs at 11–69 GB/s, all ten one after another at 2.9 GB/s). Each branch
//!   runs its own prefiltered pass, and the pattern's own regex then runs in windows opened
//!   by the branches' matches, as for the shared pass: a match of the alternation at some
//!   position is a match of one of its branches there, which that branch's pass reports or
//!   covers with a match that started earlier.
//!
//! Where the first candidate of a text is (the yes/no for a clean text, which most texts
//! are): one pass of all regexes combined, except for texts of `PASSES_FROM` bytes or more
//! where the direction has split patterns and no shared pass; there the earliest of the
//! per-pattern and per-branch first matches, which is the combined regex's first match (it
//! matches at a position exactly where one of its parts does), found by prefiltered passes
//! instead of a combined one.
//!
//! Cost bound (the text is the caller's): windows are merged, do not overlap, and each
//! member's search resumes where its last match ended, so a member's searches over all its
//! windows read what one `find_iter` over the text would — a text crafted so that windows
//! cover everything costs what a pass per pattern cost before, not more; a split pattern
//! adds one pass per branch, at most `MAX_BRANCHES`.

use std::ops::Range;

use regex_automata::{Input, MatchKind, meta};
use regex_syntax::hir::literal::{ExtractKind, Extractor};
use regex_syntax::hir::{Hir, HirKind};

use super::engine::next_char;

/// How this module's regexes are built, like `regex::Regex` builds one.
fn builder(prefilter: bool) -> meta::Builder {
    let mut b = meta::Regex::builder();
    b.configure(
        meta::Config::new()
            .nfa_size_limit(Some(64 << 20))
            .auto_prefilter(prefilter),
    );
    b
}

/// A regex of `sources` (one pattern each).
fn build(sources: &[&str], prefilter: bool) -> Result<meta::Regex, String> {
    builder(prefilter)
        .build_many(sources)
        .map_err(|e| e.to_string())
}

/// A regex built from parsed syntax (a branch of a pattern's alternation), with a prefilter.
fn build_hir(hir: &Hir) -> Result<meta::Regex, String> {
    builder(true).build_from_hir(hir).map_err(|e| e.to_string())
}

/// Most branches a pattern is split into: each is a pass over the text.
const MAX_BRANCHES: usize = 16;

/// From this many bytes on, a text's first candidate is found by the passes rather than the
/// combined regex, where that choice exists. Each pass has a fixed cost: measured with
/// `suspicious_commands` (ten branches) on slices of the near-miss corpus, the combined
/// regex took 54 ns for 32 bytes against 243 ns for the ten passes, even at 512 bytes
/// (446 / 427 ns), and half as long from 2 KiB on (2.7 / 1.0 µs; 16 KiB: 13.5 / 6.9 µs).
const PASSES_FROM: usize = 512;

/// One pattern's regex.
struct Own {
    /// Index into the engine's patterns.
    pattern: usize,
    regex: meta::Regex,
}

/// Patterns without a selective prefilter, found through one shared pass.
struct Shared {
    /// All members' regexes together; pattern `i` of it is `members[i]`.
    pass: meta::Regex,
    members: Vec<(Own, Option<usize>)>,
}

/// A pattern found through its branches' passes.
struct Split {
    own: Own,
    max_len: Option<usize>,
    branches: Vec<meta::Regex>,
}

/// The candidate finder of one direction.
#[derive(Default)]
pub(super) struct Candidates {
    /// All regexes combined, for where the first candidate is (`None`: there are none).
    combined: Option<meta::Regex>,
    /// Long texts' first candidate comes from the passes below (see [`Candidates::first`]).
    first_by_passes: bool,
    selective: Vec<Own>,
    split: Vec<Split>,
    shared: Option<Shared>,
}

impl Candidates {
    /// Compiles `patterns`: (index into the engine's patterns, regex source).
    pub(super) fn build(patterns: &[(usize, String)]) -> Result<Candidates, String> {
        let mut selective = Vec::new();
        let mut split = Vec::new();
        let mut rest = Vec::new();
        for (pattern, source) in patterns {
            // Parsed once for every question; a source that does not parse here fails in
            // `build` below with the regex engine's own error.
            let hir = regex_syntax::parse(source).ok();
            if hir.as_ref().is_some_and(is_selective) {
                selective.push(Own {
                    pattern: *pattern,
                    regex: build(&[source], true)?,
                });
                continue;
            }
            let max_len = hir.as_ref().and_then(|h| h.properties().maximum_len());
            if let Some(branches) = hir.as_ref().and_then(selective_branches) {
                split.push(Split {
                    own: Own {
                        pattern: *pattern,
                        regex: build(&[source], false)?,
                    },
                    max_len,
                    branches: branches.iter().map(build_hir).collect::<Result<_, _>>()?,
                });
            } else {
                rest.push((*pattern, source.as_str(), max_len));
            }
        }
        let shared = match rest.as_slice() {
            [] => None,
            // Alone, its own pass is the shared pass: no windows needed. It keeps the regex
            // engine's own choice of strategy, as every pattern had before this module: a
            // suffix or inner literal (`[a-z.]+@corp\.example`) is searched for first, and
            // a pattern that no strategy helps costs what it did.
            [(pattern, source, _)] => {
                selective.push(Own {
                    pattern: *pattern,
                    regex: build(&[source], true)?,
                });
                None
            }
            _ => {
                let sources: Vec<&str> = rest.iter().map(|(_, s, _)| *s).collect();
                let mut members = Vec::new();
                for (pattern, source, max_len) in &rest {
                    members.push((
                        Own {
                            pattern: *pattern,
                            regex: build(&[source], false)?,
                        },
                        *max_len,
                    ));
                }
                Some(Shared {
                    pass: build(&sources, false)?,
                    members,
                })
            }
        };
        let sources: Vec<&str> = patterns.iter().map(|(_, s)| s.as_str()).collect();
        let combined = if sources.is_empty() {
            None
        } else {
            Some(build(&sources, true)?)
        };
        Ok(Candidates {
            combined,
            first_by_passes: !split.is_empty() && shared.is_none(),
            selective,
            split,
            shared,
        })
    }

    /// Whether there is no regex to run.
    pub(super) fn is_empty(&self) -> bool {
        self.combined.is_none()
    }

    /// Where the first match of any pattern in `text` starts (it may be empty): no match of
    /// any pattern starts before it.
    pub(super) fn first(&self, text: &str) -> Option<usize> {
        if !(self.first_by_passes && text.len() >= PASSES_FROM) {
            return self.combined.as_ref()?.find(text).map(|m| m.start());
        }
        let passes = self.selective.iter().map(|own| &own.regex);
        let branches = self.split.iter().flat_map(|s| &s.branches);
        passes
            .chain(branches)
            .filter_map(|regex| regex.find(text).map(|m| m.start()))
            .min()
    }

    /// Each pattern's non-empty matches in `text` from `from` on (no match of any of them
    /// may start before it), by pattern index; patterns without matches are left out.
    pub(super) fn find(&self, text: &str, from: usize) -> Vec<(usize, Vec<Range<usize>>)> {
        let mut found = Vec::new();
        for own in &self.selective {
            let mut spans = Vec::new();
            matches(&own.regex, text, from..text.len(), &mut spans);
            if !spans.is_empty() {
                found.push((own.pattern, spans));
            }
        }
        for split in &self.split {
            let mut reported: Vec<Range<usize>> = Vec::new();
            for branch in &split.branches {
                matches(branch, text, from..text.len(), &mut reported);
            }
            reported.sort_by_key(|r| r.start);
            let spans = within_windows(&split.own, split.max_len, text, &reported);
            if !spans.is_empty() {
                found.push((split.own.pattern, spans));
            }
        }
        if let Some(shared) = &self.shared {
            let mut reported: Vec<Range<usize>> = Vec::new();
            matches(&shared.pass, text, from..text.len(), &mut reported);
            if !reported.is_empty() {
                for (own, max_len) in &shared.members {
                    let spans = within_windows(own, *max_len, text, &reported);
                    if !spans.is_empty() {
                        found.push((own.pattern, spans));
                    }
                }
            }
        }
        found.sort_by_key(|(pattern, _)| *pattern);
        found
    }
}

/// `own`'s matches, searched only in the windows that `reported` (the shared pass's
/// matches, or a split pattern's branches' matches, by start) open.
fn within_windows(
    own: &Own,
    max_len: Option<usize>,
    text: &str,
    reported: &[Range<usize>],
) -> Vec<Range<usize>> {
    let reach = |end: usize| max_len.map_or(text.len(), |n| end.saturating_add(n).min(text.len()));
    let mut spans = Vec::new();
    // Where this pattern's own iteration has got to: a match may run past its window's
    // first reported match into the next.
    let mut resume = 0;
    let mut i = 0;
    while i < reported.len() {
        let start = reported[i].start.max(resume);
        let mut end = reach(reported[i].end);
        i += 1;
        while i < reported.len() && reported[i].start <= end {
            end = end.max(reach(reported[i].end));
            i += 1;
        }
        if start < end {
            resume = matches(&own.regex, text, start..end, &mut spans);
        }
    }
    spans
}

/// Pushes `regex`'s non-empty matches starting in `range` (and ending by its end) onto
/// `out`, one after another like `find_iter`; returns where the iteration stopped. Look-
/// around (`\b`) sees the text outside `range`.
fn matches(
    regex: &meta::Regex,
    text: &str,
    range: Range<usize>,
    out: &mut Vec<Range<usize>>,
) -> usize {
    let mut at = range.start;
    while at < range.end {
        let Some(found) = regex.search(&Input::new(text).range(at..range.end)) else {
            return range.end;
        };
        let span = found.range();
        at = if span.is_empty() {
            next_char(text, span.end)
        } else {
            span.end
        };
        if !span.is_empty() {
            out.push(span);
        }
    }
    at
}

/// Whether a regex's matches all start with one of a set of literals a prefilter finds
/// quickly: the regex engine's own verdict, or single bytes that prose and code seldom hold
/// (`@`, `%`, `+`… but not letters, digits, spaces or the commonest punctuation).
/// Measured on the near-miss corpus: `pii_emails` (`@`, `%40`) runs at 20 GB/s with its
/// prefilter though the engine calls it slow; `pii_phone_numbers` (`+`, `(`, the digits)
/// at half its DFA speed with one.
fn is_selective(hir: &Hir) -> bool {
    let mut prefixes = Extractor::new().kind(ExtractKind::Prefix).extract(hir);
    prefixes.optimize_for_prefix_by_preference();
    let Some(literals) = prefixes.literals() else {
        return false;
    };
    if literals.is_empty() {
        return false;
    }
    let fast = regex_automata::util::prefilter::Prefilter::new(MatchKind::LeftmostFirst, literals)
        .is_some_and(|p| p.is_fast());
    let rare = |b: &u8| b.is_ascii_punctuation() && !b".,-_'\"()/:;=".contains(b);
    fast || literals.iter().all(|l| l.as_bytes().iter().any(rare))
}

/// The branches of `hir` when it is an alternation whose branches are each selective though
/// the whole is not (see the module's header), and there are at most [`MAX_BRANCHES`].
fn selective_branches(hir: &Hir) -> Option<&[Hir]> {
    match hir.kind() {
        HirKind::Alternation(branches)
            if branches.len() <= MAX_BRANCHES && branches.iter().all(is_selective) =>
        {
            Some(branches)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every pattern's matches, one whole-text pass each: what `find` must equal.
    fn naive(patterns: &[(usize, String)], text: &str) -> Vec<(usize, Vec<Range<usize>>)> {
        let mut out = Vec::new();
        for (i, source) in patterns {
            let re = regex::Regex::new(source).unwrap();
            let mut spans = Vec::new();
            let mut at = 0;
            while at <= text.len() {
                let Some(m) = re.find_at(text, at) else { break };
                at = if m.is_empty() {
                    next_char(text, m.end())
                } else {
                    m.end()
                };
                if !m.is_empty() {
                    spans.push(m.range());
                }
                if at >= text.len() {
                    break;
                }
            }
            if !spans.is_empty() {
                out.push((*i, spans));
            }
        }
        out
    }

    fn patterns(sources: &[&str]) -> Vec<(usize, String)> {
        sources.iter().map(|s| s.to_string()).enumerate().collect()
    }

    fn is_selective(source: &str) -> bool {
        super::is_selective(&regex_syntax::parse(source).unwrap())
    }

    #[test]
    fn kinds_follow_the_prefixes() {
        assert!(is_selective(r"(?:sk-|AKIA)[A-Za-z0-9]{16}"));
        assert!(is_selective(r"(?:@|%40)[a-z]{2,}"));
        assert!(!is_selective(r"[0-9]{1,3}\.[0-9]{1,3}"));
        assert!(!is_selective(r"\+[1-9][0-9]{4}|[2-9][0-9]{2}-[0-9]{4}"));
    }

    #[test]
    fn overlapping_matches_of_shared_patterns_are_all_found() {
        // Three digit-led patterns (a shared pass) whose matches nest and overlap, and a
        // selective one: every pattern must see what its own pass sees.
        let p = patterns(&[
            r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}",
            r"\b[0-9]{2,4}[ .-][0-9]{2,8}",
            r"[0-9]+x",
            r"@[a-z]+\.[a-z]{2,}",
        ]);
        let c = Candidates::build(&p).unwrap();
        assert_eq!(c.selective.len(), 1);
        assert_eq!(c.shared.as_ref().unwrap().members.len(), 3);
        let text = "ip 10.20.30.40 tel 030 1234567 and 12.34.56.78x, 999999999999999x mail a@b.example 1.2";
        assert_eq!(c.find(text, 0), naive(&p, text));
    }

    /// Shell-command shapes like `suspicious_commands`': each branch leads with a literal
    /// a prefilter finds, all five together with short common ones.
    const COMMANDS: &str = r"rm[ \t]{1,3}-[a-z]{1,4}|(?:ba)?sh[ \t]{1,4}<\(|dd[ \t][a-z =]{0,20}of=|>[ \t]{0,4}/dev/[a-z]{1,3}|\(\)[ \t]{0,4}\{";

    #[test]
    fn an_alternation_of_selective_branches_is_split() {
        assert!(!is_selective(COMMANDS));
        let p = patterns(&[COMMANDS, r"@[a-z]+"]);
        let c = Candidates::build(&p).unwrap();
        assert_eq!(c.split.len(), 1);
        assert_eq!(c.split[0].branches.len(), 5);
        assert_eq!(c.selective.len(), 1);
        // No shared pass: a long text's first candidate comes from the passes.
        assert!(c.first_by_passes);
        // A branch without a selective literal keeps the pattern whole.
        let p = patterns(&[&format!("{COMMANDS}|[0-9]+x")]);
        let c = Candidates::build(&p).unwrap();
        assert!(c.split.is_empty());
        assert!(!c.first_by_passes);
    }

    #[test]
    fn split_patterns_match_their_own_passes_on_generated_texts() {
        // Beside a shared pass (so `first` is the combined regex) and without one (so it is
        // the earliest of the passes).
        for sources in [
            vec![
                COMMANDS,
                r"[0-9]{1,3}\.[0-9]{1,3}",
                r"\b[0-9]{2,4}-[0-9]{2}",
            ],
            vec![COMMANDS, r"@[a-z]+"],
            vec![COMMANDS],
        ] {
            let p = patterns(&sources);
            let c = Candidates::build(&p).unwrap();
            assert_eq!(c.split.len(), 1);
            // Tokens the branches share, so their matches start inside each other, chain
            // and run past each other's windows.
            let tokens = [
                "rm", " ", "\t", "-", "ab", "sh", "bash", "<(", "dd", "of=", ">", "/dev/", "sda",
                "()", "{", "x", "@", "12", ".", "é",
            ];
            let mut state = 0x2545_F491_4F6C_DD1Du64;
            for round in 0..500 {
                // 50 bytes to 2 KB: both sides of `PASSES_FROM`.
                let mut text = String::new();
                for _ in 0..20 + (round % 16) * 50 {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    text.push_str(tokens[(state % tokens.len() as u64) as usize]);
                }
                let want = naive(&p, &text);
                let first = want.iter().map(|(_, spans)| spans[0].start).min();
                assert_eq!(c.find(&text, 0), want, "text: {text:?}");
                // None of these patterns matches the empty string, so `first` is exactly
                // where the earliest match starts.
                assert_eq!(c.first(&text), first, "text: {text:?}");
            }
        }
    }

    #[test]
    fn shared_patterns_match_their_own_passes_on_generated_texts() {
        let p = patterns(&[
            r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}",
            r"\b0[1-9][0-9]{0,3}[ ./-][0-9]{2,8}",
            r"[0-9a-f]{1,4}(?::[0-9a-f]{1,4}){2,7}",
            r"[0-9]{3}-[0-9]{2}-[0-9]{4}\b",
            r"[0-9][0-9. :a-f-]*z",
        ]);
        let c = Candidates::build(&p).unwrap();
        // A small generator (xorshift) over an alphabet the patterns overlap on, so
        // matches nest, chain and run past each other's windows.
        let alphabet: Vec<char> = "0123456789..--  ::abcfz é".chars().collect();
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..300 {
            let mut text = String::new();
            for _ in 0..200 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                text.push(alphabet[(state % alphabet.len() as u64) as usize]);
            }
            assert_eq!(c.find(&text, 0), naive(&p, &text), "text: {text:?}");
        }
    }
}
