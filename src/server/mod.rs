//! The server: bind (TCP, TLS, WebSocket, UDP, Unix), serve with a
//! make-service, registry, graceful shutdown.

mod serve;

pub(crate) use self::serve::transport_name;
use self::serve::Serving;

use std::{
    fmt, io,
    marker::PhantomData,
    net::SocketAddr,
    os::unix::fs::{FileTypeExt, MetadataExt},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    net::{TcpListener, TcpStream, ToSocketAddrs, UdpSocket, UnixListener, UnixStream},
    task::JoinHandle,
};
use tokio_util::task::TaskTracker;

use crate::{
    budget::{InputBudget, DEFAULT_INPUT_BUDGET},
    codec::MakeCodecFor,
    session::Stages,
    tls::ServerTlsConfig,
    transport::WsOptions,
    Addr, MakeSessionService, Registry, SessionConfig,
};

/// Builds a [`Server`]: getty's server options.
///
/// ```no_run
/// use getty::{Server, SessionConfig};
/// use std::time::Duration;
///
/// # async fn demo() -> std::io::Result<()> {
/// // `Server` for packets of the default type, `Bytes`: a server that is
/// // served later need not say, `serve` tells the compiler.
/// let server: Server = Server::builder()
///     .session_config(SessionConfig::default().cron_period(Some(Duration::from_secs(1))))
///     .max_sessions(10_000)
///     .bind("127.0.0.1:0")
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ServerBuilder {
    config: SessionConfig,
    max_sessions: Option<usize>,
    tls: Option<ServerTlsConfig>,
    handshake_timeout: Duration,
    /// WebSocket options, each kept on its own so they may be set in any
    /// order; `ws.path` says whether the server speaks WebSocket at all.
    ws: WsOptions,
    max_buffered_input: Option<usize>,
}

impl Default for ServerBuilder {
    fn default() -> Self {
        ServerBuilder {
            config: SessionConfig::default(),
            max_sessions: None,
            tls: None,
            handshake_timeout: Duration::from_secs(10),
            ws: WsOptions::default(),
            max_buffered_input: Some(DEFAULT_INPUT_BUDGET),
        }
    }
}

impl ServerBuilder {
    /// Settings every accepted session starts with.
    pub fn session_config(mut self, config: SessionConfig) -> Self {
        self.config = config;
        self
    }

    /// At most this many sessions, counted from the moment a connection is
    /// accepted (TLS and WebSocket handshakes included); a connection beyond
    /// the cap is accepted and closed at once (so its client is not left
    /// hanging), and logged. Default: no cap (4096 for a UDP endpoint).
    pub fn max_sessions(mut self, max: usize) -> Self {
        self.max_sessions = Some(max);
        self
    }

    /// Speaks TLS on the TCP socket [`bind`](Self::bind) makes (getty's
    /// TLS server). Each connection's handshake runs in its own task, bounded
    /// by the [handshake timeout](Self::handshake_timeout); a failed one
    /// (wrong CA, plain TCP, garbage) is logged and the connection closed,
    /// and no session is made for it.
    pub fn tls(mut self, config: ServerTlsConfig) -> Self {
        self.tls = Some(config);
        self
    }

    /// Speaks WebSocket on `path` (getty's `WithWebsocketServerPath`), over
    /// TCP, or over TLS when [`tls`](Self::tls) is set too (wss). Each binary
    /// message is one packet for the codec (so pair it with a codec that
    /// takes a whole message, not a length prefix).
    ///
    /// - A message (all its fragments together) of at most the session's
    ///   `max_packet_len` bytes is a packet; a larger one is refused from its
    ///   frame header, before it is buffered, with close code 1009. The
    ///   codec's own framing counts: over WebSocket, `LengthCodec`'s 4-byte
    ///   prefix is part of the message.
    /// - Each cron tick sends a ping; a ping is answered with a pong, and
    ///   pings and pongs from the peer count as activity
    ///   ([`Session::active`](crate::Session::active)) and as input for the
    ///   read timeout, as in getty.
    /// - A request that is not a WebSocket upgrade for `path` gets an HTTP
    ///   answer and no session: 404 for another path, 426 for a plain
    ///   request, 400 for a malformed upgrade, 426 naming version 13 for
    ///   another version, 431 for a head above 8 KiB.
    /// - Closing sends a Close frame whose code says why (1000 normal, 1001
    ///   when the server shuts down, 1002 protocol error, 1003 text refused,
    ///   1007 malformed, 1008 policy, 1009 too big, 1011 server error), then
    ///   waits up to the session's wait time for the peer's Close before
    ///   the connection ends.
    ///
    /// [`accept_text_messages`](Self::accept_text_messages) and
    /// [`check_origin`](Self::check_origin) may come before or after this.
    ///
    /// ```no_run
    /// use getty::Server;
    ///
    /// # async fn demo() -> std::io::Result<()> {
    /// let server: Server = Server::builder()
    ///     .check_origin(|origin| origin == Some("https://example.com"))
    ///     .websocket("/ws")
    ///     .bind("127.0.0.1:0")
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn websocket(mut self, path: impl Into<String>) -> Self {
        self.ws.path = Some(path.into());
        self
    }

