//! Binary fuse filters: a dedup run's filter since format 3. A "maybe" is a check on
//! disk, every run's filter is asked for each new digest, and with a full window those
//! checks were most of what a look-up cost; a fuse filter gives far fewer "maybe"s than
//! the blocked Bloom filter ([`super::bloom`]) in the same memory.
//!
//! A binary fuse filter (Graf and Lemire, "Binary Fuse Filters: Fast and Smaller Than
//! Xor Filters", 2022) stores one `width`-bit value per slot, about 1.13–1.17 slots a
//! key, and a key is a "maybe" when the xor of its three slots equals its fingerprint:
//! about 2^-width of the digests asked. Its three slots lie in three consecutive
//! segments, so a probe makes three loads that do not depend on each other (their
//! cache misses overlap) and no search: 10 bits give about 0.1 % at 11.6 bits a key,
//! where the Bloom filter gave 0.4 % at 12; 12 bits 0.024 % at 13.9 (Bloom: 0.2 % at
//! 14); 15 bits 0.003 % at 17.4 (Bloom: 0.06 % at 18).
//!
//! The filter is built once from all its keys (peeling: the slot of a key that is the
//! only one left at some slot is set last). A run's keys come in digest order (a seal
//! sorts its memtable, a merge streams its sources in order), so the filter is split
//! into shards by the digests' high bits, about 2^17–2^18 keys each, and each shard is
//! built as soon as its keys are in: the memory a build holds beside the filter is a
//! shard's (about 15 MB at most), never the run's. Each shard has its own segment sizes and
//! seed (a build that fails, rarely, retries with the next seed); the seeds decorrelate
//! different runs' filters, so a digest that is a "maybe" in one run is not more likely
//! one in another.
//!
//! A key's slots and fingerprint come from a seeded mix of its digest's low half (the
//! high half picks the shard): two digests with the same low half in one shard share
//! them, which only makes the filter say "maybe" for both. A "no" is certain.

use super::bloom::mix;
use super::filter::{READ_RESERVE, grow_for_row};

/// Serialized version (the Bloom filter's are 1 and 2).
pub const VERSION: u8 = 3;
/// Widest fingerprint (kept in a `u16` while a shard is built).
pub const MAX_WIDTH: u32 = 16;
/// Keys a shard is sized for, at most (2^18).
const SHARD_KEYS_LOG2: u32 = 18;
/// At most 2^12 shards: the shard table (24 bytes a shard) stays in row 0.
const MAX_SHARD_BITS: u32 = 12;
/// The most keys a filter takes.
pub const MAX_KEYS: u64 = 1 << (SHARD_KEYS_LOG2 + MAX_SHARD_BITS);
/// Longest segment (the reference implementation's cap).
const MAX_SEGMENT: u32 = 1 << 18;
/// Bytes of the serialized head: version, seed, width, shard bits, slots.
const HEAD_LEN: usize = 1 + 8 + 1 + 1 + 8;
/// Bytes of a shard in the head: start, segment length, segment count length, seed.
const SHARD_LEN: usize = 8 + 4 + 4 + 8;

/// One shard's place and shape in the filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shard {
    /// Its first slot.
    start: u64,
    /// Slots a segment (a power of two); 0 for a shard without keys.
    seg_len: u32,
    /// Slots of the segments a key's first slot falls in (segments − 2, times
    /// `seg_len`); the shard has `seg_count_len + 2 × seg_len` slots.
    seg_count_len: u32,
    /// Mixed into its keys' low halves.
    seed: u64,
}

impl Shard {
    fn slots(&self) -> u64 {
        if self.seg_len == 0 {
            0
        } else {
            u64::from(self.seg_count_len) + 2 * u64::from(self.seg_len)
        }
    }

    /// The key's hash (slots and fingerprint come from it).
    #[inline]
    fn hash(&self, low: u64) -> u64 {
        mix(low ^ self.seed)
    }

