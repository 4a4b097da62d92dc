//! Periodic upkeep on the injected clock: drops DLQ entries past
//! `storage.dlq_retention`, and trims each workspace's log below the lowest position any
//! of its destinations (configured, or removed but not purged) still needs.

use std::collections::HashMap;
use std::sync::Arc;

use tracing::{info, warn};

use super::Engine;
use crate::store::{DeliveryOp, StoreError};

/// How often upkeep runs.
pub const EVERY_MS: i64 = 60_000;

pub(super) async fn run(engine: Arc<Engine>, mut stop: tokio::sync::watch::Receiver<bool>) {
    // Passes on the minute marks of the injected clock; each next mark counts from the
    // clock reading when the pass started, so a jump of the clock triggers one pass,
    // not one per missed minute, and a move made while a pass runs is not lost.
    let aligned = |t: i64| (t.div_euclid(EVERY_MS) + 1) * EVERY_MS;
    let mut next = aligned(engine.clock.now_ms());
    loop {
        tokio::select! {
            () = engine.clock.sleep_until(next) => {}
            _ = stop.changed() => return,
        }
        next = aligned(engine.clock.now_ms());
        if let Err(e) = pass(&engine).await {
            warn!(error = %e, "housekeeping failed; retrying at the next pass");
        }
        engine
            .housekeeping_passes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// One pass: DLQ retention, log trimming, event history past the dedup window.
pub async fn pass(engine: &Engine) -> Result<(), StoreError> {
    let Some(cfg) = engine.config() else {
        return Ok(());
    };
    let now = engine.clock.now_ms();
    let cutoff = now - cfg.storage.dlq_retention.as_millis() as i64;
    let view = engine.store.view()?;
    let dlq_drop = view.dlq_older_than(cutoff)?;
    // Each destination's workspace: from the config, else from its stored state.
    let mut ws_of: HashMap<String, String> = cfg
        .destinations
        .iter()
        .map(|d| (d.id.clone(), d.workspace.clone()))
        .collect();
    for (id, s) in view.dest_states()? {
        if !s.workspace.is_empty() {
            ws_of.entry(id).or_insert(s.workspace);
        }
    }
    let mut low: HashMap<String, u64> = HashMap::new();
    let mut blocked: Vec<String> = Vec::new();
    let mut lower = |dest: &str, seq: u64| match ws_of.get(dest) {
        Some(ws) => {
            let e = low.entry(ws.clone()).or_insert(u64::MAX);
            *e = (*e).min(seq);
        }
        // A position whose owner is unknown: trim nothing anywhere.
        None => blocked.push(dest.to_string()),
    };
    let cursors = view.cursors()?;
    for (dest, cursor) in &cursors {
        lower(dest, *cursor);
    }
    for (dest, row) in view.all_retries()? {
        // A replayed DLQ entry carries its own copy: it needs nothing of the log.
        if row.record.event_copy.is_none() {
            lower(&dest, row.seq);
        }
    }
    drop(view);
    // Workspaces with a configured destination that has no position yet keep all.
    for d in &cfg.destinations {
        if !cursors.iter().any(|(id, _)| *id == d.id) {
            low.insert(d.workspace.clone(), 0);
        }
    }
    // A workspace no destination reads (none configured, none removed and kept):
    // nothing needs its log; a destination added later starts at the head.
    for w in &cfg.workspaces {
        low.entry(w.id.clone()).or_insert(u64::MAX - 1);
    }
    let trims: Vec<(String, u64)> = if blocked.is_empty() {
        low.into_iter()
            .filter(|(_, b)| *b > 1 && *b != u64::MAX)
            .collect()
    } else {
        Vec::new()
    };
    let mut ops: Vec<DeliveryOp> = dlq_drop
        .iter()
        .map(|(dest, id)| DeliveryOp::DlqDel {
            dest: dest.clone(),
            id: *id,
        })
        .collect();
    ops.extend(
        trims
            .into_iter()
            .map(|(workspace, below)| DeliveryOp::TrimLog { workspace, below }),
    );
    // Event history is kept as long as the dedup window (a slice per pass).
    ops.push(DeliveryOp::TrimHistory {
        cutoff_ms: now - cfg.storage.dedup_window.as_millis() as i64,
    });
    if !dlq_drop.is_empty() {
        info!(
            entries = dlq_drop.len(),
            "dropped DLQ entries past storage.dlq_retention"
        );
    }
    engine.store.delivery(ops).await?;
    // Lets the dedup index seal and expire even when nothing else is written.
    engine.store.maintain().await
}
