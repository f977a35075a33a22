//! The layer that makes [`EventTimeout`] services.

use std::time::Duration;

use tower_layer::Layer;

use super::{EventTimeout, OnTimeout};

/// Applies [`EventTimeout`] to a session's stack: a deadline on handling
/// each packet, [`OnTimeout::Continue`] unless told otherwise.
///
/// ```
/// use bytes::Bytes;
/// use getty::{new_session_fn, BoxError, EventListener, ListenerService, Session};
/// use getty_layers::timeout::{EventTimeoutLayer, OnTimeout};
/// use std::time::Duration;
///
/// struct Echo;
/// impl EventListener<Bytes> for Echo {
///     fn on_message(&mut self, _: &Session, pkg: Bytes) -> Option<Bytes> { Some(pkg) }
/// }
///
/// let make = new_session_fn(|_: &Session| {
///     Ok::<_, BoxError>(
///         tower::ServiceBuilder::new()
///             .layer(EventTimeoutLayer::new(Duration::from_secs(2)).on_timeout(OnTimeout::Close))
///             .service(ListenerService::new(Echo)),
///     )
/// });
/// # let _ = make;
/// ```
#[derive(Debug, Clone, Copy)]
pub struct EventTimeoutLayer {
    deadline: Duration,
    policy: OnTimeout,
}

impl EventTimeoutLayer {
    /// Each packet must be handled within `deadline`; an expiry is reported
    /// and the session carries on ([`OnTimeout::Continue`]).
    pub fn new(deadline: Duration) -> Self {
        EventTimeoutLayer {
            deadline,
            policy: OnTimeout::Continue,
        }
    }

    /// Sets what an expiry does to the session.
    pub fn on_timeout(mut self, policy: OnTimeout) -> Self {
        self.policy = policy;
        self
    }
}

impl<S> Layer<S> for EventTimeoutLayer {
    type Service = EventTimeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        EventTimeout::new(inner, self.deadline, self.policy)
    }
}
