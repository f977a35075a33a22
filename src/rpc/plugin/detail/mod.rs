//! The run log of handled messages (teleport's `PrintDetail`):
//! [`DetailLog`] logs one line per call or push its routes handle.

mod future;
mod layer;

use std::task::{Context, Poll};

use tower::Service;

pub use self::future::DetailLogFuture;
use self::future::{Part, Record};
pub use self::layer::DetailLog;
use super::observe::Seen;
use crate::rpc::{Inbound, Message};

/// The service [`DetailLog`] wraps a route in.
///
/// ```
/// use getty::rpc::{plugin::detail::{DetailLog, DetailLogService}, router::Route};
/// use tower::Layer;
///
/// fn wrap(route: Route) -> DetailLogService<Route> {
///     DetailLog::new().layer(route)
/// }
/// # let _ = wrap;
/// ```
#[derive(Debug, Clone)]
pub struct DetailLogService<S> {
    inner: S,
    bodies: bool,
}

impl<S> Service<Inbound> for DetailLogService<S>
where
    S: Service<Inbound, Response = Option<Message>>,
{
    type Response = Option<Message>;
    type Error = S::Error;
    type Future = DetailLogFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, inbound: Inbound) -> Self::Future {
        let record = Record {
            seen: Seen::of(&inbound),
            received: Part::of(&inbound.message, self.bodies),
            bodies: self.bodies,
        };
        DetailLogFuture::new(self.inner.call(inbound), record)
    }
}
