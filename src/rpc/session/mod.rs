//! [`Session`]: one RPC connection as its user sees it (teleport's
//! `Session`): call, push, close.

mod call;
mod call_future;
mod conn;
mod handshake;
mod pending;
mod sweep;

use std::{
    fmt,
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc, Mutex,
    },
    task::{Context, Poll, Waker},
    time::Duration,
};

pub(crate) use self::call::ACCEPT_BODY_CODEC;
pub use self::call::{CallBuilder, PushBuilder};
pub use self::call_future::CallFuture;
pub(crate) use self::conn::Conn;
use self::handshake::{handshaken, HandshakeState};
use crate::{
    rpc::{
        codec::{FromBody, IntoBody},
        Message, ServiceMethod, Status,
    },
    Addr, Client, SendPermit,
};

/// One RPC connection: call the peer on the other end and push to it
/// (teleport's `Session`). Cheap to clone.
///
/// A session a handler gets (through its context) is the connection the
/// message came on. A session [`Peer::dial`](super::Peer::dial) returns
/// redials when its connection drops (erpc's `RedialTimes`): it keeps its
/// identity, each call goes over the connection of the moment, and a call
/// made while none is up fails at once with status 102.
///
/// ```no_run
/// use getty::rpc::{Peer, Router, Status};
///
/// # async fn demo() -> Result<(), getty::BoxError> {
/// let peer = Peer::builder().build();
/// let session = peer.dial("127.0.0.1:9090").await?;
/// let reply: String = session.call("/home/echo", "hello").await?;
/// session.push("/push/note", "fire and forget").await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Session {
    link: Link,
}

#[derive(Clone)]
enum Link {
    /// One connection, for its whole life.
    Conn(Arc<Conn>),
    /// The connection of the moment of a dialed session that redials.
    Redial(Arc<Redial>),
}

/// A connection and a place held in its outbound queue.
pub(crate) type Reserved = (Arc<Conn>, SendPermit<Message>);

/// A dialed session's current connection, replaced on each redial.
pub(crate) struct Redial {
    pub(crate) current: Mutex<Option<Arc<Conn>>>,
    pub(crate) client: Mutex<Option<Client<Message>>>,
    pub(crate) target: String,
    /// Tasks waiting for the next connection (a `Channel`'s `poll_ready`).
    waiting: Mutex<Vec<Waker>>,
    /// The handshake of the connection opened last, kept after it closes so
    /// the dialer learns why it failed.
    handshake: Mutex<Option<tokio::sync::watch::Receiver<HandshakeState>>>,
    /// Connections in a row whose handshake failed (refused by the peer's
    /// auth): the core client counts them as connected, so the redial
    /// limit is kept here.
    refused: AtomicU32,
}

impl Redial {
    pub(crate) fn new(target: String) -> Redial {
        Redial {
            current: Mutex::new(None),
            client: Mutex::new(None),
            target,
            waiting: Mutex::new(Vec::new()),
            handshake: Mutex::new(None),
            refused: AtomicU32::new(0),
        }
    }

    pub(crate) fn current(&self) -> Option<Arc<Conn>> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn set_current(&self, conn: Option<Arc<Conn>>) {
        let connected = conn.is_some();
        if let Some(conn) = &conn {
            *self.handshake.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(conn.handshake.watch());
        }
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = conn;
        if connected {
            let waiting =
                std::mem::take(&mut *self.waiting.lock().unwrap_or_else(|p| p.into_inner()));
            waiting.into_iter().for_each(Waker::wake);
        }
    }

    /// Counts a connection that ended: one whose handshake failed adds to
    /// the refusals in a row, any other clears them. Returns the count.
    pub(crate) fn count_refusal(&self, refused: bool) -> u32 {
        if refused {
            self.refused.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            self.refused.store(0, Ordering::Relaxed);
            0
        }
    }

