//! The relay: the least any durable webhook relay does per event, run as the ceiling of
//! `sustained`'s end-to-end figure on this box (the `relay` scenario).
//!
//! It takes `POST /v1/events` (one event per request, the same wrk load as `sustained`),
//! hands the body to the group-fsync writer ([`GroupFsync`]: one append and one
//! fdatasync for everything queued) and answers 202 with `accepted` 1 once the body is
//! synced; every synced body, answered or not (its client may have gone meanwhile), is
//! then forwarded as it came to the receiver with one `POST` per event, at most
//! `SLUICE_BENCH_HOOK_CONC` (64) in flight, through one reqwest client (HTTP/1.1,
//! kept-alive connections, as the daemon's). The only thing it reads from the body is the
//! `event_id`, for the `webhook-id` header the receiver counts by.
//!
//! What it leaves out, and a real relay cannot: parsing and validating the event,
//! hashing identifiers, deduplication, a durable record of what was delivered, signing,
//! retries, pacing, anything it would need after a restart. So no daemon that does the
//! work of a durable relay delivers more events per second end to end on the same box
//! under the same load; `sustained`'s end to end ÷ this one is how close sluice comes.
//!
//! Its threads are laid out as the daemon's: HTTP on a runtime of its own (`sluice-relay-http`,
//! a worker per CPU at the daemon's HTTP nice value, `SLUICE_BENCH_HTTP_NICE`),
//! forwarding on another (`sluice-relay`, a worker per CPU, nice 0), the fsync writer on
//! a thread (`sluice-writer-relay`). So the CPU rows count them where they count the
//! daemon's own, and wrk competes with both alike.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

use super::Settings;
use super::support::{
    self,
    fsync::{self, FsyncStats, GroupFsync},
    serve::{self, Served},
};

/// What the relay counted.
#[derive(Default)]
struct Counts {
    /// Bodies synced and answered 202.
    stored: AtomicU64,
    /// Bodies the receiver answered 2xx.
    forwarded: AtomicU64,
    /// Bodies whose forwarding failed (a send error or a non-2xx answer; not retried).
    failed: AtomicU64,
}

#[derive(Clone)]
struct Accept {
    jobs: fsync::Jobs,
    forward: tokio::sync::mpsc::UnboundedSender<Bytes>,
    counts: Arc<Counts>,
}

const REPLY: &str = r#"{"accepted":1,"duplicates":0,"rejected":[]}"#;

async fn accept(State(st): State<Accept>, body: Bytes) -> axum::response::Response {
    // Store and queue in a task of its own: a handler is dropped when its client goes,
    // and a body synced by then must still be counted and forwarded.
    let stored = tokio::spawn(async move {
        let ok = fsync::append(&st.jobs, body.clone()).await;
        if ok {
            st.counts.stored.fetch_add(1, Ordering::Relaxed);
            let _ = st.forward.send(body);
        }
        ok
    });
    if stored.await.ok() != Some(true) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    (
        StatusCode::ACCEPTED,
        [(header::CONTENT_TYPE, "application/json")],
        REPLY,
    )
        .into_response()
}

/// The body's `event_id` (the first `"event_id":"…"`), or `-`.
fn event_id(body: &[u8]) -> &str {
    const KEY: &[u8] = br#""event_id":""#;
    let Some(at) = body.windows(KEY.len()).position(|w| w == KEY) else {
        return "-";
    };
    let rest = &body[at + KEY.len()..];
    let end = rest.iter().position(|b| *b == b'"').unwrap_or(0);
    std::str::from_utf8(&rest[..end]).unwrap_or("-")
}

/// Sends each queued body to `url`, at most `conc` at a time.
async fn forward(
    mut queue: tokio::sync::mpsc::UnboundedReceiver<Bytes>,
    url: String,
    conc: usize,
    counts: Arc<Counts>,
) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(conc)
        .build()
        .expect("the relay's HTTP client");
    let url: Arc<str> = url.into();
    let slots = Arc::new(tokio::sync::Semaphore::new(conc));
    while let Some(body) = queue.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (client, url, counts) = (client.clone(), url.clone(), counts.clone());
        tokio::spawn(async move {
            let id = format!("Purchase:{}", event_id(&body));
            let sent = client
                .post(&*url)
                .header(header::CONTENT_TYPE, "application/json")
                .header("webhook-id", id)
                .body(body)
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => &counts.forwarded,
                _ => &counts.failed,
            }
            .fetch_add(1, Ordering::Relaxed);
            drop(slot);
        });
    }
}

/// The relay, listening on loopback.
pub(super) struct Relay {
    served: Served,
    forward_rt: tokio::runtime::Runtime,
    writer: GroupFsync,
    counts: Arc<Counts>,
    _dir: tempfile::TempDir,
}

impl Relay {
    /// Starts the relay forwarding to `url` (its file in a temp dir under
    /// `SLUICE_BENCH_DIR`, like the daemon's store).
    pub(super) fn start(s: &Settings, url: &str) -> Relay {
        let dir = s.tempdir();
        let writer = GroupFsync::start(&dir.path().join("relay.log"), "sluice-writer-relay");
        let threads = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        let forward_rt = serve::runtime_with("sluice-relay", threads, None);
        let counts = Arc::new(Counts::default());
        let (tx, queue) = tokio::sync::mpsc::unbounded_channel();
        forward_rt.spawn(forward(queue, url.to_string(), s.hook_conc, counts.clone()));
        let router = axum::Router::new()
            .route("/v1/events", axum::routing::post(accept))
            .with_state(Accept {
                jobs: writer.jobs(),
                forward: tx,
                counts: counts.clone(),
            });
        let rt = serve::runtime_with("sluice-relay-http", threads, Some(support::http_nice()));
        Relay {
            served: Served::start(rt, router, "the relay"),
            forward_rt,
            writer,
            counts,
            _dir: dir,
        }
    }

    pub(super) fn addr(&self) -> SocketAddr {
        self.served.addr
    }

    /// Events stored (synced and answered 202) so far.
    pub(super) fn head(&self) -> u64 {
        self.counts.stored.load(Ordering::Relaxed)
    }

    /// Waits until every stored event was forwarded or failed; the stored count then.
    pub(super) fn wait_drained(&self, s: &Settings) -> Result<u64, String> {
        // As the daemon's wait: a request in flight when the load stopped may still be
        // stored.
        std::thread::sleep(Duration::from_millis(300));
        let t0 = Instant::now();
        loop {
            let stored = self.head();
            let done = self.counts.forwarded.load(Ordering::Relaxed)
                + self.counts.failed.load(Ordering::Relaxed);
            if done >= stored && self.head() == stored {
                return Ok(stored);
            }
            if t0.elapsed() > s.timeout {
                return Err(format!(
                    "timed out after {:?}: {done} of {stored} forwarded",
                    s.timeout
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Forwards that failed so far (the receiver answers 200 to every one: a failure
    /// is a defect of the rig).
    pub(super) fn failed(&self) -> u64 {
        self.counts.failed.load(Ordering::Relaxed)
    }

    /// Stops the server, then the writer; the writer's counts and the file's size.
    pub(super) fn stop(self) -> (FsyncStats, u64) {
        self.served.stop();
        self.forward_rt.shutdown_timeout(Duration::from_secs(1));
        self.writer.stop()
    }
}
