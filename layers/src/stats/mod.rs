//! Aggregate statistics over sessions: opened, closed and live sessions,
//! packets and bytes in and out, errors by kind, handler latency.
//!
//! A [`Stats`] handle holds the counters; a [`StatsLayer`] made from it goes
//! into every session's stack; [`Stats::snapshot`] reads them as a
//! [`StatsSnapshot`] (serde `Serialize`, and a one-line `Display`).
//!
//! ```no_run
//! use bytes::Bytes;
//! use getty::{codec::LengthCodec, new_session_fn, EventListener, ListenerService, Server, Session};
//! use getty_layers::stats::Stats;
//! use std::time::Duration;
//!
//! struct Echo;
//! impl EventListener<Bytes> for Echo {
//!     fn on_message(&mut self, _: &Session, pkg: Bytes) -> Option<Bytes> { Some(pkg) }
//! }
//!
//! # async fn demo() -> std::io::Result<()> {
//! let stats = Stats::new();
//! let layer = stats.layer();
//! let server = Server::builder().bind("127.0.0.1:0").await?.serve(
//!     LengthCodec::new(),
//!     new_session_fn(move |_: &Session| {
//!         Ok::<_, getty::BoxError>(
//!             tower::ServiceBuilder::new().layer(layer.clone()).service(ListenerService::new(Echo)),
//!         )
//!     }),
//! );
//! tokio::time::sleep(Duration::from_secs(60)).await;
//! println!("{}", stats.snapshot());
//! # Ok(()) }
//! ```
//!
//! # What is counted, and when
//!
//! - **Sessions.** `opened` counts an `Open` the inner service accepted
//!   (its future resolved `Ok`); one it refused (an error, or a panic, which
//!   getty's driver contains and treats as a refusal) counts as `refused`,
//!   and a `Close` for it is not counted. `closed` counts the `Close` of an opened
//!   session, or the end of its stack without one (getty's driver skips
//!   `Close` when the service's `poll_ready` failed; the stack is dropped
//!   then). `live` is `opened - closed`, so `opened == closed + live` in every
//!   snapshot, and `live` is 0 once every session has ended.
//! - **Traffic** comes from [`Session::stats`]: each session's
//!   [`StatsService`] remembers the last [`SessionStats`] it saw and adds the
//!   difference to the aggregate on every event, so what
//!   [`Session::send`](getty::Session::send) wrote counts too, and `Close`
//!   (after the socket is closed) adds the rest. Between events a live
//!   session's latest traffic is not in the aggregate yet; a cron period
//!   (`Tick`) bounds the lag. The per-session figures stay on
//!   [`Session::stats`]: the layer keeps nothing per session beyond that
//!   last-seen copy and the session's open/closed state.
//! - **Errors** are counted by [`Error::kind`](getty::Error::kind) when an
//!   `Event::Error` passes the layer.
//! - **Latency** is the time from calling the inner service with a
//!   `Message` to its future's completion (successful or not), in
//!   microseconds, in a lock-free [`Histogram`].
//!
//! [`Session::stats`]: getty::Session::stats

pub mod future;
mod handle;
mod histogram;
mod layer;

use std::{
    fmt,
    sync::{
        atomic::{AtomicU8, Ordering},
        Arc,
    },
    task::{Context, Poll},
};

use getty::{Event, Request, SessionStats};
use tokio::time::Instant;
use tower::Service;

use self::{
    future::{OpenGuard, ResponseFuture, Track},
    handle::Shared,
};
pub use self::{
    handle::{Stats, StatsSnapshot},
    histogram::{Histogram, LatencySummary},
    layer::StatsLayer,
};

/// A session's state as the layer sees it.
const NEW: u8 = 0;
const OPEN: u8 = 1;
const CLOSED: u8 = 2;
const REFUSED: u8 = 3;
/// The service was dropped before its `Open` completed.
const GONE: u8 = 4;

