//! sluice: a single-node daemon that takes conversion events over local HTTP, keeps them
//! durably in one embedded redb file, and delivers them to ad and marketing platforms.
//!
//! Module map (the flow is ingest → group-commit writer → redb → delivery):
//! - [`config`]: raw TOML → validated typed config; errors name key path and line.
//! - [`clock`]: the one injected clock every scheduler reads (tests drive it by hand).
//! - [`event`]: the normalized event, as intake produces it, the store keeps it and
//!   delivery reads it.
//! - [`ingest`]: event validation, identifier normalization and hashing, PII sealing,
//!   dedup and ingress limits.
//! - [`store`]: the redb tables, value codec, typed reads ([`store::View`]) and the
//!   group-commit writer thread.
//! - [`delivery`]: one worker per destination (read, batch, pace, send, settle), the
//!   DLQ, backlog figures and housekeeping.
//! - [`platforms`]: one adapter per platform: request building and response
//!   classification.
//! - [`trace`]: where an event is: from its id to its fate at each destination, read
//!   from the dedup index, the log, the event history and the workers.
//! - [`health`]: each destination's auto-pause state machine (SPEC §4).
//! - [`audit`]: the tamper-evident audit chain (SPEC §6).
//! - [`alerts`]: pause/resume/backpressure notices to Slack, email, webhook, PagerDuty.
//! - [`metrics`]: the `/metrics` series.
//! - [`state`]: what the running daemon shares ([`state::App`]): configuration in force,
//!   reload.
//! - [`api`]: the HTTP routes, their one error type and authentication.
//! - [`app`]: wiring, background tasks, signals and shutdown order.
//! - [`cli`]: the client subcommands against the admin API.
//! - [`console`]: the operator's web console under `/console/` (sessions, pages,
//!   charts) and the time-series sampler behind its charts.
//! - [`drill`]: `sluice drill`, a peak rehearsed against the simulators, with a report.
//! - [`sim`]: local simulators of the destination platforms (tests, `sluice simulate`).
//!
//! Dependencies point one way: `api` → `state` → (`delivery`, `ingest`, `alerts`) →
//! `store` → `event`; `app` wires them.

/// The allocator: intake allocates and frees per event (parsed JSON, normalized
/// identifiers), and glibc's malloc took about half of the batch-ingest profile;
/// mimalloc's thread-local free lists cut that (see the ingest bench in README.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod alerts;
pub mod api;
pub mod app;
pub mod audit;
pub mod cli;
pub mod clock;
pub mod config;
pub mod console;
pub mod delivery;
pub mod drill;
pub mod event;
pub mod health;
pub mod ingest;
pub mod metrics;
pub mod platforms;
pub mod sim;
pub mod state;
pub mod store;
pub mod trace;
pub mod watch;
