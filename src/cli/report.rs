//! `sluice report accuracy [--since T] [--destination ID]`: delivery accuracy per
//! destination and hour (`GET /v1/accuracy`, issue 18) as a table; exit 0.

use std::process::ExitCode;

use serde_json::Value;

use super::{Client, enc, s, table};

pub async fn report_accuracy(
    c: &Client,
    since: Option<&str>,
    destination: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let mut q = Vec::new();
    if let Some(t) = since {
        q.push(format!("since={}", enc(t)));
    }
    if let Some(d) = destination {
        q.push(format!("destination={}", enc(d)));
    }
    let path = if q.is_empty() {
        "/v1/accuracy".to_string()
    } else {
        format!("/v1/accuracy?{}", q.join("&"))
    };
    let v = c.get(&path).await?;
    print!("{}", render_accuracy(&v));
    Ok(ExitCode::SUCCESS)
}

/// One row per destination and hour: routed, delivered (first time + by replay),
/// dead-lettered by reason, pending, and the share delivered.
pub fn render_accuracy(v: &Value) -> String {
    let n = |x: &Value| x.as_u64().unwrap_or(0).to_string();
    let rows: Vec<Vec<String>> = v["hours"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| {
            let dead: Vec<String> = h["dead_lettered"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, c)| format!("{k} {}", n(c)))
                .collect();
            vec![
                s(&h["hour"]),
                s(&h["destination_id"]),
                n(&h["routed"]),
                n(&h["delivered"]),
                n(&h["recovered"]),
                if dead.is_empty() {
                    "0".into()
                } else {
                    dead.join(", ")
                },
                n(&h["pending"]),
                h["share_delivered"]
                    .as_f64()
                    .map_or("-".into(), |r| format!("{:.1}%", r * 100.0)),
            ]
        })
        .collect();
    let since = s(&v["since"]);
    if rows.is_empty() {
        return format!("no events routed since {since}\n");
    }
    let mut out = table(
        &[
            "Hour",
            "Destination",
            "Routed",
            "Delivered",
            "Replayed",
            "Dead-lettered",
            "Pending",
            "Delivered %",
        ],
        &rows,
    );
    out.push_str(&format!(
        "since {since}; hours are when the events were accepted\n"
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accuracy_table() {
        let v = json!({"since": "2026-11-02T12:00:00.000Z", "hours": [{
            "destination_id": "hooks", "merchant_id": "glasshouse",
            "hour": "2026-11-02T12:00:00.000Z", "routed": 12, "delivered": 8, "recovered": 1,
            "dead_lettered": {"rejected": 4}, "pending": 0, "share_delivered": 0.75
        }]});
        let out = render_accuracy(&v);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("Hour"), "{out}");
        assert!(lines[1].contains("hooks"), "{out}");
        assert!(lines[1].contains("rejected 4"), "{out}");
        assert!(lines[1].contains("75.0%"), "{out}");
        assert_eq!(
            render_accuracy(&json!({"since": "T", "hours": []})),
            "no events routed since T\n"
        );
    }
}