/// Counts an `Open` whose inner future completed: opened if it was
/// accepted, refused if not; neither if the service is gone meanwhile.
fn open_finished(shared: &Shared, state: &AtomicU8, accepted: bool) {
    let to = if accepted { OPEN } else { REFUSED };
    if state
        .compare_exchange(NEW, to, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
    {
        if accepted {
            shared.count_opened();
        } else {
            shared.count_refused();
        }
    }
}

/// The middleware of [`StatsLayer`]: counts one session's events and
/// traffic into a [`Stats`] handle.
///
/// One `StatsService` serves one session: it remembers that session's last
/// seen [`SessionStats`] and whether it opened. A clone starts afresh, as
/// the service of another session (tower's `Shared` make-service clones a
/// prototype per session, and that works). Dropping an opened service that
/// saw no `Close` counts the session closed.
///
/// ```
/// use bytes::Bytes;
/// use getty::{Addr, EndpointKind, Event, Request, Session, SessionConfig};
/// use getty_layers::stats::{Stats, StatsService};
/// use std::convert::Infallible;
/// use tower::{service_fn, Service, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let stats = Stats::new();
/// let refuse = service_fn(|req: Request<Bytes>| async move {
///     match req.event {
///         Event::Open => Err("not today"),
///         _ => Ok(None::<Bytes>),
///     }
/// });
/// let mut svc = StatsService::new(refuse, stats.clone());
/// let session: Session =
///     Session::new(EndpointKind::Detached, Addr::Unknown, Addr::Unknown, SessionConfig::default());
/// assert!(svc.ready().await.unwrap().call(Request::new(session, Event::Open)).await.is_err());
///
/// let snap = stats.snapshot();
/// assert_eq!((snap.opened, snap.refused, snap.live), (0, 1, 0));
/// # }
/// ```
pub struct StatsService<S> {
    inner: S,
    tracker: Tracker,
}

/// The per-session state, apart from the inner service so that
/// [`StatsService::into_inner`] can move the inner service out while this
/// still settles the session's count when dropped.
struct Tracker {
    stats: Stats,
    /// `NEW`, `OPEN`, ...: shared with the `Open` call's future.
    state: Arc<AtomicU8>,
    /// The session's counters when last added to the aggregate.
    seen: SessionStats,
}

impl Tracker {
    fn new(stats: Stats) -> Self {
        Tracker {
            stats,
            state: Arc::new(AtomicU8::new(NEW)),
            seen: SessionStats::default(),
        }
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.stats.shared
    }

    /// Counts the session closed if it is open; true if it was.
    fn close(&self) -> bool {
        let closed = self
            .state
            .compare_exchange(OPEN, CLOSED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if closed {
            self.shared().count_closed();
        }
        closed
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        if !self.close() {
            // An `Open` still pending (its future kept elsewhere) must not
            // count the session opened with nobody left to close it.
            let _ = self
                .state
                .compare_exchange(NEW, GONE, Ordering::AcqRel, Ordering::Acquire);
        }
    }
}

impl<S> StatsService<S> {
    /// Wraps `inner`, counting into `stats`.
    pub fn new(inner: S, stats: Stats) -> Self {
        StatsService {
            inner,
            tracker: Tracker::new(stats),
        }
    }

    /// A [`StatsLayer`] counting into `stats`.
    pub fn layer(stats: Stats) -> StatsLayer {
        StatsLayer::new(stats)
    }

    /// The handle counted into.
    pub fn stats(&self) -> &Stats {
        &self.tracker.stats
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service. The session is no longer tracked: if it
    /// was open, it is counted closed.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone> Clone for StatsService<S> {
    /// A service for another session: the inner service cloned, the
    /// per-session state fresh.
    fn clone(&self) -> Self {
        StatsService::new(self.inner.clone(), self.tracker.stats.clone())
    }
}

impl<S: fmt::Debug> fmt::Debug for StatsService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.tracker.state.load(Ordering::Acquire) {
            NEW => "new",
            OPEN => "open",
            CLOSED => "closed",
            REFUSED => "refused",
            _ => "gone",
        };
        f.debug_struct("StatsService")
            .field("inner", &self.inner)
            .field("state", &state)
            .field("seen", &self.tracker.seen)
            .finish()
    }
}

impl<S, P, W> Service<Request<P, W>> for StatsService<S>
where
    S: Service<Request<P, W>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<P, W>) -> Self::Future {
        let tracker = &mut self.tracker;
        let shared = &tracker.stats.shared;
        shared.add_traffic(&mut tracker.seen, req.session.stats());
        let track = match &req.event {
            Event::Open => Track::Open(OpenGuard {
                shared: Arc::clone(shared),
                state: Arc::clone(&tracker.state),
            }),
            Event::Message(_) => Track::Message {
                shared: Arc::clone(shared),
                start: Instant::now(),
            },
            Event::Error(error) => {
                shared.count_error(error.kind().as_str());
                Track::Nothing
            }
            Event::Close => {
                // The traffic is final (the socket is closed): added above,
                // before the session counts as closed.
                tracker.close();
                Track::Nothing
            }
            _ => Track::Nothing,
        };
        ResponseFuture::new(self.inner.call(req), track)
    }
}
