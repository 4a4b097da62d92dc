//! The drill's report: a self-contained HTML page (inline SVG charts, inline CSS, no
//! script and no external asset, so it can be mailed or attached to a ticket) and a
//! JSON summary of the same facts for machines.
//!
//! Charts, all on drill time: ingest rate; deliveries per destination; queue depth
//! and consumer lag; each destination's error rate at its simulator with its
//! auto-pause threshold, fault windows shaded and pauses / probes / resumes marked;
//! DLQ growth by reason.

use std::collections::BTreeMap;
use std::fmt::Write;

use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde_json::{Value, json};

use super::verdict::Judgement;
use super::{Drill, hhmm};

const COLORS: [&str; 8] = [
    "#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777",
];

/// The JSON summary.
pub fn summary(d: &Drill, j: &Judgement) -> Value {
    json!({
        "scenario": d.scenario.name,
        "speed": d.speed,
        "wall_seconds": d.wall.as_secs_f64(),
        "drill_seconds": d.samples.last().map_or(0, |s| s.t_ms / 1000),
        "events_posted": d.posted.len(),
        "events_accepted": d.posted.iter().filter(|p| p.accepted).count(),
        "events_refused_at_ingest": d.ingest_refused,
        "ingest_requests_rate_limited": d.ingest_retried,
        "drained_at": d.drained_at.map(hhmm),
        "passed": j.lines.iter().all(|l| l.pass),
        "verdict": j.lines,
        "destinations": j.facts,
        "state_changes": j.changes,
        "operator_actions": d.operator,
        "alerts": alert_rows(d)
            .into_iter()
            .map(|a| json!({"at": a.0, "alert": a.1, "subject": a.2, "says": a.3}))
            .collect::<Vec<_>>(),
        "faults": d.scenario.faults,
        "samples": d.samples,
    })
}

/// Each alert the daemon sent: (drill time, alert name, what it is about, what it says).
fn alert_rows(d: &Drill) -> Vec<(String, String, String, String)> {
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    d.alerts
        .iter()
        .map(|a| {
            let at = time::OffsetDateTime::parse(
                a["at"].as_str().unwrap_or(""),
                &time::format_description::well_known::Rfc3339,
            )
            .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64 - d.scenario.start_ms)
            .map_or_else(|_| "-".to_string(), super::hhmm);
            let subject = [&a["subject"], &a["destination_id"], &a["merchant_id"]]
                .into_iter()
                .map(s)
                .find(|x| !x.is_empty())
                .unwrap_or_default();
            let says = match a["summary"].as_str() {
                Some(x) => x.to_string(),
                None => s(&a["reason"]),
            };
            (at, s(&a["type"]), subject, says)
        })
        .collect()
}

/// A line chart: series of (drill ms, value), shaded bands, vertical marks, an
/// optional horizontal threshold.
struct Chart<'a> {
    title: &'a str,
    unit: &'a str,
    series: Series,
    bands: Vec<(i64, i64, String)>,
    marks: Vec<(i64, String, &'static str)>,
    hline: Option<(f64, String)>,
    x_max: i64,
}

