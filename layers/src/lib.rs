//! tower middleware that understands getty's [`Event`](getty::Event) and
//! [`Session`](getty::Session).
//!
//! Each layer wraps a session's service stack (the `S` of getty's
//! make-service) and sees every event of the session: `Open`, `Message`,
//! `Tick`, `Error`, `Close`.
#![warn(missing_docs, missing_debug_implementations, unreachable_pub, rust_2018_idioms)]
#![forbid(unsafe_code)]

#[cfg(feature = "heartbeat")]
pub mod heartbeat;
#[cfg(feature = "on-close")]
pub mod on_close;
#[cfg(feature = "pool")]
pub mod pool;
#[cfg(feature = "rate-limit")]
pub mod rate_limit;
#[cfg(feature = "stats")]
pub mod stats;
#[cfg(feature = "timeout")]
pub mod timeout;
#[cfg(feature = "trace")]
pub mod trace;

pub use getty;
