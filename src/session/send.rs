//! The outbound side of a session: `send` and its siblings, reserved
//! places ([`SendPermit`]) and `flush`.

use std::{
    fmt,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::{queue::Outbound, Session};
use crate::SendError;

/// A place held in a session's outbound queue, from
/// [`Session::reserve`]: sending through it never waits. Dropped unused,
/// it gives the place back.
pub struct SendPermit<W = Bytes> {
    session: Option<Session<W>>,
}

impl<W> SendPermit<W> {
    fn new(session: Session<W>) -> Self {
        SendPermit {
            session: Some(session),
        }
    }

    /// Queues `pkg` in the held place.
    ///
    /// # Errors
    /// [`SendError::Closed`] when the session closed since the place was
    /// taken (the packet is dropped).
    pub fn send(mut self, pkg: W) -> Result<(), SendError> {
        self.push(Outbound::Packet(pkg))
    }

    /// Queues raw bytes, bypassing the encoder, in the held place.
    ///
    /// # Errors
    /// [`SendError::Closed`] when the session closed since the place was
    /// taken.
    pub fn send_bytes(mut self, bytes: Bytes) -> Result<(), SendError> {
        self.push(Outbound::Bytes(bytes))
    }

    fn push(&mut self, item: Outbound<W>) -> Result<(), SendError> {
        match self.session.take() {
            Some(session) => session.inner.queue.push_reserved(item),
            None => Err(SendError::Closed),
        }
    }
}

impl<W> Drop for SendPermit<W> {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            session.inner.queue.release(1);
        }
    }
}

impl<W> fmt::Debug for SendPermit<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendPermit")
            .field("session", &self.session.as_ref().map(Session::id))
            .finish()
    }
}

impl<W> Session<W> {
    /// Queues a packet for the encoder, waiting for room when the outbound
    /// queue is full (backpressure).
    ///
    /// `Ok` means the packet is on its way: it is written unless the
    /// connection dies first, and then the session's stack sees `Error` and
    /// `Close`. There are no retries inside (getty's rule).
    ///
    /// # Errors
    /// [`SendError::Closed`] once the session is closing or closed.
    pub async fn send(&self, pkg: W) -> Result<(), SendError> {
        self.inner.queue.send(Outbound::Packet(pkg)).await
    }

    /// Queues a packet only if there is room now.
    ///
    /// # Errors
    /// [`SendError::Blocked`] when the queue is full, [`SendError::Closed`]
    /// once the session is closing or closed.
    pub fn try_send(&self, pkg: W) -> Result<(), SendError> {
        self.inner.queue.try_send(Outbound::Packet(pkg))
    }

    /// Like [`send`](Session::send), giving up after `timeout`.
    ///
    /// # Errors
    /// [`SendError::Timeout`] when no room appeared in time,
    /// [`SendError::Closed`] once the session is closing or closed.
    pub async fn send_timeout(&self, pkg: W, timeout: Duration) -> Result<(), SendError> {
        tokio::time::timeout(timeout, self.send(pkg))
            .await
            .unwrap_or(Err(SendError::Timeout))
    }

    /// Queues raw bytes that bypass the encoder (getty's `WriteBytes`).
    ///
    /// # Errors
    /// [`SendError::Closed`] once the session is closing or closed.
    pub async fn send_bytes(&self, bytes: Bytes) -> Result<(), SendError> {
        self.inner.queue.send(Outbound::Bytes(bytes)).await
    }

    /// Queues several raw buffers, written back to back with nothing between
    /// them (getty's `WriteBytesArray`). They take one place in the queue.
    ///
    /// # Errors
    /// [`SendError::Closed`] once the session is closing or closed.
    pub async fn send_bytes_vectored(&self, bufs: Vec<Bytes>) -> Result<(), SendError> {
        self.inner.queue.send(Outbound::Vectored(bufs)).await
    }

    /// Waits for room in the outbound queue and holds it: the returned
    /// permit sends one packet without waiting (tokio's
    /// `mpsc::Sender::reserve`). A client-side service reserves in
    /// `poll_ready` (see [`poll_reserve`](Session::poll_reserve)) so that
    /// `call` never waits.
    ///
    /// ```
    /// # use getty::{Addr, EndpointKind, Session, SessionConfig};
    /// # async fn demo() -> Result<(), getty::SendError> {
    /// # let session: Session = Session::new(EndpointKind::Detached, Addr::Unknown, Addr::Unknown, SessionConfig::default());
    /// let permit = session.reserve().await?;
    /// permit.send(bytes::Bytes::from_static(b"ping"))?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`SendError::Closed`] once the session is closing or closed.
    pub async fn reserve(&self) -> Result<SendPermit<W>, SendError> {
        self.inner.queue.reserve().await?;
        Ok(SendPermit::new(self.clone()))
    }

    /// Like [`reserve`](Session::reserve), only if there is room now.
    ///
    /// # Errors
    /// [`SendError::Blocked`] when the queue is full, [`SendError::Closed`]
    /// once the session is closing or closed.
    pub fn try_reserve(&self) -> Result<SendPermit<W>, SendError> {
        self.inner.queue.try_reserve()?;
        Ok(SendPermit::new(self.clone()))
    }

    /// The poll form of [`reserve`](Session::reserve), for a
    /// `tower::Service::poll_ready` (tokio-util's `PollSender`): `Ready`
    /// with a permit when there is room, `Pending` with the task woken
    /// when room comes back or the session closes.
    ///
    /// ```
    /// use std::task::{Context, Poll};
    /// # use getty::{Addr, EndpointKind, Session, SessionConfig};
    /// # let session: Session = Session::new(EndpointKind::Detached, Addr::Unknown, Addr::Unknown, SessionConfig::default());
    /// let mut cx = Context::from_waker(std::task::Waker::noop());
    /// match session.poll_reserve(&mut cx) {
    ///     Poll::Ready(Ok(permit)) => drop(permit), // room given back unused
    ///     Poll::Ready(Err(closed)) => println!("{closed}"),
    ///     Poll::Pending => println!("full: woken when room comes back"),
    /// }
    /// ```
    ///
    /// # Errors
    /// [`SendError::Closed`] once the session is closing or closed.
    pub fn poll_reserve(&self, cx: &mut Context<'_>) -> Poll<Result<SendPermit<W>, SendError>> {
        self.inner
            .queue
            .poll_reserve(cx)
            .map_ok(|()| SendPermit::new(self.clone()))
    }

    /// Resolves once everything queued before this call has been written to
    /// the socket and flushed.
    ///
    /// # Errors
    /// [`SendError::Closed`] when the session closed before that happened.
    pub async fn flush(&self) -> Result<(), SendError> {
        let (tx, rx) = oneshot::channel();
        self.inner.queue.send(Outbound::Flush(tx)).await?;
        rx.await.map_err(|_| SendError::Closed)
    }
}