const W: f64 = 1080.0;
const H: f64 = 220.0;
const L: f64 = 60.0;
const R: f64 = 16.0;
const T: f64 = 28.0;
const B: f64 = 34.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl Chart<'_> {
    fn svg(&self) -> String {
        let mut y_max = self
            .series
            .iter()
            .flat_map(|(_, p)| p.iter().map(|x| x.1))
            .fold(0.0f64, f64::max);
        if let Some((h, _)) = &self.hline {
            y_max = y_max.max(*h * 1.2);
        }
        if y_max <= 0.0 {
            y_max = 1.0;
        }
        let y_max = nice(y_max);
        let x_max = self.x_max.max(60_000) as f64;
        let px = |t: i64| L + (t as f64 / x_max) * (W - L - R);
        let py = |v: f64| T + (1.0 - v / y_max) * (H - T - B);
        let mut s = String::new();
        let _ = write!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="100%" role="img" aria-label="{}">"#,
            esc(self.title)
        );
        let _ = write!(
            s,
            r##"<text x="{L}" y="18" font-size="14" font-weight="600" fill="#111">{} <tspan fill="#666" font-weight="400">({})</tspan></text>"##,
            esc(self.title),
            esc(self.unit)
        );
        for (from, to, label) in &self.bands {
            let (a, b) = (px(*from), px(*to).max(px(*from) + 2.0));
            let _ = write!(
                s,
                r##"<rect x="{a:.1}" y="{T}" width="{:.1}" height="{:.1}" fill="#f59e0b" opacity="0.18"><title>{}</title></rect>"##,
                b - a,
                H - T - B,
                esc(label)
            );
        }
        // Axes and grid.
        for i in 0..=4 {
            let v = y_max * f64::from(i) / 4.0;
            let y = py(v);
            let _ = write!(
                s,
                r##"<line x1="{L}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="#e5e7eb"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end" fill="#555">{}</text>"##,
                W - R,
                L - 6.0,
                y + 4.0,
                short(v)
            );
        }
        let hours = (x_max / 3_600_000.0).ceil() as i64;
        let step = if hours > 12 { 2 } else { 1 };
        for h in (0..=hours).step_by(step) {
            let x = px(h * 3_600_000);
            if x > W - R + 0.5 {
                break;
            }
            let _ = write!(
                s,
                r##"<line x1="{x:.1}" x2="{x:.1}" y1="{T}" y2="{:.1}" stroke="#f1f5f9"/><text x="{x:.1}" y="{:.1}" font-size="11" text-anchor="middle" fill="#555">{}</text>"##,
                H - B,
                H - B + 16.0,
                hhmm(h * 3_600_000)
            );
        }
        if let Some((v, label)) = &self.hline {
            let y = py(*v);
            let _ = write!(
                s,
                r##"<line x1="{L}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="#dc2626" stroke-dasharray="6 4"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end" fill="#dc2626">{}</text>"##,
                W - R,
                W - R - 4.0,
                y - 4.0,
                esc(label)
            );
        }
        for (i, (name, pts)) in self.series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let mut path = String::new();
            // A gap of more than 90 s (no requests in a minute) breaks the line.
            let mut prev: Option<i64> = None;
            for (t, v) in pts {
                let gap = prev.is_none_or(|p| t - p > 90_000);
                let _ = write!(
                    path,
                    "{}{:.1},{:.1} ",
                    if gap { "M" } else { "L" },
                    px(*t),
                    py(*v)
                );
                prev = Some(*t);
            }
            let _ = write!(
                s,
                r#"<path d="{path}" fill="none" stroke="{color}" stroke-width="1.6"><title>{}</title></path>"#,
                esc(name)
            );
            let lx = L + 8.0 + (i as f64) * 170.0;
            let _ = write!(
                s,
                r##"<rect x="{lx:.1}" y="{:.1}" width="10" height="3" fill="{color}"/><text x="{:.1}" y="{:.1}" font-size="11" fill="#333">{}</text>"##,
                T + 6.0,
                lx + 14.0,
                T + 10.0,
                esc(name)
            );
        }
        for (k, (t, label, color)) in self.marks.iter().enumerate() {
            let x = px(*t);
            let ly = T + 24.0 + 12.0 * (k % 3) as f64;
            let _ = write!(
                s,
                r#"<line x1="{x:.1}" x2="{x:.1}" y1="{T}" y2="{:.1}" stroke="{color}" stroke-width="1.5"/><text x="{:.1}" y="{:.1}" font-size="10" fill="{color}">{}</text>"#,
                H - B,
                x + 3.0,
                ly,
                esc(label)
            );
        }
        s.push_str("</svg>");
        s
    }
}

fn nice(v: f64) -> f64 {
    let e = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if v <= m * e {
            return m * e;
        }
    }
    10.0 * e
}

