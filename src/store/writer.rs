//! The writer thread: the only code that opens write transactions (see the module doc of
//! [`super`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use redb::{Database, ReadableDatabase, ReadableTable};
use tracing::{error, info, warn};

use super::{
    CLOSED, Cmd, DEDUP, EVENTS, META, MONTHLY, OPENING, READY, RECOVERING, Recovered,
    SCHEMA_VERSION, Shared, StoreError, StoreOptions,
};

/// Most events one transaction takes; the rest wait for the next commit.
const MAX_EVENTS_PER_COMMIT: usize = 20_000;
/// How often expired dedup entries are trimmed.
const DEDUP_TRIM_EVERY_MS: i64 = 60_000;

pub(super) fn run(mut opts: StoreOptions, rx: Receiver<Cmd>, shared: Arc<Shared>) {
    let mut w = Writer {
        seq_heads: HashMap::new(),
        last_trim_ms: 0,
    };
    let Some(mut db) = open_until_ok(&mut opts, &rx, &shared, OPENING) else {
        return;
    };
    loop {
        let first = match rx.recv() {
            Ok(c) => c,
            Err(_) => break,
        };
        let mut batch = Vec::new();
        let mut shutdown = None;
        let mut n_events = 0;
        match first {
            Cmd::Shutdown(done) => shutdown = Some(done),
            Cmd::Ingest(b, reply) => {
                n_events += b.events.len();
                batch.push((b, reply));
            }
        }
        while shutdown.is_none() && n_events < MAX_EVENTS_PER_COMMIT {
            match rx.try_recv() {
                Ok(Cmd::Ingest(b, reply)) => {
                    n_events += b.events.len();
                    batch.push((b, reply));
                }
                Ok(Cmd::Shutdown(done)) => shutdown = Some(done),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            let now = opts.clock.now_ms();
            match w.commit(&db, &batch, now, opts.dedup_window_ms) {
                Ok(()) => {
                    for (_, reply) in batch {
                        let _ = reply.send(Ok(()));
                    }
                }
                Err(e) => {
                    error!(error = %e, "commit failed; reopening the store");
                    let msg = e.to_string();
                    for (_, reply) in batch {
                        let _ = reply.send(Err(StoreError::Unavailable(msg.clone())));
                    }
                    shared.status.store(RECOVERING, Ordering::SeqCst);
                    shared.db.store(None);
                    drop(db);
                    w.seq_heads.clear();
                    match open_until_ok(&mut opts, &rx, &shared, RECOVERING) {
                        Some(d) => db = d,
                        None => return,
                    }
                }
            }
        }
        if let Some(done) = shutdown {
            shared.status.store(CLOSED, Ordering::SeqCst);
            shared.db.store(None);
            drop(db);
            info!("store closed");
            let _ = done.send(());
            return;
        }
    }
    shared.status.store(CLOSED, Ordering::SeqCst);
}

struct Writer {
    /// Next sequence number per workspace, read from the file on first use.
    seq_heads: HashMap<Arc<str>, u64>,
    last_trim_ms: i64,
}

impl Writer {
    fn commit(
        &mut self,
        db: &Database,
        batch: &[(
            super::IngestBatch,
            tokio::sync::oneshot::Sender<Result<(), StoreError>>,
        )],
        now_ms: i64,
        window_ms: i64,
    ) -> Result<(), redb::Error> {
        let txn = db.begin_write()?;
        let mut heads = HashMap::new();
        {
            let mut events = txn.open_table(EVENTS)?;
            let mut dedup = txn.open_table(DEDUP)?;
            let mut monthly_add: HashMap<(Arc<str>, u32), u64> = HashMap::new();
            for (b, _) in batch {
                let ws: &str = &b.workspace;
                let next = match heads.get(&b.workspace).or(self.seq_heads.get(&b.workspace)) {
                    Some(n) => *n,
                    None => match events.range((ws, 0u64)..=(ws, u64::MAX))?.next_back() {
                        Some(last) => last?.0.value().1 + 1,
                        None => 1,
                    },
                };
                let mut seq = next;
                let accepted = b.accepted_ms.max(0) as u64;
                for (digest, bytes) in &b.events {
                    events.insert((ws, seq), bytes.as_slice())?;
                    dedup.insert((accepted, *digest), ws)?;
                    seq += 1;
                }
                heads.insert(b.workspace.clone(), seq);
                *monthly_add
                    .entry((b.workspace.clone(), b.month))
                    .or_default() += b.events.len() as u64;
            }
            let mut monthly = txn.open_table(MONTHLY)?;
            for ((ws, month), n) in monthly_add {
                let cur = monthly.get((&*ws, month))?.map(|v| v.value()).unwrap_or(0);
                monthly.insert((&*ws, month), cur + n)?;
            }
            if now_ms - self.last_trim_ms >= DEDUP_TRIM_EVERY_MS {
                let cutoff = (now_ms - window_ms).max(0) as u64;
                dedup.retain_in(..(cutoff, 0u128), |_, _| false)?;
            }
        }
        txn.commit()?;
        if now_ms - self.last_trim_ms >= DEDUP_TRIM_EVERY_MS {
            self.last_trim_ms = now_ms;
        }
        self.seq_heads.extend(heads);
        Ok(())
    }
}

/// Opens the database, retrying with backoff; answers writes `Unavailable` meanwhile.
/// Returns None when asked to shut down first.
fn open_until_ok(
    opts: &mut StoreOptions,
    rx: &Receiver<Cmd>,
    shared: &Shared,
    status: u8,
) -> Option<Arc<Database>> {
    shared.status.store(status, Ordering::SeqCst);
    let mut backoff = Duration::from_millis(50);
    loop {
        match open(opts) {
            Ok((db, recovered)) => {
                (opts.on_open)(recovered);
                let db = Arc::new(db);
                shared.db.store(Some(db.clone()));
                shared.status.store(READY, Ordering::SeqCst);
                info!(path = %opts.path.display(), "store open");
                return Some(db);
            }
            Err(e) => {
                warn!(error = %e, path = %opts.path.display(), "cannot open the store; retrying");
            }
        }
        // Wait out the backoff while answering whatever arrives.
        let deadline = std::time::Instant::now() + backoff;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            match rx.recv_timeout(left) {
                Ok(Cmd::Ingest(_, reply)) => {
                    let _ = reply.send(Err(StoreError::Unavailable(
                        "the store is being reopened".into(),
                    )));
                }
                Ok(Cmd::Shutdown(done)) => {
                    shared.status.store(CLOSED, Ordering::SeqCst);
                    let _ = done.send(());
                    return None;
                }
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

fn open(opts: &StoreOptions) -> Result<(Database, Recovered), anyhow::Error> {
    if let Some(dir) = opts.path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    let mut builder = Database::builder();
    builder.set_repair_callback(|_| {
        info!("repairing the store after an unclean shutdown");
    });
    let db = match &opts.faults {
        None => builder.create(&opts.path)?,
        Some(switch) => {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&opts.path)?;
            let backend = redb::backends::FileBackend::new(file)?;
            builder
                .create_with_backend(super::fault::FaultyBackend::new(backend, switch.clone()))?
        }
    };
    // Create every table and check the schema version.
    let txn = db.begin_write()?;
    {
        let mut meta = txn.open_table(META)?;
        let found = meta
            .get("schema_version")?
            .map(|v| v.value().to_vec())
            .map(|b| u32::from_le_bytes(b.try_into().unwrap_or([0xff; 4])));
        match found {
            Some(v) if v > SCHEMA_VERSION => anyhow::bail!(
                "the store was written by a newer sluice (schema {v}, this build knows {SCHEMA_VERSION}); upgrade sluice"
            ),
            Some(_) => {}
            None => {
                meta.insert("schema_version", SCHEMA_VERSION.to_le_bytes().as_slice())?;
            }
        }
        txn.open_table(EVENTS)?;
        txn.open_table(DEDUP)?;
        txn.open_table(MONTHLY)?;
    }
    txn.commit()?;

    let now = opts.clock.now_ms();
    let cutoff = (now - opts.dedup_window_ms).max(0) as u64;
    let mut rec = Recovered::default();
    let read = db.begin_read()?;
    let dedup = read.open_table(DEDUP)?;
    for row in dedup.range((cutoff, 0u128)..)? {
        let (k, v) = row?;
        let (ms, digest) = k.value();
        rec.dedup.push((v.value().to_string(), digest, ms as i64));
    }
    let monthly = read.open_table(MONTHLY)?;
    for row in monthly.iter()? {
        let (k, v) = row?;
        let (ws, month) = k.value();
        rec.monthly.push((ws.to_string(), month, v.value()));
    }
    drop(read);
    Ok((db, rec))
}
