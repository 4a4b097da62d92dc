//! The verdict: what the drill checks, each line pass or fail, from what the
//! simulators received (counted at the simulators, duplicates included), what the
//! engine's admin API says (auto-pause rows, DLQ entries, samples) and the scenario's
//! fault windows. Nothing here trusts the engine's own delivery counters for a
//! pass: deliveries are counted where they landed.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;
use serde_json::Value;

use super::scenario::Kind;
use super::{Drill, hhmm, parse_time};

/// One verdict line.
#[derive(Debug, Clone, Serialize)]
pub struct Line {
    pub check: String,
    pub pass: bool,
    pub detail: String,
}

/// What one destination's simulator saw.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DestFacts {
    pub id: String,
    pub platform: String,
    /// Accepted events routed to it.
    pub routed: u64,
    /// Of those, accepted at least once at the simulator.
    pub delivered: u64,
    /// Of those not delivered, in the DLQ with a reason.
    pub in_dlq: u64,
    pub dlq_by_reason: BTreeMap<String, u64>,
    pub lost: u64,
    pub lost_sample: Vec<String>,
    pub requests: u64,
    /// Accepted copies beyond the first.
    pub duplicates: u64,
    /// Event copies in requests that met a fault (the most that may come twice).
    pub dup_bound: u64,
    pub rate_limited: u64,
    pub rate_limited_outside: u64,
    pub max_lag_s: f64,
    pub max_lag_at_ms: i64,
    /// Per drill minute: (minute, requests, requests not accepted).
    #[serde(skip)]
    pub per_minute: Vec<(i64, u64, u64)>,
}

/// A state change, in drill time.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub t_ms: i64,
    pub destination: String,
    pub action: String,
    pub reason: String,
}

pub struct Judgement {
    pub lines: Vec<Line>,
    pub facts: Vec<DestFacts>,
    pub changes: Vec<Change>,
}

