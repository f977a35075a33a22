//! The TCP server: bind, serve with a make-service, registry, graceful shutdown.

use std::{
    fmt, io,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    net::{TcpListener, TcpStream, ToSocketAddrs},
    task::JoinHandle,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tower::ServiceExt;
use tracing::Instrument;

use crate::{
    codec::MakeCodec, driver, Addr, EndpointKind, MakeSessionService, Registry, Session,
    SessionConfig,
};
use tokio_util::codec::Decoder;

/// Builds a [`Server`]: getty's server options.
///
/// ```no_run
/// use getty::{Server, SessionConfig};
/// use std::time::Duration;
///
/// # async fn demo() -> std::io::Result<()> {
/// let server = Server::builder()
///     .session_config(SessionConfig::default().cron_period(Some(Duration::from_secs(1))))
///     .max_sessions(10_000)
///     .bind("127.0.0.1:0")
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct ServerBuilder {
    config: SessionConfig,
    max_sessions: Option<usize>,
}

impl ServerBuilder {
    /// Settings every accepted session starts with.
    pub fn session_config(mut self, config: SessionConfig) -> Self {
        self.config = config;
        self
    }

    /// At most this many live sessions; a connection beyond the cap is
    /// accepted and closed at once (so its client is not left hanging), and
    /// logged. Default: no cap.
    pub fn max_sessions(mut self, max: usize) -> Self {
        self.max_sessions = Some(max);
        self
    }

    /// Binds a listening socket (getty's `WithLocalAddress`). Port 0 picks a
    /// free port; [`Server::local_addr`] tells which.
    ///
    /// # Errors
    /// When the address cannot be resolved or bound.
    pub async fn bind(self, addr: impl ToSocketAddrs) -> io::Result<Server> {
        let listener = TcpListener::bind(addr).await?;
        self.from_listener(listener)
    }

    /// Serves on a listener bound elsewhere.
    ///
    /// # Errors
    /// When the listener's local address cannot be read.
    pub fn from_listener(self, listener: TcpListener) -> io::Result<Server> {
        Ok(Server {
            local_addr: listener.local_addr()?,
            listener,
            builder: self,
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
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
    builder: ServerBuilder,
}

impl Server {
    /// Starts building a server.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// The address the server is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Starts accepting on the current tokio runtime (getty's
    /// `RunEventLoop`) and returns at once with a handle.
    ///
    /// For each connection a [`Session`] is made, `make` (getty's
    /// `NewSessionCallback`: any tower `MakeService`, or
    /// [`new_session_fn`](crate::new_session_fn)) builds its service stack
    /// from it or refuses it, then `codec` makes its codec, and a task drives
    /// it until it closes.
    ///
    /// Accept errors never stop the server: a failed accept (EMFILE and the
    /// like) is logged and retried after a growing pause (5 ms to 1 s).
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn serve<MC, M, R, W>(self, codec: MC, make: M) -> ServerHandle<W>
    where
        MC: MakeCodec<W>,
        MC::Codec: Decoder<Item = R>,
        M: MakeSessionService<R, W>,
        R: Send + 'static,
        W: Send + 'static,
    {
        let shared = Arc::new(Shared {
            registry: Registry::default(),
            stop: CancellationToken::new(),
            tracker: TaskTracker::new(),
            local_addr: self.local_addr,
            accept: Mutex::new(None),
        });
        let accept = tokio::spawn(accept_loop(
            self,
            Arc::new(codec),
            make,
            Arc::clone(&shared),
        ));
        *shared.accept.lock().unwrap_or_else(|p| p.into_inner()) = Some(accept);
        ServerHandle { shared }
    }
}

struct Shared<W> {
    registry: Registry<W>,
    stop: CancellationToken,
    tracker: TaskTracker,
    local_addr: SocketAddr,
    accept: Mutex<Option<JoinHandle<()>>>,
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
            .field("local_addr", &self.shared.local_addr)
            .field("sessions", &self.shared.registry.len())
            .finish()
    }
}

impl<W> ServerHandle<W> {
    /// The address the server is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// The live sessions: count, get by id, iterate, broadcast.
    pub fn sessions(&self) -> &Registry<W> {
        &self.shared.registry
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
        shared.stop.cancel();
        let accept = shared
            .accept
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(accept) = accept {
            let _ = accept.await;
        }
        shared.tracker.close();
        shared.registry.end_all(&shared.tracker, deadline).await;
    }
}

/// Whether an accept error concerns one connection only (retry at once)
/// rather than the process (back off).
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

async fn accept_loop<MC, M, R, W>(
    server: Server,
    codec: Arc<MC>,
    mut make: M,
    shared: Arc<Shared<W>>,
) where
    MC: MakeCodec<W>,
    MC::Codec: Decoder<Item = R>,
    M: MakeSessionService<R, W>,
    R: Send + 'static,
    W: Send + 'static,
{
    const MIN_BACKOFF: Duration = Duration::from_millis(5);
    const MAX_BACKOFF: Duration = Duration::from_secs(1);
    let Server {
        listener, builder, ..
    } = server;
    let mut backoff = MIN_BACKOFF;
    loop {
        let accepted = tokio::select! {
            _ = shared.stop.cancelled() => break,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(conn) => {
                backoff = MIN_BACKOFF;
                conn
            }
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "accept failed; backing off");
                tokio::select! {
                    _ = shared.stop.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        if builder
            .max_sessions
            .is_some_and(|max| shared.registry.len() >= max)
        {
            tracing::warn!(%peer, "session limit reached; connection refused");
            drop(stream);
            continue;
        }
        let session = new_session(&stream, peer, EndpointKind::TcpServer, &builder.config);
        let ready = tokio::select! {
            _ = shared.stop.cancelled() => break,
            ready = make.ready() => ready,
        };
        if let Err(e) = ready {
            tracing::error!(error = %e.into(), "new-session service failed; the server stops accepting");
            break;
        }
        let making = driver::call_make(&mut make, &session);
        let registered = shared.registry.register(&session);
        let codec = Arc::clone(&codec);
        let span = tracing::info_span!("session", id = session.id(), %peer, transport = "tcp");
        shared.tracker.spawn(
            async move {
                let _registered = registered;
                driver::serve_session(stream, session, making, &*codec).await;
            }
            .instrument(span),
        );
    }
}

/// A session for a fresh TCP connection.
pub(crate) fn new_session<W>(
    stream: &TcpStream,
    peer: SocketAddr,
    kind: EndpointKind,
    config: &SessionConfig,
) -> Session<W> {
    // Small packets must not wait for Nagle; batching is done above.
    let _ = stream.set_nodelay(true);
    let local = stream.local_addr().map_or(Addr::Unknown, Addr::from);
    Session::new(kind, local, Addr::from(peer), config.clone())
}
