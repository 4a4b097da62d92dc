//! Taboola (Realize) server-to-server conversions, bulk endpoint.
//!
//! platforms.md has no Taboola section: these facts were gathered for this adapter.
//! Sources: Taboola's "Bulk submit S2S conversions"
//! (<https://developers.taboola.com/pixel/docs/bulk-submit-s2s-conversions>), "The S2S
//! postback URL" (<https://developers.taboola.com/pixel/docs/the-postback-url>) and
//! "Postback URL Error Codes"
//! (<https://developers.taboola.com/pixel/docs/postback-url-error-codes>); Stape's
//! `stape-io/taboola-tag` `template.js` (the `tblci` landing-page parameter); public
//! client code posting to the bulk endpoint (`{"actions":[…]}`, 204 on success).
//!
//! - **Endpoint:** `POST https://trc.taboola.com/{account_id}/log/3/bulk-s2s-action`,
//!   `content-type: application/json`. `endpoint` replaces scheme, host and port.
//! - **Auth and credentials:** none ("No authentication is passed"). The destination has
//!   no `credentials` (config rejects any); the request carries no secret.
//! - **Required params:** `account_id`, the numeric Taboola account id (a network
//!   account may be given: its body then holds conversions of its sub-accounts).
//! - **Body:** `{"actions":[{"click-id","currency"?,"name","orderid","quantity"?,
//!   "revenue"?,"timestamp"}]}`: `click-id` is the Taboola click id (`tblci`, required,
//!   case-sensitive, ≥ 66 characters per the postback page, "approx 120" per an older
//!   copy), `timestamp` the event time in **milliseconds**, `name` the event name as
//!   defined in Realize (case-sensitive), `revenue` / `currency` from `custom_data.value`
//!   / `.currency`, `quantity` from `custom_data.num_items` (a non-negative integer),
//!   `orderid` the `event_id`.
//! - **Batch limit:** 1,000 actions per request (an older copy of the bulk page: "Limit
//!   each JSON object to 1,000 conversions"; the current copy states no limit).
//! - **Pacing:** no rate limit published: unpaced by default (scope `destination`);
//!   obey 429 and `Retry-After` if ever sent.
//! - **Age limit:** unverified (none published): 7 days, as for other unverified
//!   platforms.
//! - **Event names:** no default map: the canonical name is sent as is, and `event_map`
//!   maps it to the Realize event name (which the advertiser defines). Every name is
//!   sendable.
//! - **Identifiers:** only the click id: `user_data.tblci` (a clear field, sent as
//!   given). No hashed identifier, IP or user agent is accepted by this endpoint.
//!   [`Adapter::check`]: unsendable without `tblci` (Taboola could not attribute it).
//!
//! Classification (row "all"; no platform refinement is documented): 2xx → delivered
//! (Taboola answers 204); 429 → throttled with `Retry-After`; 401 → auth (never expected:
//! nothing is authenticated); 408, 5xx, 3xx → retryable; other 4xx → rejected whole.
//!
//! **⚠ 2xx is not proof of attribution:** Taboola's error-codes page says the 400
//! validations of the postback URL (missing or unparsable `click-id`, missing `name`) are
//! **not performed for bulk submissions**: a bulk request with a bad click id or an
//! unknown event name is answered 204 and silently not counted. Nothing in the answer
//! names rows, so no per-row verdict is possible; `check` refuses what can be refused
//! before sending (no click id).
//!
//! Unverified: the bulk endpoint's success status (204 per public client code; the docs
//! give 204 for the postback URL), its error bodies (none documented: the simulator
//! answers JSON `{"message"}`), any rate limit, the oldest accepted `timestamp`, and
//! whether `orderid` deduplicates (sent as the `event_id` so it can).

use super::{
    Adapter, HttpRequest, HttpResponse, JsonObject, OutEvent, Unsendable, Verdict, batch_body,
    classify_status_all, clear_value, custom_data_json, event_name_for, json_post_bytes,
    percent_encode, value_and_currency, with_endpoint, write_json,
};
use crate::config::{Destination, Platform};
use crate::event::{ClearField, NormalizedEvent};

pub struct Taboola;

pub static TABOOLA: Taboola = Taboola;

pub const HOST: &str = "https://trc.taboola.com/";
pub const PATH_SUFFIX: &str = "/log/3/bulk-s2s-action";

/// No default map: Realize event names are the advertiser's own.
pub const DEFAULT_EVENT_MAP: [(&str, &str); 0] = [];

/// `custom_data.num_items` when a non-negative integer.
fn quantity(e: &NormalizedEvent) -> Option<u64> {
    custom_data_json(e)?.get("num_items")?.as_u64()
}

/// Appends one action (keys sorted).
fn write_action(out: &mut Vec<u8>, dest: &Destination, e: &NormalizedEvent) {
    let (value, currency) = value_and_currency(e);
    let mut o = JsonObject::begin(out);
    o.str("click-id", clear_value(e, ClearField::Tblci).unwrap_or(""));
    if let Some(c) = &currency {
        o.str("currency", c);
    }
    o.str(
        "name",
        event_name_for(dest, &DEFAULT_EVENT_MAP, &e.event_name),
    );
    o.str("orderid", &e.event_id);
    if let Some(q) = quantity(e) {
        write_json(o.key("quantity"), &q);
    }
    if let Some(v) = &value {
        write_json(o.key("revenue"), v);
    }
    o.i64("timestamp", e.event_time.saturating_mul(1000));
    o.end();
}

impl Adapter for Taboola {
    fn platform(&self) -> Platform {
        Platform::Taboola
    }

    fn check(&self, _dest: &Destination, ev: &OutEvent<'_>) -> Result<(), Unsendable> {
        match clear_value(ev.event, ClearField::Tblci) {
            Some(_) => Ok(()),
            None => Err(Unsendable(
                "taboola needs the Taboola click id (user_data.tblci)".into(),
            )),
        }
    }

    fn build(&self, dest: &Destination, events: &[OutEvent<'_>], _now_ms: i64) -> HttpRequest {
        let account = dest.params.get("account_id").map_or("", String::as_str);
        let body = batch_body(b"{\"actions\":[", b"]}", events, |body, ev| {
            write_action(body, dest, ev.event);
        });
        let url = format!("{HOST}{}{PATH_SUFFIX}", percent_encode(account));
        json_post_bytes(
            with_endpoint(&url, dest.endpoint.as_deref()),
            "application/json",
            Vec::new(),
            body,
            Vec::new(),
        )
    }

    fn classify(&self, _dest: &Destination, _n: usize, resp: &HttpResponse) -> Verdict {
        Verdict::Whole(classify_status_all(resp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platforms::testkit::{dests, events, outs};
    use serde_json::Value;

    #[test]
    fn bodies_are_json_with_every_event() {
        for dest in dests() {
            let evs = events();
            let outs = outs(&evs);
            let req = TABOOLA.build(&dest, &outs, 0);
            assert!(req.secrets.is_empty());
            let v: Value = serde_json::from_slice(&req.body).unwrap();
            let got = v["actions"].as_array().unwrap();
            assert_eq!(got.len(), outs.len());
            for (g, e) in got.iter().zip(&evs) {
                assert_eq!(g["orderid"], e.event_id.as_str());
                assert_eq!(g["timestamp"], e.event_time * 1000);
                assert!(g["name"].is_string() && g["click-id"].is_string());
            }
        }
    }
}