    /// The three slots of hash `h`, from the shard's first: one in each of three
    /// consecutive segments.
    #[inline]
    fn slots_of(&self, h: u64) -> [u64; 3] {
        let l = u64::from(self.seg_len);
        let mask = l - 1;
        let h0 = ((u128::from(h) * u128::from(self.seg_count_len)) >> 64) as u64;
        [h0, (h0 + l) ^ ((h >> 18) & mask), (h0 + 2 * l) ^ (h & mask)]
    }
}

/// The fingerprint of hash `h` (before masking to the width).
#[inline]
fn fingerprint(h: u64) -> u64 {
    h ^ (h >> 32)
}

/// Segment length and segment count of a shard of `n` keys (n ≥ 1), as the reference
/// implementation sizes them for arity 3.
fn shape(n: usize) -> (u32, u32) {
    let nf = n as f64;
    let seg_len = if n <= 1 {
        4
    } else {
        let exp = (nf.ln() / 3.33f64.ln() + 2.25).floor() as u32;
        (1u32 << exp.min(18)).min(MAX_SEGMENT)
    };
    let capacity = if n <= 1 {
        0
    } else {
        let factor = (0.875 + 0.25 * 1_000_000f64.ln() / nf.ln()).max(1.125);
        (nf * factor).round() as u64
    };
    let segments = capacity
        .div_ceil(u64::from(seg_len))
        .saturating_sub(2)
        .max(1);
    (seg_len, segments as u32)
}

/// Scratch memory of a shard's build, kept from shard to shard.
#[derive(Default, Clone)]
struct Scratch {
    hashes: Vec<u64>,
    count: Vec<u8>,
    xor: Vec<u64>,
    alone: Vec<u32>,
    order: Vec<(u64, u8)>,
    values: Vec<u16>,
}

impl Scratch {
    /// `self.hashes`: the hashes of `lows` under `shard`'s seed, put in order of
    /// their top 8 bits (one counting pass).
    fn bucket(&mut self, lows: &[u64], shard: &Shard) {
        let mut starts = [0usize; 257];
        self.xor.clear();
        self.xor.extend(lows.iter().map(|&low| shard.hash(low)));
        for &h in &self.xor {
            starts[(h >> 56) as usize + 1] += 1;
        }
        for b in 1..257 {
            starts[b] += starts[b - 1];
        }
        self.hashes.clear();
        self.hashes.resize(lows.len(), 0);
        for &h in &self.xor {
            let b = (h >> 56) as usize;
            self.hashes[starts[b]] = h;
            starts[b] += 1;
        }
    }

    /// Peels `self.hashes` (sorted, no two equal) into `shard`'s slots, leaving each
    /// slot's value in `self.values`; false when the peeling gets stuck (try another
    /// seed).
    fn peel(&mut self, shard: &Shard, width: u32) -> bool {
        let slots = shard.slots() as usize;
        self.count.clear();
        self.count.resize(slots, 0);
        self.xor.clear();
        self.xor.resize(slots, 0);
        for &h in &self.hashes {
            for (tag, s) in shard.slots_of(h).into_iter().enumerate() {
                let s = s as usize;
                // Counts in the high six bits, the xor of the keys' tags (which of
                // their three slots this is) in the low two.
                if self.count[s] >= 0xFC {
                    return false;
                }
                self.count[s] = (self.count[s] + 4) ^ tag as u8;
                self.xor[s] ^= h;
            }
        }
        self.alone.clear();
        self.alone
            .extend((0..slots as u32).filter(|&s| self.count[s as usize] >> 2 == 1));
        self.order.clear();
        while let Some(s) = self.alone.pop() {
            let s = s as usize;
            if self.count[s] >> 2 != 1 {
                continue;
            }
            let h = self.xor[s];
            let found = self.count[s] & 3;
            self.order.push((h, found));
            let at = shard.slots_of(h);
            for k in 1..=2u8 {
                let tag = (found + k) % 3;
                let o = at[tag as usize] as usize;
                if self.count[o] >> 2 == 2 {
                    self.alone.push(o as u32);
                }
                self.count[o] = (self.count[o] - 4) ^ tag;
                self.xor[o] ^= h;
            }
        }
        if self.order.len() != self.hashes.len() {
            return false;
        }
        let mask = (1u64 << width) - 1;
        self.values.clear();
        self.values.resize(slots, 0);
        for &(h, found) in self.order.iter().rev() {
            let at = shard.slots_of(h);
            let f = fingerprint(h) & mask;
            let v = f
                ^ u64::from(self.values[at[((found + 1) % 3) as usize] as usize])
                ^ u64::from(self.values[at[((found + 2) % 3) as usize] as usize]);
            self.values[at[found as usize] as usize] = v as u16;
        }
        true
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct Fuse {
    seed: u64,
    width: u32,
    shard_bits: u32,
    /// Every shard once finished; those built so far while keys come in.
    shards: Vec<Shard>,
    /// The slots' values, `width` bits each from bit 0, little-endian, then 4 bytes a
    /// probe may read past the last slot.
    data: Vec<u8>,
    slots: u64,
    /// The low halves of the keys of the shard being built (`shards.len()`).
    pending: Vec<u64>,
    /// The last key put in (an equal one next is the same key).
    last: Option<u128>,
    scratch: Option<Box<Scratch>>,
}

impl PartialEq for Scratch {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Scratch {}

impl std::fmt::Debug for Fuse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Fuse({} shards, {} slots of {} bits)",
            self.shards.len(),
            self.slots,
            self.width
        )
    }
}

