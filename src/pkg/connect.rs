//! Opening client connections: TCP, TLS over TCP, Unix sockets.

use std::{io, time::Duration};

use tokio::net::TcpStream;

use super::{stream::Stream, Conn, PkgError, PkgOption, DEFAULT_MAX_LINE_LEN};
use crate::{
    tls::{parse_server_name, ClientTlsConfig},
    Addr,
};

/// The default bound on connecting (and the TLS handshake): 10 s.
///
/// ```
/// assert_eq!(getty::pkg::DEFAULT_CONNECT_TIMEOUT, std::time::Duration::from_secs(10));
/// ```
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings for opening a [`Conn`] (gtcp's `NewConn`, `NewConnTLS`,
/// `NewConnKeyCrt` with their `timeout` argument).
///
/// ```no_run
/// use getty::pkg::{ConnBuilder, PkgOption};
/// use std::time::Duration;
///
/// # async fn demo() -> Result<(), getty::pkg::PkgError> {
/// let conn = ConnBuilder::new()
///     .pkg_option(PkgOption::new().header_size(4))
///     .connect_timeout(Duration::from_secs(3))
///     .connect("127.0.0.1:8999")
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ConnBuilder {
    option: PkgOption,
    connect_timeout: Duration,
    tls: Option<ClientTlsConfig>,
    max_line_len: usize,
}

impl Default for ConnBuilder {
    fn default() -> Self {
        ConnBuilder {
            option: PkgOption::default(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            tls: None,
            max_line_len: DEFAULT_MAX_LINE_LEN,
        }
    }
}

impl ConnBuilder {
    /// gtcp's defaults, a 10 s connect timeout, plain TCP.
    ///
    /// ```
    /// let builder = getty::pkg::ConnBuilder::new();
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// The package option the connection's `send_pkg` / `recv_pkg` use.
    ///
    /// ```
    /// use getty::pkg::{ConnBuilder, PkgOption};
    /// let builder = ConnBuilder::new().pkg_option(PkgOption::new().header_size(1));
    /// ```
    pub fn pkg_option(mut self, option: PkgOption) -> Self {
        self.option = option;
        self
    }

    /// How long connecting (and the TLS handshake) may take. Default 10 s.
    ///
    /// ```
    /// use std::time::Duration;
    /// let builder = getty::pkg::ConnBuilder::new().connect_timeout(Duration::from_secs(1));
    /// ```
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Speaks TLS over the TCP connection (gtcp's `NewConnTLS`). The
    /// server is verified against the config's server name, or else the
    /// host part of the address.
    ///
    /// ```no_run
    /// use getty::{pkg::ConnBuilder, tls::ClientTlsConfig};
    /// # fn demo() -> Result<(), getty::tls::TlsError> {
    /// let builder = ConnBuilder::new().tls(ClientTlsConfig::with_root_file("ca.pem")?);
    /// # Ok(()) }
    /// ```
    pub fn tls(mut self, config: ClientTlsConfig) -> Self {
        self.tls = Some(config);
        self
    }

    /// The longest line `recv_line` accepts. Default
    /// [`DEFAULT_MAX_LINE_LEN`].
    ///
    /// ```
    /// let builder = getty::pkg::ConnBuilder::new().max_line_len(1024);
    /// ```
    pub fn max_line_len(mut self, max: usize) -> Self {
        self.max_line_len = max;
        self
    }

    /// Connects to `addr` (`host:port`) over TCP, or TLS when
    /// [`tls`](Self::tls) is set.
    ///
    /// # Errors
    /// [`PkgError::Connect`] when the address does not resolve, refuses, the
    /// TLS handshake fails, or the connect timeout runs out.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), getty::pkg::PkgError> {
    /// let conn = getty::pkg::ConnBuilder::new().connect("127.0.0.1:8999").await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(&self, addr: impl AsRef<str>) -> Result<Conn, PkgError> {
        let addr = addr.as_ref();
        let connect_error = |source| PkgError::Connect {
            addr: addr.to_owned(),
            source,
        };
        let attempt = async {
            let tcp = TcpStream::connect(addr).await?;
            // Small packages must not wait for Nagle.
            let _ = tcp.set_nodelay(true);
            let peer = Addr::from(tcp.peer_addr()?);
            let local = tcp.local_addr().map_or(Addr::Unknown, Addr::from);
            let stream = match &self.tls {
                None => Stream::Tcp(tcp),
                Some(tls) => {
                    let name = match &tls.server_name {
                        Some(name) => name.clone(),
                        None => parse_server_name(host_of(addr))
                            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?,
                    };
                    Stream::TlsClient(Box::new(tls.connector.connect(name, tcp).await?))
                }
            };
            io::Result::Ok((stream, peer, local))
        };
        let (stream, peer, local) = tokio::time::timeout(self.connect_timeout, attempt)
            .await
            .map_err(|_| {
                connect_error(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("connect timed out after {:?}", self.connect_timeout),
                ))
            })?
            .map_err(connect_error)?;
        Ok(Conn::from_stream(
            stream,
            peer,
            local,
            self.option,
            self.max_line_len,
        ))
    }

    /// Connects to a Unix domain socket at `path` (TLS is not used there).
    ///
    /// # Errors
    /// [`PkgError::Connect`] when nothing listens at `path` or the connect
    /// timeout runs out.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), getty::pkg::PkgError> {
    /// let conn = getty::pkg::ConnBuilder::new().connect_unix("/tmp/pkg.sock").await?;
    /// # Ok(()) }
    /// ```
    #[cfg(unix)]
    pub async fn connect_unix(&self, path: impl AsRef<std::path::Path>) -> Result<Conn, PkgError> {
        let path = path.as_ref();
        let connect_error = |source| PkgError::Connect {
            addr: format!("unix:{}", path.display()),
            source,
        };
        let stream =
            tokio::time::timeout(self.connect_timeout, tokio::net::UnixStream::connect(path))
                .await
                .map_err(|_| {
                    connect_error(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("connect timed out after {:?}", self.connect_timeout),
                    ))
                })?
                .map_err(connect_error)?;
        Ok(Conn::from_stream(
            Stream::Unix(stream),
            Addr::Unix(Some(path.to_owned())),
            Addr::Unix(None),
            self.option,
            self.max_line_len,
        ))
    }
}

/// The host part of `host:port` (`[v6]:port` included).
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}
