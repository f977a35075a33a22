//! tower middleware that understands getty's [`Event`](getty::Event) and
//! [`Session`](getty::Session).
//!
//! Each layer wraps a session's service stack (the `S` of getty's
//! make-service) and sees every event of the session: `Open`, `Message`,
//! `Tick`, `Error`, `Close`.
//!
//! | layer | module | what it does |
//! |-------|--------|--------------|
//! | [`HeartbeatLayer`](heartbeat::HeartbeatLayer) | [`heartbeat`] | reader/writer/all-idle detection on `Tick`: close idle peers, or ping when we are quiet |
//! | [`StatsLayer`](stats::StatsLayer) | [`stats`] | sessions, packets, bytes, errors by kind, handler latency p50/p99/max |
//! | [`OnCloseLayer`](on_close::OnCloseLayer) | [`on_close`] | a close callback registered from the stack |
//! | [`EventTimeoutLayer`](timeout::EventTimeoutLayer) | [`timeout`] | a deadline per message; continue or close |
//! | [`TaskPoolLayer`](pool::TaskPoolLayer) | [`pool`] | getty's `WithServerTaskPool`: bounded handler work across sessions, order kept |
//! | [`TraceLayer`](trace::TraceLayer) | [`trace`] | a span per event, slow-handler warnings, packet logging |
//! | [`RateLimitLayer`](rate_limit::RateLimitLayer) | [`rate_limit`] | packets per second per session: delay, drop or close |
//!
//! [`ServiceBuilderExt`] adds them to `tower::ServiceBuilder`. Each sits in
//! its own module behind a cargo feature of the same name (all on by default).
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]
#![forbid(unsafe_code)]

mod builder;
#[cfg(feature = "heartbeat")]
pub mod heartbeat;
#[cfg(feature = "on-close")]
pub mod on_close;
#[cfg(feature = "pool")]
pub mod pool;
#[cfg(any(feature = "pool", feature = "rate-limit"))]
mod probe;
#[cfg(feature = "rate-limit")]
pub mod rate_limit;
#[cfg(feature = "stats")]
pub mod stats;
#[cfg(feature = "timeout")]
pub mod timeout;
#[cfg(feature = "trace")]
pub mod trace;

pub use builder::ServiceBuilderExt;
pub use getty;
