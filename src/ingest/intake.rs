//! Acceptance of validated events: dedup, ingress limits, monthly caps, and the hand-off
//! to the group-commit writer.
//!
//! Committed digests live in the store's dedup index ([`crate::store::dedup`]): exact,
//! on disk with in-memory filters, shared by every workspace. Per workspace, one mutex
//! guards the keys *pending* (reserved by a request whose commit has not returned),
//! the token bucket and the month's counters. A request looks its keys up and reserves
//! the new ones under that lock, commits outside it, and the writer moves them into the
//! index before the reservation is released (or drops them if the commit failed). A
//! concurrent request that meets a key pending for someone else waits for that
//! commit's outcome before deciding, so of concurrent requests carrying the same key
//! exactly one accepts it, and no request is ever told "duplicate" about an event that
//! then failed to commit.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::watch;

use crate::clock::{SharedClock, utc_month};
use crate::config::WorkspaceLimits;
use crate::event::{EventError, PlainField};
use crate::ingest::body::RawEvent;
use crate::ingest::validate::{ValidateCtx, event_id_of, validate};
use crate::store::backlog::EventMeta;
use crate::store::codec::{StoredEvent, encode_event_into, pii_aad};
use crate::store::dedup::{DedupIndex, DigestMap, Seen};
use crate::store::log::ChunkBuilder;
use crate::store::{IngestBatch, Recovered, Store, StoreError, dedup_digest};

struct Bucket {
    tokens: f64,
    last_ms: i64,
}

struct WsInner {
    /// Keys reserved by in-flight requests; the receiver turns true when settled.
    pending: DigestMap<watch::Receiver<bool>>,
    bucket: Bucket,
    /// Committed accepted events per month (yyyymm).
    monthly: HashMap<u32, u64>,
    /// Reserved, not yet committed, per month.
    monthly_pending: HashMap<u32, u64>,
}

impl WsInner {
    fn new() -> Self {
        Self {
            pending: DigestMap::default(),
            bucket: Bucket {
                tokens: f64::NAN,
                last_ms: 0,
            },
            monthly: HashMap::new(),
            monthly_pending: HashMap::new(),
        }
    }

    /// Refills and returns the tokens now available; NaN-initialized buckets start full.
    fn refill(&mut self, limits: &WorkspaceLimits, now_ms: i64) -> f64 {
        let burst = limits.burst as f64;
        if self.bucket.tokens.is_nan() {
            self.bucket.tokens = burst;
        } else {
            let dt = (now_ms - self.bucket.last_ms).max(0) as f64 / 1000.0;
            self.bucket.tokens = (self.bucket.tokens + dt * limits.rate as f64).min(burst);
        }
        self.bucket.last_ms = now_ms;
        self.bucket.tokens
    }
}

/// The per-workspace acceptance state, shared with the store's reopen callback.
#[derive(Default)]
pub struct Ledger {
    states: RwLock<HashMap<Arc<str>, Arc<Mutex<WsInner>>>>,
}

impl Ledger {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn state(&self, ws: &str) -> Arc<Mutex<WsInner>> {
        if let Some(s) = self.states.read().expect("ledger lock").get(ws) {
            return s.clone();
        }
        let mut w = self.states.write().expect("ledger lock");
        w.entry(Arc::from(ws))
            .or_insert_with(|| Arc::new(Mutex::new(WsInner::new())))
            .clone()
    }

    /// Takes the persisted monthly counts after a (re)open (the truth for committed
    /// events).
    pub fn recover(&self, rec: Recovered) {
        for (ws, month, n) in rec.monthly {
            let st = self.state(&ws);
            st.lock().expect("workspace lock").monthly.insert(month, n);
        }
    }
}

/// What intake needs to know of one workspace; rebuilt on every reload.
#[derive(Debug, Clone)]
pub struct WorkspaceRules {
    pub id: Arc<str>,
    pub limits: WorkspaceLimits,
    pub destination_ids: Vec<String>,
    /// A destination of this workspace needs plaintext email/phone (Klaviyo).
    pub keep_plaintext: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub index: usize,
    pub event_id: Option<String>,
    pub error: &'static str,
    pub message: String,
}

#[derive(Debug)]
pub enum Outcome {
    /// At least one event accepted, or every valid event a duplicate.
    Accepted {
        accepted: usize,
        duplicates: usize,
        rejected: Vec<Rejected>,
    },
    /// Nothing accepted and nothing duplicate.
    AllRejected(Vec<Rejected>),
    RateLimited {
        retry_after_secs: u64,
    },
    Unavailable(String),
}

