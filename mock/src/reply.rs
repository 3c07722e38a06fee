//! The dialect-neutral answer: what the model "says" (reasoning, text or a tool call, split into
//! the deltas a stream will carry), why it stopped, and the usage it reports.

use std::borrow::Cow;

use super::behavior::{DEFAULT_TEXT, MockBehavior};
use super::request::Inspected;

const REASONING_TEXT: &str = "The mock upstream always answers the same way.";
const REASONING_DELTAS: usize = 2;
/// Name used when a tool call is forced but the request declares no tools.
const FALLBACK_TOOL: &str = "mock_tool";

/// A text cut into the deltas of a stream; the concatenation of the pieces is [`Pieces::full`].
#[derive(Debug)]
pub(crate) struct Pieces {
    text: Cow<'static, str>,
    /// `n + 1` byte offsets, all on char boundaries.
    bounds: Vec<usize>,
}

impl Pieces {
    /// Cuts `text` into exactly `n` pieces: whole words when there are at least `n` words (so a
    /// delta never ends mid-word), otherwise evenly by characters (empty pieces only when `n`
    /// exceeds the character count).
    pub(crate) fn split(text: Cow<'static, str>, n: usize) -> Pieces {
        let mut bounds = Vec::with_capacity(n + 1);
        let words = word_starts(&text).count();
        if n == 0 {
            bounds.push(0);
            return Pieces { text, bounds };
        }
        if n <= words {
            // Piece i starts at word i*words/n; the increasing targets are met in one pass.
            let mut next = 0;
            for (w, start) in word_starts(&text).enumerate() {
                if next < n && w == next * words / n {
                    bounds.push(start);
                    next += 1;
                }
            }
        } else if text.is_ascii() {
            let len = text.len();
            bounds.extend((0..n).map(|i| i * len / n));
        } else {
            let offsets: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
            let chars = offsets.len();
            bounds.extend((0..n).map(|i| offsets.get(i * chars / n).copied().unwrap_or(0)));
        }
        bounds.push(text.len());
        Pieces { text, bounds }
    }

    pub(crate) fn len(&self) -> usize {
        self.bounds.len() - 1
    }

    pub(crate) fn get(&self, i: usize) -> &str {
        match (self.bounds.get(i), self.bounds.get(i + 1)) {
            (Some(&a), Some(&b)) => &self.text[a..b],
            _ => "",
        }
    }

    /// The concatenation of all pieces.
    pub(crate) fn full(&self) -> &str {
        &self.text[..self.bounds[self.len()]]
    }

    /// Keeps only the first `n` pieces (the model ran out of `max_tokens`).
    fn truncate(&mut self, n: usize) {
        self.bounds.truncate(n + 1);
    }
}

/// Byte offsets where a word starts; a word carries the whitespace before it, so splitting at
/// these offsets loses nothing.
fn word_starts(text: &str) -> impl Iterator<Item = usize> + '_ {
    let mut prev_space = true;
    let mut first = true;
    text.char_indices().filter_map(move |(i, c)| {
        let space = c.is_whitespace();
        let start = first || (space && !prev_space);
        first = false;
        prev_space = space;
        start.then_some(i)
    })
}

#[derive(Debug)]
pub(crate) enum Content {
    Text(Pieces),
    ToolCall { name: String, args: Pieces },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Finish {
    Stop,
    ToolCalls,
    Length,
}

/// Which text a stream delta carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Part {
    Reasoning,
    Text,
    ToolArgs,
}

#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Usage {
    /// Uncached input.
    pub input: u64,
    /// All output, reasoning included.
    pub output: u64,
    pub cache_read: u64,
    pub cache_write: u64,
    pub reasoning: u64,
}

#[derive(Debug)]
pub(crate) struct Reply {
    pub reasoning: Option<Pieces>,
    pub content: Content,
    pub finish: Finish,
    pub usage: Usage,
}

impl Reply {
    pub(crate) fn plan(b: &MockBehavior, req: &Inspected<'_>) -> Reply {
        let n = b.chunk_count();
        let call_tool = match b.tool_call {
            Some(forced) => forced,
            None => req.tool.is_some() && !req.last_is_tool_result,
        };
        let mut finish = Finish::Stop;
        let content = if call_tool {
            finish = Finish::ToolCalls;
            let (name, args) = match &req.tool {
                Some(tool) => (tool.name.to_owned(), tool.arguments()),
                None => (FALLBACK_TOOL.to_owned(), "{}".to_owned()),
            };
            let arg_chars = args.chars().count();
            let args = Pieces::split(Cow::Owned(args), n.max(2).min(arg_chars));
            Content::ToolCall { name, args }
        } else {
            let mut text = match &b.text {
                Some(t) => Cow::Owned(t.clone()),
                None => default_text(n),
            };
            if b.continue_partial
                && let Some(partial) = &req.assistant_text
            {
                text = continuation(text, partial, b.repeat_words);
            }
            let mut pieces = Pieces::split(text, n);
            if let Some(limit) = req.max_tokens
                && limit < pieces.len() as u64
            {
                pieces.truncate(limit as usize);
                finish = Finish::Length;
            }
            Content::Text(pieces)
        };
        let deltas = match &content {
            Content::Text(p) | Content::ToolCall { args: p, .. } => p.len() as u64,
        };
        let reasoning = b
            .reasoning
            .then(|| Pieces::split(Cow::Borrowed(REASONING_TEXT), REASONING_DELTAS));
        let worst_output = req
            .max_tokens
            .map(|m| m.saturating_mul(req.choices))
            .filter(|_| b.bill_worst);
        let usage = Usage {
            input: b.input_tokens.unwrap_or(if b.bill_worst {
                req.billed_input_tokens
            } else {
                req.estimated_input_tokens
            }),
            output: b
                .output_tokens
                .or(worst_output)
                .unwrap_or(deltas.saturating_add(b.reasoning_tokens)),
            cache_read: b.cache_read_tokens,
            cache_write: b.cache_write_tokens,
            reasoning: b.reasoning_tokens,
        };
        Reply {
            reasoning,
            content,
            finish,
            usage,
        }
    }

