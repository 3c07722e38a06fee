//! End-to-end tests: the real gateway on loopback, mock upstreams, real HTTP clients.

mod dialects;
mod harness;
