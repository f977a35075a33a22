//! The receiving half: packages, exact byte counts and lines from one
//! buffer, so the three can be mixed on one connection.

use std::{cmp, fmt, io, time::Duration};

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use tokio::io::{AsyncReadExt, ReadHalf as IoReadHalf};
use tokio_util::codec::Decoder;

use super::{
    codec::RESERVE_STEP, retry::retrying, stream::Stream, PkgCodec, PkgError, PkgOption, WriteHalf,
};
use crate::Addr;

/// What a read asks the socket for when the buffer is full.
const READ_CHUNK: usize = 8 * 1024;

/// The default longest line [`ReadHalf::recv_line`] accepts: 64 KiB.
///
/// ```
/// assert_eq!(getty::pkg::DEFAULT_MAX_LINE_LEN, 64 * 1024);
/// ```
pub const DEFAULT_MAX_LINE_LEN: usize = 64 * 1024;

/// The receiving half of a [`Conn`](super::Conn): `recv_pkg`, `recv(n)`
/// and `recv_line`.
///
/// One task owns it (its calls take `&mut self`) and reads in a loop, the
/// seed's full-duplex model. Every call is cancel safe: bytes of a package
/// that has not wholly arrived stay buffered when a timeout (or a
/// `select!`) drops the call, and the next call goes on from them.
///
/// What a peer sends can make it allocate only in proportion to what has
/// arrived (the buffer grows at most 64 KiB ahead of the data): a declared
/// length is checked against the max data size before anything is
/// reserved, and a line against `max_line_len`.
///
/// ```no_run
/// use getty::pkg::{Conn, PkgError};
///
/// # async fn demo() -> Result<(), PkgError> {
/// let (mut reader, writer) = Conn::connect("127.0.0.1:8999").await?.into_split();
/// loop {
///     match reader.recv_pkg().await {
///         Ok(pkg) => writer.send_pkg(&pkg).await?,
///         Err(PkgError::Closed) => break, // gtcp: err.Error() == "EOF"
///         Err(e) => return Err(e),
///     }
/// }
/// # Ok(()) }
/// ```
pub struct ReadHalf {
    io: IoReadHalf<Stream>,
    buf: BytesMut,
    option: PkgOption,
    max_line_len: usize,
    peer: Addr,
    local: Addr,
    /// A call failed (or timed out): the stream may hold a late or partial
    /// reply, so the pool must not hand the connection to someone else.
    tainted: bool,
    /// The connection's identity, shared with its writer (for `reunite`).
    id: u64,
}

impl fmt::Debug for ReadHalf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadHalf")
            .field("peer", &self.peer)
            .field("buffered", &self.buf.len())
            .field("option", &self.option)
            .field("max_line_len", &self.max_line_len)
            .finish_non_exhaustive()
    }
}

impl ReadHalf {
    pub(crate) fn new(
        io: IoReadHalf<Stream>,
        peer: Addr,
        local: Addr,
        option: PkgOption,
        max_line_len: usize,
        id: u64,
    ) -> Self {
        ReadHalf {
            id,
            io,
            buf: BytesMut::with_capacity(READ_CHUNK),
            option,
            max_line_len,
            peer,
            local,
            tainted: false,
        }
    }

    /// The peer's address (gtcp's `RemoteAddr`).
    ///
    /// ```no_run
    /// # async fn demo(conn: getty::pkg::Conn) {
    /// let (reader, _writer) = conn.into_split();
    /// println!("reading from {}", reader.peer_addr());
    /// # }
    /// ```
    pub fn peer_addr(&self) -> &Addr {
        &self.peer
    }

    /// This end's address (gtcp's `LocalAddr`).
    ///
    /// ```no_run
    /// # async fn demo(conn: getty::pkg::Conn) {
    /// let (reader, _writer) = conn.into_split();
    /// println!("reading on {}", reader.local_addr());
    /// # }
    /// ```
    pub fn local_addr(&self) -> &Addr {
        &self.local
    }

    /// The package option [`recv_pkg`](Self::recv_pkg) uses.
    ///
    /// ```no_run
    /// # async fn demo(conn: getty::pkg::Conn) {
    /// let (reader, _writer) = conn.into_split();
    /// assert_eq!(reader.pkg_option().get_header_size(), 2);
    /// # }
    /// ```
    pub fn pkg_option(&self) -> PkgOption {
        self.option
    }

