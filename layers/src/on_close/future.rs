//! [`ResponseFuture`]: registers the close callback once `Open` succeeded.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{ready, Context, Poll},
};

use getty::Session;
use pin_project::pin_project;

use super::Handler;

/// What to register when the `Open` call succeeds.
pub(super) struct Registration<F, W> {
    pub(super) session: Session<W>,
    pub(super) callback: Arc<F>,
    pub(super) key: u64,
}

/// The response future of [`OnClose`](super::OnClose): the inner service's
/// future; when it answers `Open` successfully, the layer's callback is
/// registered on the session.
#[pin_project]
pub struct ResponseFuture<Fut, F, W> {
    #[pin]
    inner: Fut,
    registration: Option<Registration<F, W>>,
}

impl<Fut, F, W> ResponseFuture<Fut, F, W> {
    pub(super) fn new(inner: Fut, registration: Option<Registration<F, W>>) -> Self {
        ResponseFuture {
            inner,
            registration,
        }
    }
}

impl<Fut, F, W> fmt::Debug for ResponseFuture<Fut, F, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("registers", &self.registration.is_some())
            .finish_non_exhaustive()
    }
}

impl<Fut, F, W, T, E> Future for ResponseFuture<Fut, F, W>
where
    Fut: Future<Output = Result<T, E>>,
    F: Fn(&Session<W>) + Send + Sync + 'static,
    W: Send + 'static,
{
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        if let (Ok(_), Some(r)) = (&result, this.registration.take()) {
            // Weak: the callback is stored in the session itself, and a
            // strong handle would keep a session that never finishes alive.
            let session = r.session.downgrade();
            let callback = r.callback;
            r.session.add_close_callback(Handler, r.key, move || {
                if let Some(session) = session.upgrade() {
                    callback(&session);
                }
            });
        }
        Poll::Ready(result)
    }
}