/// Bytes that hold `slots` values of `width` bits and the probe's 4 bytes past them.
fn data_len(slots: u64, width: u32) -> usize {
    (slots * u64::from(width)).div_ceil(8) as usize + 4
}

impl Fuse {
    /// An empty filter for up to `n` keys (at most [`MAX_KEYS`]) with `width`-bit
    /// fingerprints (at most [`MAX_WIDTH`]). Keys go in with [`Fuse::insert`] in
    /// digest order, then [`Fuse::finish`].
    pub fn with_capacity(n: u64, seed: u64, width: u32) -> Self {
        assert!(n <= MAX_KEYS, "{n} keys: more than a fuse filter takes");
        assert!((1..=MAX_WIDTH).contains(&width));
        let mut shard_bits = 0;
        while shard_bits < MAX_SHARD_BITS && n >> shard_bits > 1 << SHARD_KEYS_LOG2 {
            shard_bits += 1;
        }
        // Room for every shard at the mean size and one segment more each, so the
        // bytes are allocated once (n may overcount: a merge's duplicates).
        let shards = 1u64 << shard_bits;
        let per = (n / shards).max(1) as usize;
        let (seg_len, segments) = shape(per);
        let room = shards * (u64::from(segments) + 3) * u64::from(seg_len);
        Fuse {
            seed: mix(seed),
            width,
            shard_bits,
            shards: Vec::with_capacity(shards as usize),
            data: Vec::with_capacity(data_len(room, width)),
            slots: 0,
            pending: Vec::new(),
            last: None,
            scratch: None,
        }
    }

    fn shard_count(&self) -> usize {
        1 << self.shard_bits
    }

    /// `d`'s shard: its high bits.
    #[inline]
    fn shard_of(&self, d: u128) -> usize {
        if self.shard_bits == 0 {
            0
        } else {
            ((d >> 64) as u64 >> (64 - self.shard_bits)) as usize
        }
    }

    /// Adds `d`, which must not sort before the keys of a shard already built (a
    /// seal's and a merge's keys come sorted; equal keys may repeat). A key out of that
    /// order panics rather than go missing: a key the filter lost would be a duplicate
    /// accepted.
    pub fn insert(&mut self, d: u128) {
        let shard = self.shard_of(d);
        assert!(
            shard >= self.shards.len() && self.shards.len() < self.shard_count(),
            "keys go into a fuse filter in digest order, before it is finished"
        );
        while self.shards.len() < shard {
            self.close_shard();
        }
        if self.last != Some(d) {
            self.pending.push(d as u64);
            self.last = Some(d);
        }
    }

