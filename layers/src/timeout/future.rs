//! The response future of [`EventTimeout`](super::EventTimeout).

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{ready, Context, Poll},
    time::Duration,
};

use getty::Session;
use pin_project::pin_project;
use tokio::time::Sleep;

use super::{EventTimeoutError, OnTimeout};

/// The future [`EventTimeout`](super::EventTimeout) returns: the inner
/// service's future, raced against the deadline when the event is a message.
///
/// On expiry the inner future is dropped at once, the session is told (per
/// the [`OnTimeout`] policy), and the future resolves `Ok` with
/// `T::default()`. An inner error passes through unchanged.
///
/// ```
/// use bytes::Bytes;
/// use getty::{Addr, EndpointKind, Event, Request, Session, SessionConfig};
/// use getty_layers::timeout::{future::ResponseFuture, EventTimeout, OnTimeout};
/// use std::{convert::Infallible, time::Duration};
/// use tower::{service_fn, Service};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let echo = service_fn(|req: Request<Bytes>| async move { Ok::<_, Infallible>(req.into_message()) });
/// let mut svc = EventTimeout::new(echo, Duration::from_secs(1), OnTimeout::Continue);
/// let session: Session = Session::new(
///     EndpointKind::Detached, Addr::Unknown, Addr::Unknown, SessionConfig::default(),
/// );
/// let fut: ResponseFuture<_, Bytes> =
///     svc.call(Request::new(session, Event::Message(Bytes::from_static(b"hi"))));
/// // In time: the inner answer passes through.
/// assert_eq!(fut.await.unwrap(), Some(Bytes::from_static(b"hi")));
/// # }
/// ```
#[pin_project]
pub struct ResponseFuture<F, W> {
    /// `None` once cancelled.
    #[pin]
    inner: Option<F>,
    /// `None` for events that are not timed.
    #[pin]
    sleep: Option<Sleep>,
    expiry: Option<Expiry<W>>,
}

/// What to tell whom when the deadline passes.
struct Expiry<W> {
    session: Session<W>,
    deadline: Duration,
    policy: OnTimeout,
}

impl<F, W> ResponseFuture<F, W> {
    pub(super) fn untimed(inner: F) -> Self {
        ResponseFuture {
            inner: Some(inner),
            sleep: None,
            expiry: None,
        }
    }

    pub(super) fn timed(
        inner: F,
        sleep: Sleep,
        session: Session<W>,
        deadline: Duration,
        policy: OnTimeout,
    ) -> Self {
        ResponseFuture {
            inner: Some(inner),
            sleep: Some(sleep),
            expiry: Some(Expiry {
                session,
                deadline,
                policy,
            }),
        }
    }
}

impl<F, W> fmt::Debug for ResponseFuture<F, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("cancelled", &self.inner.is_none())
            .field("deadline", &self.expiry.as_ref().map(|e| e.deadline))
            .field("policy", &self.expiry.as_ref().map(|e| e.policy))
            .finish()
    }
}

impl<F, T, E, W> Future for ResponseFuture<F, W>
where
    F: Future<Output = Result<T, E>>,
    T: Default,
{
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let Some(inner) = this.inner.as_mut().as_pin_mut() else {
            // Cancelled earlier and polled again: nothing more to say.
            return Poll::Ready(Ok(T::default()));
        };
        if let Poll::Ready(out) = inner.poll(cx) {
            return Poll::Ready(out);
        }
        let Some(sleep) = this.sleep.as_pin_mut() else {
            return Poll::Pending;
        };
        ready!(sleep.poll(cx));
        // Cancel the handling now, before anyone hears of the expiry.
        this.inner.set(None);
        if let Some(expiry) = this.expiry.take() {
            expiry.fire();
        }
        Poll::Ready(Ok(T::default()))
    }
}

impl<W> Expiry<W> {
    fn fire(self) {
        let Expiry {
            session,
            deadline,
            policy,
        } = self;
        tracing::warn!(
            session = %session,
            ?deadline,
            %policy,
            "packet not handled within its deadline; handling cancelled"
        );
        let error = EventTimeoutError {
            deadline,
            peer: session.peer_addr().clone(),
            policy,
        };
        match policy {
            OnTimeout::Continue => session.report_error(error),
            OnTimeout::Close => session.close_with_error(error),
        }
    }
}
