//! What a session runs over: byte streams (TCP, Unix, TLS) and message
//! transports (WebSocket), behind one [`Transport`] trait the driver uses.
//!
//! Enums rather than generic parameters: a server or client stays one type
//! whatever it speaks, and the match per read or write costs nothing
//! measurable next to the syscall behind it.

mod generic;
mod udp;
mod ws;

use std::{
    io,
    mem::MaybeUninit,
    pin::Pin,
    task::{ready, Context, Poll},
};

use bytes::{Buf, BufMut, BytesMut};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpStream, UnixStream},
};

pub(crate) use self::generic::{MessageIo, StreamIo};
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
    /// leave as one message (WebSocket); otherwise a byte stream.
    fn framed(&self) -> bool;

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
    fn poll_write_from(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>>;

    /// Sends the first `len` bytes of `buf` as one message and removes them
    /// from `buf` (framed transports only).
    fn poll_send_frame(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        len: usize,
    ) -> Poll<io::Result<()>>;

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

    /// Messages are independent (datagrams): input the codec refuses is
    /// dropped and reported, and the session carries on.
    fn lossy(&self) -> bool {
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

/// A session's connection.
pub(crate) enum Link {
    Stream(Io),
    Ws(Box<WsIo>),
    Udp(Box<UdpIo>),
}

impl Transport for Link {
    fn framed(&self) -> bool {
        !matches!(self, Link::Stream(_))
    }

    fn lossy(&self) -> bool {
        matches!(self, Link::Udp(_))
    }

    fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        limit: usize,
    ) -> Poll<io::Result<Option<usize>>> {
        match self {
            Link::Stream(io) => io.poll_read_into(cx, buf, limit),
            Link::Ws(ws) => ws.poll_read_into(cx, buf, limit),
            Link::Udp(udp) => udp.poll_read_into(cx, buf),
        }
    }

    fn poll_discard(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        match self {
            Link::Stream(io) => io.poll_discard(cx),
            Link::Ws(_) | Link::Udp(_) => Poll::Ready(false),
        }
    }

    fn poll_write_from(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self {
            Link::Stream(io) => Pin::new(io).poll_write(cx, buf),
            Link::Ws(_) | Link::Udp(_) => Poll::Ready(Err(io::Error::other(
                "a message transport sends whole messages (poll_send_frame)",
            ))),
        }
    }

    fn poll_send_frame(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        len: usize,
    ) -> Poll<io::Result<()>> {
        match self {
            Link::Ws(ws) => ws.poll_send_frame(cx, buf, len),
            Link::Udp(udp) => {
                ready!(udp.poll_write_from(cx, &buf[..len]))?;
                buf.advance(len);
                Poll::Ready(Ok(()))
            }
            Link::Stream(_) => Poll::Ready(Err(io::Error::other(
                "a byte stream has no messages (poll_write_from)",
            ))),
        }
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Link::Stream(io) => Pin::new(io).poll_flush(cx),
            Link::Ws(ws) => ws.poll_flush(cx),
            Link::Udp(_) => Poll::Ready(Ok(())),
        }
    }

    fn poll_close(
        &mut self,
        cx: &mut Context<'_>,
        error: Option<&'static str>,
    ) -> Poll<io::Result<()>> {
        match self {
            Link::Stream(io) => Pin::new(io).poll_shutdown(cx),
            Link::Ws(ws) => ws.poll_close(cx, error),
            Link::Udp(_) => Poll::Ready(Ok(())),
        }
    }

    fn tick(&mut self) {
        if let Link::Ws(ws) = self {
            ws.tick();
        }
    }

    fn take_activity(&mut self) -> bool {
        match self {
            Link::Ws(ws) => ws.take_activity(),
            Link::Stream(_) | Link::Udp(_) => false,
        }
    }

    fn buffered(&self) -> usize {
        match self {
            Link::Ws(ws) => ws.buffered(),
            Link::Stream(_) | Link::Udp(_) => 0,
        }
    }

    fn release_idle(&mut self) {
        // A byte stream and a UDP session hold no buffers of their own.
        if let Link::Ws(ws) = self {
            ws.release_idle();
        }
    }
}

/// Stack buffer an idle session reads into, so it holds no heap buffer
/// while it waits.
const SCRATCH: usize = 16 * 1024;
/// Heap read buffer size once data flows: large enough that one read takes
/// a whole batch (a short read costs a second syscall).
const READ_CHUNK: usize = 64 * 1024;
/// Room guaranteed before a read into the heap buffer.
const MIN_READ: usize = 8 * 1024;

impl Io {
    /// Reads what is available, at most `limit` bytes. With no read buffer
    /// allocated (an idle session) it reads into a stack buffer first and
    /// allocates only when data arrived, so waiting costs no heap memory.
    fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        limit: usize,
    ) -> Poll<io::Result<Option<usize>>> {
        let read = if buf.capacity() == 0 {
            let mut scratch = [MaybeUninit::<u8>::uninit(); SCRATCH];
            let room = SCRATCH.min(limit);
            let mut rb = ReadBuf::uninit(&mut scratch[..room]);
            match ready!(Pin::new(&mut *self).poll_read(cx, &mut rb)) {
                Ok(()) => {
                    let filled = rb.filled();
                    if !filled.is_empty() {
                        buf.reserve(READ_CHUNK.max(filled.len()));
                        buf.extend_from_slice(filled);
                    }
                    Ok(filled.len())
                }
                Err(e) => Err(e),
            }
        } else {
            if buf.is_empty() || buf.capacity() - buf.len() < MIN_READ {
                // On an empty buffer whose packets were all dropped, this
                // reclaims the whole allocation in place instead of reading
                // into its tail.
                buf.reserve(READ_CHUNK);
            }
            let mut limited = (&mut *buf).limit(limit);
            ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut *self),
                cx,
                &mut limited
            ))
        };
        match read {
            Ok(n) => Poll::Ready(Ok((n > 0).then_some(n))),
            // A TLS peer that closes its TCP socket without a close_notify:
            // rustls calls that an unexpected EOF. Its packets before it were
            // whole and are owed replies, so it ends the input like a FIN on
            // plain TCP (a packet cut short is still reported as such).
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && self.is_tls() => {
                tracing::debug!("TLS peer closed without close_notify");
                Poll::Ready(Ok(None))
            }
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn is_tls(&self) -> bool {
        matches!(self, Io::TlsServer(_) | Io::TlsClient(_))
    }

    /// Reads and throws away what is available (lingering close).
    fn poll_discard(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        let mut scratch = [MaybeUninit::<u8>::uninit(); 4096];
        let mut threw = false;
        // Bounded per call: a peer that floods must not hold the worker.
        for _ in 0..64 {
            let mut rb = ReadBuf::uninit(&mut scratch);
            match Pin::new(&mut *self).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) if !rb.filled().is_empty() => threw = true,
                // EOF, or a failure: nothing more will come.
                Poll::Ready(_) => return Poll::Ready(false),
                Poll::Pending if threw => return Poll::Ready(true),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(true)
    }
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
