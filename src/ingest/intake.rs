//! Acceptance of validated events: dedup, ingress limits, monthly caps, and the hand-off
//! to the group-commit writer.
//!
//! Per workspace, one mutex guards an exact in-memory index of the dedup window
//! (digest → accept time), the token bucket and the month's counters. A request reserves
//! its new keys as *pending* under that lock, commits outside it, and then marks them
//! committed (or drops them if the commit failed). A concurrent request that meets a key
//! pending for someone else waits for that commit's outcome before deciding, so of
//! concurrent requests carrying the same key exactly one accepts it, and no request is
//! ever told "duplicate" about an event that then failed to commit.
//!
//! The index is rebuilt from the store's time-ordered `dedup` table at every (re)open
//! ([`Ledger::recover`]), so it holds exactly what the file holds.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, RwLock};

use serde_json::Value;
use tokio::sync::watch;

use crate::clock::{SharedClock, utc_month};
use crate::config::WorkspaceLimits;
use crate::event::{EventError, PlainField};
use crate::ingest::validate::{ValidateCtx, event_id_of, validate_event};
use crate::store::codec::{StoredEvent, encode_event, pii_aad};
use crate::store::{IngestBatch, Recovered, Store, dedup_digest};

/// Digests are already uniform: hash them by their low 64 bits.
#[derive(Default)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u128(&mut self, n: u128) {
        self.0 = n as u64;
    }
}

type DigestMap<V> = HashMap<u128, V, BuildHasherDefault<DigestHasher>>;

const SHARDS: usize = 64;

/// The dedup index of a workspace, split in shards by the digest's top bits so that a
/// rehash (the map doubling as the window fills) moves 1/64 of it at a time instead of
/// stalling intake on one large copy.
struct Seen {
    shards: Vec<DigestMap<Slot>>,
}

impl Seen {
    fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| DigestMap::default()).collect(),
        }
    }

    fn shard(d: u128) -> usize {
        (d >> 122) as usize % SHARDS
    }

    fn get(&self, d: &u128) -> Option<&Slot> {
        self.shards[Self::shard(*d)].get(d)
    }

    fn insert(&mut self, d: u128, s: Slot) {
        self.shards[Self::shard(d)].insert(d, s);
    }

    fn remove(&mut self, d: &u128) {
        self.shards[Self::shard(*d)].remove(d);
    }
}

/// Committed keys in accept order, in fixed-size chunks so that growing never copies
/// the whole window.
#[derive(Default)]
struct Order {
    chunks: VecDeque<VecDeque<(i64, u128)>>,
}

impl Order {
    const CHUNK: usize = 4096;

    fn push_back(&mut self, x: (i64, u128)) {
        match self.chunks.back_mut() {
            Some(c) if c.len() < Self::CHUNK => c.push_back(x),
            _ => {
                let mut c = VecDeque::with_capacity(Self::CHUNK);
                c.push_back(x);
                self.chunks.push_back(c);
            }
        }
    }

    fn front(&self) -> Option<&(i64, u128)> {
        self.chunks.front().and_then(|c| c.front())
    }

    fn pop_front(&mut self) {
        if let Some(c) = self.chunks.front_mut() {
            c.pop_front();
            if c.is_empty() {
                self.chunks.pop_front();
            }
        }
    }
}

enum Slot {
    Committed(i64),
    /// Reserved by an in-flight request; the receiver turns true when it is settled.
    Pending(watch::Receiver<bool>),
}

struct Bucket {
    tokens: f64,
    last_ms: i64,
}

struct WsInner {
    seen: Seen,
    /// Committed keys in accept order, to expire the window.
    order: Order,
    bucket: Bucket,
    /// Committed accepted events per month (yyyymm).
    monthly: HashMap<u32, u64>,
    /// Reserved, not yet committed, per month.
    monthly_pending: HashMap<u32, u64>,
}

impl WsInner {
    fn new() -> Self {
        Self {
            seen: Seen::new(),
            order: Order::default(),
            bucket: Bucket {
                tokens: f64::NAN,
                last_ms: 0,
            },
            monthly: HashMap::new(),
            monthly_pending: HashMap::new(),
        }
    }

