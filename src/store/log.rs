//! The event log's packed layout. One `events` row holds every event one request
//! committed (a *chunk*): key `(workspace, first seq)`, value
//! `[CHUNK_V1][count: u32 LE]([len: u32 LE][encoded StoredEvent])*`. Event `i` of the
//! chunk has sequence `first + i`. A 100-event batch is then one B-tree insert instead
//! of a hundred; single events cost the same as before.
//!
//! The `dedup` table is packed the same way: one row per request, key
//! `(accepted_ms, first digest)`, value `[DEDUP_V1][ws len: u8][ws][digest: 16 bytes BE]*`.

use redb::ReadableTable;

use super::codec::CodecError;

pub const CHUNK_V1: u8 = 1;
pub const DEDUP_V1: u8 = 1;

pub type LogKey = (&'static str, u64);

pub fn encode_chunk<'a>(events: impl ExactSizeIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut chunk = ChunkBuilder::new(events.len());
    for e in events {
        chunk.push_with(|out| out.extend_from_slice(e));
    }
    chunk.finish()
}

/// A chunk written event by event, each encoded straight into it (no buffer per
/// event).
pub struct ChunkBuilder {
    out: Vec<u8>,
    count: u32,
}

impl ChunkBuilder {
    /// A chunk with room for about `events` events.
    pub fn new(events: usize) -> Self {
        let mut out = Vec::with_capacity(5 + events * 520);
        out.push(CHUNK_V1);
        out.extend_from_slice(&0u32.to_le_bytes());
        ChunkBuilder { out, count: 0 }
    }

    /// Appends one event: `write` puts its encoded bytes at the end of the buffer.
    pub fn push_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        let at = self.out.len();
        self.out.extend_from_slice(&0u32.to_le_bytes());
        write(&mut self.out);
        let len = (self.out.len() - at - 4) as u32;
        self.out[at..at + 4].copy_from_slice(&len.to_le_bytes());
        self.count += 1;
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.out[1..5].copy_from_slice(&self.count.to_le_bytes());
        self.out
    }
}

fn read_u32(b: &[u8], at: usize) -> Result<u32, CodecError> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or(CodecError::Truncated)
}

/// The encoded events of a chunk, in sequence order.
pub fn chunk_events(b: &[u8]) -> Result<Vec<&[u8]>, CodecError> {
    match b.first() {
        None => return Err(CodecError::Empty),
        Some(&CHUNK_V1) => {}
        Some(&v) => return Err(CodecError::UnknownVersion(v)),
    }
    let n = read_u32(b, 1)? as usize;
    let mut out = Vec::with_capacity(n);
    let mut at = 5;
    for _ in 0..n {
        let len = read_u32(b, at)? as usize;
        at += 4;
        out.push(b.get(at..at + len).ok_or(CodecError::Truncated)?);
        at += len;
    }
    Ok(out)
}

/// The number of events in a chunk (read from its header alone).
pub fn chunk_len(b: &[u8]) -> Result<u64, CodecError> {
    Ok(u64::from(read_u32(b, 1)?))
}

/// The next sequence number of a workspace's log (1 for an empty log).
pub fn head<T: ReadableTable<LogKey, &'static [u8]>>(t: &T, ws: &str) -> Result<u64, redb::Error> {
    match t.range((ws, 0u64)..=(ws, u64::MAX))?.next_back() {
        Some(row) => {
            let (k, v) = row?;
            Ok(k.value().1 + chunk_len(v.value()).map_err(corrupt)?)
        }
        None => Ok(1),
    }
}

fn corrupt(e: CodecError) -> redb::Error {
    redb::Error::Corrupted(format!("event log: {e}"))
}

/// Up to `max` events of `ws` from sequence `from` on: `(seq, encoded event)`.
pub fn read<T: ReadableTable<LogKey, &'static [u8]>>(
    t: &T,
    ws: &str,
    from: u64,
    max: usize,
) -> Result<Vec<(u64, Vec<u8>)>, redb::Error> {
    let mut out = Vec::new();
    if max == 0 {
        return Ok(out);
    }
    // The chunk holding `from` may start before it.
    let start = match t.range((ws, 0u64)..=(ws, from))?.next_back() {
        Some(row) => row?.0.value().1,
        None => from,
    };
    for row in t.range((ws, start)..=(ws, u64::MAX))? {
        let (k, v) = row?;
        let first = k.value().1;
        for (i, e) in chunk_events(v.value())
            .map_err(corrupt)?
            .into_iter()
            .enumerate()
        {
            let seq = first + i as u64;
            if seq < from {
                continue;
            }
            out.push((seq, e.to_vec()));
            if out.len() == max {
                return Ok(out);
            }
        }
    }
    Ok(out)
}

