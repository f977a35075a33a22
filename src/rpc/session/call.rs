//! [`CallBuilder`] and [`PushBuilder`]: a message on its way out, with its options.

use std::{
    fmt,
    future::{Future, IntoFuture},
    marker::PhantomData,
    pin::Pin,
    sync::Arc,
    time::Duration,
};

use super::{pending::Reply, CallFuture, Conn, Session};
use crate::rpc::{
    codec::{CodecId, FromBody, IntoBody},
    Message, MessageType, Meta, ServiceMethod, Status, XferPipe,
};
use crate::SendError;

/// The metadata key of the codec a caller wants its reply in.
pub(crate) const ACCEPT_BODY_CODEC: &str = "X-Accept-Body-Codec";

/// Options shared by calls and pushes (erpc's `MessageSetting`s).
#[derive(Debug, Default)]
struct Options {
    codec: Option<CodecId>,
    meta: Meta,
    xfer: XferPipe,
}

impl Options {
    fn message<A: IntoBody>(
        self,
        session: &Session,
        mtype: MessageType,
        service_method: ServiceMethod,
        arg: A,
    ) -> Result<(Arc<Conn>, Message), Status> {
        let conn = session.conn()?;
        let codec = self
            .codec
            .or_else(|| arg.preferred_codec())
            .unwrap_or(conn.peer.default_codec);
        let (codec, body) = arg.into_body(codec, &conn.peer.codecs)?;
        // Made in one go: each `Message::with_*` moves the whole message.
        let msg = Message {
            seq: 0,
            mtype,
            service_method,
            status: Status::OK,
            meta: self.meta,
            // erpc writes its default codec on calls and pushes without a body.
            body_codec: if codec == CodecId::NONE {
                conn.peer.default_codec
            } else {
                codec
            },
            body,
            xfer_pipe: self.xfer,
        };
        Ok((conn, msg))
    }
}

/// How long a call may wait for its reply.
#[derive(Debug, Clone, Copy)]
enum Deadline {
    /// The peer's [`call_timeout`](crate::rpc::PeerBuilder::call_timeout).
    PeerDefault,
    /// This call's own.
    Within(Duration),
    /// Until the reply comes or the session ends (erpc v6's behaviour).
    Unbounded,
}

/// A call on its way: set options, then `.await` it for the typed reply
/// (teleport's `Call` with its settings). The reply type `R` is inferred
/// from how the result is used. The call goes out when its future is made
/// (by `.await`, or `IntoFuture::into_future`) if the session's queue has
/// room, else once room comes; dropping the future before the reply
/// forgets the call (a reply that comes later is counted late).
///
/// ```no_run
/// use getty::rpc::{codec::CodecId, Session, Status};
/// use std::time::Duration;
///
/// # async fn demo(session: Session) -> Result<(), Status> {
/// let reply: String = session
///     .call("/home/echo", "hello")
///     .codec(CodecId::PLAIN)
///     .meta("trace-id", "42")
///     .xfer(b'g')
///     .timeout(Duration::from_secs(2))
///     .await?;
/// # Ok(()) }
/// ```
///
/// # Errors
/// The reply's status when it is not OK; a local status otherwise: 102
/// when the session is gone or goes before the reply, 408 when no reply
/// came in time, 400 when the reply's body does not decode into `R`, 500
/// when the argument cannot be encoded.
#[must_use = "a call does nothing until awaited"]
pub struct CallBuilder<A, R> {
    session: Session,
    service_method: ServiceMethod,
    arg: A,
    options: Options,
    accept: Option<CodecId>,
    deadline: Deadline,
    reply: PhantomData<fn() -> R>,
}

impl<A, R> fmt::Debug for CallBuilder<A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallBuilder")
            .field("service_method", &self.service_method)
            .field("options", &self.options)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl<A: IntoBody, R: FromBody> CallBuilder<A, R> {
    pub(crate) fn new(session: Session, service_method: ServiceMethod, arg: A) -> Self {
        CallBuilder {
            session,
            service_method,
            arg,
            options: Options::default(),
            accept: None,
            deadline: Deadline::PeerDefault,
            reply: PhantomData,
        }
    }

    /// Encodes the argument with `codec` (default: the argument's own, such
    /// as protobuf for [`Proto`](crate::rpc::codec::Proto), else the peer's
    /// default codec, json unless configured).
    pub fn codec(mut self, codec: CodecId) -> Self {
        self.options.codec = Some(codec);
        self
    }

    /// Asks the peer to reply in `codec` (erpc's `X-Accept-Body-Codec`).
    pub fn accept_codec(mut self, codec: CodecId) -> Self {
        self.accept = Some(codec);
        self
    }

    /// Adds a metadata pair (erpc's `WithAddMeta`).
    pub fn meta(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.options.meta.add(key, value);
        self
    }

    /// Sends the message through transfer filter `id` (registered in the
    /// peer's [`XferFilters`](crate::rpc::XferFilters)); filters added
    /// first are outermost. The reply comes back through the same filters.
    pub fn xfer(mut self, id: u8) -> Self {
        self.options.xfer.push(id);
        self
    }

    /// Fails the call with status 408 if no reply came within `limit`
    /// (waiting for room to send included), instead of the peer's default.
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.deadline = Deadline::Within(limit);
        self
    }

    /// Waits for the reply however long it takes, until the session ends
    /// (erpc v6's behaviour).
    pub fn no_timeout(mut self) -> Self {
        self.deadline = Deadline::Unbounded;
        self
    }
}

