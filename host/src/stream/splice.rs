//! The seam of mid-stream failover: what the caller has been sent so far, tool calls held
//! back until they are whole, and the join of a later attempt onto the earlier ones so the
//! caller reads one answer — one start, no repeated text, tool calls numbered on, usage
//! summed.
//!
//! Events pass through here before the downgoing guard, so the guard sees the joined text
//! as one continuous answer.

use crate::canonical::{StreamEvent, Usage};

/// The longest stretch of already-sent text a continuation is compared against for a
/// repeat. A provider asked to continue repeats at most its last sentence or so; comparing
/// further back would hold the continuation's first bytes for longer with nothing to gain.
const MAX_OVERLAP: usize = 2048;

/// The most answer text (plus held tool-call arguments) a stream keeps to carry it on. An
/// upstream controls how much it streams, and the partial answer becomes the next request's
/// body; past this the stream is relayed as it comes and is not carried on if it breaks.
pub const MAX_KEPT: usize = 16 << 20;

/// What the caller has been sent of the answer, for the request that continues it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Partial {
    /// The answer's text so far, every attempt joined.
    pub text: String,
    /// Reasoning text was streamed.
    pub reasoning: bool,
    /// Tool calls the caller received whole (name, arguments).
    pub tool_calls: Vec<(String, String)>,
    /// Bytes of text, reasoning and tool arguments the current attempt produced, whether
    /// or not they reached the caller (held back, dropped as a repeat): what it is charged
    /// for when it is cut before reporting usage.
    pub attempt_bytes: u64,
}

impl Partial {
    /// Nothing but whitespace and reasoning went out: starting over loses nothing.
    pub fn is_blank(&self) -> bool {
        self.text.trim().is_empty() && self.tool_calls.is_empty()
    }
}

/// How a later attempt joins the earlier ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinMode {
    /// The attempt continues the partial answer: its text follows on (a repeat of the
    /// partial's end is dropped).
    Continue,
    /// The attempt answers from the start: a replay of what was sent is dropped, and tool
    /// calls the caller already has are not sent twice.
    Restart,
}

impl JoinMode {
    /// `continue` / `restart`, as logs and events name it.
    pub fn as_str(self) -> &'static str {
        match self {
            JoinMode::Continue => "continue",
            JoinMode::Restart => "restart",
        }
    }
}

/// A later attempt being joined on.
#[derive(Debug)]
struct Join {
    mode: JoinMode,
    /// Its first text, held while it may still be a repeat of the partial's end.
    held_text: String,
    /// Whether the repeat check is over (text now flows straight through).
    settled: bool,
    /// Restart only: how many of the caller's tool calls this attempt has replayed.
    replayed_tools: usize,
    /// Restart only: how many bytes of the sent text this attempt has replayed.
    replayed_text: usize,
}

/// Tracks a stream across attempts; see the module header.
#[derive(Debug, Default)]
pub struct Splice {
    partial: Partial,
    /// Tool-call events (and whatever follows them) while a call is unfinished.
    held: Vec<StreamEvent>,
    /// Indices of the calls `held` has opened and not ended.
    open_tools: Vec<u32>,
    /// Tool calls passed whole, across attempts: the next call's index.
    next_tool: u32,
    /// This attempt's index → the caller's index.
    renumber: Vec<(u32, u32)>,
    /// Usage of the earlier attempts, added to every usage event of the current one.
    carried: Usage,
    /// A start event went out (later attempts' starts are dropped).
    started: bool,
    /// A finish event went out: the answer is complete.
    finished: bool,
    join: Option<Join>,
    /// Bytes of text and arguments in `held`.
    held_bytes: usize,
    /// The answer grew past [`MAX_KEPT`]: events pass as they come, nothing is kept.
    gave_up: bool,
}

impl Splice {
    /// What the caller has been sent.
    pub fn partial(&self) -> &Partial {
        &self.partial
    }

    /// The answer's finish event went out: a failure after it loses nothing.
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// Whether a failure now can be carried on (the answer is within [`MAX_KEPT`]).
    pub fn can_resume(&self) -> bool {
        !self.gave_up
    }

