//! The plain numbers [`RpcStats::snapshot`](super::RpcStats::snapshot)
//! returns.

use std::{collections::BTreeMap, time::Duration};

/// The upper bounds of the latency buckets: a handling time falls in the
/// first bucket whose bound it does not exceed, or in the last one (over
/// 1 s).
///
/// ```
/// use getty::rpc::plugin::stats::{Latency, LATENCY_BOUNDS};
/// assert_eq!(Latency::default().buckets.len(), LATENCY_BOUNDS.len() + 1);
/// ```
pub const LATENCY_BOUNDS: [Duration; 4] = [
    Duration::from_millis(1),
    Duration::from_millis(10),
    Duration::from_millis(100),
    Duration::from_secs(1),
];

/// Every route's numbers, by service method (its query part cut off).
///
/// ```
/// use getty::rpc::plugin::stats::RpcStats;
///
/// let snapshot = RpcStats::new().snapshot();
/// for (route, stats) in &snapshot.routes {
///     println!("{route}: {} calls {:?}, {} pushes, max {:?}", stats.calls, stats.statuses, stats.pushes, stats.latency.max);
/// }
/// assert!(snapshot.route("/home/echo").is_none());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StatsSnapshot {
    /// The routes that handled something.
    pub routes: BTreeMap<String, RouteStats>,
}

impl StatsSnapshot {
    /// The numbers of one route, if it handled anything.
    pub fn route(&self, service_method: &str) -> Option<&RouteStats> {
        self.routes.get(service_method)
    }
}

/// One route's numbers.
///
/// ```
/// use getty::rpc::plugin::stats::RouteStats;
///
/// fn failed_calls(route: &RouteStats) -> u64 {
///     route.statuses.iter().filter(|(code, _)| **code != 0).map(|(_, n)| n).sum()
/// }
/// assert_eq!(failed_calls(&RouteStats::default()), 0);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RouteStats {
    /// Calls handled.
    pub calls: u64,
    /// Pushes handled.
    pub pushes: u64,
    /// Calls by the status code of their reply (0 is OK; a failing service
    /// below the layer counts as 500). Pushes have no status.
    pub statuses: BTreeMap<i32, u64>,
    /// How long handling took, calls and pushes together.
    pub latency: Latency,
}

/// Handling times: a count, their sum and maximum, and a histogram over
/// [`LATENCY_BOUNDS`].
///
/// ```
/// use getty::rpc::plugin::stats::Latency;
/// use std::time::Duration;
///
/// let latency = Latency::default();
/// assert_eq!((latency.count, latency.mean()), (0, Duration::ZERO));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Latency {
    /// How many were timed.
    pub count: u64,
    /// Their sum.
    pub sum: Duration,
    /// The longest.
    pub max: Duration,
    /// How many fell in each bucket: `buckets[i]` counts times up to
    /// `LATENCY_BOUNDS[i]` (and over the bound before), `buckets[4]` those
    /// over 1 s.
    pub buckets: [u64; LATENCY_BOUNDS.len() + 1],
}

impl Latency {
    pub(super) fn record(&mut self, elapsed: Duration) {
        self.count += 1;
        self.sum += elapsed;
        self.max = self.max.max(elapsed);
        let bucket = LATENCY_BOUNDS
            .iter()
            .position(|bound| elapsed <= *bound)
            .unwrap_or(LATENCY_BOUNDS.len());
        self.buckets[bucket] += 1;
    }

    /// The mean time, zero when nothing was timed.
    pub fn mean(&self) -> Duration {
        u32::try_from(self.count)
            .ok()
            .filter(|n| *n > 0)
            .map_or(Duration::ZERO, |n| self.sum / n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_fall_in_the_first_bucket_that_holds_them() {
        let mut latency = Latency::default();
        for ms in [0, 1, 2, 10, 50, 1000, 1001] {
            latency.record(Duration::from_millis(ms));
        }
        assert_eq!(latency.buckets, [2, 2, 1, 1, 1]);
        assert_eq!(latency.count, 7);
        assert_eq!(latency.max, Duration::from_millis(1001));
        assert_eq!(latency.sum, Duration::from_millis(2064));
        assert_eq!(latency.mean(), Duration::from_millis(2064) / 7);
    }
}
