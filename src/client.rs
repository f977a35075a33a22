//! The TCP client: N sessions to one address, each reconnecting after loss.

mod connected;
mod reconnect;
mod slot;
mod target;

pub use self::connected::{ConnectError, ConnectHook, WaitConnectedError};

use std::{fmt, path::Path, sync::Arc, time::Duration};

use tokio::sync::{oneshot, watch};
use tokio_util::{codec::Decoder, task::TaskTracker};
use tracing::Instrument;

use self::{
    reconnect::Jitter,
    slot::run_slot,
    target::{parse_ws_url, Target},
};
use crate::{
    codec::{MakeCodec, MakeCodecFor},
    session::Stages,
    tls::ClientTlsConfig,
    MakeSessionService, Registry, Session, SessionConfig,
};

/// Builds a [`Client`]: getty's client options.
///
/// | getty                         | here                                  |
/// |-------------------------------|---------------------------------------|
/// | `WithServerAddress`           | the `addr` of [`connect`](Self::connect) |
/// | `WithConnectionNumber`        | [`connection_number`](Self::connection_number) |
/// | `WithReconnectInterval`       | [`reconnect_interval`](Self::reconnect_interval) |
/// | `WithReconnectAttempts`       | [`max_reconnect_attempts`](Self::max_reconnect_attempts) |
///
/// ```no_run
/// use getty::Client;
/// use std::time::Duration;
///
/// let builder = Client::builder()
///     .connection_number(4)
///     .reconnect_interval(Duration::from_millis(200))
///     .max_backoff(Duration::from_secs(10))
///     .max_reconnect_attempts(Some(20));
/// # let _ = builder;
/// ```
#[derive(Clone)]
pub struct ClientBuilder<H = ()> {
    on_connect: H,
    config: SessionConfig,
    connection_number: usize,
    reconnect_interval: Duration,
    max_backoff: Duration,
    max_reconnect_attempts: Option<u32>,
    connect_timeout: Duration,
    tls: Option<ClientTlsConfig>,
    max_buffered_input: Option<usize>,
}

impl<H> fmt::Debug for ClientBuilder<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("config", &self.config)
            .field("connection_number", &self.connection_number)
            .field("reconnect_interval", &self.reconnect_interval)
            .field("max_backoff", &self.max_backoff)
            .field("max_reconnect_attempts", &self.max_reconnect_attempts)
            .field("connect_timeout", &self.connect_timeout)
            .field("tls", &self.tls)
            .field("max_buffered_input", &self.max_buffered_input)
            .field("on_connect", &std::any::type_name::<H>())
            .finish()
    }
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            on_connect: (),
            config: SessionConfig::default(),
            connection_number: 1,
            reconnect_interval: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_reconnect_attempts: None,
            connect_timeout: Duration::from_secs(5),
            tls: None,
            max_buffered_input: Some(crate::budget::DEFAULT_INPUT_BUDGET),
        }
    }
}

impl<H> ClientBuilder<H> {
    /// Settings every session starts with.
    pub fn session_config(mut self, config: SessionConfig) -> Self {
        self.config = config;
        self
    }

    /// How many sessions to keep to the address (getty's connection
    /// number). Default 1.
    pub fn connection_number(mut self, n: usize) -> Self {
        self.connection_number = n.max(1);
        self
    }

    /// The pause before reconnecting after a session ended, and the first
    /// pause after a failed attempt. Default 500 ms.
    ///
    /// Every pause is jittered ("equal jitter"): the client waits a random
    /// time between half the pause and the whole of it, so that many clients
    /// that lost the same server at once (a restart) do not all come back in
    /// the same instant, nor retry in lockstep while it is down.
    ///
    /// ```
    /// use getty::Client;
    /// use std::time::Duration;
    ///
    /// // Reconnects 100 to 200 ms after a loss; after failed attempts, pauses
    /// // of 100-200 ms, 200-400 ms, 400-800 ms, ..., then 2.5-5 s.
    /// let builder = Client::builder()
    ///     .reconnect_interval(Duration::from_millis(200))
    ///     .max_backoff(Duration::from_secs(5));
    /// # let _ = builder;
    /// ```
    pub fn reconnect_interval(mut self, interval: Duration) -> Self {
        self.reconnect_interval = interval;
        self
    }

