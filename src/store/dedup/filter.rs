//! A dedup run's in-memory filter, of either kind: a binary fuse filter
//! ([`super::fuse`], what every new run gets since format 3) or a blocked Bloom filter
//! ([`super::bloom`], formats 1 and 2: what runs written before hold, read and asked
//! as they were written until a merge replaces them or they expire).
//!
//! Fingerprint widths by run size, against the Bloom filter's bits at the same sizes
//! (a "maybe" is a disk check, and every run's filter is asked for each new digest,
//! so the share of digests checked on disk is the sum of the runs' rates):
//!
//! | run | Bloom filter | binary fuse filter |
//! |---|---|---|
//! | large (over [`MID_RUN`] keys) | 12 bits a key, about 0.4 % | 10-bit fingerprints, 11.6 bits a key, about 0.1 % |
//! | middle (over [`SMALL_RUN`]) | 14 bits, about 0.2 % | 12-bit, 13.9 bits, about 0.024 % |
//! | small | 18 bits, about 0.06 % | 15-bit, 17.4 bits, about 0.003 % |

use super::bloom::{Bloom, BloomReader, MID_RUN, SMALL_RUN};
use super::fuse::{self, Fuse, FuseReader};

/// The most a filter's reader reserves before its rows come: a head's length is
/// believed only as far as the rows that follow bear it out, so a corrupt head cannot
/// make the daemon reserve gigabytes at open. The largest filter a merge writes (32 Mi
/// digests, about 49 MB) is reserved whole, once.
pub(super) const READ_RESERVE: usize = 64 << 20;

/// Makes room in `v` for `extra` more items of a filter of `total` items: the room
/// doubles as rows come, and never past `total`.
pub(super) fn grow_for_row<T>(v: &mut Vec<T>, extra: usize, total: usize) {
    let need = v.len() + extra;
    if need > v.capacity() {
        let want = need
            .max(v.capacity().saturating_mul(2))
            .min(total.max(need));
        v.reserve_exact(want - v.len());
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    Bloom(Bloom),
    Fuse(Fuse),
}

/// Bits of a fingerprint for a run of `n` keys (see the module doc).
pub fn width(n: u64) -> u32 {
    if n <= SMALL_RUN {
        15
    } else if n <= MID_RUN {
        12
    } else {
        10
    }
}

impl Filter {
    /// An empty filter for a run of up to `n` keys, seeded with the run's id: a fuse
    /// filter, or a Bloom filter past [`fuse::MAX_KEYS`]. Keys go in in
    /// digest order ([`Filter::insert`]), then [`Filter::finish`].
    pub fn for_run(n: u64, seed: u64) -> Self {
        if n <= fuse::MAX_KEYS {
            Filter::Fuse(Fuse::with_capacity(n, seed, width(n)))
        } else {
            Filter::Bloom(Bloom::with_capacity(n, seed))
        }
    }

    pub fn insert(&mut self, d: u128) {
        match self {
            Filter::Bloom(b) => b.insert(d),
            Filter::Fuse(f) => f.insert(d),
        }
    }

    /// Every key is in: the filter answers and can be written from now on.
    pub fn finish(&mut self) {
        if let Filter::Fuse(f) = self {
            f.finish();
        }
    }

    #[inline]
    pub fn may_contain(&self, d: u128) -> bool {
        match self {
            Filter::Bloom(b) => b.may_contain(d),
            Filter::Fuse(f) => f.may_contain(d),
        }
    }

    /// Loads what [`Filter::may_contain`] will read first (see [`Bloom::touch`]).
    #[inline]
    pub fn touch(&self, d: u128) -> u64 {
        match self {
            Filter::Bloom(b) => b.touch(d),
            Filter::Fuse(f) => f.touch(d),
        }
    }

    /// Whether a look-up should load a digest's blocks in a pass of its own before
    /// asking ([`Filter::touch`]): a Bloom filter's one load a digest, yes; a fuse
    /// filter's probe is its three loads and little more, so a pass of loads would
    /// do the probe's work twice (`cargo bench --bench probe`: 446 ns a digest for
    /// the nine filters of a 100 M window asked in one pass, 453 loaded first; for one
    /// digest, 568 asked filter by filter, 659 with every filter loaded first).
    #[inline]
    pub fn wants_touch(&self) -> bool {
        matches!(self, Filter::Bloom(_))
    }

    /// Bytes of memory the filter takes.
    pub fn bytes(&self) -> usize {
        match self {
            Filter::Bloom(b) => b.bytes(),
            Filter::Fuse(f) => f.bytes(),
        }
    }

    /// The filter as `dedup_filters` rows of about `row_bytes` bytes (see each kind's
    /// `write_rows`): rows `from`, `from + 1`, … at most `max` of them; the next row
    /// to write, or None after the last.
    pub fn write_rows(
        &self,
        row_bytes: usize,
        from: u32,
        max: u32,
        put: impl FnMut(u32, &[u8]) -> Result<(), redb::Error>,
    ) -> Result<Option<u32>, redb::Error> {
        match self {
            Filter::Bloom(b) => b.write_rows(row_bytes.div_ceil(64), from, max, put),
            Filter::Fuse(f) => f.write_rows(row_bytes, from, max, put),
        }
    }

    /// Starts reading a filter from its row 0, of the kind its version byte names.
    pub fn reader(head: &[u8]) -> Option<FilterReader> {
        match head.first() {
            Some(&fuse::VERSION) => Fuse::reader(head).map(FilterReader::Fuse),
            _ => Bloom::reader(head).map(FilterReader::Bloom),
        }
    }
}

/// A filter being read row by row.
pub enum FilterReader {
    Bloom(BloomReader),
    Fuse(FuseReader),
}

impl FilterReader {
    /// The next row; None when it does not fit the filter.
    pub fn push(&mut self, row: &[u8]) -> Option<()> {
        match self {
            FilterReader::Bloom(r) => r.push(row),
            FilterReader::Fuse(r) => r.push(row),
        }
    }

    /// The filter, if every row came and it is well formed.
    pub fn finish(self) -> Option<Filter> {
        match self {
            FilterReader::Bloom(r) => r.finish().map(Filter::Bloom),
            FilterReader::Fuse(r) => r.finish().map(Filter::Fuse),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows of a filter longer than the first reservation: the room doubles, then
    /// stops at the filter's length exactly (no memory left over once loaded).
    #[test]
    fn room_for_rows_doubles_and_ends_at_the_total() {
        let mut v: Vec<u8> = Vec::with_capacity(4);
        let mut caps = Vec::new();
        for _ in 0..6 {
            grow_for_row(&mut v, 3, 18);
            v.extend([0; 3]);
            caps.push(v.capacity());
        }
        assert_eq!(v.len(), 18);
        assert_eq!(caps, [4, 8, 16, 16, 16, 18]);
    }
}