    /// Accepts text messages as packets too (their UTF-8 bytes; a text
    /// message that is not UTF-8 closes the session with close code 1007).
    /// By default a text message closes the session with close code 1003.
    /// Applies once [`websocket`](Self::websocket) is set, before or after
    /// this call.
    ///
    /// ```
    /// let builder = getty::Server::builder().accept_text_messages(true).websocket("/ws");
    /// ```
    pub fn accept_text_messages(mut self, accept: bool) -> Self {
        self.ws.accept_text = accept;
        self
    }

    /// Admits a WebSocket handshake only when `check` approves its `Origin`
    /// header (`None` when absent); others get HTTP 403 and no session.
    /// Applies once [`websocket`](Self::websocket) is set, before or after
    /// this call.
    ///
    /// ```
    /// let builder = getty::Server::builder()
    ///     .check_origin(|origin| origin.is_some_and(|o| o.ends_with(".example.com")))
    ///     .websocket("/ws");
    /// ```
    pub fn check_origin(
        mut self,
        check: impl Fn(Option<&str>) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.ws.origin = Some(Arc::new(check));
        self
    }

    /// The input budget: at most this many bytes, over all the server's
    /// sessions together, held for input not yet handed to the stack
    /// (incomplete packets, packets not yet decoded). `None` turns it off.
    /// Default 256 MiB.
    ///
    /// When it is spent, sessions stop reading before they allocate more
    /// (their peers are held back by TCP flow control). A session with
    /// nothing buffered that finds no room asks the sessions holding part of
    /// a packet to give way: those still without room are closed with
    /// [`Error::InputBudget`](crate::Error::InputBudget), giving their share
    /// back, so that peers sending large packets and stalling cannot lock
    /// the others out. A session holding part of a packet waits for room at
    /// most its wait time, then is closed the same way. [`SessionStats::buffered_input`](crate::SessionStats::buffered_input)
    /// tells what one session holds, [`ServerHandle::buffered_input`] what
    /// all hold. A UDP datagram or WebSocket message is counted whole, so
    /// the budget can be passed by at most one message per session.
    ///
    /// ```
    /// let builder = getty::Server::builder().max_buffered_input(Some(64 << 20));
    /// ```
    pub fn max_buffered_input(mut self, max: Option<usize>) -> Self {
        self.max_buffered_input = max;
        self
    }

    /// How long the handshakes of a connection may take, from accept to a
    /// running session: TLS, the WebSocket upgrade, or both together on
    /// wss (one deadline, not one each). Default 10 s.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Binds a listening TCP socket (getty's `WithLocalAddress`). Port 0
    /// picks a free port; [`Server::local_addr`] tells which.
    ///
    /// `W`, the sessions' outgoing packet type, is the one
    /// [`serve`](Server::serve) is given: the compiler infers it from that
    /// call. A server that is never served names it
    /// (`let server: Server = ...` for `Bytes`).
    ///
    /// # Errors
    /// When the address cannot be resolved or bound.
    pub async fn bind<W>(self, addr: impl ToSocketAddrs) -> io::Result<Server<W>> {
        let listener = TcpListener::bind(addr).await?;
        self.from_listener(listener)
    }

    /// Serves on a TCP listener bound elsewhere.
    ///
    /// # Errors
    /// When the listener's local address cannot be read.
    pub fn from_listener<W>(self, listener: TcpListener) -> io::Result<Server<W>> {
        let addr = Addr::from(listener.local_addr()?);
        Ok(Server {
            listener: Listener::Tcp(listener),
            addr,
            builder: self,
            registry: Registry::default(),
        })
    }

