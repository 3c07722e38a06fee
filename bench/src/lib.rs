//! Test and benchmark tooling for BitRouter. Today: [`mock`], a fast mock LLM upstream. The load
//! generator will live here too.

pub mod mock;

pub use mock::{MockBehavior, MockServer, MockServerBuilder, RecordedRequest};
