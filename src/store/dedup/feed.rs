//! Reads a merge's sources ahead of the writer, on a thread of its own.
//!
//! A merge's sources are runs written minutes or hours before: pages the page cache
//! may have given back since (the soak's box gives back part of an idle store file
//! within minutes). Read inside the writer's commits, every block that waits for the
//! disk holds up that commit, and with it every request the commit answers. So a
//! [`Feed`] reads each source in order through read transactions of its own (the
//! sources are live runs, unchanged until the merge that replaces them goes live),
//! keeps up to [`AHEAD`] reads of each buffered, and the writer takes them as the
//! merge consumes them; it waits only when the reader is behind, and that wait is
//! counted ([`Feed::waited`]).

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redb::{Database, ReadableDatabase};

use super::Mark;
use super::runs::{self, DEDUP_RUNS};

/// Blocks per read (a few hundred entries).
const READ_BLOCKS: usize = 4;
/// Reads buffered per source: about 60 KB of entries per source.
pub const AHEAD: usize = 16;
/// A read transaction is renewed after this many reads, so it never pins pages that
/// later commits freed for long.
const TXN_READS: usize = 64;

type Chunk = Vec<(u128, Mark)>;

struct State {
    /// Per source: reads not yet taken.
    queues: Vec<VecDeque<Chunk>>,
    /// Per source: the reader has read it to the end.
    done: Vec<bool>,
    /// What stopped the reader, if an error did.
    error: Option<redb::Error>,
    /// The reader thread has ended (done, stopped, failed or panicked).
    exited: bool,
    /// The merge is gone: the reader stops.
    stop: bool,
}

