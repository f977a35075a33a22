//! The [`Session`] handle: one per connection.

mod attributes;
mod callbacks;
mod config;
mod lifecycle;
pub(crate) mod queue;
mod send;
mod stats;

use std::{
    borrow::Cow,
    fmt,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex, MutexGuard, OnceLock,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use tokio::sync::Notify;

pub use self::config::SessionConfig;
pub(crate) use self::lifecycle::Stages;
pub use self::send::SendPermit;
pub(crate) use self::stats::Counters;
pub use self::stats::SessionStats;
use self::{attributes::Attributes, callbacks::CloseCallbacks, queue::Queue};
use crate::{Addr, Error};

/// What kind of endpoint a session belongs to (getty's `EndPointType`).
///
/// ```
/// assert_eq!(getty::EndpointKind::TcpServer.to_string(), "tcp-server");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EndpointKind {
    /// A session accepted by a TCP server.
    TcpServer,
    /// A session opened by a TCP client.
    TcpClient,
    /// A session accepted by a TLS server.
    TlsServer,
    /// A session opened by a TLS client.
    TlsClient,
    /// A session accepted on a Unix domain socket.
    UnixServer,
    /// A session opened by a Unix domain socket client.
    UnixClient,
    /// A session accepted by a WebSocket server.
    WsServer,
    /// A session opened by a WebSocket client.
    WsClient,
    /// A session accepted by a WebSocket server over TLS.
    WssServer,
    /// A session opened by a WebSocket client over TLS.
    WssClient,
    /// A UDP server's virtual session for one peer.
    UdpServer,
    /// A session of a connected UDP client.
    UdpClient,
    /// A session made by hand with [`Session::new`], attached to no socket.
    Detached,
    /// A session over a byte stream given to
    /// [`serve_connection`](crate::serve_connection).
    Stream,
    /// A session over a stream and sink of whole messages given to
    /// [`serve_messages`](crate::serve_messages).
    Messages,
}

impl EndpointKind {
    fn as_str(self) -> &'static str {
        match self {
            EndpointKind::TcpServer => "tcp-server",
            EndpointKind::TcpClient => "tcp-client",
            EndpointKind::TlsServer => "tls-server",
            EndpointKind::TlsClient => "tls-client",
            EndpointKind::UnixServer => "unix-server",
            EndpointKind::UnixClient => "unix-client",
            EndpointKind::WsServer => "ws-server",
            EndpointKind::WsClient => "ws-client",
            EndpointKind::WssServer => "wss-server",
            EndpointKind::WssClient => "wss-client",
            EndpointKind::UdpServer => "udp-server",
            EndpointKind::UdpClient => "udp-client",
            EndpointKind::Detached => "detached",
            EndpointKind::Stream => "stream",
            EndpointKind::Messages => "messages",
        }
    }
}

impl fmt::Display for EndpointKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `u64::MAX` nanoseconds stands for "no duration".
const NONE: u64 = u64::MAX;

fn to_nanos(d: Option<Duration>) -> u64 {
    d.map_or(NONE, |d| u64::try_from(d.as_nanos()).unwrap_or(NONE - 1))
}

fn from_nanos(n: u64) -> Option<Duration> {
    (n != NONE).then(|| Duration::from_nanos(n))
}

/// The start of the process-wide clock that last-active times count from.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_nanos() -> u64 {
    u64::try_from(epoch().elapsed().as_nanos()).unwrap_or(u64::MAX)
}

fn clamp_period(d: Duration) -> Duration {
    d.max(Duration::from_millis(1))
}

fn nanos_at(at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(epoch()).as_nanos()).unwrap_or(u64::MAX)
}

struct Settings {
    max_packet_len: AtomicUsize,
    read_timeout: AtomicU64,
    write_timeout: AtomicU64,
    cron_period: AtomicU64,
    wait_time: AtomicU64,
    max_in_flight: AtomicUsize,
    ordered_responses: AtomicBool,
}

struct Inner<W> {
    id: u64,
    kind: EndpointKind,
    local: Addr,
    peer: Addr,
    name: Mutex<Cow<'static, str>>,
    attributes: Mutex<Attributes>,
    callbacks: Mutex<CloseCallbacks>,
    active: AtomicU64,
    counters: Counters,
    settings: Settings,
    queue: Queue<W>,
    /// The session's shutdown stages (see [`Stages`]): its own `close`
    /// token, and its owner's `force` and `kill` tokens.
    stages: Stages,
    /// The session ended: `Close` passed, the close callbacks ran. A flag
    /// and a `Notify` (inline) rather than a token, which would cost every
    /// session an allocation.
    finished: AtomicBool,
    finished_notify: Notify,
    /// Errors raised by the application or a layer, for the driver to pass
    /// down the stack; `true` marks one that closes the session.
    raised: Mutex<Vec<(Error, bool)>>,
    has_raised: AtomicBool,
    /// Nanoseconds since the epoch of the last socket write.
    written: AtomicU64,
}

