//! The integration tests, in one crate (one binary to link instead of one per file): one
//! module per area, the platform contract tests under `contracts/`, the shared harness in
//! `common/`. Test vectors are read from `tests/data/`.
//!
//! All of them share one process: a test must not change process-wide state (environment
//! variables, the current directory, a global subscriber other than `common`'s
//! `try_init`).

// Tests assert exact figures (floats included) and build fixtures tersely: the
// pedantic lints the library follows would cost them clarity.
#![allow(clippy::pedantic)]

mod common;

mod alerts;
mod audit;
mod backlog_summary;
mod cli;
mod config;
mod config_hardening;
mod console;
mod contracts;
mod crash;
mod dedup;
mod delivery;
mod delivery_crash;
mod delivery_partial;
mod drill;
mod fanout;
mod guardrails;
mod hardening;
mod identifiers;
mod ingest;
mod journal;
mod oauth;
mod operator;
mod reload;
mod reload_load;
mod request_log;
mod retention;
mod storage_fault;
mod test_send;
mod trace;
mod watches;
