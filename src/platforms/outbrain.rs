//! Outbrain (Amplify) server-to-server conversions: the `unifiedPixel` postback.
//!
//! platforms.md has no Outbrain section: these facts were gathered for this adapter.
//! Sources: Outbrain's help page "server-to-server integrations"
//! (<https://www.outbrain.com/help/advertisers/server2server-integrations/>; only its
//! Japanese copy <https://www.outbrain.com/help/jp/advertisers/jp_server2server-integrations/>
//! was readable here, which describes the flow: a unique click id per click, sent back
//! by the advertiser's server with a unique event name), Stape's `stape-io/outbrain-tag`
//! `template.js` (`GET https://tr.outbrain.com/unifiedPixel?ob_click_id=&name=&orderId=
//! &orderValue=&currency=`, success = any 2xx), and public connector code that quotes
//! the English page for `timestamp` and its two formats (secondary). No documented
//! "Conversions API" with authentication or batching was found (a "Teads Conversion
//! API" at `r.teads.tv/capi/event` appears only in a machine-generated third-party spec:
//! not used).
//!
//! - **Endpoint:** `GET https://tr.outbrain.com/unifiedPixel?ob_click_id=…&name=…
//!   &orderId=…&orderValue=…&currency=…&timestamp=…` (query values percent-encoded, no
//!   body). `endpoint` replaces scheme, host and port.
//! - **Auth and credentials:** none; the click id says whose conversion it is. The
//!   destination has no `credentials` (config rejects any).
//! - **Required params:** none (the marketer is identified by the click id).
//! - **Fields:** `ob_click_id` (required: the click id Outbrain appends to the landing
//!   page), `name` (required: the event-based conversion's name, case-sensitive),
//!   `orderId` (the `event_id`), `orderValue` / `currency` (from `custom_data.value` /
//!   `.currency`), `timestamp` (the event time as `yyyy-MM-dd HH:mm:ss`, UTC; the help
//!   page also allows `MM/dd/yyyy HH:mm:ss`).
//! - **Batch limit:** 1: one conversion per request.
//! - **Pacing:** no rate limit published: unpaced by default (scope `destination`);
//!   obey 429 and `Retry-After`.
//! - **Age limit:** unverified: 7 days.
//! - **Event names:** no default map: the canonical name is sent as is, and `event_map`
//!   maps it to the conversion name defined in Amplify. Every name is sendable.
//! - **Identifiers:** only the click id: `user_data.ob_click_id` (a clear field, sent as
//!   given). [`Adapter::check`]: unsendable without it.
//!
//! Classification (row "all"; no platform refinement is documented): 2xx → delivered;
//! 429 → throttled with `Retry-After`; 401 → auth (never expected); 408, 5xx, 3xx →
//! retryable; other 4xx → rejected.
//!
//! **⚠ 2xx is not proof of attribution:** a pixel endpoint answers success for any
//! well-formed call; an unknown click id or a `name` that matches no conversion is not
//! reported (the conversion is just not counted). Nothing in the answer can be checked.
//!
//! Unverified: the success status and body (a pixel: the simulator answers 200 with an
//! empty body), error statuses and bodies, whether `timestamp` is read as UTC, any rate
//! limit, the oldest accepted conversion, and whether `orderId` deduplicates.

use super::{
    Adapter, HttpRequest, HttpResponse, OutEvent, Unsendable, Verdict, classify_status_all,
    clear_value, event_name_for, percent_encode, value_and_currency, with_endpoint,
};
use crate::config::{Destination, Platform};
use crate::event::{ClearField, NormalizedEvent};

pub struct Outbrain;

pub static OUTBRAIN: Outbrain = Outbrain;

pub const URL: &str = "https://tr.outbrain.com/unifiedPixel";

/// No default map: conversion names are the advertiser's own.
pub const DEFAULT_EVENT_MAP: [(&str, &str); 0] = [];

/// `yyyy-MM-dd HH:mm:ss`, UTC.
pub fn timestamp(secs: i64) -> String {
    let f = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&f).ok())
        .unwrap_or_else(|| "1970-01-01 00:00:00".into())
}

fn query(dest: &Destination, e: &NormalizedEvent) -> String {
    let (value, currency) = value_and_currency(e);
    let mut q = format!(
        "ob_click_id={}&name={}&orderId={}",
        percent_encode(clear_value(e, ClearField::ObClickId).unwrap_or("")),
        percent_encode(event_name_for(dest, &DEFAULT_EVENT_MAP, &e.event_name)),
        percent_encode(&e.event_id),
    );
    if let Some(v) = value {
        q.push_str("&orderValue=");
        q.push_str(&percent_encode(&v.to_string()));
    }
    if let Some(c) = currency {
        q.push_str("&currency=");
        q.push_str(&percent_encode(&c));
    }
    q.push_str("&timestamp=");
    q.push_str(&percent_encode(&timestamp(e.event_time)));
    q
}

impl Adapter for Outbrain {
    fn platform(&self) -> Platform {
        Platform::Outbrain
    }

    fn check(&self, _dest: &Destination, ev: &OutEvent<'_>) -> Result<(), Unsendable> {
        match clear_value(ev.event, ClearField::ObClickId) {
            Some(_) => Ok(()),
            None => Err(Unsendable(
                "outbrain needs the Outbrain click id (user_data.ob_click_id)".into(),
            )),
        }
    }

    /// One conversion per request (the policy's `max_batch` is 1): only the first
    /// event is sent.
    fn build(&self, dest: &Destination, events: &[OutEvent<'_>], _now_ms: i64) -> HttpRequest {
        debug_assert!(
            events.len() <= 1,
            "outbrain sends one conversion per request"
        );
        let mut url = with_endpoint(URL, dest.endpoint.as_deref());
        if let Some(ev) = events.first() {
            url.push('?');
            url.push_str(&query(dest, ev.event));
        }
        HttpRequest {
            method: "GET",
            url,
            headers: Vec::new(),
            body: Vec::new(),
            secrets: Vec::new(),
        }
    }

    fn classify(&self, _dest: &Destination, _n: usize, resp: &HttpResponse) -> Verdict {
        Verdict::Whole(classify_status_all(resp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platforms::testkit::{dests, events};

    #[test]
    fn one_query_per_event() {
        for dest in dests() {
            for e in events() {
                let out = OutEvent {
                    event: &e,
                    merchant_id: "m",
                    accepted_ms: 0,
                };
                let req = OUTBRAIN.build(&dest, &[out], 0);
                assert_eq!(req.method, "GET");
                let (_, q) = req.url.split_once('?').unwrap();
                assert!(q.contains(&format!("orderId={}", percent_encode(&e.event_id))));
                assert!(q.ends_with(&percent_encode(&timestamp(e.event_time))));
            }
        }
        assert_eq!(timestamp(1_793_620_740), "2026-11-02 11:59:00");
    }
}
