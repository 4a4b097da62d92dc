//! The group-fsync writer: the floor of any server that answers only after its data is
//! durable. Requests queue their bodies to one writer thread, which takes everything
//! queued, appends it to one file with one write, calls `sync_data` (fdatasync) once and
//! only then tells each of those requests whether its body is durable. The ingest bench's
//! group-fsync server and the delivery bench's relay answer their clients through it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;

/// What the writer did.
#[derive(Debug, Default, Clone, Copy)]
pub struct FsyncStats {
    pub syncs: u64,
    pub requests: u64,
    pub bytes: u64,
    pub largest_group: usize,
    /// Time inside `sync_data`.
    pub sync_time: Duration,
    /// Bodies whose write or sync failed (each told `false`).
    pub failures: u64,
}

/// A body and where to say whether it is durable.
type Job = (Bytes, tokio::sync::oneshot::Sender<bool>);

/// Where requests queue their bodies (clone one per server).
pub type Jobs = std::sync::mpsc::Sender<Job>;

/// Queues `body` and waits until the writer has synced it: true when it is durable.
pub async fn append(jobs: &Jobs, body: Bytes) -> bool {
    let (tx, rx) = tokio::sync::oneshot::channel();
    jobs.send((body, tx)).is_ok() && rx.await == Ok(true)
}

/// The writer thread and its file.
pub struct GroupFsync {
    jobs: Jobs,
    writer: std::thread::JoinHandle<FsyncStats>,
    done: Arc<AtomicBool>,
    path: PathBuf,
}

impl GroupFsync {
    /// Creates `file` (it must not exist) and starts the writer on a thread named
    /// `thread`.
    pub fn start(file: &Path, thread: &str) -> GroupFsync {
        let out = std::fs::OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(file)
            .expect("create the group-fsync file");
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let done = Arc::new(AtomicBool::new(false));
        let writer_done = done.clone();
        let writer = std::thread::Builder::new()
            .name(thread.into())
            .spawn(move || write_loop(out, queue, writer_done))
            .expect("start the group-fsync writer");
        GroupFsync {
            jobs,
            writer,
            done,
            path: file.to_path_buf(),
        }
    }

    pub fn jobs(&self) -> Jobs {
        self.jobs.clone()
    }

    /// Ends the writer once nothing is queued (stop the servers holding [`Jobs`]
    /// first); its counts and the file's size.
    pub fn stop(self) -> (FsyncStats, u64) {
        drop(self.jobs);
        self.done.store(true, Ordering::Relaxed);
        let stats = self.writer.join().unwrap_or_default();
        let size = std::fs::metadata(&self.path).map_or(0, |m| m.len());
        (stats, size)
    }
}

/// One append and one fdatasync per group of queued bodies. Ends when every sender is
/// gone, or when `done` is set and nothing is queued.
fn write_loop(
    mut file: std::fs::File,
    jobs: std::sync::mpsc::Receiver<Job>,
    done: Arc<AtomicBool>,
) -> FsyncStats {
    use std::io::Write;
    use std::sync::mpsc::RecvTimeoutError;
    let mut st = FsyncStats::default();
    let mut group: Vec<Job> = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let first = match jobs.recv_timeout(Duration::from_millis(100)) {
            Ok(j) => j,
            Err(RecvTimeoutError::Timeout) if !done.load(Ordering::Relaxed) => continue,
            Err(_) => break,
        };
        group.push(first);
        while let Ok(more) = jobs.try_recv() {
            group.push(more);
        }
        buf.clear();
        for (body, _) in &group {
            buf.extend_from_slice(body);
        }
        let mut ok = file.write_all(&buf).is_ok();
        let t = Instant::now();
        ok &= file.sync_data().is_ok();
        st.sync_time += t.elapsed();
        st.syncs += 1;
        st.requests += group.len() as u64;
        st.bytes += buf.len() as u64;
        st.largest_group = st.largest_group.max(group.len());
        if !ok {
            st.failures += group.len() as u64;
        }
        for (_, tx) in group.drain(..) {
            let _ = tx.send(ok);
        }
    }
    st
}
