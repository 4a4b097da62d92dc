//! The sampler behind the console's charts: every 30 s on the injected clock, one
//! sample per configured destination (error rate, queue depth, events delivered since
//! the sample before) committed through the store writer ([`DeliveryOp::Sample`]),
//! which trims each destination's series to [`series::KEEP_MS`]. The figures are the
//! `/metrics` gauges' ([`crate::delivery::Engine::gauges`]): the persisted backlog
//! summaries, never a scan of the backlog.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::watch;
use tracing::warn;

use crate::state::App;
use crate::store::DeliveryOp;
use crate::store::series::{self, Sample};

/// Runs until `stop` turns true. The schedule starts when this is called, not when the
/// task is first polled: a clock moved in between (a test's manual clock) still finds
/// the first 30 s mark after the start due.
pub fn run(app: Arc<App>, stop: watch::Receiver<bool>) -> impl Future<Output = ()> {
    let from = app.intake.clock.now_ms();
    sample_from(app, stop, from)
}

/// Samples at every 30 s mark after `from`; each next mark counts from the last one
/// sampled, so time the sample itself took never skips a mark.
async fn sample_from(app: Arc<App>, mut stop: watch::Receiver<bool>, mut from: i64) {
    // Delivered counts at the previous sample (the process's counters start at 0).
    let mut last: HashMap<String, u64> = HashMap::new();
    loop {
        let next = (from.div_euclid(series::INTERVAL_MS) + 1) * series::INTERVAL_MS;
        tokio::select! {
            () = app.intake.clock.sleep_until(next) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        // Timed at the boundary just passed (after a jump of the clock, the latest one).
        let at = app.intake.clock.now_ms().div_euclid(series::INTERVAL_MS) * series::INTERVAL_MS;
        if let Err(e) = sample_once(&app, &mut last, at).await {
            warn!(error = %e, "console series: cannot take a sample");
        }
        from = at;
    }
}

/// Takes and commits one sample of every configured destination, timed `at_ms`.
pub async fn sample_once<S: std::hash::BuildHasher>(
    app: &Arc<App>,
    last: &mut HashMap<String, u64, S>,
    at_ms: i64,
) -> Result<(), crate::store::StoreError> {
    let a = app.clone();
    let gauges = tokio::task::spawn_blocking(move || a.engine.gauges(&a.runtime().config))
        .await
        .map_err(|e| crate::store::StoreError::Unavailable(e.to_string()))??;
    let mut ops = Vec::with_capacity(gauges.len());
    for g in gauges {
        let dest = g.labels.destination;
        let total = app.engine.metrics.delivered_total(&dest);
        let before = last.insert(dest.clone(), total).unwrap_or(0);
        let state = app.engine.snapshot(&dest).map(|s| s.state);
        let error_rate = match state {
            Some(s) => s.error_rate,
            None => Some(g.error_rate),
        };
        ops.push(DeliveryOp::Sample {
            dest,
            sample: Sample {
                at_ms,
                error_rate,
                queue_depth: g.queue_depth,
                delivered: total.saturating_sub(before),
            },
        });
    }
    if !ops.is_empty() {
        app.intake.store.delivery(ops).await?;
    }
    Ok(())
}
