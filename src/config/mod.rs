//! Configuration: raw TOML → validated [`Config`]. (Being written: see the config helper.)

mod types;
pub use types::*;
