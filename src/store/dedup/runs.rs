//! Sorted runs on disk. A run is an immutable set of `(digest, `[`Mark`]`)` stored as
//! blocks in `dedup_runs`: key `(run id, first digest of the block)`, value
//! `[BLOCK_V2][count: u16 LE]([digest: 16 bytes BE][accept ms: i64 LE][seq: u64 LE])*`,
//! digests ascending (`BLOCK_V1` blocks, without the sequence, are still read). One B-tree row holds up to [`BLOCK`] entries, so writing a run (a seal
//! or a merge) is a sequential append of a few thousand rows, and finding a digest is
//! one range look-up and a binary search.

use redb::{ReadableTable, TableDefinition};

use super::{Mark, NO_SEQ};

pub const DEDUP_RUNS: TableDefinition<(u64, u128), &[u8]> = TableDefinition::new("dedup_runs");

/// Entries per block: 120 × 32 bytes + 3 keeps a row with its key inside one 4 KiB
/// page (a 256-entry block took a 16 KiB page, half of it empty, and every look-up
/// read all of it). Blocks of other sizes (256 before) are read the same way.
pub const BLOCK: usize = 120;
const BLOCK_V1: u8 = 1;
const BLOCK_V2: u8 = 2;
const ENTRY_V1: usize = 24;
const ENTRY: usize = 32;

pub fn encode_block(entries: &[(u128, Mark)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(3 + entries.len() * ENTRY);
    out.push(BLOCK_V2);
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    for (d, m) in entries {
        out.extend_from_slice(&d.to_be_bytes());
        out.extend_from_slice(&m.ms.to_le_bytes());
        out.extend_from_slice(&m.seq.to_le_bytes());
    }
    out
}

/// A block's entry count, entry size and entries; None when it is not a block.
fn layout(b: &[u8]) -> Option<(usize, usize, &[u8])> {
    let size = match b.first() {
        Some(&BLOCK_V1) => ENTRY_V1,
        Some(&BLOCK_V2) => ENTRY,
        _ => return None,
    };
    if b.len() < 3 {
        return None;
    }
    let n = u16::from_le_bytes([b[1], b[2]]) as usize;
    let body = b.get(3..3 + n * size)?;
    Some((n, size, body))
}

fn entry_at(body: &[u8], size: usize, i: usize) -> (u128, Mark) {
    let c = &body[i * size..(i + 1) * size];
    let d = u128::from_be_bytes(c[..16].try_into().expect("16 bytes"));
    let ms = i64::from_le_bytes(c[16..24].try_into().expect("8 bytes"));
    let seq = if size == ENTRY {
        u64::from_le_bytes(c[24..32].try_into().expect("8 bytes"))
    } else {
        NO_SEQ
    };
    (d, Mark { ms, seq })
}

/// The entries of a block; None when it is not one this build reads.
pub fn decode_block(b: &[u8]) -> Option<Vec<(u128, Mark)>> {
    let (n, size, body) = layout(b)?;
    if body.len() + 3 != b.len() {
        return None;
    }
    Some((0..n).map(|i| entry_at(body, size, i)).collect())
}

/// Binary search of one encoded block without decoding it whole.
fn search_block(b: &[u8], d: u128) -> Option<Mark> {
    let (n, size, body) = layout(b)?;
    let at = |i: usize| u128::from_be_bytes(body[i * size..i * size + 16].try_into().expect("16"));
    let (mut lo, mut hi) = (0usize, n);
    while lo < hi {
        let mid = usize::midpoint(lo, hi);
        match at(mid).cmp(&d) {
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
            std::cmp::Ordering::Equal => return Some(entry_at(body, size, mid).1),
        }
    }
    None
}

/// The mark of `d` in run `run`, if the run holds it.
pub fn find<T: ReadableTable<(u64, u128), &'static [u8]>>(
    t: &T,
    run: u64,
    d: u128,
) -> Result<Option<Mark>, redb::Error> {
    // One-sided: one descent of the tree (a two-sided range seeks both ends). The row
    // found may be an earlier run's last block when `d` is below this run's first.
    match t.range(..=(run, d))?.next_back() {
        Some(row) => {
            let (k, v) = row?;
            Ok(if k.value().0 == run {
                search_block(v.value(), d)
            } else {
                None
            })
        }
        None => Ok(None),
    }
}

/// Entries read from a run, and where the next block starts (None: the run is done).
pub type Blocks = (Vec<(u128, Mark)>, Option<u128>);