    /// Sets the package option [`recv_pkg`](Self::recv_pkg) uses.
    ///
    /// ```no_run
    /// # async fn demo(conn: getty::pkg::Conn) {
    /// use getty::pkg::PkgOption;
    /// let (mut reader, _writer) = conn.into_split();
    /// reader.set_pkg_option(PkgOption::new().header_size(4).max_data_size(1 << 20));
    /// # }
    /// ```
    pub fn set_pkg_option(&mut self, option: PkgOption) {
        self.option = option;
    }

    /// The longest line [`recv_line`](Self::recv_line) accepts, without
    /// its line ending.
    ///
    /// ```no_run
    /// # async fn demo(conn: getty::pkg::Conn) {
    /// let (reader, _writer) = conn.into_split();
    /// assert_eq!(reader.max_line_len(), getty::pkg::DEFAULT_MAX_LINE_LEN);
    /// # }
    /// ```
    pub fn max_line_len(&self) -> usize {
        self.max_line_len
    }

    /// Sets the longest line [`recv_line`](Self::recv_line) accepts.
    ///
    /// ```no_run
    /// # async fn demo(conn: getty::pkg::Conn) {
    /// let (mut reader, _writer) = conn.into_split();
    /// reader.set_max_line_len(1024);
    /// # }
    /// ```
    pub fn set_max_line_len(&mut self, max: usize) {
        self.max_line_len = max;
    }

