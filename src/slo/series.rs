//! Time series for the dashboard's charts: the window's minutes summed into buckets.

use super::{Minute, Slo, Totals, minute_of};
use crate::store::StoreError;

/// Sums per bucket, oldest first.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Series {
    /// The first minute of the first bucket (minutes since the epoch).
    pub start_minute: u64,
    pub bucket_minutes: u64,
    pub buckets: Vec<Totals>,
}

impl Series {
    /// The bucket holding `minute`, if the series covers it.
    pub fn index_of(&self, minute: u64) -> Option<usize> {
        let i = minute.checked_sub(self.start_minute)? / self.bucket_minutes.max(1);
        (i < self.buckets.len() as u64).then_some(i as usize)
    }
}

impl Slo {
    /// `buckets` sums of `bucket_minutes` each, the last one ending with the current
    /// minute (its unflushed counts included). Read from the stored sums of whole
    /// slots, so a 30-day series reads a few thousand small sums, not 43,200 minutes.
    pub fn series(&self, buckets: u64, bucket_minutes: u64) -> Result<Series, StoreError> {
        let bucket_minutes = bucket_minutes.max(1);
        let now_min = minute_of(self.0.clock.now());
        let start = (now_min + 1).saturating_sub(buckets * bucket_minutes);
        // Held while reading, as `figures` does, so the unflushed part counts once.
        let flushed = self.0.flushed.lock().unwrap_or_else(|p| p.into_inner());
        let spans: Vec<(u64, u64)> = (0..buckets)
            .map(|i| {
                let from = start + i * bucket_minutes;
                (from, (from + bucket_minutes - 1).min(now_min))
            })
            .collect();
        let mut out = self.stored_spans(&spans)?;
        let mut pending = Minute::default();
        pending.add(&self.0.live.snapshot().minus(&flushed));
        drop(flushed);
        if let Some(last) = out.last_mut() {
            last.add_minute(&pending);
        }
        Ok(Series {
            start_minute: start,
            bucket_minutes,
            buckets: out,
        })
    }
}
