//! Configuration: the TOML file (SPEC §8) → a validated, typed [`Config`].
//!
//! Two stages:
//! 1. **Raw** (`raw`): the text is parsed twice — once with `toml_edit` into a
//!    span-keeping document, from which `spans::SpanIndex` maps every key path
//!    (`destinations[2].policy.auto_pause.threshold`) to its line; and once with
//!    `toml`/serde into plain structs that deny unknown keys. Syntax and shape errors
//!    (unknown key, wrong type, missing key) get their path and line from the error's
//!    byte span.
//! 2. **Validate** (`validate`): the raw structs become the typed structs of
//!    `types`: defaults filled in (platforms.md, SPEC §2 plans), durations parsed,
//!    every range checked (never clamped), policies deep-merged (built-in →
//!    `[platforms.X]` → the destination's `policy`), secrets resolved from literal,
//!    `*_env` or `*_file`, and the cross-checks run (ids, plans, scopes, PII key).
//!    Each error names the key path; its line comes from the index.
//!
//! No error message ever contains a value read from a secret or the text of a line:
//! messages are built here, from key paths, numbers and fixed wording, and the
//! messages serde produces are rewritten to drop the values they quote.

mod defaults;
mod duration;
mod files;
mod raw;
mod scope;
mod spans;
mod summary;
mod types;
mod validate;

#[cfg(test)]
mod tests;

use std::path::Path;

use sha2::{Digest, Sha256};

pub use defaults::{max_batch_limit, plan_limits};
pub use duration::{format_duration, parse_duration};
pub use files::{CONFIG_MAX_BYTES, SECRET_MAX_BYTES, create_missing_admin_token_file};
pub use scope::scope_key;
pub use summary::summary;
pub use types::*;

/// A configuration error: where (key path, line) and what. Never carries a secret or
/// the text of a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key_path: Option<String>,
    pub line: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.key_path, self.line) {
            (Some(p), Some(l)) => write!(f, "{p} (line {l}): {}", self.message),
            (Some(p), None) => write!(f, "{p}: {}", self.message),
            (None, Some(l)) => write!(f, "line {l}: {}", self.message),
            (None, None) => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Reads and validates the file at `path`; `*_env` values come from the process
/// environment, relative paths are resolved against the file's directory. The file
/// must be a regular file (or a symlink to one) of at most [`CONFIG_MAX_BYTES`].
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = files::read_text(path, CONFIG_MAX_BYTES).map_err(|e| ConfigError {
        key_path: None,
        line: None,
        message: format!("cannot read config file {}: {e}", path.display()),
    })?;
    parse(&text, Some(path), &|name| std::env::var(name).ok())
}

/// Validates `text`. `origin` is the file it came from (relative `storage.path`,
/// `backup_dir` and `*_file` paths are resolved against its directory; without it,
/// against the current directory). `env` looks up `*_env` variables.
pub fn parse(
    text: &str,
    origin: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let sha256 = hex::encode(Sha256::digest(text.as_bytes()));

    // Stage 1a: syntax, and the key-path → line index.
    let doc = toml_edit::Document::parse(text).map_err(|e| {
        let idx = spans::SpanIndex::build(text, &toml_edit::Table::new());
        ConfigError {
            key_path: None,
            line: e.span().map(|s| idx.line_of_offset(s.start)),
            message: format!("TOML syntax error: {}", clean_serde_message(e.message()).0),
        }
    })?;
    let idx = spans::SpanIndex::build(text, doc.as_table());
    if !sets_a_key(doc.as_table()) {
        return Err(ConfigError {
            key_path: None,
            line: None,
            message: "the file is empty (it sets no key); a config that runs on defaults alone is refused: \
                 set at least a [[workspaces]] table (see config.example.toml)"
                .to_string(),
        });
    }

    // Stage 1b: shape (unknown keys, types, required keys).
    let raw: raw::RawConfig = toml::from_str(text).map_err(|e| shape_error(&idx, &e))?;

    // Stage 2: values, defaults, merges, secrets, cross-checks.
    let base_dir = match origin.and_then(Path::parent) {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => std::env::current_dir().unwrap_or_else(|_| ".".into()),
    };
    let ctx = validate::Ctx {
        idx: &idx,
        env,
        base_dir,
    };
    validate::build(raw, &ctx, sha256, origin)
}

