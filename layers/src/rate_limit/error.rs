//! Why a packet was refused.

use std::{error::Error as StdError, fmt};

use getty::Addr;

use super::{OverLimit, Rate};

/// A session sent packets faster than its [`Rate`]: the reason passed down
/// the stack as [`Error::Raised`](getty::Error::Raised) by
/// [`RateLimit`](super::RateLimit) with [`OverLimit::Drop`] (reported; the
/// session carries on) or [`OverLimit::Close`] (the session closes).
/// [`OverLimit::Delay`] raises nothing: it slows the session down instead.
///
/// Downcast the raised error's source to read it:
///
/// ```
/// use bytes::Bytes;
/// use getty::{Error, EventListener, Session};
/// use getty_layers::rate_limit::RateLimitError;
///
/// struct App;
/// impl EventListener<Bytes> for App {
///     fn on_message(&mut self, _: &Session, pkg: Bytes) -> Option<Bytes> { Some(pkg) }
///     fn on_error(&mut self, session: &Session, error: &Error) {
///         if let Error::Raised { source } = error {
///             if let Some(e) = source.downcast_ref::<RateLimitError>() {
///                 // One report per refused packet: log the first of each hundred.
///                 if e.dropped % 100 == 1 {
///                     eprintln!("{session}: over {} ({} refused)", e.rate, e.dropped);
///                 }
///             }
///         }
///     }
/// }
/// # let _ = App;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimitError {
    /// The remote address of the session.
    pub peer: Addr,
    /// The limit the session went over.
    pub rate: Rate,
    /// What was done about it.
    pub policy: OverLimit,
    /// Packets this session's limiter refused so far, this one included.
    pub dropped: u64,
}

impl fmt::Display for RateLimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} sent more than {}: {} ({} refused so far)",
            self.peer, self.rate, self.policy, self.dropped
        )
    }
}

impl StdError for RateLimitError {}