struct Shared {
    state: Mutex<State>,
    cv: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The read-ahead of one merge's sources. Dropping it stops its reader and waits for
/// it, so no read transaction outlives the merge (the store can be closed or reopened
/// right after).
pub struct Feed {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    waited: Duration,
}

impl Feed {
    /// Starts reading `runs` (the merge's sources, in the merge's order).
    pub fn start(db: Arc<Database>, runs: Vec<u64>) -> std::io::Result<Feed> {
        let n = runs.len();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queues: (0..n).map(|_| VecDeque::new()).collect(),
                done: vec![false; n],
                error: None,
                exited: false,
                stop: false,
            }),
            cv: Condvar::new(),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("sluice-merge-read".into())
            .spawn(move || {
                let _exit = Exited(&s);
                read_ahead(&db, &runs, &s);
            })?;
        Ok(Feed {
            shared,
            thread: Some(thread),
            waited: Duration::ZERO,
        })
    }

    /// The next entries of source `i`, in order; None once it is read to the end.
    pub fn next(&mut self, i: usize) -> Result<Option<Chunk>, redb::Error> {
        let mut s = self.shared.lock();
        let mut since: Option<Instant> = None;
        loop {
            if let Some(c) = s.queues[i].pop_front() {
                drop(s);
                self.shared.cv.notify_all();
                if let Some(t) = since {
                    self.waited += t.elapsed();
                }
                return Ok(Some(c));
            }
            if s.done[i] {
                return Ok(None);
            }
            if let Some(e) = s.error.take() {
                return Err(e);
            }
            if s.exited {
                return Err(redb::Error::Io(std::io::Error::other(
                    "the dedup merge's source reader stopped",
                )));
            }
            since.get_or_insert_with(Instant::now);
            s = self
                .shared
                .cv
                .wait(s)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// How long [`Feed::next`] waited for the reader in all.
    pub fn waited(&self) -> Duration {
        self.waited
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Marks the reader ended when its thread leaves, by any way (a panic included), so
/// the writer never waits for a reader that is gone.
struct Exited<'a>(&'a Shared);

impl Drop for Exited<'_> {
    fn drop(&mut self) {
        self.0.lock().exited = true;
        self.0.cv.notify_all();
    }
}

/// The reader: reads the source with the fewest reads buffered, until each is read to
/// the end or the feed is dropped.
fn read_ahead(db: &Database, runs: &[u64], shared: &Shared) {
    let mut next: Vec<Option<u128>> = vec![Some(0); runs.len()];
    let mut table: Option<redb::ReadOnlyTable<(u64, u128), &'static [u8]>> = None;
    let mut reads = 0usize;
    loop {
        let i = {
            let mut s = shared.lock();
            loop {
                if s.stop {
                    return;
                }
                let pick = (0..runs.len())
                    .filter(|&i| next[i].is_some() && s.queues[i].len() < AHEAD)
                    .min_by_key(|&i| s.queues[i].len());
                if let Some(i) = pick {
                    break i;
                }
                if next.iter().all(Option::is_none) {
                    return;
                }
                s = shared.cv.wait(s).unwrap_or_else(PoisonError::into_inner);
            }
        };
        if reads.is_multiple_of(TXN_READS) {
            table = None;
        }
        reads += 1;
        let from = next[i].expect("picked a source with more to read");
        let read = read_one(db, &mut table, runs[i], from);
        let mut s = shared.lock();
        match read {
            Ok((entries, rest)) => {
                next[i] = rest;
                if !entries.is_empty() {
                    s.queues[i].push_back(entries);
                }
                if rest.is_none() {
                    s.done[i] = true;
                }
            }
            Err(e) => {
                s.error = Some(e);
                return;
            }
        }
        drop(s);
        shared.cv.notify_all();
    }
}

/// One read of `run` from the block at `from`, in the current read transaction (a new
/// one when there is none).
fn read_one(
    db: &Database,
    table: &mut Option<redb::ReadOnlyTable<(u64, u128), &'static [u8]>>,
    run: u64,
    from: u128,
) -> Result<runs::Blocks, redb::Error> {
    if table.is_none() {
        *table = Some(db.begin_read()?.open_table(DEDUP_RUNS)?);
    }
    let t = table.as_ref().expect("opened above");
    runs::read_blocks(t, run, from, READ_BLOCKS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(run: u64, n: usize) -> Vec<(u128, Mark)> {
        (0..n as u128)
            .map(|i| {
                let d = (u128::from(run) << 64) | (i * 7 + 1);
                (
                    d,
                    Mark {
                        ms: 1_000 + i as i64,
                        seq: i as u64 + 1,
                    },
                )
            })
            .collect()
    }

    /// A store holding `runs` (id, entries) as sorted runs.
    fn store(dir: &tempfile::TempDir, runs: &[(u64, usize)]) -> Arc<Database> {
        let db = Database::create(dir.path().join("feed.redb")).expect("create");
        let txn = db.begin_write().expect("write");
        {
            let mut t = txn.open_table(DEDUP_RUNS).expect("table");
            for &(run, n) in runs {
                runs::write_blocks(&mut t, run, &entries(run, n)).expect("blocks");
            }
        }
        txn.commit().expect("commit");
        Arc::new(db)
    }

    fn drain(feed: &mut Feed, i: usize) -> Vec<(u128, Mark)> {
        let mut all = Vec::new();
        while let Some(c) = feed.next(i).expect("read") {
            all.extend(c);
        }
        all
    }

    /// Each source comes whole and in order, whatever order the writer takes them in,
    /// including sources far longer than the read-ahead holds.
    #[test]
    fn each_source_comes_whole_and_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let big = runs::BLOCK * READ_BLOCKS * (AHEAD * 3) + 17;
        let db = store(&dir, &[(3, 5), (4, big), (9, runs::BLOCK)]);
        let mut feed = Feed::start(db, vec![3, 4, 9]).expect("feed");
        // Interleaved as a merge takes them: a read of each in turn.
        let mut got = vec![Vec::new(); 3];
        let mut done = [false; 3];
        while !done.iter().all(|d| *d) {
            for i in 0..3 {
                if !done[i] {
                    match feed.next(i).expect("read") {
                        Some(c) => got[i].extend(c),
                        None => done[i] = true,
                    }
                }
            }
        }
        assert_eq!(got[0], entries(3, 5));
        assert_eq!(got[1], entries(4, big));
        assert_eq!(got[2], entries(9, runs::BLOCK));
        // Read to the end, it stays at the end.
        assert_eq!(feed.next(1).expect("read"), None);
        // One source alone, after the others.
        drop(feed);
        let mut feed = Feed::start(store_again(&dir), vec![9, 3]).expect("feed");
        assert_eq!(drain(&mut feed, 1), entries(3, 5));
        assert_eq!(drain(&mut feed, 0), entries(9, runs::BLOCK));
    }

    fn store_again(dir: &tempfile::TempDir) -> Arc<Database> {
        Arc::new(Database::open(dir.path().join("feed.redb")).expect("open"))
    }

    /// Dropping a feed mid-merge (a failed commit, the store closing) stops its
    /// reader, which was waiting with its buffers full, and lets go of the database:
    /// the store can be closed and opened again at once.
    #[test]
    fn a_dropped_feed_lets_go_of_the_database_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let big = runs::BLOCK * READ_BLOCKS * (AHEAD * 4);
        let db = store(&dir, &[(1, big), (2, big)]);
        let mut feed = Feed::start(db.clone(), vec![1, 2]).expect("feed");
        assert!(feed.next(0).expect("read").is_some());
        drop(feed);
        let db =
            Arc::try_unwrap(db).unwrap_or_else(|_| panic!("the reader still holds the database"));
        drop(db);
        let _reopened = store_again(&dir);
    }

    /// A block that cannot be read fails the merge's next read with the reader's
    /// error, and never leaves the writer waiting.
    #[test]
    fn an_unreadable_block_fails_the_read_and_never_hangs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = store(&dir, &[(1, 10)]);
        {
            let txn = db.begin_write().expect("write");
            txn.open_table(DEDUP_RUNS)
                .expect("table")
                .insert((2, 5u128), [9u8, 9, 9].as_slice())
                .expect("insert");
            txn.commit().expect("commit");
        }
        let mut feed = Feed::start(db, vec![2, 1]).expect("feed");
        let err = feed.next(0).expect_err("an unreadable block");
        assert!(err.to_string().contains("unreadable block"), "{err}");
        // The reader is gone: the next read says so rather than waiting.
        assert!(feed.next(0).is_err());
    }
}
