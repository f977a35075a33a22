//! [`AuthChecker`]: the server side of erpc's auth handshake.

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use tower::{Layer, Service};

use super::{future::AuthFuture, unexpected};
use crate::{
    rpc::{
        codec::{CodecId, Codecs, FromBody, IntoBody},
        session::Conn,
        Message, MessageType, Status,
    },
    Event, Request,
};

/// The checker with its types erased: the AUTH_CALL in, the AUTH_REPLY's
/// body out.
type CheckFn = dyn Fn(&crate::Session<Message>, Message, &Codecs, CodecId) -> Result<(CodecId, Bytes), Status>
    + Send
    + Sync;

/// Authenticates every accepted session before anything else reaches the
/// router (erpc's `auth.NewCheckerPlugin`, SPEC §1.9). A session layer:
/// add it with [`PeerBuilder::session_layer`](crate::rpc::PeerBuilder::session_layer),
/// after (outside) every other session layer.
///
/// The first message of a session must be an `AUTH_CALL`. Its body is
/// decoded into the checker's argument type `A` (any serde type, or
/// [`Raw`](crate::rpc::codec::Raw) for the bytes as they came) and the
/// checker decides, synchronously, with the core session at hand (its
/// address, its attributes: store the identity there). The server answers
/// with an `AUTH_REPLY` carrying its own next seq, an empty service method,
/// and either the checker's value (encoded in the peer's default codec) or
/// its status.
///
/// A refusal, a body that does not decode (400), or a first message that
/// is not `AUTH_CALL` (401, "auth message(1st) expect: AUTH_CALL, but
/// received: CALL") is answered the same way, then the session is closed;
/// nothing it sent reaches the router. An `AUTH_CALL` after the handshake
/// closes the session too (the dispatcher's rule).
///
/// ```
/// use getty::rpc::{plugin::auth::AuthChecker, Peer, Router, Status};
///
/// #[derive(Clone, Debug)]
/// struct User(String);
///
/// let checker = AuthChecker::new(|session: &getty::Session<getty::rpc::Message>, token: String| {
///     match token.strip_prefix("token-") {
///         Some(user) => {
///             session.set_attribute(User(user.to_owned()));
///             Ok("welcome")
///         }
///         None => Err(Status::framework_with(Status::CODE_UNAUTHORIZED, "bad token")),
///     }
/// });
/// let server = Peer::builder().router(Router::new()).session_layer(checker).build();
/// # let _ = server;
/// ```
#[derive(Clone)]
pub struct AuthChecker {
    check: Arc<CheckFn>,
}

impl fmt::Debug for AuthChecker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthChecker").finish_non_exhaustive()
    }
}

impl AuthChecker {
    /// A checker of the `AUTH_CALL`'s info decoded as `A`, answering with
    /// `R` or refusing with a status (401 is erpc's).
    pub fn new<A, R, F>(check: F) -> AuthChecker
    where
        A: FromBody,
        R: IntoBody,
        F: Fn(&crate::Session<Message>, A) -> Result<R, Status> + Send + Sync + 'static,
    {
        AuthChecker {
            check: Arc::new(move |session, call, codecs, default_codec| {
                let info = A::from_body(call.body_codec, call.body, codecs)?;
                let ret = check(session, info)?;
                let codec = ret.preferred_codec().unwrap_or(default_codec);
                ret.into_body(codec, codecs)
            }),
        }
    }
}

impl<S> Layer<S> for AuthChecker {
    type Service = AuthCheckerService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthCheckerService {
            inner,
            check: Arc::clone(&self.check),
            phase: CheckerPhase::AwaitingAuthCall,
        }
    }
}

/// Where an accepted session's authentication stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CheckerPhase {
    /// Nothing read yet: the next message must be the `AUTH_CALL`.
    AwaitingAuthCall,
    /// The checker accepted: everything passes.
    Authenticated,
    /// Refused and closing: nothing passes.
    Refused,
}

/// The service [`AuthChecker`] wraps a session's stack in.
///
/// ```
/// use getty::rpc::{plugin::auth::{AuthChecker, AuthCheckerService}, SessionStack};
/// use tower::Layer;
///
/// fn wrap(stack: SessionStack) -> AuthCheckerService<SessionStack> {
///     AuthChecker::new(|_: &getty::Session<getty::rpc::Message>, _: String| Ok::<_, getty::rpc::Status>(())).layer(stack)
/// }
/// # let _ = wrap;
/// ```
pub struct AuthCheckerService<S> {
    inner: S,
    check: Arc<CheckFn>,
    phase: CheckerPhase,
}

impl<S: fmt::Debug> fmt::Debug for AuthCheckerService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthCheckerService")
            .field("inner", &self.inner)
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

impl<S> AuthCheckerService<S> {
    /// Answers the session's first message, which must be the `AUTH_CALL`.
    fn authenticate(
        &mut self,
        session: &crate::Session<Message>,
        first: Message,
    ) -> Option<Message> {
        let Some(conn) = Conn::of(session) else {
            // Not a peer's session: there is no seq to answer with.
            tracing::warn!(%session, "auth checker outside an rpc peer: session closed");
            self.phase = CheckerPhase::Refused;
            session.close();
            return None;
        };
        let outcome = if first.mtype == MessageType::AuthCall {
            (self.check)(session, first, &conn.peer.codecs, conn.peer.default_codec)
        } else {
            Err(unexpected("AUTH_CALL", first.mtype))
        };
        // erpc answers with its own seq, not an echo of the call's.
        let reply = Message::new(MessageType::AuthReply, conn.next_seq(), "");
        match outcome {
            Ok((codec, body)) => {
                self.phase = CheckerPhase::Authenticated;
                Some(reply.with_body(codec, body))
            }
            Err(status) => {
                tracing::info!(%session, %status, "authentication refused");
                self.phase = CheckerPhase::Refused;
                // Queued before the close, so it is written before the socket
                // closes (a full queue this early cannot happen; if the
                // session is already closing the reply has nowhere to go).
                let _ = session.try_send(reply.with_status(status));
                session.close();
                None
            }
        }
    }
}

impl<S, E> Service<Request<Message, Message>> for AuthCheckerService<S>
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
            (CheckerPhase::Authenticated, event) => {
                AuthFuture::inner(self.inner.call(Request::new(req.session, event)))
            }
            (CheckerPhase::AwaitingAuthCall, Event::Message(first)) => {
                AuthFuture::answered(self.authenticate(&req.session, first))
            }
            (CheckerPhase::Refused, Event::Message(msg)) => {
                tracing::debug!(seq = msg.seq, mtype = %msg.mtype, "message of a refused session dropped");
                AuthFuture::answered(None)
            }
            // Open, Tick, Error and Close pass whatever the phase.
            (_, event) => AuthFuture::inner(self.inner.call(Request::new(req.session, event))),
        }
    }
}