    /// The longest pause between failed attempts; pauses double from the
    /// reconnect interval up to this, each then jittered as
    /// [`reconnect_interval`](Self::reconnect_interval) says. Default 30 s.
    pub fn max_backoff(mut self, max: Duration) -> Self {
        self.max_backoff = max;
        self
    }

    /// How many consecutive failed attempts a connection slot makes before
    /// giving up; `None` (the default) never gives up.
    ///
    /// An attempt succeeds only when its session starts: connected, the TLS
    /// and WebSocket handshakes done, the new-session callback and `Open`
    /// accepted it, and the server did not refuse the TLS handshake on the
    /// first read (over TLS 1.3 a server that refuses the client's
    /// certificate says so only after the client finished its handshake).
    /// A session that started resets the count.
    ///
    /// ```
    /// use getty::Client;
    ///
    /// // One attempt: if it fails, the slot stops and the client closes.
    /// let builder = Client::builder().max_reconnect_attempts(Some(1));
    /// # let _ = builder;
    /// ```
    pub fn max_reconnect_attempts(mut self, max: Option<u32>) -> Self {
        self.max_reconnect_attempts = max;
        self
    }

    /// Speaks TLS to the server [`connect`](Self::connect) reaches,
    /// verifying it against the configuration's roots and server name (by
    /// default the host of the address).
    pub fn tls(mut self, config: ClientTlsConfig) -> Self {
        self.tls = Some(config);
        self
    }

    /// The input budget shared by the client's sessions, as
    /// [`ServerBuilder::max_buffered_input`](crate::ServerBuilder::max_buffered_input)
    /// describes it. Default 256 MiB; `None` turns it off.
    ///
    /// ```
    /// let builder = getty::Client::builder().max_buffered_input(Some(16 << 20));
    /// ```
    pub fn max_buffered_input(mut self, max: Option<usize>) -> Self {
        self.max_buffered_input = max;
        self
    }

    /// Runs `hook` each time a session starts (getty users: where a
    /// reconnected client logs in or subscribes again): after the
    /// new-session callback and `Open` accepted it, on the session's task,
    /// before its first packet is handled. Keep it short; it can
    /// [`send`](Session::try_send) without waiting. A panic in it is logged
    /// and the session carries on. Replaces an earlier hook.
    ///
    /// ```no_run
    /// use getty::{codec::LengthCodec, new_session_fn, BoxError, Bytes, Client, ListenerService, Session};
    /// # use getty::EventListener;
    /// # struct Quiet;
    /// # impl EventListener<Bytes> for Quiet {
    /// #     fn on_message(&mut self, _: &Session, _: Bytes) -> Option<Bytes> { None }
    /// # }
    ///
    /// # async fn demo() -> Result<(), BoxError> {
    /// let client = Client::builder()
    ///     .on_connect(|session| {
    ///         // Every (re)connect subscribes again.
    ///         let _ = session.try_send(Bytes::from_static(b"SUBSCRIBE news"));
    ///     })
    ///     .connect(
    ///         "127.0.0.1:19001",
    ///         LengthCodec::new(),
    ///         new_session_fn(|_: &Session| Ok::<_, BoxError>(ListenerService::new(Quiet))),
    ///     )
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn on_connect<W, F>(self, hook: F) -> ClientBuilder<F>
    where
        F: Fn(&Session<W>) + Send + Sync + 'static,
    {
        ClientBuilder {
            on_connect: hook,
            config: self.config,
            connection_number: self.connection_number,
            reconnect_interval: self.reconnect_interval,
            max_backoff: self.max_backoff,
            max_reconnect_attempts: self.max_reconnect_attempts,
            connect_timeout: self.connect_timeout,
            tls: self.tls,
            max_buffered_input: self.max_buffered_input,
        }
    }

