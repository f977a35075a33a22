//! [`Route`]: what a service method leads to, a handler as it is or a
//! layered tower service.

use std::{
    convert::Infallible,
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use tower::{util::BoxCloneSyncService, Service, ServiceExt};

use super::Inbound;
use crate::rpc::{session::Conn, Message, ServiceMethod, Session, XferPipe};

/// The future of a route's answer.
pub(crate) type RouteFuture =
    Pin<Box<dyn Future<Output = Result<Option<Message>, Infallible>> + Send>>;

/// Where a handler's reply is checked for the session's encoder (a reply
/// the encoder would refuse is answered 500 instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReplyCheck {
    /// By the handler, which holds the connection: the session's dispatch
    /// sends the reply as it comes.
    Here,
    /// By the session's dispatch, after the layers around the handler: a
    /// layer may still change the reply (compress a large one, say).
    AfterLayers,
}

impl ReplyCheck {
    /// Checks `reply` now if the check is here (a 500 with the call's
    /// filters in its place if the encoder would refuse it); after the
    /// layers, it is left as it is.
    pub(crate) fn apply(self, conn: &Conn, reply: &mut Message, call_pipe: XferPipe) {
        if self == ReplyCheck::Here {
            conn.make_writable(reply, call_pipe);
        }
    }
}

/// What a route does when called through a shared reference: a handler
/// needs no `&mut` (it clones what it needs into its future).
pub(crate) trait Handle: Send + Sync + 'static {
    /// Handles `msg`, which came on `session` over `conn`, taking out of it
    /// what it keeps: the session's dispatch calls this, with the message
    /// where the decoder left it rather than moved down through each call.
    fn handle_message(
        &self,
        session: Session,
        conn: &Arc<Conn>,
        msg: &mut Message,
        check: ReplyCheck,
    ) -> RouteFuture;

    /// Handles an inbound message as the innermost service of a layered
    /// route (or of the router called as a service): the handler's context
    /// gets the inbound's session as it is, and the reply is checked after
    /// the layers.
    fn handle(&self, inbound: Inbound) -> RouteFuture {
        let Inbound {
            session,
            mut message,
        } = inbound;
        match session.conn() {
            Ok(conn) => self.handle_message(session, &conn, &mut message, ReplyCheck::AfterLayers),
            // The connection is already gone: nobody to answer.
            Err(_) => Box::pin(std::future::ready(Ok(None))),
        }
    }
}

/// A route: a tower service answering a call with its reply (`Some`), a
/// push with `None`. A layer given to [`Router::layer`](super::Router::layer)
/// wraps it like any service.
///
/// A route made straight from a handler is called through a shared
/// reference, without the clone of a boxed service and the extra boxing a
/// `tower::util::BoxCloneSyncService` costs per call; a layered route is
/// such a boxed service, driven the tower way (`poll_ready`, then `call`).
#[derive(Clone)]
pub struct Route {
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    Handler(Arc<dyn Handle>),
    Service(BoxCloneSyncService<Inbound, Option<Message>, Infallible>),
}

impl fmt::Debug for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            Kind::Handler(_) => "Route::Handler",
            Kind::Service(_) => "Route::Service",
        })
    }
}

impl Route {
    pub(crate) fn handler(handle: impl Handle) -> Route {
        Route {
            kind: Kind::Handler(Arc::new(handle)),
        }
    }

    pub(crate) fn service<S>(service: S) -> Route
    where
        S: Service<Inbound, Response = Option<Message>, Error = Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        Route {
            kind: Kind::Service(BoxCloneSyncService::new(service)),
        }
    }

    /// Runs the route once for `inbound`, from a shared reference.
    pub(crate) fn dispatch(&self, inbound: Inbound) -> RouteFuture {
        match &self.kind {
            Kind::Handler(handle) => handle.handle(inbound),
            Kind::Service(service) => Box::pin(service.clone().oneshot(inbound)),
        }
    }

    /// Whether the route's replies come checked for the encoder (a
    /// handler's do; a layer may change a reply, so a layered route's are
    /// checked after it).
    pub(crate) fn answers_checked(&self) -> bool {
        matches!(self.kind, Kind::Handler(_))
    }

    /// Runs the route once for `msg`, which came on `conn`: a handler
    /// takes out of the message what it keeps; a layered route gets it
    /// whole, as an [`Inbound`].
    pub(crate) fn dispatch_message(&self, conn: &Arc<Conn>, msg: &mut Message) -> RouteFuture {
        match &self.kind {
            Kind::Handler(handle) => handle.handle_message(
                Session::from_conn(Arc::clone(conn)),
                conn,
                msg,
                ReplyCheck::Here,
            ),
            Kind::Service(service) => {
                let message =
                    std::mem::replace(msg, Message::new(msg.mtype, msg.seq, ServiceMethod::new()));
                let inbound = Inbound {
                    session: Session::from_conn(Arc::clone(conn)),
                    message,
                };
                Box::pin(service.clone().oneshot(inbound))
            }
        }
    }
}

impl Service<Inbound> for Route {
    type Response = Option<Message>;
    type Error = Infallible;
    type Future = RouteFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        match &mut self.kind {
            Kind::Handler(_) => Poll::Ready(Ok(())),
            Kind::Service(service) => service.poll_ready(cx),
        }
    }

    fn call(&mut self, inbound: Inbound) -> RouteFuture {
        match &mut self.kind {
            Kind::Handler(handle) => handle.handle(inbound),
            Kind::Service(service) => service.call(inbound),
        }
    }
}
