//! [`Conn`]: one connection's RPC state, the seq counter and the calls
//! waiting for replies.

use std::{
    fmt,
    sync::{
        atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering},
        Arc, Weak,
    },
    time::Duration,
};

use super::{
    handshake::Handshake,
    pending::{Deadline, Pending, Reply},
};
use crate::rpc::{
    peer::PeerShared, plugin::heartbeat::SERVICE_METHOD as HEARTBEAT, Message, MessageType, Status,
    XferPipe,
};
use crate::{SendError, SendPermit};

/// One connection of a peer: the core's session of messages, the counter
/// its originated messages take their seq from, and the calls waiting for
/// a reply on it.
pub(crate) struct Conn {
    pub(crate) session: crate::Session<Message>,
    /// Pre-incremented: the first message this side originates has seq 1.
    seq: AtomicI32,
    pub(crate) pending: Pending,
    pub(crate) peer: Arc<PeerShared>,
    /// Whether a plugin that talks first (auth) has finished.
    pub(crate) handshake: Handshake,
    /// How many CALLs and PUSHes other than heartbeats went either way:
    /// what erpc's heartbeat plugins call traffic. A count, not a time:
    /// the plugins look at it once per tick, and reading the clock per
    /// message cost more than the rest of noting it.
    traffic: AtomicU64,
    /// Whether a heartbeat plugin looks at `traffic`: without one, a
    /// message is not counted (a load per message instead of an atomic
    /// add, which also orders every memory access around it).
    traffic_watched: AtomicBool,
}

