//! [`PoolFullError`]: why a message was not handled.

use std::{error::Error as StdError, fmt};

/// Why a [shedding](super::TaskPoolLayer::shed_when_full) task pool did not
/// handle a message: every permit was in use.
///
/// It reaches the session's stack as [`Event::Error`](getty::Event::Error)
/// carrying [`Error::Raised`](getty::Error::Raised) (through
/// [`Session::report_error`](getty::Session::report_error)); the session
/// carries on. Downcast the source to tell it from other errors:
///
/// ```
/// use getty::{BoxError, Error};
/// use getty_layers::pool::PoolFullError;
///
/// fn on_error(error: &Error) {
///     if let Error::Raised { source } = error {
///         if let Some(full) = source.downcast_ref::<PoolFullError>() {
///             eprintln!("overloaded: {} permits busy", full.capacity());
///         }
///     }
/// }
/// # let _ = on_error;
/// # let e: BoxError = PoolFullError::new(8).into();
/// # assert_eq!(e.to_string(), "task pool full: all 8 permits in use, message not handled");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolFullError {
    capacity: usize,
}

impl PoolFullError {
    /// The error for a full pool of `capacity` permits.
    pub fn new(capacity: usize) -> Self {
        PoolFullError { capacity }
    }

    /// The pool's capacity: how many events were being handled.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

impl fmt::Display for PoolFullError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "task pool full: all {} permits in use, message not handled",
            self.capacity
        )
    }
}

impl StdError for PoolFullError {}
