//! [`Channel`]: a session as a `tower::Service<Call>`, and [`Balanced`]:
//! several servers behind `tower::balance::p2c`.

mod balance;

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use tower::Service;

pub use self::balance::Balanced;
use crate::rpc::{
    codec::{CodecId, Codecs, FromBody, IntoBody},
    session::Reserved,
    Message, MessageType, Meta, ServiceMethod, Session, Status, XferPipe,
};

/// A call as a tower request: a service method and an encoded body, with
/// metadata and transfer filters.
///
/// ```
/// use getty::rpc::{codec::{CodecId, Codecs}, Call};
///
/// let call = Call::new("/home/echo", CodecId::PLAIN, "hello");
/// assert_eq!(&call.body[..], b"hello");
/// let typed = Call::encode("/home/add", &[1, 2], CodecId::JSON, &Codecs::new()).unwrap();
/// assert_eq!(&typed.body[..], b"[1,2]");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The route.
    pub service_method: ServiceMethod,
    /// The metadata.
    pub meta: Meta,
    /// The body's codec.
    pub body_codec: CodecId,
    /// The encoded body.
    pub body: Bytes,
    /// The transfer filters, outermost first.
    pub xfer_pipe: XferPipe,
}

impl Call {
    /// A call with a body already encoded in `codec`.
    pub fn new(
        service_method: impl Into<ServiceMethod>,
        codec: CodecId,
        body: impl Into<Bytes>,
    ) -> Call {
        Call {
            service_method: service_method.into(),
            meta: Meta::new(),
            body_codec: codec,
            body: body.into(),
            xfer_pipe: XferPipe::new(),
        }
    }

    /// A call with `arg` encoded in `codec` (or the codec the argument
    /// must use).
    ///
    /// # Errors
    /// Status 500 when the argument cannot be encoded.
    pub fn encode<A: IntoBody>(
        service_method: impl Into<ServiceMethod>,
        arg: A,
        codec: CodecId,
        codecs: &Codecs,
    ) -> Result<Call, Status> {
        let (codec, body) = arg.into_body(codec, codecs)?;
        Ok(Call::new(service_method, codec, body))
    }

    fn into_message(self) -> Message {
        Message::new(MessageType::Call, 0, self.service_method)
            .with_body(self.body_codec, self.body)
            .with_meta(self.meta)
            .with_xfer_pipe(self.xfer_pipe)
    }
}

/// Decodes a reply's body (any serde type, `Raw`, `Proto<T>`).
///
/// ```
/// use getty::rpc::{codec::{CodecId, Codecs}, decode_reply, Message, MessageType};
///
/// let reply = Message::new(MessageType::Reply, 1, "").with_body(CodecId::JSON, "[1,2]");
/// let v: Vec<i32> = decode_reply(reply, &Codecs::new()).unwrap();
/// assert_eq!(v, [1, 2]);
/// ```
///
/// # Errors
/// The reply's status when it is not OK, 400 when the body does not decode.
pub fn decode_reply<R: FromBody>(reply: Message, codecs: &Codecs) -> Result<R, Status> {
    if !reply.status.is_ok() {
        return Err(reply.status);
    }
    R::from_body(reply.body_codec, reply.body, codecs)
}

/// One session as a tower service of calls: many calls share the
/// connection at once, each reply found by its seq, in any order.
///
/// `poll_ready` is the session's outbound readiness: it reserves a place
/// in the session's queue (the permit is kept, and spent by `call`), so
/// `Pending` means the connection is backed up, and tower's `load_shed`,
/// `timeout`, `retry`, `concurrency_limit` and `balance` work on it as
/// they do on any service. A clone starts without a reservation.
///
/// The response is the reply message (its status OK; decode it with
/// [`decode_reply`]); the error a [`Status`]: the reply's when it is not
/// OK, or a local one (102 the session is gone, 408 no reply within the
/// channel's timeout).
///
/// ```no_run
/// use getty::rpc::{codec::CodecId, Call, Channel, Peer};
/// use std::time::Duration;
/// use tower::{Service, ServiceBuilder, ServiceExt};
///
/// # async fn demo(peer: Peer) -> Result<(), getty::BoxError> {
/// let session = peer.dial("127.0.0.1:9090").await?;
/// let mut svc = ServiceBuilder::new()
///     .load_shed()
///     .timeout(Duration::from_secs(1))
///     .service(Channel::new(session));
/// let reply = svc.ready().await?.call(Call::new("/home/echo", CodecId::PLAIN, "hi")).await?;
/// assert_eq!(&reply.body[..], b"hi");
/// # Ok(()) }
/// ```
pub struct Channel {
    session: Session,
    timeout: Option<Duration>,
    reserved: Option<Reserved>,
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("session", &self.session)
            .field("timeout", &self.timeout)
            .field("reserved", &self.reserved.is_some())
            .finish()
    }
}

impl Clone for Channel {
    fn clone(&self) -> Self {
        Channel {
            session: self.session.clone(),
            timeout: self.timeout,
            reserved: None,
        }
    }
}

impl Channel {
    /// A channel over `session`; calls wait for replies as long as the
    /// peer's [`call_timeout`](crate::rpc::PeerBuilder::call_timeout) says.
    pub fn new(session: Session) -> Channel {
        let timeout = session.conn().ok().and_then(|c| c.peer.call_timeout);
        Channel {
            session,
            timeout,
            reserved: None,
        }
    }

    /// The same channel with its own reply timeout (`None`: until the
    /// session ends; tower's `timeout` layer is the other way).
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Channel {
        self.timeout = timeout;
        self
    }

    /// The session.
    pub fn get_ref(&self) -> &Session {
        &self.session
    }

    /// The session.
    pub fn into_inner(self) -> Session {
        self.session
    }
}

impl Service<Call> for Channel {
    type Response = Message;
    type Error = Status;
    type Future = Pin<Box<dyn Future<Output = Result<Message, Status>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        if let Some((conn, _)) = &self.reserved {
            if !conn.session.is_closed() {
                return Poll::Ready(Ok(()));
            }
            self.reserved = None;
        }
        self.session.poll_reserve(cx).map_ok(|reserved| {
            self.reserved = Some(reserved);
        })
    }

    fn call(&mut self, call: Call) -> Self::Future {
        let timeout = self.timeout;
        let Some((conn, permit)) = self.reserved.take() else {
            return Box::pin(std::future::ready(Err(Status::framework_with(
                Status::CODE_INVALID_OPERATION,
                "Channel::call without poll_ready",
            ))));
        };
        Box::pin(async move {
            let reply = conn.call_with(permit, call.into_message(), timeout).await?;
            if reply.status.is_ok() {
                Ok(reply)
            } else {
                Err(reply.status)
            }
        })
    }
}