/// Gathers the facts and judges every line.
pub fn judge(d: &Drill) -> Judgement {
    let start = d.scenario.start_ms;
    let changes: Vec<Change> = d
        .pause_rows
        .iter()
        .filter_map(|r| {
            Some(Change {
                t_ms: parse_time(r["created_at"].as_str()?)? - start,
                destination: r["destination_id"].as_str()?.to_string(),
                action: r["action"].as_str()?.to_string(),
                reason: r["reason"].as_str().unwrap_or("").to_string(),
            })
        })
        .collect();
    let mut facts = Vec::new();
    let mut replay_ok = true;
    let mut replay_detail = Vec::new();
    for (di, dest) in d.dests.iter().enumerate() {
        let received = dest.sim.received();
        let windows: Vec<_> = d
            .scenario
            .windows_of(&dest.id, dest.platform.name())
            .collect();
        let in_fault = |t: i64| windows.iter().any(|w| w.from_ms <= t && t < w.to_ms);
        let mut accepted: HashMap<String, u32> = HashMap::new();
        let mut f = DestFacts {
            id: dest.id.clone(),
            platform: dest.platform.name().to_string(),
            requests: received.len() as u64,
            ..DestFacts::default()
        };
        let mut minutes: BTreeMap<i64, (u64, u64)> = BTreeMap::new();
        for r in &received {
            let t = r.at_ms - start;
            let ids = crate::sim::event_ids(dest.platform, &r.body);
            let m = minutes.entry(t.div_euclid(60_000)).or_default();
            m.0 += 1;
            if !r.accepted {
                m.1 += 1;
            }
            if r.accepted {
                for id in &ids {
                    *accepted.entry(id.clone()).or_default() += 1;
                }
            }
            if in_fault(t) || !r.accepted {
                f.dup_bound += ids.len() as u64;
            }
        }
        f.per_minute = minutes.into_iter().map(|(m, (a, b))| (m, a, b)).collect();
        f.duplicates = accepted
            .values()
            .map(|n| u64::from(n.saturating_sub(1)))
            .sum();
        let dlq: HashMap<&str, &str> = d
            .dlq_final
            .get(&dest.id)
            .map(|v| v.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect())
            .unwrap_or_default();
        for p in d.posted.iter().filter(|p| p.accepted) {
            let ws_ok = d
                .workspaces
                .get(p.workspace)
                .is_some_and(|w| *w == dest.workspace);
            let name_ok = dest.events.as_ref().is_none_or(|n| n.contains(&p.name));
            if !(ws_ok && name_ok) {
                continue;
            }
            f.routed += 1;
            if accepted.contains_key(&p.id) {
                f.delivered += 1;
            } else if let Some(reason) = dlq.get(p.id.as_str()) {
                f.in_dlq += 1;
                *f.dlq_by_reason.entry((*reason).to_string()).or_default() += 1;
            } else {
                f.lost += 1;
                if f.lost_sample.len() < 5 {
                    f.lost_sample.push(p.id.clone());
                }
            }
        }
        let limited = dest.sim.rate_limited();
        f.rate_limited = limited.len() as u64;
        f.rate_limited_outside = limited
            .iter()
            .filter(|&&at| {
                let t = at - start;
                !windows
                    .iter()
                    .any(|w| w.throttles() && w.from_ms <= t && t < w.to_ms)
            })
            .count() as u64;
        // Lag of the day (a replay's events are as old as the night is long).
        let replay_at = d.replay.as_ref().map_or(i64::MAX, |r| r.t_ms);
        for s in d.samples.iter().filter(|s| s.t_ms < replay_at) {
            if let Some(x) = s.dests.get(di)
                && x.lag_s > f.max_lag_s
            {
                f.max_lag_s = x.lag_s;
                f.max_lag_at_ms = s.t_ms;
            }
        }
        // The replay: each replayed event arrives once more, with its id and time.
        if let Some(run) = &d.replay
            && let (Some(entries), Some(&mark)) =
                (run.entries.get(&dest.id), run.mark.get(&dest.id))
        {
            let (ok, detail) = check_replay(
                dest.platform,
                &received[mark.min(received.len())..],
                entries,
                &accepted,
            );
            replay_ok &= ok;
            replay_detail.push(format!("{}: {detail}", dest.id));
        }
        facts.push(f);
    }

    let mut lines = Vec::new();
    // 1. Nothing lost.
    let lost: u64 = facts.iter().map(|f| f.lost).sum();
    lines.push(Line {
        check: "no accepted event lost".into(),
        pass: lost == 0,
        detail: facts
            .iter()
            .map(|f| {
                let mut s = format!("{} {}/{} delivered", f.id, f.delivered, f.routed);
                if f.in_dlq > 0 {
                    let why: Vec<String> = f
                        .dlq_by_reason
                        .iter()
                        .map(|(r, n)| format!("{n} {r}"))
                        .collect();
                    s.push_str(&format!(", {} in DLQ ({})", f.in_dlq, why.join(", ")));
                }
                if f.lost > 0 {
                    s.push_str(&format!(
                        ", {} LOST (e.g. {})",
                        f.lost,
                        f.lost_sample.join(" ")
                    ));
                }
                s
            })
            .collect::<Vec<_>>()
            .join("; "),
    });
    // 2. Duplicates bounded.
    lines.push(Line {
        check: "duplicates bounded by what was in flight at a fault".into(),
        pass: facts.iter().all(|f| f.duplicates <= f.dup_bound),
        detail: facts
            .iter()
            .map(|f| format!("{} {} (bound {})", f.id, f.duplicates, f.dup_bound))
            .collect::<Vec<_>>()
            .join("; "),
    });
    // 3. Pacing.
    let outside: u64 = facts.iter().map(|f| f.rate_limited_outside).sum();
    lines.push(Line {
        check: "no throttle caused by sluice's pacing outside the injected windows".into(),
        pass: outside == 0,
        detail: facts
            .iter()
            .map(|f| format!("{} {}", f.id, f.rate_limited_outside))
            .collect::<Vec<_>>()
            .join("; "),
    });
    // 4. Outages paused in time.
    let pauses: Vec<&Change> = changes.iter().filter(|c| c.action == "pause").collect();
    let mut outage_pass = true;
    let mut outage_detail = Vec::new();
    for dest in &d.dests {
        for w in d
            .scenario
            .windows_of(&dest.id, dest.platform.name())
            .filter(|w| w.outage)
        {
            let deadline = if w.kind == Kind::Auth {
                w.from_ms + dest.interval_ms
            } else {
                ceil_to(w.from_ms + d.scenario.start_ms, dest.interval_ms) - d.scenario.start_ms
                    + dest.interval_ms
            } + 5_000;
            let hit = pauses
                .iter()
                .find(|c| c.destination == dest.id && c.t_ms >= w.from_ms && c.t_ms <= deadline);
            match hit {
                Some(c) => outage_detail.push(format!(
                    "{} {:?} at {} paused at {} ({}s after)",
                    dest.id,
                    w.kind,
                    hhmm(w.from_ms),
                    hhmm(c.t_ms),
                    (c.t_ms - w.from_ms) / 1000
                )),
                None => {
                    outage_pass = false;
                    outage_detail.push(format!(
                        "{} {:?} at {}: NOT paused by {} (threshold {:.2})",
                        dest.id,
                        w.kind,
                        hhmm(w.from_ms),
                        hhmm(deadline),
                        dest.threshold
                    ));
                }
            }
        }
    }
    lines.push(Line {
        check: "each injected outage paused its destination within one evaluation interval".into(),
        pass: outage_pass,
        detail: if outage_detail.is_empty() {
            "no outage in the scenario".into()
        } else {
            outage_detail.join("; ")
        },
    });
    // 5. No pause outside a fault.
    let stray: Vec<String> = pauses
        .iter()
        .filter(|c| {
            let Some(dest) = d.dests.iter().find(|x| x.id == c.destination) else {
                return true;
            };
            !d.scenario
                .windows_of(&dest.id, dest.platform.name())
                .any(|w| c.t_ms >= w.from_ms && c.t_ms <= w.to_ms + dest.interval_ms)
        })
        .map(|c| format!("{} at {} ({})", c.destination, hhmm(c.t_ms), c.reason))
        .collect();
    lines.push(Line {
        check: "no destination paused outside a fault".into(),
        pass: stray.is_empty(),
        detail: if stray.is_empty() {
            format!("{} pause(s), each inside a fault window", pauses.len())
        } else {
            stray.join("; ")
        },
    });
    // 6. Auto-clear.
    let mut clear_pass = true;
    let mut clear_detail = Vec::new();
    for p in pauses
        .iter()
        .filter(|c| c.reason == "rate_threshold_exceeded")
    {
        let Some(dest) = d.dests.iter().find(|x| x.id == p.destination) else {
            continue;
        };
        let heal = d
            .scenario
            .windows_of(&dest.id, dest.platform.name())
            .filter(|w| w.from_ms <= p.t_ms && p.t_ms <= w.to_ms + dest.interval_ms)
            .map(|w| w.to_ms)
            .max()
            .unwrap_or(p.t_ms);
        // Probes start at the auto-clear, then every `reprobe` while they fail; the first
        // one after healing must resume it, and it has until the next probe would be due.
        let mut probe = p.t_ms + dest.auto_clear_ms;
        while probe < heal {
            probe += dest.reprobe_ms.max(60_000);
        }
        let deadline = probe + dest.reprobe_ms.max(60_000);
        let resumed = changes.iter().find(|c| {
            c.destination == p.destination && c.action == "auto_resume" && c.t_ms > p.t_ms
        });
        match resumed {
            Some(r) if r.t_ms <= deadline => clear_detail.push(format!(
                "{} paused {} healed {} probed {} resumed {} (by {})",
                p.destination,
                hhmm(p.t_ms),
                hhmm(heal),
                hhmm(probe),
                hhmm(r.t_ms),
                hhmm(deadline)
            )),
            other => {
                clear_pass = false;
                clear_detail.push(format!(
                    "{} paused {}: {} (deadline {})",
                    p.destination,
                    hhmm(p.t_ms),
                    other.map_or("never auto-resumed".to_string(), |r| format!(
                        "resumed late at {}",
                        hhmm(r.t_ms)
                    )),
                    hhmm(deadline)
                ));
            }
        }
    }
    lines.push(Line {
        check: "auto-clear resumed within the configured window after healing".into(),
        pass: clear_pass,
        detail: if clear_detail.is_empty() {
            "no error-rate pause to clear".into()
        } else {
            clear_detail.join("; ")
        },
    });
    // 7. Replay.
    lines.push(Line {
        check: "the replay preserved event ids and times and sent nothing twice".into(),
        pass: replay_ok,
        detail: match &d.replay {
            None => "no replay in the scenario".into(),
            Some(_) if replay_detail.is_empty() => "the DLQ was empty: nothing to replay".into(),
            Some(_) => replay_detail.join("; "),
        },
    });
    // 8. Lag (information).
    lines.push(Line {
        check: "max consumer lag per destination".into(),
        pass: true,
        detail: facts
            .iter()
            .map(|f| format!("{} {:.0}s at {}", f.id, f.max_lag_s, hhmm(f.max_lag_at_ms)))
            .collect::<Vec<_>>()
            .join("; "),
    });
    Judgement {
        lines,
        facts,
        changes,
    }
}

