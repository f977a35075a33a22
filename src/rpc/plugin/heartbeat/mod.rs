//! Heartbeats, wire compatible with erpc's `plugin/heartbeat` (SPEC §1.10).
//!
//! - [`HeartbeatPing`] (either side): every `rate`, a session on which no
//!   CALL or PUSH went either way since the last check is sent a CALL or
//!   PUSH to `/heartbeat` with meta `hb_=<rate in seconds>` and an empty
//!   body; a heartbeat CALL that fails closes the session.
//! - [`pong`] routes `/heartbeat` (a CALL is answered OK with json `null`)
//!   and [`HeartbeatPong`] closes a session that sent a heartbeat and then
//!   nothing for twice its rate. Use both.
//!
//! Heartbeats are not traffic: they are what is sent for want of it. Both
//! sides work on the session's cron ([`Event::Tick`](crate::Event::Tick)),
//! with no timer of their own.
//!
//! ```no_run
//! use getty::rpc::{plugin::heartbeat::{self, HeartbeatPing, HeartbeatPong}, Peer, Router};
//! use std::time::Duration;
//!
//! # async fn demo() -> Result<(), getty::BoxError> {
//! let server = Peer::builder()
//!     .router(heartbeat::pong(Router::new()))
//!     .session_layer(HeartbeatPong::new())
//!     .build();
//! let addr = server.listen("127.0.0.1:0").await?.local_addr();
//!
//! let client = Peer::builder()
//!     .session_layer(HeartbeatPing::new(Duration::from_secs(5), true))
//!     .build();
//! let session = client.dial(addr.to_string()).await?;
//! # let _ = session;
//! # Ok(()) }
//! ```

mod ping;
mod pong;

use std::time::Duration;

pub use self::ping::{HeartbeatPing, HeartbeatPingService};
pub use self::pong::{pong, HeartbeatPong, HeartbeatPongService};

/// The service method of heartbeats.
///
/// ```
/// use getty::rpc::{plugin::heartbeat, Router};
/// assert!(heartbeat::pong(Router::new()).has_call(heartbeat::SERVICE_METHOD));
/// ```
pub const SERVICE_METHOD: &str = "/heartbeat";

/// The metadata key of a heartbeat's rate, in whole seconds.
///
/// ```no_run
/// use getty::rpc::plugin::heartbeat::{META_KEY, SERVICE_METHOD};
///
/// # async fn demo(session: getty::rpc::Session) -> Result<(), getty::rpc::Status> {
/// // A heartbeat by hand, as HeartbeatPing sends it with `use_call`.
/// let () = session.call(SERVICE_METHOD, ()).meta(META_KEY, "5").await?;
/// # Ok(()) }
/// ```
pub const META_KEY: &str = "hb_";

/// erpc's smallest heartbeat rate: [`HeartbeatPing::new`] raises a smaller
/// one to it.
///
/// ```
/// use getty::rpc::plugin::heartbeat::{HeartbeatPing, MIN_RATE};
/// assert_eq!(HeartbeatPing::new(std::time::Duration::ZERO, true).rate(), MIN_RATE);
/// ```
pub const MIN_RATE: Duration = Duration::from_secs(3);

/// Makes the session's cron tick at least every `period`; a finer period
/// set by someone else is kept.
fn fit_cron_period(session: &crate::Session<crate::rpc::Message>, period: Duration) {
    match session.cron_period() {
        Some(current) if current <= period => {}
        _ => session.set_cron_period(Some(period)),
    }
}
