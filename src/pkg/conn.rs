//! The connection: both halves in one value, gtcp's `Conn`.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use bytes::Bytes;

use super::{stream::Stream, ConnBuilder, PkgError, PkgOption, ReadHalf, WriteHalf};
use crate::{tls::ClientTlsConfig, Addr};

/// One connection speaking packages (gtcp's `Conn`): `send_pkg`,
/// `recv_pkg`, `send_recv_pkg`, each with a `_timeout` form and a `_with`
/// form taking a [`PkgOption`] for that call; raw `send`, `recv(n)` and
/// `recv_line`.
///
/// ```no_run
/// use getty::pkg::Conn;
/// use std::time::Duration;
///
/// # async fn demo() -> Result<(), getty::pkg::PkgError> {
/// let mut conn = Conn::connect("127.0.0.1:8999").await?;
/// let reply = conn.send_recv_pkg_timeout(b"hello", Duration::from_secs(3)).await?;
/// conn.close().await?;
/// # Ok(()) }
/// ```
///
/// `send_recv_pkg` suits a strict request/reply exchange. When both sides
/// may send at any time (the seed's "asynchronous full duplex"), a reply
/// read right after a send may be some other package: split the connection
/// instead, read in one loop, send from anywhere (see [`into_split`](Self::into_split)).
///
/// Dropping the `Conn` closes the socket once no [`WriteHalf`] clone is
/// left; [`close`](Self::close) tells the peer first.
#[derive(Debug)]
pub struct Conn {
    reader: ReadHalf,
    writer: WriteHalf,
}