    /// Passes `events` of the current attempt to `out`, joined onto what went before, with
    /// tool calls held until they are whole. With `stop_at_error`, an upstream error event
    /// ends the pass: its message is returned and nothing after it goes out.
    pub fn pass(
        &mut self,
        events: Vec<StreamEvent>,
        out: &mut Vec<StreamEvent>,
        stop_at_error: bool,
    ) -> Option<String> {
        if self.gave_up {
            out.extend(events);
            return None;
        }
        for e in events {
            self.partial.attempt_bytes += match &e {
                StreamEvent::TextDelta(t) | StreamEvent::ReasoningDelta(t) => t.len() as u64,
                StreamEvent::ToolCallDelta { arguments, .. } => arguments.len() as u64,
                _ => 0,
            };
            match e {
                StreamEvent::Error(message) if stop_at_error => return Some(message),
                e => self.one(e, out),
            }
        }
        if self.partial.text.len() + self.held_bytes > MAX_KEPT {
            self.give_up(out);
        }
        None
    }

    /// Stops keeping the answer: what is held goes out as it is, the partial text is
    /// dropped, and from now on events pass straight through.
    fn give_up(&mut self, out: &mut Vec<StreamEvent>) {
        self.gave_up = true;
        if let Some(join) = self.join.as_mut()
            && !join.settled
        {
            join.settled = true;
            let text = std::mem::take(&mut join.held_text);
            if !text.is_empty() {
                out.push(StreamEvent::TextDelta(text));
            }
        }
        out.append(&mut self.held);
        self.open_tools.clear();
        self.held_bytes = 0;
        self.partial.text = String::new();
    }

    fn one(&mut self, e: StreamEvent, out: &mut Vec<StreamEvent>) {
        match e {
            StreamEvent::Start { .. } if self.started => {}
            StreamEvent::Start { .. } => {
                self.started = true;
                out.push(e);
            }
            StreamEvent::TextDelta(t) => self.text(t, out),
            StreamEvent::ReasoningDelta(_) | StreamEvent::ReasoningSignature(_) => {
                self.settle(out);
                self.partial.reasoning = true;
                self.emit(e, out);
            }
            StreamEvent::ToolCallStart { index, id, name } => {
                self.settle(out);
                let index = self.caller_index(index);
                self.open_tools.push(index);
                self.held
                    .push(StreamEvent::ToolCallStart { index, id, name });
            }
            StreamEvent::ToolCallDelta { index, arguments } => {
                let index = self.caller_index(index);
                self.emit(StreamEvent::ToolCallDelta { index, arguments }, out);
            }
            StreamEvent::ToolCallEnd { index } => {
                let index = self.caller_index(index);
                self.hold(StreamEvent::ToolCallEnd { index });
                self.open_tools.retain(|&i| i != index);
                self.end_tool(out);
            }
            StreamEvent::Usage(u) => self.emit(StreamEvent::Usage(sum_usage(self.carried, u)), out),
            StreamEvent::Finish(_) => {
                self.settle(out);
                // A finish closes whatever calls are still open.
                self.open_tools.clear();
                let held = std::mem::take(&mut self.held);
                self.release(held, out);
                self.finished = true;
                out.push(e);
            }
            StreamEvent::Error(_) => self.emit(e, out),
        }
    }

    /// Appends to the held events while a tool call is open, to `out` otherwise.
    fn emit(&mut self, e: StreamEvent, out: &mut Vec<StreamEvent>) {
        if self.open_tools.is_empty() && self.held.is_empty() {
            out.push(e);
        } else {
            self.hold(e);
        }
    }

    fn hold(&mut self, e: StreamEvent) {
        self.held_bytes += match &e {
            StreamEvent::TextDelta(t) | StreamEvent::ReasoningDelta(t) => t.len(),
            StreamEvent::ToolCallDelta { arguments, .. } => arguments.len(),
            _ => 0,
        };
        self.held.push(e);
    }

