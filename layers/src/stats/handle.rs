//! The [`Stats`] handle and its [`StatsSnapshot`].

use std::{
    collections::BTreeMap,
    fmt,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use getty::SessionStats;

use super::{Histogram, LatencySummary, StatsLayer};

/// Aggregate counters of every session whose stack has a
/// [`StatsLayer`] made from this handle: sessions opened, closed, live and
/// refused; packets and bytes in and out; errors by kind; handler latency.
///
/// Cheap to clone (an `Arc` inside): keep one clone to read
/// [`snapshot`](Stats::snapshot)s and give another to the layer. One handle
/// may serve several servers and clients; their figures add up.
///
/// ```
/// use bytes::Bytes;
/// use getty::{Addr, EndpointKind, Event, Request, Session, SessionConfig};
/// use getty_layers::stats::Stats;
/// use std::convert::Infallible;
/// use tower::{Service, ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let stats = Stats::new();
/// let mut svc = ServiceBuilder::new()
///     .layer(stats.layer())
///     .service_fn(|req: Request<Bytes>| async move { Ok::<_, Infallible>(req.into_message()) });
///
/// let session: Session =
///     Session::new(EndpointKind::Detached, Addr::Unknown, Addr::Unknown, SessionConfig::default());
/// for event in [Event::Open, Event::Message(Bytes::from("hi")), Event::Close] {
///     svc.ready().await.unwrap().call(Request::new(session.clone(), event)).await.unwrap();
/// }
///
/// let snap = stats.snapshot();
/// assert_eq!((snap.opened, snap.closed, snap.live), (1, 1, 0));
/// assert_eq!(snap.latency.count, 1);
/// println!("{snap}");
/// # }
/// ```
#[derive(Clone, Default)]
pub struct Stats {
    pub(super) shared: Arc<Shared>,
}

/// The counters behind a [`Stats`].
#[derive(Default)]
pub(super) struct Shared {
    opened: AtomicU64,
    closed: AtomicU64,
    refused: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    packets_in: AtomicU64,
    packets_out: AtomicU64,
    writes: AtomicU64,
    /// By `Error::kind()`. Errors are rare (at most a few per session), so
    /// a mutex costs nothing here, and it takes kinds added later to getty.
    errors: Mutex<BTreeMap<&'static str, u64>>,
    pub(super) latency: Histogram,
}

impl Shared {
    pub(super) fn count_opened(&self) {
        self.opened.fetch_add(1, Ordering::SeqCst);
    }

    pub(super) fn count_closed(&self) {
        self.closed.fetch_add(1, Ordering::SeqCst);
    }

    pub(super) fn count_refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn count_error(&self, kind: &'static str) {
        *self
            .errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(kind)
            .or_default() += 1;
    }

    /// Adds what the session's counters grew by since `seen`, and moves
    /// `seen` to `now`.
    pub(super) fn add_traffic(&self, seen: &mut SessionStats, now: SessionStats) {
        fn add(counter: &AtomicU64, now: u64, seen: u64) {
            let delta = now.saturating_sub(seen);
            if delta > 0 {
                counter.fetch_add(delta, Ordering::Relaxed);
            }
        }
        add(&self.bytes_in, now.bytes_in, seen.bytes_in);
        add(&self.bytes_out, now.bytes_out, seen.bytes_out);
        add(&self.packets_in, now.packets_in, seen.packets_in);
        add(&self.packets_out, now.packets_out, seen.packets_out);
        add(&self.writes, now.writes, seen.writes);
        *seen = now;
    }
}

impl Stats {
    /// A handle with every counter at zero.
    pub fn new() -> Self {
        Stats::default()
    }

    /// A [`StatsLayer`] counting into this handle; the same as
    /// `StatsLayer::new(stats.clone())`.
    pub fn layer(&self) -> StatsLayer {
        StatsLayer::new(self.clone())
    }

    /// The handler-latency histogram (microseconds, `Message` events only).
    pub fn latency(&self) -> &Histogram {
        &self.shared.latency
    }

    /// The counters now.
    ///
    /// `live` is `opened - closed`, so `opened == closed + live` holds in
    /// every snapshot (`closed` is read first, and a session is counted
    /// closed only after it was counted opened). Traffic of a live session
    /// is added at each of its events, so it can lag behind
    /// [`Session::stats`](getty::Session::stats) until the session's next
    /// event; once every session has closed, the figures are exact.
    pub fn snapshot(&self) -> StatsSnapshot {
        let s = &self.shared;
        let closed = s.closed.load(Ordering::SeqCst);
        let opened = s.opened.load(Ordering::SeqCst);
        let errors = s
            .errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| ((*k).to_owned(), *v))
            .collect();
        StatsSnapshot {
            opened,
            closed,
            live: opened.saturating_sub(closed),
            refused: s.refused.load(Ordering::Relaxed),
            packets_in: s.packets_in.load(Ordering::Relaxed),
            packets_out: s.packets_out.load(Ordering::Relaxed),
            bytes_in: s.bytes_in.load(Ordering::Relaxed),
            bytes_out: s.bytes_out.load(Ordering::Relaxed),
            writes: s.writes.load(Ordering::Relaxed),
            errors,
            latency: s.latency.summary(),
        }
    }
}