/// One event by sequence number.
pub fn get<T: ReadableTable<LogKey, &'static [u8]>>(
    t: &T,
    ws: &str,
    seq: u64,
) -> Result<Option<Vec<u8>>, redb::Error> {
    let Some(row) = t.range((ws, 0u64)..=(ws, seq))?.next_back() else {
        return Ok(None);
    };
    let (k, v) = row?;
    let idx = (seq - k.value().1) as usize;
    Ok(chunk_events(v.value())
        .map_err(corrupt)?
        .get(idx)
        .map(|e| e.to_vec()))
}

pub fn encode_dedup(ws: &str, digests: impl Iterator<Item = u128>) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + ws.len() + 16 * 8);
    out.push(DEDUP_V1);
    out.push(ws.len().min(255) as u8);
    out.extend_from_slice(&ws.as_bytes()[..ws.len().min(255)]);
    for d in digests {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out
}

pub fn decode_dedup(b: &[u8]) -> Result<(&str, Vec<u128>), CodecError> {
    match b.first() {
        None => return Err(CodecError::Empty),
        Some(&DEDUP_V1) => {}
        Some(&v) => return Err(CodecError::UnknownVersion(v)),
    }
    let wl = *b.get(1).ok_or(CodecError::Truncated)? as usize;
    let ws = b.get(2..2 + wl).ok_or(CodecError::Truncated)?;
    let ws = std::str::from_utf8(ws).map_err(|_| CodecError::Truncated)?;
    let rest = &b[2 + wl..];
    if !rest.len().is_multiple_of(16) {
        return Err(CodecError::Truncated);
    }
    let digests = rest
        .chunks_exact(16)
        .map(|c| {
            let mut a = [0u8; 16];
            a.copy_from_slice(c);
            u128::from_be_bytes(a)
        })
        .collect();
    Ok((ws, digests))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_roundtrip_and_truncation() {
        let evs: Vec<Vec<u8>> = vec![b"a".to_vec(), b"".to_vec(), b"xyz".to_vec()];
        let c = encode_chunk(evs.iter().map(Vec::as_slice));
        let back = chunk_events(&c).unwrap();
        assert_eq!(back, vec![&b"a"[..], b"", b"xyz"]);
        assert!(matches!(
            chunk_events(&c[..c.len() - 1]),
            Err(CodecError::Truncated)
        ));
        let d = encode_dedup("ws1", [1u128, u128::MAX].into_iter());
        assert_eq!(decode_dedup(&d).unwrap(), ("ws1", vec![1u128, u128::MAX]));
    }

    #[test]
    fn read_get_head_across_chunks() {
        let dir = tempfile_dir();
        let db = redb::Database::create(dir.join("t.redb")).unwrap();
        let w = db.begin_write().unwrap();
        {
            let mut t = w.open_table(super::super::EVENTS).unwrap();
            let e = |s: &str| s.as_bytes().to_vec();
            t.insert(
                ("a", 1),
                encode_chunk([e("1"), e("2"), e("3")].iter().map(Vec::as_slice)).as_slice(),
            )
            .unwrap();
            t.insert(
                ("a", 4),
                encode_chunk([e("4")].iter().map(Vec::as_slice)).as_slice(),
            )
            .unwrap();
            t.insert(
                ("b", 1),
                encode_chunk([e("b1")].iter().map(Vec::as_slice)).as_slice(),
            )
            .unwrap();
            assert_eq!(head(&t, "a").unwrap(), 5);
            assert_eq!(head(&t, "c").unwrap(), 1);
            let r = read(&t, "a", 2, 10).unwrap();
            assert_eq!(r, vec![(2, e("2")), (3, e("3")), (4, e("4"))]);
            assert_eq!(read(&t, "a", 2, 1).unwrap(), vec![(2, e("2"))]);
            assert_eq!(get(&t, "a", 3).unwrap(), Some(e("3")));
            assert_eq!(get(&t, "a", 9).unwrap(), None);
        }
        w.commit().unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("sluice-log-test-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
