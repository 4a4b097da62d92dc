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
    let (epoch, applied) = journal_meta(&read);
    (log, monthly, applied, epoch)
}

/// The store's journal epoch and last applied record (`meta`).
fn journal_meta(read: &redb::ReadTransaction) -> (u64, u64) {
    let meta = read.open_table(META).unwrap();
    let number = |key| {
        meta.get(key)
            .unwrap()
            .map_or(0, |v| u64::from_le_bytes(v.value().try_into().unwrap()))
    };
    (number(journal::EPOCH_KEY), number(journal::APPLIED_KEY))
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

mod summaries {
    //! What a replay appends is counted in the destinations' backlog summaries: with
    //! the routing known at open (as the daemon gives it), and recounted by a walk when
    //! the routing comes after the replay.

    use super::*;
    use sluice::event::NormalizedEvent;
    use sluice::store::DeliveryOp;
    use sluice::store::backlog::{BACKLOG, DestRoute, Routing, SharedRouting, decode_summary};
    use sluice::store::codec::{StoredEvent, encode_event};

    fn routed(routing: &SharedRouting, version: u64) {
        let dests = [(
            "d".to_string(),
            DestRoute {
                workspace: "ws".into(),
                events: None,
                by_event_time: false,
            },
        )]
        .into_iter()
        .collect();
        routing.store(Arc::new(Routing {
            version,
            dests,
            watched: Default::default(),
        }));
    }

    fn start_routed(path: &Path, clock: &Arc<ManualClock>, routing: &SharedRouting) -> Store {
        Store::start(StoreOptions {
            path: path.to_path_buf(),
            dedup: DedupIndex::new(WINDOW),
            dedup_tuning: Default::default(),
            routing: routing.clone(),
            cache_size: 4 << 20,
            clock: clock.clone(),
            faults: None,
            on_open: Box::new(|_| {}),
        })
    }

    /// A request of real stored events.
    fn events(ids: &[&str], ms: i64) -> IngestBatch {
        let stored: Vec<Vec<u8>> = ids
            .iter()
            .map(|id| {
                encode_event(&StoredEvent {
                    accepted_ms: ms,
                    sealed: Vec::new(),
                    event: NormalizedEvent {
                        event_id: id.to_string(),
                        event_name: "Purchase".into(),
                        event_time: ms / 1000,
                        action_source: None,
                        event_source_url: None,
                        hashed: Vec::new(),
                        clear: Vec::new(),
                        plaintext: Vec::new(),
                        custom_data: Vec::new(),
                        destinations: Vec::new(),
                    },
                })
            })
            .collect();
        let mut b = batch(ids, ms);
        b.chunk = sluice::store::log::encode_chunk(stored.iter().map(Vec::as_slice));
        b
    }

    /// `d`'s stored summary (depth, walk) and the journal's epoch and last applied
    /// record, read from the closed file.
    fn summary(path: &Path) -> ((u64, Option<u64>), u64, u64) {
        let db = redb::Database::open(path).unwrap();
        let read = db.begin_read().unwrap();
        let s = read
            .open_table(BACKLOG)
            .unwrap()
            .get("d")
            .unwrap()
            .map(|v| decode_summary(v.value()).unwrap())
            .expect("d has a summary");
        let (epoch, applied) = journal_meta(&read);
        ((s.depth, s.walk), epoch, applied)
    }

    async fn settle(store: &Store) {
        for _ in 0..20 {
            store.maintain().await.unwrap();
        }
    }

    fn crash_leaves(path: &Path, epoch: u64, no: u64, batches: &[IngestBatch]) {
        let (mut j, _, _) = Journal::open(path, epoch, None).unwrap();
        j.clear();
        for (i, b) in batches.iter().enumerate() {
            j.append(no + i as u64, std::iter::once(b)).unwrap();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replayed_events_are_counted_in_the_backlog_summaries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.redb");
        let clock = ManualClock::new(T0);
        let routing = SharedRouting::default();
        routed(&routing, 1);
        let store = start_routed(&path, &clock, &routing);
        ready(&store).await;
        store
            .delivery(vec![DeliveryOp::Cursor {
                dest: "d".into(),
                next_seq: 1,
            }])
            .await
            .unwrap();
        store.ingest(events(&["a1", "a2"], T0)).await.unwrap();
        settle(&store).await;
        store.close().await;
        let ((depth, walk), epoch, applied) = summary(&path);
        assert_eq!((depth, walk), (2, None));

        // Routing known at open (the daemon's way): the replay counts as it appends.
        crash_leaves(
            &path,
            epoch,
            applied + 1,
            &[events(&["b1"], T0 + 1), events(&["c1", "c2"], T0 + 2)],
        );
        let store = start_routed(&path, &clock, &routing);
        ready(&store).await;
        settle(&store).await;
        store.close().await;
        let ((depth, walk), _, applied) = summary(&path);
        assert_eq!((depth, walk), (5, None));

        // No routing at open: the replay cannot count; once routing comes, the
        // workspace's destinations are counted again from their cursors.
        crash_leaves(&path, epoch, applied + 1, &[events(&["e1"], T0 + 3)]);
        let later = SharedRouting::default();
        let store = start_routed(&path, &clock, &later);
        ready(&store).await;
        routed(&later, 1);
        settle(&store).await;
        store.close().await;
        let ((depth, walk), _, _) = summary(&path);
        assert_eq!((depth, walk), (6, None));
    }
}
