//! The limit ([`Rate`]) and the token bucket that enforces it.

use std::{fmt, time::Duration};

use tokio::time::Instant;

/// How many packets a session may send: `packets` per `per`, with bursts of
/// up to `burst` packets.
///
/// It is a token bucket: the bucket holds at most `burst` tokens and gains
/// one every [`interval`](Rate::interval) (`per / packets`); each packet
/// takes one. A session that was quiet may send `burst` packets at once, and
/// then one per interval. `burst` defaults to `packets` (one period's worth).
///
/// ```
/// use getty_layers::rate_limit::Rate;
/// use std::time::Duration;
///
/// let rate = Rate::per_second(50).with_burst(10);
/// assert_eq!(rate.interval(), Duration::from_millis(20));
/// assert_eq!(rate.burst(), 10);
/// assert_eq!(rate.to_string(), "50 packets per 1s (burst 10)");
///
/// // 3 packets per 2 seconds, bursts of 3.
/// let slow = Rate::new(3, Duration::from_secs(2));
/// assert_eq!(slow.burst(), 3);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    packets: u32,
    per: Duration,
    burst: u32,
}

impl Rate {
    /// `packets` per `per`, bursts of up to `packets`.
    ///
    /// # Panics
    /// When `packets` is 0 or `per` is zero.
    pub fn new(packets: u32, per: Duration) -> Self {
        assert!(
            packets > 0,
            "a rate limit needs at least one packet per period"
        );
        assert!(!per.is_zero(), "a rate limit needs a non-zero period");
        Rate {
            packets,
            per,
            burst: packets,
        }
    }

    /// `packets` per second, bursts of up to `packets`.
    ///
    /// # Panics
    /// When `packets` is 0.
    pub fn per_second(packets: u32) -> Self {
        Rate::new(packets, Duration::from_secs(1))
    }

    /// Sets the largest burst: how many packets a quiet session may send at once.
    ///
    /// # Panics
    /// When `burst` is 0.
    pub fn with_burst(mut self, burst: u32) -> Self {
        assert!(
            burst > 0,
            "a rate limit's burst must be at least one packet"
        );
        self.burst = burst;
        self
    }

    /// Packets allowed per period.
    pub fn packets(&self) -> u32 {
        self.packets
    }

    /// The period.
    pub fn per(&self) -> Duration {
        self.per
    }

    /// The largest burst.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// The time it takes the bucket to gain one token: `per / packets` (at
    /// least a nanosecond).
    pub fn interval(&self) -> Duration {
        (self.per / self.packets).max(Duration::from_nanos(1))
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} packets per {:?} (burst {})",
            self.packets, self.per, self.burst
        )
    }
}

/// A token bucket, kept as its "theoretical arrival time" (GCRA): the time
/// at which the bucket will be full again if nothing more is taken. Exact
/// with integer time, no refill ticks, two words of state.
#[derive(Debug, Clone)]
pub(super) struct Bucket {
    interval: Duration,
    /// How far `tat` may run ahead of now: `interval * (burst - 1)`.
    tolerance: Duration,
    tat: Instant,
}

/// Instead of overflowing, an absurdly slow rate stops at about 30 years.
const FAR: Duration = Duration::from_secs(86_400 * 365 * 30);

impl Bucket {
    /// A full bucket at `now`.
    pub(super) fn new(rate: Rate, now: Instant) -> Self {
        let interval = rate.interval();
        Bucket {
            interval,
            tolerance: interval.checked_mul(rate.burst - 1).unwrap_or(FAR),
            tat: now,
        }
    }

    /// When the next token is (or was) there.
    pub(super) fn ready_at(&self) -> Option<Instant> {
        self.tat.checked_sub(self.tolerance)
    }

    /// Takes a token, or tells when one will be there (nothing is taken then).
    pub(super) fn try_take(&mut self, now: Instant) -> Result<(), Instant> {
        match self.ready_at() {
            Some(at) if at > now => Err(at),
            _ => {
                self.take(now);
                Ok(())
            }
        }
    }

    /// Takes a token whether or not there is one (the bucket goes into debt).
    pub(super) fn take(&mut self, now: Instant) {
        let base = self.tat.max(now);
        self.tat = base
            .checked_add(self.interval)
            .unwrap_or_else(|| base + FAR.min(self.interval));
    }

    /// Tokens in the bucket at `now`, for logs and tests.
    pub(super) fn available(&self, now: Instant, burst: u32) -> u32 {
        if self.tat <= now {
            return burst;
        }
        let ahead = self.tat - now;
        // Tokens missing: ceil(ahead / interval).
        let missing = ahead.as_nanos().div_ceil(self.interval.as_nanos());
        u32::try_from(missing).map_or(0, |m| burst.saturating_sub(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_full_bucket_gives_a_burst_then_one_token_per_interval() {
        let t0 = Instant::now();
        let mut b = Bucket::new(Rate::per_second(10).with_burst(3), t0);
        assert_eq!(b.available(t0, 3), 3);
        for _ in 0..3 {
            assert_eq!(b.try_take(t0), Ok(()));
        }
        assert_eq!(b.available(t0, 3), 0);
        // The next token comes one interval (100 ms) after the burst.
        assert_eq!(b.try_take(t0), Err(t0 + 100 * MS));
        assert_eq!(b.try_take(t0 + 99 * MS), Err(t0 + 100 * MS));
        assert_eq!(b.try_take(t0 + 100 * MS), Ok(()));
        assert_eq!(b.try_take(t0 + 100 * MS), Err(t0 + 200 * MS));
    }

    #[test]
    fn a_refused_packet_takes_nothing() {
        let t0 = Instant::now();
        let mut b = Bucket::new(Rate::per_second(10).with_burst(1), t0);
        assert_eq!(b.try_take(t0), Ok(()));
        for _ in 0..100 {
            assert!(b.try_take(t0 + 50 * MS).is_err());
        }
        assert_eq!(b.try_take(t0 + 100 * MS), Ok(()));
    }

    #[test]
    fn tokens_refill_up_to_the_burst_and_no_further() {
        let t0 = Instant::now();
        let mut b = Bucket::new(Rate::per_second(10).with_burst(4), t0);
        for _ in 0..4 {
            b.try_take(t0).unwrap();
        }
        assert_eq!(b.available(t0 + 250 * MS, 4), 2);
        // A long pause refills to the burst, not beyond.
        let later = t0 + Duration::from_secs(10);
        assert_eq!(b.available(later, 4), 4);
        for _ in 0..4 {
            b.try_take(later).unwrap();
        }
        assert!(b.try_take(later).is_err());
    }

    #[test]
    fn over_a_long_run_the_rate_holds() {
        let t0 = Instant::now();
        let rate = Rate::new(3, Duration::from_secs(1)).with_burst(2);
        let mut b = Bucket::new(rate, t0);
        // Offer a packet every millisecond for 10 s: 2 (burst) + 3 per second.
        let admitted = (0..10_000u32)
            .filter(|i| b.try_take(t0 + *i * MS).is_ok())
            .count();
        assert_eq!(admitted, 2 + 30 - 1, "burst plus one per 333.33 ms");
    }

    #[test]
    fn a_forced_take_puts_the_bucket_in_debt() {
        let t0 = Instant::now();
        let mut b = Bucket::new(Rate::per_second(10).with_burst(1), t0);
        b.take(t0);
        b.take(t0);
        assert_eq!(b.try_take(t0), Err(t0 + 200 * MS));
    }

    #[test]
    #[should_panic(expected = "at least one packet")]
    fn a_rate_of_zero_packets_is_refused() {
        let _ = Rate::per_second(0);
    }
}
