//! [`HeartbeatLayer`]: the heartbeat's configuration, as a tower layer.

use std::{fmt, sync::Arc, time::Duration};

use bytes::Bytes;
use tower_layer::Layer;

use super::{Heartbeat, IdleState};

/// The shortest cron period the layer sets on its own.
const MIN_PERIOD: Duration = Duration::from_millis(10);

/// Makes a ping packet.
pub(super) type MakePing<W> = Arc<dyn Fn() -> W + Send + Sync>;

/// What to do when a side has been idle for its limit.
pub(super) enum Action<W> {
    Close,
    Ping(MakePing<W>),
}

impl<W> Clone for Action<W> {
    fn clone(&self) -> Self {
        match self {
            Action::Close => Action::Close,
            Action::Ping(f) => Action::Ping(Arc::clone(f)),
        }
    }
}

impl<W> Action<W> {
    fn is_close(&self) -> bool {
        matches!(self, Action::Close)
    }

    fn name(&self) -> &'static str {
        match self {
            Action::Close => "close",
            Action::Ping(_) => "ping",
        }
    }
}

/// One configured check: when `state` lasts `limit`, do `action`.
pub(super) struct Rule<W> {
    pub(super) state: IdleState,
    pub(super) limit: Duration,
    pub(super) action: Action<W>,
}

impl<W> Clone for Rule<W> {
    fn clone(&self) -> Self {
        Rule {
            state: self.state,
            limit: self.limit,
            action: self.action.clone(),
        }
    }
}

impl<W> fmt::Debug for Rule<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rule")
            .field("state", &self.state)
            .field("limit", &self.limit)
            .field("action", &self.action.name())
            .finish()
    }
}

pub(super) struct Config<W> {
    /// Close rules first, then ping rules; each kept in the order added.
    pub(super) rules: Vec<Rule<W>>,
    /// The cron period the layer needs (set on `Open` for a session without
    /// one or with a coarser one); `None` means derived from the limits.
    pub(super) cron_period: Option<Duration>,
}

impl<W> Clone for Config<W> {
    fn clone(&self) -> Self {
        Config {
            rules: self.rules.clone(),
            cron_period: self.cron_period,
        }
    }
}

impl<W> Config<W> {
    /// The coarsest cron period the rules allow: the configured one, or the
    /// smallest limit / 4, at least 10 ms. `None` with no rules.
    pub(super) fn period(&self) -> Option<Duration> {
        let smallest = self.rules.iter().map(|r| r.limit).min()?;
        Some(self.cron_period.unwrap_or((smallest / 4).max(MIN_PERIOD)))
    }
}

