//! `sluice events trace EVENT_ID --workspace W [--name N]`: the event trace
//! (`GET /v1/events/{id}`) as a table per stored event, exit 1 when the store knows no
//! such event.

use std::process::ExitCode;

use serde_json::Value;

use super::{Client, enc, s, table};

pub async fn events_trace(
    c: &Client,
    event_id: &str,
    workspace: &str,
    name: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let mut path = format!("/v1/events/{}?workspace={}", enc(event_id), enc(workspace));
    if let Some(n) = name {
        path.push_str(&format!("&event_name={}", enc(n)));
    }
    let v = c.get(&path).await?;
    print!("{}", render_trace(&v));
    Ok(ExitCode::SUCCESS)
}

/// One block per stored event: what it is, then a row per destination.
pub fn render_trace(v: &Value) -> String {
    let mut out = String::new();
    for e in v["events"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{} {} in {}: event time {}, accepted {}\n",
            s(&e["event_name"]),
            s(&v["event_id"]),
            s(&v["workspace"]),
            s(&e["event_time"]),
            s(&e["accepted_at"]),
        ));
        let rows: Vec<Vec<String>> = e["destinations"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|f| {
                vec![
                    s(&f["destination_id"]),
                    s(&f["platform"]),
                    s(&f["fate"]),
                    s(&f["at"]),
                    f["attempts"].as_u64().map_or("-".into(), |n| n.to_string()),
                    f["status"].as_u64().map_or("-".into(), |n| n.to_string()),
                    s(&f["request_id"]),
                    detail(f),
                ]
            })
            .collect();
        let head = [
            "Destination",
            "Platform",
            "Fate",
            "At",
            "Attempts",
            "Status",
            "Request Id",
            "Detail",
        ];
        out.push_str(&table(&head, &rows));
        out.push('\n');
    }
    out
}

/// What the fate adds: the queue ahead, the next attempt, the DLQ entry, why not routed.
fn detail(f: &Value) -> String {
    let fate = f["fate"].as_str().unwrap_or_default();
    match fate {
        "queued" => format!(
            "{}{} ahead, destination {}",
            if f["ahead_at_least"] == true {
                "≥"
            } else {
                ""
            },
            f["ahead"].as_u64().unwrap_or(0),
            s(&f["destination_state"])
        ),
        "retrying" => format!(
            "next attempt {}: {}",
            s(&f["next_attempt_at"]),
            short(&s(&f["last_error"]))
        ),
        "dead_lettered" | "expired" | "unsendable" => format!(
            "DLQ id {} ({})",
            f["dlq_id"].as_u64().map_or("-".into(), |n| n.to_string()),
            s(&f["class"])
        ),
        "not_routed" => s(&f["reason"]),
        _ => String::new(),
    }
}

fn short(t: &str) -> String {
    let one_line: String = t
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one_line.chars().count() > 60 {
        one_line.chars().take(59).collect::<String>() + "…"
    } else {
        one_line
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn the_trace_table_says_each_fate_with_its_detail() {
        let v = json!({"workspace": "glasshouse", "event_id": "order-1234", "events": [{
        "event_name": "Purchase", "event_time": "2026-11-27T10:00:00.000Z",
        "accepted_at": "2026-11-27T10:00:01.250Z",
        "destinations": [
            {"destination_id": "meta_main", "platform": "meta", "fate": "delivered",
             "at": "2026-11-27T10:00:01.900Z", "attempts": 1, "status": 200, "request_id": "AbC123"},
            {"destination_id": "tiktok_main", "platform": "tiktok", "fate": "queued",
             "ahead": 1520, "destination_state": "paused"},
            {"destination_id": "hook", "platform": "webhook", "fate": "retrying",
             "at": "2026-11-27T10:00:02.000Z", "attempts": 2, "status": 503,
             "next_attempt_at": "2026-11-27T10:00:06.000Z", "last_error": "Service\nUnavailable"},
            {"destination_id": "views", "platform": "webhook", "fate": "not_routed",
             "reason": "the destination's events filter"}
        ]}]});
        let out = super::render_trace(&v);
        let want = "\
Purchase order-1234 in glasshouse: event time 2026-11-27T10:00:00.000Z, accepted 2026-11-27T10:00:01.250Z
Destination  Platform  Fate        At                        Attempts  Status  Request Id  Detail
meta_main    meta      delivered   2026-11-27T10:00:01.900Z  1         200     AbC123
tiktok_main  tiktok    queued      -                         -         -       -           1520 ahead, destination paused
hook         webhook   retrying    2026-11-27T10:00:02.000Z  2         503     -           next attempt 2026-11-27T10:00:06.000Z: Service Unavailable
views        webhook   not_routed  -                         -         -       -           the destination's events filter

";
        assert_eq!(out, want, "\n{out}");
    }
}