    /// Binds a UDP socket: each peer that sends a datagram gets a virtual
    /// session, so the same listener code serves UDP; a reply goes back to
    /// that peer (getty's `UDPContext`). One datagram is one packet (pair it
    /// with a whole-message codec); a datagram above `max_packet_len`, or
    /// one the codec refuses, is dropped with an `Error` event and the
    /// session carries on. A virtual session closes after its read timeout
    /// (60 s unless the session config sets one), and at most
    /// [`max_sessions`](ServerBuilder::max_sessions) exist at once (4096
    /// unless set: every new source address makes one). The codec must hold
    /// no state between packets (`LengthCodec` and `BytesCodec` hold none),
    /// since a dropped datagram must not disturb the next.
    ///
    /// # Errors
    /// When the address cannot be resolved or bound, or TLS or WebSocket was
    /// configured (neither runs over UDP).
    pub async fn bind_udp<W>(self, addr: impl ToSocketAddrs) -> io::Result<Server<W>> {
        if self.tls.is_some() || self.ws.path.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "TLS and WebSocket do not run over UDP",
            ));
        }
        let socket = UdpSocket::bind(addr).await?;
        let addr = Addr::from(socket.local_addr()?);
        Ok(Server {
            listener: Listener::Udp(Arc::new(socket)),
            addr,
            builder: self,
            registry: Registry::default(),
        })
    }

    /// Binds a Unix domain socket at `path`. The socket file is removed when
    /// the server shuts down, if it is still the one the server created
    /// (same device and inode): a file that replaced it meanwhile, such as a
    /// successor server's socket, is left alone. A file already at `path` is
    /// an error (remove a stale one first).
    ///
    /// # Errors
    /// When the socket cannot be bound, or TLS was configured (TLS runs over
    /// TCP only).
    pub fn bind_unix<W>(self, path: impl AsRef<Path>) -> io::Result<Server<W>> {
        if self.tls.is_some() || self.ws.path.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "TLS and WebSocket servers bind a TCP address, not a Unix socket",
            ));
        }
        let path = path.as_ref().to_owned();
        let listener = UnixListener::bind(&path)?;
        let file = SocketFile::created_at(path.clone());
        Ok(Server {
            listener: Listener::Unix { listener, file },
            addr: Addr::Unix(Some(path)),
            builder: self,
            registry: Registry::default(),
        })
    }
}

/// A bound TCP server, ready to [`serve`](Server::serve).
///
/// ```no_run
/// use bytes::Bytes;
/// use getty::{codec::LengthCodec, new_session_fn, Request, Server, Session};
/// use std::{convert::Infallible, time::Duration};
///
/// # async fn demo() -> std::io::Result<()> {
/// let server = Server::builder().bind("127.0.0.1:0").await?;
/// println!("listening on {}", server.local_addr());
/// let handle = server.serve(
///     LengthCodec::new(),
///     new_session_fn(|_: &Session| {
///         Ok::<_, Infallible>(tower::service_fn(|req: Request<Bytes>| async move {
///             Ok::<_, Infallible>(req.into_message())
///         }))
///     }),
/// );
/// handle.shutdown(Duration::from_secs(5)).await;
/// # Ok(()) }
/// ```
pub struct Server<W = bytes::Bytes> {
    listener: Listener,
    addr: Addr,
    builder: ServerBuilder,
    registry: Registry<W>,
}

impl<W> fmt::Debug for Server<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("listener", &self.listener)
            .field("addr", &self.addr)
            .field("builder", &self.builder)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
enum Listener {
    Tcp(TcpListener),
    Unix {
        listener: UnixListener,
        file: SocketFile,
    },
    Udp(Arc<UdpSocket>),
}

/// The file a Unix-socket server created by binding, identified by device
/// and inode, so that shutting down removes that file and no other.
#[derive(Debug)]
struct SocketFile {
    path: PathBuf,
    /// `(device, inode)` right after binding; `None` if it could not be read.
    id: Option<(u64, u64)>,
}

impl SocketFile {
    fn created_at(path: PathBuf) -> Self {
        let id = std::fs::symlink_metadata(&path)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        SocketFile { path, id }
    }

    fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the file if it is still the socket this server created. A
    /// file that replaced it is left alone and logged. Between the check and
    /// the removal another process could swap the file again: no portable
    /// call removes a path only if it is a given inode.
    fn remove_if_ours(&self) {
        let path = self.path.display();
        let Some(ours) = self.id else {
            tracing::warn!(%path, "socket file left in place: its identity was unknown at bind");
            return;
        };
        match std::fs::symlink_metadata(&self.path) {
            Ok(m) if m.file_type().is_socket() && (m.dev(), m.ino()) == ours => {
                if let Err(e) = std::fs::remove_file(&self.path) {
                    tracing::warn!(error = %e, %path, "could not remove the socket file");
                }
            }
            Ok(_) => {
                tracing::info!(%path, "the socket file was replaced while serving; left in place")
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                tracing::debug!(%path, "the socket file was already removed")
            }
            Err(e) => tracing::warn!(error = %e, %path, "could not check the socket file"),
        }
    }
}

/// A freshly accepted connection, before any handshake.
enum Accepted {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Listener {
    async fn accept(&self) -> io::Result<(Accepted, Addr, Addr)> {
        match self {
            Listener::Tcp(l) => {
                let (stream, peer) = l.accept().await?;
                // Small packets must not wait for Nagle; batching is done above.
                let _ = stream.set_nodelay(true);
                let local = stream.local_addr().map_or(Addr::Unknown, Addr::from);
                Ok((Accepted::Tcp(stream), Addr::from(peer), local))
            }
            // The UDP endpoint has its own loop and never accepts.
            Listener::Udp(_) => std::future::pending().await,
            Listener::Unix { listener, file } => {
                let (stream, peer) = listener.accept().await?;
                let peer = Addr::Unix(peer.as_pathname().map(Path::to_path_buf));
                let local = Addr::Unix(Some(file.path().to_path_buf()));
                Ok((Accepted::Unix(stream), peer, local))
            }
        }
    }
}

impl Server {
    /// Starts building a server.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }
}

impl<W> Server<W> {
    /// The TCP address the server is bound to.
    ///
    /// # Panics
    /// On a Unix-socket server, which has no IP address: use
    /// [`addr`](Self::addr) there.
    pub fn local_addr(&self) -> SocketAddr {
        inet(&self.addr)
    }

    /// The address the server is bound to, whatever the transport.
    pub fn addr(&self) -> &Addr {
        &self.addr
    }

    /// The server's session registry, already before [`serve`](Self::serve):
    /// the one [`ServerHandle::sessions`] returns once serving. A
    /// new-session callback or a listener can hold it, to reach the other
    /// sessions (a chat server broadcasts through it). A session is in it
    /// before the new-session callback runs.
    ///
    /// ```no_run
    /// use getty::{codec::LinesCodec, new_session_fn, BoxError, EventListener, ListenerService, Registry, Server, Session};
    ///
    /// /// Relays each line to everybody else.
    /// struct Chat {
    ///     room: Registry<String>,
    /// }
    ///
    /// impl EventListener<String, String> for Chat {
    ///     fn on_message(&mut self, me: &Session<String>, line: String) -> Option<String> {
    ///         self.room.broadcast_except(me.id(), format!("{}: {line}", me.id()));
    ///         None
    ///     }
    /// }
    ///
    /// # async fn demo() -> std::io::Result<()> {
    /// let server = Server::builder().bind("127.0.0.1:0").await?;
    /// let room = server.registry();
    /// let handle = server.serve(
    ///     LinesCodec::new(),
    ///     new_session_fn(move |me: &Session<String>| {
    ///         room.broadcast_except(me.id(), format!("{} joined", me.id()));
    ///         Ok::<_, BoxError>(ListenerService::new(Chat { room: room.clone() }))
    ///     }),
    /// );
    /// # Ok(()) }
    /// ```
    pub fn registry(&self) -> Registry<W> {
        self.registry.clone()
    }

