//! # getty
//!
//! A netty-like asynchronous network library on tokio and tower, after the
//! Go library [getty](https://github.com/AlexStocks/getty).
//!
//! A connection is a [`Session`]. Its bytes become packets through a codec
//! (any [`tokio_util::codec`] `Decoder`/`Encoder`, or a getty-style
//! [`ReadWriter`](codec::ReadWriter)), and every moment of its life
//! ([`Event::Open`], `Message`, `Tick`, `Error`, `Close`) passes a tower
//! [`Service`] stack as a [`Request`]. The innermost service
//! is usually an [`EventListener`] adapted by [`ListenerService`]; any tower
//! layer can wrap it.
//!
//! What a first program needs besides is re-exported: [`Bytes`],
//! [`BytesMut`], [`service_fn`], [`Service`], [`ServiceExt`], [`Layer`],
//! [`ServiceBuilder`], and tokio-util's codecs in [`codec`].
//!
//! ```no_run
//! use getty::{codec::LengthCodec, new_session_fn, Bytes, EventListener, ListenerService, Server, Session};
//!
//! struct Echo;
//!
//! impl EventListener<Bytes> for Echo {
//!     fn on_message(&mut self, _session: &Session, pkg: Bytes) -> Option<Bytes> {
//!         Some(pkg)
//!     }
//! }
//!
//! # async fn demo() -> std::io::Result<()> {
//! let server = Server::builder().bind("127.0.0.1:0").await?;
//! println!("listening on {}", server.local_addr());
//! let handle = server.serve(
//!     LengthCodec::new(),
//!     new_session_fn(|_: &Session| Ok::<_, getty::BoxError>(ListenerService::new(Echo))),
//! );
//! handle.shutdown(std::time::Duration::from_secs(5)).await;
//! # Ok(())
//! # }
//! ```
//!
//! ## getty names
//!
//! | getty                              | here                                      |
//! |------------------------------------|-------------------------------------------|
//! | `Session`                          | [`Session`]                               |
//! | `EventListener` (`OnOpen`, ...)    | [`EventListener`], [`ListenerService`]    |
//! | `ReadWriter` / package handler     | [`codec::ReadWriter`], any tokio-util codec |
//! | `NewSessionCallback`               | a tower `MakeService`, [`new_session_fn`] |
//! | `WritePkg` / `WriteBytes` / `WriteBytesArray` | [`Session::send`], [`Session::send_bytes`], [`Session::send_bytes_vectored`] |
//! | `SetCronPeriod`, `SetReadTimeout`, ... | [`SessionConfig`], `Session::set_*`   |
//! | `NewTCPServer` / `RunEventLoop`    | [`Server::builder`], [`Server::serve`]    |
//! | `NewTCPClient`, `WithConnectionNumber`, `WithReconnectInterval` | [`Client::builder`] |
//!
//! For gtcp's plain package API (`SendPkg` / `RecvPkg` on a connection
//! object, no events), see [`pkg`]; for teleport's RPC peer (erpc v6's wire
//! format: calls, pushes, a router, codecs, filters, plugins), see `rpc`
//! (cargo feature `rpc`, on by default).
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]
#![forbid(unsafe_code)]

mod addr;
mod budget;
mod client;
pub mod codec;
mod connection;
mod driver;
mod error;
mod event;
mod listener;
pub mod pkg;
mod registry;
#[cfg(feature = "rpc")]
pub mod rpc;
mod server;
mod service;
mod session;
pub mod tls;
mod transport;

pub use addr::Addr;
pub use client::{Client, ClientBuilder, ConnectError, ConnectHook, WaitConnectedError};
pub use connection::{serve_connection, serve_messages, Connection};
pub use error::{BoxError, Error, ErrorKind, SendError};
pub use event::{Event, Request};
pub use listener::{new_session_fn, EventListener, ListenerService, NewSessionFn};
pub use registry::Registry;
pub use server::{Server, ServerBuilder, ServerHandle};
pub use service::{MakeSessionService, Packet, SessionService};
pub use session::{EndpointKind, SendPermit, Session, SessionConfig, SessionStats, WeakSession};

// What a first program needs, so that it needs no `bytes` or `tower`
// dependency of its own (and none of a mismatched version).
#[doc(no_inline)]
pub use bytes::{Bytes, BytesMut};
#[doc(no_inline)]
pub use tower::{service_fn, Layer, Service, ServiceBuilder, ServiceExt};

// The README's examples compile as doctests, so the front door cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
