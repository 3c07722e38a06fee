//! {{name}}: a guardrail that flags sample ids, `SAMPLE-` and four digits. The host runs
//! the declared regex natively and calls `check` with the candidates; `scan` is for patterns
//! a regex cannot express (this one has none). Every call runs in a fresh instance.

wit_bindgen::generate!({ path: "wit", world: "guardrail" });

use bitrouter::plugin::types::{Action, Direction, Directions, Finding, Pattern, Span};
use exports::bitrouter::plugin::guard::Guest;

const PATTERN: &str = "sample-id";

struct Plugin;

impl Guest for Plugin {
    /// The plugin's `config` from bitrouter.yaml, as JSON text (`null` when absent).
    fn configure(_config: String) -> Result<(), String> {
        Ok(())
    }

    fn describe() -> Vec<Pattern> {
        vec![Pattern {
            id: PATTERN.into(),
            directions: Directions::REQUEST | Directions::RESPONSE,
            default_action: Action::Warn,
            description: "A sample id (SAMPLE-NNNN)".into(),
            regex: Some(r"SAMPLE-\d{4}".into()),
            max_match_len: 11,
        }]
    }

    /// Keep every candidate the regex found (drop or adjust some here).
    fn check(pattern: String, _text: String, candidates: Vec<Span>) -> Vec<Finding> {
        candidates
            .into_iter()
            .map(|span| Finding {
                pattern: pattern.clone(),
                span,
                replacement: None,
            })
            .collect()
    }

    fn scan(_direction: Direction, _text: String) -> Vec<Finding> {
        Vec::new()
    }
}

export!(Plugin);