    /// Starts accepting on the current tokio runtime (getty's
    /// `RunEventLoop`) and returns at once with a handle.
    ///
    /// For each connection a [`Session`](crate::Session) is made, `make` (getty's
    /// `NewSessionCallback`: any tower `MakeService`, or
    /// [`new_session_fn`](crate::new_session_fn)) builds its service stack
    /// from it or refuses it, then `codec` makes its codec, and a task drives
    /// it until it closes. `codec` is any `Clone` tokio-util codec (each
    /// session gets a clone, e.g. `LinesCodec::new()`), or
    /// [`codec::per_session`](crate::codec::per_session)`(|session| ...)` to
    /// make each from its session.
    ///
    /// Accept errors never stop the server: a failed accept (EMFILE and the
    /// like) is logged and retried after a growing pause (5 ms to 1 s).
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn serve<MC, M, R>(self, codec: MC, make: M) -> ServerHandle<W>
    where
        MC: MakeCodecFor<R, W>,
        M: MakeSessionService<R, W>,
        R: Send + 'static,
        W: Send + 'static,
    {
        let shared = Arc::new(Shared {
            budget: builder_budget(&self.builder),
            registry: self.registry.clone(),
            slots: Arc::default(),
            stages: Stages::new(),
            tracker: TaskTracker::new(),
            addr: self.addr.clone(),
            accept: Mutex::new(None),
        });
        let Server {
            listener, builder, ..
        } = self;
        let serving = Arc::new(Serving {
            budget: shared.budget.clone(),
            builder,
            codec,
            make: tokio::sync::Mutex::new(make),
            shared: Arc::clone(&shared),
            packet: PhantomData,
        });
        let accept = tokio::spawn(serving.accept_loop(listener));
        *shared.accept.lock().unwrap_or_else(|p| p.into_inner()) = Some(accept);
        ServerHandle { shared }
    }
}

fn builder_budget(builder: &ServerBuilder) -> Option<Arc<InputBudget>> {
    builder
        .max_buffered_input
        .map(|max| Arc::new(InputBudget::new(max)))
}

struct Shared<W> {
    budget: Option<Arc<InputBudget>>,
    registry: Registry<W>,
    /// Sessions admitted and not yet ended, handshakes included.
    slots: Arc<std::sync::atomic::AtomicUsize>,
    /// How its sessions end (close, force, kill); `close` also stops
    /// accepting or reconnecting.
    stages: Stages,
    tracker: TaskTracker,
    addr: Addr,
    accept: Mutex<Option<JoinHandle<()>>>,
}

fn inet(addr: &Addr) -> SocketAddr {
    addr.as_socket_addr()
        .unwrap_or_else(|| panic!("{addr} has no IP address; use addr() for a Unix-socket server"))
}

/// A running server: its sessions and its shutdown. Cheap to clone.
///
/// ```no_run
/// # use bytes::Bytes;
/// # use std::time::Duration;
/// # async fn demo(handle: getty::ServerHandle) {
/// println!("{} sessions", handle.session_count());
/// handle.sessions().broadcast(Bytes::from_static(b"news"));
/// handle.shutdown(Duration::from_secs(5)).await;
/// # }
/// ```
pub struct ServerHandle<W = bytes::Bytes> {
    shared: Arc<Shared<W>>,
}

impl<W> Clone for ServerHandle<W> {
    fn clone(&self) -> Self {
        ServerHandle {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<W> fmt::Debug for ServerHandle<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerHandle")
            .field("addr", &self.shared.addr)
            .field("sessions", &self.shared.registry.len())
            .finish()
    }
}

impl<W> ServerHandle<W> {
    /// The TCP address the server is bound to.
    ///
    /// # Panics
    /// On a Unix-socket server: use [`addr`](Self::addr) there.
    pub fn local_addr(&self) -> SocketAddr {
        inet(&self.shared.addr)
    }

    /// The address the server is bound to, whatever the transport.
    pub fn addr(&self) -> &Addr {
        &self.shared.addr
    }

    /// The live sessions: count, get by id, iterate, broadcast.
    pub fn sessions(&self) -> &Registry<W> {
        &self.shared.registry
    }

    /// Bytes all the server's sessions hold for input not yet handed to
    /// the stack: what they charge against
    /// [`max_buffered_input`](ServerBuilder::max_buffered_input) (0 when
    /// the budget is off).
    pub fn buffered_input(&self) -> usize {
        self.shared.budget.as_ref().map_or(0, |b| b.used())
    }

    /// How many sessions are live.
    pub fn session_count(&self) -> usize {
        self.shared.registry.len()
    }

    /// Shuts down gracefully: stops accepting, closes every session (each
    /// finishes what it has and flushes within its wait time), and waits up
    /// to `deadline`. Sessions still running then are forced: their drain
    /// is cut short and a pending open or new-session callback abandoned,
    /// but `Close` still passes their stack. After a second `deadline`, a
    /// `Close` still being handled is abandoned. Returns once every session
    /// has ended: after about twice `deadline` at most, unless a handler
    /// blocks its thread.
    pub async fn shutdown(&self, deadline: Duration) {
        let shared = &self.shared;
        shared.stages.close.cancel();
        let accept = shared
            .accept
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(accept) = accept {
            let _ = accept.await;
        }
        shared.tracker.close();
        shared
            .registry
            .end_all(&shared.tracker, deadline, &shared.stages)
            .await;
    }
}
