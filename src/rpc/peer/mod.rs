//! [`Peer`]: one RPC endpoint that listens and dials (teleport's `Peer`).

mod dispatch;

use std::{
    collections::HashMap,
    fmt, io,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use tokio::net::ToSocketAddrs;
use tower::{
    util::{BoxService, Either},
    Layer, Service, ServiceExt,
};

pub(crate) use self::dispatch::Dispatch;
use crate::{
    codec::per_session,
    rpc::{
        codec::{CodecId, Codecs},
        session::{Conn, Redial},
        xfer::XferFilters,
        Message, RawProto, Router, Session, Status,
    },
    BoxError, Client, ClientBuilder, Request, Server, ServerHandle, SessionConfig,
};

/// The service stack of one RPC session, as [`PeerBuilder::session_layer`]
/// layers see it: the core's events of a session of [`Message`]s.
pub type SessionStack = BoxService<Request<Message, Message>, Option<Message>, BoxError>;

type SessionLayerFn = Arc<dyn Fn(SessionStack) -> SessionStack + Send + Sync>;

/// What every session of a peer shares.
pub(crate) struct PeerShared {
    pub(crate) router: Router,
    pub(crate) codecs: Codecs,
    pub(crate) filters: XferFilters,
    pub(crate) default_codec: CodecId,
    pub(crate) call_timeout: Option<Duration>,
    session_config: SessionConfig,
    session_layers: Vec<SessionLayerFn>,
    pub(crate) redial_times: Option<u32>,
    redial_interval: Duration,
    dial_timeout: Duration,
    sessions: Mutex<HashMap<u64, Session>>,
    servers: Mutex<Vec<ServerHandle<Message>>>,
    clients: Mutex<Vec<Client<Message>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl PeerShared {
    pub(crate) fn remember(&self, session: Session) {
        lock(&self.sessions).insert(session.id(), session);
    }

    pub(crate) fn forget(&self, id: u64) {
        lock(&self.sessions).remove(&id);
    }

    /// The stack of a new session: the dispatcher inside the session layers.
    fn stack(
        self: &Arc<Self>,
        session: &crate::Session<Message>,
        redial: Option<Arc<Redial>>,
    ) -> Either<Dispatch, SessionStack> {
        let conn = Arc::new(Conn::new(session.clone(), Arc::clone(self)));
        conn.attach();
        let dispatch = Dispatch::new(conn, redial);
        if self.session_layers.is_empty() {
            // No box around each event's future when no layer needs one.
            return Either::Left(dispatch);
        }
        let mut stack = BoxService::new(dispatch);
        for layer in &self.session_layers {
            stack = layer(stack);
        }
        Either::Right(stack)
    }
}

/// Builds a [`Peer`]: its router, codecs, filters, plugins and settings
/// (teleport's `PeerConfig`).
///
/// ```
/// use getty::rpc::{codec::CodecId, xfer::{Gzip, Md5}, Peer, Router};
/// use std::time::Duration;
///
/// let peer = Peer::builder()
///     .router(Router::new())
///     .xfer_filter(Gzip::new(5))
///     .xfer_filter(Md5::new())
///     .default_codec(CodecId::JSON)
///     .call_timeout(Some(Duration::from_secs(5)))
///     .build();
/// # let _ = peer;
/// ```
pub struct PeerBuilder {
    router: Router,
    codecs: Codecs,
    filters: XferFilters,
    default_codec: CodecId,
    call_timeout: Option<Duration>,
    session_config: SessionConfig,
    session_layers: Vec<SessionLayerFn>,
    redial_times: Option<u32>,
    redial_interval: Duration,
    dial_timeout: Duration,
}

impl fmt::Debug for PeerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerBuilder")
            .field("router", &self.router)
            .field("default_codec", &self.default_codec)
            .field("call_timeout", &self.call_timeout)
            .field("session_layers", &self.session_layers.len())
            .finish_non_exhaustive()
    }
}