    /// Bytes received and not yet returned by a call.
    ///
    /// ```no_run
    /// # async fn demo(conn: getty::pkg::Conn) {
    /// let (reader, _writer) = conn.into_split();
    /// assert_eq!(reader.buffered(), 0);
    /// # }
    /// ```
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Receives one package with this half's option (gtcp's `RecvPkg`). An
    /// empty package is returned as empty [`Bytes`].
    ///
    /// # Errors
    /// [`PkgError::Closed`] when the peer closed between packages;
    /// [`PkgError::UnexpectedEof`] when it closed inside one;
    /// [`PkgError::DeclaredTooLarge`] for a header above the max data size
    /// (nothing allocated); [`PkgError::InvalidOption`]; a socket error.
    ///
    /// ```no_run
    /// # async fn demo(mut conn: getty::pkg::Conn) -> Result<(), getty::pkg::PkgError> {
    /// let pkg = conn.recv_pkg().await?;
    /// # Ok(()) }
    /// ```
    pub async fn recv_pkg(&mut self) -> Result<Bytes, PkgError> {
        let option = self.option;
        self.recv_pkg_inner(None, &option).await
    }

    /// [`recv_pkg`](Self::recv_pkg) with options for this call only.
    ///
    /// # Errors
    /// As `recv_pkg`.
    ///
    /// ```no_run
    /// # async fn demo(conn: getty::pkg::Conn) -> Result<(), getty::pkg::PkgError> {
    /// use getty::pkg::PkgOption;
    /// let (mut reader, _writer) = conn.into_split();
    /// let pkg = reader.recv_pkg_with(&PkgOption::new().header_size(4)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn recv_pkg_with(&mut self, option: &PkgOption) -> Result<Bytes, PkgError> {
        self.recv_pkg_inner(None, option).await
    }

    /// [`recv_pkg`](Self::recv_pkg) within `timeout` (gtcp's
    /// `RecvPkgWithTimeout`). With a [`Retry`](super::Retry) each attempt
    /// gets `timeout`, and bytes that arrived stay buffered between
    /// attempts.
    ///
    /// # Errors
    /// As `recv_pkg`, and [`PkgError::Timeout`].
    ///
    /// ```no_run
    /// # async fn demo(conn: getty::pkg::Conn) -> Result<(), getty::pkg::PkgError> {
    /// use std::time::Duration;
    /// let (mut reader, _writer) = conn.into_split();
    /// let pkg = reader.recv_pkg_timeout(Duration::from_secs(5)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn recv_pkg_timeout(&mut self, timeout: Duration) -> Result<Bytes, PkgError> {
        let option = self.option;
        self.recv_pkg_inner(Some(timeout), &option).await
    }

    /// [`recv_pkg_timeout`](Self::recv_pkg_timeout) with options for this
    /// call only.
    ///
    /// # Errors
    /// As `recv_pkg_timeout`.
    ///
    /// ```no_run
    /// # async fn demo(conn: getty::pkg::Conn) -> Result<(), getty::pkg::PkgError> {
    /// use getty::pkg::{PkgOption, Retry};
    /// use std::time::Duration;
    /// let (mut reader, _writer) = conn.into_split();
    /// let opt = PkgOption::new().retry(Retry::new(3, Duration::from_millis(100)));
    /// let pkg = reader.recv_pkg_timeout_with(Duration::from_secs(1), &opt).await?;
    /// # Ok(()) }
    /// ```
    pub async fn recv_pkg_timeout_with(
        &mut self,
        timeout: Duration,
        option: &PkgOption,
    ) -> Result<Bytes, PkgError> {
        self.recv_pkg_inner(Some(timeout), option).await
    }

    async fn recv_pkg_inner(
        &mut self,
        timeout: Option<Duration>,
        option: &PkgOption,
    ) -> Result<Bytes, PkgError> {
        let codec = option.validate()?;
        let result = retrying!(
            "recv_pkg",
            option.get_retry(),
            timeout,
            self.read_pkg(codec)
        );
        self.taint_on_error(result)
    }

    async fn read_pkg(&mut self, mut codec: PkgCodec) -> Result<Bytes, PkgError> {
        // Bounded: every pass adds at least one byte to a package whose
        // size is capped by the max data size, or returns.
        loop {
            if let Some(pkg) = codec.decode(&mut self.buf)? {
                return Ok(pkg);
            }
            if self.read_more().await? == 0 {
                return Err(if self.buf.is_empty() {
                    PkgError::Closed
                } else {
                    codec.eof_error(&self.buf)
                });
            }
        }
    }

    /// Receives exactly `n` raw bytes (gtcp's `Recv(n)` with `n > 0`);
    /// `recv(0)` returns at once with nothing. Retried as this half's
    /// option's [`Retry`](super::Retry) says.
    ///
    /// # Errors
    /// [`PkgError::Closed`] when the peer closed before the first byte,
    /// [`PkgError::UnexpectedEof`] when it closed after some; a socket
    /// error.
    ///
    /// ```no_run
    /// # async fn demo(mut conn: getty::pkg::Conn) -> Result<(), getty::pkg::PkgError> {
    /// let magic = conn.recv(4).await?;
    /// # Ok(()) }
    /// ```
    pub async fn recv(&mut self, n: usize) -> Result<Bytes, PkgError> {
        let result = retrying!("recv", self.option.get_retry(), None, self.read_exact(n));
        self.taint_on_error(result)
    }

    /// [`recv`](Self::recv) within `timeout` (gtcp's `RecvWithTimeout`).
    ///
    /// # Errors
    /// As `recv`, and [`PkgError::Timeout`].
    ///
    /// ```no_run
    /// # async fn demo(mut conn: getty::pkg::Conn) -> Result<(), getty::pkg::PkgError> {
    /// use std::time::Duration;
    /// let magic = conn.recv_timeout(4, Duration::from_secs(1)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn recv_timeout(&mut self, n: usize, timeout: Duration) -> Result<Bytes, PkgError> {
        let result = retrying!(
            "recv",
            self.option.get_retry(),
            Some(timeout),
            self.read_exact(n)
        );
        self.taint_on_error(result)
    }

    async fn read_exact(&mut self, n: usize) -> Result<Bytes, PkgError> {
        // Bounded: every pass adds at least one of the n bytes, or returns.
        while self.buf.len() < n {
            self.buf.reserve(cmp::min(n - self.buf.len(), RESERVE_STEP));
            if self.io.read_buf(&mut self.buf).await? == 0 {
                return Err(if self.buf.is_empty() {
                    PkgError::Closed
                } else {
                    PkgError::UnexpectedEof {
                        what: "recv(n)",
                        received: self.buf.len(),
                        expected: n,
                    }
                });
            }
        }
        Ok(self.buf.split_to(n).freeze())
    }

    /// Receives one line (gtcp's `RecvLine`), without its `\n` or `\r\n`.
    /// A line longer than [`max_line_len`](Self::max_line_len) is an error,
    /// so a peer that never sends a newline cannot grow the buffer without
    /// bound.
    ///
    /// # Errors
    /// [`PkgError::LineTooLong`]; [`PkgError::Closed`] when the peer closed
    /// between lines, [`PkgError::LineEof`] inside one; a socket error.
    ///
    /// ```no_run
    /// # async fn demo(mut conn: getty::pkg::Conn) -> Result<(), getty::pkg::PkgError> {
    /// let line = conn.recv_line().await?;
    /// println!("{}", String::from_utf8_lossy(&line));
    /// # Ok(()) }
    /// ```
    pub async fn recv_line(&mut self) -> Result<Bytes, PkgError> {
        let result = retrying!("recv_line", self.option.get_retry(), None, self.read_line());
        self.taint_on_error(result)
    }

    /// [`recv_line`](Self::recv_line) within `timeout`.
    ///
    /// # Errors
    /// As `recv_line`, and [`PkgError::Timeout`].
    ///
    /// ```no_run
    /// # async fn demo(mut conn: getty::pkg::Conn) -> Result<(), getty::pkg::PkgError> {
    /// use std::time::Duration;
    /// let line = conn.recv_line_timeout(Duration::from_secs(1)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn recv_line_timeout(&mut self, timeout: Duration) -> Result<Bytes, PkgError> {
        let result = retrying!(
            "recv_line",
            self.option.get_retry(),
            Some(timeout),
            self.read_line()
        );
        self.taint_on_error(result)
    }

    async fn read_line(&mut self) -> Result<Bytes, PkgError> {
        let max = self.max_line_len;
        let mut scanned = 0;
        // Bounded: every pass adds at least one byte to a line capped at
        // max_line_len (+ its ending), or returns.
        loop {
            if let Some(i) = self.buf[scanned..].iter().position(|b| *b == b'\n') {
                let end = scanned + i;
                let len = if end > 0 && self.buf[end - 1] == b'\r' {
                    end - 1
                } else {
                    end
                };
                if len > max {
                    return Err(PkgError::LineTooLong { max });
                }
                let mut line = self.buf.split_to(end + 1);
                line.truncate(len);
                return Ok(line.freeze());
            }
            scanned = self.buf.len();
            // Room for the line and a `\r`; one more byte is one too many.
            if self.buf.len() > max.saturating_add(1) {
                return Err(PkgError::LineTooLong { max });
            }
            let room = max.saturating_add(2) - self.buf.len();
            self.buf.reserve(cmp::min(room, READ_CHUNK));
            if self.io.read_buf(&mut self.buf).await? == 0 {
                return Err(if self.buf.is_empty() {
                    PkgError::Closed
                } else {
                    PkgError::LineEof {
                        received: self.buf.len(),
                    }
                });
            }
        }
    }

    /// One read into the buffer, growing it by a chunk when it is full.
    async fn read_more(&mut self) -> io::Result<usize> {
        if self.buf.len() == self.buf.capacity() {
            self.buf.reserve(READ_CHUNK);
        }
        self.io.read_buf(&mut self.buf).await
    }

    fn taint_on_error<T>(&mut self, result: Result<T, PkgError>) -> Result<T, PkgError> {
        if let Err(e) = &result {
            if !matches!(e, PkgError::InvalidOption(_)) {
                self.tainted = true;
            }
        }
        result
    }

    /// Whether `writer` sends on this half's connection.
    pub(crate) fn belongs_to(&self, writer: &WriteHalf) -> bool {
        writer.id() == self.id
    }

    /// Whether the connection can serve someone else: no call failed,
    /// nothing unread is buffered, and the socket has nothing to say (data
    /// would be a stale reply, the end a peer that left).
    pub(crate) fn is_reusable(&mut self) -> bool {
        if self.tainted || !self.buf.is_empty() {
            return false;
        }
        // One poll without waiting: pending means quiet and open.
        self.read_more().now_or_never().is_none()
    }
}
