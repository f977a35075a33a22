//! Closing the connection: the transport's goodbye, then a lingering close.

use std::future::poll_fn;

use bytes::BytesMut;
use tokio::time::Instant;
use tokio_util::codec::{Decoder, Encoder};

use super::conn::Conn;
use crate::{transport::Transport, BoxError};

impl<T, C, R, W> Conn<T, C, R, W>
where
    T: Transport,
    C: Decoder<Item = R> + Encoder<W, Error = <C as Decoder>::Error>,
    <C as Decoder>::Error: Into<BoxError>,
{
    /// Closes the sending side: a FIN, a TLS close_notify, a WebSocket
    /// close frame naming how the session ended. Bounded by the session's
    /// wait time. Returns whether the peer may still be sending (its side
    /// is open), for [`linger`](Self::linger).
    pub(super) async fn shutdown(&mut self) -> bool {
        if self.broken {
            return false;
        }
        let wait = self.session.wait_time();
        let reason = self.close_reason;
        let io = &mut self.io;
        let closed = tokio::time::timeout(wait, poll_fn(|cx| io.poll_close(cx, reason))).await;
        matches!(closed, Ok(Ok(()))) && !self.eof
    }

    /// The lingering close (hyper's and nginx's): reads and throws away
    /// what the peer still sends until it closes too, for at most the
    /// session's wait time. Closing a socket with unread input makes the
    /// kernel send a reset, and the peer's kernel then throws away the
    /// replies it received but its application has not read yet.
    pub(super) async fn linger(mut self) {
        // What it held of the input is not the session's any more.
        self.rbuf = BytesMut::new();
        self.settle_budget();
        let deadline = Instant::now() + self.session.wait_time();
        let io = &mut self.io;
        if tokio::time::timeout_at(deadline, poll_fn(|cx| io.poll_discard(cx)))
            .await
            .is_err()
        {
            tracing::debug!("peer kept its side open past the wait time after ours closed");
        }
    }
}
