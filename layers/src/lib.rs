//! tower middleware that understands getty's [`Event`](getty::Event) and
//! [`Session`](getty::Session).
//!
//! The layers themselves (heartbeat, stats, timeouts, task pool, tracing, rate
//! limiting) arrive with their own issue; this crate already exists so the
//! workspace layout is stable and `cargo test` at the root covers it.
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]
#![forbid(unsafe_code)]

pub use getty;
