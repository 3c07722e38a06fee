//! `StreamGuard`: the downgoing firewall for streamed answers. Text deltas (answer text,
//! reasoning, each tool call's arguments) are held back per channel, but only as much as
//! could still be the start of a match: after each delta the held text is scanned (with
//! some already-released text before it, for context), and everything before the first
//! position where a pattern's regex is still in progress at the end of the text is
//! released, redacted. A match split across chunks is therefore always whole before any of
//! it goes out, and clean text goes out as it arrives. Patterns without a regex (found by a
//! plugin's `scan`) cannot be tracked that way: with any of those, a fixed window of at
//! least 4 × the longest match is held instead. A block ends the stream; the caller gets the
//! clean text before the match, then an error.

use std::sync::Arc;

use crate::canonical::StreamEvent;
use crate::plugins::{Action, Direction};

use super::engine::{GuardrailEngine, Hit, ceil_char, floor_char};
use super::tally::Tally;

/// Which stream of text a delta belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Channel {
    Text,
    Reasoning,
    Tool(u32),
}

/// Guards one streamed answer: holds back the tail of the text until no pattern can still
/// match across it, then releases it redacted (or blocks).
pub struct StreamGuard {
    engine: Arc<GuardrailEngine>,
    /// Fixed hold-back when tails cannot be checked (`tail_checkable` is false).
    window: usize,
    /// The most a match can span: how far back a live tail may start.
    max_match_len: usize,
    /// Whether the engine can tell a tail that may still become a match (its liveness DFA).
    tail_checkable: bool,
    /// Released text kept before `held` so boundary-sensitive patterns see their context.
    context_len: usize,
    channel: Option<Channel>,
    context: String,
    held: String,
    /// What the guard found and did in this stream.
    pub tally: Tally,
}

/// The stream must end: a pattern that blocks matched (or its plugin failed).
#[derive(Debug)]
pub struct Blocked;

impl StreamGuard {
    /// `None` when nothing is looked for in responses.
    pub fn new(engine: &Arc<GuardrailEngine>) -> Option<StreamGuard> {
        if !engine.active(Direction::Response) {
            return None;
        }
        let max = engine.max_match_len(Direction::Response).max(1);
        let tail_checkable = engine.tail_checkable(Direction::Response);
        Some(StreamGuard {
            window: engine.stream_window.max(4 * max),
            max_match_len: max,
            tail_checkable,
            context_len: max.min(4096),
            engine: engine.clone(),
            channel: None,
            context: String::new(),
            held: String::new(),
            tally: Tally::default(),
        })
    }

    /// Passes `events` through: text is held back or released (redacted), other events go
    /// out in order, after the held text of the channel before them.
    pub async fn process(
        &mut self,
        events: Vec<StreamEvent>,
        out: &mut Vec<StreamEvent>,
    ) -> Result<(), Blocked> {
        for event in events {
            let (channel, delta) = match event {
                StreamEvent::TextDelta(t) => (Channel::Text, t),
                StreamEvent::ReasoningDelta(t) => (Channel::Reasoning, t),
                StreamEvent::ToolCallDelta { index, arguments } => {
                    (Channel::Tool(index), arguments)
                }
                other => {
                    self.flush(out).await?;
                    out.push(other);
                    continue;
                }
            };
            if self.channel != Some(channel) {
                self.flush(out).await?;
                self.channel = Some(channel);
            }
            self.held.push_str(&delta);
            let keep = if self.tail_checkable {
                let from = self.held.len().saturating_sub(self.max_match_len);
                self.engine
                    .live_start(Direction::Response, &self.held, from)
                    .map_or(0, |s| self.held.len() - s)
            } else if self.held.len() > self.window {
                self.window
            } else {
                continue;
            };
            if keep < self.held.len() {
                self.release(keep, out).await?;
            }
        }
        Ok(())
    }

    /// Scans and releases everything held (the channel ended, or the stream did).
    pub async fn flush(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), Blocked> {
        if !self.held.is_empty() {
            self.release(0, out).await?;
        }
        self.channel = None;
        self.context.clear();
        Ok(())
    }

