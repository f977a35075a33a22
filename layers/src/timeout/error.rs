//! Why a packet's handling was cancelled.

use std::{error::Error as StdError, fmt, time::Duration};

use getty::Addr;

use super::OnTimeout;

/// A packet was not handled within its deadline: the reason passed down the
/// stack as [`Error::Raised`](getty::Error::Raised) by
/// [`EventTimeout`](super::EventTimeout).
///
/// Downcast the raised error's source to read it:
///
/// ```
/// use getty::{BoxError, Error, EventListener, Session};
/// use getty_layers::timeout::EventTimeoutError;
/// use bytes::Bytes;
///
/// struct App;
/// impl EventListener<Bytes> for App {
///     fn on_message(&mut self, _: &Session, pkg: Bytes) -> Option<Bytes> { Some(pkg) }
///     fn on_error(&mut self, session: &Session, error: &Error) {
///         if let Error::Raised { source } = error {
///             if let Some(t) = source.downcast_ref::<EventTimeoutError>() {
///                 eprintln!("{session}: a packet took longer than {:?}", t.deadline);
///             }
///         }
///     }
/// }
/// # let _ = App;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventTimeoutError {
    /// The deadline that passed.
    pub deadline: Duration,
    /// The remote address of the session.
    pub peer: Addr,
    /// What the expiry did to the session.
    pub policy: OnTimeout,
}

impl fmt::Display for EventTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a packet from {} was not handled within its {:?} deadline; handling cancelled, {}",
            self.peer, self.deadline, self.policy
        )
    }
}

impl StdError for EventTimeoutError {}
