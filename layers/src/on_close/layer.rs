//! [`OnCloseLayer`]: registers a close callback on every session it opens.

use std::{fmt, sync::Arc};

use tower_layer::Layer;

use super::{next_key, OnClose};

/// Registers a close callback from the service stack: when
/// [`Event::Open`](getty::Event::Open) passes this layer successfully, the
/// closure is added to the session's close callbacks
/// ([`Session::add_close_callback`](getty::Session::add_close_callback)),
/// and getty runs it once after the session's `Close` passed the stack.
///
/// The closure gets the session. Being a close callback, it runs exactly
/// once per opened session, in order with the session's other close
/// callbacks, and a panic in it is contained and logged by getty (the
/// server carries on).
///
/// - It is registered when the inner service *answers* `Open` with `Ok`:
///   a session the inner stack refuses never runs it. A session refused
///   further out (by a layer outside this one) still runs it, as close
///   callbacks run for every session that ends.
/// - Registration order is the order in which `Open` completed, so with
///   several `OnClose` layers the innermost one's closure runs first, like
///   responses unwinding; callbacks that the listener's `on_open` adds run
///   before all of them.
/// - Each layer made with [`new`](Self::new) registers under its own key, so
///   two layers never replace each other; clones of one layer share its key.
///
/// ```
/// use bytes::Bytes;
/// use getty::{new_session_fn, BoxError, EventListener, ListenerService, Session};
/// use getty_layers::on_close::OnCloseLayer;
///
/// struct Echo;
/// impl EventListener<Bytes> for Echo {
///     fn on_message(&mut self, _: &Session, pkg: Bytes) -> Option<Bytes> { Some(pkg) }
/// }
///
/// let make = new_session_fn(|_: &Session| {
///     Ok::<_, BoxError>(
///         tower::ServiceBuilder::new()
///             .layer(OnCloseLayer::new(|session: &Session| {
///                 println!("{session} closed after {}", session.stats());
///             }))
///             .service(ListenerService::new(Echo)),
///     )
/// });
/// # let _ = make;
/// ```
pub struct OnCloseLayer<F> {
    callback: Arc<F>,
    key: u64,
}

impl<F> OnCloseLayer<F> {
    /// A layer that registers `callback` on each session it opens. The
    /// closure is shared, not cloned, between sessions.
    pub fn new(callback: F) -> Self {
        OnCloseLayer {
            callback: Arc::new(callback),
            key: next_key(),
        }
    }
}

impl<F> Clone for OnCloseLayer<F> {
    fn clone(&self) -> Self {
        OnCloseLayer {
            callback: Arc::clone(&self.callback),
            key: self.key,
        }
    }
}

impl<F> fmt::Debug for OnCloseLayer<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnCloseLayer")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl<S, F> Layer<S> for OnCloseLayer<F> {
    type Service = OnClose<S, F>;

    fn layer(&self, inner: S) -> Self::Service {
        OnClose::with_key(inner, Arc::clone(&self.callback), self.key)
    }
}