impl<A: IntoBody, R: FromBody + Send + 'static> IntoFuture for CallBuilder<A, R> {
    type Output = Result<R, Status>;
    type IntoFuture = CallFuture<R>;

    fn into_future(self) -> CallFuture<R> {
        let CallBuilder {
            session,
            service_method,
            arg,
            mut options,
            accept,
            deadline,
            ..
        } = self;
        if let Some(accept) = accept {
            options
                .meta
                .set(ACCEPT_BODY_CODEC, accept.as_u8().to_string());
        }
        // Encoded now, on the connection of the moment, so the future holds
        // no borrow of the argument; and sent now when the queue has room
        // (`.await` makes the future and polls it at once), so the future
        // only waits for the reply: small, and nothing moved through it.
        let started = options
            .message(&session, MessageType::Call, service_method, arg)
            .and_then(|(conn, msg)| {
                let timeout = match deadline {
                    Deadline::PeerDefault => conn.peer.call_timeout,
                    Deadline::Within(limit) => Some(limit),
                    Deadline::Unbounded => None,
                };
                match conn.session.try_reserve() {
                    Ok(permit) => {
                        let reply = conn.send_call(permit, msg, timeout)?;
                        Ok(Started::Sent { conn, reply })
                    }
                    Err(SendError::Blocked) => Ok(Started::Blocked { conn, msg, timeout }),
                    Err(_) => Err(conn.closed()),
                }
            });
        match started {
            Ok(Started::Sent { conn, reply }) => CallFuture::sent(conn, reply),
            Ok(Started::Blocked { conn, msg, timeout }) => {
                let waiting = Arc::clone(&conn);
                CallFuture::blocked(
                    conn,
                    Box::pin(async move { waiting.call(msg, timeout).await }),
                )
            }
            Err(status) => CallFuture::failed(status),
        }
    }
}

/// A call as `into_future` leaves it.
enum Started {
    /// On its way; the reply is awaited.
    Sent { conn: Arc<Conn>, reply: Reply },
    /// The queue was full: waiting for room (timed) comes first.
    Blocked {
        conn: Arc<Conn>,
        msg: Message,
        timeout: Option<Duration>,
    },
}

/// A push on its way: set options, then `.await` it; it resolves once the
/// message is queued (teleport's `Push`).
///
/// ```no_run
/// # async fn demo(session: getty::rpc::Session) -> Result<(), getty::rpc::Status> {
/// session.push("/push/status", serde_json::json!({"cpu": 0.5})).meta("from", "a").await?;
/// # Ok(()) }
/// ```
///
/// # Errors
/// 102 when the session is gone, 500 when the argument cannot be encoded.
#[must_use = "a push does nothing until awaited"]
pub struct PushBuilder<A> {
    session: Session,
    service_method: ServiceMethod,
    arg: A,
    options: Options,
}

impl<A> fmt::Debug for PushBuilder<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PushBuilder")
            .field("service_method", &self.service_method)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl<A: IntoBody> PushBuilder<A> {
    pub(crate) fn new(session: Session, service_method: ServiceMethod, arg: A) -> Self {
        PushBuilder {
            session,
            service_method,
            arg,
            options: Options::default(),
        }
    }

    /// Encodes the argument with `codec` (as [`CallBuilder::codec`]).
    pub fn codec(mut self, codec: CodecId) -> Self {
        self.options.codec = Some(codec);
        self
    }

    /// Adds a metadata pair.
    pub fn meta(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.options.meta.add(key, value);
        self
    }

    /// Sends the message through transfer filter `id`.
    pub fn xfer(mut self, id: u8) -> Self {
        self.options.xfer.push(id);
        self
    }
}

impl<A: IntoBody> IntoFuture for PushBuilder<A> {
    type Output = Result<(), Status>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<(), Status>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        let PushBuilder {
            session,
            service_method,
            arg,
            options,
        } = self;
        let message = options.message(&session, MessageType::Push, service_method, arg);
        Box::pin(async move {
            let (conn, msg) = message?;
            conn.push(msg).await
        })
    }
}