/// One connection: a cheap, cloneable, `Send + Sync` handle.
///
/// It carries what getty's `Session` does: id, name, addresses, typed
/// attributes, the last-active time, traffic stats, per-session settings,
/// close callbacks, and the outbound side ([`send`](Session::send) and
/// friends). `W` is the packet type the session's encoder writes.
///
/// Sessions are made by servers and clients; [`Session::new`] makes a
/// detached one, handy for testing a service without a socket.
///
/// ```
/// use getty::{Addr, EndpointKind, Session, SessionConfig};
///
/// let session: Session<String> =
///     Session::new(EndpointKind::Detached, Addr::Unknown, Addr::Unknown, SessionConfig::default());
/// session.set_name("demo");
/// session.set_attribute(42u32);
/// assert_eq!(session.attribute::<u32>(), Some(42));
/// assert_eq!(session.name(), "demo");
/// session.close();
/// assert!(session.is_closed());
/// ```
pub struct Session<W = Bytes> {
    inner: Arc<Inner<W>>,
}

/// A handle to a session that does not keep it alive, for state the session
/// itself owns (close callbacks, attributes) where a [`Session`] would form
/// a reference cycle.
///
/// ```
/// use getty::{Addr, EndpointKind, Session, SessionConfig};
///
/// let s: Session = Session::new(EndpointKind::Detached, Addr::Unknown, Addr::Unknown, SessionConfig::default());
/// let weak = s.downgrade();
/// s.add_close_callback("log", 1u8, move || {
///     if let Some(s) = weak.upgrade() { println!("{} closed", s.id()); }
/// });
/// let weak = s.downgrade();
/// drop(s);
/// assert!(weak.upgrade().is_none()); // the callback did not keep it alive
/// ```
pub struct WeakSession<W = Bytes> {
    inner: std::sync::Weak<Inner<W>>,
}

impl<W> WeakSession<W> {
    /// The session, if it is still alive.
    pub fn upgrade(&self) -> Option<Session<W>> {
        self.inner.upgrade().map(|inner| Session { inner })
    }
}

impl<W> Clone for WeakSession<W> {
    fn clone(&self) -> Self {
        WeakSession {
            inner: self.inner.clone(),
        }
    }
}

impl<W> fmt::Debug for WeakSession<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeakSession").finish_non_exhaustive()
    }
}

impl<W> Clone for Session<W> {
    fn clone(&self) -> Self {
        Session {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<W> fmt::Debug for Session<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.inner.id)
            .field("name", &*lock(&self.inner.name))
            .field("kind", &self.inner.kind)
            .field("local", &self.inner.local)
            .field("peer", &self.inner.peer)
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl<W> fmt::Display for Session<W> {
    /// getty's session token: `name-id local->peer`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-{} {}->{}",
            lock(&self.inner.name),
            self.inner.id,
            self.inner.local,
            self.inner.peer
        )
    }
}