impl Default for PeerBuilder {
    fn default() -> Self {
        PeerBuilder {
            router: Router::new(),
            codecs: Codecs::new(),
            filters: XferFilters::new(),
            default_codec: CodecId::JSON,
            call_timeout: Some(Duration::from_secs(30)),
            session_config: SessionConfig::default()
                .max_in_flight(256)
                .ordered_responses(false),
            session_layers: Vec::new(),
            redial_times: None,
            redial_interval: Duration::from_millis(100),
            dial_timeout: Duration::from_secs(5),
        }
    }
}

impl PeerBuilder {
    /// The routes of incoming calls and pushes.
    pub fn router(mut self, router: Router) -> Self {
        self.router = router;
        self
    }

    /// Wraps every route of the router in `layer` (a global plugin; see
    /// [`Router::layer`]). Set the router first.
    pub fn route_layer<L>(mut self, layer: L) -> Self
    where
        L: Layer<crate::rpc::router::Route>,
        L::Service: Service<crate::rpc::Inbound, Response = Option<Message>>
            + Clone
            + Send
            + Sync
            + 'static,
        <L::Service as Service<crate::rpc::Inbound>>::Error: Into<BoxError>,
        <L::Service as Service<crate::rpc::Inbound>>::Future: Send + 'static,
    {
        self.router = self.router.layer(layer);
        self
    }

    /// Wraps every session's whole stack in `layer`: it sees the core's
    /// events of the session (`Open`, each `Message` whatever its type,
    /// `Tick`, `Error`, `Close`), as the auth and heartbeat plugins do.
    /// Layers added later are outer.
    pub fn session_layer<L>(mut self, layer: L) -> Self
    where
        L: Layer<SessionStack> + Send + Sync + 'static,
        L::Service: Service<Request<Message, Message>, Response = Option<Message>> + Send + 'static,
        <L::Service as Service<Request<Message, Message>>>::Error: Into<BoxError>,
        <L::Service as Service<Request<Message, Message>>>::Future: Send + 'static,
    {
        self.session_layers.push(Arc::new(move |inner| {
            BoxService::new(layer.layer(inner).map_err(Into::into))
        }));
        self
    }

    /// The body codecs known besides the built-in four.
    pub fn codecs(mut self, codecs: Codecs) -> Self {
        self.codecs = codecs;
        self
    }

    /// Registers a transfer filter (no filter is known by default; erpc
    /// programs use gzip as `g` and md5 as `m`).
    pub fn xfer_filter(mut self, filter: impl crate::rpc::xfer::XferFilter) -> Self {
        self.filters.register(filter);
        self
    }

    /// The codec of calls and pushes that name none (json, as erpc's
    /// `DefaultBodyCodec`).
    pub fn default_codec(mut self, codec: CodecId) -> Self {
        self.default_codec = codec;
        self
    }

    /// How long a call waits for its reply unless it says otherwise
    /// (default 30 s; `None`: until the session ends, erpc v6's way).
    pub fn call_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// The settings of every session (default: the core's, with up to 256
    /// messages handled at once and replies written as they complete).
    /// `max_packet_len` is erpc's read limit.
    pub fn session_config(mut self, config: SessionConfig) -> Self {
        self.session_config = config;
        self
    }

    /// How many times in a row a dialed session tries to dial again after
    /// losing its connection (erpc's `RedialTimes`; default `None`: without
    /// limit; `Some(0)`: never). A redial whose handshake the peer refuses
    /// (an auth plugin's 401: a revoked credential) counts as failed, so a
    /// refused session stops after this many, where erpc redials forever.
    pub fn redial_times(mut self, times: Option<u32>) -> Self {
        self.redial_times = times;
        self
    }

    /// The pause between redials (erpc's `RedialInterval`, default 100 ms).
    pub fn redial_interval(mut self, interval: Duration) -> Self {
        self.redial_interval = interval;
        self
    }

    /// How long one dial may take (default 5 s).
    pub fn dial_timeout(mut self, timeout: Duration) -> Self {
        self.dial_timeout = timeout;
        self
    }

