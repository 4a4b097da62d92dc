//! Online backup (SPEC §7 `POST /v1/admin/backup`, §9 `sluice backup`): every table
//! copied from one read transaction, so the copy is one consistent instant of the store
//! while the daemon keeps writing. The copy is a redb file of the same schema that
//! `sluice serve` opens as its store.
//!
//! It is written beside its final name (`.<name>.<pid>.partial`, created new), committed
//! durably, then linked to the final name, which fails if that name exists: a backup
//! never overwrites a file, and a half-written copy never carries the final name.
//!
//! Two backups with one name at once: the second finds the name taken by the first
//! (in this process) and answers [`BackupError::Exists`] at once, as it would once the
//! first has finished; neither touches the other's partial file (issue 14: they used to
//! share one partial path and fail with I/O errors).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use redb::{Key, ReadableTable, TableDefinition, Value};

use super::{Store, StoreError, TableVisitor};

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0}")]
    InvalidName(String),
    #[error(
        "a file named {0} already exists (or is being written) in the backup folder; choose another name"
    )]
    Exists(String),
    #[error("the store could not be read: {0}")]
    Store(#[from] StoreError),
    #[error("the backup could not be written: {0}")]
    Io(String),
}

/// A name is one plain file name: 1–128 of `A-Z a-z 0-9 . _ -`, not starting with a dot.
pub fn check_name(name: &str) -> Result<(), BackupError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(BackupError::InvalidName(format!(
            "name {name:?} must be 1-128 characters of letters, digits, '.', '_' or '-', not starting with '.'"
        )))
    }
}

/// Backups being written by this process, by target path.
static WRITING: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// The claim on a target name while its backup is written; released on drop.
struct Claim(PathBuf);

impl Claim {
    /// Claims `target`, or `None` when another backup of this process holds it.
    fn take(target: &Path) -> Option<Claim> {
        WRITING
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(target.to_path_buf())
            .then(|| Claim(target.to_path_buf()))
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        WRITING
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.0);
    }
}

/// Removes partial files of `name` left by processes that no longer run (a crash
/// mid-backup); best effort, where `/proc` tells which processes run.
fn remove_stale_partials(dir: &Path, name: &str) {
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let prefix = format!(".{name}.");
    for e in entries.flatten() {
        let file = e.file_name();
        let Some(pid) = file
            .to_str()
            .and_then(|f| f.strip_prefix(&prefix))
            .and_then(|f| f.strip_suffix(".partial"))
        else {
            continue;
        };
        let ended = pid
            .parse::<u32>()
            .is_ok_and(|pid| pid != std::process::id() && !proc.join(pid.to_string()).exists());
        if ended {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// The mode of a backup file: the owner reads and writes, its group reads.
pub const BACKUP_MODE: u32 = 0o640;

fn cleanup_partial(partial: &Path, e: BackupError) -> BackupError {
    let _ = std::fs::remove_file(partial);
    e
}

/// Writes the backup `dir/name` and returns its path and size in bytes.
pub fn backup(store: &Store, dir: &Path, name: &str) -> Result<(PathBuf, u64), BackupError> {
    check_name(name)?;
    let io = |what: &str, e: &dyn std::fmt::Display| BackupError::Io(format!("{what}: {e}"));
    std::fs::create_dir_all(dir).map_err(|e| io(&format!("creating {}", dir.display()), &e))?;
    let target = dir.join(name);
    let exists = || BackupError::Exists(name.to_string());
    let Some(_claim) = Claim::take(&target) else {
        return Err(exists());
    };
    if target.symlink_metadata().is_ok() {
        return Err(exists());
    }
    remove_stale_partials(dir, name);
    // Ours alone: named for this process, which holds the claim on `name`. A file of
    // that name is from a process that had this pid before: not running any more.
    let partial = dir.join(format!(".{name}.{}.partial", std::process::id()));
    let _ = std::fs::remove_file(&partial);
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        // 0640 whatever the umask: a copy of the store holds what the store holds.
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(BACKUP_MODE)
            .open(&partial)
            .map_err(|e| io(&format!("creating {}", partial.display()), &e))?;
        f.set_permissions(std::fs::Permissions::from_mode(BACKUP_MODE))
            .map_err(|e| cleanup_partial(&partial, io("setting the backup's mode", &e)))?;
    }
    let copied = store.read(|src| {
        let copy = || -> Result<(), redb::Error> {
            let db = redb::Database::create(&partial)?;
            let mut w = db.begin_write()?;
            w.set_durability(redb::Durability::Immediate)?;
            super::visit_tables(&mut Copy { src, dst: &w })?;
            // A journal of its own: restored over a store, it replays none of the
            // records the live store's journal holds.
            w.open_table(super::META)?.insert(
                super::journal::EPOCH_KEY,
                super::journal::new_epoch().to_le_bytes().as_slice(),
            )?;
            w.commit()?;
            Ok(())
        };
        Ok(copy())
    });
    let cleanup = |e: BackupError| {
        let _ = std::fs::remove_file(&partial);
        e
    };
    copied
        .map_err(|e| cleanup(e.into()))?
        .map_err(|e| cleanup(io("copying the store", &e)))?;
    // Durable on disk under the final name, or not there at all.
    std::fs::File::open(&partial)
        .and_then(|f| f.sync_all())
        .map_err(|e| cleanup(io("syncing the backup", &e)))?;
    match std::fs::hard_link(&partial, &target) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(cleanup(exists()));
        }
        Err(e) => return Err(cleanup(io("naming the backup", &e))),
    }
    let _ = std::fs::remove_file(&partial);
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    let bytes = std::fs::metadata(&target)
        .map_err(|e| io("reading the backup's size", &e))?
        .len();
    Ok((target, bytes))
}

