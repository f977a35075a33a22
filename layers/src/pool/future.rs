//! [`ResponseFuture`]: the handling of one event, holding its permit.

use std::{
    future::Future,
    pin::Pin,
    task::{ready, Context, Poll},
};

use pin_project::pin_project;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::PollSemaphore;

/// The response future of [`TaskPoolService`](super::TaskPoolService): the
/// inner service's future, holding the event's pool permit until it
/// completes; or, for a message a shedding pool did not handle, an empty
/// response (`Default`) at once. For a closed session's message, tick or
/// open that found the pool full, it first waits for a permit and only then
/// polls the inner future (see the module's "Permits").
///
/// ```
/// use getty::{Addr, EndpointKind, Event, Request, Session, SessionConfig};
/// use getty_layers::pool::{TaskPool, TaskPoolLayer};
/// use tower::{service_fn, Layer, Service, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), getty::BoxError> {
/// let pool = TaskPool::new(2);
/// let mut svc = TaskPoolLayer::new(pool.clone()).layer(service_fn(|req: Request<String, String>| async move {
///     Ok::<_, getty::BoxError>(req.into_message())
/// }));
/// let session = Session::new(EndpointKind::Detached, Addr::Unknown, Addr::Unknown, SessionConfig::default());
///
/// svc.ready().await?; // reserves a permit
/// assert_eq!(pool.available(), 1);
/// let response = svc.call(Request::new(session, Event::Message("hi".to_string())));
/// assert_eq!(pool.available(), 1); // the future holds it
/// assert_eq!(response.await?, Some("hi".to_string()));
/// assert_eq!(pool.available(), 2); // given back on completion
/// # Ok(())
/// # }
/// ```
#[pin_project]
#[derive(Debug)]
pub struct ResponseFuture<F> {
    /// `None` for a shed message.
    #[pin]
    inner: Option<F>,
    permit: Option<OwnedSemaphorePermit>,
    /// Set while the inner future must not run before a permit is held.
    acquire: Option<PollSemaphore>,
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(inner: F, permit: Option<OwnedSemaphorePermit>) -> Self {
        ResponseFuture {
            inner: Some(inner),
            permit,
            acquire: None,
        }
    }

    /// `inner` runs once a permit from `semaphore` is held.
    pub(super) fn after_permit(inner: F, semaphore: PollSemaphore) -> Self {
        ResponseFuture {
            inner: Some(inner),
            permit: None,
            acquire: Some(semaphore),
        }
    }

    pub(super) fn shed() -> Self {
        ResponseFuture {
            inner: None,
            permit: None,
            acquire: None,
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    T: Default,
{
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.inner.as_pin_mut() {
            None => Poll::Ready(Ok(T::default())),
            Some(inner) => {
                if let Some(semaphore) = this.acquire {
                    *this.permit = ready!(semaphore.poll_acquire(cx));
                    debug_assert!(
                        this.permit.is_some(),
                        "a task pool's semaphore is never closed"
                    );
                    *this.acquire = None;
                }
                let out = ready!(inner.poll(cx));
                // Free the permit now, not when the driver drops the future.
                *this.permit = None;
                Poll::Ready(out)
            }
        }
    }
}