    /// The peer.
    pub fn build(self) -> Peer {
        Peer {
            shared: Arc::new(PeerShared {
                router: self.router,
                codecs: self.codecs,
                filters: self.filters,
                default_codec: self.default_codec,
                call_timeout: self.call_timeout,
                session_config: self.session_config,
                session_layers: self.session_layers,
                redial_times: self.redial_times,
                redial_interval: self.redial_interval,
                dial_timeout: self.dial_timeout,
                sessions: Mutex::default(),
                servers: Mutex::default(),
                clients: Mutex::default(),
            }),
        }
    }
}

/// One RPC endpoint, server and client at once (teleport's `Peer`): it
/// listens on any number of addresses and transports, dials, and keeps
/// the sessions of both. Cheap to clone.
///
/// ```no_run
/// use getty::rpc::{codec::Raw, CallCtx, Peer, Router, Status};
///
/// async fn echo(_: CallCtx, arg: Raw) -> Result<Raw, Status> { Ok(arg) }
///
/// # async fn demo() -> Result<(), getty::BoxError> {
/// let server = Peer::builder().router(Router::new().call("/home/echo", echo)).build();
/// let listening = server.listen("127.0.0.1:0").await?;
///
/// let client = Peer::builder().build();
/// let session = client.dial(listening.local_addr().to_string()).await?;
/// let reply: String = session.call("/home/echo", "hi").await?;
/// assert_eq!(reply, "hi");
/// server.shutdown(std::time::Duration::from_secs(5)).await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Peer {
    shared: Arc<PeerShared>,
}

impl fmt::Debug for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Peer")
            .field("router", &self.shared.router)
            .field("sessions", &self.session_count())
            .finish_non_exhaustive()
    }
}

impl Peer {
    /// Starts building a peer.
    pub fn builder() -> PeerBuilder {
        PeerBuilder::default()
    }

    /// The router of incoming calls and pushes.
    pub fn router(&self) -> &Router {
        &self.shared.router
    }

    /// Listens on a TCP address (port 0 picks one) and serves.
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub async fn listen(&self, addr: impl ToSocketAddrs) -> io::Result<ServerHandle<Message>> {
        let server = Server::builder()
            .session_config(self.shared.session_config.clone())
            .bind(addr)
            .await?;
        Ok(self.serve(server))
    }

    /// Serves on a server made with the core's builder: TLS, WebSocket,
    /// Unix sockets, every transport and option of [`Server::builder`]. Its
    /// session settings are the peer's.
    ///
    /// ```no_run
    /// # async fn demo(peer: getty::rpc::Peer) -> std::io::Result<()> {
    /// let ws = getty::Server::builder().websocket("/rpc").bind("127.0.0.1:0").await?;
    /// let handle = peer.serve(ws);
    /// # Ok(()) }
    /// ```
    pub fn serve(&self, server: Server<Message>) -> ServerHandle<Message> {
        let shared = Arc::clone(&self.shared);
        let config = shared.session_config.clone();
        let filters = shared.filters.clone();
        let handle = server.serve(
            per_session(move |s: &crate::Session<Message>| {
                RawProto::new(filters.clone(), s.max_packet_len())
            }),
            crate::new_session_fn(move |s: &crate::Session<Message>| {
                apply(s, &config);
                Ok::<_, BoxError>(shared.stack(s, None))
            }),
        );
        lock(&self.shared.servers).push(handle.clone());
        handle
    }

    /// Dials a TCP address; the session redials as
    /// [`redial_times`](PeerBuilder::redial_times) says. With a plugin that
    /// talks first (such as [`AuthBearer`](crate::rpc::plugin::auth::AuthBearer)),
    /// it returns once that exchange is done.
    ///
    /// # Errors
    /// Status 105 (Dial Failed) when the first dial fails or its handshake
    /// takes longer than the [dial timeout](PeerBuilder::dial_timeout); the
    /// handshake's own status when it fails (401 when authentication is
    /// refused).
    pub async fn dial(&self, addr: impl Into<String>) -> Result<Session, Status> {
        let addr = addr.into();
        self.dial_with(Client::builder(), Target::Tcp(addr)).await
    }

