//! The server: accept, hand each connection to an async function.

use std::{
    fmt,
    future::Future,
    io,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle, time::Instant};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{
    accept::{accept_loop, Listener},
    Conn, PkgError, PkgOption, DEFAULT_MAX_LINE_LEN,
};
use crate::{tls::ServerTlsConfig, Addr, BoxError};

/// Settings for a [`Server`] (gtcp's `NewServer`, `NewServerTLS`,
/// `NewServerKeyCrt`).
///
/// ```no_run
/// use getty::pkg::{PkgOption, Server};
///
/// # async fn demo() -> Result<(), getty::pkg::PkgError> {
/// let server = Server::builder()
///     .pkg_option(PkgOption::new().header_size(4))
///     .tls_pem_files("server.pem", "server.key")?
///     .bind("127.0.0.1:8999")
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ServerBuilder {
    pub(super) option: PkgOption,
    pub(super) max_line_len: usize,
    pub(super) tls: Option<ServerTlsConfig>,
    pub(super) handshake_timeout: Duration,
}

impl Default for ServerBuilder {
    fn default() -> Self {
        ServerBuilder {
            option: PkgOption::default(),
            max_line_len: DEFAULT_MAX_LINE_LEN,
            tls: None,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

impl ServerBuilder {
    /// gtcp's package defaults, plain TCP.
    ///
    /// ```
    /// let builder = getty::pkg::ServerBuilder::new();
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// The package option every accepted connection starts with.
    ///
    /// ```
    /// use getty::pkg::{PkgOption, ServerBuilder};
    /// let builder = ServerBuilder::new().pkg_option(PkgOption::new().header_size(1));
    /// ```
    pub fn pkg_option(mut self, option: PkgOption) -> Self {
        self.option = option;
        self
    }

    /// The longest line `recv_line` accepts on accepted connections.
    ///
    /// ```
    /// let builder = getty::pkg::ServerBuilder::new().max_line_len(1024);
    /// ```
    pub fn max_line_len(mut self, max: usize) -> Self {
        self.max_line_len = max;
        self
    }

    /// Speaks TLS (gtcp's `NewServerTLS`). Each handshake runs in the
    /// connection's own task, bounded by the
    /// [handshake timeout](Self::handshake_timeout); a failed one is logged
    /// and the handler never sees that connection.
    ///
    /// ```no_run
    /// use getty::{pkg::ServerBuilder, tls::ServerTlsConfig};
    /// # fn demo() -> Result<(), getty::tls::TlsError> {
    /// let builder = ServerBuilder::new().tls(ServerTlsConfig::from_pem_files("cert.pem", "key.pem")?);
    /// # Ok(()) }
    /// ```
    pub fn tls(mut self, config: ServerTlsConfig) -> Self {
        self.tls = Some(config);
        self
    }

    /// Speaks TLS with a certificate chain and key from PEM files (gtcp's
    /// `NewServerKeyCrt`).
    ///
    /// # Errors
    /// [`PkgError::Tls`] when a file cannot be read or the key does not fit.
    ///
    /// ```no_run
    /// # fn demo() -> Result<(), getty::pkg::PkgError> {
    /// let builder = getty::pkg::ServerBuilder::new().tls_pem_files("cert.pem", "key.pem")?;
    /// # Ok(()) }
    /// ```
    pub fn tls_pem_files(
        self,
        cert_chain: impl AsRef<std::path::Path>,
        key_file: impl AsRef<std::path::Path>,
    ) -> Result<Self, PkgError> {
        Ok(self.tls(ServerTlsConfig::from_pem_files(cert_chain, key_file)?))
    }

    /// How long a TLS handshake may take. Default 10 s.
    ///
    /// ```
    /// use std::time::Duration;
    /// let builder = getty::pkg::ServerBuilder::new().handshake_timeout(Duration::from_secs(3));
    /// ```
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Binds a TCP listener on `addr` (`host:port`; port 0 picks a free
    /// one, [`Server::local_addr`] tells which).
    ///
    /// # Errors
    /// [`PkgError::Bind`].
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), getty::pkg::PkgError> {
    /// let server = getty::pkg::ServerBuilder::new().bind("127.0.0.1:0").await?;
    /// # Ok(()) }
    /// ```
    pub async fn bind(self, addr: impl AsRef<str>) -> Result<Server, PkgError> {
        let addr = addr.as_ref();
        let bind_error = |source| PkgError::Bind {
            addr: addr.to_owned(),
            source,
        };
        let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
        let local = Addr::from(listener.local_addr().map_err(bind_error)?);
        Ok(Server::new(Listener::Tcp(listener), local, self))
    }

    /// Binds a Unix domain socket at `path`; the file is removed when the
    /// server shuts down. A file already at `path` is an error (remove a
    /// stale one first). TLS is not spoken there.
    ///
    /// # Errors
    /// [`PkgError::Bind`], also when TLS was configured.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), getty::pkg::PkgError> {
    /// let server = getty::pkg::ServerBuilder::new().bind_unix("/tmp/pkg.sock")?;
    /// # Ok(()) }
    /// ```
    #[cfg(unix)]
    pub fn bind_unix(self, path: impl AsRef<std::path::Path>) -> Result<Server, PkgError> {
        let path = path.as_ref();
        let bind_error = |source| PkgError::Bind {
            addr: format!("unix:{}", path.display()),
            source,
        };
        if self.tls.is_some() {
            return Err(bind_error(io::Error::new(
                io::ErrorKind::InvalidInput,
                "TLS runs over TCP only",
            )));
        }
        let listener = tokio::net::UnixListener::bind(path).map_err(bind_error)?;
        let local = Addr::Unix(Some(path.to_owned()));
        Ok(Server::new(
            Listener::Unix(listener, path.to_owned()),
            local,
            self,
        ))
    }
}

/// What a connection handler returns: `()`, or a `Result` whose error is
/// logged (with the peer's address) when the handler ends with it.
///
/// ```
/// use getty::pkg::{Conn, HandlerResult, PkgError};
///
/// async fn plain(_conn: Conn) {}
/// async fn fallible(mut conn: Conn) -> Result<(), PkgError> {
///     let pkg = conn.recv_pkg().await?;
///     conn.send_pkg(&pkg).await
/// }
/// fn takes<F: std::future::Future<Output = R>, R: HandlerResult>(_: fn(Conn) -> F) {}
/// takes(plain);
/// takes(fallible);
/// ```
pub trait HandlerResult {
    /// The error to log, if any.
    ///
    /// ```
    /// use getty::pkg::{HandlerResult, PkgError};
    /// assert!(().into_result().is_ok());
    /// assert!(Err::<(), _>(PkgError::Closed).into_result().is_err());
    /// ```
    fn into_result(self) -> Result<(), BoxError>;
}

impl HandlerResult for () {
    fn into_result(self) -> Result<(), BoxError> {
        Ok(())
    }
}

impl<E: Into<BoxError>> HandlerResult for Result<(), E> {
    fn into_result(self) -> Result<(), BoxError> {
        self.map_err(Into::into)
    }
}

/// A bound package server, ready to [`serve`](Server::serve) (gtcp's
/// `gtcp.Server`).
///
/// ```no_run
/// use getty::pkg::{Conn, PkgError, Server};
/// use std::time::Duration;
///
/// async fn echo(mut conn: Conn) -> Result<(), PkgError> {
///     loop {
///         match conn.recv_pkg().await {
///             Ok(pkg) => conn.send_pkg(&pkg).await?,
///             Err(PkgError::Closed) => return Ok(()),
///             Err(e) => return Err(e),
///         }
///     }
/// }
///
/// # async fn demo() -> Result<(), PkgError> {
/// let server = Server::bind("127.0.0.1:8999").await?;
/// println!("listening on {}", server.local_addr());
/// let handle = server.serve(echo);
/// // ... later
/// let report = handle.shutdown(Duration::from_secs(5)).await;
/// # Ok(()) }
/// ```
pub struct Server {
    pub(super) listener: Listener,
    pub(super) local: Addr,
    pub(super) settings: ServerBuilder,
    pub(super) token: CancellationToken,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Server {
    fn new(listener: Listener, local: Addr, settings: ServerBuilder) -> Self {
        Server {
            listener,
            local,
            settings,
            token: CancellationToken::new(),
        }
    }

    /// Binds a plain TCP server with default settings (gtcp's `NewServer`).
    ///
    /// # Errors
    /// [`PkgError::Bind`].
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), getty::pkg::PkgError> {
    /// let server = getty::pkg::Server::bind("127.0.0.1:0").await?;
    /// # Ok(()) }
    /// ```
    pub async fn bind(addr: impl AsRef<str>) -> Result<Server, PkgError> {
        ServerBuilder::new().bind(addr).await
    }

    /// A [`ServerBuilder`].
    ///
    /// ```
    /// let builder = getty::pkg::Server::builder();
    /// ```
    pub fn builder() -> ServerBuilder {
        ServerBuilder::new()
    }

    /// The bound address (gtcp's `GetListenedAddress`).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), getty::pkg::PkgError> {
    /// let server = getty::pkg::Server::bind("127.0.0.1:0").await?;
    /// let port = server.local_addr().as_socket_addr().map(|a| a.port());
    /// # Ok(()) }
    /// ```
    pub fn local_addr(&self) -> &Addr {
        &self.local
    }

    /// A token cancelled when [`ServerHandle::shutdown`] begins, so
    /// handlers can finish their conversation within the grace period
    /// (cancelling this child token does not stop the server).
    ///
    /// ```no_run
    /// use getty::pkg::{Conn, Server};
    /// # async fn demo() -> Result<(), getty::pkg::PkgError> {
    /// let server = Server::bind("127.0.0.1:0").await?;
    /// let stopping = server.shutdown_token();
    /// let handle = server.serve(move |mut conn: Conn| {
    ///     let stopping = stopping.clone();
    ///     async move {
    ///         tokio::select! {
    ///             _ = stopping.cancelled() => { let _ = conn.send_pkg(b"bye").await; }
    ///             _ = conn.recv_pkg() => {}
    ///         }
    ///     }
    /// });
    /// # Ok(()) }
    /// ```
    pub fn shutdown_token(&self) -> CancellationToken {
        self.token.child_token()
    }

    /// Serves: accepts connections in a task of its own and runs
    /// `handler(conn)` for each in a task of its own (gtcp's `Run`, which
    /// blocks; this returns a handle at once). A handler that panics is
    /// logged and its connection closed; the server goes on. Accept errors
    /// (EMFILE, say) are logged and retried after a pause, never fatal.
    ///
    /// Dropping the handle leaves the server running; stop it with
    /// [`ServerHandle::shutdown`].
    ///
    /// ```no_run
    /// use getty::pkg::{Conn, Server};
    /// # async fn demo() -> Result<(), getty::pkg::PkgError> {
    /// let handle = Server::bind("127.0.0.1:0").await?.serve(|mut conn: Conn| async move {
    ///     while let Ok(pkg) = conn.recv_pkg().await {
    ///         if conn.send_pkg(&pkg).await.is_err() {
    ///             break;
    ///         }
    ///     }
    /// });
    /// # Ok(()) }
    /// ```
    pub fn serve<H, Fut>(self, handler: H) -> ServerHandle
    where
        H: Fn(Conn) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HandlerResult,
    {
        let (stop_tx, stop_rx) = oneshot::channel();
        let active = Arc::new(AtomicUsize::new(0));
        let local = self.local.clone();
        let token = self.token.clone();
        let span = tracing::info_span!("pkg_server", addr = %local);
        let task = tokio::spawn(
            accept_loop(self, Arc::new(handler), stop_rx, Arc::clone(&active)).instrument(span),
        );
        ServerHandle {
            local,
            stop: stop_tx,
            task,
            active,
            token,
        }
    }
}

/// How a shutdown went.
///
/// ```no_run
/// # async fn demo(handle: getty::pkg::ServerHandle) {
/// let report = handle.shutdown(std::time::Duration::from_secs(5)).await;
/// println!("{} handlers finished in time, {} aborted", report.drained, report.aborted);
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Handlers that were running when shutdown began and ended within the
    /// deadline.
    pub drained: usize,
    /// Handlers still running at the deadline, aborted (their connections
    /// closed).
    pub aborted: usize,
}

/// A running [`Server`]: its address, its live connection count, and
/// graceful shutdown.
///
/// ```no_run
/// # async fn demo(handle: getty::pkg::ServerHandle) {
/// println!("{} connections on {}", handle.connections(), handle.local_addr());
/// handle.shutdown(std::time::Duration::from_secs(5)).await;
/// # }
/// ```
#[derive(Debug)]
pub struct ServerHandle {
    local: Addr,
    stop: oneshot::Sender<Instant>,
    task: JoinHandle<ShutdownReport>,
    active: Arc<AtomicUsize>,
    token: CancellationToken,
}

impl ServerHandle {
    /// The bound address.
    ///
    /// ```no_run
    /// # async fn demo(handle: getty::pkg::ServerHandle) {
    /// println!("listening on {}", handle.local_addr());
    /// # }
    /// ```
    pub fn local_addr(&self) -> &Addr {
        &self.local
    }

    /// Connections whose handler (or TLS handshake) is running now.
    ///
    /// ```no_run
    /// # async fn demo(handle: getty::pkg::ServerHandle) {
    /// assert_eq!(handle.connections(), 0);
    /// # }
    /// ```
    pub fn connections(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    /// A token cancelled when shutdown begins (see
    /// [`Server::shutdown_token`]).
    ///
    /// ```no_run
    /// # async fn demo(handle: getty::pkg::ServerHandle) {
    /// let stopping = handle.shutdown_token();
    /// # }
    /// ```
    pub fn shutdown_token(&self) -> CancellationToken {
        self.token.child_token()
    }

    /// Shuts down gracefully (gtcp's `Close`): stops accepting at once
    /// (the listening socket is closed, a Unix socket file removed),
    /// cancels the [shutdown token](Server::shutdown_token), waits up to
    /// `deadline` for running handlers to end, then aborts the rest, which
    /// closes their connections.
    ///
    /// ```no_run
    /// # async fn demo(handle: getty::pkg::ServerHandle) {
    /// let report = handle.shutdown(std::time::Duration::from_secs(5)).await;
    /// assert_eq!(report.aborted, 0);
    /// # }
    /// ```
    pub async fn shutdown(self, deadline: Duration) -> ShutdownReport {
        let _ = self.stop.send(Instant::now() + deadline);
        match self.task.await {
            Ok(report) => report,
            Err(e) => {
                tracing::error!(error = %e, "package server task failed");
                ShutdownReport::default()
            }
        }
    }
}
