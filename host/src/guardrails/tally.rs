//! `Tally`: what the firewall found and did over one request, in both directions — the
//! source of the observe event's findings, the warning headers and the block error. It never
//! holds the matched text.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::error::{Error, ErrorKind};
use crate::observe::GuardrailFinding;
use crate::plugins::{Action, Direction};

use super::engine::{GuardrailEngine, Hit, action_str};

/// Where the README explains the firewall; block errors link to it.
pub const HELP_LINK: &str = "https://github.com/bitrouter/bitrouter#guardrails";

/// The finding action of a plugin call that failed open (the request went on unchecked by
/// that pattern).
pub const FAILED_OPEN: &str = "plugin_failed_open";

/// What the firewall found and did over one request, both directions; never the matched
/// text.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    /// Findings by (pattern id, action).
    counts: BTreeMap<(Arc<str>, &'static str), u32>,
    /// Patterns whose block action fired, by direction of the first one.
    blocked: Vec<Arc<str>>,
    blocked_direction: Option<Direction>,
    /// Blocking patterns whose plugin failed (fail closed).
    failed_closed: Vec<Arc<str>>,
}

impl Tally {
    /// Records `hits` found in `direction` (and counts them on the engine's patterns).
    pub fn add(&mut self, engine: &GuardrailEngine, direction: Direction, hits: &[Hit]) {
        engine.count(hits);
        for h in hits {
            let id = engine.patterns()[h.pattern].id.clone();
            if h.failed && h.action == Action::Block {
                if !self.failed_closed.contains(&id) {
                    self.failed_closed.push(id);
                }
                self.blocked_direction.get_or_insert(direction);
                continue;
            }
            if h.failed {
                *self.counts.entry((id, FAILED_OPEN)).or_default() += 1;
                continue;
            }
            *self
                .counts
                .entry((id.clone(), action_str(h.action)))
                .or_default() += 1;
            if h.action == Action::Block {
                if !self.blocked.contains(&id) {
                    self.blocked.push(id);
                }
                self.blocked_direction.get_or_insert(direction);
            }
        }
    }

    /// Adds another tally's findings (a stream's downgoing ones to the request's).
    pub fn merge(&mut self, other: &Tally) {
        for (k, n) in &other.counts {
            *self.counts.entry(k.clone()).or_default() += n;
        }
        for p in &other.blocked {
            if !self.blocked.contains(p) {
                self.blocked.push(p.clone());
            }
        }
        for p in &other.failed_closed {
            if !self.failed_closed.contains(p) {
                self.failed_closed.push(p.clone());
            }
        }
        if self.blocked_direction.is_none() {
            self.blocked_direction = other.blocked_direction;
        }
    }

    /// Whether a pattern that blocks fired, or its plugin failed.
    pub fn is_blocked(&self) -> bool {
        !self.blocked.is_empty() || !self.failed_closed.is_empty()
    }

    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty() && self.failed_closed.is_empty()
    }

    /// The findings for the request event.
    pub fn findings(&self) -> Vec<GuardrailFinding> {
        let mut out: Vec<GuardrailFinding> = self
            .counts
            .iter()
            .map(|((pattern, action), count)| GuardrailFinding {
                pattern: pattern.to_string(),
                count: *count,
                action: (*action).to_owned(),
            })
            .collect();
        out.extend(self.failed_closed.iter().map(|p| GuardrailFinding {
            pattern: p.to_string(),
            count: 1,
            action: "plugin_failed_closed".to_owned(),
        }));
        out
    }

    /// `pattern=count` pairs of one action, for a response header.
    pub fn header(&self, action: &str) -> Option<String> {
        let parts: Vec<String> = self
            .counts
            .iter()
            .filter(|((_, a), _)| *a == action)
            .map(|((p, _), n)| format!("{p}={n}"))
            .collect();
        (!parts.is_empty()).then(|| parts.join(","))
    }

    /// The error a blocked request (or response) ends with. Names the patterns when the
    /// config says so; never the matched text.
    pub fn block_error(&self, engine: &GuardrailEngine) -> Error {
        let what = match self.blocked_direction {
            Some(Direction::Response) => "The response was blocked",
            _ => "The request was blocked",
        };
        let (kind, mut message) = if self.blocked.is_empty() {
            (
                ErrorKind::Plugin,
                format!(
                    "{what} by the BitRouter guardrail: a guardrail plugin failed and its pattern blocks on failure"
                ),
            )
        } else {
            (
                ErrorKind::GuardrailBlocked,
                format!("{what} by the BitRouter guardrail"),
            )
        };
        if engine.include_details {
            let mut names: Vec<&str> = self.blocked.iter().map(|p| &**p).collect();
            names.extend(self.failed_closed.iter().map(|p| &**p));
            message.push_str(&format!(
                " (pattern{}: {})",
                if names.len() == 1 { "" } else { "s" },
                names.join(", ")
            ));
        }
        message.push('.');
        if engine.include_help_link {
            message.push_str(&format!(" See {HELP_LINK}"));
        }
        Error::new(kind, message)
    }
}
