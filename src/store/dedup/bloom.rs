//! The filter of dedup runs written before format 3 (new runs get binary fuse filters,
//! [`super::fuse`], which give far fewer "maybe"s in the same memory), and of a run
//! past [`super::fuse::MAX_KEYS`] keys.
//!
//! A blocked Bloom filter over dedup digests: each key sets [`K`] bits inside one
//! 512-bit block (one cache line), so a lookup costs one memory access. Digests are
//! already uniform (SHA-256), so their bits are used directly; a per-filter seed keeps
//! the filters of different runs from sharing their false positives.
//!
//! Layouts: a filter written since format 2 ([`Layout::Ordered`]) picks a key's block
//! from the digest's high half alone, so keys inserted in digest order — a seal's and a
//! merge's, which are sorted — fill the blocks front to back instead of a cache miss
//! each (building a merged run's filter was a tenth of the writer's time with a full
//! window); the seed picks the bits inside the block. Filters of format 1
//! ([`Layout::Scattered`]: the block from the low half and the seed) are still read and
//! asked as they were written.
//!
//! Sized by [`bits_per_key`]: 12 bits per key for a large run (about 0.4% false
//! positives), 14 for one of at most [`MID_RUN`] keys (about 0.2%), 18 for one of at
//! most [`SMALL_RUN`] (about 0.06%), measured by the tests below. A "maybe" costs an
//! exact look-up on disk (tens of µs: a B-tree descent through redb's cache) and every
//! run's filter is asked for each new digest, so the share of digests looked up on disk
//! is the sum of the runs' rates. Most runs are small (the leveled runs of the open
//! epoch), most keys are in a few large ones: more bits for the small runs cut the
//! look-ups about three times for a few MB. A "no" is certain.

use super::filter::{READ_RESERVE, grow_for_row};

/// Bits per key of a large run.
pub const BITS_PER_KEY: u64 = 12;
/// Bits per key of a run of at most [`MID_RUN`] keys.
pub const MID_BITS_PER_KEY: u64 = 14;
/// Bits per key of a run of at most [`SMALL_RUN`] keys.
pub const SMALL_BITS_PER_KEY: u64 = 18;
/// Keys up to which a run is small: the first two levels of the open epoch (runs of
/// 440 Ki and 1.7 Mi digests).
pub const SMALL_RUN: u64 = 3_000_000;
/// Keys up to which a run gets [`MID_BITS_PER_KEY`]: the third level (7 Mi).
pub const MID_RUN: u64 = 10_000_000;

/// Bits set per key (each from 9 bits of the digest's high half).
pub const K: u32 = 7;
const WORDS: usize = 8;

/// Serialized versions: the layout a filter was built with.
const BLOOM_V1: u8 = 1;
const BLOOM_V2: u8 = 2;

/// Where a key's bits go (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Format 1: block from the low half xor the seed, bits from the high half.
    Scattered,
    /// Format 2: block from the high half, bits from the low half xor the seed.
    Ordered,
}

impl Layout {
    fn version(self) -> u8 {
        match self {
            Layout::Scattered => BLOOM_V1,
            Layout::Ordered => BLOOM_V2,
        }
    }

    fn of(version: u8) -> Option<Self> {
        match version {
            BLOOM_V1 => Some(Layout::Scattered),
            BLOOM_V2 => Some(Layout::Ordered),
            _ => None,
        }
    }
}

/// The bits per key a filter for `n` keys gets.
pub fn bits_per_key(n: u64) -> u64 {
    if n <= SMALL_RUN {
        SMALL_BITS_PER_KEY
    } else if n <= MID_RUN {
        MID_BITS_PER_KEY
    } else {
        BITS_PER_KEY
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct Bloom {
    layout: Layout,
    seed: u64,
    blocks: Vec<[u64; WORDS]>,
}

impl std::fmt::Debug for Bloom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bloom({} blocks)", self.blocks.len())
    }
}

