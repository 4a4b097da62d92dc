//! What the drill runs against: one simulator per destination (on loopback, on the
//! drill's clock), and the operator's config rewritten for a rehearsal: every
//! endpoint swapped for its simulator, every secret for a throwaway one, the store in a
//! temporary directory, no alert channels (a drill must not page anyone), the admin
//! token and ingest keys the drill's own. Workspaces, plans, destinations, event
//! filters and every policy are kept as written: they are what is rehearsed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use toml_edit::{DocumentMut, Item, Table, value};

use crate::clock::SharedClock;
use crate::config::{Config, Platform};
use crate::sim::{FaultScript, SimOptions, SimServer};

/// A destination of the rehearsed config, before its simulator runs.
#[derive(Debug, Clone)]
pub struct DestSpec {
    pub id: String,
    pub platform: Platform,
}

/// The rewritten config and what the drill needs to drive it.
pub struct Rehearsal {
    pub config: Config,
    pub admin_token: String,
    /// Workspace → its drill ingest key.
    pub ingest_keys: BTreeMap<String, String>,
}

/// The destinations a config text declares, in order.
pub fn destinations(text: &str) -> anyhow::Result<Vec<DestSpec>> {
    let doc: DocumentMut = text
        .parse()
        .map_err(|e| anyhow::anyhow!("the config is not TOML: {e}"))?;
    let mut out = Vec::new();
    if let Some(arr) = doc.get("destinations").and_then(Item::as_array_of_tables) {
        for t in arr {
            let id = t.get("id").and_then(Item::as_str).unwrap_or_default();
            let p = t.get("platform").and_then(Item::as_str).unwrap_or_default();
            let platform = Platform::from_name(p)
                .ok_or_else(|| anyhow::anyhow!("destination {id}: unknown platform `{p}`"))?;
            out.push(DestSpec {
                id: id.to_string(),
                platform,
            });
        }
    }
    anyhow::ensure!(
        !out.is_empty(),
        "the config has no [[destinations]] to rehearse"
    );
    Ok(out)
}

/// Starts one simulator per destination, fault-free, with the platform's own limits.
pub async fn start_sims(specs: &[DestSpec], clock: SharedClock) -> anyhow::Result<Vec<SimServer>> {
    let mut out = Vec::new();
    for s in specs {
        let sim = crate::sim::start_with(
            s.platform,
            "127.0.0.1:0".parse()?,
            clock.clone(),
            FaultScript::none(),
            SimOptions::default(),
        )
        .await?;
        // Only event ids are kept until the replay (a six-hour drill's bodies would
        // fill memory).
        sim.set_keep_bodies(false);
        out.push(sim);
    }
    Ok(out)
}

/// A random lowercase hex string of `n` bytes.
pub fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    let _ = getrandom::getrandom(&mut b);
    hex::encode(b)
}

