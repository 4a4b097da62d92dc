//! The console's time series (issue 16): per destination, one sample every 30 s of its
//! error rate, queue depth and the events delivered since the sample before, kept for
//! [`KEEP_MS`] (a little over 24 h). Keys are `(destination, sample ms)`, so a
//! destination's samples are one range in time order; each append deletes what fell
//! out of the window below it (usually nothing or one row).

use redb::TableDefinition;
use serde::Serialize;

pub const SERIES: TableDefinition<(&str, i64), &[u8]> = TableDefinition::new("series");

/// How long samples are kept: 24 h and one sample interval.
pub const KEEP_MS: i64 = 24 * 3_600_000 + INTERVAL_MS;

/// One sample every 30 s.
pub const INTERVAL_MS: i64 = 30_000;

/// One sample of one destination.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sample {
    #[serde(skip)]
    pub at_ms: i64,
    /// The evaluated error rate (0–1); none before the first evaluation.
    pub error_rate: Option<f64>,
    pub queue_depth: u64,
    /// Events delivered since the sample before.
    pub delivered: u64,
}

/// `[version 1][error rate f64 LE, NaN for none][depth u64 LE][delivered u64 LE]`.
pub fn encode(s: &Sample) -> [u8; 25] {
    let mut b = [0u8; 25];
    b[0] = 1;
    b[1..9].copy_from_slice(&s.error_rate.unwrap_or(f64::NAN).to_le_bytes());
    b[9..17].copy_from_slice(&s.queue_depth.to_le_bytes());
    b[17..25].copy_from_slice(&s.delivered.to_le_bytes());
    b
}

pub fn decode(at_ms: i64, b: &[u8]) -> Option<Sample> {
    if b.len() != 25 || b[0] != 1 {
        return None;
    }
    let f = |r: std::ops::Range<usize>| <[u8; 8]>::try_from(&b[r]).ok();
    let rate = f64::from_le_bytes(f(1..9)?);
    Some(Sample {
        at_ms,
        error_rate: (!rate.is_nan()).then_some(rate),
        queue_depth: u64::from_le_bytes(f(9..17)?),
        delivered: u64::from_le_bytes(f(17..25)?),
    })
}

/// Appends a sample and deletes `dest`'s samples older than [`KEEP_MS`] before it.
pub fn append(
    table: &mut redb::Table<(&str, i64), &[u8]>,
    dest: &str,
    s: &Sample,
) -> Result<(), redb::Error> {
    table.insert((dest, s.at_ms), encode(s).as_slice())?;
    let cutoff = s.at_ms.saturating_sub(KEEP_MS);
    table.retain_in((dest, i64::MIN)..(dest, cutoff), |_, _| false)?;
    Ok(())
}

/// Deletes every sample of `dest` (a purged destination).
pub fn purge(table: &mut redb::Table<(&str, i64), &[u8]>, dest: &str) -> Result<(), redb::Error> {
    table.retain_in((dest, i64::MIN)..=(dest, i64::MAX), |_, _| false)?;
    Ok(())
}

/// `dest`'s samples at or after `from_ms`, oldest first.
pub fn read(
    txn: &redb::ReadTransaction,
    dest: &str,
    from_ms: i64,
) -> Result<Vec<Sample>, redb::Error> {
    let table = match txn.open_table(SERIES) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for row in table.range((dest, from_ms)..=(dest, i64::MAX))? {
        let (k, v) = row?;
        if let Some(s) = decode(k.value().1, v.value()) {
            out.push(s);
        }
    }
    Ok(out)
}

/// At most `points` of `dest`'s samples in `from_ms..=to_ms`: the first sample of each
/// of `points` equal stretches of the span from the first sample to `to_ms` (one seek each, however many samples a stretch holds;
/// the overview's sparklines, where reading every sample of 100 destinations would
/// cost 288,000 rows).
pub fn read_sparse(
    txn: &redb::ReadTransaction,
    dest: &str,
    from_ms: i64,
    to_ms: i64,
    points: usize,
) -> Result<Vec<Sample>, redb::Error> {
    let table = match txn.open_table(SERIES) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    // The stretches divide the span from the first sample on.
    let first = match table.range((dest, from_ms)..=(dest, to_ms))?.next() {
        Some(row) => row?.0.value().1,
        None => return Ok(Vec::new()),
    };
    let from_ms = first;
    let points = points.max(1) as i64;
    let step = ((to_ms - from_ms) / points).max(1);
    let mut out = Vec::new();
    let mut at = from_ms;
    while at <= to_ms {
        let Some(row) = table.range((dest, at)..=(dest, to_ms))?.next() else {
            break;
        };
        let (k, v) = row?;
        let t = k.value().1;
        if let Some(s) = decode(t, v.value()) {
            out.push(s);
        }
        // The next stretch after the one this sample is in.
        at = from_ms + ((t - from_ms) / step + 1) * step;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_round_trip() {
        for s in [
            Sample {
                at_ms: 5,
                error_rate: Some(0.25),
                queue_depth: 7,
                delivered: 9,
            },
            Sample {
                at_ms: 6,
                error_rate: None,
                queue_depth: u64::MAX,
                delivered: 0,
            },
        ] {
            assert_eq!(decode(s.at_ms, &encode(&s)), Some(s));
        }
        assert_eq!(decode(1, &[2u8; 25]), None);
    }

    #[test]
    fn sparse_reads_take_one_sample_per_stretch() {
        use redb::ReadableDatabase;
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Database::create(dir.path().join("s.redb")).unwrap();
        let w = db.begin_write().unwrap();
        {
            let mut t = w.open_table(SERIES).unwrap();
            for i in 0..2880i64 {
                let s = Sample {
                    at_ms: i * INTERVAL_MS,
                    error_rate: None,
                    queue_depth: i as u64,
                    delivered: 0,
                };
                append(&mut t, "d", &s).unwrap();
            }
            append(
                &mut t,
                "e",
                &Sample {
                    at_ms: 0,
                    error_rate: Some(1.0),
                    queue_depth: 0,
                    delivered: 0,
                },
            )
            .unwrap();
        }
        w.commit().unwrap();
        let r = db.begin_read().unwrap();
        let all = read(&r, "d", 0).unwrap();
        assert_eq!(all.len(), 2880);
        let to = 2879 * INTERVAL_MS;
        let sparse = read_sparse(&r, "d", 0, to, 120).unwrap();
        assert!((115..=121).contains(&sparse.len()), "{}", sparse.len());
        assert_eq!(sparse[0], all[0]);
        assert!(sparse.windows(2).all(|w| w[0].at_ms < w[1].at_ms));
        assert_eq!(read_sparse(&r, "e", 0, to, 120).unwrap().len(), 1);
        assert!(read_sparse(&r, "x", 0, to, 120).unwrap().is_empty());
    }
}