pub struct Intake {
    pub clock: SharedClock,
    pub store: Store,
    pub ledger: Arc<Ledger>,
    /// The committed keys of the dedup window (kept by the store's writer).
    pub dedup: Arc<DedupIndex>,
    pub pii_key: Option<[u8; 32]>,
    /// Told the workspace after each successful commit (wakes its delivery workers).
    pub on_commit: Arc<dyn Fn(&str) + Send + Sync>,
}

/// One reservation made under the workspace lock.
struct Reserved {
    digest: u128,
    index: usize,
}

impl Intake {
    /// Validates, deduplicates, limits and durably stores one request's events.
    pub async fn ingest(
        &self,
        rules: &WorkspaceRules,
        default_country_code: &str,
        dedup_window_ms: i64,
        events: &[RawEvent<'_>],
    ) -> Outcome {
        let now_ms = self.clock.now_ms();
        let ctx = ValidateCtx {
            now_secs: now_ms.div_euclid(1000),
            default_country_code,
            destination_ids: &rules.destination_ids,
            keep_plaintext: rules.keep_plaintext && self.pii_key.is_some(),
        };
        let mut rejected = Vec::new();
        let mut valid = Vec::with_capacity(events.len());
        for (index, v) in events.iter().enumerate() {
            // A key given twice: which one the sender meant is unknown.
            if let Some(key) = v.duplicates.first() {
                rejected.push(Rejected {
                    index,
                    event_id: event_id_of(v),
                    error: crate::ingest::validate::INVALID_FIELD,
                    message: format!("the key {key} appears more than once in the event"),
                });
                continue;
            }
            match validate(v, &ctx) {
                Ok(e) => {
                    let digest = dedup_digest(&rules.id, &e.event_name, &e.event_id);
                    valid.push((index, digest, e));
                }
                Err(EventError { code, message }) => rejected.push(Rejected {
                    index,
                    event_id: event_id_of(v),
                    error: code,
                    message,
                }),
            }
        }

        let state = self.ledger.state(&rules.id);
        let month = utc_month(now_ms);
        let (tx, rx) = watch::channel(false);
        let mut duplicates = 0;
        let mut reserved: Vec<Reserved> = Vec::new();
        let digests: Vec<u128> = valid.iter().map(|v| v.1).collect();
        let cutoff = now_ms - dedup_window_ms;
        // The published runs first, outside the workspace lock: their filters' probes
        // and the disk checks of a "maybe" are most of a look-up with a full window,
        // and held under the lock they kept this workspace's other requests waiting.
        let probe = self.dedup.probe_runs(&digests, cutoff);
        let runs = if probe.needs_disk() {
            // A check reads a page of the store, which the page cache may no longer
            // hold: it waits on a blocking thread, not on a worker that serves requests
            // (with a full store on a box whose page cache gave part of the file back,
            // the workers stalled on these reads).
            let store = self.store.clone();
            tokio::task::spawn_blocking(move || probe.check(|| store.view()))
                .await
                .unwrap_or_else(|e| Err(StoreError::Unavailable(format!("dedup check: {e}"))))
        } else {
            probe.check(|| self.store.view())
        };
        let runs = match runs {
            Ok(r) => r,
            Err(e) => return Outcome::Unavailable(e.to_string()),
        };
        loop {
            let waits = {
                let mut g = state.lock().expect("workspace lock");
                let waits: Vec<_> = digests
                    .iter()
                    .filter_map(|d| g.pending.get(d).cloned())
                    .collect();
                if waits.is_empty() {
                    // Committed keys: the rest of the look-up (the memtables and any
                    // run published since) answers under the workspace lock, so a
                    // commit of this workspace cannot slip between look-up and reserve.
                    let seen = match self
                        .dedup
                        .lookup_rest(&digests, cutoff, &runs, || self.store.view())
                    {
                        Ok(s) => s,
                        Err(e) => return Outcome::Unavailable(e.to_string()),
                    };
                    duplicates = 0;
                    let mut in_request = HashSet::with_capacity(valid.len());
                    let mut fresh = Vec::with_capacity(valid.len());
                    for ((index, d, _), seen) in valid.iter().zip(seen) {
                        if seen != Seen::No || !in_request.insert(*d) {
                            duplicates += 1;
                        } else {
                            fresh.push(Reserved {
                                digest: *d,
                                index: *index,
                            });
                        }
                    }
                    // Ingress limit: one token per valid, non-duplicate event.
                    let limited = rules.limits.rate > 0 && rules.limits.burst > 0;
                    if limited && !fresh.is_empty() {
                        let have = g.refill(&rules.limits, now_ms);
                        let need = fresh.len() as f64;
                        if have + 1e-9 < need {
                            let secs = ((need - have) / rules.limits.rate as f64).ceil();
                            return Outcome::RateLimited {
                                retry_after_secs: (secs as u64).max(1),
                            };
                        }
                        g.bucket.tokens = have - need;
                    }
                    // Monthly cap: events past it are rejected one by one.
                    if rules.limits.monthly_cap > 0 {
                        let used = g.monthly.get(&month).copied().unwrap_or(0)
                            + g.monthly_pending.get(&month).copied().unwrap_or(0);
                        let room = rules.limits.monthly_cap.saturating_sub(used) as usize;
                        if fresh.len() > room {
                            for r in fresh.drain(room..) {
                                let e = &valid.iter().find(|v| v.0 == r.index).expect("valid").2;
                                rejected.push(Rejected {
                                    index: r.index,
                                    event_id: Some(e.event_id.clone()),
                                    error: "monthly_cap_reached",
                                    message: format!(
                                        "workspace {} reached its monthly cap of {} events",
                                        rules.id, rules.limits.monthly_cap
                                    ),
                                });
                            }
                        }
                    }
                    for r in &fresh {
                        g.pending.insert(r.digest, rx.clone());
                    }
                    *g.monthly_pending.entry(month).or_default() += fresh.len() as u64;
                    reserved = fresh;
                    Vec::new()
                } else {
                    waits
                }
            };
            if waits.is_empty() {
                break;
            }
            for mut w in waits {
                let _ = w.wait_for(|settled| *settled).await;
            }
        }
        rejected.sort_by_key(|r| r.index);

        if reserved.is_empty() {
            return if duplicates == 0 {
                Outcome::AllRejected(rejected)
            } else {
                Outcome::Accepted {
                    accepted: 0,
                    duplicates,
                    rejected,
                }
            };
        }

        // Encode (and seal plaintext) outside the lock.
        let mut chunk = ChunkBuilder::new(reserved.len());
        let mut metas = Vec::with_capacity(reserved.len());
        let mut vi = valid.into_iter();
        for r in &reserved {
            let e = loop {
                let (i, _, e) = vi.next().expect("reserved event is among the valid ones");
                if i == r.index {
                    break e;
                }
            };
            metas.push(self.encode(&rules.id, now_ms, e, &mut chunk));
        }
        let accepted = reserved.len();
        let digests: Vec<u128> = reserved.iter().map(|r| r.digest).collect();
        let limits = rules.limits.clone();
        let (on_commit, ws) = (self.on_commit.clone(), rules.id.clone());
        // Settlement runs on the writer thread right after the commit (and after the
        // writer put the keys in the index), so a client hanging up cannot leave keys
        // reserved forever.
        let settle = Box::new(move |ok: bool| {
            {
                let mut g = state.lock().expect("workspace lock");
                if let Some(p) = g.monthly_pending.get_mut(&month) {
                    *p = p.saturating_sub(reserved.len() as u64);
                }
                if ok {
                    *g.monthly.entry(month).or_default() += reserved.len() as u64;
                } else if limits.rate > 0 && limits.burst > 0 {
                    g.bucket.tokens =
                        (g.bucket.tokens + reserved.len() as f64).min(limits.burst as f64);
                }
                for r in &reserved {
                    g.pending.remove(&r.digest);
                }
            }
            let _ = tx.send(true);
            // Delivery reads them from now on (an answer can come before: the ingest
            // journal answers first and applies a moment later).
            if ok {
                on_commit(&ws);
            }
        });
        let batch = IngestBatch {
            metas,
            workspace: rules.id.clone(),
            month,
            accepted_ms: now_ms,
            chunk: chunk.finish(),
            digests,
            on_done: Some(settle),
        };
        match self.store.ingest(batch).await {
            Ok(()) => Outcome::Accepted {
                accepted,
                duplicates,
                rejected,
            },
            Err(e) => Outcome::Unavailable(e.to_string()),
        }
    }

    /// Appends the stored bytes of an event (plaintext sealed) to `chunk`; returns what
    /// it contributes to its destinations' backlog summaries.
    fn encode(
        &self,
        ws: &str,
        now_ms: i64,
        mut e: crate::event::NormalizedEvent,
        chunk: &mut ChunkBuilder,
    ) -> EventMeta {
        let mut sealed = Vec::new();
        if let Some(key) = &self.pii_key {
            let aad = pii_aad(ws, &e.event_name, &e.event_id);
            for (field, text) in e.plaintext.drain(..) {
                let s: PlainField = field;
                sealed.push((
                    s,
                    serde_bytes::ByteBuf::from(crate::ingest::pii::seal(
                        key,
                        &aad,
                        text.as_bytes(),
                    )),
                ));
            }
        }
        e.plaintext.clear();
        let stored = StoredEvent {
            accepted_ms: now_ms,
            sealed,
            event: e,
        };
        chunk.push_with(|out| encode_event_into(&stored, out));
        let e = stored.event;
        EventMeta {
            name: e.event_name,
            destinations: e.destinations,
            event_time: e.event_time,
        }
    }
}
