//! `GET /v1/destinations/{id}/series[?hours=24]` (admin): the destination's time series
//! behind the console's charts ([`crate::store::series`]), oldest first: one sample
//! every 30 s of its error rate, queue depth and the events delivered since the sample
//! before, over the last `hours` (1–24, default 24).

use std::sync::Arc;

use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Q;
use super::admin::not_found;
use super::auth::Admin;
use super::error::{ApiError, ApiResult, ok};
use crate::clock::rfc3339_ms;
use crate::state::App;
use crate::store::series::{self, Sample};

#[derive(Default, Deserialize)]
pub struct SeriesQuery {
    hours: Option<u32>,
}

/// `dest`'s samples of the last `hours` before `now`, oldest first; 404 for a
/// destination neither configured nor holding data.
pub fn samples(app: &App, dest: &str, hours: u32) -> ApiResult<Vec<Sample>> {
    let configured = app
        .runtime()
        .config
        .destinations
        .iter()
        .any(|d| d.id == dest);
    if !configured
        && !app
            .intake
            .store
            .view()?
            .known_destinations()?
            .contains(dest)
    {
        return Err(not_found(dest));
    }
    let from = app.intake.clock.now_ms() - i64::from(hours) * 3_600_000;
    Ok(app.intake.store.read(|txn| series::read(txn, dest, from))?)
}

/// The admin API's `404 not_found` for a destination id (the console's pages answer
/// the same).
pub fn destination_not_found(id: &str) -> ApiError {
    not_found(id)
}

/// The JSON of samples: `[{"at", "error_rate", "queue_depth", "delivered"}]`.
pub fn samples_json(samples: &[Sample]) -> Vec<Value> {
    samples
        .iter()
        .map(|s| {
            json!({
                "at": rfc3339_ms(s.at_ms),
                "error_rate": s.error_rate,
                "queue_depth": s.queue_depth,
                "delivered": s.delivered,
            })
        })
        .collect()
}

pub async fn get_series(
    State(app): State<Arc<App>>,
    _: Admin,
    Path(id): Path<String>,
    Q(q): Q<SeriesQuery>,
) -> ApiResult {
    let hours = q.hours.unwrap_or(24);
    if !(1..=24).contains(&hours) {
        return Err(ApiError::bad_request("hours must be between 1 and 24"));
    }
    let s = samples(&app, &id, hours)?;
    ok(&json!({
        "destination_id": id,
        "interval_seconds": series::INTERVAL_MS / 1000,
        "samples": samples_json(&s),
    }))
}
