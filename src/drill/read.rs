//! What the drill reads of the engine, only through its own admin API and
//! `/metrics`, as an operator's tooling would: the per-minute sample (each
//! destination's state, queue depth, lag, DLQ depth and evaluated error rate from
//! `GET /v1/destinations`, DLQ counts by reason from `GET /v1/dlq/summary`, delivery
//! outcomes and the ingest total from `/metrics`), every DLQ entry, every auto-pause
//! row.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{DestSample, Drill, Rig, Sample};

/// Reads the engine at drill time `t`: destinations, DLQ summary, `/metrics`.
pub(super) async fn sample(d: &Drill, rig: &Rig, t: i64) -> anyhow::Result<Sample> {
    let list = rig.get("/v1/destinations").await?;
    let summary = rig.get("/v1/dlq/summary").await?;
    let metrics = rig
        .http
        .get(format!("{}/metrics", rig.url))
        .send()
        .await?
        .text()
        .await?;
    let m = parse_metrics(&metrics);
    let empty = Vec::new();
    let rows = list["destinations"].as_array().unwrap_or(&empty);
    let dests = d
        .dests
        .iter()
        .map(|dest| {
            let row = rows
                .iter()
                .find(|r| r["destination_id"] == dest.id.as_str())
                .cloned()
                .unwrap_or(Value::Null);
            let c = |outcome: &str| {
                m.get(&(dest.id.clone(), outcome.to_string()))
                    .copied()
                    .unwrap_or(0.0) as u64
            };
            DestSample {
                state: row["state"].as_str().unwrap_or("unknown").to_string(),
                queue_depth: row["queue_depth"].as_u64().unwrap_or(0),
                lag_s: row["consumer_lag_seconds"].as_f64().unwrap_or(0.0),
                dlq_depth: row["dlq_depth"].as_u64().unwrap_or(0),
                error_rate: row["error_rate"].as_f64(),
                delivered: c("delivered"),
                throttled: c("throttled"),
                retried: c("retried"),
                dead_lettered: c("dead_lettered"),
            }
        })
        .collect();
    let mut dlq = BTreeMap::new();
    for c in summary["counts"].as_array().unwrap_or(&empty) {
        dlq.insert(
            format!(
                "{} {}",
                c["destination_id"].as_str().unwrap_or(""),
                c["reason"].as_str().unwrap_or("")
            ),
            c["count"].as_u64().unwrap_or(0),
        );
    }
    let ingested = m
        .iter()
        .filter(|((k, _), _)| k == "__ingest")
        .map(|(_, v)| *v as u64)
        .sum();
    Ok(Sample {
        t_ms: t,
        ingested,
        dests,
        dlq,
    })
}

/// `sluice_deliveries_total` by (destination, outcome), and the ingest total under
/// ("__ingest", merchant).
fn parse_metrics(text: &str) -> BTreeMap<(String, String), f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some((series, v)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(v) = v.parse::<f64>() else { continue };
        let label = |name: &str| -> Option<String> {
            let at = series.find(&format!("{name}=\""))? + name.len() + 2;
            let rest = &series[at..];
            Some(rest[..rest.find('"')?].to_string())
        };
        if series.starts_with("sluice_deliveries_total") {
            if let (Some(d), Some(o)) = (label("destination"), label("outcome")) {
                out.insert((d, o), v);
            }
        } else if series.starts_with("sluice_ingest_events_total")
            && let Some(m) = label("merchant")
        {
            out.insert(("__ingest".to_string(), m), v);
        }
    }
    out
}

/// Every DLQ entry of a destination, oldest first.
pub(super) async fn dlq_full(rig: &Rig, dest: &str) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/dlq?destination={dest}&limit=1000");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let v = rig.get(&path).await?;
        if let Some(a) = v["entries"].as_array() {
            out.extend(a.iter().cloned());
        }
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return Ok(out),
        }
    }
}

pub(super) async fn dlq_entries(rig: &Rig, dest: &str) -> anyhow::Result<Vec<(String, String)>> {
    Ok(dlq_full(rig, dest)
        .await?
        .iter()
        .map(|e| {
            (
                e["event"]["event_id"].as_str().unwrap_or("").to_string(),
                e["error_class"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect())
}

/// Every auto-pause row, oldest first.
pub(super) async fn pause_rows(rig: &Rig) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = "/v1/auto-pause-events?limit=1000".to_string();
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let v = rig.get(&path).await?;
        if let Some(a) = v["events"].as_array() {
            out.extend(a.iter().cloned());
        }
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    out.reverse();
    Ok(out)
}
