//! The ingest journal on the real redb file through the real writer thread: at open,
//! the records the file's durable state does not hold are committed again, each once,
//! in order; records it holds and a torn tail are not; the journal is emptied. (The
//! SIGKILL rounds in `crash.rs` cover the same with the real binary.)

use std::path::Path;
use std::sync::Arc;

use redb::ReadableDatabase;
use sluice::clock::{Clock, ManualClock};
use sluice::store::backlog::EventMeta;
use sluice::store::dedup::{DedupIndex, Seen};
use sluice::store::journal::{self, Journal};
use sluice::store::{EVENTS, IngestBatch, META, MONTHLY, Store, StoreOptions, dedup_digest};

const T0: i64 = 1_780_000_000_000;
const WINDOW: i64 = 3_600_000;

fn start(path: &Path, clock: &Arc<ManualClock>) -> (Store, Arc<DedupIndex>) {
    let index = DedupIndex::new(WINDOW);
    let store = Store::start(StoreOptions {
        path: path.to_path_buf(),
        dedup: index.clone(),
        dedup_tuning: Default::default(),
        routing: Default::default(),
        cache_size: 4 << 20,
        clock: clock.clone(),
        faults: None,
        on_open: Box::new(|_| {}),
    });
    (store, index)
}

async fn ready(store: &Store) {
    for _ in 0..2000 {
        if store.is_ready() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    panic!("store never opened");
}

fn digest(id: &str) -> u128 {
    dedup_digest("ws", "Purchase", id)
}

/// A request of `ids` accepted at `ms`; each event's stored bytes are its id.
fn batch(ids: &[&str], ms: i64) -> IngestBatch {
    IngestBatch {
        workspace: Arc::from("ws"),
        month: 202_606,
        accepted_ms: ms,
        digests: ids.iter().map(|i| digest(i)).collect(),
        metas: ids
            .iter()
            .map(|_| EventMeta {
                name: "Purchase".into(),
                destinations: Vec::new(),
                event_time: ms / 1000,
            })
            .collect(),
        chunk: sluice::store::log::encode_chunk(ids.iter().map(|i| i.as_bytes())),
        on_done: None,
    }
}

/// Every event of `ws`'s log in order (its stored bytes as text), the month's count,
/// `journal_applied` and the journal epoch, read from the closed file.
fn read_file(path: &Path) -> (Vec<String>, u64, u64, u64) {
    let db = redb::Database::open(path).unwrap();
    let read = db.begin_read().unwrap();
    let events = read.open_table(EVENTS).unwrap();
    let mut log = Vec::new();
    let mut want_seq = 1;
    for row in events.range(("ws", 0u64)..=("ws", u64::MAX)).unwrap() {
        let (k, v) = row.unwrap();
        assert_eq!(k.value().1, want_seq, "the log has a gap or an overlap");
        for e in sluice::store::log::chunk_events(v.value()).unwrap() {
            log.push(String::from_utf8(e.to_vec()).unwrap());
            want_seq += 1;
        }
    }
    let monthly = read
        .open_table(MONTHLY)
        .unwrap()
        .get(("ws", 202_606))
        .unwrap()
        .map_or(0, |v| v.value());
    let meta = read.open_table(META).unwrap();
    let number = |key| {
        meta.get(key)
            .unwrap()
            .map_or(0, |v| u64::from_le_bytes(v.value().try_into().unwrap()))
    };
    (
        log,
        monthly,
        number(journal::APPLIED_KEY),
        number(journal::EPOCH_KEY),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_the_file_lacks_are_committed_again_once_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.redb");
    let clock = ManualClock::new(T0);

    // Two requests through the writer, then a clean stop: durable, journal empty.
    let (store, _) = start(&path, &clock);
    ready(&store).await;
    store.ingest(batch(&["a1", "a2"], T0)).await.unwrap();
    store.ingest(batch(&["b1"], T0 + 1)).await.unwrap();
    store.close().await;
    let (log, monthly, applied, epoch) = read_file(&path);
    assert_eq!(log, ["a1", "a2", "b1"]);
    assert_eq!(monthly, 3);
    assert!(
        applied >= 2,
        "each ingest commit numbers its record: {applied}"
    );
    let jpath = journal::path_of(&path);
    {
        let (_, records, _) = Journal::open(&path, epoch, None).unwrap();
        assert!(
            records.iter().all(|r| r.no <= applied),
            "a clean stop leaves no record the file lacks"
        );
    }

    // What a crash leaves: this lap's records the file holds (its last durable
    // commit came after them), records it does not (answered on the journal's word),
    // and a record cut short after them (never answered). Plus a record of another
    // store's epoch (as a backup restored over this store would find).
    {
        let (mut j, _, _) = Journal::open(&path, epoch, None).unwrap();
        j.clear();
        j.append(applied, [batch(&["b1"], T0 + 1)].iter()).unwrap();
        j.append(
            applied + 1,
            [batch(&["c1", "c2"], T0 + 2), batch(&["d1"], T0 + 3)].iter(),
        )
        .unwrap();
        j.append(applied + 2, [batch(&["e1"], T0 + 4)].iter())
            .unwrap();
    }
    let end = {
        let (mut j, records, _) = Journal::open(&path, epoch ^ 1, None).unwrap();
        assert_eq!(records.len(), 3);
        j.append(applied + 3, [batch(&["x1"], T0 + 4)].iter())
            .unwrap();
        j.len()
    };
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&jpath)
            .unwrap();
        f.write_all_at(&[9, 0, 0, 0, 1, 2, 3], end).unwrap();
    }

    let (store, index) = start(&path, &clock);
    ready(&store).await;
    // Ready only once replayed: every answered event is a duplicate at once.
    let ids = ["a1", "b1", "c1", "c2", "d1", "e1", "f1", "x1"];
    let seen = index
        .lookup(
            &ids.iter().map(|i| digest(i)).collect::<Vec<_>>(),
            T0 - WINDOW,
            || store.view(),
        )
        .unwrap();
    assert_eq!(
        seen,
        vec![
            Seen::At(T0),
            Seen::At(T0 + 1),
            Seen::At(T0 + 2),
            Seen::At(T0 + 2),
            Seen::At(T0 + 3),
            Seen::At(T0 + 4),
            Seen::No,
            Seen::No
        ]
    );

    // New ingest numbers its records after every number the journal held.
    store.ingest(batch(&["f1"], T0 + 5)).await.unwrap();
    store.close().await;
    let (log, monthly, applied_now, epoch_now) = read_file(&path);
    assert_eq!(epoch_now, epoch, "a store keeps its epoch");
    assert_eq!(log, ["a1", "a2", "b1", "c1", "c2", "d1", "e1", "f1"]);
    assert_eq!(monthly, 8);
    // After every number the journal held, the other epoch's included.
    assert_eq!(applied_now, applied + 4);

    // Opened again: nothing is applied twice.
    let (store, _) = start(&path, &clock);
    ready(&store).await;
    store.close().await;
    assert_eq!(read_file(&path).0.len(), 8);
    assert_eq!(clock.now_ms(), T0);
}
