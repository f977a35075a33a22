//! [`IdleError`]: why a heartbeat closed a session.

use std::{error::Error as StdError, fmt, time::Duration};

use getty::Addr;

/// Which side of a session has been quiet (netty's `IdleState`).
///
/// ```
/// use getty_layers::heartbeat::IdleState;
///
/// assert_eq!(IdleState::ReaderIdle.to_string(), "reader idle");
/// assert_eq!(IdleState::AllIdle.name(), "all_idle");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IdleState {
    /// No packet was received for the limit: [`Session::active`] is that old.
    ///
    /// [`Session::active`]: getty::Session::active
    ReaderIdle,
    /// Nothing was written to the socket for the limit:
    /// [`Session::last_write`] is that old.
    ///
    /// [`Session::last_write`]: getty::Session::last_write
    WriterIdle,
    /// Neither: no packet received and nothing written for the limit.
    AllIdle,
}

impl IdleState {
    /// A short, stable name for metrics and logs: `"reader_idle"`,
    /// `"writer_idle"` or `"all_idle"`.
    pub fn name(self) -> &'static str {
        match self {
            IdleState::ReaderIdle => "reader_idle",
            IdleState::WriterIdle => "writer_idle",
            IdleState::AllIdle => "all_idle",
        }
    }

    pub(super) fn index(self) -> usize {
        match self {
            IdleState::ReaderIdle => 0,
            IdleState::WriterIdle => 1,
            IdleState::AllIdle => 2,
        }
    }
}

impl fmt::Display for IdleState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdleState::ReaderIdle => "reader idle",
            IdleState::WriterIdle => "writer idle",
            IdleState::AllIdle => "all idle",
        })
    }
}

/// The reason a [`Heartbeat`](super::Heartbeat) closed a session: which side
/// was idle, for how long, the limit, and the peer.
///
/// The heartbeat closes with
/// [`Session::close_with_error`](getty::Session::close_with_error), so this
/// reaches the stack (and a listener's `on_error`) as
/// [`getty::Error::Raised`], whose source downcasts to `IdleError`; `Close`
/// follows.
///
/// ```
/// use getty_layers::heartbeat::{IdleError, IdleState};
/// use std::time::Duration;
///
/// let peer: getty::Addr = "127.0.0.1:5555".parse::<std::net::SocketAddr>().unwrap().into();
/// let err = IdleError::new(
///     IdleState::ReaderIdle,
///     Duration::from_millis(30_200),
///     Duration::from_secs(30),
///     peer,
/// );
/// assert_eq!(err.to_string(), "reader idle for 30.2s (limit 30s) from 127.0.0.1:5555");
///
/// // What a listener's `on_error` gets:
/// let raised = getty::Error::Raised { source: Box::new(err) };
/// let idle = std::error::Error::source(&raised)
///     .and_then(|s| s.downcast_ref::<IdleError>())
///     .expect("an idle error");
/// assert_eq!(idle.state(), IdleState::ReaderIdle);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdleError {
    state: IdleState,
    idle: Duration,
    limit: Duration,
    peer: Addr,
}

impl IdleError {
    /// Describes a session whose `state` side was quiet for `idle`, over
    /// `limit`.
    pub fn new(state: IdleState, idle: Duration, limit: Duration, peer: Addr) -> Self {
        IdleError {
            state,
            idle,
            limit,
            peer,
        }
    }

    /// Which side was idle.
    pub fn state(&self) -> IdleState {
        self.state
    }

    /// How long it had been idle when the heartbeat noticed.
    pub fn idle(&self) -> Duration {
        self.idle
    }

    /// The configured limit that was reached.
    pub fn limit(&self) -> Duration {
        self.limit
    }

    /// The session's remote address.
    pub fn peer(&self) -> &Addr {
        &self.peer
    }
}

impl fmt::Display for IdleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} for {:.1?} (limit {:?}) from {}",
            self.state, self.idle, self.limit, self.peer
        )
    }
}

impl StdError for IdleError {}
