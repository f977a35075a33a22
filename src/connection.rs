//! One session over a transport the user brings: any byte stream
//! ([`serve_connection`]) or any stream and sink of whole messages
//! ([`serve_messages`]). The servers and clients run their sessions
//! through the same driver entry point.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite};
use tower::ServiceExt;

use crate::{
    budget::InputBudget,
    codec::MakeCodecFor,
    driver,
    transport::{MessageIo, StreamIo, Transport},
    Addr, BoxError, EndpointKind, MakeSessionService, Session, SessionConfig,
};

/// Runs one session over `io`, any `AsyncRead + AsyncWrite` (an accepted
/// socket you already have, a QUIC stream, a proxied stream,
/// `tokio::io::duplex` in tests), with the default [`SessionConfig`] (the
/// make-service can change the session's settings, as always). Resolves
/// when the session has ended: `Close` passed the stack and the close
/// callbacks ran. [`Connection`] sets addresses, settings and an input
/// budget.
///
/// ```
/// use bytes::Bytes;
/// use getty::{codec::LengthCodec, new_session_fn, EventListener, ListenerService, Session};
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// struct Echo;
/// impl EventListener<Bytes> for Echo {
///     fn on_message(&mut self, _: &Session, pkg: Bytes) -> Option<Bytes> { Some(pkg) }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let (mut client, server) = tokio::io::duplex(4096);
/// let session = tokio::spawn(getty::serve_connection(
///     server,
///     LengthCodec::new(),
///     new_session_fn(|_: &Session| Ok::<_, getty::BoxError>(ListenerService::new(Echo))),
/// ));
/// client.write_all(b"\0\0\0\x02hi").await.unwrap();
/// let mut echo = [0u8; 6];
/// client.read_exact(&mut echo).await.unwrap();
/// assert_eq!(&echo, b"\0\0\0\x02hi");
/// drop(client);
/// session.await.unwrap();
/// # }
/// ```
pub async fn serve_connection<IO, MC, M, R, W>(io: IO, codec: MC, make: M)
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    MC: MakeCodecFor<R, W>,
    M: MakeSessionService<R, W>,
    R: Send + 'static,
    W: Send + 'static,
{
    Connection::new().serve(io, codec, make).await;
}

/// Runs one session over `messages`, a `Stream` and `Sink` of whole
/// messages (a WebSocket of another library, a QUIC datagram flow, a
/// channel pair in tests): each message is one packet, as on getty's own
/// WebSocket transport. Otherwise like [`serve_connection`].
///
/// ```
/// use bytes::{Bytes, BytesMut};
/// use futures_util::{SinkExt, StreamExt, TryStreamExt};
/// use getty::{new_session_fn, EventListener, ListenerService, Session};
/// use tokio_util::codec::{BytesCodec, Framed, LengthDelimitedCodec};
///
/// struct Echo;
/// impl EventListener<BytesMut, Bytes> for Echo {
///     fn on_message(&mut self, _: &Session, pkg: BytesMut) -> Option<Bytes> {
///         Some(pkg.freeze())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// // A message pipe: length-delimited frames over an in-memory stream.
/// let (a, b) = tokio::io::duplex(4096);
/// let server_side = Framed::new(a, LengthDelimitedCodec::new()).map_ok(BytesMut::freeze);
/// let mut client = Framed::new(b, LengthDelimitedCodec::new());
/// let session = tokio::spawn(getty::serve_messages(
///     server_side,
///     BytesCodec::new(),
///     new_session_fn(|_: &Session| Ok::<_, getty::BoxError>(ListenerService::new(Echo))),
/// ));
/// client.send(Bytes::from_static(b"one message")).await.unwrap();
/// let echo = client.next().await.unwrap().unwrap();
/// assert_eq!(&echo[..], b"one message");
/// drop(client);
/// session.await.unwrap();
/// # }
/// ```
pub async fn serve_messages<S, E, MC, M, R, W>(messages: S, codec: MC, make: M)
where
    S: Stream<Item = Result<Bytes, E>> + Sink<Bytes, Error = E> + Send + Unpin + 'static,
    E: Into<BoxError>,
    MC: MakeCodecFor<R, W>,
    M: MakeSessionService<R, W>,
    R: Send + 'static,
    W: Send + 'static,
{
    Connection::new()
        .serve_messages(messages, codec, make)
        .await;
}