fn ceil_to(t: i64, step: i64) -> i64 {
    if step <= 0 {
        return t;
    }
    t.div_euclid(step) * step + if t.rem_euclid(step) == 0 { 0 } else { step }
}

/// Each replayed event arrived exactly once after the replay, accepted, with its
/// original `event_time` where the body carries one, and was never accepted before.
fn check_replay(
    p: crate::config::Platform,
    after: &[crate::sim::Received],
    entries: &[(String, i64)],
    accepted_all: &HashMap<String, u32>,
) -> (bool, String) {
    let want: HashMap<&str, i64> = entries.iter().map(|(id, t)| (id.as_str(), *t)).collect();
    let mut copies: HashMap<&str, u32> = HashMap::new();
    let (mut times_checked, mut times_wrong) = (0u64, 0u64);
    for r in after {
        for id in crate::sim::event_ids(p, &r.body) {
            if let Some((k, t)) = want.get_key_value(id.as_str()) {
                if r.accepted {
                    *copies.entry(k).or_default() += 1;
                }
                if let Some(seen) = event_time_of(&r.body, k) {
                    times_checked += 1;
                    if seen != *t {
                        times_wrong += 1;
                    }
                }
            }
        }
    }
    let arrived = want.keys().filter(|k| copies.contains_key(*k)).count();
    let twice = copies.values().filter(|n| **n > 1).count();
    // Accepted over the whole run more than once: the replay resent a delivered event.
    let before: HashSet<&str> = want
        .keys()
        .filter(|k| {
            accepted_all.get(**k).copied().unwrap_or(0) > copies.get(*k).copied().unwrap_or(0)
        })
        .copied()
        .collect();
    let ok = arrived == want.len() && twice == 0 && times_wrong == 0 && before.is_empty();
    (
        ok,
        format!(
            "{arrived}/{} replayed ids delivered, {twice} sent twice, {} already delivered before, times {}/{} equal",
            want.len(),
            before.len(),
            times_checked - times_wrong,
            times_checked
        ),
    )
}