/// Locks a mutex whose data stays consistent even if a holder panicked
/// (every critical section here is a single call on the data).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<W> Session<W> {
    /// Makes a session attached to no connection: what is sent to it waits in
    /// its queue. Servers and clients make their own sessions; this is for
    /// tests of services and for custom transports.
    ///
    /// ```
    /// use getty::{Addr, EndpointKind, Session, SessionConfig, SendError};
    ///
    /// let s: Session<u8> = Session::new(
    ///     EndpointKind::Detached, Addr::Unknown, Addr::Unknown,
    ///     SessionConfig::default().queue_capacity(1),
    /// );
    /// assert!(s.try_send(1).is_ok());
    /// assert_eq!(s.try_send(2), Err(SendError::Blocked));
    /// ```
    pub fn new(kind: EndpointKind, local: Addr, peer: Addr, config: SessionConfig) -> Self {
        Session::with_stages(kind, local, peer, config, &Stages::new())
    }

    /// A session ended by `owner`'s stages: its close token is a child of
    /// the owner's, so an owner that closed before the session was made
    /// (a handshake still running at shutdown) makes it closed, its queue
    /// refusing sends from the start.
    pub(crate) fn with_stages(
        kind: EndpointKind,
        local: Addr,
        peer: Addr,
        config: SessionConfig,
        owner: &Stages,
    ) -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let session = Session {
            inner: Arc::new(Inner {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                kind,
                local,
                peer,
                name: Mutex::new(Cow::Borrowed(kind.as_str())),
                attributes: Mutex::default(),
                callbacks: Mutex::default(),
                active: AtomicU64::new(now_nanos()),
                counters: Counters::default(),
                settings: Settings {
                    max_packet_len: AtomicUsize::new(config.max_packet_len),
                    read_timeout: AtomicU64::new(to_nanos(config.read_timeout)),
                    write_timeout: AtomicU64::new(to_nanos(config.write_timeout)),
                    cron_period: AtomicU64::new(to_nanos(config.cron_period.map(clamp_period))),
                    wait_time: AtomicU64::new(to_nanos(Some(config.wait_time))),
                    max_in_flight: AtomicUsize::new(config.max_in_flight.max(1)),
                    ordered_responses: AtomicBool::new(config.ordered_responses),
                },
                queue: Queue::new(config.queue_capacity),
                stages: owner.for_session(),
                finished: AtomicBool::new(false),
                finished_notify: Notify::new(),
                raised: Mutex::new(Vec::new()),
                has_raised: AtomicBool::new(false),
                written: AtomicU64::new(now_nanos()),
            }),
        };
        if session.is_closed() {
            session.close();
        }
        session
    }

    /// A handle that does not keep the session alive.
    pub fn downgrade(&self) -> WeakSession<W> {
        WeakSession {
            inner: Arc::downgrade(&self.inner),
        }
    }

    /// The session's id, unique within the process.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// The session's name; by default its endpoint kind (`"tcp-server"`).
    pub fn name(&self) -> String {
        lock(&self.inner.name).to_string()
    }

    /// Names the session (getty's `SetName`), usually in the new-session callback.
    pub fn set_name(&self, name: impl Into<String>) {
        *lock(&self.inner.name) = Cow::Owned(name.into());
    }

    /// What kind of endpoint made this session.
    pub fn kind(&self) -> EndpointKind {
        self.inner.kind
    }

    /// The local address of the connection.
    pub fn local_addr(&self) -> &Addr {
        &self.inner.local
    }

    /// The remote address of the connection.
    pub fn peer_addr(&self) -> &Addr {
        &self.inner.peer
    }

    // ----- attributes -------------------------------------------------------

    /// Stores a value of type `T`, returning the previous one (getty's
    /// `SetAttribute`, keyed by type).
    pub fn set_attribute<T: Send + Sync + 'static>(&self, value: T) -> Option<T> {
        lock(&self.inner.attributes).insert(value)
    }

    /// A clone of the stored `T` (getty's `GetAttribute`).
    pub fn attribute<T: Clone + Send + Sync + 'static>(&self) -> Option<T> {
        lock(&self.inner.attributes).get::<T>().cloned()
    }

    /// Runs `f` on the stored `T` in place (no clone).
    ///
    /// The attribute map is locked while `f` runs: keep `f` short, and do
    /// not touch this session's attributes inside it (that would deadlock).
    /// To insert when missing, match on the `Option` and use the returned
    /// value, as below.
    ///
    /// ```
    /// # use getty::{Addr, EndpointKind, Session, SessionConfig};
    /// # let s: Session = Session::new(EndpointKind::Detached, Addr::Unknown, Addr::Unknown, SessionConfig::default());
    /// // A per-session counter: increment, or insert when missing.
    /// let missing = s.with_attribute(|n: Option<&mut u32>| match n {
    ///     Some(n) => { *n += 1; false }
    ///     None => true,
    /// });
    /// if missing {
    ///     s.set_attribute(1u32);
    /// }
    /// assert_eq!(s.attribute::<u32>(), Some(1));
    /// ```
    pub fn with_attribute<T: Send + Sync + 'static, R>(
        &self,
        f: impl FnOnce(Option<&mut T>) -> R,
    ) -> R {
        f(lock(&self.inner.attributes).get_mut::<T>())
    }

    /// Removes and returns the stored `T` (getty's `RemoveAttribute`).
    pub fn remove_attribute<T: Send + Sync + 'static>(&self) -> Option<T> {
        lock(&self.inner.attributes).remove::<T>()
    }

    // ----- activity and stats ----------------------------------------------

    /// When a packet was last received (getty's `GetActive`). The driver
    /// updates it on every decoded packet, never on send; it starts at the
    /// session's creation.
    pub fn active(&self) -> Instant {
        epoch() + Duration::from_nanos(self.inner.active.load(Ordering::Relaxed))
    }

    /// Marks the session active now (getty's `UpdateActive`), e.g. when a
    /// heartbeat reply arrives through a path the driver does not see.
    pub fn update_active(&self) {
        self.inner.active.store(now_nanos(), Ordering::Relaxed);
    }

    /// Marks the session active at `at` (the driver's read time).
    pub(crate) fn mark_active(&self, at: Instant) {
        self.inner.active.store(nanos_at(at), Ordering::Relaxed);
    }

    /// When bytes were last written to the socket (or the session's
    /// creation). With [`active`](Session::active) it tells reader-idle from
    /// writer-idle, as netty's `IdleStateHandler` does.
    pub fn last_write(&self) -> Instant {
        epoch() + Duration::from_nanos(self.inner.written.load(Ordering::Relaxed))
    }

    pub(crate) fn mark_written(&self, at: Instant) {
        self.inner.written.store(nanos_at(at), Ordering::Relaxed);
    }

    /// A snapshot of the traffic counters (getty's `Stat`).
    pub fn stats(&self) -> SessionStats {
        self.inner.counters.snapshot()
    }

    // ----- settings --------------------------------------------------------

    /// The largest packet accepted, in bytes.
    pub fn max_packet_len(&self) -> usize {
        self.inner.settings.max_packet_len.load(Ordering::Relaxed)
    }

    /// Sets the largest packet accepted (getty's `SetMaxMsgLen`). A codec
    /// made per session (such as [`LengthCodec`](crate::codec::LengthCodec))
    /// reads it when the session starts.
    pub fn set_max_packet_len(&self, len: usize) {
        self.inner
            .settings
            .max_packet_len
            .store(len, Ordering::Relaxed);
    }

    /// The idle-read limit, if any.
    pub fn read_timeout(&self) -> Option<Duration> {
        from_nanos(self.inner.settings.read_timeout.load(Ordering::Relaxed))
    }

    /// Sets the idle-read limit (getty's `SetReadTimeout`); `None` disables it.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) {
        self.store_duration(&self.inner.settings.read_timeout, timeout);
    }

    /// The write-stall limit, if any.
    pub fn write_timeout(&self) -> Option<Duration> {
        from_nanos(self.inner.settings.write_timeout.load(Ordering::Relaxed))
    }

    /// Sets the write-stall limit (getty's `SetWriteTimeout`); `None` disables it.
    pub fn set_write_timeout(&self, timeout: Option<Duration>) {
        self.store_duration(&self.inner.settings.write_timeout, timeout);
    }

    /// The period of [`Event::Tick`](crate::Event::Tick), if any.
    pub fn cron_period(&self) -> Option<Duration> {
        from_nanos(self.inner.settings.cron_period.load(Ordering::Relaxed))
    }

    /// Sets the cron period (getty's `SetCronPeriod`); `None` stops ticks.
    ///
    /// A period below 1 ms is raised to 1 ms (a zero period would spin).
    pub fn set_cron_period(&self, period: Option<Duration>) {
        self.store_duration(&self.inner.settings.cron_period, period.map(clamp_period));
    }

    /// How long a closing session may take to drain.
    pub fn wait_time(&self) -> Duration {
        from_nanos(self.inner.settings.wait_time.load(Ordering::Relaxed)).unwrap_or(Duration::MAX)
    }

    /// Sets how long a closing session may take to drain (getty's `SetWaitTime`).
    pub fn set_wait_time(&self, wait: Duration) {
        self.store_duration(&self.inner.settings.wait_time, Some(wait));
    }

    /// How many events may be in the service at once.
    pub fn max_in_flight(&self) -> usize {
        self.inner.settings.max_in_flight.load(Ordering::Relaxed)
    }

    /// Sets how many events may be in the service at once (at least 1). It
    /// takes effect when the session starts running, so set it in the
    /// new-session callback.
    pub fn set_max_in_flight(&self, n: usize) {
        self.inner
            .settings
            .max_in_flight
            .store(n.max(1), Ordering::Relaxed);
    }

    /// Whether responses leave in request order (see
    /// [`SessionConfig::ordered_responses`]).
    pub fn ordered_responses(&self) -> bool {
        self.inner
            .settings
            .ordered_responses
            .load(Ordering::Relaxed)
    }

    /// Sets whether responses leave in request order, for the calls
    /// started from now on (calls already in flight keep theirs).
    pub fn set_ordered_responses(&self, ordered: bool) {
        self.inner
            .settings
            .ordered_responses
            .store(ordered, Ordering::Relaxed);
    }

    fn store_duration(&self, slot: &AtomicU64, d: Option<Duration>) {
        slot.store(to_nanos(d), Ordering::Relaxed);
        // Let the driver re-arm its timer with the new value.
        self.inner.queue.wake_driver();
    }

    // ----- for the driver --------------------------------------------------

    pub(crate) fn queue(&self) -> &Queue<W> {
        &self.inner.queue
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    /// Wakes the session's driver (to look at its shutdown stage).
    pub(crate) fn wake_driver(&self) {
        self.inner.queue.wake_driver();
    }
}
