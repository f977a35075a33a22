//! [`Dispatch`]: the core service of one RPC connection. It turns the
//! session's events into routed calls and pushes, matched replies and a
//! clean end.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{ready, Context, Poll},
};

use pin_project::pin_project;
use tower::Service;

use crate::{
    rpc::{
        router::{RouteCache, RouteFuture},
        session::{Conn, Redial},
        Message, MessageType, Session, XferPipe,
    },
    BoxError, Event, Request,
};

/// The future of one event: ready for everything but routed calls and
/// pushes, which wait for their route (no allocation for the others: a
/// client's replies take this path).
#[pin_project(project = EventFutureProj)]
pub(crate) enum EventFuture {
    /// Nothing to wait for, nothing to answer. (Holding no message keeps
    /// the future small: it is moved into the driver's pipeline per call.)
    Ready,
    /// A call or push on a handler's route, whose reply comes checked.
    Answer {
        #[pin]
        reply: RouteFuture,
    },
    /// A call or push on a layered route; its reply is checked before it
    /// is written.
    Routed {
        #[pin]
        reply: RouteFuture,
        conn: Arc<Conn>,
        call_pipe: XferPipe,
    },
}

impl EventFuture {
    fn none() -> EventFuture {
        EventFuture::Ready
    }
}

impl Future for EventFuture {
    type Output = Result<Option<Message>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            EventFutureProj::Ready => Poll::Ready(Ok(None)),
            EventFutureProj::Answer { reply } => {
                let Ok(reply) = ready!(reply.poll(cx));
                Poll::Ready(Ok(reply))
            }
            EventFutureProj::Routed {
                reply,
                conn,
                call_pipe,
            } => {
                let Ok(reply) = ready!(reply.poll(cx));
                Poll::Ready(Ok(reply.map(|mut reply| {
                    conn.make_writable(&mut reply, std::mem::take(call_pipe));
                    reply
                })))
            }
        }
    }
}

/// The innermost service of every RPC session.
pub(crate) struct Dispatch {
    conn: Arc<Conn>,
    /// The dialed session this connection serves, if it was dialed.
    redial: Option<Arc<Redial>>,
    /// Why the session failed, for the status its waiting calls get.
    failure: Option<crate::Error>,
    /// Whether the connection's end was handled (on `Close`, or on drop
    /// for a session that ended without one): it is handled once.
    life: Life,
    /// Where the last call's route was in the peer's router.
    routes: RouteCache,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Life {
    Running,
    Ended,
}

impl Dispatch {
    pub(crate) fn new(conn: Arc<Conn>, redial: Option<Arc<Redial>>) -> Dispatch {
        Dispatch {
            conn,
            redial,
            failure: None,
            life: Life::Running,
            routes: RouteCache::default(),
        }
    }

    fn session(&self) -> Session {
        Session::from_conn(Arc::clone(&self.conn))
    }

    fn message(&mut self, mut msg: Message) -> EventFuture {
        match msg.mtype {
            MessageType::Reply => {
                let seq = msg.seq;
                if !self.conn.pending.complete(msg) {
                    tracing::debug!(seq, "reply for no waiting call dropped (late or unknown)");
                }
                EventFuture::none()
            }
            MessageType::Call | MessageType::Push => {
                self.conn.note_traffic(&msg);
                match self.conn.peer.router.route_cached(&msg, &mut self.routes) {
                    Some(route) if route.answers_checked() => EventFuture::Answer {
                        reply: route.dispatch_message(&self.conn, &mut msg),
                    },
                    Some(route) => EventFuture::Routed {
                        call_pipe: msg.xfer_pipe.clone(),
                        reply: route.dispatch_message(&self.conn, &mut msg),
                        conn: Arc::clone(&self.conn),
                    },
                    None => {
                        tracing::warn!(
                            service_method = %msg.service_method,
                            peer = %self.conn.session.peer_addr(),
                            "push to an unknown service method dropped"
                        );
                        EventFuture::none()
                    }
                }
            }
            MessageType::AuthCall | MessageType::AuthReply => {
                // An auth plugin in the stack takes these while it
                // authenticates; one that reaches here came after that, or
                // without any: erpc closes the session.
                self.conn.session.close_with_error(format!(
                    "disconnected due to unsupported message type {} (seq {})",
                    msg.mtype, msg.seq
                ));
                EventFuture::none()
            }
        }
    }

    fn close(&mut self) {
        if std::mem::replace(&mut self.life, Life::Ended) == Life::Ended {
            return;
        }
        self.conn.end(self.failure.as_ref());
        self.conn.peer.forget(self.conn.session.id());
        if let Some(redial) = &self.redial {
            redial.clear_if(&self.conn);
            // The core client reconnects after every session that started
            // (its attempt limit counts failed connects only): "never
            // redial" has to stop it here, and so does a limit that a run
            // of refused handshakes (a revoked credential) has used up,
            // or it would redial forever.
            let refused = redial.count_refusal(self.conn.handshake.failed());
            let give_up = match self.conn.peer.redial_times {
                Some(0) => true,
                Some(limit) => refused >= limit,
                None => false,
            };
            if give_up {
                if let Some(client) = redial.client() {
                    client.close();
                }
            }
        }
    }
}

impl Service<Request<Message, Message>> for Dispatch {
    type Response = Option<Message>;
    type Error = BoxError;
    type Future = EventFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Message, Message>) -> EventFuture {
        match req.event {
            Event::Message(msg) => self.message(msg),
            Event::Open => {
                self.conn.peer.remember(self.session());
                if let Some(redial) = &self.redial {
                    redial.set_current(Some(Arc::clone(&self.conn)));
                }
                EventFuture::none()
            }
            Event::Error(e) => {
                if req.session.is_closed() {
                    tracing::debug!(session = %req.session, error = %e, "rpc session failed");
                    self.failure = Some(e);
                } else {
                    tracing::warn!(session = %req.session, error = %e, "rpc session error");
                }
                EventFuture::none()
            }
            Event::Close => {
                self.close();
                EventFuture::none()
            }
            _ => EventFuture::none(),
        }
    }
}

impl Drop for Dispatch {
    fn drop(&mut self) {
        // A session that ends without `Close` (a failed poll_ready above
        // this service) still fails its waiting calls.
        self.close();
    }
}
