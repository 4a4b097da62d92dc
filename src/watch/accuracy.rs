//! Delivery accuracy (issue 18): per destination and hour of acceptance, the events
//! routed to it and what became of them, from the counts the commits keep
//! ([`crate::store::watch`]); `GET /v1/accuracy` and `sluice report accuracy` show
//! them, and the watch task alerts on a finished hour under `watch.min_accuracy`.

use std::sync::Arc;

use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use super::judge::Step;
use super::percent;
use crate::alerts::{Alert, WatchNotice};
use crate::api::Q;
use crate::api::auth::Admin;
use crate::api::error::{ApiError, ApiResult, ok};
use crate::clock::rfc3339_ms;
use crate::config::Destination;
use crate::state::App;
use crate::store::watch::{Accuracy, accuracy_rows, hour_of};

const HOUR_MS: i64 = 3_600_000;

/// The alert for a finished hour under `min` (or the first one at or over it again).
pub fn alert(d: &Destination, hour: i64, row: &Accuracy, min: f64, step: Step, now: i64) -> Alert {
    let share = row.share_delivered().unwrap_or(1.0);
    let at = rfc3339_ms(hour * HOUR_MS);
    let resolved = step == Step::Resolve;
    let (name, summary, action) = if resolved {
        (
            "accuracy_resolved",
            format!(
                "destination {}: {} of the events of the hour from {at} delivered (minimum {})",
                d.id,
                percent(share),
                percent(min)
            ),
            "Nothing to do.".to_string(),
        )
    } else {
        (
            "accuracy",
            format!(
                "destination {}: only {} of the {} events of the hour from {at} delivered (minimum {})",
                d.id,
                percent(share),
                row.routed,
                percent(min)
            ),
            format!(
                "See where they went: sluice report accuracy --destination {id}; dead-lettered ones by reason: sluice dlq summary; replay them once the cause is fixed: sluice dlq replay --destination {id}.",
                id = d.id
            ),
        )
    };
    let mut figures = vec![
        ("Hour".to_string(), at),
        ("Routed".to_string(), row.routed.to_string()),
        (
            "Delivered".to_string(),
            (row.delivered + row.recovered).to_string(),
        ),
        ("Pending".to_string(), row.pending().to_string()),
    ];
    for (reason, n) in &row.dead_lettered {
        figures.push((format!("Dead-lettered ({reason})"), n.to_string()));
    }
    Alert::watch(
        WatchNotice {
            watch: "accuracy",
            name,
            subject: d.id.clone(),
            resolved,
            summary,
            action,
        },
        figures,
        &d.workspace,
        &d.id,
        d.platform.name(),
        now,
    )
}

/// One row of the route's answer.
pub fn row_json(dest: &str, merchant: Option<&str>, hour: i64, a: &Accuracy) -> Value {
    json!({
        "destination_id": dest,
        "merchant_id": merchant,
        "hour": rfc3339_ms(hour * HOUR_MS),
        "routed": a.routed,
        "delivered": a.delivered,
        "recovered": a.recovered,
        "dead_lettered": a.dead_lettered,
        "pending": a.pending(),
        "share_delivered": a.share_delivered(),
    })
}

#[derive(Deserialize)]
pub struct AccuracyQuery {
    since: Option<String>,
    destination: Option<String>,
}

/// `GET /v1/accuracy?since=&destination=`: each configured destination's hours from
/// `since` (RFC 3339; default 24 h ago), oldest first; only hours that routed events.
pub async fn get_accuracy(
    State(app): State<Arc<App>>,
    _: Admin,
    Q(q): Q<AccuracyQuery>,
) -> ApiResult {
    let now = app.intake.clock.now_ms();
    let since =
        crate::api::dlq::parse_time("since", q.since.as_ref())?.unwrap_or(now - 24 * HOUR_MS);
    let rt = app.runtime();
    let dests: Vec<&Destination> = rt
        .config
        .destinations
        .iter()
        .filter(|d| q.destination.as_deref().is_none_or(|x| x == d.id))
        .collect();
    if let Some(want) = &q.destination
        && dests.is_empty()
    {
        return Err(crate::api::admin::not_found(want));
    }
    let mut hours = Vec::new();
    for d in dests {
        let rows = app
            .intake
            .store
            .read(|txn| accuracy_rows(txn, &d.id, hour_of(since), i64::MAX))
            .map_err(ApiError::from)?;
        for (hour, a) in rows {
            hours.push(row_json(&d.id, Some(&d.workspace), hour, &a));
        }
    }
    ok(&json!({ "since": rfc3339_ms(since), "hours": hours }))
}
