//! An RPC peer that speaks teleport's (erpc v6's) raw wire format, built
//! from tower services (cargo feature `rpc`, on by default).
//!
//! A frame of erpc's raw protocol becomes a [`Message`] through the
//! [`RawProto`] codec; a [`Peer`] runs sessions of messages over any of
//! the core's transports.

mod channel;
pub mod codec;
mod escape;
mod message;
mod meta;
mod method;
mod peer;
pub mod plugin;
pub mod proto;
pub mod router;
mod session;
mod status;
pub mod xfer;

pub use self::channel::{decode_reply, Balanced, Call, Channel};
pub use self::message::{Message, MessageType};
pub use self::meta::Meta;
pub use self::method::ServiceMethod;
pub use self::peer::{Peer, PeerBuilder, SessionStack, Target};
pub use self::proto::{ProtoError, RawProto};
pub use self::router::{CallCtx, Inbound, PushCtx, Reply, Router};
pub use self::session::{CallBuilder, CallFuture, PushBuilder, Session};
pub use self::status::Status;
pub use self::xfer::{XferFilters, XferPipe};
