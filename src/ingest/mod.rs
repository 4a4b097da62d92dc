//! Intake: reading request bodies, validation, identifier normalization and hashing,
//! PII sealing, dedup, limits.

pub mod body;
pub mod canon;
pub mod identifiers;
pub mod intake;
pub mod pii;
pub mod strict_json;
pub mod validate;
