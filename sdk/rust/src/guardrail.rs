//! The `guardrail` world: declare patterns, validate the host's regex candidates, scan for
//! what a regex cannot express.
//!
//! The host compiles the regexes of every loaded guardrail into one automaton and runs it
//! natively, then calls [`Guardrail::check`] with the candidates of one pattern. Patterns
//! without a regex are found by [`Guardrail::scan`], which the host calls on every text of
//! the pattern's directions. Spans are byte offsets into the text, on UTF-8 boundaries.

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "guardrail",
        pub_export_macro: true,
        export_macro_name: "__export_guardrail_world",
        default_bindings_module: "bitrouter_plugin::guardrail::bindings",
    });
}

pub use bindings::bitrouter::plugin::types::{Action, Direction, Directions, Finding, Pattern, Span};
pub use crate::log;

/// A guardrail plugin. Every method is an associated function: a call runs in a fresh
/// instance or (manifest `stateless = true`) a warm one, so there is no `self` to keep state
/// in.
pub trait Guardrail {
    /// Receives the plugin's config from bitrouter.yaml as JSON text (`null` when absent).
    /// Runs at load (an `Err` refuses to start the plugin) and, when there is a config,
    /// before every call.
    fn configure(config: &str) -> Result<(), String> {
        let _ = config;
        Ok(())
    }

    /// The patterns this plugin enforces.
    fn describe() -> Vec<Pattern>;

    /// The host's regex for `pattern` matched `text` at `candidates`: return those that
    /// stand. The default keeps them all.
    fn check(pattern: &str, text: &str, candidates: Vec<Span>) -> Vec<Finding> {
        let _ = text;
        candidates
            .into_iter()
            .map(|span| Finding::new(pattern, span))
            .collect()
    }

    /// Finds the plugin's regex-less patterns of `direction` in `text`. The default finds
    /// nothing.
    fn scan(direction: Direction, text: &str) -> Vec<Finding> {
        let _ = (direction, text);
        Vec::new()
    }
}

impl Pattern {
    /// A pattern for both directions, blocking by default, with no regex (found by `scan`).
    pub fn new(id: &str, description: &str) -> Pattern {
        Pattern {
            id: id.to_owned(),
            directions: Directions::REQUEST | Directions::RESPONSE,
            default_action: Action::Block,
            description: description.to_owned(),
            regex: None,
            max_match_len: 256,
        }
    }

    /// The regex (Rust `regex` syntax) the host runs to find candidates.
    pub fn regex(mut self, regex: &str) -> Pattern {
        self.regex = Some(regex.to_owned());
        self
    }

    /// Upper bound on a match's length in bytes (sizes the host's streaming window).
    pub fn max_match_len(mut self, bytes: u32) -> Pattern {
        self.max_match_len = bytes;
        self
    }

    pub fn action(mut self, action: Action) -> Pattern {
        self.default_action = action;
        self
    }

    pub fn directions(mut self, directions: Directions) -> Pattern {
        self.directions = directions;
        self
    }
}

impl Span {
    pub fn new(start: usize, end: usize) -> Span {
        Span {
            start: start as u32,
            end: end as u32,
        }
    }

    pub fn range(&self) -> core::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

impl Finding {
    pub fn new(pattern: &str, span: Span) -> Finding {
        Finding {
            pattern: pattern.to_owned(),
            span,
            replacement: None,
        }
    }

    /// The text the host puts in place of the span when redacting.
    pub fn replace_with(mut self, replacement: &str) -> Finding {
        self.replacement = Some(replacement.to_owned());
        self
    }
}

/// Exports a [`Guardrail`] implementation as the component's `guard` interface.
#[macro_export]
macro_rules! export_guardrail {
    ($ty:ty) => {
        const _: () = {
            use $crate::guardrail::bindings::bitrouter::plugin::types as __t;
            struct __BitrouterGuardrail;
            impl $crate::guardrail::bindings::exports::bitrouter::plugin::guard::Guest
                for __BitrouterGuardrail
            {
                fn configure(config: String) -> Result<(), String> {
                    <$ty as $crate::guardrail::Guardrail>::configure(&config)
                }
                fn describe() -> Vec<__t::Pattern> {
                    <$ty as $crate::guardrail::Guardrail>::describe()
                }
                fn check(
                    pattern: String,
                    text: String,
                    candidates: Vec<__t::Span>,
                ) -> Vec<__t::Finding> {
                    <$ty as $crate::guardrail::Guardrail>::check(&pattern, &text, candidates)
                }
                fn scan(direction: __t::Direction, text: String) -> Vec<__t::Finding> {
                    <$ty as $crate::guardrail::Guardrail>::scan(direction, &text)
                }
            }
            $crate::guardrail::bindings::__export_guardrail_world!(
                __BitrouterGuardrail with_types_in $crate::guardrail::bindings
            );
        };
    };
}
