//! The ingest journal: what makes an answered ingest durable without a durable redb
//! commit per group.
//!
//! A durable redb commit writes every B-tree page the group dirtied — the events leaf,
//! `dedup_log`, `monthly`, the backlog summaries, the watch counters, redb's own trees —
//! each a separate write at its own place in the file, then syncs. For single events
//! that is a dozen scattered page writes per group of a few dozen events, and it held
//! sluice near 60 % of a server that appends each body to one file and syncs it.
//!
//! So a small group (under 1,000 events) that only ingests is written here as one
//! record (in the journal file beside the store, `<store>.journal`), synced on the
//! `sluice-journal` thread while the writer applies the group, and committed to redb
//! with `Durability::None` once synced: visible to readers then (never before its record
//! is on disk), on disk at the next durable commit. Its requests are answered after that
//! commit, like any other. A durable commit — any commit holding delivery or operator
//! work or a large group, one every 250 ms while ingest runs, one when the writer falls
//! idle, the last at shutdown — makes everything before it durable, and the journal
//! starts again from its beginning. Each commit that applies a record stores the
//! record's number (`meta` key `journal_applied`) in the same transaction.
//!
//! At every open the records of the store's epoch numbered above the durable
//! `journal_applied` are committed again, in order, before the store reports ready: the
//! file then holds exactly what was answered, the dedup index answers every
//! acknowledged event as a duplicate, and delivery reads them from the log like any
//! other.
//!
//! # Format
//!
//! Records, back to back: `[payload len: u32 LE][crc32 of payload: u32 LE][payload]`,
//! the payload `[JOURNAL_V1][postcard of (epoch, number, batches)]`. The file is
//! written with zeros once as it grows and then overwritten from its start after every
//! durable commit, so a sync writes the record's blocks and not the file's size too.
//! Reading stops at the first record that is cut short, fails its checksum or is not
//! numbered above the one before (a record of an earlier lap): a record is only
//! answered once it has been synced whole, so what follows a torn one was never
//! answered. The epoch ([`EPOCH_KEY`]) is new in every backup copy, so a copy restored
//! over a store replays none of the live store's records.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::IngestBatch;
use super::backlog::EventMeta;
use super::fault::FaultSwitch;

const JOURNAL_V1: u8 = 1;
/// Frame header: payload length and checksum.
const FRAME: usize = 8;
/// How much the file grows by when a record would pass its end.
const GROW: u64 = 4 << 20;
/// A record longer than this is taken as a torn length field, not read.
const MAX_RECORD: usize = 1 << 30;

/// The `meta` key of the number of the last journal record a commit applied.
pub const APPLIED_KEY: &str = "journal_applied";
/// The `meta` key of the store's journal epoch: a random number each record carries,
/// set when the store is created and new in every backup copy, so a backup restored
/// over a store never replays the records its journal holds.
pub const EPOCH_KEY: &str = "journal_epoch";

/// A new random epoch.
pub fn new_epoch() -> u64 {
    let mut b = [0u8; 8];
    // No randomness: a clock reading still differs between a store and its copy.
    if getrandom::getrandom(&mut b).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        return t.as_nanos() as u64;
    }
    u64::from_le_bytes(b)
}

/// One ingest batch as the journal holds it (the fields of [`IngestBatch`] the writer
/// applies; same field order in both structs, so one decodes what the other wrote).
#[derive(Serialize)]
struct BatchRef<'a> {
    workspace: &'a str,
    month: u32,
    accepted_ms: i64,
    digests: &'a [u128],
    metas: &'a [EventMeta],
    #[serde(with = "serde_bytes")]
    chunk: &'a [u8],
}

#[derive(Deserialize)]
struct BatchOwned {
    workspace: String,
    month: u32,
    accepted_ms: i64,
    digests: Vec<u128>,
    metas: Vec<EventMeta>,
    #[serde(with = "serde_bytes")]
    chunk: Vec<u8>,
}

#[derive(Serialize)]
struct RecordRef<'a> {
    epoch: u64,
    no: u64,
    batches: Vec<BatchRef<'a>>,
}

#[derive(Deserialize)]
struct RecordOwned {
    epoch: u64,
    no: u64,
    batches: Vec<BatchOwned>,
}

/// A record read back: its store's epoch, its number and its batches, ready to
/// commit again.
pub struct Record {
    pub epoch: u64,
    pub no: u64,
    pub batches: Vec<IngestBatch>,
}

