//! [`ResponseFuture`]: one event's handling, in its span, timed.

use std::{
    future::Future,
    pin::Pin,
    task::{ready, Context, Poll},
    time::Duration,
};

use pin_project::pin_project;
use tokio::time::Instant;
use tracing::Span;

use super::TARGET;

/// The response future of [`Trace`](super::Trace): the inner future, polled
/// inside the event's span; when it completes later than the slow threshold
/// it logs one warning.
///
/// ```
/// use getty::{Addr, EndpointKind, Event, Request, Session, SessionConfig};
/// use getty_layers::trace::TraceLayer;
/// use std::time::Duration;
/// use tower::{service_fn, Layer, Service, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), getty::BoxError> {
/// let mut svc = TraceLayer::new()
///     .slow_threshold(Duration::from_millis(10))
///     .layer(service_fn(|req: Request<String, String>| async move {
///         tokio::time::sleep(Duration::from_millis(20)).await;
///         Ok::<_, getty::BoxError>(req.into_message())
///     }));
/// let session = Session::new(EndpointKind::Detached, Addr::Unknown, Addr::Unknown, SessionConfig::default());
/// let future = svc.ready().await?.call(Request::new(session, Event::Message("hi".to_string())));
/// // Logs `WARN ... slow handler event="message" elapsed=20.1ms ... packet="hi"`.
/// assert_eq!(future.await?, Some("hi".to_string()));
/// # Ok(())
/// # }
/// ```
#[pin_project]
#[derive(Debug)]
pub struct ResponseFuture<F> {
    #[pin]
    inner: F,
    span: Span,
    started: Instant,
    /// Taken when the warning is checked.
    slow: Option<Slow>,
}

#[derive(Debug)]
pub(super) struct Slow {
    pub(super) threshold: Duration,
    pub(super) event: &'static str,
    pub(super) packet: Option<String>,
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(inner: F, span: Span, started: Instant, slow: Option<Slow>) -> Self {
        ResponseFuture {
            inner,
            span,
            started,
            slow,
        }
    }
}

impl<F: Future> Future for ResponseFuture<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        let out = ready!(this.inner.poll(cx));
        if let Some(slow) = this.slow.take() {
            let elapsed = this.started.elapsed();
            if elapsed > slow.threshold {
                match slow.packet {
                    Some(packet) => tracing::warn!(
                        target: TARGET,
                        event = slow.event,
                        elapsed = ?elapsed,
                        threshold = ?slow.threshold,
                        packet = %packet,
                        "slow handler"
                    ),
                    None => tracing::warn!(
                        target: TARGET,
                        event = slow.event,
                        elapsed = ?elapsed,
                        threshold = ?slow.threshold,
                        "slow handler"
                    ),
                }
            }
        }
        Poll::Ready(out)
    }
}
