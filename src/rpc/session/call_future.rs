//! [`CallFuture`]: a call on its way, waiting for its reply.

use std::{
    fmt,
    future::Future,
    marker::PhantomData,
    pin::Pin,
    sync::Arc,
    task::{ready, Context, Poll},
};

use super::{pending::Reply, Conn};
use crate::rpc::{codec::FromBody, Message, Status};

/// The boxed wait of a call that found its session's queue full: for
/// room, then for its reply (the rare path, so it may allocate).
type Blocked = Pin<Box<dyn Future<Output = Result<Message, Status>> + Send>>;

/// The future of a call: a [`CallBuilder`](super::CallBuilder) awaited. It
/// resolves to the reply's body decoded as `R`, or to the status the call
/// failed with.
///
/// The call was sent when this future was made (if its session's queue had
/// room), so it only waits for the reply: it holds the connection and the
/// reply's place in the session's table of waiting calls, no message and
/// no allocation of its own. Dropping it forgets the call; a reply that
/// comes later is dropped and counted.
///
/// ```no_run
/// use std::future::IntoFuture;
/// use getty::rpc::{CallFuture, Session, Status};
///
/// # async fn demo(session: Session) -> Result<(), Status> {
/// let call: CallFuture<String> = session.call("/home/echo", "hi").into_future();
/// assert_eq!(call.await?, "hi");
/// # Ok(()) }
/// ```
#[must_use = "a call's reply is lost unless its future is awaited"]
pub struct CallFuture<R> {
    /// The call's connection (its codecs decode the reply); `None` for a
    /// call that failed before it was sent.
    conn: Option<Arc<Conn>>,
    wait: Wait,
    reply: PhantomData<fn() -> R>,
}

enum Wait {
    /// It failed before it was sent.
    Failed(Status),
    /// Sent; its reply is awaited.
    Sent(Reply),
    /// The queue was full when it was made.
    Blocked(Blocked),
    /// Its outcome was taken.
    Done,
}

impl<R> CallFuture<R> {
    pub(super) fn failed(status: Status) -> Self {
        CallFuture::of(None, Wait::Failed(status))
    }

    pub(super) fn sent(conn: Arc<Conn>, reply: Reply) -> Self {
        CallFuture::of(Some(conn), Wait::Sent(reply))
    }

    pub(super) fn blocked(conn: Arc<Conn>, wait: Blocked) -> Self {
        CallFuture::of(Some(conn), Wait::Blocked(wait))
    }

    fn of(conn: Option<Arc<Conn>>, wait: Wait) -> Self {
        CallFuture {
            conn,
            wait,
            reply: PhantomData,
        }
    }
}

impl<R> fmt::Debug for CallFuture<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.wait {
            Wait::Failed(_) => "CallFuture::Failed",
            Wait::Sent(_) => "CallFuture::Sent",
            Wait::Blocked(_) => "CallFuture::Blocked",
            Wait::Done => "CallFuture::Done",
        })
    }
}

impl<R: FromBody> Future for CallFuture<R> {
    type Output = Result<R, Status>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Every field is `Unpin` (the blocked wait is boxed).
        let this = self.get_mut();
        let outcome = match &mut this.wait {
            Wait::Sent(reply) => ready!(Pin::new(reply).poll(cx)),
            Wait::Blocked(wait) => ready!(wait.as_mut().poll(cx)),
            Wait::Failed(status) => {
                let status = std::mem::replace(status, Status::OK);
                this.wait = Wait::Done;
                return Poll::Ready(Err(status));
            }
            Wait::Done => panic!("`CallFuture` polled after it completed"),
        };
        this.wait = Wait::Done;
        let reply = outcome?;
        if !reply.status.is_ok() {
            return Poll::Ready(Err(reply.status));
        }
        Poll::Ready(match this.conn.take() {
            Some(conn) => R::from_body(reply.body_codec, reply.body, &conn.peer.codecs),
            // Only a call that failed before it was sent has none, and it
            // returned above.
            None => Err(Status::framework(Status::CODE_CONN_CLOSED)),
        })
    }
}
