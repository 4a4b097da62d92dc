//! sluice: a single-node daemon that takes conversion events over local HTTP, keeps them
//! durably in one embedded redb file, and delivers them to ad and marketing platforms.
//!
//! Module map (the flow is ingest → group-commit writer → redb → delivery):
//! - [`config`]: raw TOML → validated typed config; errors name key path and line.
//! - [`clock`]: the one injected clock every scheduler reads (tests drive it by hand).
//! - [`ingest`]: event validation, identifier normalization and hashing, PII sealing,
//!   dedup and ingress limits.
//! - [`store`]: the redb tables, value codec and the group-commit writer thread.
//! - [`audit`]: the tamper-evident audit chain (SPEC §6).
//! - [`api`]: the HTTP routes.
//! - [`alerts`]: pause/resume/backpressure notices to Slack, email, webhook, PagerDuty.
//! - [`app`]: wiring, signals and shutdown order.
//! - [`sim`]: local simulators of the destination platforms (tests, `sluice simulate`).

pub mod alerts;
pub mod api;
pub mod app;
pub mod audit;
pub mod cli;
pub mod clock;
pub mod config;
pub mod delivery;
pub mod health;
pub mod ingest;
pub mod metrics;
pub mod platforms;
pub mod sim;
pub mod store;