/// Idle detection for getty sessions, after netty's `IdleStateHandler`:
/// close a quiet peer (server side), or send it a ping (client side).
///
/// Three kinds of idleness are watched, each with its own limit:
///
/// | state                                    | idle means                                | measured from |
/// |------------------------------------------|-------------------------------------------|---------------|
/// | [`ReaderIdle`](IdleState::ReaderIdle)    | no packet received for the limit          | [`Session::active`](getty::Session::active) |
/// | [`WriterIdle`](IdleState::WriterIdle)    | nothing written to the socket for the limit | [`Session::last_write`](getty::Session::last_write) |
/// | [`AllIdle`](IdleState::AllIdle)          | neither, for the limit                    | the later of the two |
///
/// and each can **close** the session, or **ping** it with a packet made by
/// a closure. A close goes through
/// [`Session::close_with_error`](getty::Session::close_with_error) with an
/// [`IdleError`](super::IdleError): the stack sees `Error` (a listener's
/// `on_error` gets [`getty::Error::Raised`], whose source downcasts to
/// `IdleError`), then `Close`. A ping is queued with
/// [`Session::try_send`](getty::Session::try_send); once it is written the
/// writer is no longer idle, and the peer's reader is not either. A full
/// queue skips the ping (logged at debug, not an error): writes are pending
/// already, and a peer that does not take them is the write timeout's
/// business.
///
/// # Granularity
///
/// Detection runs on [`Event::Tick`](getty::Event::Tick), so an idle side
/// is noticed at the first tick after its limit: between the limit and the
/// limit plus one cron period. The layer therefore needs a period of its
/// own: [`cron_period`](Self::cron_period) if given, else the smallest limit
/// / 4 (at least 10 ms), so an idle side is noticed by 1.25 times its limit.
/// When `Open` passes the layer, and again on every tick, the session's cron
/// period is made **at most** that: a session without one gets it, a
/// coarser one (say a 4 s period under a 500 ms limit, which would close
/// the peer only after 4 s) is lowered to it, and a finer one is kept.
/// Every tick still reaches the inner service, so a listener's `on_cron`
/// keeps running, more often if the layer lowered the period: give the
/// session the period it needs for its own work and the layer changes it
/// only where the limits need finer ticks.
///
/// A ping is sent at most once per tick, and a side is pinged again only
/// after another full limit without traffic (or since the last ping, if that
/// was not written yet).
///
/// `W` is the packet type the session writes (what a ping closure makes).
/// Given to a server or client it is inferred; a layer with close checks
/// only, standing alone, needs it named, as in `HeartbeatLayer<Bytes>`
/// below.
///
/// A zero limit turns a check off, as in netty. Configuring the same state
/// and action twice keeps the later limit; a state can both ping and close
/// (ping after 10 s of silence, close after 30 s). When several close checks
/// fire at once, the one added first is reported.
///
/// ```
/// use bytes::Bytes;
/// use getty::{new_session_fn, BoxError, EventListener, ListenerService, Session};
/// use getty_layers::heartbeat::HeartbeatLayer;
/// use std::time::Duration;
///
/// struct Echo;
/// impl EventListener<Bytes> for Echo {
///     fn on_message(&mut self, _: &Session, pkg: Bytes) -> Option<Bytes> { Some(pkg) }
/// }
///
/// // Server side: drop peers that say nothing for 30 s.
/// let heartbeat: HeartbeatLayer<Bytes> =
///     HeartbeatLayer::new().close_when_reader_idle(Duration::from_secs(30));
/// let server_sessions = new_session_fn(move |_: &Session| {
///     Ok::<_, BoxError>(
///         tower::ServiceBuilder::new()
///             .layer(heartbeat.clone())
///             .service(ListenerService::new(Echo)),
///     )
/// });
///
/// // Client side: say something every 10 s of silence, give up after 60 s
/// // without hearing from the server. (Not all-idle: our own pings would
/// // keep that from ever firing.)
/// let client_sessions = new_session_fn(|_: &Session| {
///     Ok::<_, BoxError>(
///         tower::ServiceBuilder::new()
///             .layer(
///                 HeartbeatLayer::new()
///                     .ping_when_writer_idle(Duration::from_secs(10), || Bytes::from_static(b"ping"))
///                     .close_when_reader_idle(Duration::from_secs(60)),
///             )
///             .service(ListenerService::new(Echo)),
///     )
/// });
/// # let _ = (server_sessions, client_sessions);
/// ```
pub struct HeartbeatLayer<W = Bytes> {
    config: Arc<Config<W>>,
}

impl<W> Clone for HeartbeatLayer<W> {
    fn clone(&self) -> Self {
        HeartbeatLayer {
            config: Arc::clone(&self.config),
        }
    }
}

impl<W> fmt::Debug for HeartbeatLayer<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeartbeatLayer")
            .field("rules", &self.config.rules)
            .field("cron_period", &self.config.cron_period)
            .finish()
    }
}

impl<W> Default for HeartbeatLayer<W> {
    fn default() -> Self {
        Self::new()
    }
}

