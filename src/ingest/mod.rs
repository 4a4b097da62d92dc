//! Intake: validation, identifier normalization and hashing, PII sealing, dedup, limits.

pub mod identifiers;
pub mod intake;
pub mod pii;
pub mod validate;
