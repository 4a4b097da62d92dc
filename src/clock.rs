//! Time. Everything that schedules or stamps reads time through [`Clock`], so tests can
//! run a 4-hour window or a retry ladder in milliseconds with [`ManualClock`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

pub type Sleep<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Milliseconds since the Unix epoch, UTC.
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> i64;

    fn now_secs(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }

    /// Resolves once the clock reads `deadline_ms` or later.
    fn sleep_until(&self, deadline_ms: i64) -> Sleep<'_>;

    /// Resolves once `ms` have passed on this clock.
    fn sleep_ms(&self, ms: i64) -> Sleep<'_> {
        self.sleep_until(self.now_ms().saturating_add(ms))
    }
}

pub type SharedClock = Arc<dyn Clock>;

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        d.as_millis() as i64
    }

    fn sleep_until(&self, deadline_ms: i64) -> Sleep<'_> {
        Box::pin(async move {
            loop {
                let left = deadline_ms - self.now_ms();
                if left <= 0 {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(left as u64)).await;
            }
        })
    }
}

/// A clock that only moves when told to. Sleepers wake when it is moved past their
/// deadline, so a 4-hour wait takes one `advance_ms` call.
#[derive(Debug)]
pub struct ManualClock {
    now: AtomicI64,
    tick: tokio::sync::watch::Sender<i64>,
}

impl ManualClock {
    pub fn new(start_ms: i64) -> Arc<Self> {
        Arc::new(Self {
            now: AtomicI64::new(start_ms),
            tick: tokio::sync::watch::Sender::new(start_ms),
        })
    }

    pub fn advance_ms(&self, ms: i64) {
        let now = self.now.fetch_add(ms, Ordering::SeqCst) + ms;
        self.tick.send_replace(now);
    }

    pub fn set_ms(&self, ms: i64) {
        self.now.store(ms, Ordering::SeqCst);
        self.tick.send_replace(ms);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }

    fn sleep_until(&self, deadline_ms: i64) -> Sleep<'_> {
        let mut rx = self.tick.subscribe();
        Box::pin(async move {
            let _ = rx.wait_for(|now| *now >= deadline_ms).await;
        })
    }
}

/// RFC 3339 UTC with milliseconds, e.g. `2026-04-23T14:01:58.123Z`.
pub fn rfc3339_ms(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let f = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&f).unwrap_or_default()
}

/// The calendar month (UTC) of a timestamp, as `yyyy * 100 + mm`.
pub fn utc_month(ms: i64) -> u32 {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.year() as u32 * 100 + u32::from(u8::from(t.month()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_sleepers_wake_when_moved_past_their_deadline() {
        let c = ManualClock::new(1_000);
        let c2 = c.clone();
        let t = tokio::spawn(async move { c2.sleep_until(5_000).await });
        c.advance_ms(3_999);
        tokio::task::yield_now().await;
        assert!(!t.is_finished());
        c.advance_ms(1);
        t.await.unwrap();
        c.sleep_ms(0).await;
    }

    #[test]
    fn formats_with_millis() {
        assert_eq!(rfc3339_ms(1_776_952_918_123), "2026-04-23T14:01:58.123Z");
        assert_eq!(utc_month(1_776_952_918_123), 202_604);
    }
}