    /// Dials with the core's client builder (TLS settings, say) over
    /// `target` (TCP, WebSocket or Unix). The builder's reconnect and
    /// session settings are replaced by the peer's.
    ///
    /// # Errors
    /// As [`dial`](Peer::dial).
    pub async fn dial_with(
        &self,
        builder: ClientBuilder,
        target: Target,
    ) -> Result<Session, Status> {
        let shared = Arc::clone(&self.shared);
        let redial = Arc::new(Redial::new(target.to_string()));
        let config = shared.session_config.clone();
        let filters = shared.filters.clone();
        let codec = per_session(move |s: &crate::Session<Message>| {
            RawProto::new(filters.clone(), s.max_packet_len())
        });
        let make = {
            let redial = Arc::clone(&redial);
            crate::new_session_fn(move |s: &crate::Session<Message>| {
                apply(s, &config);
                Ok::<_, BoxError>(shared.stack(s, Some(Arc::clone(&redial))))
            })
        };
        let builder = builder
            .session_config(self.shared.session_config.clone())
            .connection_number(1)
            .reconnect_interval(self.shared.redial_interval)
            .max_reconnect_attempts(self.shared.redial_times)
            .connect_timeout(self.shared.dial_timeout);
        let connected = match &target {
            Target::Tcp(addr) => builder.connect(addr.clone(), codec, make).await,
            Target::Ws(url) => builder.connect_ws(url, codec, make).await,
            Target::Unix(path) => builder.connect_unix(path, codec, make).await,
        };
        let client = connected
            .map_err(|e| Status::framework_with(Status::CODE_DIAL_FAILED, e.to_string()))?;
        *lock(&redial.client) = Some(client.clone());
        lock(&self.shared.clients).push(client);
        let session = Session::from_redial(Arc::clone(&redial));
        // Open has passed the stack by now, so a plugin that talks first
        // has begun its exchange: the session is not ready before its end.
        if let Err(status) = redial.handshaken(self.shared.dial_timeout).await {
            session.close();
            return Err(status);
        }
        Ok(session)
    }

    /// The live session with this id (teleport's `GetSession`).
    pub fn session(&self, id: u64) -> Option<Session> {
        lock(&self.shared.sessions).get(&id).cloned()
    }

    /// A snapshot of the live sessions, accepted and dialed
    /// (teleport's `RangeSession`).
    pub fn sessions(&self) -> Vec<Session> {
        lock(&self.shared.sessions).values().cloned().collect()
    }

    /// How many sessions are live (teleport's `CountSession`).
    pub fn session_count(&self) -> usize {
        lock(&self.shared.sessions).len()
    }

    /// Shuts down gracefully within `deadline`: stops accepting and
    /// redialing, lets calls already read finish and their replies go
    /// out, then closes every session; what is left at the deadline is
    /// cut.
    pub async fn shutdown(&self, deadline: Duration) {
        let servers: Vec<_> = lock(&self.shared.servers).drain(..).collect();
        let clients: Vec<_> = lock(&self.shared.clients).drain(..).collect();
        let servers = servers.iter().map(|s| s.shutdown(deadline));
        let clients = clients.iter().map(|c| c.shutdown(deadline));
        futures_util::future::join(
            futures_util::future::join_all(servers),
            futures_util::future::join_all(clients),
        )
        .await;
    }
}

/// Where [`Peer::dial_with`] dials.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Target {
    /// A TCP `host:port` (TLS when the client builder has it).
    Tcp(String),
    /// A `ws://` or `wss://` URL.
    Ws(String),
    /// A Unix domain socket's path.
    Unix(std::path::PathBuf),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Tcp(addr) => f.write_str(addr),
            Target::Ws(url) => f.write_str(url),
            Target::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// The peer's settings on a new session (a server's builder may have
/// other ones).
fn apply(s: &crate::Session<Message>, config: &SessionConfig) {
    s.set_max_in_flight(config.max_in_flight);
    s.set_ordered_responses(config.ordered_responses);
}