/// splitmix64's finalizer: seeds here, and the fuse filter's key hash
/// ([`super::fuse`]).
#[inline]
pub(super) fn mix(x: u64) -> u64 {
    // splitmix64's finalizer.
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Bloom {
    /// An empty filter for up to `n` keys (at least one block), in the current layout.
    pub fn with_capacity(n: u64, seed: u64) -> Self {
        Self::with_layout(n, seed, Layout::Ordered)
    }

    fn with_layout(n: u64, seed: u64, layout: Layout) -> Self {
        let bits = n.max(1).saturating_mul(bits_per_key(n));
        let blocks = bits.div_ceil(512).max(1) as usize;
        Bloom {
            layout,
            seed: mix(seed),
            blocks: vec![[0u64; WORDS]; blocks],
        }
    }

    /// What picks `d`'s block, and the bits inside it.
    #[inline]
    fn halves(&self, d: u128) -> (u64, u64) {
        match self.layout {
            Layout::Scattered => (
                (d as u64) ^ self.seed,
                ((d >> 64) as u64) ^ self.seed.rotate_left(32),
            ),
            Layout::Ordered => ((d >> 64) as u64, (d as u64) ^ self.seed),
        }
    }

    #[inline]
    fn block_of(&self, place: u64) -> usize {
        ((u128::from(place) * self.blocks.len() as u128) >> 64) as usize
    }

    #[inline]
    fn locate(&self, d: u128) -> (usize, [u64; WORDS]) {
        let (place, mut bits) = self.halves(d);
        let block = self.block_of(place);
        let mut mask = [0u64; WORDS];
        for _ in 0..K {
            let bit = (bits & 511) as usize;
            mask[bit >> 6] |= 1u64 << (bit & 63);
            bits >>= 9;
        }
        (block, mask)
    }

    pub fn insert(&mut self, d: u128) {
        let (b, mask) = self.locate(d);
        for (w, m) in self.blocks[b].iter_mut().zip(mask) {
            *w |= m;
        }
    }

    /// False: `d` was never inserted. True: it may have been. Tests `d`'s bits one by
    /// one and stops at the first clear one (most digests asked are in no run, and a
    /// large run's filter has about half its bits set, so that is the first or second).
    #[inline]
    pub fn may_contain(&self, d: u128) -> bool {
        let (place, mut bits) = self.halves(d);
        let block = &self.blocks[self.block_of(place)];
        for _ in 0..K {
            let bit = (bits & 511) as usize;
            if block[bit >> 6] & (1u64 << (bit & 63)) == 0 {
                return false;
            }
            bits >>= 9;
        }
        true
    }

    /// Loads the first word of `d`'s block, and nothing else: a pass of these over a
    /// batch of digests, each independent of the one before, lets the CPU have many of
    /// a large filter's cache misses in flight at once, so the [`Bloom::may_contain`]
    /// pass after it finds its blocks in cache (a probe's own mask and compares are
    /// too long for more than a few misses to overlap).
    #[inline]
    pub fn touch(&self, d: u128) -> u64 {
        self.blocks[self.block_of(self.halves(d).0)][0]
    }

    /// Bytes of memory the bits take.
    pub fn bytes(&self) -> usize {
        self.blocks.len() * WORDS * 8
    }

    /// `[version][seed: u64 LE][blocks: u64 LE]`: what [`Bloom::reader`] starts from.
    fn head(&self) -> Vec<u8> {
        let mut head = Vec::with_capacity(17);
        head.push(self.layout.version());
        head.extend_from_slice(&self.seed.to_le_bytes());
        head.extend_from_slice(&(self.blocks.len() as u64).to_le_bytes());
        head
    }

    /// `[version][seed: u64 LE][blocks: u64 LE][words: u64 LE ...]`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.head();
        out.reserve(self.bytes());
        for b in &self.blocks {
            for w in b {
                out.extend_from_slice(&w.to_le_bytes());
            }
        }
        out
    }

    /// The filter as rows of at most `chunk_blocks` blocks each: row 0 is `[version][seed:
    /// u64 LE][blocks: u64 LE]`, then each row is the words of its blocks (u64 LE).
    /// Writes rows `from`, `from + 1`, … at most `max` of them, so no copy of the whole
    /// filter is ever made and a large one can be written over several commits; returns
    /// the next row to write, or None when the last one was written.
    pub fn write_rows(
        &self,
        chunk_blocks: usize,
        from: u32,
        max: u32,
        mut put: impl FnMut(u32, &[u8]) -> Result<(), redb::Error>,
    ) -> Result<Option<u32>, redb::Error> {
        let chunk_blocks = chunk_blocks.max(1);
        let rows = 1 + self.blocks.len().div_ceil(chunk_blocks) as u32;
        let end = from.saturating_add(max).min(rows);
        let mut buf = Vec::new();
        for row in from..end {
            if row == 0 {
                put(0, &self.head())?;
                continue;
            }
            let at = (row as usize - 1) * chunk_blocks;
            buf.clear();
            for b in &self.blocks[at..(at + chunk_blocks).min(self.blocks.len())] {
                for w in b {
                    buf.extend_from_slice(&w.to_le_bytes());
                }
            }
            put(row, &buf)?;
        }
        Ok((end < rows).then_some(end))
    }

    /// Starts reading a filter written by [`Bloom::write_rows`] from its row 0; feed
    /// the other rows in order with [`BloomReader::push`].
    pub fn reader(head: &[u8]) -> Option<BloomReader> {
        if head.len() != 17 {
            return None;
        }
        let layout = Layout::of(head[0])?;
        let seed = u64::from_le_bytes(head[1..9].try_into().ok()?);
        let n = u64::from_le_bytes(head[9..17].try_into().ok()?) as usize;
        (n > 0).then(|| BloomReader {
            n,
            bloom: Bloom {
                layout,
                seed,
                blocks: Vec::with_capacity(n.min(READ_RESERVE / (WORDS * 8))),
            },
        })
    }

    /// The filter [`Bloom::encode`] wrote: its head, then all its blocks as one row
    /// (refused before anything is allocated when the length disagrees with the head).
    pub fn decode(b: &[u8]) -> Option<Self> {
        let (head, body) = (b.get(..17)?, &b[17..]);
        let n = u64::from_le_bytes(head[9..17].try_into().ok()?);
        if body.len() as u64 != n.checked_mul(WORDS as u64 * 8)? {
            return None;
        }
        let mut rd = Self::reader(head)?;
        rd.push(body)?;
        rd.finish()
    }
}