/// Up to `max_blocks` blocks of `run` from the block starting at or after `from`:
/// their entries in order, and where the next block starts (None: the run is done).
pub fn read_blocks<T: ReadableTable<(u64, u128), &'static [u8]>>(
    t: &T,
    run: u64,
    from: u128,
    max_blocks: usize,
) -> Result<Blocks, redb::Error> {
    let mut out = Vec::new();
    let mut iter = t.range((run, from)..=(run, u128::MAX))?;
    for _ in 0..max_blocks {
        match iter.next() {
            Some(row) => {
                let (_, v) = row?;
                out.extend(decode_block(v.value()).ok_or_else(|| {
                    redb::Error::Corrupted(format!("dedup run {run}: unreadable block"))
                })?);
            }
            None => return Ok((out, None)),
        }
    }
    let next = match iter.next() {
        Some(row) => Some(row?.0.value().1),
        None => None,
    };
    Ok((out, next))
}

/// Writes sorted `entries` as blocks of `run` (the caller keeps them sorted across
/// calls: each call's first digest is above the previous call's last).
pub fn write_blocks(
    t: &mut redb::Table<(u64, u128), &[u8]>,
    run: u64,
    entries: &[(u128, Mark)],
) -> Result<(), redb::Error> {
    for chunk in entries.chunks(BLOCK) {
        t.insert((run, chunk[0].0), encode_block(chunk).as_slice())?;
    }
    Ok(())
}

/// Deletes up to `max_blocks` blocks of `run`; returns how many went (fewer: the run
/// is gone).
pub fn delete_blocks(
    t: &mut redb::Table<(u64, u128), &[u8]>,
    run: u64,
    max_blocks: usize,
) -> Result<usize, redb::Error> {
    let keys: Vec<u128> = t
        .range((run, 0u128)..=(run, u128::MAX))?
        .take(max_blocks)
        .map(|r| r.map(|(k, _)| k.value().1))
        .collect::<Result<_, _>>()?;
    for k in &keys {
        t.remove((run, *k))?;
    }
    Ok(keys.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_roundtrip_and_search() {
        let mk = |ms: i64, seq: u64| Mark { ms, seq };
        let entries: Vec<(u128, Mark)> = (0..300u128)
            .map(|i| (i * 7 + 3, mk(i as i64 * 10, 1_000 + i as u64)))
            .collect();
        let b = encode_block(&entries[..BLOCK]);
        assert_eq!(decode_block(&b).unwrap(), entries[..BLOCK].to_vec());
        for (d, ms) in &entries[..BLOCK] {
            assert_eq!(search_block(&b, *d), Some(*ms));
            assert_eq!(search_block(&b, d + 1), None);
        }
        assert_eq!(search_block(&b, 0), None);
        assert!(decode_block(&b[..b.len() - 1]).is_none());

        let dir = tempfile::tempdir().unwrap();
        let db = redb::Database::create(dir.path().join("r.redb")).unwrap();
        let w = db.begin_write().unwrap();
        {
            let mut t = w.open_table(DEDUP_RUNS).unwrap();
            write_blocks(&mut t, 2, &entries).unwrap();
            write_blocks(&mut t, 3, &[(1, mk(1, 9))]).unwrap();
            for (d, ms) in &entries {
                assert_eq!(find(&t, 2, *d).unwrap(), Some(*ms));
                assert_eq!(find(&t, 2, d + 1).unwrap(), None);
            }
            assert_eq!(find(&t, 2, 1).unwrap(), None, "another run's digest");
            assert_eq!(
                find(&t, 3, 0).unwrap(),
                None,
                "below run 3: run 2's last block"
            );
            assert_eq!(find(&t, 1, 5).unwrap(), None, "no run below");
            assert_eq!(find(&t, 3, 1).unwrap(), Some(mk(1, 9)));
            let (got, next) = read_blocks(&t, 2, 0, 1).unwrap();
            assert_eq!(got.len(), BLOCK);
            let (rest, end) = read_blocks(&t, 2, next.unwrap(), 5).unwrap();
            const { assert!(300 - BLOCK <= 4 * BLOCK, "read in one call") };
            assert_eq!(rest.len(), 300 - BLOCK);
            assert_eq!(end, None);
            assert_eq!(delete_blocks(&mut t, 2, 1).unwrap(), 1);
            assert_eq!(
                delete_blocks(&mut t, 2, 5).unwrap(),
                300usize.div_ceil(BLOCK) - 1
            );
            assert_eq!(find(&t, 3, 1).unwrap(), Some(mk(1, 9)), "other runs stay");
        }
        w.commit().unwrap();
    }

    #[test]
    fn blocks_written_before_sequences_are_still_read() {
        // A BLOCK_V1 block: (digest, accept ms) pairs.
        let mut b = vec![BLOCK_V1];
        b.extend_from_slice(&2u16.to_le_bytes());
        for (d, ms) in [(5u128, 50i64), (9, 90)] {
            b.extend_from_slice(&d.to_be_bytes());
            b.extend_from_slice(&ms.to_le_bytes());
        }
        let old = |ms| Mark { ms, seq: NO_SEQ };
        assert_eq!(decode_block(&b).unwrap(), vec![(5, old(50)), (9, old(90))]);
        assert_eq!(search_block(&b, 9), Some(old(90)));
        assert_eq!(search_block(&b, 7), None);
    }
}
