//! Configuration: raw TOML → validated [`Config`]. (Being written: see the config helper.)

mod types;
pub use types::*;

// TEMPORARY stub until the config branch lands.
#[derive(Debug)]
pub struct ConfigError {
    pub key_path: Option<String>,
    pub line: Option<usize>,
    pub message: String,
}
impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}
impl std::error::Error for ConfigError {}
pub fn load(_path: &std::path::Path) -> Result<Config, ConfigError> {
    Err(ConfigError { key_path: None, line: None, message: "stub".into() })
}
pub fn summary(_c: &Config) -> String {
    String::new()
}
