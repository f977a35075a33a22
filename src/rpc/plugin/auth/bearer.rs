//! [`AuthBearer`]: the client side of erpc's auth handshake.

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use tower::{Layer, Service};

use super::{future::AuthFuture, unexpected, AuthRefused};
use crate::{
    rpc::{
        codec::{CodecId, Codecs, IntoBody},
        session::Conn,
        Message, MessageType, Status,
    },
    Event, Request,
};

/// The info with its type erased: encoded afresh for each connection.
type InfoFn = dyn Fn(&Codecs, CodecId) -> Result<(CodecId, Bytes), Status> + Send + Sync;

/// Authenticates every connection a peer dials, redials included (erpc's
/// `auth.NewBearerPlugin`, SPEC §1.9). A session layer: add it with
/// [`PeerBuilder::session_layer`](crate::rpc::PeerBuilder::session_layer),
/// after (outside) every other session layer.
///
/// As a connection opens, it sends an `AUTH_CALL` before anything else:
/// seq 1, an empty service method, the info in the peer's default codec
/// (json unless configured). The next message must be an OK `AUTH_REPLY`;
/// otherwise the connection is closed with an [`AuthRefused`] error
/// carrying the status (the server's, or 401 when something else came
/// first), and the calls waiting on it fail. [`Peer::dial`](crate::rpc::Peer::dial)
/// returns once the reply came, or that status.
///
/// While a redialed connection authenticates, calls made on the session
/// are written after its `AUTH_CALL`, so the server handles them only once
/// it has accepted it; if it refuses, they fail with status 102 as the
/// connection closes. A refused redial is tried again at the redial
/// interval, as erpc does.
///
/// ```no_run
/// use getty::rpc::{plugin::auth::AuthBearer, Peer, Status};
///
/// # async fn demo() -> Result<(), Status> {
/// let client = Peer::builder().session_layer(AuthBearer::new("token-alice")).build();
/// let session = client.dial("127.0.0.1:9090").await?; // 401 here when refused
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct AuthBearer {
    info: Arc<InfoFn>,
}

impl fmt::Debug for AuthBearer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthBearer").finish_non_exhaustive()
    }
}

impl AuthBearer {
    /// A bearer of `info` (any serde value, [`Raw`](crate::rpc::codec::Raw)
    /// bytes or a [`Proto`](crate::rpc::codec::Proto)).
    pub fn new<T>(info: T) -> AuthBearer
    where
        T: IntoBody + Clone + Send + Sync + 'static,
    {
        AuthBearer {
            info: Arc::new(move |codecs, default_codec| {
                let codec = info.preferred_codec().unwrap_or(default_codec);
                info.clone().into_body(codec, codecs)
            }),
        }
    }
}

impl<S> Layer<S> for AuthBearer {
    type Service = AuthBearerService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthBearerService {
            inner,
            info: Arc::clone(&self.info),
            phase: BearerPhase::Connecting,
        }
    }
}

/// Where a dialed connection's authentication stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BearerPhase {
    /// Not open yet: the `AUTH_CALL` goes out on `Open`.
    Connecting,
    /// The `AUTH_CALL` is out: the next message must be its `AUTH_REPLY`.
    AwaitingAuthReply,
    /// Accepted: everything passes.
    Authenticated,
    /// Refused and closing: nothing passes.
    Refused,
}

/// The service [`AuthBearer`] wraps a session's stack in.
///
/// ```
/// use getty::rpc::{plugin::auth::{AuthBearer, AuthBearerService}, SessionStack};
/// use tower::Layer;
///
/// fn wrap(stack: SessionStack) -> AuthBearerService<SessionStack> {
///     AuthBearer::new("token").layer(stack)
/// }
/// # let _ = wrap;
/// ```
pub struct AuthBearerService<S> {
    inner: S,
    info: Arc<InfoFn>,
    phase: BearerPhase,
}

impl<S: fmt::Debug> fmt::Debug for AuthBearerService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthBearerService")
            .field("inner", &self.inner)
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

impl<S> AuthBearerService<S> {
    /// On `Open`: sends the `AUTH_CALL`, holding the connection's
    /// handshake until the reply.
    fn begin(&mut self, session: &crate::Session<Message>) {
        let Some(conn) = Conn::of(session) else {
            tracing::warn!(%session, "auth bearer outside an rpc peer: nothing sent");
            self.phase = BearerPhase::Authenticated;
            return;
        };
        conn.handshake.begin();
        let sent =
            (self.info)(&conn.peer.codecs, conn.peer.default_codec).and_then(|(codec, body)| {
                // Taken before anything else can be sent: the AUTH_CALL is seq 1.
                let call =
                    Message::new(MessageType::AuthCall, conn.next_seq(), "").with_body(codec, body);
                session.try_send(call).map_err(|e| {
                    Status::framework_with(
                        Status::CODE_WRITE_FAILED,
                        format!("AUTH_CALL not sent: {e}"),
                    )
                })
            });
        match sent {
            Ok(()) => self.phase = BearerPhase::AwaitingAuthReply,
            Err(status) => self.refuse(session, &conn, status),
        }
    }

    /// The first message after the `AUTH_CALL`: an OK `AUTH_REPLY` lets the
    /// connection through.
    fn answered(&mut self, session: &crate::Session<Message>, reply: &Message) {
        let Some(conn) = Conn::of(session) else {
            return;
        };
        match reply.mtype {
            MessageType::AuthReply if reply.status.is_ok() => {
                self.phase = BearerPhase::Authenticated;
                conn.handshake.finish(Ok(()));
            }
            MessageType::AuthReply => self.refuse(session, &conn, reply.status.clone()),
            other => self.refuse(session, &conn, unexpected("AUTH_REPLY", other)),
        }
    }

    fn refuse(&mut self, session: &crate::Session<Message>, conn: &Conn, status: Status) {
        self.phase = BearerPhase::Refused;
        conn.handshake.finish(Err(status.clone()));
        session.close_with_error(AuthRefused::new(status));
    }
}

impl<S, E> Service<Request<Message, Message>> for AuthBearerService<S>
where
    S: Service<Request<Message, Message>, Response = Option<Message>, Error = E>,
{
    type Response = Option<Message>;
    type Error = E;
    type Future = AuthFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Message, Message>) -> Self::Future {
        match (self.phase, req.event) {
            (BearerPhase::Connecting, Event::Open) => {
                // Before the dispatcher opens the connection to callers.
                self.begin(&req.session);
                AuthFuture::inner(self.inner.call(Request::new(req.session, Event::Open)))
            }
            (BearerPhase::AwaitingAuthReply, Event::Message(reply)) => {
                self.answered(&req.session, &reply);
                AuthFuture::answered(None)
            }
            (BearerPhase::Refused, Event::Message(msg)) => {
                tracing::debug!(seq = msg.seq, mtype = %msg.mtype, "message of a refused session dropped");
                AuthFuture::answered(None)
            }
            (_, event) => AuthFuture::inner(self.inner.call(Request::new(req.session, event))),
        }
    }
}
