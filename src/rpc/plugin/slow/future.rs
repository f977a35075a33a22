//! [`SlowCallFuture`]: times a route's handling and warns when it was slow.

use std::time::Duration;

use crate::rpc::plugin::observe::{route_future, Observer, Outcome, Seen};

/// What the warning needs of the message.
#[derive(Debug)]
pub(super) struct Record {
    pub(super) seen: Seen,
    pub(super) threshold: Duration,
}

impl Observer for Record {
    fn observe(self, elapsed: Duration, outcome: Outcome<'_>) {
        if elapsed < self.threshold {
            return;
        }
        let Seen {
            mtype,
            seq,
            service_method,
            peer,
        } = self.seen;
        tracing::warn!(
            target: "getty::rpc::slow",
            %service_method,
            %peer,
            seq,
            ?elapsed,
            status = outcome.code(mtype),
            threshold = ?self.threshold,
            "slow {mtype}"
        );
    }
}

route_future!(
    /// The future of [`SlowCallService`](super::SlowCallService).
    ///
    /// ```
    /// use getty::rpc::{plugin::slow::{SlowCall, SlowCallFuture}, router::Route, Inbound};
    /// use tower::{Layer, Service};
    ///
    /// fn handle(route: Route, inbound: Inbound) -> SlowCallFuture<<Route as Service<Inbound>>::Future> {
    ///     SlowCall::new(std::time::Duration::from_secs(1)).layer(route).call(inbound)
    /// }
    /// # let _ = handle;
    /// ```
    SlowCallFuture,
    Record
);
