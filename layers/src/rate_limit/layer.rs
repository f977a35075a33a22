//! The layer that makes [`RateLimit`] services.

use tower_layer::Layer;

use super::{OverLimit, Rate, RateLimit};

/// Applies [`RateLimit`] to a session's stack: at most [`Rate`] packets,
/// [`OverLimit::Delay`] unless told otherwise.
///
/// getty builds a stack per session in the make-service, so each session
/// gets its own bucket: a flood on one session does not slow another.
///
/// ```
/// use bytes::Bytes;
/// use getty::{new_session_fn, BoxError, EventListener, ListenerService, Session};
/// use getty_layers::rate_limit::{OverLimit, Rate, RateLimitLayer};
///
/// struct Echo;
/// impl EventListener<Bytes> for Echo {
///     fn on_message(&mut self, _: &Session, pkg: Bytes) -> Option<Bytes> { Some(pkg) }
/// }
///
/// let make = new_session_fn(|_: &Session| {
///     Ok::<_, BoxError>(
///         tower::ServiceBuilder::new()
///             .layer(RateLimitLayer::new(Rate::per_second(100).with_burst(20)).on_over_limit(OverLimit::Drop))
///             .service(ListenerService::new(Echo)),
///     )
/// });
/// # let _ = make;
/// ```
#[derive(Debug, Clone, Copy)]
pub struct RateLimitLayer {
    rate: Rate,
    policy: OverLimit,
}

impl RateLimitLayer {
    /// At most `rate` packets per session; a session over the limit is
    /// slowed down ([`OverLimit::Delay`]).
    pub fn new(rate: Rate) -> Self {
        RateLimitLayer {
            rate,
            policy: OverLimit::Delay,
        }
    }

    /// Sets what happens to a packet over the limit.
    pub fn on_over_limit(mut self, policy: OverLimit) -> Self {
        self.policy = policy;
        self
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::new(inner, self.rate, self.policy)
    }
}