    /// How long one connection attempt may take, TLS handshake included.
    /// Default 5 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Starts the client's connections on the current tokio runtime and
    /// resolves once each connection slot's first attempt has come to an
    /// end: its session started (connected, TLS and WebSocket handshakes
    /// done, the new-session callback and `Open` accepted it, the
    /// [`on_connect`](Self::on_connect) hook run), or the attempt failed.
    ///
    /// `make` builds each session's service (getty's `NewSessionCallback`);
    /// it is cloned for every connection slot.
    ///
    /// Reconnecting is unchanged by how the first attempts went: a slot
    /// whose attempt failed, or whose session later ends, tries again after
    /// [`reconnect_interval`](Self::reconnect_interval) (with backoff, up to
    /// [`max_reconnect_attempts`](Self::max_reconnect_attempts)).
    /// [`Client::wait_connected`] waits for every slot. A slow `Open` (or
    /// new-session callback) delays `connect`: `connect_timeout` bounds
    /// only the connecting and handshakes. Over TLS 1.3 a
    /// server that refuses the client's certificate says so only on the
    /// first read, after the session started: `connect` counts that slot as
    /// connected, and the slot counts the attempt as failed when the
    /// refusal arrives.
    ///
    /// # Errors
    /// When no slot's first attempt started a session. The client keeps
    /// reconnecting while the [`ConnectError`] lives:
    /// [`into_client`](ConnectError::into_client) keeps it, dropping the
    /// error closes it.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub async fn connect<MC, M, R, W>(
        self,
        addr: impl Into<String>,
        codec: MC,
        make: M,
    ) -> Result<Client<W>, ConnectError<W>>
    where
        MC: MakeCodecFor<R, W>,
        M: MakeSessionService<R, W> + Clone,
        H: ConnectHook<W>,
        R: Send + 'static,
        W: Send + 'static,
    {
        self.start(Target::Tcp(addr.into().into()), codec, make)
            .await
    }

    /// Like [`connect`](Self::connect), to a Unix domain socket at `path`.
    pub async fn connect_unix<MC, M, R, W>(
        self,
        path: impl AsRef<Path>,
        codec: MC,
        make: M,
    ) -> Result<Client<W>, ConnectError<W>>
    where
        MC: MakeCodecFor<R, W>,
        M: MakeSessionService<R, W> + Clone,
        H: ConnectHook<W>,
        R: Send + 'static,
        W: Send + 'static,
    {
        self.start(Target::Unix(path.as_ref().to_owned()), codec, make)
            .await
    }

    /// Like [`connect`](Self::connect), over WebSocket: `url` is
    /// `ws://host:port/path`, or `wss://...` with [`tls`](Self::tls) set
    /// (verifying the server as `host` unless the TLS configuration names
    /// another). Each packet goes as one binary message; reconnect options
    /// are the same.
    ///
    /// # Errors
    /// When `url` is not a `ws://` or `wss://` URL with a host
    /// ([`ConnectError::is_invalid_target`]), or as for
    /// [`connect`](Self::connect).
    pub async fn connect_ws<MC, M, R, W>(
        self,
        url: &str,
        codec: MC,
        make: M,
    ) -> Result<Client<W>, ConnectError<W>>
    where
        MC: MakeCodecFor<R, W>,
        M: MakeSessionService<R, W> + Clone,
        H: ConnectHook<W>,
        R: Send + 'static,
        W: Send + 'static,
    {
        let target = parse_ws_url(url).map_err(|e| ConnectError::invalid_target(url, e))?;
        if matches!(target, Target::Ws { secure: true, .. }) && self.tls.is_none() {
            return Err(ConnectError::invalid_target(
                url,
                "a wss:// URL needs ClientBuilder::tls".into(),
            ));
        }
        self.start(target, codec, make).await
    }

    /// Like [`connect`](Self::connect), over a connected UDP socket: each
    /// packet goes as one datagram to `addr`, and datagrams from it arrive
    /// as packets. An ICMP "port unreachable" ends the session, and the
    /// client reconnects as for TCP.
    pub async fn connect_udp<MC, M, R, W>(
        self,
        addr: impl Into<String>,
        codec: MC,
        make: M,
    ) -> Result<Client<W>, ConnectError<W>>
    where
        MC: MakeCodecFor<R, W>,
        M: MakeSessionService<R, W> + Clone,
        H: ConnectHook<W>,
        R: Send + 'static,
        W: Send + 'static,
    {
        self.start(Target::Udp(addr.into()), codec, make).await
    }

    async fn start<MC, M, R, W>(
        self,
        target: Target,
        codec: MC,
        make: M,
    ) -> Result<Client<W>, ConnectError<W>>
    where
        MC: MakeCodec<W>,
        MC::Codec: Decoder<Item = R>,
        M: MakeSessionService<R, W> + Clone,
        H: ConnectHook<W>,
        R: Send + 'static,
        W: Send + 'static,
    {
        let client = Client {
            budget: self
                .max_buffered_input
                .map(|max| Arc::new(crate::budget::InputBudget::new(max))),
            registry: Registry::default(),
            stages: Stages::new(),
            tracker: TaskTracker::new(),
            connected: Arc::new(watch::Sender::new(0)),
        };
        let target = Arc::new(target);
        let codec = Arc::new(codec);
        let settings = Arc::new(self);
        let mut first_attempts = Vec::with_capacity(settings.connection_number);
        for slot in 0..settings.connection_number {
            let (tx, rx) = oneshot::channel();
            first_attempts.push(rx);
            let span =
                crate::driver::task_span(tracing::info_span!("client", target = %target, slot));
            client.tracker.spawn(
                run_slot(
                    Arc::clone(&target),
                    Arc::clone(&settings),
                    Arc::clone(&codec),
                    make.clone(),
                    client.clone(),
                    tx,
                    Jitter::for_slot(slot),
                )
                .instrument(span),
            );
        }
        client.tracker.close();
        let mut first_error = None;
        let mut any_started = false;
        for rx in first_attempts {
            match rx.await {
                Ok(Ok(())) => any_started = true,
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(_) => {
                    first_error
                        .get_or_insert_with(|| "the client closed during its first attempt".into());
                }
            }
        }
        match first_error {
            Some(first) if !any_started => Err(ConnectError::not_connected(
                target.to_string(),
                settings.connection_number,
                first,
                client,
            )),
            _ => Ok(client),
        }
    }
}