/// What [`verify_backup`] found in a backup file.
#[derive(Debug)]
pub struct BackupCheck {
    /// The file's `schema_version`, if it has one.
    pub schema_version: Option<u32>,
    /// Its audit chain.
    pub audit: crate::audit::Verify,
}

/// Opens a backup (or a stopped daemon's store) read-only and checks that it opens as a
/// redb file, that its schema is one this build reads, and its audit chain. Never
/// writes to it.
pub fn verify_backup(path: &Path) -> Result<BackupCheck, String> {
    use redb::ReadableDatabase;
    let db = redb::ReadOnlyDatabase::open(path)
        .map_err(|e| format!("{} does not open as a sluice store: {e}", path.display()))?;
    let txn = db
        .begin_read()
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let schema_version = match txn.open_table(super::META) {
        Ok(meta) => meta
            .get("schema_version")
            .map_err(|e| format!("{}: cannot read the schema: {e}", path.display()))?
            .and_then(|v| v.value().try_into().ok().map(u32::from_le_bytes)),
        Err(redb::TableError::TableDoesNotExist(_)) => None,
        Err(e) => return Err(format!("{}: cannot read the schema: {e}", path.display())),
    };
    match schema_version {
        Some(v) if v <= super::SCHEMA_VERSION => {}
        Some(v) => {
            return Err(format!(
                "{}: schema {v} is newer than this build reads ({}); use a newer sluice",
                path.display(),
                super::SCHEMA_VERSION
            ));
        }
        None => {
            return Err(format!(
                "{}: no schema_version: not a sluice store",
                path.display()
            ));
        }
    }
    let audit = crate::audit::verify(&txn)
        .map_err(|e| format!("{}: cannot read the audit chain: {e}", path.display()))?;
    Ok(BackupCheck {
        schema_version,
        audit,
    })
}

/// Copies each table it visits from `src` into `dst`.
struct Copy<'a> {
    src: &'a redb::ReadTransaction,
    dst: &'a redb::WriteTransaction,
}

impl TableVisitor for Copy<'_> {
    fn visit<K: Key + 'static, V: Value + 'static>(
        &mut self,
        def: TableDefinition<K, V>,
    ) -> Result<(), redb::Error> {
        let from = match self.src.open_table(def) {
            Ok(t) => t,
            // Not created yet in the source: nothing to copy.
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let mut to = self.dst.open_table(def)?;
        for row in from.iter()? {
            let (k, v) = row?;
            to.insert(k.value(), v.value())?;
        }
        Ok(())
    }
}
