//! Reading the config file and `*_file` secrets: regular files only (symlinks to them
//! are followed), never more than a cap. A FIFO, a device such as `/dev/zero`, a
//! directory or a socket is refused before it is read (issue 14: `config check
//! /dev/zero` grew without end, and a FIFO as a `*_file` secret hung the daemon's
//! reload); the file is opened without blocking and checked again on the open handle, so
//! a path swapped for a FIFO between the two checks cannot hang either.

use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// The largest config file read: 4 MiB.
pub const CONFIG_MAX_BYTES: u64 = 4 << 20;
/// The largest `*_file` secret read: 64 KiB.
pub const SECRET_MAX_BYTES: u64 = 64 << 10;

/// "4 MiB", "64 KiB", "100 bytes".
fn size(n: u64) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} bytes")
    }
}

/// What a path that is not a regular file is.
fn kind(m: &Metadata) -> &'static str {
    let t = m.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a file"
    }
}

fn check(m: &Metadata, max: u64) -> Result<(), String> {
    if !m.is_file() {
        return Err(format!("not a regular file ({})", kind(m)));
    }
    if m.len() > max {
        return Err(format!("larger than {} ({} bytes)", size(max), m.len()));
    }
    Ok(())
}

/// The text of the regular file at `path` (symlinks followed), at most `max` bytes.
/// The error says why, without the path (callers name it).
pub fn read_text(path: &Path, max: u64) -> Result<String, String> {
    check(&std::fs::metadata(path).map_err(|e| e.to_string())?, max)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .map_err(|e| e.to_string())?;
    check(&file.metadata().map_err(|e| e.to_string())?, max)?;
    let mut bytes = Vec::new();
    // One byte more than the cap tells a file that grew past it since the check.
    (&file as &File)
        .take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > max {
        return Err(format!("larger than {}", size(max)));
    }
    String::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())
}

/// A first start: when the config at `config_path` names a `server.admin_token_file`
/// that does not exist, creates it with a new random token (64 hex characters, mode
/// 0600, never replacing a file), so the admin API and the CLI (which reads the same
/// file through `--config`) work with no other step. Returns its path when it made one;
/// None when the key is absent, the file exists, or the config does not parse (loading
/// it reports that).
pub fn create_missing_admin_token_file(
    config_path: &Path,
) -> std::io::Result<Option<std::path::PathBuf>> {
    let Ok(text) = read_text(config_path, CONFIG_MAX_BYTES) else {
        return Ok(None);
    };
    let Ok(doc) = toml_edit::Document::parse(text.as_str()) else {
        return Ok(None);
    };
    let Some(name) = doc
        .get("server")
        .and_then(|s| s.get("admin_token_file"))
        .and_then(|v| v.as_str())
        .filter(|v| !v.trim().is_empty())
    else {
        return Ok(None);
    };
    let path = match config_path.parent() {
        Some(dir) if Path::new(name).is_relative() => dir.join(name),
        _ => Path::new(name).to_path_buf(),
    };
    if std::fs::symlink_metadata(&path).is_ok() {
        return Ok(None);
    }
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    std::io::Write::write_all(&mut f, format!("{}\n", hex::encode(bytes)).as_bytes())?;
    f.sync_all()?;
    Ok(Some(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(size(CONFIG_MAX_BYTES), "4 MiB");
        assert_eq!(size(SECRET_MAX_BYTES), "64 KiB");
        assert_eq!(size(1000), "1000 bytes");
    }

    #[test]
    fn refuses_what_is_not_a_small_regular_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = read_text(dir.path(), 10).expect_err("a directory");
        assert_eq!(e, "not a regular file (a directory)");
        let e = read_text(Path::new("/dev/zero"), 10).expect_err("a device");
        assert_eq!(e, "not a regular file (a character device)");
        let f = dir.path().join("f");
        std::fs::write(&f, "0123456789a").expect("write");
        assert!(
            read_text(&f, 10)
                .expect_err("11 bytes")
                .starts_with("larger than 10 bytes")
        );
        assert_eq!(read_text(&f, 11).as_deref(), Ok("0123456789a"));
        std::fs::write(&f, [0xff, 0xfe]).expect("write");
        assert_eq!(read_text(&f, 11).expect_err("bytes"), "not UTF-8 text");
        assert!(read_text(&dir.path().join("none"), 10).is_err());
    }
}
