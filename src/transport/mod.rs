//! What a session runs over, behind one [`Transport`] trait the driver is
//! generic over: byte streams ([`StreamIo`] over TCP, Unix, TLS or any
//! stream of the user's) and message transports ([`WsIo`], [`UdpIo`],
//! [`MessageIo`]). Whether a transport carries messages is a constant of
//! its type, so the driver is compiled once per kind with no branch on it.

mod generic;
mod udp;
mod ws;

use std::{
    io,
    pin::Pin,
    task::{ready, Context, Poll},
};

use bytes::{Buf, BytesMut};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpStream, UnixStream},
};

pub(crate) use self::generic::{poll_read_stream, MessageIo, StreamIo};
pub(crate) use self::udp::{peer_session as udp_peer_session, UdpIo};
pub(crate) use self::ws::{accept as ws_accept, connect as ws_connect};
pub(crate) use self::ws::{HandshakeError as WsHandshakeError, WsIo, WsOptions, WsSettings};

/// Bytes a codec's own framing may add above `max_packet_len` (a length
/// prefix): the driver's buffer guard and UDP's datagram limit allow this
/// much more, and the codec enforces the payload's limit itself. A
/// WebSocket message is held to `max_packet_len` exactly (refused from its
/// frame header, before it is buffered).
pub(crate) const HEADER_SLACK: usize = 64;

/// What the driver needs from a connection.
pub(crate) trait Transport: Unpin {
    /// Each read yields one whole message, and each packet written must
    /// leave as one message (WebSocket, UDP); otherwise a byte stream.
    const FRAMED: bool;

    /// Messages are independent (datagrams): input the codec refuses is
    /// dropped and reported, and the session carries on.
    const LOSSY: bool = false;

    /// Reads into `buf`; `Ok(None)` at the end of input. A stream appends
    /// what is available, a framed transport one whole message. At most
    /// `limit` bytes are taken from the socket (the input budget's grant);
    /// a transport that receives whole datagrams may exceed it by one.
    fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        limit: usize,
    ) -> Poll<io::Result<Option<usize>>>;

    /// Writes from `buf`, some of it (byte streams only; the driver sends
    /// on a framed transport with `poll_send_frame`).
    fn poll_write_from(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let _ = (cx, buf);
        Poll::Ready(Err(io::Error::other(
            "a message transport sends whole messages (poll_send_frame)",
        )))
    }

    /// Sends the first `len` bytes of `buf` as one message and removes them
    /// from `buf` (framed transports only).
    fn poll_send_frame(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        len: usize,
    ) -> Poll<io::Result<()>> {
        let _ = (cx, buf, len);
        Poll::Ready(Err(io::Error::other(
            "a byte stream has no messages (poll_write_from)",
        )))
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    /// Closes the sending side. `error` names the failure that ended the
    /// session ([`Error::kind`](crate::Error::kind)), if one did.
    fn poll_close(
        &mut self,
        cx: &mut Context<'_>,
        error: Option<&'static str>,
    ) -> Poll<io::Result<()>>;

    /// After `poll_close`: reads and throws away what the peer sent, so the
    /// socket is closed with nothing unread. `Ready(true)` when it threw
    /// something away (more may come), `Ready(false)` once the peer closed
    /// its side or the connection failed. The caller bounds it in time.
    fn poll_discard(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        let _ = cx;
        Poll::Ready(false)
    }

    /// The cron period elapsed: a keep-alive (a WebSocket ping) may go out
    /// with the next flush.
    fn tick(&mut self) {}

    /// Whether keep-alive traffic (ping, pong) arrived since the last call.
    fn take_activity(&mut self) -> bool {
        false
    }

    /// Bytes of input the transport itself holds that the driver has not
    /// taken yet (a partial WebSocket frame, say): counted with the
    /// driver's own read buffer against the server's input budget and in
    /// `SessionStats::buffered`.
    fn buffered(&self) -> usize {
        0
    }

    /// The session is idle: give back every buffer that holds no data, so
    /// an idle session costs what a new one does whatever its history.
    fn release_idle(&mut self) {}
}

/// A connected stream: plain TCP, a Unix socket, or TLS over TCP.
pub(crate) enum Io {
    Tcp(TcpStream),
    Unix(UnixStream),
    // Boxed: a TLS stream carries its session state (a few KiB), and the
    // enum is as large as its largest variant.
    TlsServer(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    TlsClient(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

macro_rules! delegate {
    ($self:ident, $io:ident => $e:expr) => {
        match $self.get_mut() {
            Io::Tcp($io) => $e,
            Io::Unix($io) => $e,
            Io::TlsServer($io) => $e,
            Io::TlsClient($io) => $e,
        }
    };
}

impl Io {
    /// Reads what is available, at most `limit` bytes (see
    /// [`poll_read_stream`]).
    pub(crate) fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        limit: usize,
    ) -> Poll<io::Result<Option<usize>>> {
        poll_read_stream(self, cx, buf, limit)
    }
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, io => Pin::new(io).poll_read(cx, buf))
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, io => Pin::new(io).poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, io => Pin::new(io).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, io => Pin::new(io).poll_shutdown(cx))
    }
}

impl Transport for WsIo {
    const FRAMED: bool = true;

    fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        limit: usize,
    ) -> Poll<io::Result<Option<usize>>> {
        WsIo::poll_read_into(self, cx, buf, limit)
    }

    fn poll_send_frame(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        len: usize,
    ) -> Poll<io::Result<()>> {
        WsIo::poll_send_frame(self, cx, buf, len)
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        WsIo::poll_flush(self, cx)
    }

    fn poll_close(
        &mut self,
        cx: &mut Context<'_>,
        error: Option<&'static str>,
    ) -> Poll<io::Result<()>> {
        WsIo::poll_close(self, cx, error)
    }

    fn tick(&mut self) {
        WsIo::tick(self);
    }

    fn take_activity(&mut self) -> bool {
        WsIo::take_activity(self)
    }

    fn buffered(&self) -> usize {
        WsIo::buffered(self)
    }

    fn release_idle(&mut self) {
        WsIo::release_idle(self);
    }
}

impl Transport for UdpIo {
    const FRAMED: bool = true;
    const LOSSY: bool = true;

    fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        _limit: usize,
    ) -> Poll<io::Result<Option<usize>>> {
        UdpIo::poll_read_into(self, cx, buf)
    }

    fn poll_send_frame(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        len: usize,
    ) -> Poll<io::Result<()>> {
        ready!(UdpIo::poll_write_from(self, cx, &buf[..len]))?;
        buf.advance(len);
        Poll::Ready(Ok(()))
    }

    fn poll_flush(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(&mut self, _: &mut Context<'_>, _: Option<&'static str>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
