//! A storage backend that wraps redb's real [`FileBackend`] and can be told to fail
//! writes and syncs, the way a full disk or a dying device does. Tests use it to prove
//! that a failed commit answers 503, accepts nothing in part, and that the store
//! recovers by itself once the fault clears. In production the switch is never set.

use std::io;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};

/// Shared on/off switch for injected I/O failures.
#[derive(Debug, Default)]
pub struct FaultSwitch {
    failing: AtomicBool,
    injected: AtomicU64,
    /// When set (plus one), the free space the store's disk reports (a full disk).
    free_bytes: AtomicU64,
}

impl FaultSwitch {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// From now on every write, set_len and sync fails with `ENOSPC`.
    pub fn fail(&self) {
        self.failing.store(true, Ordering::SeqCst);
    }

    pub fn heal(&self) {
        self.failing.store(false, Ordering::SeqCst);
    }

    pub fn is_failing(&self) -> bool {
        self.failing.load(Ordering::SeqCst)
    }

    /// Makes the store's disk report this much free space (None: the real figure).
    pub fn set_free_bytes(&self, bytes: Option<u64>) {
        self.free_bytes
            .store(bytes.map_or(0, |b| b.saturating_add(1)), Ordering::SeqCst);
    }

    /// The free space to report instead of the real one, if set.
    pub fn free_bytes(&self) -> Option<u64> {
        match self.free_bytes.load(Ordering::SeqCst) {
            0 => None,
            n => Some(n - 1),
        }
    }

    /// How many operations were made to fail so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::SeqCst)
    }

    /// Fails like the store's file does while the switch is on (the ingest journal).
    pub fn check_io(&self) -> io::Result<()> {
        self.check()
    }

    fn check(&self) -> io::Result<()> {
        if self.is_failing() {
            self.injected.fetch_add(1, Ordering::SeqCst);
            Err(io::Error::from_raw_os_error(28)) // ENOSPC
        } else {
            Ok(())
        }
    }
}

#[derive(Debug)]
pub struct FaultyBackend {
    inner: FileBackend,
    switch: Arc<FaultSwitch>,
}

impl FaultyBackend {
    pub fn new(inner: FileBackend, switch: Arc<FaultSwitch>) -> Self {
        Self { inner, switch }
    }
}

impl StorageBackend for FaultyBackend {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.switch.check()?;
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.switch.check()?;
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.switch.check()?;
        self.inner.write(offset, data)
    }

    fn close(&self) -> io::Result<()> {
        self.inner.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(start, end)
    }
}