/// A TCP client keeping N sessions to one address (getty's `Client`).
/// Cheap to clone.
///
/// ```no_run
/// use bytes::Bytes;
/// use getty::{codec::LengthCodec, new_session_fn, Client, Request, Session};
/// use std::{convert::Infallible, time::Duration};
///
/// # async fn demo() -> Result<(), getty::BoxError> {
/// let client = Client::builder()
///     .connection_number(2)
///     .connect(
///         "127.0.0.1:19001",
///         LengthCodec::new(),
///         new_session_fn(|_: &Session| {
///             Ok::<_, Infallible>(tower::service_fn(|req: Request<Bytes>| async move {
///                 if let Some(reply) = req.message() { println!("got {reply:?}"); }
///                 Ok::<_, Infallible>(None::<Bytes>)
///             }))
///         }),
///     )
///     .await?; // a session started, or an error saying why none did
/// client.wait_connected(2, Duration::from_secs(5)).await?;
/// for session in client.sessions().sessions() {
///     session.send(Bytes::from_static(b"hello")).await?;
/// }
/// client.close();
/// client.closed().await;
/// # Ok(()) }
/// ```
pub struct Client<W = bytes::Bytes> {
    budget: Option<Arc<crate::budget::InputBudget>>,
    registry: Registry<W>,
    /// How its sessions end (close, force, kill); `close` also stops
    /// accepting or reconnecting.
    stages: Stages,
    tracker: TaskTracker,
    /// Sessions whose `Open` was accepted and that have not ended.
    connected: Arc<watch::Sender<usize>>,
}

