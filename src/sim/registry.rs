//! The one place that knows which simulator serves which platform: the
//! [`PlatformSim`] trait each platform module implements once, [`sim_for`] that picks
//! it, and [`Ids`], where a platform's request bodies carry their event ids.

use serde_json::Value;

use super::{Fault, RateLimit, Reply, Req, Shared};
use super::{
    criteo, google_ads, klaviyo, linkedin, meta, microsoft_ads, outbrain, pinterest, reddit,
    snapchat, taboola, tiktok, webhook, x,
};
use crate::config::Platform;

/// One platform's simulator: everything [`super::handle`] asks of a platform. Each
/// platform module implements it once; [`sim_for`] is the one place that picks it.
pub(super) trait PlatformSim: Sync {
    /// Where its requests carry their dedup ids (what [`super::event_ids`] reads).
    fn ids(&self) -> Ids;

    /// Its own rate limits: the default of [`super::SimOptions::rate_limits`] (none
    /// unless it says so).
    fn limits(&self) -> Vec<RateLimit> {
        Vec::new()
    }

    /// Whether `path` is its OAuth token endpoint: not the API, so the script neither
    /// faults nor counts requests to it.
    fn is_token_path(&self, _path: &str) -> bool {
        false
    }

    /// The request's body as recorded and handed to [`PlatformSim::handle`]: the JSON
    /// it carries (`Null` when it is not JSON).
    fn body(&self, raw: &[u8], _query: Option<&str>) -> Value {
        json_body(raw)
    }

    /// Its answer to a scripted fault that the platform shapes (`Throttle`, `Auth`,
    /// `Transient`, `Invalid`, `Code`); [`super::handle`] answers the others alike for
    /// all. `body` is the request's (as [`PlatformSim::body`] gave it).
    fn fault(&self, f: &Fault, now_ms: i64, seq: u64, body: &Value) -> Reply;

    /// The test marker `body` carries, when the platform has a test mode (Meta and
    /// TikTok: `test_event_code`; Google Ads: `validateOnly: true`): recorded as
    /// [`super::Received::test_mark`]; such a request is never counted as accepted.
    fn test_mark(&self, _body: &Value) -> Option<String> {
        None
    }

    /// Its answer to a request that no fault replaced.
    fn handle(&self, s: &Shared, r: &Req) -> Reply;

    /// The response header that carries the platform's request id (Google Ads:
    /// `request-id`); None where the platform sends none.
    fn request_id_header(&self) -> Option<&'static str> {
        Some("x-request-id")
    }
}

/// The simulator of `p`: the only place that matches on the platform.
pub(super) fn sim_for(p: Platform) -> &'static dyn PlatformSim {
    match p {
        Platform::Webhook => &webhook::Webhook,
        Platform::Meta => &meta::Meta,
        Platform::Tiktok => &tiktok::Tiktok,
        Platform::Klaviyo => &klaviyo::Klaviyo,
        Platform::GoogleAds => &google_ads::GoogleAds,
        Platform::Linkedin => &linkedin::Linkedin,
        Platform::Pinterest => &pinterest::Pinterest,
        Platform::Snapchat => &snapchat::Snapchat,
        Platform::Reddit => &reddit::Reddit,
        Platform::X => &x::X,
        Platform::MicrosoftAds => &microsoft_ads::MicrosoftAds,
        Platform::Taboola => &taboola::Taboola,
        Platform::Outbrain => &outbrain::Outbrain,
        Platform::Criteo => &criteo::Criteo,
    }
}

/// A body as JSON (`Null` when it is not JSON).
pub(super) fn json_body(raw: &[u8]) -> Value {
    serde_json::from_slice(raw).unwrap_or(Value::Null)
}

/// Where a platform's request body carries its dedup ids (each a JSON string).
#[derive(Debug, Clone, Copy)]
pub(super) enum Ids {
    /// One event per request; its id under these keys, outermost first.
    One(&'static [&'static str]),
    /// The events of the array under `list`; each one's id under the keys `id`.
    Each {
        list: &'static str,
        id: &'static [&'static str],
    },
}

