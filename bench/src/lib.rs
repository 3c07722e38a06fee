//! Test and benchmark tooling for BitRouter: [`mock`], a fast mock LLM upstream, and on Linux
//! the benchmark harness — [`load`] (the load generator), [`harness`] (scenarios against the
//! real gateway binary), [`report`] (the markdown and JSON report).

pub mod mock;

#[cfg(target_os = "linux")]
pub mod harness;
#[cfg(target_os = "linux")]
pub mod load;
#[cfg(target_os = "linux")]
pub mod process;
#[cfg(target_os = "linux")]
pub mod procfs;
#[cfg(target_os = "linux")]
pub mod report;

pub use mock::{MockBehavior, MockServer, MockServerBuilder, RecordedRequest};
