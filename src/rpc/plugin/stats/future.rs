//! [`RpcStatsFuture`]: times a route's handling and counts it.

use std::{sync::Arc, time::Duration};

use super::Shared;
use crate::rpc::{
    plugin::observe::{route_future, Observer, Outcome},
    MessageType,
};

/// What the count needs of the message.
#[derive(Debug)]
pub(super) struct Record {
    pub(super) shared: Arc<Shared>,
    pub(super) mtype: MessageType,
    pub(super) route: String,
}

impl Observer for Record {
    fn observe(self, elapsed: Duration, outcome: Outcome<'_>) {
        let code = outcome.code(self.mtype);
        self.shared.count(self.route, self.mtype, code, elapsed);
    }
}

route_future!(
    /// The future of [`RpcStatsService`](super::RpcStatsService).
    ///
    /// ```
    /// use getty::rpc::{plugin::stats::{RpcStats, RpcStatsFuture}, router::Route, Inbound};
    /// use tower::{Layer, Service};
    ///
    /// fn handle(route: Route, inbound: Inbound) -> RpcStatsFuture<<Route as Service<Inbound>>::Future> {
    ///     RpcStats::new().layer(route).call(inbound)
    /// }
    /// # let _ = handle;
    /// ```
    RpcStatsFuture,
    Record
);
