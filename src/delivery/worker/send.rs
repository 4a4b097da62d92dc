//! Sending: one request through the platform adapter, bounded by the destination's
//! timeout on the injected clock. OAuth destinations (Google Ads, Microsoft Ads) send
//! with a current access token and refresh it once after a 401 to a cached one.
//! [`one_off`] is the same request for an event outside any worker (a test send).

use std::sync::Arc;

use tokio::sync::mpsc;

use super::Item;
use crate::delivery::{DestCtx, Engine};
use crate::event::PlainField;
use crate::platforms::{Class, HttpResponse, OutEvent, Verdict, oauth, redact};

/// What one request came to.
pub(in crate::delivery) struct Attempt {
    pub verdict: Verdict,
    /// The platform's answer, when there was one.
    pub response: Option<HttpResponse>,
    /// Why there was no answer (already redacted).
    pub error: Option<String>,
    /// The strings to redact from anything kept of the answer.
    pub secrets: Vec<String>,
    /// The request could not be built from these events (nothing was sent): why.
    pub unbuildable: Option<String>,
}

/// An answered request, back to the worker.
pub(super) struct Sent {
    pub items: Vec<Item>,
    pub attempt: Attempt,
    pub at_ms: i64,
    pub latency_ms: i64,
}

/// The adapter's view of a batch.
fn outs<'a>(items: &'a [Item], ws: &'a str) -> Vec<OutEvent<'a>> {
    items
        .iter()
        .map(|i| OutEvent {
            event: &i.stored.event,
            merchant_id: ws,
            accepted_ms: i.stored.accepted_ms,
        })
        .collect()
}

/// One request carrying `event` alone, sent as a worker sends (build, OAuth, timeout,
/// classification) but settled by no one: nothing is committed, counted or retried.
/// With `ctx.mark_test` the request is marked as a test.
pub(in crate::delivery) async fn one_off(
    engine: &Engine,
    ctx: &DestCtx,
    event: crate::store::codec::StoredEvent,
) -> Attempt {
    let now = engine.clock.now_ms();
    let item = Item::new(0, event, Vec::new(), None);
    send_with_token(engine, ctx, &ctx.dest.workspace, &[item], now).await
}

/// Sends one batch and hands the answer back to the worker.
pub(super) async fn send(
    engine: Arc<Engine>,
    ctx: Arc<DestCtx>,
    ws: String,
    items: Vec<Item>,
    tx: mpsc::UnboundedSender<Sent>,
) {
    let now = engine.clock.now_ms();
    let attempt = send_with_token(&engine, &ctx, &ws, &items, now).await;
    let at_ms = engine.clock.now_ms();
    let _ = tx.send(Sent {
        items,
        attempt,
        latency_ms: at_ms - now,
        at_ms,
    });
}

/// OAuth (Google Ads, Microsoft Ads): sends with a current access token; a 401 to a
/// cached one refreshes it once and sends again; a failed refresh is the attempt's
/// outcome (platforms::oauth). Other destinations send as configured.
async fn send_with_token(
    engine: &Engine,
    ctx: &DestCtx,
    ws: &str,
    items: &[Item],
    now: i64,
) -> Attempt {
    let Some(cfg) = oauth::refresh_config(&ctx.dest) else {
        return attempt(engine, ctx, &ctx.dest, ws, items, now).await;
    };
    let timeout = ctx.dest.policy.timeout.as_millis() as i64;
    let mut stale: Option<String> = None;
    loop {
        let t = match engine
            .oauth
            .token(
                &engine.http,
                &*engine.clock,
                &ctx.dest.id,
                &cfg,
                stale.as_deref(),
                timeout,
            )
            .await
        {
            Ok(t) => t,
            Err(e) => {
                return Attempt {
                    verdict: Verdict::Whole(e.class),
                    response: None,
                    error: Some(e.message),
                    secrets: cfg.secrets(),
                    unbuildable: None,
                };
            }
        };
        let dest = oauth::with_access_token(&ctx.dest, &t.access_token);
        let mut r = attempt(engine, ctx, &dest, ws, items, now).await;
        if !t.fresh && stale.is_none() && r.verdict == Verdict::Whole(Class::Auth) {
            stale = Some(t.access_token);
            continue;
        }
        r.secrets.extend(cfg.secrets());
        return r;
    }
}

async fn attempt(
    engine: &Engine,
    ctx: &DestCtx,
    dest: &crate::config::Destination,
    ws: &str,
    items: &[Item],
    now: i64,
) -> Attempt {
    let mut req = ctx.adapter.build(dest, &outs(items, ws), now);
    if ctx.mark_test {
        ctx.adapter.mark_test(dest, &mut req);
    }
    let mut secrets = req.secrets.clone();
    for i in items {
        for (f, text) in &i.stored.event.plaintext {
            secrets.push(text.clone());
            if *f == PlainField::PhoneE164 {
                secrets.push(text.trim_start_matches('+').to_string());
            }
        }
    }
    if let Err(why) = crate::platforms::buildable(&req) {
        return Attempt {
            verdict: Verdict::Whole(Class::Rejected),
            response: None,
            error: Some(why.clone()),
            secrets,
            unbuildable: Some(why),
        };
    }
    let timeout = ctx.dest.policy.timeout.as_millis() as i64;
    let result = tokio::select! {
        r = crate::platforms::execute(&engine.http, req) => r,
        () = engine.clock.sleep_ms(timeout) => Err(format!("timed out after {timeout} ms")),
    };
    match result {
        Ok(resp) => Attempt {
            verdict: ctx.adapter.classify_events(dest, &outs(items, ws), &resp),
            response: Some(resp),
            error: None,
            secrets,
            unbuildable: None,
        },
        Err(e) => Attempt {
            verdict: Verdict::Whole(Class::Retryable),
            response: None,
            error: Some(redact(&e, &secrets)),
            secrets,
            unbuildable: None,
        },
    }
}