impl<W> HeartbeatLayer<W> {
    /// A heartbeat that checks nothing yet; add checks with the `*_when_*`
    /// methods.
    pub fn new() -> Self {
        HeartbeatLayer {
            config: Arc::new(Config {
                rules: Vec::new(),
                cron_period: None,
            }),
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut Config<W>)) -> Self {
        let mut config = match Arc::try_unwrap(self.config) {
            Ok(config) => config,
            Err(shared) => (*shared).clone(),
        };
        f(&mut config);
        self.config = Arc::new(config);
        self
    }

    fn rule(self, state: IdleState, limit: Duration, action: Action<W>) -> Self {
        self.edit(|config| {
            let close = action.is_close();
            config
                .rules
                .retain(|r| !(r.state == state && r.action.is_close() == close));
            if limit.is_zero() {
                return;
            }
            let rule = Rule {
                state,
                limit,
                action,
            };
            // Close rules stay ahead of ping rules: a tick that closes does
            // not ping first.
            let at = if close {
                config
                    .rules
                    .iter()
                    .take_while(|r| r.action.is_close())
                    .count()
            } else {
                config.rules.len()
            };
            config.rules.insert(at, rule);
        })
    }

    /// Closes the session once `state` has lasted `limit`, with an
    /// [`IdleError`](super::IdleError) as the reason. A zero `limit` turns
    /// the check off.
    pub fn close_when(self, state: IdleState, limit: Duration) -> Self {
        self.rule(state, limit, Action::Close)
    }

    /// Queues the packet `make_ping` returns once `state` has lasted
    /// `limit`. A zero `limit` turns the check off.
    pub fn ping_when<F>(self, state: IdleState, limit: Duration, make_ping: F) -> Self
    where
        F: Fn() -> W + Send + Sync + 'static,
    {
        self.rule(state, limit, Action::Ping(Arc::new(make_ping)))
    }

    /// Closes the session when no packet was received for `limit` (the
    /// server side of a heartbeat).
    pub fn close_when_reader_idle(self, limit: Duration) -> Self {
        self.close_when(IdleState::ReaderIdle, limit)
    }

    /// Closes the session when nothing was written to it for `limit`.
    pub fn close_when_writer_idle(self, limit: Duration) -> Self {
        self.close_when(IdleState::WriterIdle, limit)
    }

    /// Closes the session when nothing was received nor written for `limit`.
    pub fn close_when_all_idle(self, limit: Duration) -> Self {
        self.close_when(IdleState::AllIdle, limit)
    }

    /// Sends `make_ping()` when no packet was received for `limit` (asks a
    /// quiet peer whether it is still there).
    pub fn ping_when_reader_idle<F>(self, limit: Duration, make_ping: F) -> Self
    where
        F: Fn() -> W + Send + Sync + 'static,
    {
        self.ping_when(IdleState::ReaderIdle, limit, make_ping)
    }

    /// Sends `make_ping()` when nothing was written for `limit` (the client
    /// side of a heartbeat: the peer's reader sees traffic).
    pub fn ping_when_writer_idle<F>(self, limit: Duration, make_ping: F) -> Self
    where
        F: Fn() -> W + Send + Sync + 'static,
    {
        self.ping_when(IdleState::WriterIdle, limit, make_ping)
    }

    /// Sends `make_ping()` when nothing was received nor written for `limit`.
    pub fn ping_when_all_idle<F>(self, limit: Duration, make_ping: F) -> Self
    where
        F: Fn() -> W + Send + Sync + 'static,
    {
        self.ping_when(IdleState::AllIdle, limit, make_ping)
    }

    /// The cron period the layer needs, instead of the default (the smallest
    /// limit / 4, at least 10 ms): a session without one, or with a coarser
    /// one, gets it. It is the detection granularity.
    pub fn cron_period(self, period: Duration) -> Self {
        self.edit(|config| config.cron_period = Some(period))
    }

    pub(super) fn config(&self) -> &Arc<Config<W>> {
        &self.config
    }
}

impl<S, W> Layer<S> for HeartbeatLayer<W> {
    type Service = Heartbeat<S, W>;

    fn layer(&self, inner: S) -> Self::Service {
        Heartbeat::new(inner, self.clone())
    }
}
