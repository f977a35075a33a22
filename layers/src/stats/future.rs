//! [`ResponseFuture`] of [`StatsService`](super::StatsService).

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::{atomic::AtomicU8, Arc},
    task::{ready, Context, Poll},
};

use pin_project::pin_project;
use tokio::time::Instant;

use super::{handle::Shared, open_finished};

/// The future of a [`StatsService`](super::StatsService) call: the inner
/// future, unchanged, with the accounting done when it completes (an `Open`
/// counted as opened or refused, a `Message`'s latency recorded).
///
/// ```
/// use bytes::Bytes;
/// use getty::{Addr, EndpointKind, Event, Request, Session, SessionConfig};
/// use getty_layers::stats::{future::ResponseFuture, Stats};
/// use std::convert::Infallible;
/// use tower::{service_fn, Layer, Service};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let stats = Stats::new();
/// let mut svc = stats.layer().layer(service_fn(|_: Request<Bytes>| async {
///     Ok::<_, Infallible>(None::<Bytes>)
/// }));
/// let session: Session =
///     Session::new(EndpointKind::Detached, Addr::Unknown, Addr::Unknown, SessionConfig::default());
/// let open: ResponseFuture<_> = svc.call(Request::new(session, Event::Open));
/// assert_eq!(stats.snapshot().opened, 0, "counted when the inner future completes");
/// open.await.unwrap();
/// assert_eq!(stats.snapshot().opened, 1);
/// # }
/// ```
#[pin_project]
pub struct ResponseFuture<F> {
    #[pin]
    inner: F,
    track: Track,
}

/// What to account when the inner future completes.
pub(super) enum Track {
    Nothing,
    Open(OpenGuard),
    Message { shared: Arc<Shared>, start: Instant },
}

/// The accounting of a pending `Open`.
pub(super) struct OpenGuard {
    pub(super) shared: Arc<Shared>,
    pub(super) state: Arc<AtomicU8>,
}

impl OpenGuard {
    fn finish(&self, accepted: bool) {
        open_finished(&self.shared, &self.state, accepted);
    }
}

impl Drop for OpenGuard {
    /// getty refuses a session whose `Open` panicked (in `call` or in its
    /// future): count it refused too. Dropped otherwise before completing
    /// (a forced shutdown abandoning the open), it counts nothing.
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.finish(false);
        }
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(inner: F, track: Track) -> Self {
        ResponseFuture { inner, track }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
{
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let output = ready!(this.inner.poll(cx));
        match std::mem::replace(this.track, Track::Nothing) {
            Track::Nothing => {}
            Track::Open(open) => open.finish(output.is_ok()),
            Track::Message { shared, start } => shared.latency.record_duration(start.elapsed()),
        }
        Poll::Ready(output)
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let track = match self.track {
            Track::Nothing => "nothing",
            Track::Open(_) => "open",
            Track::Message { .. } => "message",
        };
        f.debug_struct("ResponseFuture")
            .field("track", &track)
            .finish_non_exhaustive()
    }
}
