//! A lock-free log-linear histogram, for handler latency.

use std::{
    fmt,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

/// Linear sub-buckets per power of two: 2^4 = 16, so a bucket is at most
/// 1/16 (6.25 %) of the values it holds wide.
const SUB_BITS: u32 = 4;
const SUB: u64 = 1 << SUB_BITS;
/// Values below `SUB` get a bucket each; then every power of two from
/// 2^SUB_BITS to 2^63 gets `SUB` buckets: the whole `u64` range.
const BUCKETS: usize = (64 - SUB_BITS as usize + 1) * SUB as usize;

/// The bucket of `value`.
fn index(value: u64) -> usize {
    if value < SUB {
        return value as usize;
    }
    let msb = 63 - value.leading_zeros(); // >= SUB_BITS
    let shift = msb - SUB_BITS;
    // `value >> shift` is in SUB..2*SUB: the top SUB_BITS + 1 bits.
    shift as usize * SUB as usize + (value >> shift) as usize
}

/// The smallest value in bucket `i`.
fn lowest(i: usize) -> u64 {
    if (i as u64) < SUB {
        return i as u64;
    }
    let shift = i as u64 / SUB - 1;
    (i as u64 - shift * SUB) << shift
}

/// The largest value in bucket `i`.
fn highest(i: usize) -> u64 {
    if (i as u64) < SUB {
        return i as u64;
    }
    let shift = i as u64 / SUB - 1;
    lowest(i) + ((1u64 << shift) - 1)
}

/// A histogram of `u64` values that many tasks record into at once without
/// a lock; the stats layer records handler latency in microseconds.
///
/// Buckets are log-linear: every power of two is split into 16 equal
/// sub-buckets, so a reported percentile is within 1/16 (6.25 %) of the
/// true one, above 15 (values 0 to 15 are exact), for the whole `u64`
/// range, in 976 counters (about 8 KiB). The maximum is kept exactly.
///
/// Why not the `hdrhistogram` crate: its `Histogram::record` takes
/// `&mut self`, so recording from many session tasks would need a mutex
/// taken on every message (contended by every session of the server), or
/// its `SyncHistogram`, whose recorders buffer per thread and need an
/// explicit, blocking `refresh` to be read. Here a record is three relaxed
/// atomic operations on the shared histogram, and a snapshot can be taken
/// at any time from any thread.
///
/// ```
/// use getty_layers::stats::Histogram;
///
/// let h = Histogram::new();
/// for v in 1..=1000 {
///     h.record(v);
/// }
/// assert_eq!(h.count(), 1000);
/// assert_eq!(h.max(), 1000);
/// let p50 = h.value_at_quantile(0.5);
/// assert!((Histogram::lowest_equivalent(500)..=Histogram::highest_equivalent(500)).contains(&p50));
/// ```
pub struct Histogram {
    buckets: Box<[AtomicU64]>,
    sum: AtomicU64,
    max: AtomicU64,
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
            max: AtomicU64::new(0),
        }
    }

    /// Records one value. Lock-free: callable from any number of threads.
    pub fn record(&self, value: u64) {
        if value > self.max.load(Ordering::Relaxed) {
            self.max.fetch_max(value, Ordering::Relaxed);
        }
        self.sum.fetch_add(value, Ordering::Relaxed);
        // Release: whoever sees this count also sees the max updated above,
        // so a reported percentile is never above the reported max.
        self.buckets[index(value)].fetch_add(1, Ordering::Release);
    }

    /// Records a duration in whole microseconds (saturating at `u64::MAX`).
    pub fn record_duration(&self, duration: Duration) {
        self.record(u64::try_from(duration.as_micros()).unwrap_or(u64::MAX));
    }

    /// How many values were recorded.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Acquire)).sum()
    }

    /// The largest value recorded (exact), or 0 when empty.
    pub fn max(&self) -> u64 {
        self.max.load(Ordering::Relaxed)
    }

    /// The value at quantile `q` (0.0 to 1.0, clamped): the smallest `v`
    /// such that at least `q` of the values are at most `v`, reported as the
    /// largest value of its bucket (never above [`max`](Histogram::max)).
    /// 0 when empty.
    pub fn value_at_quantile(&self, q: f64) -> u64 {
        self.load().quantile(q)
    }

    /// Count, mean, p50, p90, p99 and max, from one pass over the buckets.
    pub fn summary(&self) -> LatencySummary {
        let loaded = self.load();
        LatencySummary {
            count: loaded.total,
            mean_us: loaded.sum.checked_div(loaded.total).unwrap_or(0),
            p50_us: loaded.quantile(0.50),
            p90_us: loaded.quantile(0.90),
            p99_us: loaded.quantile(0.99),
            max_us: loaded.max,
        }
    }

    /// The smallest value recorded in the same bucket as `value`.
    ///
    /// ```
    /// use getty_layers::stats::Histogram;
    /// assert_eq!(Histogram::lowest_equivalent(7), 7);
    /// assert_eq!(Histogram::lowest_equivalent(1000), 992);
    /// ```
    pub fn lowest_equivalent(value: u64) -> u64 {
        lowest(index(value))
    }

    /// The largest value recorded in the same bucket as `value`: what a
    /// percentile falling in that bucket reports.
    ///
    /// ```
    /// use getty_layers::stats::Histogram;
    /// assert_eq!(Histogram::highest_equivalent(7), 7);
    /// assert_eq!(Histogram::highest_equivalent(1000), 1023);
    /// ```
    pub fn highest_equivalent(value: u64) -> u64 {
        highest(index(value))
    }

    /// The buckets, then the max (in that order, see `record`), then the sum.
    fn load(&self) -> Loaded {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Acquire))
            .collect();
        Loaded {
            total: counts.iter().sum(),
            counts,
            max: self.max.load(Ordering::Relaxed),
            sum: self.sum.load(Ordering::Relaxed),
        }
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