    /// Builds the shards not built yet: the filter answers from then on.
    pub fn finish(&mut self) {
        while self.shards.len() < self.shard_count() {
            self.close_shard();
        }
        self.pending = Vec::new();
        self.last = None;
        self.scratch = None;
        self.data.resize(data_len(self.slots, self.width), 0);
    }

    /// Builds the shard whose keys are pending, appends its slots, and moves on.
    fn close_shard(&mut self) {
        let index = self.shards.len() as u64;
        let scratch = self.scratch.get_or_insert_with(Box::default);
        let mut shard = Shard {
            start: self.slots,
            seg_len: 0,
            seg_count_len: 0,
            seed: mix(self.seed ^ mix(index)),
        };
        if !self.pending.is_empty() {
            let mut tries = 0u32;
            loop {
                // The hashes in order of their top bits (a key's first slot grows with
                // its hash), so the first pass of the peeling walks the slots front to
                // back. Equal digests came next to each other and went; a shard whose
                // peeling fails is sorted whole and freed of equal hashes (two digests
                // sharing a low half) before its next try.
                if tries == 0 {
                    scratch.bucket(&self.pending, &shard);
                } else {
                    scratch.hashes.clear();
                    scratch
                        .hashes
                        .extend(self.pending.iter().map(|&low| shard.hash(low)));
                    scratch.hashes.sort_unstable();
                    scratch.hashes.dedup();
                }
                let (seg_len, segments) = shape(scratch.hashes.len());
                // A shard that failed several seeds gets a segment more: a build
                // always ends.
                let segments = segments + tries / 8;
                shard.seg_len = seg_len;
                shard.seg_count_len = segments * seg_len;
                if scratch.peel(&shard, self.width) {
                    break;
                }
                tries += 1;
                shard.seed = mix(shard.seed.wrapping_add(0x9E37_79B9_7F4A_7C15));
            }
            let first = self.slots;
            self.slots += shard.slots();
            let need = data_len(self.slots, self.width);
            if need > self.data.len() {
                if need > self.data.capacity() {
                    self.data.reserve_exact(need - self.data.len());
                }
                self.data.resize(need, 0);
            }
            put_all(&mut self.data, first, self.width, &scratch.values);
        }
        self.shards.push(shard);
        self.pending.clear();
    }

    /// The value of slot `i`.
    #[inline]
    fn get(&self, i: u64) -> u64 {
        let bit = i * u64::from(self.width);
        let at = (bit >> 3) as usize;
        let word = u32::from_le_bytes(
            self.data[at..at + 4]
                .try_into()
                .expect("four bytes are kept past the last slot"),
        );
        u64::from(word >> (bit & 7)) & ((1 << self.width) - 1)
    }

    /// The xor of `d`'s fingerprint and its three slots (0 for a "maybe"), or None for
    /// a shard without keys.
    #[inline]
    fn residue(&self, d: u128) -> Option<u64> {
        let s = &self.shards[self.shard_of(d)];
        if s.seg_len == 0 {
            return None;
        }
        let h = s.hash(d as u64);
        let [a, b, c] = s.slots_of(h);
        let f = fingerprint(h) & ((1 << self.width) - 1);
        Some(f ^ self.get(s.start + a) ^ self.get(s.start + b) ^ self.get(s.start + c))
    }

    /// Whether `d` may be in the filter (a "no" is certain).
    #[inline]
    pub fn may_contain(&self, d: u128) -> bool {
        self.residue(d) == Some(0)
    }

    /// Loads `d`'s three slots (see [`Bloom::touch`]); the probe then finds them in
    /// the cache.
    ///
    /// [`Bloom::touch`]: super::bloom::Bloom::touch
    #[inline]
    pub fn touch(&self, d: u128) -> u64 {
        self.residue(d).unwrap_or(1)
    }

    /// Bytes of memory the filter takes.
    pub fn bytes(&self) -> usize {
        self.data.capacity() + self.shards.capacity() * std::mem::size_of::<Shard>()
    }