    /// Whether it has given up: closed, or out of redials.
    fn gave_up(&self) -> bool {
        self.client().is_some_and(|c| c.is_closed())
    }

    /// Wakes `cx` when the next connection is up.
    fn wait_for_connection(&self, cx: &mut Context<'_>) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        if !waiting.iter().any(|w| w.will_wake(cx.waker())) {
            waiting.push(cx.waker().clone());
        }
    }

    /// Waits, at most `limit`, until the handshake of the connection opened
    /// last is over (at once when no plugin talks first).
    ///
    /// # Errors
    /// The status the handshake failed with (an auth refusal's, say).
    pub(crate) async fn handshaken(&self, limit: Duration) -> Result<(), Status> {
        let rx = self
            .handshake
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match rx {
            Some(rx) => handshaken(rx, limit).await,
            None => Ok(()),
        }
    }

    /// Clears the current connection if it is still `conn`.
    pub(crate) fn clear_if(&self, conn: &Arc<Conn>) {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, conn)) {
            *current = None;
        }
    }

    pub(crate) fn client(&self) -> Option<Client<Message>> {
        self.client
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Session {
    pub(crate) fn from_conn(conn: Arc<Conn>) -> Session {
        Session {
            link: Link::Conn(conn),
        }
    }

    pub(crate) fn from_redial(redial: Arc<Redial>) -> Session {
        Session {
            link: Link::Redial(redial),
        }
    }

    /// The RPC session over a core session of a [`Peer`](super::Peer), for
    /// session layers (see [`PeerBuilder::session_layer`](super::PeerBuilder::session_layer))
    /// that call or push; `None` for a core session no peer runs, or once
    /// its stack is gone.
    ///
    /// ```
    /// use getty::{rpc::{Message, Session}, Event, Request};
    ///
    /// fn on_event(req: &Request<Message, Message>) {
    ///     if let (Event::Open, Some(rpc)) = (&req.event, Session::of(&req.session)) {
    ///         tracing::info!(peer = %rpc.peer_addr(), "rpc session opened");
    ///     }
    /// }
    /// # let _ = on_event;
    /// ```
    pub fn of(session: &crate::Session<Message>) -> Option<Session> {
        Conn::of(session).map(Session::from_conn)
    }

    /// The connection of the moment, or why there is none.
    pub(crate) fn conn(&self) -> Result<Arc<Conn>, Status> {
        match &self.link {
            Link::Conn(conn) => Ok(Arc::clone(conn)),
            Link::Redial(redial) => redial.current().ok_or_else(|| {
                Status::framework_with(
                    Status::CODE_CONN_CLOSED,
                    format!("not connected to {} (redialing)", redial.target),
                )
            }),
        }
    }

    /// The connection of the moment with room for one message in its
    /// queue: `Pending` while a redialing session has no connection up (or
    /// its connection is closing), woken when the next one is up; an error
    /// once there will be none.
    pub(crate) fn poll_reserve(&self, cx: &mut Context<'_>) -> Poll<Result<Reserved, Status>> {
        let redial = match &self.link {
            Link::Conn(conn) => {
                return match conn.session.poll_reserve(cx) {
                    Poll::Ready(Ok(permit)) => Poll::Ready(Ok((Arc::clone(conn), permit))),
                    Poll::Ready(Err(_)) => Poll::Ready(Err(conn.closed())),
                    Poll::Pending => Poll::Pending,
                }
            }
            Link::Redial(redial) => redial,
        };
        if let Some(conn) = redial.current() {
            match conn.session.poll_reserve(cx) {
                Poll::Ready(Ok(permit)) => return Poll::Ready(Ok((conn, permit))),
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(_)) => {}
            }
        }
        if redial.gave_up() {
            return Poll::Ready(Err(Status::framework_with(
                Status::CODE_CONN_CLOSED,
                format!("gave up redialing {}", redial.target),
            )));
        }
        redial.wait_for_connection(cx);
        // The connection may have come up between the look and the wait.
        match redial.current() {
            Some(conn) if !conn.session.is_closed() => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            _ => Poll::Pending,
        }
    }

    /// The core session under the connection of the moment: its
    /// attributes (teleport's `Swap`), settings and stats.
    pub fn inner(&self) -> Option<crate::Session<Message>> {
        self.conn().ok().map(|c| c.session.clone())
    }

    /// The id of the connection of the moment (0 when there is none).
    pub fn id(&self) -> u64 {
        self.conn().map(|c| c.session.id()).unwrap_or(0)
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> Addr {
        self.conn()
            .map(|c| c.session.peer_addr().clone())
            .unwrap_or(Addr::Unknown)
    }

    /// This side's address.
    pub fn local_addr(&self) -> Addr {
        self.conn()
            .map(|c| c.session.local_addr().clone())
            .unwrap_or(Addr::Unknown)
    }

    /// Whether a connection is up and open (teleport's `Health`).
    pub fn is_healthy(&self) -> bool {
        self.conn().is_ok_and(|c| !c.session.is_closed())
    }

    /// Calls `service_method` with `arg`; await the returned [`CallBuilder`] for
    /// the typed reply, after setting per-call options on it.
    /// The reply type `R` is inferred from how the reply is used (any
    /// serde type, [`Raw`](crate::rpc::codec::Raw),
    /// [`Proto`](crate::rpc::codec::Proto)).
    pub fn call<A: IntoBody, R: FromBody>(
        &self,
        service_method: impl Into<ServiceMethod>,
        arg: A,
    ) -> CallBuilder<A, R> {
        CallBuilder::new(self.clone(), service_method.into(), arg)
    }

    /// Pushes `arg` to `service_method`: one way, no reply. Await the
    /// returned [`PushBuilder`]; it resolves once the message is queued.
    pub fn push<A: IntoBody>(
        &self,
        service_method: impl Into<ServiceMethod>,
        arg: A,
    ) -> PushBuilder<A> {
        PushBuilder::new(self.clone(), service_method.into(), arg)
    }

    /// Sends a call message as it is (its seq is assigned here) and waits
    /// for the reply message, whatever its status, at most `timeout`.
    ///
    /// # Errors
    /// A local status: 102 when the connection is gone or goes, 408 on
    /// timeout.
    pub async fn call_message(
        &self,
        msg: Message,
        timeout: Option<Duration>,
    ) -> Result<Message, Status> {
        self.conn()?.call(msg, timeout).await
    }

    /// Queues a message as it is (its seq is assigned here).
    ///
    /// # Errors
    /// 102 when the connection is gone.
    pub async fn push_message(&self, msg: Message) -> Result<(), Status> {
        self.conn()?.push(msg).await
    }

    /// Calls waiting for a reply on the connection of the moment.
    pub fn pending_calls(&self) -> usize {
        self.conn().map(|c| c.pending.len()).unwrap_or(0)
    }

    /// Replies that arrived after their caller gave up (or for no call):
    /// dropped, never fatal to the session.
    pub fn late_replies(&self) -> u64 {
        self.conn().map(|c| c.pending.late()).unwrap_or(0)
    }

    /// Closes the session gracefully: replies to calls already read still
    /// go out, within the session's wait time. A dialed session stops
    /// redialing.
    pub fn close(&self) {
        match &self.link {
            Link::Conn(conn) => conn.session.close(),
            Link::Redial(redial) => {
                if let Some(client) = redial.client() {
                    client.close();
                }
                if let Some(conn) = redial.current() {
                    conn.session.close();
                }
            }
        }
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.link {
            Link::Conn(conn) => f.debug_tuple("Session").field(&conn.session).finish(),
            Link::Redial(redial) => f
                .debug_struct("Session")
                .field("target", &redial.target)
                .field("current", &redial.current().map(|c| c.session.id()))
                .finish(),
        }
    }
}
