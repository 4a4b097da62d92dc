//! Intake: validation, identifier normalization and hashing, PII sealing, dedup, limits.

pub mod event;