    /// `[3][seed: u64 LE][width: u8][shard bits: u8][slots: u64 LE]`, then each shard's
    /// `[start: u64 LE][segment length: u32 LE][segment count length: u32 LE][seed: u64
    /// LE]`.
    fn head(&self) -> Vec<u8> {
        let mut head = Vec::with_capacity(HEAD_LEN + self.shards.len() * SHARD_LEN);
        head.push(VERSION);
        head.extend_from_slice(&self.seed.to_le_bytes());
        head.push(self.width as u8);
        head.push(self.shard_bits as u8);
        head.extend_from_slice(&self.slots.to_le_bytes());
        for s in &self.shards {
            head.extend_from_slice(&s.start.to_le_bytes());
            head.extend_from_slice(&s.seg_len.to_le_bytes());
            head.extend_from_slice(&s.seg_count_len.to_le_bytes());
            head.extend_from_slice(&s.seed.to_le_bytes());
        }
        head
    }

    /// The finished filter as rows: row 0 the head with the shard table, then the
    /// slots' bytes in rows of at most `row_bytes`. Writes rows `from`, `from + 1`, …
    /// at most `max` of them; returns the next row to write, or None when the last one
    /// was written (as [`Bloom::write_rows`]).
    ///
    /// [`Bloom::write_rows`]: super::bloom::Bloom::write_rows
    pub fn write_rows(
        &self,
        row_bytes: usize,
        from: u32,
        max: u32,
        mut put: impl FnMut(u32, &[u8]) -> Result<(), redb::Error>,
    ) -> Result<Option<u32>, redb::Error> {
        assert_eq!(
            self.shards.len(),
            self.shard_count(),
            "a filter is finished before it is written"
        );
        let per = row_bytes.max(1);
        let rows = 1 + self.data.len().div_ceil(per) as u32;
        let end = from.saturating_add(max).min(rows);
        for row in from..end {
            if row == 0 {
                put(0, &self.head())?;
            } else {
                let at = (row as usize - 1) * per;
                put(row, &self.data[at..(at + per).min(self.data.len())])?;
            }
        }
        Ok((end < rows).then_some(end))
    }

    /// Starts reading a filter written by [`Fuse::write_rows`] from its row 0 (None
    /// when it is not one, or its shards do not tile its slots).
    pub fn reader(head: &[u8]) -> Option<FuseReader> {
        if head.len() < HEAD_LEN || head[0] != VERSION {
            return None;
        }
        let u64_at = |at: usize| Some(u64::from_le_bytes(head.get(at..at + 8)?.try_into().ok()?));
        let u32_at = |at: usize| Some(u32::from_le_bytes(head.get(at..at + 4)?.try_into().ok()?));
        let seed = u64_at(1)?;
        let width = u32::from(head[9]);
        let shard_bits = u32::from(head[10]);
        let slots = u64_at(11)?;
        if !(1..=MAX_WIDTH).contains(&width)
            || shard_bits > MAX_SHARD_BITS
            || head.len() != HEAD_LEN + (SHARD_LEN << shard_bits)
            || slots > 4 * MAX_KEYS
        {
            return None;
        }
        let mut shards = Vec::with_capacity(1 << shard_bits);
        let mut next = 0u64;
        for at in (HEAD_LEN..head.len()).step_by(SHARD_LEN) {
            let s = Shard {
                start: u64_at(at)?,
                seg_len: u32_at(at + 8)?,
                seg_count_len: u32_at(at + 12)?,
                seed: u64_at(at + 16)?,
            };
            let well_formed = if s.seg_len == 0 {
                s.seg_count_len == 0
            } else {
                s.seg_len.is_power_of_two()
                    && s.seg_len <= MAX_SEGMENT
                    && s.seg_count_len > 0
                    && s.seg_count_len.is_multiple_of(s.seg_len)
            };
            if !well_formed || s.start != next {
                return None;
            }
            next += s.slots();
            shards.push(s);
        }
        if next != slots {
            return None;
        }
        let len = data_len(slots, width);
        Some(FuseReader {
            f: Fuse {
                seed,
                width,
                shard_bits,
                shards,
                data: Vec::with_capacity(len.min(READ_RESERVE)),
                slots,
                pending: Vec::new(),
                last: None,
                scratch: None,
            },
            len,
        })
    }
}