/// Whether the document sets anything: a key with a value, or a `[[table]]` entry
/// (an empty file, comments or bare `[table]` headers set nothing).
fn sets_a_key(t: &toml_edit::Table) -> bool {
    t.iter().any(|(_, item)| match item {
        toml_edit::Item::Table(t) => sets_a_key(t),
        toml_edit::Item::None => false,
        toml_edit::Item::Value(_) | toml_edit::Item::ArrayOfTables(_) => true,
    })
}

fn shape_error(idx: &spans::SpanIndex, e: &toml::de::Error) -> ConfigError {
    let (message, missing_key) = clean_serde_message(e.message());
    let at = e.span().map(|s| s.start);
    let mut key_path = at.and_then(|o| idx.path_at(o)).map(str::to_string);
    if let Some(k) = missing_key {
        key_path = Some(match key_path {
            Some(p) => format!("{p}.{k}"),
            None => k,
        });
    }
    let line = match &key_path {
        Some(p) if at.is_none() => idx.line_of(p),
        _ => at.map(|o| idx.line_of_offset(o)),
    };
    ConfigError {
        key_path,
        line,
        message,
    }
}

/// Rewrites a serde / toml message so it never quotes a value from the file. Returns
/// the message and, for "missing field", the missing key's name.
fn clean_serde_message(msg: &str) -> (String, Option<String>) {
    let first = msg.lines().next().unwrap_or("").trim();
    let expected = |s: &str| {
        s.rsplit_once(", expected ").map_or_else(
            || "a different value".to_string(),
            |(_, e)| humanize_expected(e),
        )
    };
    if let Some(rest) = first.strip_prefix("missing field `") {
        let name = rest.trim_end_matches('`').to_string();
        return (format!("missing required key `{name}`"), Some(name));
    }
    if let Some(rest) = first.strip_prefix("unknown field `") {
        let name = rest.split('`').next().unwrap_or("");
        let hint = match rest.split_once(", expected ") {
            Some((_, e)) => format!(" (expected {e})"),
            None => String::new(),
        };
        return (format!("unknown key `{name}`{hint}"), None);
    }
    if first.starts_with("invalid type:") {
        return (format!("wrong type: expected {}", expected(first)), None);
    }
    if first.starts_with("invalid value:") {
        return (format!("invalid value: expected {}", expected(first)), None);
    }
    if first.contains("did not match any variant of untagged enum ParamValue") {
        return (
            "wrong type: expected a string or an integer".to_string(),
            None,
        );
    }
    (strip_quoted(first), None)
}

fn humanize_expected(e: &str) -> String {
    match e {
        "i64" | "u64" | "u32" | "i32" | "usize" => "an integer".to_string(),
        "f64" | "f32" => "a number".to_string(),
        "a sequence" => "an array".to_string(),
        "a map" => "a table".to_string(),
        e if e.starts_with("struct ") => "a table".to_string(),
        e => e.to_string(),
    }
}

/// Replaces the content of every `"…"` with `…`, leaving backtick-quoted names (keys,
/// expected tokens) alone.
fn strip_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let (mut in_quote, mut in_tick) = (false, false);
    for c in s.chars() {
        match c {
            '`' if !in_quote => {
                in_tick = !in_tick;
                out.push(c);
            }
            '"' if !in_tick => {
                if !in_quote {
                    out.push_str("\"…\"");
                }
                in_quote = !in_quote;
            }
            _ if in_quote => {}
            _ => out.push(c),
        }
    }
    out
}
