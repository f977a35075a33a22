//! The reconnect policy of a connection slot: how long to pause (doubling
//! backoff with jitter), and whether an attempt succeeded (its session
//! really started).

use std::{
    collections::hash_map::RandomState,
    fmt,
    future::Future,
    hash::{BuildHasher, Hasher},
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    task::{ready, Context, Poll},
    time::Duration,
};

use pin_project::pin_project;
use tower::Service;

use crate::{tls::rustls, Error, Event, Request};

/// The pause before attempt `failures + 1` after `failures` failed ones in a
/// row (at least 1): `interval` doubled per failure, at most `max`, before
/// jitter.
pub(super) fn backoff(interval: Duration, max: Duration, failures: u32) -> Duration {
    interval
        .saturating_mul(1 << failures.saturating_sub(1).min(16))
        .min(max)
}

/// "Equal jitter": a pause drawn uniformly from `[base / 2, base]` by
/// `random`. Half the pause is kept so that backoff still backs off (a pause
/// near zero would hammer a server that is down); the other half spreads
/// clients that lost the same server at the same moment, so they do not
/// all come back in the same millisecond.
pub(super) fn jittered(base: Duration, random: u64) -> Duration {
    let half = base / 2;
    let span = u64::try_from((base - half).as_nanos()).unwrap_or(u64::MAX);
    // The modulo bias is below 2^-32 for spans under 4 s: irrelevant here.
    half + Duration::from_nanos(random % span.saturating_add(1))
}

/// A tiny xorshift64* generator, one per connection slot, for jitter.
///
/// Jitter needs a few bits that differ between clients, not cryptographic
/// randomness, so no `rand` dependency: the seed comes from std's
/// `RandomState` (random keys per process, a fresh pair per instance) mixed
/// with the slot number.
#[derive(Debug, Clone)]
pub(super) struct Jitter(u64);

impl Jitter {
    /// A generator seeded with `seed` (deterministic, for tests).
    pub(super) fn with_seed(seed: u64) -> Self {
        // splitmix64 spreads close seeds apart; xorshift needs a non-zero state.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Jitter((z ^ (z >> 31)) | 1)
    }

    /// A generator seeded differently in every process and slot.
    pub(super) fn for_slot(slot: usize) -> Self {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_usize(slot);
        Jitter::with_seed(hasher.finish())
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// `base` with jitter: see [`jittered`].
    pub(super) fn pause(&mut self, base: Duration) -> Duration {
        jittered(base, self.next())
    }
}

/// What a connection attempt came to, as seen from inside its session.
///
/// Connecting (TCP, TLS, WebSocket upgrade) is not enough for an attempt to
/// count as successful: its session must start. It has not when the
/// new-session callback or `Open` refused it, nor when the server refused
/// the TLS handshake after the client had finished its part (over TLS 1.3
/// the client is done first, and the server's "certificate required" comes
/// as an alert on the first read): a TLS error before the first packet.
#[derive(Default)]
pub(super) struct Attempt {
    opened: AtomicBool,
    delivered: AtomicBool,
    refused: AtomicBool,
    /// Runs once, on the session's task, when `Open` has been accepted.
    on_open: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl fmt::Debug for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attempt")
            .field("opened", &self.opened)
            .field("delivered", &self.delivered)
            .field("refused", &self.refused)
            .finish_non_exhaustive()
    }
}

impl Attempt {
    /// An attempt that calls `on_open` once its session's `Open` has been
    /// accepted.
    pub(super) fn calling(on_open: impl FnOnce() + Send + 'static) -> Self {
        Attempt {
            on_open: Mutex::new(Some(Box::new(on_open))),
            ..Attempt::default()
        }
    }

    /// Whether `Open` was accepted (the session ran, even if the server
    /// refused it on the first read).
    pub(super) fn opened(&self) -> bool {
        self.opened.load(Ordering::Acquire)
    }

    fn open_accepted(&self) {
        self.opened.store(true, Ordering::Release);
        let on_open = self
            .on_open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(on_open) = on_open {
            on_open();
        }
    }

    /// Whether the session started: `Open` accepted, and no TLS refusal
    /// before the first packet.
    pub(super) fn started(&self) -> bool {
        self.opened.load(Ordering::Acquire) && !self.refused.load(Ordering::Acquire)
    }