/// Options for a session over a transport of the user's: its addresses,
/// settings and input budget.
///
/// ```
/// use getty::{Addr, Connection, SessionConfig};
///
/// let connection = Connection::new()
///     .peer_addr(Addr::from("127.0.0.1:9000".parse::<std::net::SocketAddr>().unwrap()))
///     .session_config(SessionConfig::default().max_packet_len(64 * 1024))
///     .max_buffered_input(Some(1 << 20));
/// # let _ = connection;
/// ```
#[derive(Debug, Clone)]
pub struct Connection {
    local: Addr,
    peer: Addr,
    config: SessionConfig,
    budget: Option<usize>,
}

impl Default for Connection {
    fn default() -> Self {
        Connection::new()
    }
}

impl Connection {
    /// Unknown addresses, default settings, no input budget.
    pub fn new() -> Self {
        Connection {
            local: Addr::Unknown,
            peer: Addr::Unknown,
            config: SessionConfig::default(),
            budget: None,
        }
    }

    /// The session's local address.
    pub fn local_addr(mut self, addr: Addr) -> Self {
        self.local = addr;
        self
    }

    /// The session's peer address.
    pub fn peer_addr(mut self, addr: Addr) -> Self {
        self.peer = addr;
        self
    }

    /// The settings the session starts with.
    pub fn session_config(mut self, config: SessionConfig) -> Self {
        self.config = config;
        self
    }

    /// An input budget for this one session (see
    /// [`ServerBuilder::max_buffered_input`](crate::ServerBuilder::max_buffered_input)).
    /// Default `None`: the session's `max_packet_len` bounds its input.
    pub fn max_buffered_input(mut self, max: Option<usize>) -> Self {
        self.budget = max;
        self
    }

    /// Runs the session over a byte stream (see [`serve_connection`]).
    pub async fn serve<IO, MC, M, R, W>(self, io: IO, codec: MC, make: M)
    where
        IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
        MC: MakeCodecFor<R, W>,
        M: MakeSessionService<R, W>,
        R: Send + 'static,
        W: Send + 'static,
    {
        self.run(StreamIo(io), EndpointKind::Stream, codec, make)
            .await;
    }

    /// Runs the session over whole messages (see [`serve_messages`]).
    pub async fn serve_messages<S, E, MC, M, R, W>(self, messages: S, codec: MC, make: M)
    where
        S: Stream<Item = Result<Bytes, E>> + Sink<Bytes, Error = E> + Send + Unpin + 'static,
        E: Into<BoxError>,
        MC: MakeCodecFor<R, W>,
        M: MakeSessionService<R, W>,
        R: Send + 'static,
        W: Send + 'static,
    {
        self.run(MessageIo(messages), EndpointKind::Messages, codec, make)
            .await;
    }

    async fn run<T, MC, M, R, W>(self, io: T, kind: EndpointKind, codec: MC, mut make: M)
    where
        T: Transport,
        MC: MakeCodecFor<R, W>,
        M: MakeSessionService<R, W>,
        R: Send + 'static,
        W: Send + 'static,
    {
        let session = Session::new(kind, self.local, self.peer, self.config);
        let budget = self.budget.map(|max| Arc::new(InputBudget::new(max)));
        let making = match make.ready().await {
            Ok(make) => driver::call_make(make, &session),
            Err(e) => Err(e.into()),
        };
        driver::serve_session(io, session, making, &codec, budget).await;
    }
}