/// Writes `values` into the slots from `first` on (zero until now), a byte at a time:
/// writing each slot's value as a `u32` over the last one's bytes stalled on every
/// slot (a load from bytes just stored, at another offset).
fn put_all(data: &mut [u8], first: u64, width: u32, values: &[u16]) {
    let bit = first * u64::from(width);
    let mut at = (bit >> 3) as usize;
    let mut held = (bit & 7) as u32;
    // The bits of the previous shard's last slot in the first byte.
    let mut acc = u64::from(data[at]) & ((1 << held) - 1);
    for &v in values {
        acc |= u64::from(v) << held;
        held += width;
        while held >= 8 {
            data[at] = acc as u8;
            at += 1;
            acc >>= 8;
            held -= 8;
        }
    }
    if held > 0 {
        data[at] = acc as u8;
    }
}

/// A filter being read row by row.
pub struct FuseReader {
    f: Fuse,
    /// Bytes the slots take, with the probe's 4.
    len: usize,
}

impl FuseReader {
    /// The next row of slots' bytes; None past the filter's length.
    pub fn push(&mut self, row: &[u8]) -> Option<()> {
        if self.f.data.len() + row.len() > self.len {
            return None;
        }
        grow_for_row(&mut self.f.data, row.len(), self.len);
        self.f.data.extend_from_slice(row);
        Some(())
    }

