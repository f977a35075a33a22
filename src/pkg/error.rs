//! The one error type of the package API.

use std::{fmt, io, time::Duration};

use crate::tls::TlsError;

/// What went wrong in a call of the package API ([`Conn`](super::Conn),
/// its halves, [`Server`](super::Server), [`Pool`](super::Pool) or
/// [`PkgCodec`](super::PkgCodec)).
///
/// Each message says what happened and with which numbers, so it can be
/// acted on from a log line alone:
///
/// ```
/// use getty::pkg::PkgError;
///
/// let err = PkgError::TooLarge { len: 70_000, max: 65_535 };
/// assert_eq!(
///     err.to_string(),
///     "package of 70000 bytes exceeds max_data_size 65535; nothing was sent"
/// );
/// ```
///
/// gtcp tells a closed connection by comparing the error's text with
/// `"EOF"`; here it is a variant, [`PkgError::Closed`] (or
/// [`is_closed`](PkgError::is_closed)).
#[derive(Debug)]
#[non_exhaustive]
pub enum PkgError {
    /// Sending: the data is longer than the package option's maximum.
    /// Nothing was written.
    TooLarge {
        /// The data's length.
        len: usize,
        /// The `max_data_size` in force.
        max: usize,
    },
    /// Receiving: the peer's header declares more data than the maximum.
    /// Nothing was allocated for it; the header stays unread, so the
    /// stream is out of step and the connection should be closed.
    DeclaredTooLarge {
        /// The length the header declares.
        len: u64,
        /// The `max_data_size` in force.
        max: usize,
        /// The header's width in bytes.
        header_size: u8,
    },
    /// A [`PkgOption`](super::PkgOption) that cannot work: a header size
    /// other than 1 to 4, or a `max_data_size` the header cannot express.
    InvalidOption(String),
    /// The peer closed the connection cleanly between packages (gtcp's
    /// `EOF`).
    Closed,
    /// The peer closed the connection in the middle of a package (or of a
    /// `recv(n)`): fewer bytes came than the header (or `n`) promised.
    UnexpectedEof {
        /// What was being read: `"package header"`, `"package body"` or
        /// `"recv(n)"`.
        what: &'static str,
        /// Bytes received of it.
        received: usize,
        /// Bytes it needed.
        expected: usize,
    },
    /// The peer closed the connection in the middle of a line.
    LineEof {
        /// Bytes of the unfinished line.
        received: usize,
    },
    /// A line grew past the connection's `max_line_len` without a newline.
    /// The bytes stay buffered (a `recv(n)` can still read them).
    LineTooLong {
        /// The limit in force.
        max: usize,
    },
    /// A `_timeout` call ran out of time (on every attempt, with a
    /// [`Retry`](super::Retry)).
    Timeout {
        /// The operation, e.g. `"recv_pkg"`.
        op: &'static str,
        /// The time each attempt had.
        after: Duration,
        /// How many attempts were made.
        attempts: u32,
    },
    /// This connection can no longer send: an earlier send was cut off in
    /// the middle of a package (a timeout or a dropped future), or failed,
    /// so the byte stream is out of step.
    SendBroken {
        /// Why.
        reason: String,
    },
    /// [`close`](super::WriteHalf::close) was called; nothing more can be
    /// sent on this connection.
    LocalClosed,
    /// Connecting to `addr` failed (resolution, refusal, TLS handshake or
    /// the connect timeout).
    Connect {
        /// Where to.
        addr: String,
        /// Why.
        source: io::Error,
    },
    /// Binding a listening socket failed.
    Bind {
        /// Where.
        addr: String,
        /// Why.
        source: io::Error,
    },
    /// A TLS configuration could not be made (PEM files, keys).
    Tls(TlsError),
    /// The pool was asked for a connection after [`Pool::close`](super::Pool::close).
    PoolClosed,
    /// The socket failed.
    Io(io::Error),
}

impl PkgError {
    /// Whether the peer closed the connection cleanly between packages or
    /// lines (gtcp's `err.Error() == "EOF"`).
    ///
    /// ```
    /// use getty::pkg::PkgError;
    /// assert!(PkgError::Closed.is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        matches!(self, PkgError::Closed)
    }

    /// Whether the error is a timeout.
    ///
    /// ```
    /// use getty::pkg::PkgError;
    /// use std::time::Duration;
    /// let err = PkgError::Timeout { op: "recv_pkg", after: Duration::from_millis(5), attempts: 1 };
    /// assert!(err.is_timeout());
    /// ```
    pub fn is_timeout(&self) -> bool {
        matches!(self, PkgError::Timeout { .. })
            || matches!(self, PkgError::Io(e) if e.kind() == io::ErrorKind::TimedOut)
    }

    /// Whether another attempt could succeed: a timeout, or a transient
    /// socket error. Closed connections, malformed packages and broken
    /// streams are final.
    pub(crate) fn is_retryable(&self) -> bool {
        match self {
            PkgError::Timeout { .. } => true,
            PkgError::Io(e) => matches!(
                e.kind(),
                io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            _ => false,
        }
    }
}

impl fmt::Display for PkgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PkgError::TooLarge { len, max } => write!(
                f,
                "package of {len} bytes exceeds max_data_size {max}; nothing was sent"
            ),
            PkgError::DeclaredTooLarge {
                len,
                max,
                header_size,
            } => write!(
                f,
                "peer declared a package of {len} bytes in a {header_size}-byte header, \
                 above max_data_size {max}; nothing was allocated, close the connection"
            ),
            PkgError::InvalidOption(why) => write!(f, "invalid package option: {why}"),
            PkgError::Closed => f.write_str("connection closed by the peer (EOF)"),
            PkgError::UnexpectedEof {
                what,
                received,
                expected,
            } => write!(
                f,
                "connection closed by the peer in the middle of a {what}: \
                 received {received} of {expected} bytes"
            ),
            PkgError::LineEof { received } => write!(
                f,
                "connection closed by the peer in the middle of a line: \
                 {received} bytes without a newline"
            ),
            PkgError::LineTooLong { max } => write!(
                f,
                "line longer than max_line_len {max} bytes without a newline"
            ),
            PkgError::Timeout {
                op,
                after,
                attempts,
            } => {
                write!(f, "{op} timed out after {after:?}")?;
                if *attempts > 1 {
                    write!(f, " on each of {attempts} attempts")?;
                }
                Ok(())
            }
            PkgError::SendBroken { reason } => {
                write!(f, "connection can no longer send: {reason}")
            }
            PkgError::LocalClosed => f.write_str("connection was closed for sending by close()"),
            PkgError::Connect { addr, source } => write!(f, "cannot connect to {addr}: {source}"),
            PkgError::Bind { addr, source } => write!(f, "cannot bind {addr}: {source}"),
            PkgError::Tls(e) => write!(f, "TLS configuration: {e}"),
            PkgError::PoolClosed => f.write_str("the connection pool is closed"),
            PkgError::Io(e) => write!(f, "i/o error: {e}"),
        }
    }
}

impl std::error::Error for PkgError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PkgError::Connect { source, .. } | PkgError::Bind { source, .. } => Some(source),
            PkgError::Tls(e) => Some(e),
            PkgError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for PkgError {
    fn from(e: io::Error) -> Self {
        PkgError::Io(e)
    }
}

impl From<TlsError> for PkgError {
    fn from(e: TlsError) -> Self {
        PkgError::Tls(e)
    }
}
