//! UDP as a message transport: one datagram is one packet, and input the
//! codec refuses is dropped (reported), not fatal, as datagrams are
//! independent.

use std::{
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{ready, Context, Poll},
};

use bytes::{Bytes, BytesMut};
use tokio::{net::UdpSocket, sync::mpsc};

use crate::codec::LengthCodecError;

/// The largest UDP payload.
const MAX_DATAGRAM: usize = 65_536;
/// The largest payload a UDP datagram can carry over IPv4.
const MAX_SEND: usize = 65_507;

pub(crate) enum UdpIo {
    /// One peer of a UDP server: the endpoint hands over its datagrams;
    /// replies go back to it through the shared socket.
    Peer {
        datagrams: mpsc::Receiver<Bytes>,
        socket: Arc<UdpSocket>,
        peer: SocketAddr,
        max: usize,
        /// Waiting for room to send. The socket is shared by every peer's
        /// session, and its `poll_send_*` remembers only the last waker;
        /// `writable()` futures each keep their own.
        writable: Option<Pin<Box<dyn Future<Output = io::Result<()>> + Send>>>,
    },
    /// A connected client socket.
    Connected { socket: UdpSocket, max: usize },
}

fn too_large(len: usize, max: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        LengthCodecError::TooLarge {
            len: len as u64,
            max,
        },
    )
}

impl UdpIo {
    pub(super) fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
    ) -> Poll<io::Result<Option<usize>>> {
        match self {
            UdpIo::Peer { datagrams, max, .. } => loop {
                let Some(datagram) = ready!(datagrams.poll_recv(cx)) else {
                    return Poll::Ready(Ok(None));
                };
                if datagram.is_empty() {
                    continue;
                }
                if datagram.len() > max.saturating_add(super::HEADER_SLACK) {
                    return Poll::Ready(Err(too_large(datagram.len(), *max)));
                }
                buf.extend_from_slice(&datagram);
                return Poll::Ready(Ok(Some(datagram.len())));
            },
            UdpIo::Connected { socket, max } => loop {
                ready!(socket.poll_recv_ready(cx))?;
                buf.reserve(MAX_DATAGRAM);
                let before = buf.len();
                match socket.try_recv_buf(buf) {
                    Ok(0) => continue,
                    Ok(n) if n > max.saturating_add(super::HEADER_SLACK) => {
                        buf.truncate(before);
                        return Poll::Ready(Err(too_large(n, *max)));
                    }
                    Ok(n) => return Poll::Ready(Ok(Some(n))),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Poll::Ready(Err(e)),
                }
            },
        }
    }

    /// Sends `buf` as one datagram. One too large for UDP is dropped (and
    /// logged), not fatal: the session carries on, as for input.
    pub(super) fn poll_write_from(
        &mut self,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.len() > MAX_SEND {
            tracing::warn!(
                len = buf.len(),
                max = MAX_SEND,
                "reply too large for a datagram; dropped"
            );
            return Poll::Ready(Ok(buf.len()));
        }
        match self {
            UdpIo::Peer {
                socket,
                peer,
                writable,
                ..
            } => loop {
                if let Some(wait) = writable {
                    ready!(wait.as_mut().poll(cx))?;
                    *writable = None;
                }
                match socket.try_send_to(buf, *peer) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        let socket = Arc::clone(socket);
                        *writable = Some(Box::pin(async move { socket.writable().await }));
                    }
                    sent => return Poll::Ready(sent),
                }
            },
            UdpIo::Connected { socket, .. } => socket.poll_send(cx, buf),
        }
    }
}

/// A UDP server's virtual session for `peer`, and the sender the endpoint
/// hands its datagrams to.
pub(crate) fn peer_session(
    socket: Arc<UdpSocket>,
    peer: SocketAddr,
    max: usize,
) -> (UdpIo, mpsc::Sender<Bytes>) {
    // A session that falls this far behind loses datagrams, as UDP may;
    // few slots keep what a stalled session holds small.
    let (tx, rx) = mpsc::channel(8);
    let io = UdpIo::Peer {
        datagrams: rx,
        socket,
        peer,
        max,
        writable: None,
    };
    (io, tx)
}