    /// This attempt's tool-call index, as the caller numbers it.
    fn caller_index(&mut self, index: u32) -> u32 {
        if let Some(&(_, to)) = self.renumber.iter().find(|(from, _)| *from == index) {
            return to;
        }
        let to = self.next_tool + self.renumber.len() as u32;
        self.renumber.push((index, to));
        to
    }

    /// A held call ended: once no call is open, everything held goes out, except a
    /// restart's replay of a call the caller already has.
    fn end_tool(&mut self, out: &mut Vec<StreamEvent>) {
        if !self.open_tools.is_empty() {
            return;
        }
        let held = std::mem::take(&mut self.held);
        self.release(held, out);
    }

    fn release(&mut self, held: Vec<StreamEvent>, out: &mut Vec<StreamEvent>) {
        self.held_bytes = 0;
        // Group the held events by call so a replayed call can be left out whole.
        let mut calls: Vec<(u32, String, String)> = Vec::new();
        for e in &held {
            match e {
                StreamEvent::ToolCallStart { index, name, .. } => {
                    calls.push((*index, name.clone(), String::new()));
                }
                StreamEvent::ToolCallDelta { index, arguments } => {
                    if let Some(c) = calls.iter_mut().find(|c| c.0 == *index) {
                        c.2.push_str(arguments);
                    }
                }
                _ => {}
            }
        }
        let mut dropped: Vec<u32> = Vec::new();
        if let Some(join) = self.join.as_mut().filter(|j| j.mode == JoinMode::Restart) {
            for (index, name, args) in &calls {
                match self.partial.tool_calls.get(join.replayed_tools) {
                    Some((n, a)) if n == name && a == args => {
                        join.replayed_tools += 1;
                        dropped.push(*index);
                    }
                    _ => {}
                }
            }
        }
        // Calls left out give their numbers back: the next call takes the first free one.
        let shift = |i: u32| i - dropped.iter().filter(|&&d| d < i).count() as u32;
        for e in held {
            match e {
                StreamEvent::ToolCallStart { index, .. }
                | StreamEvent::ToolCallDelta { index, .. }
                | StreamEvent::ToolCallEnd { index }
                    if dropped.contains(&index) => {}
                StreamEvent::ToolCallStart { index, id, name } => {
                    out.push(StreamEvent::ToolCallStart {
                        index: shift(index),
                        id,
                        name,
                    });
                }
                StreamEvent::ToolCallDelta { index, arguments } => {
                    out.push(StreamEvent::ToolCallDelta {
                        index: shift(index),
                        arguments,
                    });
                }
                StreamEvent::ToolCallEnd { index } => {
                    out.push(StreamEvent::ToolCallEnd {
                        index: shift(index),
                    });
                }
                e => out.push(e),
            }
        }
        let passed: Vec<(String, String)> = calls
            .into_iter()
            .filter(|c| !dropped.contains(&c.0))
            .map(|(_, name, args)| (name, args))
            .collect();
        self.next_tool += passed.len() as u32;
        self.renumber.clear();
        self.partial.tool_calls.extend(passed);
    }

    fn text(&mut self, t: String, out: &mut Vec<StreamEvent>) {
        let Some(join) = self.join.as_mut().filter(|j| !j.settled) else {
            self.partial.text.push_str(&t);
            self.emit(StreamEvent::TextDelta(t), out);
            return;
        };
        if join.mode == JoinMode::Restart {
            // An answer from the start: its text is a replay for as long as it reads like
            // what was sent, from the first byte on and however long that is. Dropped as
            // it comes, so nothing is held.
            let common = common_prefix(&self.partial.text[join.replayed_text..], &t);
            join.replayed_text += common;
            if common == t.len() {
                return;
            }
            join.settled = true;
            let rest = t[common..].to_owned();
            self.partial.text.push_str(&rest);
            self.emit(StreamEvent::TextDelta(rest), out);
            return;
        }
        join.held_text.push_str(&t);
        let tail = tail(&self.partial.text);
        if join.held_text.len() < MAX_OVERLAP && tail.contains(join.held_text.as_str()) {
            // Still the same as text already sent: it may yet be a repeat.
            return;
        }
        self.settle(out);
    }