impl<W> Clone for Client<W> {
    fn clone(&self) -> Self {
        Client {
            budget: self.budget.clone(),
            registry: self.registry.clone(),
            stages: self.stages.clone(),
            tracker: self.tracker.clone(),
            connected: Arc::clone(&self.connected),
        }
    }
}

impl<W> fmt::Debug for Client<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("sessions", &self.registry.len())
            .field("closed", &self.stages.close.is_cancelled())
            .finish()
    }
}

impl Client {
    /// Starts building a client.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }
}

impl<W> Client<W> {
    /// The live sessions.
    pub fn sessions(&self) -> &Registry<W> {
        &self.registry
    }

    /// How many sessions are live.
    pub fn session_count(&self) -> usize {
        self.registry.len()
    }

    /// How many sessions have started (their new-session callback and
    /// `Open` accepted them) and not yet ended. A session counts in
    /// [`session_count`](Self::session_count) from the moment its socket is
    /// connected, here only once it started.
    ///
    /// ```no_run
    /// # async fn demo(client: getty::Client) {
    /// println!("{} of {} sessions started", client.connected_count(), client.session_count());
    /// # }
    /// ```
    pub fn connected_count(&self) -> usize {
        *self.connected.borrow()
    }

    /// Waits until at least `n` sessions have started and not ended
    /// ([`connected_count`](Self::connected_count)), for at most `timeout`.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # async fn demo(client: getty::Client) -> Result<(), getty::BoxError> {
    /// // After connect: every one of the 4 slots is connected.
    /// client.wait_connected(4, Duration::from_secs(5)).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`WaitConnectedError::TimedOut`] when `timeout` passed first;
    /// [`WaitConnectedError::Closed`] at once when the client has stopped
    /// (closed, or every slot gave up reconnecting).
    pub async fn wait_connected(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<(), WaitConnectedError> {
        let mut connected = self.connected.subscribe();
        let enough = connected.wait_for(|live| *live >= n);
        tokio::select! {
            reached = enough => if reached.is_ok() { return Ok(()) },
            () = self.closed() => {}
            () = tokio::time::sleep(timeout) => {
                return Err(WaitConnectedError::TimedOut {
                    connected: self.connected_count(),
                    wanted: n,
                    timeout,
                });
            }
        }
        let live = self.connected_count();
        if live >= n {
            return Ok(());
        }
        Err(WaitConnectedError::Closed {
            connected: live,
            wanted: n,
        })
    }

    /// Stops reconnecting and closes every session (each drains within its
    /// wait time). Returns at once; [`closed`](Self::closed) waits for the end.
    pub fn close(&self) {
        self.stages.close.cancel();
        self.registry.close_all();
    }

    /// Closes like [`close`](Self::close), then waits for the end, forcing
    /// sessions still running after `deadline` the way
    /// [`ServerHandle::shutdown`](crate::ServerHandle::shutdown) does.
    pub async fn shutdown(&self, deadline: Duration) {
        self.stages.close.cancel();
        self.registry
            .end_all(&self.tracker, deadline, &self.stages)
            .await;
    }

    /// Whether the client has stopped: [`close`](Self::close) was called,
    /// or every connection slot gave up reconnecting.
    pub fn is_closed(&self) -> bool {
        self.stages.close.is_cancelled() || (self.tracker.is_closed() && self.tracker.is_empty())
    }

    /// Resolves once every connection slot has stopped: after
    /// [`close`](Self::close), or when every slot gave up reconnecting.
    pub async fn closed(&self) {
        self.tracker.wait().await;
    }
}