fn short(v: f64) -> String {
    if v >= 1_000_000.0 {
        format!("{:.1}M", v / 1_000_000.0)
    } else if v >= 1_000.0 {
        format!("{:.1}k", v / 1_000.0)
    } else if v >= 10.0 || v == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// Named series of (drill ms, value).
type Series = Vec<(String, Vec<(i64, f64)>)>;

/// Caps every series at three times the 95th percentile of their non-zero values,
/// when some value is above it; returns the cap used.
fn clip(mut series: Series) -> (Series, Option<f64>) {
    let mut all: Vec<f64> = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|x| x.1))
        .filter(|v| *v > 0.0)
        .collect();
    if all.is_empty() {
        return (series, None);
    }
    all.sort_by(f64::total_cmp);
    let cap = all[(all.len() - 1) * 95 / 100] * 3.0;
    if all[all.len() - 1] <= cap {
        return (series, None);
    }
    for (_, p) in &mut series {
        for x in p.iter_mut() {
            x.1 = x.1.min(cap);
        }
    }
    (series, Some(cap))
}

/// Per-minute differences of a cumulative series.
fn rate(points: &[(i64, f64)]) -> Vec<(i64, f64)> {
    points
        .windows(2)
        .map(|w| {
            let mins = ((w[1].0 - w[0].0) as f64 / 60_000.0).max(1.0);
            (w[1].0, ((w[1].1 - w[0].1) / mins).max(0.0))
        })
        .collect()
}