    fn saw<P>(&self, event: &Event<P>) {
        match event {
            // Looked at first: a store per message dirties the line for
            // nothing once it is set.
            Event::Message(_) if !self.delivered.load(Ordering::Acquire) => {
                self.delivered.store(true, Ordering::Release);
            }
            Event::Error(e) if !self.delivered.load(Ordering::Acquire) && is_tls_refusal(e) => {
                self.refused.store(true, Ordering::Release);
            }
            _ => {}
        }
    }
}

/// A TLS protocol error (an alert from the server included) on the socket.
fn is_tls_refusal(error: &Error) -> bool {
    match error {
        Error::Io { source, .. } => source
            .get_ref()
            .is_some_and(|inner| inner.is::<rustls::Error>()),
        _ => false,
    }
}

/// The session's service, watched for what the attempt came to; otherwise
/// transparent.
pub(super) struct Watched<S> {
    inner: S,
    attempt: Arc<Attempt>,
}

impl<S> Watched<S> {
    pub(super) fn new(inner: S, attempt: Arc<Attempt>) -> Self {
        Watched { inner, attempt }
    }
}

impl<S, P, W> Service<Request<P, W>> for Watched<S>
where
    S: Service<Request<P, W>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = WatchedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<P, W>) -> Self::Future {
        self.attempt.saw(&req.event);
        let open = matches!(req.event, Event::Open).then(|| Arc::clone(&self.attempt));
        WatchedFuture {
            inner: self.inner.call(req),
            open,
        }
    }
}

/// The inner future; for `Open`, marks the session started when it succeeds.
#[pin_project]
pub(super) struct WatchedFuture<F> {
    #[pin]
    inner: F,
    open: Option<Arc<Attempt>>,
}

impl<F, T, E> Future for WatchedFuture<F>
where
    F: Future<Output = Result<T, E>>,
{
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = ready!(this.inner.poll(cx));
        if let (Some(attempt), Ok(_)) = (this.open.take(), &out) {
            attempt.open_accepted();
        }
        Poll::Ready(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn backoff_doubles_from_the_interval_up_to_the_maximum() {
        let got: Vec<_> = (1..=6).map(|n| backoff(50 * MS, 1000 * MS, n)).collect();
        assert_eq!(
            got,
            [50 * MS, 100 * MS, 200 * MS, 400 * MS, 800 * MS, 1000 * MS]
        );
        assert_eq!(backoff(50 * MS, 1000 * MS, u32::MAX), 1000 * MS);
        assert_eq!(backoff(Duration::MAX, Duration::MAX, 30), Duration::MAX);
    }

    #[test]
    fn a_jittered_pause_lies_between_half_and_all_of_its_base() {
        let base = 400 * MS;
        assert_eq!(jittered(base, 0), base / 2);
        assert_eq!(
            jittered(base, u64::try_from((base / 2).as_nanos()).unwrap()),
            base
        );
        assert_eq!(jittered(Duration::ZERO, 12345), Duration::ZERO);
        // No overflow at the extremes.
        assert!(jittered(Duration::MAX, u64::MAX) >= Duration::MAX / 2);
        for seed in 0..1000 {
            let pause = Jitter::with_seed(seed).pause(base);
            assert!(pause >= base / 2 && pause <= base, "{pause:?}");
        }
    }

    /// Eight clients that lost the same server at once: with one seed each,
    /// their first pauses all differ and spread over most of the range.
    #[test]
    fn clients_with_different_seeds_pause_for_different_times() {
        let base = 400 * MS;
        let mut pauses: Vec<Duration> = (0..8u64)
            .map(|client| Jitter::with_seed(client).pause(base))
            .collect();
        pauses.sort();
        pauses.dedup();
        assert_eq!(pauses.len(), 8, "{pauses:?}");
        let spread = pauses[7] - pauses[0];
        assert!(spread >= base / 4, "spread {spread:?} of {pauses:?}");

        // One client's successive pauses differ too.
        let mut one = Jitter::with_seed(7);
        let a = one.pause(base);
        let b = one.pause(base);
        assert_ne!(a, b);

        // And slots seeded from the process's randomness differ.
        let mut slots: Vec<Duration> = (0..8)
            .map(|slot| Jitter::for_slot(slot).pause(base))
            .collect();
        slots.sort();
        slots.dedup();
        assert_eq!(slots.len(), 8, "{slots:?}");
    }
}
