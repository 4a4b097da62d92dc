//! The drill's traffic: how many events each post carries (the scenario's curve,
//! fractions carried over so the totals match the curve's area), which event name and
//! payload size each gets (the scenario's mix, drawn from a seeded generator, so two
//! runs send the same events), and the event bodies themselves: valid for every
//! platform, with synthetic identifiers only (`shopperN@example.com`, click ids made
//! of the event id).

use serde_json::{Value, json};

use super::scenario::Scenario;

/// A deterministic generator (SplitMix64).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn pick<'a, T>(&mut self, items: &'a [(T, f64)]) -> &'a T {
        let total: f64 = items.iter().map(|(_, w)| w).sum();
        let mut x = self.unit() * total;
        for (t, w) in items {
            if x < *w {
                return t;
            }
            x -= w;
        }
        &items[items.len() - 1].0
    }
}

/// One event the drill posted.
#[derive(Debug, Clone)]
pub struct Posted {
    pub id: String,
    pub name: String,
    /// `event_time`, unix seconds.
    pub time_s: i64,
    /// Index of its workspace in [`Traffic::workspaces`].
    pub workspace: usize,
    /// Whether the daemon accepted it (202, not rejected, not a duplicate).
    pub accepted: bool,
}

/// Produces each post's events.
pub struct Traffic {
    rng: Rng,
    carry: f64,
    next: u64,
    pub workspaces: Vec<String>,
}

impl Traffic {
    pub fn new(workspaces: Vec<String>) -> Traffic {
        Traffic {
            rng: Rng::new(17),
            carry: 0.0,
            next: 0,
            workspaces,
        }
    }

    /// The events of the post at drill time `t` covering `len_ms`, with their bodies,
    /// grouped by workspace: `(workspace index, events, bodies)`.
    pub fn post(
        &mut self,
        s: &Scenario,
        t: i64,
        len_ms: i64,
        now_s: i64,
    ) -> Vec<(usize, Vec<Posted>, Vec<Value>)> {
        let want = s.rate_at(t) * len_ms as f64 / 60_000.0 + self.carry;
        let n = want.floor() as u64;
        self.carry = want - n as f64;
        let mut by_ws: Vec<(usize, Vec<Posted>, Vec<Value>)> = Vec::new();
        for _ in 0..n {
            self.next += 1;
            let k = self.next;
            let ws = (k as usize) % self.workspaces.len().max(1);
            let name = self.rng.pick(&s.mix).clone();
            let bytes = *self.rng.pick(&s.payload_bytes);
            let id = format!("drill-{k:07}");
            // Spread over the post's seconds.
            let time_s = now_s - (self.rng.unit() * (len_ms / 1000) as f64) as i64;
            let body = event_body(&id, &name, time_s, k, bytes, &mut self.rng);
            let p = Posted {
                id,
                name,
                time_s,
                workspace: ws,
                accepted: false,
            };
            match by_ws.iter_mut().find(|b| b.0 == ws) {
                Some(b) => {
                    b.1.push(p);
                    b.2.push(body);
                }
                None => by_ws.push((ws, vec![p], vec![body])),
            }
        }
        by_ws
    }
}

/// A valid event whose `custom_data` is about `bytes` long (a cart of line items).
fn event_body(id: &str, name: &str, time_s: i64, k: u64, bytes: u32, rng: &mut Rng) -> Value {
    let items = (bytes as usize / 52).clamp(1, 280);
    let contents: Vec<Value> = (0..items)
        .map(|i| {
            json!({"id": format!("sku-{:05}", (k * 7 + i as u64) % 50_000),
                   "quantity": 1 + (i % 3), "item_price": 19.5 + i as f64})
        })
        .collect();
    let value = (rng.unit() * 300.0 * 100.0).round() / 100.0 + 5.0;
    json!({
        "event_id": id,
        "event_name": name,
        "event_time": time_s,
        "action_source": "website",
        "event_source_url": "https://shop.example.com/checkout",
        "user_data": {
            "email": format!("shopper{}@example.com", k % 20_000),
            "phone": format!("+1415555{:04}", k % 10_000),
            "client_ip_address": format!("203.0.113.{}", k % 250),
            "client_user_agent": "Mozilla/5.0 (drill)",
            "external_id": format!("cust-{}", k % 20_000),
            // Click ids for the platforms that attribute by them. Microsoft Ads also
            // deduplicates by its click id: the event id, so its simulator counts these
            // events by id too. Taboola counts a click id of 20 characters or more.
            "msclkid": id,
            "tblci": format!("{id}-tblci-drill-click"),
            "ob_click_id": format!("{id}-ob-drill-click"),
        },
        "custom_data": {"currency": "USD", "value": value, "contents": contents},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_follow_the_curve_and_runs_repeat() {
        let s = Scenario::parse(
            r#"name = "t"
duration = "1h"
[traffic]
curve = [["0m", 90.0]]
mix = { Purchase = 1.0, Lead = 1.0 }
payload_bytes = [[4000, 1.0]]
"#,
            None,
        )
        .unwrap();
        let mut a = Traffic::new(vec!["w".into()]);
        let mut n = 0;
        let mut first = None;
        for i in 0..30 {
            for (_, ev, bodies) in a.post(&s, i * 2000, 2000, 1_000) {
                n += ev.len();
                first.get_or_insert(bodies[0].clone());
            }
        }
        assert_eq!(n, 90);
        let body = first.unwrap();
        let size = serde_json::to_vec(&body["custom_data"]).unwrap().len();
        assert!((3000..6000).contains(&size), "{size}");
        let mut b = Traffic::new(vec!["w".into()]);
        let again = b.post(&s, 0, 2000, 1_000);
        assert_eq!(again[0].2[0], body);
    }
}
