//! The BitRouter benchmark (Linux only): [`load`] (the load generator), [`harness`] (scenarios
//! against the real gateway binary, with the `bitrouter-mock` upstream as a pinned child
//! process), [`floor`] (the bare hyper reverse proxy the gateway is compared with), [`report`]
//! (the markdown and JSON report).

pub mod floor;

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
