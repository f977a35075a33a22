//! Errors: what went wrong with a session, and why a send was refused.

use std::{error::Error as StdError, fmt, io, time::Duration};

use crate::Addr;

/// A type-erased error, as tower uses for service errors.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Why a session failed.
///
/// Every failure of a session reaches its service stack as an
/// [`Event::Error`](crate::Event::Error) carrying one of these, followed by
/// [`Event::Close`](crate::Event::Close). Each variant names the peer so a log
/// line is actionable on its own.
///
/// ```
/// use getty::{Addr, Error};
///
/// let peer: Addr = "127.0.0.1:5555".parse::<std::net::SocketAddr>().unwrap().into();
/// let err = Error::PacketTooLarge { peer, len: 9_000_000, max: 4096 };
/// assert_eq!(
///     err.to_string(),
///     "packet of 9000000 bytes exceeds max_packet_len 4096 from 127.0.0.1:5555"
/// );
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Reading from or writing to the socket failed.
    Io {
        /// The remote address.
        peer: Addr,
        /// The underlying I/O error.
        source: io::Error,
    },
    /// The codec refused the bytes it was given (or could not encode a packet).
    Codec {
        /// The remote address.
        peer: Addr,
        /// The codec's error.
        source: BoxError,
    },
    /// More bytes are buffered without a complete packet than the session's
    /// `max_packet_len` allows. Raised by the driver for any codec, before the
    /// buffer can grow further.
    PacketTooLarge {
        /// The remote address.
        peer: Addr,
        /// The size seen (declared by a length prefix, or buffered).
        len: usize,
        /// The session's limit.
        max: usize,
    },
    /// The peer closed its side in the middle of a packet.
    UnexpectedEof {
        /// The remote address.
        peer: Addr,
        /// Bytes of the incomplete packet that were received.
        buffered: usize,
    },
    /// Nothing was received for longer than the session's read timeout.
    ReadTimeout {
        /// The remote address.
        peer: Addr,
        /// The read timeout in force.
        timeout: Duration,
    },
    /// Queued bytes could not be written for longer than the write timeout:
    /// the peer does not read.
    WriteTimeout {
        /// The remote address.
        peer: Addr,
        /// The write timeout in force.
        timeout: Duration,
        /// Bytes still waiting to be written.
        pending: usize,
    },
    /// The session held part of a packet and could not read the rest: the
    /// input budget that all sessions of its server (or client) share
    /// ([`ServerBuilder::max_buffered_input`](crate::ServerBuilder::max_buffered_input))
    /// was spent. Closing it gives its share back to the others.
    InputBudget {
        /// The remote address.
        peer: Addr,
        /// Bytes of the incomplete packet this session held.
        held: usize,
        /// The budget's size in bytes.
        budget: usize,
    },
    /// The service stack returned an error for an event.
    Handler {
        /// The service's error.
        source: BoxError,
    },
    /// The service stack panicked while handling an event. The panic was
    /// contained; the session is closed.
    HandlerPanic {
        /// The panic message, when it was a string.
        message: String,
    },
    /// The application or a layer raised this reason with
    /// [`Session::report_error`](crate::Session::report_error) or
    /// [`Session::close_with_error`](crate::Session::close_with_error)
    /// (an idle heartbeat, a deadline, a rate limit, ...).
    Raised {
        /// The reason; downcast it to the layer's error type for details.
        source: BoxError,
    },
}

impl Error {
    /// What kind of failure this is, for metrics, logs and close codes.
    ///
    /// ```
    /// use getty::{Error, ErrorKind};
    ///
    /// let e = Error::HandlerPanic { message: "boom".into() };
    /// assert_eq!(e.kind(), ErrorKind::HandlerPanic);
    /// assert_eq!(e.kind().as_str(), "handler_panic");
    /// ```
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Io { .. } => ErrorKind::Io,
            Error::Codec { .. } => ErrorKind::Codec,
            Error::PacketTooLarge { .. } => ErrorKind::PacketTooLarge,
            Error::UnexpectedEof { .. } => ErrorKind::UnexpectedEof,
            Error::ReadTimeout { .. } => ErrorKind::ReadTimeout,
            Error::WriteTimeout { .. } => ErrorKind::WriteTimeout,
            Error::InputBudget { .. } => ErrorKind::InputBudget,
            Error::Handler { .. } => ErrorKind::Handler,
            Error::HandlerPanic { .. } => ErrorKind::HandlerPanic,
            Error::Raised { .. } => ErrorKind::Raised,
        }
    }
}

