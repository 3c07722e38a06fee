//! The benchmark harness of issue 8: starts the mock upstream and the gateway as pinned child
//! processes, runs each scenario direct-to-mock and via the gateway in interleaved rounds, and
//! assembles the [`Report`](crate::report::Report). The `bench` binary is its command line.

mod collector;
mod env;
mod floor;
mod gateway;
mod http;
mod measure;
mod mock;
mod peer;
mod run;
pub mod scenario;

pub use mock::{BANNER as MOCK_BANNER, INTERNAL_MOCK_FLAG};
pub use run::{Options, run};