    pub(crate) fn pieces(&self, part: Part) -> &Pieces {
        match (part, &self.content, &self.reasoning) {
            (Part::Reasoning, _, Some(r)) => r,
            (_, Content::Text(p) | Content::ToolCall { args: p, .. }, _) => p,
        }
    }

    /// The part that carries the answer proper.
    pub(crate) fn main_part(&self) -> Part {
        match self.content {
            Content::Text(_) => Part::Text,
            Content::ToolCall { .. } => Part::ToolArgs,
        }
    }
}

/// What is left of `text` after `partial`, the answer a previous upstream sent before its
/// stream broke, starting `repeat` words early (those words of `partial` said again);
/// `text` itself when it does not start with `partial` (trailing whitespace trimmed) or
/// `partial` is blank. A word is what [`word_starts`] counts: the whitespace before it goes
/// with it.
fn continuation(text: Cow<'static, str>, partial: &str, repeat: usize) -> Cow<'static, str> {
    let partial = partial.trim_end();
    if partial.is_empty() || !text.starts_with(partial) {
        return text;
    }
    // Every offset here is a char boundary of `partial`, so also of `text`, which starts with it.
    let from = if repeat == 0 {
        partial.len()
    } else {
        word_starts(partial)
            .count()
            .checked_sub(repeat)
            .and_then(|skip| word_starts(partial).nth(skip))
            .unwrap_or(0)
    };
    match text {
        Cow::Borrowed(t) => Cow::Borrowed(t.get(from..).unwrap_or(t)),
        Cow::Owned(mut t) => {
            t.drain(..from);
            Cow::Owned(t)
        }
    }
}

/// The default sentence, repeated when a stream asks for more deltas than it has words.
fn default_text(n: usize) -> Cow<'static, str> {
    let words = word_starts(DEFAULT_TEXT).count();
    if n <= words {
        return Cow::Borrowed(DEFAULT_TEXT);
    }
    let reps = n.div_ceil(words);
    let mut text = String::with_capacity(reps * (DEFAULT_TEXT.len() + 1));
    for i in 0..reps {
        if i > 0 {
            text.push(' ');
        }
        text.push_str(DEFAULT_TEXT);
    }
    Cow::Owned(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(p: &Pieces) -> Vec<&str> {
        (0..p.len()).map(|i| p.get(i)).collect()
    }

    #[test]
    fn splits_on_words_when_possible() {
        let p = Pieces::split(Cow::Borrowed(DEFAULT_TEXT), 4);
        assert_eq!(all(&p), ["Hello", " from", " the", " mock upstream."]);
        assert_eq!(p.full(), DEFAULT_TEXT);
        let p = Pieces::split(Cow::Borrowed(DEFAULT_TEXT), 1);
        assert_eq!(all(&p), [DEFAULT_TEXT]);
    }

    #[test]
    fn splits_by_chars_otherwise() {
        let p = Pieces::split(Cow::Borrowed(r#"{"a":"mock"}"#), 3);
        assert_eq!(p.len(), 3);
        assert_eq!(all(&p).concat(), r#"{"a":"mock"}"#);
        let p = Pieces::split(Cow::Borrowed("héllo"), 2);
        assert_eq!(all(&p).concat(), "héllo");
        let p = Pieces::split(Cow::Borrowed("ab"), 4);
        assert_eq!(p.len(), 4);
        assert_eq!(all(&p).concat(), "ab");
        let p = Pieces::split(Cow::Borrowed("ab"), 0);
        assert_eq!(p.len(), 0);
        assert_eq!(p.full(), "");
    }

    #[test]
    fn default_text_grows_with_chunks() {
        let p = Pieces::split(default_text(12), 12);
        assert_eq!(p.len(), 12);
        assert!(all(&p).iter().all(|s| !s.trim().is_empty()));
    }

    #[test]
    fn continuation_is_the_rest_of_the_text() {
        let cont = |partial: &str, repeat: usize| {
            continuation(Cow::Borrowed(DEFAULT_TEXT), partial, repeat).into_owned()
        };
        assert_eq!(cont("Hello from the", 0), " mock upstream.");
        assert_eq!(
            cont("Hello from the ", 0),
            " mock upstream.",
            "trailing space trimmed"
        );
        assert_eq!(cont("Hello from the", 1), " the mock upstream.");
        assert_eq!(cont("Hello from the", 2), " from the mock upstream.");
        assert_eq!(cont("Hello from the", 3), DEFAULT_TEXT);
        assert_eq!(cont("Hello from the", 9), DEFAULT_TEXT, "at most all of it");
        assert_eq!(cont("Hello fr", 0), "om the mock upstream.", "mid-word");
        assert_eq!(cont(DEFAULT_TEXT, 0), "");
        assert_eq!(cont("Goodbye", 0), DEFAULT_TEXT, "not a prefix");
        assert_eq!(cont("  ", 1), DEFAULT_TEXT, "blank");
        let owned = continuation(Cow::Owned("héllo wörld".to_owned()), "héllo", 0);
        assert_eq!(owned, " wörld");
    }

    #[test]
    fn truncation_keeps_a_prefix() {
        let mut p = Pieces::split(Cow::Borrowed(DEFAULT_TEXT), 4);
        p.truncate(2);
        assert_eq!(p.len(), 2);
        assert_eq!(p.full(), "Hello from");
    }
}