/// The kinds of [`Error`], one per variant: what stats count errors by,
/// what decides a WebSocket close code, what logs name.
///
/// ```
/// use getty::ErrorKind;
///
/// assert_eq!(ErrorKind::PacketTooLarge.as_str(), "packet_too_large");
/// assert_eq!(ErrorKind::ReadTimeout.to_string(), "read_timeout");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ErrorKind {
    /// [`Error::Io`]
    Io,
    /// [`Error::Codec`]
    Codec,
    /// [`Error::PacketTooLarge`]
    PacketTooLarge,
    /// [`Error::UnexpectedEof`]
    UnexpectedEof,
    /// [`Error::ReadTimeout`]
    ReadTimeout,
    /// [`Error::WriteTimeout`]
    WriteTimeout,
    /// [`Error::InputBudget`]
    InputBudget,
    /// [`Error::Handler`]
    Handler,
    /// [`Error::HandlerPanic`]
    HandlerPanic,
    /// [`Error::Raised`]
    Raised,
}

impl ErrorKind {
    /// A short, stable name: `"io"`, `"codec"`, `"packet_too_large"`,
    /// `"unexpected_eof"`, `"read_timeout"`, `"write_timeout"`,
    /// `"input_budget"`, `"handler"`, `"handler_panic"` or `"raised"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Io => "io",
            ErrorKind::Codec => "codec",
            ErrorKind::PacketTooLarge => "packet_too_large",
            ErrorKind::UnexpectedEof => "unexpected_eof",
            ErrorKind::ReadTimeout => "read_timeout",
            ErrorKind::WriteTimeout => "write_timeout",
            ErrorKind::InputBudget => "input_budget",
            ErrorKind::Handler => "handler",
            ErrorKind::HandlerPanic => "handler_panic",
            ErrorKind::Raised => "raised",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { peer, source } => write!(f, "i/o error with {peer}: {source}"),
            Error::Codec { peer, source } => write!(f, "{source} from {peer}"),
            Error::PacketTooLarge { peer, len, max } => write!(
                f,
                "packet of {len} bytes exceeds max_packet_len {max} from {peer}"
            ),
            Error::UnexpectedEof { peer, buffered } => write!(
                f,
                "{peer} closed the connection in the middle of a packet ({buffered} bytes received)"
            ),
            Error::InputBudget { peer, held, budget } => write!(
                f,
                "input budget of {budget} bytes spent while {peer} held {held} bytes of an incomplete packet (max_buffered_input)"
            ),
            Error::ReadTimeout { peer, timeout } => {
                write!(
                    f,
                    "nothing received from {peer} for {timeout:?} (read timeout)"
                )
            }
            Error::WriteTimeout {
                peer,
                timeout,
                pending,
            } => write!(
                f,
                "{peer} did not read for {timeout:?} with {pending} bytes pending (write timeout)"
            ),
            Error::Handler { source } => write!(f, "service error: {source}"),
            Error::HandlerPanic { message } => write!(f, "service panicked: {message}"),
            Error::Raised { source } => source.fmt(f),
        }
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Codec { source, .. } | Error::Handler { source } | Error::Raised { source } => {
                Some(&**source)
            }
            _ => None,
        }
    }
}

/// Why [`Session::send`](crate::Session::send) and its siblings refused a packet.
///
/// getty's rule holds: there are no retries inside the library; the caller
/// decides what to do with a refused packet.
///
/// ```
/// use getty::SendError;
///
/// assert_eq!(SendError::Blocked.to_string(), "outbound queue is full (session blocked)");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// The outbound queue is full ([`try_send`](crate::Session::try_send) only).
    Blocked,
    /// The session is closed or closing; nothing more is accepted.
    Closed,
    /// No room appeared in the queue before the timeout
    /// ([`send_timeout`](crate::Session::send_timeout) only).
    Timeout,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SendError::Blocked => "outbound queue is full (session blocked)",
            SendError::Closed => "session closed",
            SendError::Timeout => "timed out waiting for room in the outbound queue",
        })
    }
}

impl StdError for SendError {}

/// Renders a panic payload as text for logs and [`Error::HandlerPanic`].
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}
