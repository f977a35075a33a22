//! erpc's plugins as tower layers.
//!
//! erpc hooks plugins into fixed points of a session's life (SPEC §3.4);
//! here each plugin is a layer at one of the two places a peer takes them:
//!
//! - **session layers** ([`PeerBuilder::session_layer`](super::PeerBuilder::session_layer))
//!   see every event of a connection (`Open`, each message whatever its
//!   type, `Tick`, `Close`) before the router does: [`auth`] and
//!   [`heartbeat`] live there, as erpc's `PostDial` / `PostAccept` and
//!   timer plugins do;
//! - **route layers** ([`PeerBuilder::route_layer`](super::PeerBuilder::route_layer)
//!   or [`Router::layer`](super::Router::layer)) wrap each route's handler,
//!   erpc's handler-phase hooks: [`slow`], [`detail`] and [`stats`].
//!
//! ```
//! use getty::rpc::{plugin::{auth::AuthBearer, heartbeat::HeartbeatPing, slow::SlowCall, stats::RpcStats}, Peer, Router};
//! use std::time::Duration;
//!
//! let stats = RpcStats::new();
//! let client = Peer::builder()
//!     .router(Router::new())
//!     .route_layer(SlowCall::new(Duration::from_millis(500)))
//!     .route_layer(stats.clone())
//!     .session_layer(HeartbeatPing::new(Duration::from_secs(10), false))
//!     .session_layer(AuthBearer::new("token-123"))
//!     .build();
//! # let _ = client;
//! ```
//!
//! Session layers added later are outer: add [`auth`]'s layer last so that
//! nothing else sees a session's traffic before it is authenticated.

pub mod auth;
pub mod detail;
pub mod heartbeat;
mod observe;
pub mod slow;
pub mod stats;

pub use self::auth::{AuthBearer, AuthChecker, AuthRefused};
pub use self::detail::DetailLog;
pub use self::heartbeat::{HeartbeatPing, HeartbeatPong};
pub use self::slow::SlowCall;
pub use self::stats::RpcStats;
