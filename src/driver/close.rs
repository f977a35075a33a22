//! Closing the connection: the transport's goodbye, then a lingering close.

use std::{future::poll_fn, time::Duration};

use bytes::BytesMut;
use tokio::time::Instant;
use tokio_util::codec::{Decoder, Encoder};

use super::conn::{Conn, ReadSide, WriteSide};

/// A lingering close ends once the peer has sent nothing for this long: a
/// quiet socket has nothing unread to turn the close into a reset.
const LINGER_QUIET: Duration = Duration::from_millis(500);
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
        if self.write == WriteSide::Broken {
            return false;
        }
        let wait = self.session.wait_time();
        let reason = self.close_reason;
        let io = &mut self.io;
        let closed = tokio::time::timeout(wait, poll_fn(|cx| io.poll_close(cx, reason))).await;
        matches!(closed, Ok(Ok(()))) && self.read != ReadSide::Ended
    }

    /// Gives back the input the session held (its charge on the budget).
    pub(super) fn release_input(&mut self) {
        self.rbuf = BytesMut::new();
        self.settle_budget();
    }

    /// The lingering close (nginx's and hyper's): reads and throws away
    /// what the peer still sends until it closes too, or has been quiet for
    /// [`LINGER_QUIET`], for at most the session's wait time. Closing a
    /// socket with unread input makes the kernel send a reset, and the
    /// peer's kernel then throws away the replies it received but its
    /// application has not read yet.
    pub(super) async fn linger(&mut self) {
        let deadline = Instant::now() + self.session.wait_time();
        loop {
            let quiet = (Instant::now() + LINGER_QUIET).min(deadline);
            let io = &mut self.io;
            match tokio::time::timeout_at(quiet, poll_fn(|cx| io.poll_discard(cx))).await {
                Ok(true) if Instant::now() < deadline => continue,
                Ok(true) => {
                    tracing::debug!("peer still sending at the end of the wait time");
                    return;
                }
                // The peer closed, or was quiet: nothing unread is left.
                Ok(false) | Err(_) => return,
            }
        }
    }
}