    /// Ends the repeat check of a joining attempt: the longest start of its held text that
    /// repeats the end of what was sent is dropped, the rest goes out.
    fn settle(&mut self, out: &mut Vec<StreamEvent>) {
        let Some(join) = self.join.as_mut().filter(|j| !j.settled) else {
            return;
        };
        join.settled = true;
        let held = std::mem::take(&mut join.held_text);
        let skip = repeat_len(&self.partial.text, &held);
        let rest = held[skip..].to_owned();
        if !rest.is_empty() {
            self.partial.text.push_str(&rest);
            self.emit(StreamEvent::TextDelta(rest), out);
        }
    }

    /// The current attempt failed: a tool call it had not finished is dropped (it is asked
    /// for again whole), as is text held for the repeat check that never completed.
    pub fn cut(&mut self) {
        // Events held behind an unfinished call never reached the caller either.
        self.held.clear();
        self.held_bytes = 0;
        self.open_tools.clear();
        self.renumber.clear();
        if let Some(join) = self.join.as_mut()
            && !join.settled
        {
            join.held_text.clear();
        }
    }

    /// The stream ended cleanly: anything still held goes out.
    pub fn flush(&mut self, out: &mut Vec<StreamEvent>) {
        self.settle(out);
        self.open_tools.clear();
        let held = std::mem::take(&mut self.held);
        self.release(held, out);
    }

    /// Joins the next attempt on: `carried` is the usage of the attempts before it.
    pub fn join(&mut self, mode: JoinMode, carried: Usage) {
        self.carried = carried;
        self.partial.attempt_bytes = 0;
        self.renumber.clear();
        self.join = Some(Join {
            mode,
            held_text: String::new(),
            settled: false,
            replayed_tools: 0,
            replayed_text: 0,
        });
    }
}

