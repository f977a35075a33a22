//! Close callbacks registered from the service stack.
//!
//! getty runs a session's close callbacks
//! ([`Session::add_close_callback`](getty::Session::add_close_callback))
//! once, in order, after `Close` passed the stack, with panics contained.
//! [`OnCloseLayer`] adds one for every session whose `Open` passes it, so
//! "do this when a session ends" is a line in the stack instead of code in
//! every listener. It does not run anything itself: getty does.
//!
//! ```no_run
//! use bytes::Bytes;
//! use getty::{codec::LengthCodec, new_session_fn, BoxError, EventListener, ListenerService, Server, Session};
//! use getty_layers::on_close::OnCloseLayer;
//! use std::sync::{atomic::{AtomicUsize, Ordering}, Arc};
//!
//! struct Echo;
//! impl EventListener<Bytes> for Echo {
//!     fn on_message(&mut self, _: &Session, pkg: Bytes) -> Option<Bytes> { Some(pkg) }
//! }
//!
//! # async fn demo() -> std::io::Result<()> {
//! let ended = Arc::new(AtomicUsize::new(0));
//! let counter = ended.clone();
//! let server = Server::builder().bind("127.0.0.1:0").await?;
//! let handle = server.serve(
//!     LengthCodec::new(),
//!     new_session_fn(move |_: &Session| {
//!         let counter = counter.clone();
//!         Ok::<_, BoxError>(
//!             tower::ServiceBuilder::new()
//!                 .layer(OnCloseLayer::new(move |_: &Session| {
//!                     counter.fetch_add(1, Ordering::Relaxed);
//!                 }))
//!                 .service(ListenerService::new(Echo)),
//!         )
//!     }),
//! );
//! # handle.shutdown(std::time::Duration::from_secs(1)).await;
//! # Ok(())
//! # }
//! ```

mod future;
mod layer;

use std::{
    fmt,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    task::{Context, Poll},
};

use getty::{Event, Request, Session};
use tower::Service;

use self::future::Registration;
pub use self::{future::ResponseFuture, layer::OnCloseLayer};

/// The `handler` half of the callbacks' `(handler, key)` identity: private,
/// so no other code can replace or remove them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Handler;

/// A key per layer instance.
fn next_key() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The service made by [`OnCloseLayer`]: passes every event to the inner
/// service; when the inner service answers [`Event::Open`] with `Ok`, it
/// registers the closure as one of the session's close callbacks.
///
/// ```
/// use bytes::Bytes;
/// use getty::{Addr, EndpointKind, Event, Request, Session, SessionConfig};
/// use getty_layers::on_close::OnClose;
/// use std::convert::Infallible;
/// use tower::{service_fn, Service, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let inner = service_fn(|_: Request<Bytes>| async { Ok::<_, Infallible>(None::<Bytes>) });
/// let mut svc = OnClose::new(inner, |s: &Session| println!("{s} closed"));
///
/// let session: Session =
///     Session::new(EndpointKind::Detached, Addr::Unknown, Addr::Unknown, SessionConfig::default());
/// svc.ready().await.unwrap().call(Request::new(session.clone(), Event::Open)).await.unwrap();
/// assert_eq!(session.close_callback_count(), 1);
/// # }
/// ```
pub struct OnClose<S, F> {
    inner: S,
    callback: Arc<F>,
    key: u64,
}

impl<S, F> OnClose<S, F> {
    /// Wraps `inner`, registering `callback` on each session whose `Open`
    /// it answers successfully. Like [`OnCloseLayer::new`], each call makes
    /// a new key.
    pub fn new(inner: S, callback: F) -> Self {
        Self::with_key(inner, Arc::new(callback), next_key())
    }

    fn with_key(inner: S, callback: Arc<F>, key: u64) -> Self {
        OnClose {
            inner,
            callback,
            key,
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, F> Clone for OnClose<S, F> {
    fn clone(&self) -> Self {
        OnClose {
            inner: self.inner.clone(),
            callback: Arc::clone(&self.callback),
            key: self.key,
        }
    }
}

impl<S: fmt::Debug, F> fmt::Debug for OnClose<S, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnClose")
            .field("inner", &self.inner)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl<S, F, P, W> Service<Request<P, W>> for OnClose<S, F>
where
    S: Service<Request<P, W>>,
    F: Fn(&Session<W>) + Send + Sync + 'static,
    W: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, F, W>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<P, W>) -> Self::Future {
        let registration = matches!(req.event, Event::Open).then(|| Registration {
            session: req.session.clone(),
            callback: Arc::clone(&self.callback),
            key: self.key,
        });
        ResponseFuture::new(self.inner.call(req), registration)
    }
}