    /// Scans context + held text and releases all but the last `keep` bytes of it (more when
    /// a finding straddles that cut: a finding that starts before it is already whole).
    async fn release(&mut self, keep: usize, out: &mut Vec<StreamEvent>) -> Result<(), Blocked> {
        let base = self.context.len();
        let mut scanned = std::mem::take(&mut self.context);
        scanned.push_str(&self.held);
        let mut cut = base + floor_char(&self.held, self.held.len() - keep.min(self.held.len()));
        let hits = self.engine.scan(Direction::Response, &scanned).await;
        // Hits inside the context were dealt with when that text was released (a plugin may
        // widen a finding back into it: that one counts); hits starting at or after the cut
        // are found again once more text arrives.
        let mut taken: Vec<Hit> = Vec::new();
        for h in hits {
            if h.failed {
                taken.push(h);
                continue;
            }
            if h.span.end <= base || h.span.start >= cut {
                continue;
            }
            cut = cut.max(h.span.end);
            taken.push(h);
        }
        self.tally.add(&self.engine, Direction::Response, &taken);
        if taken.iter().any(|h| h.action == Action::Block) {
            // Release the clean text before the first blocking match, then stop.
            let first = taken
                .iter()
                .filter(|h| h.action == Action::Block)
                .map(|h| {
                    if h.failed {
                        base
                    } else {
                        h.span.start.max(base)
                    }
                })
                .min()
                .unwrap_or(base);
            let clean_end = first;
            let part = &scanned[base..clean_end];
            let redacted = self
                .engine
                .redact(part, &shift(&taken, base, clean_end))
                .unwrap_or_else(|| part.to_owned());
            self.emit(redacted, out);
            self.held.clear();
            return Err(Blocked);
        }
        let released = &scanned[base..cut];
        let text = self
            .engine
            .redact(released, &shift(&taken, base, cut))
            .unwrap_or_else(|| released.to_owned());
        self.emit(text, out);
        // The rest is held and the released tail becomes the context, in the buffers they
        // already have: two allocations per release fewer (examples/alloc_count.rs).
        self.held.clear();
        self.held.push_str(&scanned[cut..]);
        let ctx_start = ceil_char(&scanned, cut.saturating_sub(self.context_len).max(base));
        scanned.truncate(cut);
        scanned.drain(..ctx_start);
        self.context = scanned;
        Ok(())
    }

    /// The error that ends a blocked stream.
    pub fn block_error(&self) -> crate::error::Error {
        self.tally.block_error(&self.engine)
    }

    fn emit(&self, text: String, out: &mut Vec<StreamEvent>) {
        if text.is_empty() {
            return;
        }
        out.push(match self.channel {
            Some(Channel::Reasoning) => StreamEvent::ReasoningDelta(text),
            Some(Channel::Tool(index)) => StreamEvent::ToolCallDelta {
                index,
                arguments: text,
            },
            _ => StreamEvent::TextDelta(text),
        });
    }
}