    /// The filter, if every byte came.
    pub fn finish(self) -> Option<Fuse> {
        (self.f.data.len() == self.len).then_some(self.f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Stream(u128);
    impl Stream {
        fn next(&mut self) -> u128 {
            self.0 = self
                .0
                .wrapping_mul(0x2360_ED05_1FC6_5DA4_4385_DF64_9FCC_F645)
                .wrapping_add(0x5851_F42D_4C95_7F2D_1405_7B7E_F767_814F);
            self.0 ^ (self.0 >> 61)
        }
    }

    fn keys(n: usize, seed: u128) -> Vec<u128> {
        let mut s = Stream(seed);
        let mut k: Vec<u128> = (0..n).map(|_| s.next()).collect();
        k.sort_unstable();
        k
    }

    fn build(keys: &[u128], seed: u64, width: u32) -> Fuse {
        let mut f = Fuse::with_capacity(keys.len() as u64, seed, width);
        for &d in keys {
            f.insert(d);
        }
        f.finish();
        f
    }

    /// Every key put in is a "maybe", at every size (shards without keys, tiny ones,
    /// many shards) and width: a key the filter lost would be a duplicate accepted.
    #[test]
    fn no_key_is_lost_at_any_size_or_width() {
        for n in [0usize, 1, 2, 3, 7, 64, 1_000, 10_007, 300_000, 1_100_000] {
            for width in [1, 8, 10, 12, 15, 16] {
                if n > 20_000 && ![10, 16].contains(&width) {
                    continue;
                }
                let k = keys(n, n as u128 + 11);
                let f = build(&k, 9, width);
                assert!(
                    k.iter().all(|&d| f.may_contain(d)),
                    "{n} keys, {width} bits: a key was lost"
                );
                if n == 1_100_000 {
                    assert_eq!(f.shards.len(), 8, "{n} keys take 8 shards");
                }
            }
        }
    }

    /// Equal keys may repeat (a digest accepted again after its first acceptance left
    /// the window, merged from two runs), and digests that share a low half share it
    /// in their shard: the filter still builds and holds each.
    #[test]
    fn repeated_keys_and_shared_low_halves_are_held() {
        let mut k = keys(5_000, 3);
        k.extend(k.clone());
        let same_low: Vec<u128> = (0..50u128).map(|i| (i << 64) | 0xABCD).collect();
        k.extend(same_low);
        k.sort_unstable();
        let f = build(&k, 4, 12);
        assert!(k.iter().all(|&d| f.may_contain(d)));
    }

    /// The share of new digests said "maybe" is about 2^-width, each seed's filter
    /// on its own (so runs' "maybe"s do not coincide).
    #[test]
    fn the_maybe_rate_is_about_two_to_the_minus_width() {
        let k = keys(400_000, 21);
        let probes = keys(1_000_000, 99);
        for (width, lo, hi) in [(8u32, 0.0030, 0.0048), (10, 0.0006, 0.0014)] {
            let a = build(&k, 1, width);
            let b = build(&k, 2, width);
            let ma: Vec<bool> = probes.iter().map(|&d| a.may_contain(d)).collect();
            let rate = ma.iter().filter(|m| **m).count() as f64 / probes.len() as f64;
            assert!(
                (lo..hi).contains(&rate),
                "{width} bits: a \"maybe\" for {rate}"
            );
            let both = probes
                .iter()
                .zip(&ma)
                .filter(|(d, m)| **m && b.may_contain(**d))
                .count() as f64
                / probes.len() as f64;
            assert!(both < rate * rate * 4.0 + 1e-5, "{width} bits: both {both}");
        }
        let f = build(&k, 1, 10);
        let bits = f.bytes() as f64 * 8.0 / k.len() as f64;
        assert!(bits < 12.0, "{bits} bits a key at width 10");
    }

    /// A filter written as rows and read back answers the same, whatever the rows'
    /// size.
    #[test]
    fn rows_round_trip() {
        for (n, row) in [
            (0usize, 64usize),
            (1, 7),
            (10_000, 1_000),
            (600_000, 1 << 20),
        ] {
            let k = keys(n, 5);
            let f = build(&k, 8, 11);
            let mut rows = Vec::new();
            let mut next = Some(0);
            while let Some(from) = next {
                next = f
                    .write_rows(row, from, 3, |i, r| {
                        assert_eq!(i as usize, rows.len());
                        rows.push(r.to_vec());
                        Ok(())
                    })
                    .unwrap();
            }
            let mut rd = Fuse::reader(&rows[0]).expect("head");
            for r in &rows[1..] {
                rd.push(r).expect("row fits");
            }
            let back = rd.finish().expect("whole");
            assert_eq!(back.shards, f.shards);
            assert_eq!(back.data, f.data);
            assert!(k.iter().all(|&d| back.may_contain(d)));
            let probes = keys(2_000, 77);
            assert!(
                probes
                    .iter()
                    .all(|&d| back.may_contain(d) == f.may_contain(d))
            );
        }
    }

    /// Rows that do not make a filter are refused: a wrong version, width or shard
    /// table, shards that do not tile the slots, a missing or extra byte.
    #[test]
    fn corrupt_rows_are_refused() {
        let f = build(&keys(300_000, 6), 8, 10);
        let head = f.head();
        let data = f.data.clone();
        let read = |head: &[u8], rows: &[&[u8]]| -> Option<Fuse> {
            let mut rd = Fuse::reader(head)?;
            for r in rows {
                rd.push(r)?;
            }
            rd.finish()
        };
        assert!(read(&head, &[&data]).is_some());
        let mut bad = head.clone();
        bad[0] = 2;
        assert!(read(&bad, &[&data]).is_none(), "version");
        let mut bad = head.clone();
        bad[9] = 17;
        assert!(read(&bad, &[&data]).is_none(), "width");
        let mut bad = head.clone();
        bad[10] += 1;
        assert!(read(&bad, &[&data]).is_none(), "shard count");
        let mut bad = head.clone();
        bad[HEAD_LEN + SHARD_LEN] ^= 1;
        assert!(read(&bad, &[&data]).is_none(), "a shard's start");
        let mut bad = head.clone();
        bad[HEAD_LEN + 8] = 3;
        assert!(
            read(&bad, &[&data]).is_none(),
            "a segment not a power of two"
        );
        // A shard's segment count length not a multiple of its segment length, zero,
        // or shards that do not add up to the slots.
        let count_len = HEAD_LEN + 12;
        let mut bad = head.clone();
        let v = u32::from_le_bytes(bad[count_len..count_len + 4].try_into().unwrap());
        bad[count_len..count_len + 4].copy_from_slice(&(v + 1).to_le_bytes());
        assert!(
            read(&bad, &[&data]).is_none(),
            "a count length off its segments"
        );
        let mut bad = head.clone();
        bad[count_len..count_len + 4].copy_from_slice(&0u32.to_le_bytes());
        assert!(read(&bad, &[&data]).is_none(), "a count length of 0");
        let mut bad = head.clone();
        bad[11] ^= 1;
        assert!(
            read(&bad, &[&data]).is_none(),
            "slots the shards do not tile"
        );
        assert!(read(&head, &[&data[1..]]).is_none(), "a byte missing");
        assert!(read(&head, &[&data, &[0]]).is_none(), "a byte more");
        assert!(
            read(&head[..HEAD_LEN - 1], &[&data]).is_none(),
            "a short head"
        );
    }

    /// A head whose one shard claims 2^31 slots (2.7 GB of 10-bit slots: consistent,
    /// and corrupt) makes the reader reserve at most [`READ_RESERVE`]; the rows that
    /// follow decide, and too few of them are "not a filter".
    #[test]
    fn a_head_claiming_more_slots_than_come_reserves_a_bounded_start() {
        let seg_len = 1u32 << 18;
        let count_len = 1u32 << 31;
        let slots = u64::from(count_len) + 2 * u64::from(seg_len);
        let mut head = vec![VERSION];
        head.extend(7u64.to_le_bytes());
        head.extend([10, 0]);
        head.extend(slots.to_le_bytes());
        head.extend(0u64.to_le_bytes());
        head.extend(seg_len.to_le_bytes());
        head.extend(count_len.to_le_bytes());
        head.extend(9u64.to_le_bytes());
        let mut rd = Fuse::reader(&head).expect("a consistent head");
        assert_eq!(rd.len, data_len(slots, 10));
        assert!(rd.f.data.capacity() <= READ_RESERVE);
        rd.push(&vec![0u8; 1 << 20]).unwrap();
        assert!(rd.finish().is_none());
    }

    /// A shard that starts inside a byte (after a shard of one key: 12 slots of 15
    /// bits) shares that byte with the shard before it: both keep their bits.
    #[test]
    fn a_shard_starting_inside_a_byte_keeps_the_last_ones_bits() {
        let mut k = vec![5u128];
        k.extend(keys(800_000, 8).into_iter().filter(|d| (d >> 126) != 0));
        let f = build(&k, 3, 15);
        assert_eq!(f.shards.len(), 4);
        assert_eq!(f.shards[0].slots(), 12);
        assert_ne!(
            (f.shards[1].start * 15) % 8,
            0,
            "shard 1 starts inside a byte"
        );
        assert!(k.iter().all(|&d| f.may_contain(d)));
    }

    /// A key that sorts before a shard already built is refused loudly, not lost.
    #[test]
    #[should_panic(expected = "digest order")]
    fn a_key_out_of_order_panics() {
        let mut f = Fuse::with_capacity(1_000_000, 1, 10);
        f.insert(u128::MAX);
        f.insert(1);
    }

    /// A shard's shape follows the reference implementation: a few slots more than
    /// keys, in segments of a power of two.
    #[test]
    fn shards_take_about_one_and_a_sixth_slots_a_key() {
        // The reference's segment lengths: 1 << floor(ln n / ln 3.33 + 2.25).
        assert_eq!(shape(1).0, 4);
        assert_eq!(shape(2).0, 4);
        assert_eq!(shape(100).0, 64);
        assert_eq!(shape(131_072).0, 4096);
        assert_eq!(shape(262_144).0, 4096);
        // And counts: ceil(n × factor / length) − 2 segments, at least 1.
        assert_eq!(shape(1).1, 1);
        assert_eq!(shape(262_144), (4096, 72));
        for n in [2usize, 100, 131_072, 262_144] {
            let (l, s) = shape(n);
            let slots = u64::from(s + 2) * u64::from(l);
            assert!(l.is_power_of_two());
            assert!(slots as f64 >= n as f64 * 1.125, "{n}: {slots}");
            if n >= 100_000 {
                assert!((slots as f64) < n as f64 * 1.19, "{n}: {slots}");
            }
        }
    }
}