/// The HTML report.
pub fn html(d: &Drill, j: &Judgement) -> String {
    // Charts cover the traffic window and its drain; the replay has its own table.
    let x_max = d
        .drained_at
        .unwrap_or(d.scenario.duration_ms)
        .max(d.scenario.duration_ms);
    let day: Vec<&super::Sample> = d.samples.iter().filter(|s| s.t_ms <= x_max).collect();
    let cum = |f: &dyn Fn(&super::Sample) -> f64| -> Vec<(i64, f64)> {
        day.iter().map(|s| (s.t_ms, f(s))).collect()
    };
    let all_bands: Vec<(i64, i64, String)> = d
        .scenario
        .faults
        .iter()
        .map(|w| {
            (
                w.from_ms,
                w.to_ms,
                format!(
                    "{:?} {}",
                    w.kind,
                    w.destination
                        .clone()
                        .or(w.platform.clone())
                        .unwrap_or_default()
                ),
            )
        })
        .collect();
    let mut charts: Vec<(String, String)> = Vec::new();
    charts.push((
        "Ingest".into(),
        Chart {
            title: "Ingest rate",
            unit: "events accepted per minute",
            series: vec![("ingest".into(), rate(&cum(&|s| s.ingested as f64)))],
            bands: vec![],
            marks: vec![],
            hline: None,
            x_max,
        }
        .svg(),
    ));
    let per_dest = |f: &dyn Fn(&super::DestSample) -> f64, cumulative: bool| {
        d.dests
            .iter()
            .enumerate()
            .map(|(i, dest)| {
                let pts: Vec<(i64, f64)> = day
                    .iter()
                    .filter_map(|s| Some((s.t_ms, f(s.dests.get(i)?))))
                    .collect();
                (dest.id.clone(), if cumulative { rate(&pts) } else { pts })
            })
            .collect::<Vec<_>>()
    };
    // A backlog drained after a pause delivers far above the day's rate: those peaks
    // are clipped so the day stays readable.
    let (deliveries, clipped) = clip(per_dest(&|x| x.delivered as f64, true));
    let deliveries_unit = match clipped {
        Some(c) => format!(
            "events delivered per minute; drain peaks above {} clipped",
            short(c)
        ),
        None => "events delivered per minute".to_string(),
    };
    charts.push((
        "Deliveries".into(),
        Chart {
            title: "Deliveries per destination",
            unit: &deliveries_unit,
            series: deliveries,
            bands: all_bands.clone(),
            marks: vec![],
            hline: None,
            x_max,
        }
        .svg(),
    ));
    charts.push((
        "Queue".into(),
        Chart {
            title: "Queue depth",
            unit: "events pending",
            series: per_dest(&|x| x.queue_depth as f64, false),
            bands: all_bands.clone(),
            marks: vec![],
            hline: None,
            x_max,
        }
        .svg(),
    ));
    charts.push((
        "Lag".into(),
        Chart {
            title: "Consumer lag",
            unit: "seconds behind",
            series: per_dest(&|x| x.lag_s, false),
            bands: all_bands.clone(),
            marks: vec![],
            hline: None,
            x_max,
        }
        .svg(),
    ));
    for (i, dest) in d.dests.iter().enumerate() {
        let f = &j.facts[i];
        let pts: Vec<(i64, f64)> = f
            .per_minute
            .iter()
            .filter(|(m, _, _)| m * 60_000 <= x_max)
            .map(|(m, n, e)| (m * 60_000, *e as f64 / (*n).max(1) as f64))
            .collect();
        let bands = d
            .scenario
            .windows_of(&dest.id, dest.platform.name())
            .map(|w| (w.from_ms, w.to_ms, format!("{:?}", w.kind)))
            .collect();
        let mut marks = Vec::new();
        for c in j.changes.iter().filter(|c| c.destination == dest.id) {
            let (label, color) = match c.action.as_str() {
                "pause" | "manual_pause" => ("pause", "#b91c1c"),
                "probe_failed" => ("probe failed", "#c2410c"),
                _ => ("resume", "#15803d"),
            };
            if c.reason == "rate_threshold_exceeded" {
                marks.push((c.t_ms + dest.auto_clear_ms, "probe".to_string(), "#7c3aed"));
            }
            marks.push((c.t_ms, label.to_string(), color));
        }
        charts.push((
            format!("Errors {}", dest.id),
            Chart {
                title: &format!("Error rate at the simulator: {}", dest.id),
                unit: "share of requests not accepted, per minute",
                series: vec![(dest.id.clone(), pts)],
                bands,
                marks,
                hline: Some((
                    dest.threshold,
                    format!("auto-pause threshold {:.2}", dest.threshold),
                )),
                x_max,
            }
            .svg(),
        ));
    }
    let mut reasons: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    for s in &d.samples {
        for k in s.dlq.keys() {
            reasons.entry(k.clone()).or_default();
        }
    }
    for (k, pts) in &mut reasons {
        *pts = d
            .samples
            .iter()
            .map(|s| (s.t_ms, s.dlq.get(k).copied().unwrap_or(0) as f64))
            .collect();
    }
    let dlq_x = d.samples.last().map_or(x_max, |s| s.t_ms);
    charts.push((
        "DLQ".into(),
        Chart {
            title: "DLQ by destination and reason (the replay empties it the next morning)",
            unit: "entries",
            series: reasons.into_iter().collect(),
            bands: all_bands,
            marks: d
                .replay
                .as_ref()
                .map(|r| vec![(r.t_ms, "replay".to_string(), "#15803d")])
                .unwrap_or_default(),
            hline: None,
            x_max: dlq_x,
        }
        .svg(),
    ));
    page(d, j, &charts).into_string()
}