/// The hits inside `[from, to)` (clipped at `from`), with spans made relative to `from`.
fn shift(hits: &[Hit], from: usize, to: usize) -> Vec<Hit> {
    hits.iter()
        .filter(|h| !h.failed && h.span.end > from && h.span.end <= to)
        .map(|h| Hit {
            span: h.span.start.max(from) - from..h.span.end - from,
            ..h.clone()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn engine(yaml: &str) -> Arc<GuardrailEngine> {
        let config = Config::parse(yaml, std::path::Path::new("/nonexistent/t.yaml")).unwrap();
        Arc::new(GuardrailEngine::build(&config.guardrails, &[]).unwrap())
    }

    const TOKENS: &str = "guardrails:\n  builtin: false\n  stream_window: 16\n  custom_patterns:\n    - { name: tok, regex: \"tok_[0-9]{6}\", direction: downgoing, action: redact, max_match_len: 10 }\n    - { name: bad, regex: \"rm -rf /\", direction: downgoing, action: block, max_match_len: 8 }\n";

    async fn run(engine: &Arc<GuardrailEngine>, deltas: &[&str]) -> (String, bool) {
        let mut guard = StreamGuard::new(engine).unwrap();
        let mut out = Vec::new();
        let mut blocked = false;
        for d in deltas {
            if guard
                .process(vec![StreamEvent::TextDelta((*d).to_owned())], &mut out)
                .await
                .is_err()
            {
                blocked = true;
                break;
            }
        }
        if !blocked {
            blocked = guard
                .process(vec![StreamEvent::Finish(Default::default())], &mut out)
                .await
                .is_err();
        }
        let text = out
            .iter()
            .filter_map(|e| match e {
                StreamEvent::TextDelta(t) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        (text, blocked)
    }

    #[tokio::test]
    async fn a_match_split_at_every_offset_is_redacted() {
        let e = engine(TOKENS);
        let text = "the token is tok_123456, keep it safe and sound, and more text follows é, then tok_654321 again with ünïcode around it and tok_111111";
        let expected = text
            .replace("tok_123456", "[REDACTED:tok]")
            .replace("tok_654321", "[REDACTED:tok]")
            .replace("tok_111111", "[REDACTED:tok]");
        for cut in 1..text.len() {
            if !text.is_char_boundary(cut) {
                continue;
            }
            let (out, blocked) = run(&e, &[&text[..cut], &text[cut..]]).await;
            assert!(!blocked);
            assert_eq!(out, expected, "cut at {cut}");
        }
        // One byte per delta.
        let bytes: Vec<String> = text.chars().map(String::from).collect();
        let refs: Vec<&str> = bytes.iter().map(String::as_str).collect();
        assert_eq!(run(&e, &refs).await.0, expected);
    }

    #[tokio::test]
    async fn a_block_split_at_every_offset_ends_the_stream_before_the_match() {
        let e = engine(TOKENS);
        let text = "first some harmless words here, and a few more of them to fill the window, then rm -rf / and more words after it";
        let start = text.find("rm -rf").unwrap();
        for cut in 1..text.len() {
            let (out, blocked) = run(&e, &[&text[..cut], &text[cut..]]).await;
            assert!(blocked, "cut at {cut}");
            assert!(!out.contains("rm -rf"), "cut at {cut}: {out}");
            assert_eq!(out, &text[..start], "cut at {cut}");
        }
    }

    #[tokio::test]
    async fn channels_are_scanned_separately_and_flushed_in_order() {
        let e = engine(TOKENS);
        let mut guard = StreamGuard::new(&e).unwrap();
        let mut out = Vec::new();
        guard
            .process(
                vec![
                    StreamEvent::TextDelta("tok_12".into()),
                    StreamEvent::ToolCallStart {
                        index: 0,
                        id: "c".into(),
                        name: "f".into(),
                    },
                    StreamEvent::ToolCallDelta {
                        index: 0,
                        arguments: "{\"a\":\"tok_".into(),
                    },
                    StreamEvent::ToolCallDelta {
                        index: 0,
                        arguments: "654321\"}".into(),
                    },
                    StreamEvent::ToolCallEnd { index: 0 },
                ],
                &mut out,
            )
            .await
            .unwrap();
        assert_eq!(
            out,
            vec![
                StreamEvent::TextDelta("tok_12".into()),
                StreamEvent::ToolCallStart {
                    index: 0,
                    id: "c".into(),
                    name: "f".into()
                },
                StreamEvent::ToolCallDelta {
                    index: 0,
                    arguments: "{\"a\":\"".into()
                },
                StreamEvent::ToolCallDelta {
                    index: 0,
                    arguments: "[REDACTED:tok]\"}".into()
                },
                StreamEvent::ToolCallEnd { index: 0 },
            ]
        );
        assert_eq!(guard.tally.header("redact").as_deref(), Some("tok=1"));
    }

    #[tokio::test]
    async fn only_a_tail_that_could_become_a_match_is_held_back() {
        let e = engine(TOKENS);
        let mut guard = StreamGuard::new(&e).unwrap();
        let mut out = Vec::new();
        let long = "x".repeat(100);
        guard
            .process(vec![StreamEvent::TextDelta(long)], &mut out)
            .await
            .unwrap();
        // Nothing in `x…` can start a match: all of it goes out at once.
        assert_eq!(out, vec![StreamEvent::TextDelta("x".repeat(100))]);
        out.clear();
        // A tail that could still become a match stays back, and only that tail.
        guard
            .process(vec![StreamEvent::TextDelta("abc tok_12".into())], &mut out)
            .await
            .unwrap();
        assert_eq!(out, vec![StreamEvent::TextDelta("abc ".into())]);
        out.clear();
        let more = "3456 ".to_owned() + &"y".repeat(1991);
        guard
            .process(vec![StreamEvent::TextDelta(more)], &mut out)
            .await
            .unwrap();
        let released: usize = out
            .iter()
            .map(|e| match e {
                StreamEvent::TextDelta(t) => t.len(),
                _ => 0,
            })
            .sum();
        assert_eq!(released, "[REDACTED:tok] ".len() + 1991);
        assert_eq!(guard.tally.header("redact").as_deref(), Some("tok=1"));
    }
}