impl Conn {
    pub(crate) fn from_stream(
        stream: Stream,
        peer: Addr,
        local: Addr,
        option: PkgOption,
        max_line_len: usize,
    ) -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let (read, write) = tokio::io::split(stream);
        Conn {
            reader: ReadHalf::new(read, peer.clone(), local.clone(), option, max_line_len, id),
            writer: WriteHalf::new(write, peer, local, option, id),
        }
    }

    /// Connects over TCP to `addr` (`host:port`) with default settings
    /// (gtcp's `NewConn`). [`ConnBuilder`] sets more.
    ///
    /// # Errors
    /// [`PkgError::Connect`].
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), getty::pkg::PkgError> {
    /// let conn = getty::pkg::Conn::connect("127.0.0.1:8999").await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(addr: impl AsRef<str>) -> Result<Conn, PkgError> {
        ConnBuilder::new().connect(addr).await
    }

    /// Connects over TLS (gtcp's `NewConnTLS` / `NewConnKeyCrt`).
    ///
    /// # Errors
    /// [`PkgError::Connect`], including a failed handshake.
    ///
    /// ```no_run
    /// use getty::{pkg::Conn, tls::ClientTlsConfig};
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let tls = ClientTlsConfig::with_root_file("ca.pem")?.server_name("localhost")?;
    /// let conn = Conn::connect_tls("127.0.0.1:8999", tls).await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect_tls(
        addr: impl AsRef<str>,
        config: ClientTlsConfig,
    ) -> Result<Conn, PkgError> {
        ConnBuilder::new().tls(config).connect(addr).await
    }

    /// Connects to a Unix domain socket.
    ///
    /// # Errors
    /// [`PkgError::Connect`].
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), getty::pkg::PkgError> {
    /// let conn = getty::pkg::Conn::connect_unix("/tmp/pkg.sock").await?;
    /// # Ok(()) }
    /// ```
    #[cfg(unix)]
    pub async fn connect_unix(path: impl AsRef<std::path::Path>) -> Result<Conn, PkgError> {
        ConnBuilder::new().connect_unix(path).await
    }

    /// A [`ConnBuilder`].
    ///
    /// ```
    /// let builder = getty::pkg::Conn::builder().max_line_len(256);
    /// ```
    pub fn builder() -> ConnBuilder {
        ConnBuilder::new()
    }

    /// The peer's address (gtcp's `RemoteAddr`).
    ///
    /// ```no_run
    /// # async fn demo(conn: getty::pkg::Conn) {
    /// println!("connected to {}", conn.peer_addr());
    /// # }
    /// ```
    pub fn peer_addr(&self) -> &Addr {
        self.reader.peer_addr()
    }

    /// This end's address (gtcp's `LocalAddr`).
    ///
    /// ```no_run
    /// # async fn demo(conn: getty::pkg::Conn) {
    /// println!("connected from {}", conn.local_addr());
    /// # }
    /// ```
    pub fn local_addr(&self) -> &Addr {
        self.reader.local_addr()
    }

    /// The package option the plain `send_pkg` / `recv_pkg` use.
    ///
    /// ```no_run
    /// # async fn demo(conn: getty::pkg::Conn) {
    /// assert_eq!(conn.pkg_option().get_header_size(), 2);
    /// # }
    /// ```
    pub fn pkg_option(&self) -> PkgOption {
        self.reader.pkg_option()
    }

    /// Sets the package option both halves use from now on.
    ///
    /// ```no_run
    /// # async fn demo(mut conn: getty::pkg::Conn) {
    /// conn.set_pkg_option(getty::pkg::PkgOption::new().header_size(4));
    /// # }
    /// ```
    pub fn set_pkg_option(&mut self, option: PkgOption) {
        self.reader.set_pkg_option(option);
        self.writer.set_pkg_option(option);
    }

    /// A sending handle for another task, while this `Conn` keeps reading
    /// and sending.
    ///
    /// ```no_run
    /// # async fn demo(mut conn: getty::pkg::Conn) {
    /// let writer = conn.writer();
    /// tokio::spawn(async move { writer.send_pkg(b"heartbeat").await });
    /// let reply = conn.recv_pkg().await;
    /// # }
    /// ```
    pub fn writer(&self) -> WriteHalf {
        self.writer.clone()
    }

    /// Borrows the two halves at once: read in one place, send in another
    /// (in a `select!`, say), without giving up the `Conn`.
    ///
    /// ```no_run
    /// # async fn demo(mut conn: getty::pkg::Conn) -> Result<(), getty::pkg::PkgError> {
    /// let (reader, writer) = conn.split();
    /// let pkg = reader.recv_pkg().await?;
    /// writer.send_pkg(&pkg).await?;
    /// # Ok(()) }
    /// ```
    pub fn split(&mut self) -> (&mut ReadHalf, &WriteHalf) {
        (&mut self.reader, &self.writer)
    }

    /// Splits into an owned reading half and a cloneable sending half: the
    /// full-duplex model (one reader loop, writers anywhere).
    ///
    /// ```no_run
    /// # async fn demo(conn: getty::pkg::Conn) -> Result<(), getty::pkg::PkgError> {
    /// let (mut reader, writer) = conn.into_split();
    /// tokio::spawn(async move { writer.send_pkg(b"heartbeat").await });
    /// let pkg = reader.recv_pkg().await?;
    /// # Ok(()) }
    /// ```
    pub fn into_split(self) -> (ReadHalf, WriteHalf) {
        (self.reader, self.writer)
    }

    /// Puts two halves of the same connection back together.
    ///
    /// # Errors
    /// Gives the halves back when they belong to different connections.
    ///
    /// ```no_run
    /// # async fn demo(conn: getty::pkg::Conn) {
    /// let (reader, writer) = conn.into_split();
    /// let conn = getty::pkg::Conn::reunite(reader, writer).expect("same connection");
    /// # }
    /// ```
    // The Ok variant (a Conn) is as large as the halves given back, so
    // boxing the error would not make the Result smaller.
    #[allow(clippy::result_large_err)]
    pub fn reunite(reader: ReadHalf, writer: WriteHalf) -> Result<Conn, (ReadHalf, WriteHalf)> {
        if reader.belongs_to(&writer) {
            Ok(Conn { reader, writer })
        } else {
            Err((reader, writer))
        }
    }

    /// [`WriteHalf::send_pkg`] (gtcp's `SendPkg`).
    ///
    /// # Errors
    /// As `WriteHalf::send_pkg`.
    ///
    /// ```no_run
    /// # async fn demo(conn: getty::pkg::Conn) -> Result<(), getty::pkg::PkgError> {
    /// conn.send_pkg(b"hello").await?;
    /// # Ok(()) }
    /// ```
    pub async fn send_pkg(&self, data: impl AsRef<[u8]>) -> Result<(), PkgError> {
        self.writer.send_pkg(data).await
    }

    /// [`WriteHalf::send_pkg_with`].
    ///
    /// # Errors
    /// As `WriteHalf::send_pkg`.
    ///
    /// ```no_run
    /// # async fn demo(conn: getty::pkg::Conn) -> Result<(), getty::pkg::PkgError> {
    /// conn.send_pkg_with(b"hello", &getty::pkg::PkgOption::new().header_size(4)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn send_pkg_with(
        &self,
        data: impl AsRef<[u8]>,
        option: &PkgOption,
    ) -> Result<(), PkgError> {
        self.writer.send_pkg_with(data, option).await
    }

    /// [`WriteHalf::send_pkg_timeout`] (gtcp's `SendPkgWithTimeout`).
    ///
    /// # Errors
    /// As `WriteHalf::send_pkg_timeout`.
    ///
    /// ```no_run
    /// # async fn demo(conn: getty::pkg::Conn) -> Result<(), getty::pkg::PkgError> {
    /// conn.send_pkg_timeout(b"hello", std::time::Duration::from_secs(1)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn send_pkg_timeout(
        &self,
        data: impl AsRef<[u8]>,
        timeout: Duration,
    ) -> Result<(), PkgError> {
        self.writer.send_pkg_timeout(data, timeout).await
    }

    /// [`WriteHalf::send_pkg_timeout_with`].
    ///
    /// # Errors
    /// As `WriteHalf::send_pkg_timeout`.
    ///
    /// ```no_run
    /// # async fn demo(conn: getty::pkg::Conn) -> Result<(), getty::pkg::PkgError> {
    /// use getty::pkg::PkgOption;
    /// let opt = PkgOption::new().header_size(1);
    /// conn.send_pkg_timeout_with(b"hi", std::time::Duration::from_secs(1), &opt).await?;
    /// # Ok(()) }
    /// ```
    pub async fn send_pkg_timeout_with(
        &self,
        data: impl AsRef<[u8]>,
        timeout: Duration,
        option: &PkgOption,
    ) -> Result<(), PkgError> {
        self.writer
            .send_pkg_timeout_with(data, timeout, option)
            .await
    }

    /// [`ReadHalf::recv_pkg`] (gtcp's `RecvPkg`).
    ///
    /// # Errors
    /// As `ReadHalf::recv_pkg`.
    ///
    /// ```no_run
    /// # async fn demo(mut conn: getty::pkg::Conn) -> Result<(), getty::pkg::PkgError> {
    /// let pkg = conn.recv_pkg().await?;
    /// # Ok(()) }
    /// ```
    pub async fn recv_pkg(&mut self) -> Result<Bytes, PkgError> {
        self.reader.recv_pkg().await
    }

    /// [`ReadHalf::recv_pkg_with`].
    ///
    /// # Errors
    /// As `ReadHalf::recv_pkg`.
    ///
    /// ```no_run
    /// # async fn demo(mut conn: getty::pkg::Conn) -> Result<(), getty::pkg::PkgError> {
    /// let pkg = conn.recv_pkg_with(&getty::pkg::PkgOption::new().header_size(3)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn recv_pkg_with(&mut self, option: &PkgOption) -> Result<Bytes, PkgError> {
        self.reader.recv_pkg_with(option).await
    }

    /// [`ReadHalf::recv_pkg_timeout`] (gtcp's `RecvPkgWithTimeout`).
    ///
    /// # Errors
    /// As `ReadHalf::recv_pkg_timeout`.
    ///
    /// ```no_run
    /// # async fn demo(mut conn: getty::pkg::Conn) -> Result<(), getty::pkg::PkgError> {
    /// let pkg = conn.recv_pkg_timeout(std::time::Duration::from_secs(1)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn recv_pkg_timeout(&mut self, timeout: Duration) -> Result<Bytes, PkgError> {
        self.reader.recv_pkg_timeout(timeout).await
    }

    /// [`ReadHalf::recv_pkg_timeout_with`].
    ///
    /// # Errors
    /// As `ReadHalf::recv_pkg_timeout`.
    ///
    /// ```no_run
    /// # async fn demo(mut conn: getty::pkg::Conn) -> Result<(), getty::pkg::PkgError> {
    /// let opt = getty::pkg::PkgOption::new().header_size(4);
    /// let pkg = conn.recv_pkg_timeout_with(std::time::Duration::from_secs(1), &opt).await?;
    /// # Ok(()) }
    /// ```
    pub async fn recv_pkg_timeout_with(
        &mut self,
        timeout: Duration,
        option: &PkgOption,
    ) -> Result<Bytes, PkgError> {
        self.reader.recv_pkg_timeout_with(timeout, option).await
    }

    /// Sends a package, then receives one (gtcp's `SendRecvPkg`).
    ///
    /// # Errors
    /// As `send_pkg`, then as `recv_pkg`.
    ///
    /// ```no_run
    /// # async fn demo(mut conn: getty::pkg::Conn) -> Result<(), getty::pkg::PkgError> {
    /// let reply = conn.send_recv_pkg(b"ping").await?;
    /// # Ok(()) }
    /// ```
    pub async fn send_recv_pkg(&mut self, data: impl AsRef<[u8]>) -> Result<Bytes, PkgError> {
        self.writer.send_pkg(data).await?;
        self.reader.recv_pkg().await
    }

    /// [`send_recv_pkg`](Self::send_recv_pkg) with options for this call.
    ///
    /// # Errors
    /// As `send_recv_pkg`.
    ///
    /// ```no_run
    /// # async fn demo(mut conn: getty::pkg::Conn) -> Result<(), getty::pkg::PkgError> {
    /// let opt = getty::pkg::PkgOption::new().header_size(4);
    /// let reply = conn.send_recv_pkg_with(b"ping", &opt).await?;
    /// # Ok(()) }
    /// ```
    pub async fn send_recv_pkg_with(
        &mut self,
        data: impl AsRef<[u8]>,
        option: &PkgOption,
    ) -> Result<Bytes, PkgError> {
        self.writer.send_pkg_with(data, option).await?;
        self.reader.recv_pkg_with(option).await
    }

    /// [`send_recv_pkg`](Self::send_recv_pkg) where the send and the receive
    /// each get `timeout` (gtcp's `SendRecvPkgWithTimeout`).
    ///
    /// # Errors
    /// As `send_recv_pkg`, and [`PkgError::Timeout`].
    ///
    /// ```no_run
    /// # async fn demo(mut conn: getty::pkg::Conn) -> Result<(), getty::pkg::PkgError> {
    /// let reply = conn.send_recv_pkg_timeout(b"ping", std::time::Duration::from_secs(1)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn send_recv_pkg_timeout(
        &mut self,
        data: impl AsRef<[u8]>,
        timeout: Duration,
    ) -> Result<Bytes, PkgError> {
        self.writer.send_pkg_timeout(data, timeout).await?;
        self.reader.recv_pkg_timeout(timeout).await
    }

    /// [`send_recv_pkg_timeout`](Self::send_recv_pkg_timeout) with options
    /// for this call.
    ///
    /// # Errors
    /// As `send_recv_pkg_timeout`.
    ///
    /// ```no_run
    /// # async fn demo(mut conn: getty::pkg::Conn) -> Result<(), getty::pkg::PkgError> {
    /// let opt = getty::pkg::PkgOption::new().header_size(4);
    /// let reply = conn
    ///     .send_recv_pkg_timeout_with(b"ping", std::time::Duration::from_secs(1), &opt)
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn send_recv_pkg_timeout_with(
        &mut self,
        data: impl AsRef<[u8]>,
        timeout: Duration,
        option: &PkgOption,
    ) -> Result<Bytes, PkgError> {
        self.writer
            .send_pkg_timeout_with(data, timeout, option)
            .await?;
        self.reader.recv_pkg_timeout_with(timeout, option).await
    }

    /// [`WriteHalf::send`]: raw bytes (gtcp's `Send`).
    ///
    /// # Errors
    /// As `WriteHalf::send`.
    ///
    /// ```no_run
    /// # async fn demo(conn: getty::pkg::Conn) -> Result<(), getty::pkg::PkgError> {
    /// conn.send(b"PING\r\n").await?;
    /// # Ok(()) }
    /// ```
    pub async fn send(&self, data: impl AsRef<[u8]>) -> Result<(), PkgError> {
        self.writer.send(data).await
    }

    /// [`WriteHalf::send_timeout`] (gtcp's `SendWithTimeout`).
    ///
    /// # Errors
    /// As `WriteHalf::send_timeout`.
    ///
    /// ```no_run
    /// # async fn demo(conn: getty::pkg::Conn) -> Result<(), getty::pkg::PkgError> {
    /// conn.send_timeout(b"PING\r\n", std::time::Duration::from_secs(1)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn send_timeout(
        &self,
        data: impl AsRef<[u8]>,
        timeout: Duration,
    ) -> Result<(), PkgError> {
        self.writer.send_timeout(data, timeout).await
    }

    /// [`ReadHalf::recv`]: exactly `n` raw bytes (gtcp's `Recv`).
    ///
    /// # Errors
    /// As `ReadHalf::recv`.
    ///
    /// ```no_run
    /// # async fn demo(mut conn: getty::pkg::Conn) -> Result<(), getty::pkg::PkgError> {
    /// let four = conn.recv(4).await?;
    /// # Ok(()) }
    /// ```
    pub async fn recv(&mut self, n: usize) -> Result<Bytes, PkgError> {
        self.reader.recv(n).await
    }

    /// [`ReadHalf::recv_timeout`] (gtcp's `RecvWithTimeout`).
    ///
    /// # Errors
    /// As `ReadHalf::recv_timeout`.
    ///
    /// ```no_run
    /// # async fn demo(mut conn: getty::pkg::Conn) -> Result<(), getty::pkg::PkgError> {
    /// let four = conn.recv_timeout(4, std::time::Duration::from_secs(1)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn recv_timeout(&mut self, n: usize, timeout: Duration) -> Result<Bytes, PkgError> {
        self.reader.recv_timeout(n, timeout).await
    }

    /// [`ReadHalf::recv_line`] (gtcp's `RecvLine`).
    ///
    /// # Errors
    /// As `ReadHalf::recv_line`.
    ///
    /// ```no_run
    /// # async fn demo(mut conn: getty::pkg::Conn) -> Result<(), getty::pkg::PkgError> {
    /// let line = conn.recv_line().await?;
    /// # Ok(()) }
    /// ```
    pub async fn recv_line(&mut self) -> Result<Bytes, PkgError> {
        self.reader.recv_line().await
    }

    /// [`ReadHalf::recv_line_timeout`].
    ///
    /// # Errors
    /// As `ReadHalf::recv_line_timeout`.
    ///
    /// ```no_run
    /// # async fn demo(mut conn: getty::pkg::Conn) -> Result<(), getty::pkg::PkgError> {
    /// let line = conn.recv_line_timeout(std::time::Duration::from_secs(1)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn recv_line_timeout(&mut self, timeout: Duration) -> Result<Bytes, PkgError> {
        self.reader.recv_line_timeout(timeout).await
    }

    /// Sends raw bytes, then receives exactly `n` (gtcp's `SendRecv`).
    ///
    /// # Errors
    /// As `send`, then as `recv`.
    ///
    /// ```no_run
    /// # async fn demo(mut conn: getty::pkg::Conn) -> Result<(), getty::pkg::PkgError> {
    /// let pong = conn.send_recv(b"PING", 4).await?;
    /// # Ok(()) }
    /// ```
    pub async fn send_recv(&mut self, data: impl AsRef<[u8]>, n: usize) -> Result<Bytes, PkgError> {
        self.writer.send(data).await?;
        self.reader.recv(n).await
    }

    /// [`send_recv`](Self::send_recv) where the send and the receive each
    /// get `timeout` (gtcp's `SendRecvWithTimeout`).
    ///
    /// # Errors
    /// As `send_recv`, and [`PkgError::Timeout`].
    ///
    /// ```no_run
    /// # async fn demo(mut conn: getty::pkg::Conn) -> Result<(), getty::pkg::PkgError> {
    /// let pong = conn.send_recv_timeout(b"PING", 4, std::time::Duration::from_secs(1)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn send_recv_timeout(
        &mut self,
        data: impl AsRef<[u8]>,
        n: usize,
        timeout: Duration,
    ) -> Result<Bytes, PkgError> {
        self.writer.send_timeout(data, timeout).await?;
        self.reader.recv_timeout(n, timeout).await
    }

    /// Closes the connection: [`WriteHalf::close`] (the peer reads the
    /// end), then drops this value. Clones of the writer made earlier can
    /// no longer send.
    ///
    /// # Errors
    /// A socket error while shutting down.
    ///
    /// ```no_run
    /// # async fn demo(conn: getty::pkg::Conn) -> Result<(), getty::pkg::PkgError> {
    /// conn.close().await?;
    /// # Ok(()) }
    /// ```
    pub async fn close(self) -> Result<(), PkgError> {
        self.writer.close().await
    }

    /// Whether the pool may hand this connection to another user.
    pub(crate) fn is_reusable(&mut self) -> bool {
        self.writer.is_reusable() && self.reader.is_reusable()
    }
}