fn page(d: &Drill, j: &Judgement, charts: &[(String, String)]) -> Markup {
    let passed = j.lines.iter().all(|l| l.pass);
    let accepted = d.posted.iter().filter(|p| p.accepted).count();
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "sluice drill: " (d.scenario.name) }
                style { (PreEscaped(CSS)) }
            }
            body {
                h1 { "sluice drill — " (d.scenario.name) }
                p.lede { (d.scenario.description) }
                p.facts {
                    (d.posted.len()) " events pushed, " (accepted) " accepted · "
                    (d.dests.len()) " destinations · drill time "
                    (hhmm(d.samples.last().map_or(0, |s| s.t_ms)))
                    " in " (format!("{:.1}", d.wall.as_secs_f64())) " s of wall time at "
                    (d.speed) "×"
                    @if let Some(t) = d.drained_at { " · backlog drained at " (hhmm(t)) }
                }
                div class=(if passed { "banner pass" } else { "banner fail" }) {
                    @if passed { "PASS — every check held" } @else {
                        "FAIL — " (j.lines.iter().filter(|l| !l.pass).count()) " check(s) failed"
                    }
                }
                table.verdict {
                    @for l in &j.lines {
                        tr {
                            td class=(if l.pass { "ok" } else { "bad" }) { (if l.pass { "PASS" } else { "FAIL" }) }
                            td { b { (l.check) } br; span.detail { (l.detail) } }
                        }
                    }
                }
                @for (_, svg) in charts {
                    div.chart { (PreEscaped(svg)) }
                }
                h2 { "State changes" }
                table.list {
                    tr { th { "drill time" } th { "destination" } th { "action" } th { "reason" } }
                    @for c in &j.changes {
                        tr { td { (hhmm(c.t_ms)) } td { (c.destination) } td { (c.action) } td { (c.reason) } }
                    }
                    @for o in &d.operator {
                        tr { td { (hhmm(o.t_ms)) } td { (o.destination) } td { "operator: " (o.action) } td { (o.result) } }
                    }
                }
                h2 { "Alerts the people on call would have received" }
                @let alerts = alert_rows(d);
                @if alerts.is_empty() {
                    p { "None." }
                } @else {
                    table.list {
                        tr { th { "drill time" } th { "alert" } th { "about" } th { "says" } }
                        @for (at, kind, subject, says) in &alerts {
                            tr { td { (at) } td { (kind) } td { (subject) } td { (says) } }
                        }
                    }
                }
                h2 { "Destinations" }
                table.list {
                    tr { th { "destination" } th { "platform" } th { "routed" } th { "delivered" } th { "in DLQ" }
                         th { "requests" } th { "duplicates (bound)" } th { "rate-limited" } th { "max lag" } }
                    @for f in &j.facts {
                        tr { td { (f.id) } td { (f.platform) } td { (f.routed) } td { (f.delivered) } td { (f.in_dlq) }
                             td { (f.requests) } td { (f.duplicates) " (" (f.dup_bound) ")" }
                             td { (f.rate_limited) } td { (format!("{:.0}", f.max_lag_s)) " s" } }
                    }
                }
                h2 { "Faults injected" }
                table.list {
                    tr { th { "from" } th { "to" } th { "where" } th { "kind" } th { "rate" } th { "outage" } }
                    @for w in &d.scenario.faults {
                        tr { td { (hhmm(w.from_ms)) } td { (hhmm(w.to_ms)) }
                             td { (w.destination.clone().or(w.platform.clone()).unwrap_or_default()) }
                             td { (format!("{:?}", w.kind)) } td { (format!("{:.0}%", w.rate * 100.0)) }
                             td { (if w.outage { "yes" } else { "" }) } }
                    }
                }
                p.foot { "Drill time is hh:mm from the scenario's start ("
                    (crate::clock::rfc3339_ms(d.scenario.start_ms)) "). Deliveries are counted at the simulators; states, queues and the DLQ are read from sluice's admin API and /metrics every drill minute." }
            }
        }
    }
}

const CSS: &str = "body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1120px;color:#111;padding:0 12px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px}
.lede{color:#444;margin:4px 0}.facts{color:#333}
.banner{padding:10px 14px;border-radius:6px;font-weight:600;margin:12px 0}
.pass{background:#dcfce7;color:#14532d}.fail{background:#fee2e2;color:#7f1d1d}
table{border-collapse:collapse;width:100%}td,th{padding:5px 8px;border-bottom:1px solid #e5e7eb;text-align:left;vertical-align:top}
.verdict td.ok{color:#15803d;font-weight:700;width:48px}.verdict td.bad{color:#b91c1c;font-weight:700;width:48px}
.detail{color:#555;font-size:12px}.chart{margin:14px 0;border:1px solid #e5e7eb;border-radius:6px;padding:6px}
.list th{background:#f8fafc;font-weight:600}.foot{color:#666;font-size:12px;margin-top:24px}";