/// The last `MAX_OVERLAP` bytes of `text` (or a little less, to start on a character).
fn tail(text: &str) -> &str {
    let mut start = text.len().saturating_sub(MAX_OVERLAP);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// How many bytes `a` and `b` start with in common, ending on a character boundary.
fn common_prefix(a: &str, b: &str) -> usize {
    let mut n = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    while !b.is_char_boundary(n) {
        n -= 1;
    }
    n
}

/// How many bytes at the start of `next` repeat the end of `sent`: the longest such
/// stretch that begins at a word boundary of `sent` (so `…wor` + `world` drops `wor`, but
/// `…wor` + `r is` keeps its `r`, which starts no word of `sent`).
fn repeat_len(sent: &str, next: &str) -> usize {
    let max = next.len().min(sent.len()).min(MAX_OVERLAP);
    for k in (1..=max).rev() {
        if !next.is_char_boundary(k) {
            continue;
        }
        let overlap = &next[..k];
        if !sent.ends_with(overlap) {
            continue;
        }
        let before = sent[..sent.len() - k].chars().next_back();
        let starts_word = match (before, overlap.chars().next()) {
            (None, _) => true,
            (Some(b), _) if !b.is_alphanumeric() => true,
            (_, Some(first)) => !first.is_alphanumeric(),
            (_, None) => false,
        };
        if starts_word {
            return k;
        }
    }
    0
}

/// Usage summed over attempts.
pub fn sum_usage(a: Usage, b: Usage) -> Usage {
    Usage {
        input_tokens: a.input_tokens + b.input_tokens,
        cache_read_tokens: a.cache_read_tokens + b.cache_read_tokens,
        cache_write_tokens: a.cache_write_tokens + b.cache_write_tokens,
        output_tokens: a.output_tokens + b.output_tokens,
        reasoning_tokens: a.reasoning_tokens + b.reasoning_tokens,
    }
}

/// `total` without `earlier`: the current attempt's share of a joined usage event.
pub fn usage_less(total: Usage, earlier: Usage) -> Usage {
    Usage {
        input_tokens: total.input_tokens.saturating_sub(earlier.input_tokens),
        cache_read_tokens: total
            .cache_read_tokens
            .saturating_sub(earlier.cache_read_tokens),
        cache_write_tokens: total
            .cache_write_tokens
            .saturating_sub(earlier.cache_write_tokens),
        output_tokens: total.output_tokens.saturating_sub(earlier.output_tokens),
        reasoning_tokens: total
            .reasoning_tokens
            .saturating_sub(earlier.reasoning_tokens),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::FinishReason;

    fn text(t: &str) -> StreamEvent {
        StreamEvent::TextDelta(t.into())
    }

    fn start() -> StreamEvent {
        StreamEvent::Start {
            id: "a".into(),
            model: "m".into(),
        }
    }

    fn joined_text(out: &[StreamEvent]) -> String {
        out.iter()
            .filter_map(|e| match e {
                StreamEvent::TextDelta(t) => Some(t.as_str()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_continuation_that_repeats_the_end_is_joined_without_the_repeat() {
        let mut s = Splice::default();
        let mut out = Vec::new();
        s.pass(vec![start(), text("Hello"), text(" wor")], &mut out, true);
        s.cut();
        s.join(JoinMode::Continue, Usage::default());
        s.pass(
            vec![start(), text("wor"), text("ld, again.")],
            &mut out,
            true,
        );
        s.flush(&mut out);
        assert_eq!(joined_text(&out), "Hello world, again.");
        assert_eq!(
            out.iter()
                .filter(|e| matches!(e, StreamEvent::Start { .. }))
                .count(),
            1
        );
    }

    #[test]
    fn repeats_are_taken_only_from_a_word_boundary() {
        assert_eq!(repeat_len("Hello wor", "world"), 3);
        assert_eq!(repeat_len("Hello wor", "r is"), 0);
        // A word cut after its first letter, repeated whole by the continuation.
        assert_eq!(repeat_len("I ate an a", "apple"), 1);
        assert_eq!(repeat_len("Hello ", " world"), 1);
        assert_eq!(repeat_len("Hello", " world"), 0);
        assert_eq!(repeat_len("Hi there", "Hi there, friend"), 8);
        assert_eq!(repeat_len("ünïcode", "ïcode"), 0);
        assert_eq!(repeat_len("", "x"), 0);
    }

    #[test]
    fn a_continuation_that_does_not_repeat_flows_at_once() {
        let mut s = Splice::default();
        let mut out = Vec::new();
        s.pass(vec![start(), text("The capital of")], &mut out, true);
        s.join(JoinMode::Continue, Usage::default());
        let before = out.len();
        s.pass(vec![text(" France is Paris.")], &mut out, true);
        assert_eq!(out.len(), before + 1, "{out:?}");
        assert_eq!(joined_text(&out), "The capital of France is Paris.");
    }

    #[test]
    fn a_restart_that_replays_the_text_and_a_tool_call_is_deduplicated() {
        let mut s = Splice::default();
        let mut out = Vec::new();
        let call = |i: u32, args: &str| {
            vec![
                StreamEvent::ToolCallStart {
                    index: i,
                    id: format!("c{i}"),
                    name: "f".into(),
                },
                StreamEvent::ToolCallDelta {
                    index: i,
                    arguments: args.into(),
                },
                StreamEvent::ToolCallEnd { index: i },
            ]
        };
        let mut first = vec![start(), text("Let me look.")];
        first.extend(call(0, "{\"q\":1}"));
        // The second call is cut half-way: it must not reach the caller.
        first.push(StreamEvent::ToolCallStart {
            index: 1,
            id: "c1".into(),
            name: "f".into(),
        });
        first.push(StreamEvent::ToolCallDelta {
            index: 1,
            arguments: "{\"q\"".into(),
        });
        s.pass(first, &mut out, true);
        assert_eq!(s.partial().tool_calls, [("f".into(), "{\"q\":1}".into())]);
        s.cut();
        s.join(JoinMode::Restart, Usage::default());
        let mut second = vec![start(), text("Let me look.")];
        second.extend(call(0, "{\"q\":1}"));
        second.extend(call(1, "{\"q\":2}"));
        second.push(StreamEvent::Finish(FinishReason::ToolCalls));
        s.pass(second, &mut out, true);
        assert_eq!(joined_text(&out), "Let me look.");
        let starts: Vec<(u32, &str)> = out
            .iter()
            .filter_map(|e| match e {
                StreamEvent::ToolCallStart { index, id, .. } => Some((*index, id.as_str())),
                _ => None,
            })
            .collect();
        assert_eq!(starts, [(0, "c0"), (1, "c1")]);
        let deltas: Vec<(u32, &str)> = out
            .iter()
            .filter_map(|e| match e {
                StreamEvent::ToolCallDelta { index, arguments } => {
                    Some((*index, arguments.as_str()))
                }
                _ => None,
            })
            .collect();
        assert_eq!(deltas, [(0, "{\"q\":1}"), (1, "{\"q\":2}")]);
        assert!(s.finished());
    }

    #[test]
    fn a_restart_drops_its_replay_however_long_the_answer_was() {
        // 7 KB sent before the cut, more than a continuation's repeat check looks back.
        let sent: String = (0..1200).map(|i| format!("w{i} ")).collect();
        assert!(sent.len() > 2 * MAX_OVERLAP);
        let mut s = Splice::default();
        let mut out = Vec::new();
        s.pass(vec![start(), text(&sent)], &mut out, true);
        s.cut();
        s.join(JoinMode::Restart, Usage::default());
        // The restart replays it in other chunk sizes, then goes on.
        let mut again = vec![start()];
        again.extend(
            sent.as_bytes()
                .chunks(7)
                .map(|c| text(std::str::from_utf8(c).unwrap())),
        );
        again.push(text("and é the end."));
        s.pass(again, &mut out, true);
        assert_eq!(joined_text(&out), format!("{sent}and é the end."));
        assert_eq!(s.partial().text, format!("{sent}and é the end."));
        // An answer that goes another way is passed on from where it leaves the replay.
        let mut s = Splice::default();
        let mut out = Vec::new();
        s.pass(vec![start(), text("héllo wor")], &mut out, true);
        s.cut();
        s.join(JoinMode::Restart, Usage::default());
        s.pass(
            vec![start(), text("héllo"), text(" world!")],
            &mut out,
            true,
        );
        assert_eq!(joined_text(&out), "héllo world!");
    }

    #[test]
    fn an_answer_past_the_bound_is_relayed_as_it_comes_and_not_carried_on() {
        let mut s = Splice::default();
        let mut out = Vec::new();
        let call = StreamEvent::ToolCallStart {
            index: 0,
            id: "c".into(),
            name: "f".into(),
        };
        let big = StreamEvent::ToolCallDelta {
            index: 0,
            arguments: "x".repeat(MAX_KEPT),
        };
        s.pass(vec![start(), text("a"), call], &mut out, true);
        assert_eq!(out.len(), 2, "the call is held: {out:?}");
        assert!(s.can_resume());
        s.pass(vec![big], &mut out, true);
        assert!(!s.can_resume());
        assert_eq!(out.len(), 4, "what was held went out");
        assert!(s.partial().text.is_empty());
        s.pass(vec![text("b")], &mut out, true);
        assert_eq!(out.last(), Some(&text("b")));
    }

    #[test]
    fn usage_of_earlier_attempts_is_added_and_errors_stop_the_pass() {
        let mut s = Splice::default();
        let mut out = Vec::new();
        let u = |i, o| Usage {
            input_tokens: i,
            output_tokens: o,
            ..Default::default()
        };
        s.pass(vec![start(), text("a")], &mut out, true);
        let err = s.pass(
            vec![
                text(" b"),
                StreamEvent::Error("overloaded".into()),
                text("x"),
            ],
            &mut out,
            true,
        );
        assert_eq!(err.as_deref(), Some("overloaded"));
        assert_eq!(joined_text(&out), "a b");
        s.join(JoinMode::Continue, u(10, 2));
        s.pass(
            vec![text(" c"), StreamEvent::Usage(u(12, 3))],
            &mut out,
            true,
        );
        assert_eq!(out.last(), Some(&StreamEvent::Usage(u(22, 5))));
    }
}
