//! What the running daemon shares between its routes and tasks ([`App`]): the
//! configuration in force ([`Runtime`], swapped whole on reload), the intake, the
//! delivery engine and the alerter; and reload, which validates a new configuration
//! against what cannot change under a running process before swapping it in.
//!
//! It knows nothing of HTTP: the routes ([`crate::api`]) and the wiring
//! ([`crate::app`]) both build on it.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};
use tracing::{error, info, warn};

use crate::alerts::Alerter;
use crate::audit::{Actor, AuditType, Details, NewAuditEvent};
use crate::config::{self, Config, ConfigError, Platform};
use crate::delivery::Engine;
use crate::ingest::intake::{Intake, WorkspaceRules};
use crate::store::DeliveryOp;

/// Told the new `server.log_level` when a reload changes it (set by the binary, which
/// owns the log subscriber).
type LogLevelHook = Box<dyn Fn(&str) + Send + Sync>;
static LOG_LEVEL_HOOK: std::sync::OnceLock<LogLevelHook> = std::sync::OnceLock::new();

/// Registers what a reload calls with a changed `server.log_level` (once per process).
pub fn on_log_level(f: LogLevelHook) {
    let _ = LOG_LEVEL_HOOK.set(f);
}

/// Why a reload was refused; the running configuration stays.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReloadError {
    #[error("this daemon was started without a config file")]
    NoConfigFile,
    #[error("{0}")]
    Invalid(#[from] ConfigError),
    #[error("destination {0} may not change its platform or workspace; give it a new id")]
    Immutable(String),
    /// A valid file that a running daemon does not take by reload (it would remove every
    /// workspace, or disable the admin API); a restart with the file is the override.
    #[error("{0}")]
    Refused(String),
}

/// The configuration in force, with lookups derived from it. Swapped whole on reload.
pub struct Runtime {
    pub config: Config,
    /// SHA-256 of each ingest key, with the index of its workspace's rules.
    key_digests: Vec<([u8; 32], usize)>,
    rules: Vec<WorkspaceRules>,
}

impl Runtime {
    pub fn new(config: Config) -> Self {
        let mut rules = Vec::new();
        let mut key_digests = Vec::new();
        for (i, ws) in config.workspaces.iter().enumerate() {
            let dests: Vec<_> = config
                .destinations
                .iter()
                .filter(|d| d.workspace == ws.id)
                .collect();
            rules.push(WorkspaceRules {
                id: Arc::from(ws.id.as_str()),
                limits: ws.limits.clone(),
                destination_ids: dests.iter().map(|d| d.id.clone()).collect(),
                keep_plaintext: dests.iter().any(|d| d.platform == Platform::Klaviyo),
            });
            for k in &ws.ingest_keys {
                key_digests.push((Sha256::digest(k.expose().as_bytes()).into(), i));
            }
        }
        Self {
            config,
            key_digests,
            rules,
        }
    }

    /// SHA-256 of every ingest key with its workspace's rules (the ingest route
    /// compares a request's key against all of them, [`crate::api::auth`]).
    pub fn ingest_keys(&self) -> impl Iterator<Item = (&[u8; 32], &WorkspaceRules)> {
        self.key_digests
            .iter()
            .filter_map(|(k, i)| Some((k, self.rules.get(*i)?)))
    }

    pub fn workspace(&self, id: &str) -> Option<&WorkspaceRules> {
        self.rules.iter().find(|r| &*r.id == id)
    }
}

/// Everything the routes and tasks share.
pub struct App {
    runtime: ArcSwap<Runtime>,
    pub intake: Intake,
    pub engine: Arc<Engine>,
    pub alerter: Alerter,
    pub config_path: Option<PathBuf>,
    /// The store is open and every destination has its position: ingest may accept.
    started: AtomicBool,
    /// Backpressure evaluations finished (tests wait on it).
    pub backpressure_passes: Arc<std::sync::atomic::AtomicU64>,
    /// Watch passes finished (tests wait on it).
    pub watch_passes: Arc<std::sync::atomic::AtomicU64>,
    /// Connection cap and timeouts for clients ([`crate::api::serve`]).
    pub http_limits: crate::api::serve::Limits,
    /// Client connections the listener holds open (tests wait on it).
    pub open_connections: crate::api::serve::OpenConnections,
    /// The web console's sessions, sign-in limiter and reload notes.
    pub console: crate::console::ConsoleState,
}

impl App {
    pub fn new(
        config: Config,
        intake: Intake,
        engine: Arc<Engine>,
        alerter: Alerter,
        config_path: Option<PathBuf>,
    ) -> Self {
        engine.metrics.config_loaded(true, intake.clock.now_ms());
        engine.metrics.init_known(&config);
        App {
            runtime: ArcSwap::from_pointee(Runtime::new(config)),
            intake,
            engine,
            alerter,
            config_path,
            started: AtomicBool::new(false),
            backpressure_passes: Arc::default(),
            watch_passes: Arc::default(),
            http_limits: crate::api::serve::Limits::default(),
            open_connections: crate::api::serve::OpenConnections::default(),
            console: crate::console::ConsoleState::default(),
        }
        .loaded_now()
    }

