//! The response future of [`RateLimit`](super::RateLimit).

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use pin_project::pin_project;

/// The future [`RateLimit`](super::RateLimit) returns: the inner service's
/// future for an admitted event, or an empty response (`T::default()`) for a
/// packet refused over the limit, which never reached the inner service.
///
/// ```
/// use bytes::Bytes;
/// use getty::{Addr, EndpointKind, Event, Request, Session, SessionConfig};
/// use getty_layers::rate_limit::{future::ResponseFuture, OverLimit, Rate, RateLimit};
/// use std::{convert::Infallible, time::Duration};
/// use tower::{service_fn, Service, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let echo = service_fn(|req: Request<Bytes>| async move { Ok::<_, Infallible>(req.into_message()) });
/// let mut svc = RateLimit::new(echo, Rate::new(1, Duration::from_secs(60)), OverLimit::Drop);
/// let session: Session = Session::new(
///     EndpointKind::Detached, Addr::Unknown, Addr::Unknown, SessionConfig::default(),
/// );
/// let msg = |s: &Session| Request::new(s.clone(), Event::Message(Bytes::from_static(b"hi")));
/// let first: ResponseFuture<_> = svc.ready().await.unwrap().call(msg(&session));
/// assert_eq!(first.await.unwrap(), Some(Bytes::from_static(b"hi")));
/// // The second packet within the minute is dropped: an empty response.
/// let second: ResponseFuture<_> = svc.ready().await.unwrap().call(msg(&session));
/// assert_eq!(second.await.unwrap(), None);
/// # }
/// ```
#[pin_project]
pub struct ResponseFuture<F> {
    #[pin]
    kind: Kind<F>,
}

#[pin_project(project = KindProj)]
enum Kind<F> {
    Admitted {
        #[pin]
        fut: F,
    },
    Refused,
}

impl<F> ResponseFuture<F> {
    pub(super) fn admitted(fut: F) -> Self {
        ResponseFuture {
            kind: Kind::Admitted { fut },
        }
    }

    pub(super) fn refused() -> Self {
        ResponseFuture {
            kind: Kind::Refused,
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("refused", &matches!(self.kind, Kind::Refused))
            .finish()
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    T: Default,
{
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Admitted { fut } => fut.poll(cx),
            KindProj::Refused => Poll::Ready(Ok(T::default())),
        }
    }
}
