//! [`DetailLogFuture`]: times a route's handling and logs its line.

use std::{fmt, time::Duration};

use bytes::Bytes;

use super::DetailLog;
use crate::rpc::{
    plugin::observe::{route_future, Observer, Outcome, Seen},
    Message, MessageType,
};

/// The sizes (and maybe the body) of one side of an exchange.
#[derive(Debug)]
pub(super) struct Part {
    meta_len: usize,
    body_len: usize,
    body: Option<Bytes>,
}

impl Part {
    pub(super) fn of(msg: &Message, bodies: bool) -> Part {
        Part {
            // Sizes as on the wire (the metadata's query form).
            meta_len: if msg.meta.is_empty() {
                0
            } else {
                msg.meta.to_query().len()
            },
            body_len: msg.body.len(),
            body: bodies.then(|| msg.body.clone()),
        }
    }
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "meta={}B body={}B", self.meta_len, self.body_len)?;
        if let Some(body) = &self.body {
            let shown = &body[..body.len().min(DetailLog::BODY_LIMIT)];
            write!(f, " {:?}", String::from_utf8_lossy(shown))?;
            if shown.len() < body.len() {
                write!(f, "…(+{}B)", body.len() - shown.len())?;
            }
        }
        Ok(())
    }
}

/// What the line needs of the message.
#[derive(Debug)]
pub(super) struct Record {
    pub(super) seen: Seen,
    pub(super) received: Part,
    pub(super) bodies: bool,
}

impl Observer for Record {
    fn observe(self, elapsed: Duration, outcome: Outcome<'_>) {
        let Seen {
            mtype,
            seq,
            service_method,
            peer,
        } = &self.seen;
        let head = format!(
            "{mtype}<- {peer} {elapsed:?} {service_method:?} RECV(seq={seq} {})",
            self.received
        );
        match (mtype, outcome) {
            (MessageType::Call, Outcome::Reply(reply)) => tracing::info!(
                target: "getty::rpc::detail",
                "{head} SEND(status={} {})",
                reply.status.code(),
                Part::of(reply, self.bodies)
            ),
            (MessageType::Call, _) => tracing::info!(
                target: "getty::rpc::detail",
                "{head} SEND(failed: the route's service returned an error)"
            ),
            _ => tracing::info!(target: "getty::rpc::detail", "{head}"),
        }
    }
}

route_future!(
    /// The future of [`DetailLogService`](super::DetailLogService).
    ///
    /// ```
    /// use getty::rpc::{plugin::detail::{DetailLog, DetailLogFuture}, router::Route, Inbound};
    /// use tower::{Layer, Service};
    ///
    /// fn handle(route: Route, inbound: Inbound) -> DetailLogFuture<<Route as Service<Inbound>>::Future> {
    ///     DetailLog::new().layer(route).call(inbound)
    /// }
    /// # let _ = handle;
    /// ```
    DetailLogFuture,
    Record
);
