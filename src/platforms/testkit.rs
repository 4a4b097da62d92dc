//! Destinations and events for the adapters' tests: every identifier, strings that
//! need escaping, `custom_data` of every shape.

use std::time::Duration;

use serde_json::json;

use crate::config::{AutoPausePolicy, Destination, Platform, PlatformPolicy, RetryPolicy, Secret};
use crate::event::{ClearField, NormalizedEvent, PlainField, Variant};

/// The events as sent for merchant `m`, accepted at 0.
pub fn outs(evs: &[NormalizedEvent]) -> Vec<super::OutEvent<'_>> {
    evs.iter()
        .map(|e| super::OutEvent {
            event: e,
            merchant_id: "m",
            accepted_ms: 0,
        })
        .collect()
}

fn dest(platform: Platform, event_map: &[(&str, &str)]) -> Destination {
    let pairs = |v: &[(&str, &str)]| {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    Destination {
        id: format!("{}_dest", platform.name()),
        workspace: "glasshouse".into(),
        platform,
        endpoint: Some("http://127.0.0.1:9/hook".into()),
        events: None,
        event_map: pairs(event_map),
        params: pairs(&[("pixel_id", "123"), ("pixel_code", "CABC\"1")]),
        credentials: [
            ("access_token", "tok/en+1"),
            ("api_key", "pk_x"),
            ("signing_secret", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), Secret(v.to_string())))
        .collect(),
        policy: PlatformPolicy {
            max_batch: 1000,
            linger: Duration::from_secs(1),
            concurrency: 4,
            timeout: Duration::from_secs(10),
            age_limit: None,
            rates: vec![],
            retry: RetryPolicy {
                max_retries: 8,
                base: Duration::from_secs(1),
                max: Duration::from_secs(128),
                jitter: 0.0,
            },
            auto_pause: AutoPausePolicy {
                threshold: 0.25,
                interval: Duration::from_secs(300),
                window: Duration::from_secs(300),
                sample: 1000,
                min_samples: 10,
                auto_clear: Duration::from_secs(14_400),
                reprobe: Duration::from_secs(1800),
                probe_requests: 5,
            },
            watch: crate::config::WatchPolicy::default(),
        },
    }
}

/// The same destination without and with an `event_map`.
pub fn dests() -> Vec<Destination> {
    vec![
        dest(Platform::Meta, &[]),
        dest(
            Platform::Meta,
            &[("Purchase", "Buy\u{e9}"), ("Lead", "Sign \"Up\"\n")],
        ),
    ]
}

pub fn events() -> Vec<NormalizedEvent> {
    let h = |b: u8| {
        let mut a = [0u8; 32];
        for (i, x) in a.iter_mut().enumerate() {
            *x = b.wrapping_mul(31).wrapping_add(i as u8 * 7);
        }
        a
    };
    let base = NormalizedEvent {
        event_id: "ord-1".into(),
        event_name: "Purchase".into(),
        event_time: 1_793_620_800,
        action_source: None,
        event_source_url: None,
        hashed: vec![],
        clear: vec![],
        plaintext: vec![],
        custom_data: vec![],
        destinations: vec![],
    };
    let cd = |v: serde_json::Value| serde_json::to_vec(&v).unwrap();
    let mut out = vec![];
    // Every identifier, every field.
    out.push(NormalizedEvent {
        event_id: "ord-\"2\"\\\u{1}\u{7f}\u{2028}é😀".into(),
        action_source: Some("app\t".into()),
        event_source_url: Some("https://shop.example/p?a=1&b=\"2\"".into()),
        hashed: Variant::ALL
            .iter()
            .enumerate()
            .map(|(i, v)| (*v, h(i as u8)))
            .collect(),
        clear: ClearField::ALL
            .iter()
            .map(|f| (*f, format!("{}\u{0}\"v", f.name())))
            .collect(),
        plaintext: vec![
            (PlainField::Email, "a@b.example".into()),
            (PlainField::PhoneE164, "+15551234567".into()),
        ],
        custom_data: cd(json!({
            "value": 12.5, "currency": "EUR", "nested": {"z": [1, -2, 3.25e-7, null, true],
            "a": "\u{0}\u{1f}\"\\/é"}, "big": u64::MAX, "neg": i64::MIN, "f": 1e300
        })),
        ..base.clone()
    });
    // A few identifiers, numeric-string value, duplicate and empty clear fields.
    out.push(NormalizedEvent {
        event_id: "lead-9".into(),
        event_name: "Lead".into(),
        event_time: -5,
        action_source: Some("website".into()),
        hashed: vec![(Variant::Email, h(9)), (Variant::ExternalId, h(10))],
        clear: vec![
            (ClearField::ClientIpAddress, "203.0.113.9".into()),
            (ClearField::ClientIpAddress, "198.51.100.1".into()),
            (ClearField::Fbp, String::new()),
            (ClearField::Ttclid, "tt".into()),
        ],
        plaintext: vec![(PlainField::PhoneE164, "+4470000000".into())],
        custom_data: cd(json!({"value": " 7.10 ", "currency": 5})),
        ..base.clone()
    });
    // Non-numeric value string, integer value.
    out.push(NormalizedEvent {
        event_id: "x-1".into(),
        event_name: "AddToCart".into(),
        hashed: vec![(Variant::PhoneE164, h(3)), (Variant::Zip, h(4))],
        plaintext: vec![(PlainField::Email, "c@d.example".into())],
        custom_data: cd(json!({"value": "twelve", "currency": "USD"})),
        ..base.clone()
    });
    out.push(NormalizedEvent {
        event_id: "x-2".into(),
        custom_data: cd(json!({"value": 40, "currency": null, "items": []})),
        ..base.clone()
    });
    // custom_data that is no object, empty, or unreadable.
    out.push(NormalizedEvent {
        event_id: "x-3".into(),
        custom_data: cd(json!([1, 2])),
        ..base.clone()
    });
    out.push(NormalizedEvent {
        event_id: "x-4".into(),
        custom_data: cd(json!({})),
        ..base.clone()
    });
    out.push(NormalizedEvent {
        event_id: "x-5".into(),
        event_name: "Custom Thing".into(),
        custom_data: b"{not json".to_vec(),
        ..base.clone()
    });
    out.push(NormalizedEvent {
        event_id: "x-6".into(),
        custom_data: cd(json!({"value": f64::MAX, "currency": "\u{1}", "v2": 0.1})),
        ..base
    });
    out
}