/// The `event_time` (unix seconds) next to this id in a platform body, where there is
/// one (`event_time`, `time`, `timestamp`: numbers in s or ms, or RFC 3339).
fn event_time_of(body: &Value, id: &str) -> Option<i64> {
    match body {
        Value::Object(m) => {
            if m.values().any(|v| v.as_str() == Some(id)) {
                for k in ["event_time", "time", "timestamp", "event_at"] {
                    match m.get(k) {
                        Some(Value::Number(n)) => {
                            let v = n.as_i64()?;
                            return Some(if v > 100_000_000_000 { v / 1000 } else { v });
                        }
                        Some(Value::String(s)) => {
                            if let Some(ms) = parse_time(s) {
                                return Some(ms / 1000);
                            }
                            if let Ok(v) = s.parse::<i64>() {
                                return Some(if v > 100_000_000_000 { v / 1000 } else { v });
                            }
                        }
                        _ => {}
                    }
                }
            }
            m.values().find_map(|v| event_time_of(v, id))
        }
        Value::Array(a) => a.iter().find_map(|v| event_time_of(v, id)),
        _ => None,
    }
}

/// The verdict as plain text, one line per check.
pub fn render(j: &Judgement) -> String {
    let mut out = String::from("Verdict\n");
    for l in &j.lines {
        out.push_str(&format!(
            "  {} {}\n      {}\n",
            if l.pass { "PASS" } else { "FAIL" },
            l.check,
            l.detail
        ));
    }
    let failed = j.lines.iter().filter(|l| !l.pass).count();
    out.push_str(&if failed == 0 {
        "  every check passed\n".to_string()
    } else {
        format!("  {failed} check(s) failed\n")
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn event_times_are_read_where_each_platform_puts_them() {
        // Meta/TikTok/Pinterest: seconds next to the id.
        let meta = json!({"data": [{"event_id": "a", "event_time": 1_796_230_800},
                                   {"event_id": "b", "event_time": 1_796_230_801}]});
        assert_eq!(event_time_of(&meta, "b"), Some(1_796_230_801));
        // Klaviyo: an RFC 3339 `time` beside `unique_id`.
        let klaviyo = json!({"data": {"attributes": {"unique_id": "k",
            "time": "2026-11-27T17:00:05Z"}}});
        assert_eq!(event_time_of(&klaviyo, "k"), Some(1_795_798_805));
        // Milliseconds are read as such; an id the body lacks has no time.
        let ms = json!([{"id": "m", "timestamp": 1_796_230_800_123_i64}]);
        assert_eq!(event_time_of(&ms, "m"), Some(1_796_230_800));
        assert_eq!(event_time_of(&meta, "zz"), None);
    }

    #[test]
    fn evaluation_marks_round_up() {
        assert_eq!(ceil_to(60_000, 60_000), 60_000);
        assert_eq!(ceil_to(60_001, 60_000), 120_000);
        assert_eq!(ceil_to(299_999, 300_000), 300_000);
    }

    fn req(seq: u64, ids: &[&str], time: i64, accepted: bool) -> crate::sim::Received {
        let data: Vec<Value> = ids
            .iter()
            .map(|i| json!({"event_id": i, "event_time": time}))
            .collect();
        crate::sim::Received {
            seq,
            at_ms: 0,
            method: "POST".into(),
            path: "/".into(),
            headers: vec![],
            body: json!({ "data": data }),
            raw_body: vec![],
            status: 200,
            accepted,
            test_mark: None,
            error_body: None,
        }
    }

    #[test]
    fn a_replay_that_sends_twice_or_moves_a_time_fails() {
        let p = crate::config::Platform::Meta;
        let entries = vec![("a".to_string(), 100), ("b".to_string(), 200)];
        let once = [req(1, &["a"], 100, true), req(2, &["b"], 200, true)];
        let all: HashMap<String, u32> = [("a".to_string(), 1), ("b".to_string(), 1)].into();
        let (ok, detail) = check_replay(p, &once, &entries, &all);
        assert!(ok, "{detail}");
        assert_eq!(
            detail,
            "2/2 replayed ids delivered, 0 sent twice, 0 already delivered before, times 2/2 equal"
        );
        // Sent twice.
        let twice = [req(1, &["a", "b"], 100, true), req(2, &["b"], 200, true)];
        let all2: HashMap<String, u32> = [("a".to_string(), 1), ("b".to_string(), 2)].into();
        let (ok, detail) = check_replay(p, &twice, &entries, &all2);
        assert!(!ok);
        assert!(detail.contains("1 sent twice"), "{detail}");
        assert!(detail.contains("times 2/3 equal"), "{detail}");
        // Delivered before the replay too; and one never arrived.
        let (ok, detail) = check_replay(p, &once[..1], &entries, &all2);
        assert!(!ok);
        assert!(detail.starts_with("1/2 replayed ids delivered"), "{detail}");
        assert!(detail.contains("1 already delivered before"), "{detail}");
    }
}
