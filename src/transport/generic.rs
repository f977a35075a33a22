//! Transports over what a user brings: any byte stream, or any stream and
//! sink of whole messages (`serve_connection`, `serve_messages`).

use std::{
    io,
    mem::MaybeUninit,
    pin::Pin,
    task::{ready, Context, Poll},
};

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::Transport;

/// Stack buffer an idle session reads into, so it holds no heap buffer
/// while it waits.
const SCRATCH: usize = 16 * 1024;
/// Heap read buffer size once data flows: large enough that one read takes
/// a whole batch (a short read costs a second syscall).
const READ_CHUNK: usize = 64 * 1024;
/// Room guaranteed before a read into the heap buffer.
const MIN_READ: usize = 8 * 1024;

/// A byte stream: TCP, Unix and TLS ([`Io`](super::Io)), or one of the
/// user's (an accepted socket, a QUIC stream, a `tokio::io::duplex` end, a
/// proxied stream).
pub(crate) struct StreamIo<T>(pub(crate) T);

impl<T: AsyncRead + AsyncWrite + Unpin> Transport for StreamIo<T> {
    const FRAMED: bool = false;

    fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        limit: usize,
    ) -> Poll<io::Result<Option<usize>>> {
        poll_read_stream(&mut self.0, cx, buf, limit)
    }

    fn poll_write_from(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_close(
        &mut self,
        cx: &mut Context<'_>,
        _: Option<&'static str>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    /// Reads and throws away what is available (lingering close).
    fn poll_discard(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        let mut scratch = [MaybeUninit::<u8>::uninit(); 4096];
        let mut threw = false;
        // Bounded per call: a peer that floods must not hold the worker.
        for _ in 0..64 {
            let mut rb = ReadBuf::uninit(&mut scratch);
            match Pin::new(&mut self.0).poll_read(cx, &mut rb) {
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

/// Reads what is available, at most `limit` bytes. With no read buffer
/// allocated (an idle session) it reads into a stack buffer first and
/// allocates only when data arrived, so waiting costs no heap memory.
pub(crate) fn poll_read_stream<T: AsyncRead + Unpin>(
    io: &mut T,
    cx: &mut Context<'_>,
    buf: &mut BytesMut,
    limit: usize,
) -> Poll<io::Result<Option<usize>>> {
    let read = if buf.capacity() == 0 {
        let mut scratch = [MaybeUninit::<u8>::uninit(); SCRATCH];
        let mut rb = ReadBuf::uninit(&mut scratch[..SCRATCH.min(limit)]);
        match ready!(Pin::new(&mut *io).poll_read(cx, &mut rb)) {
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
        if buf.is_empty() && buf.capacity() < READ_CHUNK {
            // An empty buffer whose packets were all dropped takes back its
            // whole allocation in place, rather than reading into its tail.
            // Only then: while a packet read earlier is still held (a reply
            // on its way to its caller's task), `reserve` would allocate a
            // fresh buffer on every read, and the old one would be freed
            // when that packet goes; the tail is read into instead.
            let _ = buf.try_reclaim(READ_CHUNK);
        }
        if buf.capacity() - buf.len() < MIN_READ {
            buf.reserve(READ_CHUNK);
        }
        let mut limited = (&mut *buf).limit(limit);
        ready!(tokio_util::io::poll_read_buf(
            Pin::new(&mut *io),
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
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            tracing::debug!("the peer ended its input without a close_notify");
            Poll::Ready(Ok(None))
        }
        Err(e) => Poll::Ready(Err(e)),
    }
}

/// Whole messages from a stream and to a sink of the user's: each message
/// is one packet, as on WebSocket.
pub(crate) struct MessageIo<S>(pub(crate) S);

impl<S, E> Transport for MessageIo<S>
where
    S: Stream<Item = Result<Bytes, E>> + Sink<Bytes, Error = E> + Unpin,
    E: Into<crate::BoxError>,
{
    const FRAMED: bool = true;

    fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        _limit: usize,
    ) -> Poll<io::Result<Option<usize>>> {
        loop {
            return match ready!(Pin::new(&mut self.0).poll_next(cx)) {
                None => Poll::Ready(Ok(None)),
                Some(Err(e)) => Poll::Ready(Err(to_io(e))),
                // No packet in it; nothing to decode.
                Some(Ok(message)) if message.is_empty() => continue,
                Some(Ok(message)) => {
                    let n = message.len();
                    if buf.is_empty() {
                        // Taken as it is when nothing else is buffered.
                        *buf = BytesMut::from(message);
                    } else {
                        buf.extend_from_slice(&message);
                    }
                    Poll::Ready(Ok(Some(n)))
                }
            };
        }
    }

    fn poll_send_frame(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        len: usize,
    ) -> Poll<io::Result<()>> {
        ready!(Pin::new(&mut self.0).poll_ready(cx)).map_err(to_io)?;
        let message = buf.split_to(len).freeze();
        Pin::new(&mut self.0).start_send(message).map_err(to_io)?;
        Poll::Ready(Ok(()))
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx).map_err(to_io)
    }

    fn poll_close(
        &mut self,
        cx: &mut Context<'_>,
        _: Option<&'static str>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_close(cx).map_err(to_io)
    }
}

fn to_io<E: Into<crate::BoxError>>(e: E) -> io::Error {
    match e.into().downcast::<io::Error>() {
        Ok(io) => *io,
        Err(other) => io::Error::other(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Buf;

    #[test]
    fn the_read_limit_bounds_what_one_read_takes() {
        let (mut a, b) = tokio::io::duplex(1 << 16);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async move {
            use tokio::io::AsyncWriteExt;
            a.write_all(&[1u8; 10_000]).await.unwrap();
            let mut io = StreamIo(b);
            let mut buf = BytesMut::new();
            let n = std::future::poll_fn(|cx| io.poll_read_into(cx, &mut buf, 3_000))
                .await
                .unwrap();
            assert_eq!(n, Some(3_000));
            let n = std::future::poll_fn(|cx| io.poll_read_into(cx, &mut buf, 5_000))
                .await
                .unwrap();
            assert_eq!(n, Some(5_000));
            assert_eq!(buf.len(), 8_000);
            buf.advance(8_000);
        });
    }
}