    fn expire(&mut self, cutoff_ms: i64) {
        while let Some(&(t, d)) = self.order.front() {
            if t > cutoff_ms {
                break;
            }
            self.order.pop_front();
            if matches!(self.seen.get(&d), Some(Slot::Committed(c)) if *c == t) {
                self.seen.remove(&d);
            }
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

    /// Merges what the store holds after a (re)open: committed dedup keys and the
    /// persisted monthly counts (which are the truth for committed events).
    pub fn recover(&self, rec: Recovered) {
        let mut by_ws: HashMap<String, Vec<(u128, i64)>> = HashMap::new();
        for (ws, d, ms) in rec.dedup {
            by_ws.entry(ws).or_default().push((d, ms));
        }
        for (ws, mut keys) in by_ws {
            keys.sort_by_key(|k| k.1);
            let st = self.state(&ws);
            let mut guard = st.lock().expect("workspace lock");
            let g = &mut *guard;
            for (d, ms) in keys {
                if g.seen.get(&d).is_none() {
                    g.seen.insert(d, Slot::Committed(ms));
                    g.order.push_back((ms, d));
                }
            }
        }
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
    pub pii_key: Option<[u8; 32]>,
    /// Told the workspace after each successful commit (wakes its delivery workers).
    pub on_commit: Box<dyn Fn(&str) + Send + Sync>,
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
        events: &[Value],
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
            match validate_event(v, &ctx) {
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
        loop {
            let waits = {
                let mut g = state.lock().expect("workspace lock");
                g.expire(now_ms - dedup_window_ms);
                let mut waits = Vec::new();
                for (_, d, _) in &valid {
                    if let Some(Slot::Pending(p)) = g.seen.get(d) {
                        waits.push(p.clone());
                    }
                }
                if waits.is_empty() {
                    duplicates = 0;
                    let mut in_request = HashSet::with_capacity(valid.len());
                    let mut fresh = Vec::with_capacity(valid.len());
                    for (index, d, _) in &valid {
                        let committed = matches!(g.seen.get(d), Some(Slot::Committed(t)) if *t > now_ms - dedup_window_ms);
                        if committed || !in_request.insert(*d) {
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
                        g.seen.insert(r.digest, Slot::Pending(rx.clone()));
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
        let mut encoded = Vec::with_capacity(reserved.len());
        let mut vi = valid.into_iter();
        for r in &reserved {
            let e = loop {
                let (i, _, e) = vi.next().expect("reserved event is among the valid ones");
                if i == r.index {
                    break e;
                }
            };
            encoded.push(self.encode(&rules.id, now_ms, e));
        }
        let accepted = reserved.len();
        let digests: Vec<u128> = reserved.iter().map(|r| r.digest).collect();
        let limits = rules.limits.clone();
        // Settlement runs on the writer thread right after the commit, so a client
        // hanging up cannot leave keys reserved forever.
        let settle = Box::new(move |ok: bool| {
            {
                let mut g = state.lock().expect("workspace lock");
                if let Some(p) = g.monthly_pending.get_mut(&month) {
                    *p = p.saturating_sub(reserved.len() as u64);
                }
                if ok {
                    *g.monthly.entry(month).or_default() += reserved.len() as u64;
                    for r in &reserved {
                        g.seen.insert(r.digest, Slot::Committed(now_ms));
                        g.order.push_back((now_ms, r.digest));
                    }
                } else {
                    for r in &reserved {
                        g.seen.remove(&r.digest);
                    }
                    if limits.rate > 0 && limits.burst > 0 {
                        g.bucket.tokens =
                            (g.bucket.tokens + reserved.len() as f64).min(limits.burst as f64);
                    }
                }
            }
            let _ = tx.send(true);
        });
        let batch = IngestBatch {
            workspace: rules.id.clone(),
            month,
            accepted_ms: now_ms,
            chunk: crate::store::log::encode_chunk(encoded.iter().map(Vec::as_slice)),
            digests,
            on_done: Some(settle),
        };
        match self.store.ingest(batch).await {
            Ok(()) => {
                (self.on_commit)(&rules.id);
                Outcome::Accepted {
                    accepted,
                    duplicates,
                    rejected,
                }
            }
            Err(e) => Outcome::Unavailable(e.to_string()),
        }
    }

    fn encode(&self, ws: &str, now_ms: i64, mut e: crate::event::NormalizedEvent) -> Vec<u8> {
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
        encode_event(&StoredEvent {
            accepted_ms: now_ms,
            sealed,
            event: e,
        })
    }
}
