//! The load generator: keep-alive HTTP/1.1 over raw hyper connections, open-loop (constant
//! arrival rate, latency from the scheduled time) and closed-loop (max throughput) drivers,
//! and HDR-histogram statistics. Single-threaded by design: it runs pinned to one CPU on a
//! Tokio current-thread runtime inside a `LocalSet`.

pub mod clock;
pub mod closed_loop;
pub mod conn;
pub mod open_loop;
pub mod request;
pub mod stats;

pub use closed_loop::ClosedLoop;
pub use conn::{Pool, RequestSpec};
pub use open_loop::{OpenLoop, Progress};
pub use request::{Expect, Failure, Timing};
pub use stats::{Percentiles, PhaseStats, Recorder};