/// The journal file, appended to by the writer thread alone.
pub struct Journal {
    file: File,
    path: PathBuf,
    /// Bytes of this lap's records (where the next one goes).
    len: u64,
    /// The store's epoch ([`EPOCH_KEY`]), carried by every record written.
    epoch: u64,
    /// Where the last record synced starts.
    last: Option<u64>,
    /// The file's length: written once (zeros, then records), then overwritten, so
    /// a sync writes the record's blocks and not the file's size as well.
    capacity: u64,
    /// A write or truncation failed: not used until the next durable commit empties it.
    broken: bool,
    faults: Option<Arc<FaultSwitch>>,
    buf: Vec<u8>,
    syncer: Syncer,
}

/// A record written whose sync is under way.
#[must_use = "a record counts only once finish says it is synced"]
pub struct Pending {
    at: u64,
    len: u64,
}

/// A thread that syncs the journal file when asked, so the writer applies a group to
/// the store while its record is synced (the sync is most of an ingest commit's time).
struct Syncer {
    ask: Option<std::sync::mpsc::SyncSender<()>>,
    done: std::sync::mpsc::Receiver<io::Result<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Syncer {
    fn new(file: File) -> io::Result<Syncer> {
        let (ask, asked) = std::sync::mpsc::sync_channel::<()>(1);
        let (tell, done) = std::sync::mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("sluice-journal".into())
            .spawn(move || {
                while asked.recv().is_ok() {
                    if tell.send(file.sync_data()).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Syncer {
            ask: Some(ask),
            done,
            thread: Some(thread),
        })
    }

    fn start(&self) -> io::Result<()> {
        self.ask
            .as_ref()
            .and_then(|a| a.send(()).ok())
            .ok_or_else(|| io::Error::other("the journal's sync thread stopped"))
    }

    fn wait(&self) -> io::Result<()> {
        self.done
            .recv()
            .unwrap_or_else(|_| Err(io::Error::other("the journal's sync thread stopped")))
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.ask = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Where the journal of the store at `store` lives.
pub fn path_of(store: &Path) -> PathBuf {
    let mut name = store.file_name().unwrap_or_default().to_os_string();
    name.push(".journal");
    store.with_file_name(name)
}

impl Journal {
    /// Opens (creating, mode 0600) the journal of the store at `store` and reads the
    /// records it holds. The file is not changed: replaying them and emptying it is the
    /// writer's job.
    pub fn open(
        store: &Path,
        epoch: u64,
        faults: Option<Arc<FaultSwitch>>,
    ) -> io::Result<(Journal, Vec<Record>, Option<Torn>)> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = path_of(store);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(super::writer::STORE_MODE)
            .open(&path)?;
        let mut bytes = Vec::new();
        io::Read::read_to_end(&mut &file, &mut bytes)?;
        let (records, whole) = decode_all(&bytes);
        // What follows the records is zeros, records of an earlier lap (numbered
        // lower) or a record that was never answered (cut short, or written but not
        // synced whole).
        let torn = bytes
            .get(whole..bytes.len().min(whole + FRAME))
            .filter(|head| head.iter().any(|b| *b != 0))
            .map(|_| Torn {
                at: whole as u64,
                len: bytes.len() as u64,
            });
        let j = Journal {
            syncer: Syncer::new(file.try_clone()?)?,
            file,
            path,
            len: whole as u64,
            epoch,
            last: None,
            capacity: bytes.len() as u64,
            broken: false,
            faults,
            buf: Vec::new(),
        };
        Ok((j, records, torn))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether an ingest group may be answered on this journal's word.
    pub fn usable(&self) -> bool {
        !self.broken
    }

    /// Bytes written since the journal was last emptied.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn check(&self) -> io::Result<()> {
        match &self.faults {
            Some(f) => f.check_io(),
            None => Ok(()),
        }
    }

    /// Appends record `no` holding `batches` and syncs it. On error the journal is
    /// cut back to where it was (or, failing that, marked broken) and the group must
    /// be made durable by a durable commit instead.
    pub fn append<'a>(
        &mut self,
        no: u64,
        batches: impl Iterator<Item = &'a IngestBatch>,
    ) -> io::Result<u64> {
        let p = self.write(no, batches)?;
        let n = p.len;
        self.finish(p)?;
        Ok(n)
    }

    /// The first half of [`Journal::append`]: writes the record and starts its sync on
    /// the journal's sync thread, so the caller can apply the group meanwhile. The
    /// record counts as written once [`Journal::finish`] says it is synced.
    pub fn write<'a>(
        &mut self,
        no: u64,
        batches: impl Iterator<Item = &'a IngestBatch>,
    ) -> io::Result<Pending> {
        let rec = RecordRef {
            epoch: self.epoch,
            no,
            batches: batches
                .map(|b| BatchRef {
                    workspace: &b.workspace,
                    month: b.month,
                    accepted_ms: b.accepted_ms,
                    digests: &b.digests,
                    metas: &b.metas,
                    chunk: &b.chunk,
                })
                .collect(),
        };
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        buf.extend_from_slice(&[0; FRAME]);
        buf.push(JOURNAL_V1);
        let encoded = postcard::to_io(&rec, &mut buf).map(|_| ());
        let at = self.len;
        let result = encoded.map_err(io::Error::other).and_then(|()| {
            let payload = buf.len() - FRAME;
            let crc = crc32fast::hash(&buf[FRAME..]);
            buf[..4].copy_from_slice(&(payload as u32).to_le_bytes());
            buf[4..FRAME].copy_from_slice(&crc.to_le_bytes());
            self.grow(at + buf.len() as u64)?;
            self.check()?;
            self.file.write_all_at(&buf, at)?;
            self.check()?;
            self.syncer.start()
        });
        let len = buf.len() as u64;
        self.buf = buf;
        match result {
            Ok(()) => Ok(Pending { at, len }),
            Err(e) => {
                // Nothing after `at` was answered: cut it off so no later read finds it.
                self.cut(at);
                Err(e)
            }
        }
    }

    /// Makes the file at least `end` bytes long (and some room beyond), zeros synced,
    /// so records written up to there overwrite blocks the file already has.
    fn grow(&mut self, end: u64) -> io::Result<()> {
        if end <= self.capacity {
            return Ok(());
        }
        let target = end + GROW;
        self.check()?;
        let zeros = vec![0u8; 1 << 20];
        let mut at = self.capacity;
        while at < target {
            let n = (target - at).min(zeros.len() as u64) as usize;
            self.file.write_all_at(&zeros[..n], at)?;
            at += n as u64;
        }
        self.file.sync_data()?;
        self.capacity = target;
        Ok(())
    }

    /// Waits for the sync [`Journal::write`] started. Err: the record is cut off again
    /// (or the journal marked broken) and its group must be made durable otherwise.
    pub fn finish(&mut self, p: Pending) -> io::Result<()> {
        match self.syncer.wait() {
            Ok(()) => {
                self.len = p.at + p.len;
                self.last = Some(p.at);
                Ok(())
            }
            Err(e) => {
                self.cut(p.at);
                Err(e)
            }
        }
    }

    /// Cuts the journal back to `at` bytes: a record written there whose requests
    /// were answered with an error goes (its header is zeroed and synced, so no read
    /// finds it). Marks the journal broken when it cannot.
    pub fn cut(&mut self, at: u64) {
        let done = self.zero_header(at);
        self.last = None;
        match done {
            Ok(()) => self.len = at,
            Err(e) => {
                tracing::warn!(error = %e, path = %self.path.display(), "cannot cut the ingest journal back; ingest commits are durable until it is emptied");
                self.broken = true;
            }
        }
    }

    /// Zeroes a record header at `at` and syncs it: a read stops there.
    fn zero_header(&self, at: u64) -> io::Result<()> {
        self.check()?;
        self.file.write_all_at(&[0; FRAME], at)?;
        self.file.sync_data()
    }

    /// Drops the last record written (synced), whose commit failed: its requests
    /// were answered with an error.
    pub fn drop_last(&mut self) {
        if let Some(at) = self.last.take() {
            self.cut(at);
        }
    }

    /// Empties the journal after a durable commit that covers every record in it: the
    /// next record goes at the start again, over the old ones. No write: the old
    /// records are numbered at or below the durable `journal_applied`, and a read
    /// stops at the first record not numbered above the one before it.
    pub fn clear(&mut self) {
        self.last = None;
        if self.broken {
            // A failed cut may have left a record: zero the start (the next read stops
            // there) before the journal is used again.
            match self.zero_header(0) {
                Ok(()) => self.broken = false,
                Err(e) => {
                    tracing::warn!(error = %e, path = %self.path.display(), "cannot empty the ingest journal; ingest commits are durable until it is emptied");
                    return;
                }
            }
        }
        self.len = 0;
    }
}

/// Bytes after this lap's records that are not zeros: an earlier lap's records (the
/// usual case) or a record cut short (never answered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Torn {
    /// Where the whole records end.
    pub at: u64,
    /// The file's length.
    pub len: u64,
}

/// Every whole record at the start of `bytes`, and where they end.
fn decode_all(bytes: &[u8]) -> (Vec<Record>, usize) {
    let mut records = Vec::new();
    let mut at = 0;
    while let Some(head) = bytes.get(at..at + FRAME) {
        let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(head[4..].try_into().expect("4 bytes"));
        if len > MAX_RECORD {
            break;
        }
        let Some(payload) = bytes.get(at + FRAME..at + FRAME + len) else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        let Some(rec) = decode(payload) else {
            break;
        };
        // A record of an earlier lap: this lap ends before it.
        if records.last().is_some_and(|r: &Record| r.no >= rec.no) {
            break;
        }
        records.push(rec);
        at += FRAME + len;
    }
    (records, at)
}

fn decode(payload: &[u8]) -> Option<Record> {
    let (&version, body) = payload.split_first()?;
    if version != JOURNAL_V1 {
        return None;
    }
    let rec: RecordOwned = postcard::from_bytes(body).ok()?;
    Some(Record {
        epoch: rec.epoch,
        no: rec.no,
        batches: rec
            .batches
            .into_iter()
            .map(|b| IngestBatch {
                workspace: b.workspace.into(),
                month: b.month,
                accepted_ms: b.accepted_ms,
                digests: b.digests,
                metas: b.metas,
                chunk: b.chunk,
                on_done: None,
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(ws: &str, first: u8, n: u8) -> IngestBatch {
        let bodies: Vec<Vec<u8>> = (first..first + n).map(|i| vec![i; 3]).collect();
        IngestBatch {
            workspace: ws.into(),
            month: 202_612,
            accepted_ms: 1_780_000_000_000 + i64::from(first),
            digests: (first..first + n)
                .map(|i| u128::from(i) << 100 | 7)
                .collect(),
            metas: (first..first + n)
                .map(|i| EventMeta {
                    name: format!("Purchase{i}"),
                    destinations: vec![format!("meta_{i}")],
                    event_time: 1_780_000_000 + i64::from(i),
                })
                .collect(),
            chunk: super::super::log::encode_chunk(bodies.iter().map(Vec::as_slice)),
            on_done: None,
        }
    }

    /// What a batch holds, comparable.
    fn fields(b: &IngestBatch) -> String {
        format!(
            "{} {} {} {:?} {:?} {:?}",
            b.workspace, b.month, b.accepted_ms, b.digests, b.metas, b.chunk
        )
    }

    fn store_path(dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join("s.redb")
    }

    #[test]
    fn records_read_back_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, records, torn) = Journal::open(&store_path(&dir), 5, None).unwrap();
        assert!(records.is_empty() && torn.is_none() && j.is_empty());
        assert_eq!(j.path(), dir.path().join("s.redb.journal"));
        let written = [
            vec![batch("a", 1, 1)],
            vec![batch("a", 2, 100), batch("b", 50, 3)],
            vec![batch("c", 9, 2)],
        ];
        let mut len = 0;
        for (i, bs) in written.iter().enumerate() {
            len += j.append(i as u64 + 7, bs.iter()).unwrap();
        }
        assert_eq!(j.len(), len);
        // Zeros beyond the records: the next records overwrite blocks the file has.
        let file = std::fs::read(j.path()).unwrap();
        assert!(file.len() as u64 >= GROW && file.len() as u64 > len);
        assert!(file[len as usize..].iter().all(|b| *b == 0));
        let (j2, records, torn) = Journal::open(&store_path(&dir), 5, None).unwrap();
        assert_eq!(torn, None);
        assert_eq!(j2.len(), len);
        assert_eq!(
            records.iter().map(|r| r.no).collect::<Vec<_>>(),
            vec![7, 8, 9]
        );
        for (r, bs) in records.iter().zip(&written) {
            assert_eq!(
                r.batches.iter().map(fields).collect::<Vec<_>>(),
                bs.iter().map(fields).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn reading_stops_at_a_torn_or_corrupt_record() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _, _) = Journal::open(&store_path(&dir), 5, None).unwrap();
        let first = j.append(1, [batch("a", 1, 2)].iter()).unwrap();
        let second = j.append(2, [batch("a", 3, 2)].iter()).unwrap();
        let path = j.path().to_path_buf();
        let whole = std::fs::read(&path).unwrap();

        // Cut short anywhere inside the second record: the first alone is read.
        for cut in [first + 1, first + 8, first + second - 1] {
            std::fs::write(&path, &whole[..cut as usize]).unwrap();
            let (_, records, torn) = Journal::open(&store_path(&dir), 5, None).unwrap();
            assert_eq!(records.len(), 1, "cut at {cut}");
            assert_eq!(
                torn,
                Some(Torn {
                    at: first,
                    len: cut
                })
            );
        }
        // A flipped byte in the second record's payload fails its checksum.
        let mut bad = whole.clone();
        bad[(first + 20) as usize] ^= 0x40;
        std::fs::write(&path, &bad).unwrap();
        let (_, records, torn) = Journal::open(&store_path(&dir), 5, None).unwrap();
        assert_eq!(records.iter().map(|r| r.no).collect::<Vec<_>>(), vec![1]);
        assert_eq!(torn.unwrap().at, first);
        // A length field past the end (a torn header) is not trusted.
        let mut bad = whole[..first as usize].to_vec();
        bad.extend_from_slice(&u32::MAX.to_le_bytes());
        bad.extend_from_slice(&[0; 4]);
        std::fs::write(&path, &bad).unwrap();
        let (_, records, _) = Journal::open(&store_path(&dir), 5, None).unwrap();
        assert_eq!(records.len(), 1);
    }

    #[test]
    fn a_failed_write_leaves_no_record_and_clear_mends_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let faults = FaultSwitch::new();
        let (mut j, _, _) = Journal::open(&store_path(&dir), 5, Some(faults.clone())).unwrap();
        let first = j.append(1, [batch("a", 1, 1)].iter()).unwrap();
        faults.fail();
        assert!(j.append(2, [batch("a", 2, 1)].iter()).is_err());
        // The cut back failed too: not used until emptied.
        assert!(!j.usable());
        assert_eq!(j.len(), first);
        j.clear();
        assert!(!j.usable(), "cleared while the disk still fails");
        faults.heal();
        j.clear();
        assert!(j.usable() && j.is_empty());
        let (_, records, _) = Journal::open(&store_path(&dir), 5, None).unwrap();
        assert!(
            records.is_empty(),
            "a broken journal is zeroed at its start"
        );
    }

    #[test]
    fn a_new_lap_ends_where_its_records_do() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _, _) = Journal::open(&store_path(&dir), 5, None).unwrap();
        for no in 1..=3 {
            j.append(no, [batch("a", no as u8, 1)].iter()).unwrap();
        }
        // Same size as the record it overwrites: the old second record follows it.
        j.clear();
        j.append(4, [batch("a", 4, 1)].iter()).unwrap();
        let (_, records, _) = Journal::open(&store_path(&dir), 5, None).unwrap();
        assert_eq!(records.iter().map(|r| r.no).collect::<Vec<_>>(), vec![4]);
        // Longer: part of an old record follows it, which fails its checksum.
        j.clear();
        j.append(5, [batch("a", 5, 3)].iter()).unwrap();
        j.append(6, [batch("a", 8, 1)].iter()).unwrap();
        let (_, records, _) = Journal::open(&store_path(&dir), 5, None).unwrap();
        assert_eq!(records.iter().map(|r| r.no).collect::<Vec<_>>(), vec![5, 6]);
    }

    #[test]
    fn cut_drops_the_records_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _, _) = Journal::open(&store_path(&dir), 5, None).unwrap();
        let first = j.append(1, [batch("a", 1, 1)].iter()).unwrap();
        j.append(2, [batch("a", 2, 1)].iter()).unwrap();
        j.cut(first);
        assert_eq!(j.len(), first);
        j.append(3, [batch("a", 3, 1)].iter()).unwrap();
        let (_, records, torn) = Journal::open(&store_path(&dir), 5, None).unwrap();
        assert_eq!(torn, None);
        assert_eq!(records.iter().map(|r| r.no).collect::<Vec<_>>(), vec![1, 3]);
    }
}
