//! Slow-call warnings (teleport's `SlowCometDuration`): [`SlowCall`] logs
//! a warning for every call or push whose handling took at least a
//! threshold.

mod future;
mod layer;

use std::{
    task::{Context, Poll},
    time::Duration,
};

use tower::Service;

use self::future::Record;
pub use self::future::SlowCallFuture;
pub use self::layer::SlowCall;
use super::observe::Seen;
use crate::rpc::{Inbound, Message};

/// The service [`SlowCall`] wraps a route in.
///
/// ```
/// use getty::rpc::{plugin::slow::{SlowCall, SlowCallService}, router::Route};
/// use tower::Layer;
///
/// fn wrap(route: Route) -> SlowCallService<Route> {
///     SlowCall::new(std::time::Duration::from_secs(1)).layer(route)
/// }
/// # let _ = wrap;
/// ```
#[derive(Debug, Clone)]
pub struct SlowCallService<S> {
    inner: S,
    threshold: Duration,
}

impl<S> Service<Inbound> for SlowCallService<S>
where
    S: Service<Inbound, Response = Option<Message>>,
{
    type Response = Option<Message>;
    type Error = S::Error;
    type Future = SlowCallFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, inbound: Inbound) -> Self::Future {
        let record = Record {
            seen: Seen::of(&inbound),
            threshold: self.threshold,
        };
        SlowCallFuture::new(self.inner.call(inbound), record)
    }
}
