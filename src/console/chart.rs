//! Charts as inline SVG, drawn on the server: a sparkline for the overview and a larger
//! chart with paused stretches shaded for a destination's page. Only presentation
//! attributes (no `style`), so the console's Content-Security-Policy holds.

use maud::{Markup, html};

/// Values at times (ms), oldest first.
pub type Points = [(i64, f64)];

/// At most `buckets` points: the largest value of each time bucket (a spike stays
/// visible however many samples share a pixel).
fn downsample(points: &Points, from: i64, to: i64, buckets: usize) -> Vec<(usize, f64)> {
    let span = (to - from).max(1);
    let mut out: Vec<(usize, f64)> = Vec::with_capacity(buckets.min(points.len()));
    for &(t, v) in points {
        if t < from || t > to || !v.is_finite() {
            continue;
        }
        let b = (((t - from) as f64 / span as f64) * (buckets - 1) as f64).round() as usize;
        match out.last_mut() {
            Some((lb, lv)) if *lb == b => *lv = lv.max(v),
            _ => out.push((b, v)),
        }
    }
    out
}

/// The points of a line, as (x, y) in a `w`×`h` box: values from 0 (bottom) to `max`
/// (top), kept 3 px inside the box so a flat line at either end stays visible.
fn coords(points: &Points, from: i64, to: i64, w: f64, h: f64, max: f64) -> Vec<(f64, f64)> {
    let buckets = (w as usize).max(2);
    let ds = downsample(points, from, to, buckets);
    let max = if max > 0.0 { max } else { 1.0 };
    ds.into_iter()
        .map(|(b, v)| {
            let x = 3.0 + b as f64 * (w - 6.0) / (buckets - 1) as f64;
            let y = h - 3.0 - (v / max).clamp(0.0, 1.0) * (h - 6.0);
            (x, y)
        })
        .collect()
}

fn polyline(c: &[(f64, f64)]) -> String {
    let mut s = String::with_capacity(c.len() * 12);
    for (x, y) in c {
        s.push_str(&format!("{x:.1},{y:.1} "));
    }
    s
}

/// Few points: each gets a dot (a single one draws no line).
const DOTS_UP_TO: usize = 60;

fn max_of(points: &Points) -> f64 {
    points
        .iter()
        .map(|p| p.1)
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max)
}

/// A small sparkline (120×28) of `points` between `from` and `to`, with its latest
/// value and maximum in the title.
pub fn spark(label: &str, points: &Points, from: i64, to: i64, max: Option<f64>) -> Markup {
    let (w, h) = (120.0, 28.0);
    let m = max.unwrap_or_else(|| max_of(points));
    let c = coords(points, from, to, w, h, m);
    let line = polyline(&c);
    let last = points.last().map_or(0.0, |p| p.1);
    html! {
        svg.spark width="120" height="28" viewBox="0 0 120 28" role="img"
            aria-label=(format!("{label}: latest {}", fmt(last))) {
            title { (label) ": latest " (fmt(last)) ", max " (fmt(max_of(points))) " (up to 24 h)" }
            rect x="0" y="0" width="120" height="28" fill="#f6f7f9" {}
            @if !line.is_empty() {
                polyline points=(line) fill="none" stroke="#2b6cb0" stroke-width="1.5" {}
            }
            @if c.len() <= DOTS_UP_TO {
                @for (x, y) in &c {
                    circle cx=(format!("{x:.1}")) cy=(format!("{y:.1}")) r="1.5" fill="#2b6cb0" {}
                }
            }
        }
    }
}

/// A chart 720×120 of `points`, stretches in `pauses` (from, to ms) shaded, an axis
/// label with the maximum.
pub fn chart(
    label: &str,
    points: &Points,
    from: i64,
    to: i64,
    pauses: &[(i64, i64)],
    max: Option<f64>,
) -> Markup {
    let (w, h) = (720.0, 120.0);
    let m = max.unwrap_or_else(|| max_of(points));
    let c = coords(points, from, to, w, h, m);
    let line = polyline(&c);
    let span = (to - from).max(1) as f64;
    let x = |t: i64| ((t.clamp(from, to) - from) as f64 / span * w).round();
    html! {
        figure.chart {
            figcaption { (label) ", max " (fmt(m)) }
            svg width="720" height="120" viewBox="0 0 720 120" role="img" aria-label=(label) {
                rect x="0" y="0" width="720" height="120" fill="#f6f7f9" {}
                @for (a, b) in pauses {
                    @if *b >= from && *a <= to {
                        rect.paused x=(x(*a)) y="0" width=((x(*b) - x(*a)).max(2.0)) height="120"
                            fill="#fbd5d5" {
                            title { "paused" }
                        }
                    }
                }
                @if !line.is_empty() {
                    polyline points=(line) fill="none" stroke="#2b6cb0" stroke-width="1.5" {}
                }
                @if c.len() <= DOTS_UP_TO {
                    @for (x, y) in &c {
                        circle cx=(format!("{x:.1}")) cy=(format!("{y:.1}")) r="2.5" fill="#2b6cb0" {}
                    }
                }
            }
        }
    }
}

/// A number as the charts label it: integers plain, rates with 3 decimals.
pub fn fmt(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downsampling_keeps_the_largest_of_a_bucket() {
        let pts: Vec<(i64, f64)> = (0..1000)
            .map(|i| (i, if i == 500 { 9.0 } else { 1.0 }))
            .collect();
        let ds = downsample(&pts, 0, 999, 10);
        assert_eq!(ds.len(), 10);
        assert!(ds.iter().any(|p| p.1 > 8.5));
    }

    #[test]
    fn charts_are_svg_without_style() {
        let pts = [(0, 0.1), (10, 0.5)];
        let s = chart("error rate", &pts, 0, 10, &[(2, 5)], Some(1.0)).into_string();
        assert!(s.contains("<svg") && s.contains("polyline") && s.contains("paused"));
        assert!(!s.contains("style"));
    }
}