/// Rewrites `text` for the rehearsal in `dir` (see the module doc), writes it to
/// `dir/sluice.toml` and loads it through the daemon's own validation.
pub fn rewrite(
    text: &str,
    dir: &Path,
    sims: &[SimServer],
    alerts_url: Option<&str>,
) -> anyhow::Result<Rehearsal> {
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e| anyhow::anyhow!("the config is not TOML: {e}"))?;
    let admin_token = random_hex(16);

    let server = table(&mut doc, "server");
    for k in ["admin_token_env", "admin_token_file", "admin_token"] {
        server.remove(k);
    }
    server.insert("listen", value("127.0.0.1:0"));
    server.insert("admin_token", value(admin_token.clone()));
    server.insert("log_level", value("error"));
    // Every drill batch fits, whatever the operator's caps.
    server.insert("max_events_per_request", value(1000));

    let pii = dir.join("pii.key");
    {
        use base64::Engine;
        let mut key = [0u8; 32];
        getrandom::getrandom(&mut key).map_err(|e| anyhow::anyhow!("no random bytes: {e}"))?;
        std::fs::write(&pii, base64::engine::general_purpose::STANDARD.encode(key))?;
    }
    let storage = table(&mut doc, "storage");
    for k in ["pii_key_env", "pii_key_file", "backup_dir", "path"] {
        storage.remove(k);
    }
    storage.insert("path", value(path_str(&dir.join("sluice.redb"))));
    storage.insert("pii_key_file", value(path_str(&pii)));
    storage.insert("cache_size", value("64MiB"));

    // No alert channel of the operator's: a drill pages no one. Its own receiver (when
    // given) collects every alert for the report.
    doc.remove("alerts");
    if let Some(url) = alerts_url {
        let mut alerts = toml_edit::Table::new();
        let mut hook = toml_edit::InlineTable::new();
        hook.insert("url", format!("{url}/alerts").into());
        alerts.insert("webhook", value(hook));
        doc.insert("alerts", Item::Table(alerts));
    }

    let mut ingest_keys = BTreeMap::new();
    if let Some(arr) = doc
        .get_mut("workspaces")
        .and_then(Item::as_array_of_tables_mut)
    {
        for t in arr.iter_mut() {
            let id = t
                .get("id")
                .and_then(Item::as_str)
                .unwrap_or_default()
                .to_string();
            for k in ["ingest_keys", "ingest_keys_env", "ingest_keys_file"] {
                t.remove(k);
            }
            let key = format!("drill_{}", random_hex(12));
            let mut keys = toml_edit::Array::new();
            keys.push(key.clone());
            t.insert("ingest_keys", value(keys));
            ingest_keys.insert(id, key);
        }
    }

    if let Some(arr) = doc
        .get_mut("destinations")
        .and_then(Item::as_array_of_tables_mut)
    {
        for (t, sim) in arr.iter_mut().zip(sims) {
            let endpoint = match sim.platform {
                Platform::Webhook => format!("{}/hook", sim.url()),
                _ => sim.url(),
            };
            t.insert("endpoint", value(endpoint));
            t.remove("credentials");
            let creds = credentials(sim.platform);
            if !creds.is_empty() {
                let mut it = toml_edit::InlineTable::new();
                for (k, v) in creds {
                    it.insert(k, v.into());
                }
                t.insert("credentials", value(it));
            }
            // The token URL follows `endpoint` (the simulator serves it).
            if let Some(p) = t.get_mut("params").and_then(Item::as_inline_table_mut) {
                p.remove("token_url");
            }
        }
    }

    let path = dir.join("sluice.toml");
    std::fs::write(&path, doc.to_string())?;
    let config = crate::config::load(&path).map_err(|e| anyhow::anyhow!("config: {e}"))?;
    Ok(Rehearsal {
        config,
        admin_token,
        ingest_keys,
    })
}

/// Throwaway credentials of the shape each platform's config needs.
fn credentials(p: Platform) -> Vec<(&'static str, String)> {
    let token = || format!("drill_{}", random_hex(8));
    match p {
        Platform::Webhook => vec![(
            "signing_secret",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_string(),
        )],
        Platform::Klaviyo => vec![("api_key", token())],
        Platform::GoogleAds | Platform::MicrosoftAds => vec![
            ("developer_token", token()),
            ("client_id", token()),
            ("client_secret", token()),
            ("refresh_token", token()),
        ],
        Platform::Taboola | Platform::Outbrain | Platform::Criteo => vec![],
        _ => vec![("access_token", token())],
    }
}

fn table<'a>(doc: &'a mut DocumentMut, name: &str) -> &'a mut Table {
    if !doc.contains_table(name) {
        doc.insert(name, Item::Table(Table::new()));
    }
    doc[name].as_table_mut().expect("a table")
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

/// A fresh private directory for the drill's store, removed when dropped (whether
/// the drill ended or failed).
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn temp_dir() -> anyhow::Result<TempDir> {
    let d = std::env::temp_dir().join(format!("sluice-drill-{}", random_hex(6)));
    std::fs::create_dir_all(&d)?;
    Ok(TempDir(d))
}