impl fmt::Debug for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Stats").field(&self.snapshot()).finish()
    }
}

/// The counters of a [`Stats`] at one moment.
///
/// Serializes (serde) to an object of these fields, `errors` an object of
/// kind to count and `latency` an object of [`LatencySummary`]'s fields.
/// `Display` is one human line:
///
/// ```text
/// sessions: 3 live, 10 opened, 7 closed, 1 refused; in: 120 pkgs, 4800 bytes; out: 121 pkgs, 4804 bytes, 30 writes; errors: 1 (packet_too_large 1); latency: p50 12µs, p90 40µs, p99 250µs, max 900µs (120 calls)
/// ```
///
/// ```
/// use getty_layers::stats::Stats;
///
/// let snap = Stats::new().snapshot();
/// assert_eq!(snap.opened, snap.closed + snap.live);
/// assert_eq!(snap.error_count(), 0);
/// assert!(snap.to_string().starts_with("sessions: 0 live, 0 opened, 0 closed, 0 refused"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct StatsSnapshot {
    /// Sessions whose `Open` the stack accepted.
    pub opened: u64,
    /// Opened sessions that ended (their `Close` passed, or their stack was
    /// dropped without one).
    pub closed: u64,
    /// `opened - closed`.
    pub live: u64,
    /// Sessions whose `Open` the inner service refused with an error (or a
    /// panic, which getty's driver turns into a refusal); they
    /// are not counted opened, and never closed. (A session refused by the
    /// make-service never had a stack, so no layer sees it.)
    pub refused: u64,
    /// Packets decoded.
    pub packets_in: u64,
    /// Packets encoded, answers and [`send`](getty::Session::send)s alike.
    pub packets_out: u64,
    /// Bytes read from sockets.
    pub bytes_in: u64,
    /// Bytes written to sockets.
    pub bytes_out: u64,
    /// Socket write calls.
    pub writes: u64,
    /// `Error` events by [`Error::kind`](getty::Error::kind).
    pub errors: BTreeMap<String, u64>,
    /// Time from calling the inner service with a `Message` to its
    /// future's completion.
    pub latency: LatencySummary,
}

impl StatsSnapshot {
    /// `Error` events of every kind.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// `Error` events of one kind (an [`Error::kind`](getty::Error::kind) name).
    pub fn errors_of(&self, kind: &str) -> u64 {
        self.errors.get(kind).copied().unwrap_or(0)
    }
}

impl fmt::Display for StatsSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sessions: {} live, {} opened, {} closed, {} refused; \
             in: {} pkgs, {} bytes; out: {} pkgs, {} bytes, {} writes; errors: {}",
            self.live,
            self.opened,
            self.closed,
            self.refused,
            self.packets_in,
            self.bytes_in,
            self.packets_out,
            self.bytes_out,
            self.writes,
            self.error_count()
        )?;
        if !self.errors.is_empty() {
            f.write_str(" (")?;
            for (i, (kind, n)) in self.errors.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{kind} {n}")?;
            }
            f.write_str(")")?;
        }
        write!(f, "; latency: {}", self.latency)
    }
}
