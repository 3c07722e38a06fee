//! End-to-end tests: the real gateway on loopback, mock upstreams, real HTTP clients.

mod adapters;
mod agents;
mod auth;
mod bad_input;
mod budgets;
mod child;
mod cli;
mod dashboard;
mod dialects;
mod failover;
mod faults;
mod golden;
mod guardrails;
mod hardening;
mod harness;
mod ledger_backends;
mod observe;
mod oci;
mod plugin_cli;
mod plugin_trust;
mod policy;
mod responses;
mod scratch_db;
mod sdk_clients;
mod spend;
mod wallet;