/// A filter being read row by row (no copy of the whole encoded filter is made).
pub struct BloomReader {
    n: usize,
    bloom: Bloom,
}

impl BloomReader {
    /// One row of blocks; None when it is not whole blocks or there are too many.
    pub fn push(&mut self, row: &[u8]) -> Option<()> {
        let blocks = row.len() / (WORDS * 8);
        if !row.len().is_multiple_of(WORDS * 8) || self.bloom.blocks.len() + blocks > self.n {
            return None;
        }
        grow_for_row(&mut self.bloom.blocks, blocks, self.n);
        for chunk in row.chunks_exact(WORDS * 8) {
            let mut block = [0u64; WORDS];
            for (w, bytes) in block.iter_mut().zip(chunk.chunks_exact(8)) {
                *w = u64::from_le_bytes(bytes.try_into().ok()?);
            }
            self.bloom.blocks.push(block);
        }
        Some(())
    }

    /// The filter, if every block came.
    pub fn finish(self) -> Option<Bloom> {
        (self.bloom.blocks.len() == self.n).then_some(self.bloom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(i: u64, salt: u64) -> u128 {
        (u128::from(mix(i ^ salt)) << 64) | u128::from(mix(i.wrapping_mul(31) ^ !salt))
    }

    /// A filter of `n` keys sized for `bits` per key, filled, and its measured false
    /// positive rate.
    fn measured(n: u64, bits: u64, layout: Layout) -> f64 {
        let mut f = Bloom {
            layout,
            seed: mix(7),
            blocks: vec![[0u64; WORDS]; (n * bits).div_ceil(512) as usize],
        };
        for i in 0..n {
            f.insert(digest(i, 1));
        }
        assert!((0..n).all(|i| f.may_contain(digest(i, 1))));
        let trials = 2_000_000u64;
        let fp = (0..trials).filter(|i| f.may_contain(digest(*i, 2))).count();
        let rate = fp as f64 / trials as f64;
        eprintln!("blocked bloom, {layout:?}, {bits} bits/key: false positive rate {rate}");
        rate
    }

    #[test]
    fn no_false_negatives_and_a_low_false_positive_rate() {
        for layout in [Layout::Ordered, Layout::Scattered] {
            let rate = measured(200_000, BITS_PER_KEY, layout);
            assert!(rate < 0.008, "false positive rate {rate}");
            let rate = measured(200_000, MID_BITS_PER_KEY, layout);
            assert!(rate < 0.003, "false positive rate {rate}");
            let rate = measured(200_000, SMALL_BITS_PER_KEY, layout);
            assert!(rate < 0.001, "false positive rate {rate}");
        }
    }

    /// Sorted keys fill an ordered filter's blocks front to back (what makes building
    /// a seal's or a merge's filter cheap); the seed still decorrelates two runs.
    #[test]
    fn sorted_keys_walk_the_blocks_in_order() {
        let f = Bloom::with_capacity(100_000, 3);
        let mut keys: Vec<u128> = (0..100_000).map(|i| digest(i, 5)).collect();
        keys.sort_unstable();
        let blocks: Vec<usize> = keys.iter().map(|d| f.locate(*d).0).collect();
        assert!(blocks.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(blocks.last(), Some(&(f.blocks.len() - 1)));
        let g = Bloom::with_capacity(100_000, 4);
        let same = keys
            .iter()
            .filter(|d| f.locate(**d) == g.locate(**d))
            .count();
        assert!(same < 100, "{same} keys with the same bits in two runs");
    }

    /// A filter of format 1 (written before the ordered layout) is read back, row by
    /// row or whole, in its own layout: every key it holds is still found.
    #[test]
    fn filters_of_format_1_are_read_in_their_layout() {
        let mut old = Bloom::with_layout(5_000, 9, Layout::Scattered);
        let keys: Vec<u128> = (0..5_000).map(|i| digest(i, 11)).collect();
        for d in &keys {
            old.insert(*d);
        }
        let bytes = old.encode();
        assert_eq!(bytes[0], 1);
        let back = Bloom::decode(&bytes).unwrap();
        assert_eq!(back.layout, Layout::Scattered);
        let mut rows: Vec<Vec<u8>> = Vec::new();
        old.write_rows(7, 0, u32::MAX, |_, r| {
            rows.push(r.to_vec());
            Ok(())
        })
        .unwrap();
        let mut rd = Bloom::reader(&rows[0]).unwrap();
        for r in &rows[1..] {
            rd.push(r).unwrap();
        }
        let read = rd.finish().unwrap();
        for f in [&back, &read] {
            assert!(keys.iter().all(|d| f.may_contain(*d)));
        }
        // Asked in the other layout, most of its keys would be missed.
        let wrong = Bloom {
            layout: Layout::Ordered,
            ..read.clone()
        };
        assert!(keys.iter().filter(|d| !wrong.may_contain(**d)).count() > 4_000);
        // An unknown format is refused.
        let mut v9 = bytes.clone();
        v9[0] = 9;
        assert!(Bloom::decode(&v9).is_none());
        assert!(Bloom::reader(&v9[..17]).is_none());
        assert_eq!(Bloom::with_capacity(1, 1).encode()[0], 2);
    }

    /// A head that claims far more blocks than its rows hold (a corrupt row 0) makes
    /// the reader reserve at most [`READ_RESERVE`], and the rows decide: it ends in
    /// "not a filter", never in an allocation of gigabytes at open.
    #[test]
    fn a_head_claiming_more_blocks_than_come_reserves_a_bounded_start() {
        let mut head = Bloom::with_capacity(1_000, 3).encode()[..17].to_vec();
        head[9..17].copy_from_slice(&(1u64 << 28).to_le_bytes());
        let mut rd = Bloom::reader(&head).unwrap();
        assert!(rd.bloom.blocks.capacity() * WORDS * 8 <= READ_RESERVE);
        rd.push(&vec![0u8; 64 * WORDS * 8]).unwrap();
        assert!(rd.finish().is_none());
        // A row past the head's count is refused before it is copied in.
        head[9..17].copy_from_slice(&2u64.to_le_bytes());
        let mut rd = Bloom::reader(&head).unwrap();
        assert!(rd.push(&[0u8; 3 * WORDS * 8]).is_none());
    }

    #[test]
    fn small_runs_get_more_bits_per_key_in_whole_blocks() {
        let bytes = |n: u64| Bloom::with_capacity(n, 1).bytes() as u64;
        assert_eq!(
            bytes(200_000),
            (200_000 * SMALL_BITS_PER_KEY / 8).div_ceil(64) * 64
        );
        assert_eq!(
            bytes(SMALL_RUN),
            (SMALL_RUN * SMALL_BITS_PER_KEY / 8).div_ceil(64) * 64
        );
        let mid = SMALL_RUN + 1;
        assert_eq!(bytes(mid), (mid * MID_BITS_PER_KEY).div_ceil(512) * 64);
        assert_eq!(
            bytes(MID_RUN),
            (MID_RUN * MID_BITS_PER_KEY).div_ceil(512) * 64
        );
        let big = MID_RUN + 1;
        assert_eq!(bytes(big), (big * BITS_PER_KEY).div_ceil(512) * 64);
    }

    #[test]
    fn rows_written_a_few_at_a_time_equal_rows_written_whole() {
        let mut f = Bloom::with_capacity(5_000, 9);
        for d in 0..5_000u128 {
            f.insert(d * 0x9E37_79B9_7F4A_7C15);
        }
        let mut whole: Vec<(u32, Vec<u8>)> = Vec::new();
        let done = f
            .write_rows(7, 0, u32::MAX, |i, r| {
                whole.push((i, r.to_vec()));
                Ok(())
            })
            .unwrap();
        assert_eq!(done, None);
        let mut pieces: Vec<(u32, Vec<u8>)> = Vec::new();
        let mut next = Some(0);
        while let Some(from) = next {
            next = f
                .write_rows(7, from, 3, |i, r| {
                    pieces.push((i, r.to_vec()));
                    Ok(())
                })
                .unwrap();
        }
        assert_eq!(pieces, whole);
        assert_eq!(whole.len(), 1 + f.blocks.len().div_ceil(7));
    }

    #[test]
    fn chunked_rows_roundtrip() {
        let mut f = Bloom::with_capacity(5_000, 9);
        for d in 0..5_000u128 {
            f.insert(d * 0x9E37_79B9_7F4A_7C15);
        }
        let mut rows: Vec<Vec<u8>> = Vec::new();
        let done = f
            .write_rows(7, 0, u32::MAX, |i, r| {
                assert_eq!(i as usize, rows.len());
                rows.push(r.to_vec());
                Ok(())
            })
            .unwrap();
        assert_eq!(done, None);
        assert!(rows.len() > 2);
        let mut rd = Bloom::reader(&rows[0]).unwrap();
        for r in &rows[1..] {
            rd.push(r).unwrap();
        }
        let g = rd.finish().unwrap();
        assert_eq!(g.encode(), f.encode());
        // A missing row is refused.
        let mut rd = Bloom::reader(&rows[0]).unwrap();
        rd.push(&rows[1]).unwrap();
        assert!(rd.finish().is_none());
    }

    #[test]
    fn seeds_decorrelate_and_encoding_roundtrips() {
        let mut a = Bloom::with_capacity(1000, 1);
        let mut b = Bloom::with_capacity(1000, 2);
        for i in 0..1000 {
            a.insert(digest(i, 3));
            b.insert(digest(i, 3));
        }
        assert_ne!(a, b);
        let back = Bloom::decode(&a.encode()).unwrap();
        assert_eq!(back, a);
        assert!(Bloom::decode(&a.encode()[..20]).is_none());
        assert!(Bloom::decode(&[9]).is_none());
        // A filter for nothing still answers.
        let e = Bloom::with_capacity(0, 0);
        assert!(!e.may_contain(5));
    }
}