/// How a session layer finds the connection under a core session: a weak
/// reference, so the session's attributes do not keep it alive in a cycle.
#[derive(Clone)]
struct ConnRef(Weak<Conn>);

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("session", &self.session)
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl Conn {
    pub(crate) fn new(session: crate::Session<Message>, peer: Arc<PeerShared>) -> Conn {
        Conn {
            session,
            seq: AtomicI32::new(0),
            pending: Pending::default(),
            peer,
            handshake: Handshake::default(),
            traffic: AtomicU64::new(0),
            traffic_watched: AtomicBool::new(false),
        }
    }

    /// Makes the connection findable from its core session (see
    /// [`Conn::of`]).
    pub(crate) fn attach(self: &Arc<Self>) {
        self.session.set_attribute(ConnRef(Arc::downgrade(self)));
    }

    /// The connection under a core session of a peer, while it lives:
    /// what the session layers of plugins use to reach the seq counter and
    /// the waiting calls.
    pub(crate) fn of(session: &crate::Session<Message>) -> Option<Arc<Conn>> {
        session.attribute::<ConnRef>()?.0.upgrade()
    }

    /// Notes a CALL or PUSH going either way (heartbeats are not traffic:
    /// they are what is sent for want of it).
    pub(crate) fn note_traffic(&self, msg: &Message) {
        if self.traffic_watched.load(Ordering::Relaxed) && msg.service_method != HEARTBEAT {
            self.traffic.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// How many CALLs and PUSHes other than heartbeats have gone either
    /// way since the first look: it changed between two looks if there was
    /// traffic between them. The first look starts the counting.
    pub(crate) fn traffic_count(&self) -> u64 {
        self.traffic_watched.store(true, Ordering::Relaxed);
        self.traffic.load(Ordering::Relaxed)
    }

    /// The next seq of a message this side originates; wraps through the
    /// negative numbers after `i32::MAX`, as erpc's int32 counter does.
    pub(crate) fn next_seq(&self) -> i32 {
        self.seq.fetch_add(1, Ordering::Relaxed).wrapping_add(1)
    }

    pub(crate) fn closed(&self) -> Status {
        Status::framework_with(Status::CODE_CONN_CLOSED, "session closed")
    }

    /// Sends a call and waits for its reply (whatever its status), at most
    /// `timeout` from now, waiting for room in the outbound queue included.
    pub(crate) async fn call(
        &self,
        msg: Message,
        timeout: Option<Duration>,
    ) -> Result<Message, Status> {
        let deadline = timeout.map(Deadline::after);
        let permit = match self.session.try_reserve() {
            Ok(permit) => permit,
            // No timer unless there is a wait for room: the common case
            // has room, and the reply's wait is timed by the sweeper.
            Err(SendError::Blocked) => match deadline {
                Some(deadline) => tokio::time::timeout_at(deadline.at, self.session.reserve())
                    .await
                    .map_err(|_| deadline.expired())?,
                None => self.session.reserve().await,
            }
            .map_err(|_| self.closed())?,
            Err(_) => return Err(self.closed()),
        };
        self.start(permit, msg, deadline)?.await
    }

    /// Sends a call through a permit already held and waits for its reply,
    /// at most `timeout`.
    pub(crate) async fn call_with(
        &self,
        permit: SendPermit<Message>,
        msg: Message,
        timeout: Option<Duration>,
    ) -> Result<Message, Status> {
        self.send_call(permit, msg, timeout)?.await
    }

    /// Sends a call through `permit` now, timed out `timeout` from now,
    /// and returns the wait for its reply (dropping it forgets the waiter).
    pub(crate) fn send_call(
        &self,
        permit: SendPermit<Message>,
        msg: Message,
        timeout: Option<Duration>,
    ) -> Result<Reply, Status> {
        self.start(permit, msg, timeout.map(Deadline::after))
    }

    /// Sends a call through `permit` and returns the wait for its reply.
    fn start(
        &self,
        permit: SendPermit<Message>,
        mut msg: Message,
        deadline: Option<Deadline>,
    ) -> Result<Reply, Status> {
        msg.seq = self.next_seq();
        self.check_writable(&msg)?;
        let reply = self.pending.register(msg.seq, deadline)?;
        self.note_traffic(&msg);
        permit.send(msg).map_err(|_| self.closed())?;
        Ok(reply)
    }

    /// Queues a one-way message with this side's next seq.
    pub(crate) async fn push(&self, mut msg: Message) -> Result<(), Status> {
        let permit = self.session.reserve().await.map_err(|_| self.closed())?;
        msg.seq = self.next_seq();
        self.check_writable(&msg)?;
        self.note_traffic(&msg);
        permit.send(msg).map_err(|_| self.closed())
    }

    /// 104 Write Failed for a message the session's encoder would refuse
    /// (its refusal would end the session and every call waiting on it).
    pub(crate) fn check_writable(&self, msg: &Message) -> Result<(), Status> {
        crate::rpc::proto::check_writable(msg, &self.peer.filters, self.session.max_packet_len())
            .map_err(|cause| Status::framework_with(Status::CODE_WRITE_FAILED, cause))
    }

    /// Leaves `reply` as it is if the session's encoder will write it, else
    /// puts a 500 in its place (erpc's answer to a reply it fails to
    /// write), with the call's filters: the encoder's refusal would end the
    /// session. In place, so that the common case moves no message.
    pub(crate) fn make_writable(&self, reply: &mut Message, call_pipe: XferPipe) {
        let Err(status) = self.check_writable(reply) else {
            return;
        };
        let cause = format!(
            "the reply cannot be written: {}",
            status.cause().unwrap_or_default()
        );
        tracing::warn!(seq = reply.seq, %cause, "answering 500 instead");
        *reply = Message::new(MessageType::Reply, reply.seq, "")
            .with_status(Status::framework_with(
                Status::CODE_INTERNAL_SERVER_ERROR,
                cause,
            ))
            .with_xfer_pipe(call_pipe);
    }

    /// Ends every waiting call (the connection closed).
    pub(crate) fn end(&self, why: Option<&crate::Error>) {
        let status = match why {
            Some(e) => Status::framework_with(Status::CODE_CONN_CLOSED, e.to_string()),
            None => self.closed(),
        };
        self.handshake.abandon(&status);
        self.pending.end(status);
    }
}