impl Ids {
    /// Calls `f` with each id `body` carries, in order, without copying them.
    pub(super) fn for_each<'a>(self, body: &'a Value, mut f: impl FnMut(&'a str)) {
        fn at<'a>(v: &'a Value, keys: &[&str]) -> Option<&'a str> {
            keys.iter().try_fold(v, |v, k| v.get(k))?.as_str()
        }
        match self {
            Ids::One(keys) => at(body, keys).into_iter().for_each(f),
            Ids::Each { list, id } => {
                if let Some(a) = body.get(list).and_then(Value::as_array) {
                    a.iter().filter_map(|e| at(e, id)).for_each(&mut f);
                }
            }
        }
    }

    /// How many ids `body` carries.
    pub(super) fn count(self, body: &Value) -> usize {
        let mut n = 0;
        self.for_each(body, |_| n += 1);
        n
    }

    /// A body carrying just these ids, where [`Ids::for_each`] finds them (`One`: the
    /// first, or `Null` when there is none).
    pub(super) fn body(self, ids: &[Box<str>]) -> Value {
        fn nest(keys: &[&str], id: &str) -> Value {
            keys.iter()
                .rev()
                .fold(Value::String(id.to_string()), |v, k| {
                    Value::Object(serde_json::Map::from_iter([(k.to_string(), v)]))
                })
        }
        match self {
            Ids::One(keys) => ids.first().map_or(Value::Null, |i| nest(keys, i)),
            Ids::Each { list, id } => {
                let events = ids.iter().map(|i| nest(id, i)).collect();
                Value::Object(serde_json::Map::from_iter([(
                    list.to_string(),
                    Value::Array(events),
                )]))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::event_ids;

    #[test]
    fn ids_bodies_read_back() {
        let ids: Vec<Box<str>> = vec!["a".into(), "b\"".into()];
        let mut ones = Vec::new();
        for p in Platform::ALL {
            match sim_for(p).ids() {
                Ids::Each { .. } => {
                    assert_eq!(event_ids(p, &sim_for(p).ids().body(&ids)), ["a", "b\""]);
                }
                Ids::One(_) => ones.push(p),
            }
        }
        // The platforms of one event per request.
        assert_eq!(
            ones,
            [Platform::Webhook, Platform::Klaviyo, Platform::Outbrain]
        );
        for p in ones {
            let one = sim_for(p).ids();
            assert_eq!(event_ids(p, &one.body(&ids[1..])), ["b\""]);
            assert_eq!(one.body(&[]), Value::Null);
        }
    }

    #[test]
    fn ids_where_the_platforms_carry_them() {
        for (p, body) in [
            (
                Platform::Meta,
                serde_json::json!({"data": [{"event_id": "a"}]}),
            ),
            (
                Platform::Tiktok,
                serde_json::json!({"data": [{"event_id": "a"}]}),
            ),
            (
                Platform::Pinterest,
                serde_json::json!({"data": [{"event_id": "a"}]}),
            ),
            (
                Platform::Snapchat,
                serde_json::json!({"data": [{"event_id": "a"}]}),
            ),
            (
                Platform::Reddit,
                serde_json::json!({"events": [{"event_metadata": {"conversion_id": "a"}}]}),
            ),
            (
                Platform::X,
                serde_json::json!({"conversions": [{"conversion_id": "a"}]}),
            ),
            (
                Platform::Linkedin,
                serde_json::json!({"elements": [{"eventId": "a"}]}),
            ),
            (
                Platform::GoogleAds,
                serde_json::json!({"conversions": [{"orderId": "a"}]}),
            ),
            (
                Platform::MicrosoftAds,
                serde_json::json!({"OfflineConversions": [{"MicrosoftClickId": "a"}]}),
            ),
            (
                Platform::Klaviyo,
                serde_json::json!({"data": {"attributes": {"unique_id": "a"}}}),
            ),
            (
                Platform::Taboola,
                serde_json::json!({"actions": [{"orderid": "a"}]}),
            ),
            (Platform::Outbrain, serde_json::json!({"orderId": "a"})),
            (
                Platform::Criteo,
                serde_json::json!({"events": [{"id": "a"}]}),
            ),
            (Platform::Webhook, serde_json::json!({"event_id": "a"})),
        ] {
            assert_eq!(event_ids(p, &body), ["a"], "{p:?}");
            assert_eq!(sim_for(p).ids().body(&["a".into()]), body, "{p:?}");
        }
    }
}