impl fmt::Debug for Histogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Histogram")
            .field("summary", &self.summary())
            .finish()
    }
}

/// One consistent read of the buckets.
struct Loaded {
    counts: Vec<u64>,
    total: u64,
    max: u64,
    sum: u64,
}

impl Loaded {
    fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let q = if q.is_nan() { 1.0 } else { q.clamp(0.0, 1.0) };
        // The rank of the value wanted, 1-based.
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return highest(i).min(self.max);
            }
        }
        self.max
    }
}

/// Handler latency, in microseconds: a summary of a [`Histogram`].
///
/// Percentiles are within 1/16 (6.25 %) of the true value; `max_us` is
/// exact; `mean_us` is rounded down.
///
/// ```
/// use getty_layers::stats::Histogram;
/// use std::time::Duration;
///
/// let h = Histogram::new();
/// h.record_duration(Duration::from_millis(2));
/// let s = h.summary();
/// assert_eq!((s.count, s.max_us, s.mean_us), (1, 2000, 2000));
/// assert_eq!(s.p99_us, 2000);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct LatencySummary {
    /// How many values were recorded.
    pub count: u64,
    /// The mean.
    pub mean_us: u64,
    /// The median.
    pub p50_us: u64,
    /// The 90th percentile.
    pub p90_us: u64,
    /// The 99th percentile.
    pub p99_us: u64,
    /// The largest value.
    pub max_us: u64,
}

impl fmt::Display for LatencySummary {
    /// `p50 12µs, p90 40µs, p99 250µs, max 900µs (1200 calls)`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "p50 {}µs, p90 {}µs, p99 {}µs, max {}µs ({} calls)",
            self.p50_us, self.p90_us, self.p99_us, self.max_us, self.count
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_cover_u64() {
        assert_eq!(index(0), 0);
        assert_eq!(index(u64::MAX), BUCKETS - 1);
        for i in 0..BUCKETS {
            assert_eq!(index(lowest(i)), i, "lowest of {i}");
            assert_eq!(index(highest(i)), i, "highest of {i}");
            if i + 1 < BUCKETS {
                assert_eq!(highest(i) + 1, lowest(i + 1), "gap after {i}");
            }
        }
        assert_eq!(highest(BUCKETS - 1), u64::MAX);
    }

    #[test]
    fn a_bucket_is_at_most_a_sixteenth_of_its_values_wide() {
        for i in SUB as usize..BUCKETS {
            let width = highest(i) - lowest(i) + 1;
            assert!(width <= lowest(i) / SUB, "bucket {i}");
        }
    }
}