    /// Notes when the configuration in force was loaded (the console shows it).
    fn loaded_now(self) -> Self {
        self.console.note_loaded(self.intake.clock.now_ms());
        self
    }

    /// Ready to accept events: store open and writable, delivery positioned.
    pub fn is_ready(&self) -> bool {
        self.started.load(Ordering::SeqCst) && self.intake.store.is_ready()
    }

    /// Every destination has its position: ingest may accept from now on.
    pub fn mark_started(&self) {
        self.started.store(true, Ordering::SeqCst);
    }

    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime.load_full()
    }

    /// Validates `new` against what cannot change under a running process, then swaps it
    /// in. Returns the new file's SHA-256.
    pub fn apply(&self, new: Config) -> Result<String, ReloadError> {
        let old = self.runtime();
        if new.storage.path != old.config.storage.path {
            warn!("storage.path changed: the new path takes effect at the next restart");
        }
        for d in &new.destinations {
            if let Some(o) = old.config.destinations.iter().find(|o| o.id == d.id)
                && (o.platform != d.platform || o.workspace != d.workspace)
            {
                return Err(ReloadError::Immutable(d.id.clone()));
            }
        }
        // An emptied or truncated file must not silently take every ingest key and the
        // admin API (and with it the reload route) away from a running daemon (issue 14).
        if new.workspaces.is_empty() && !old.config.workspaces.is_empty() {
            return Err(ReloadError::Refused(
                "workspaces: the new file defines no [[workspaces]], so a reload would remove every workspace and ingest key; \
                 not reloaded (if this is really intended, restart the daemon with the new file)"
                    .to_string(),
            ));
        }
        if new.server.admin_token.is_none() && old.config.server.admin_token.is_some() {
            return Err(ReloadError::Refused(
                "server.admin_token: the new file sets no admin token, so a reload would disable the admin API (this route included); \
                 not reloaded (if this is really intended, restart the daemon with the new file)"
                    .to_string(),
            ));
        }
        let sha = new.sha256.clone();
        if new.server.log_level != old.config.server.log_level
            && let Some(hook) = LOG_LEVEL_HOOK.get()
        {
            hook(&new.server.log_level);
        }
        self.alerter.reconfigure(&new.alerts);
        self.intake
            .dedup
            .set_window(new.storage.dedup_window.as_millis() as i64);
        if self.started.load(Ordering::SeqCst) {
            self.engine.sync(&new);
        }
        self.engine.metrics.init_known(&new);
        self.runtime.store(Arc::new(Runtime::new(new)));
        self.console.note_loaded(self.intake.clock.now_ms());
        info!(config_sha256 = %sha, "configuration reloaded");
        Ok(sha)
    }

    /// [`App::reload`], audited (`config_reloaded` with the file's SHA-256, or
    /// `config_reload_failed` with the error, which never quotes the file).
    pub async fn reload_audited(self: &Arc<Self>, actor: Actor) -> Result<String, ReloadError> {
        let app = self.clone();
        let result = tokio::task::spawn_blocking(move || app.reload())
            .await
            .unwrap_or_else(|e| {
                Err(ReloadError::Invalid(ConfigError {
                    key_path: None,
                    line: None,
                    message: format!("reload task failed: {e}"),
                }))
            });
        self.console
            .note_reload(self.intake.clock.now_ms(), actor, &result);
        let (event_type, details) = match &result {
            Ok(sha) => (
                AuditType::ConfigReloaded,
                Details::new().str("config_sha256", sha.clone()),
            ),
            Err(e) => (
                AuditType::ConfigReloadFailed,
                Details::new().str("error", e.to_string()),
            ),
        };
        let details = match &self.config_path {
            Some(path) => details.str("path", path.display().to_string()),
            None => details,
        };
        let ev = NewAuditEvent::record(
            event_type,
            "config",
            actor,
            details,
            self.intake.clock.now_ms(),
        );
        if let Err(e) = self
            .intake
            .store
            .delivery(vec![DeliveryOp::Audit(ev)])
            .await
        {
            warn!(error = %e, "could not audit the reload");
        }
        let now = self.intake.clock.now_ms();
        self.engine.metrics.config_loaded(result.is_ok(), now);
        if let Err(e) = &result {
            self.alerter.send(crate::alerts::Alert::reload_failed(
                &e.to_string(),
                self.config_path.as_deref(),
                now,
            ));
        }
        result
    }

    /// Re-reads the config file and applies it; an invalid file keeps the running config.
    pub fn reload(&self) -> Result<String, ReloadError> {
        let Some(path) = &self.config_path else {
            return Err(ReloadError::NoConfigFile);
        };
        let result = match config::load(path) {
            Ok(cfg) => self.apply(cfg),
            Err(e) => Err(e.into()),
        };
        if let Err(e) = &result {
            error!(error = %e, "reload failed; keeping the running configuration");
        }
        result
    }
}
