//! Plain packages: gtcp's `SendPkg` / `RecvPkg` over one connection.
//!
//! No listener, no events: a [`Conn`] with [`send_pkg`](Conn::send_pkg),
//! [`recv_pkg`](Conn::recv_pkg) and [`send_recv_pkg`](Conn::send_recv_pkg)
//! (each with a `_timeout` form and a `_with` form taking a [`PkgOption`]),
//! raw [`send`](Conn::send) / [`recv`](Conn::recv) /
//! [`recv_line`](Conn::recv_line); a [`Server`] that hands each connection
//! to an async function; a [`Pool`] of reusable client connections. The
//! protocol is gtcp's simple package protocol, byte for byte ([`PkgCodec`]):
//!
//! ```text
//! +----------------------------+-------------------------+
//! | data length (1-4 B, BE)    | data (length bytes)     |
//! +----------------------------+-------------------------+
//!  2-byte header by default; the length counts the data only; 0 is a package
//!  max data size by header: 255 | 65,535 | 16,777,215 | 2,147,483,647 (can be lowered)
//! ```
//!
//! # Full duplex
//!
//! When both sides may send at any time, a reply read right after a send
//! may be some other package, so gtcp's advice is: one loop reads, any task
//! sends. Split the connection into a [`ReadHalf`] (owned by the reading
//! loop) and a [`WriteHalf`] (cloneable; sends never interleave a package):
//!
//! ```no_run
//! use getty::pkg::{Conn, PkgError, Server};
//! use std::time::Duration;
//!
//! # async fn demo() -> Result<(), PkgError> {
//! // Server: every connection gets its own task running this function.
//! let server = Server::bind("127.0.0.1:8999").await?;
//! let handle = server.serve(|conn: Conn| async move {
//!     let (mut reader, writer) = conn.into_split();
//!     let ticker = writer.clone();
//!     tokio::spawn(async move {
//!         tokio::time::sleep(Duration::from_secs(10)).await;
//!         ticker.send_pkg(b"doexit").await
//!     });
//!     loop {
//!         match reader.recv_pkg().await {
//!             Ok(pkg) if &pkg[..] == b"hello" => writer.send_pkg(b"Nice to meet you!").await?,
//!             Ok(_) => {}
//!             Err(PkgError::Closed) => return Ok(()), // gtcp: err.Error() == "EOF"
//!             Err(e) => return Err(e),
//!         }
//!     }
//! });
//!
//! // Client.
//! let (mut reader, writer) = Conn::connect("127.0.0.1:8999").await?.into_split();
//! writer.send_pkg(b"hello").await?;
//! while let Ok(pkg) = reader.recv_pkg().await {
//!     if &pkg[..] == b"doexit" {
//!         writer.close().await?;
//!         break;
//!     }
//! }
//! handle.shutdown(Duration::from_secs(5)).await;
//! # Ok(()) }
//! ```
//!
//! # gtcp names
//!
//! | gtcp                                   | here                                                    |
//! |----------------------------------------|---------------------------------------------------------|
//! | `gtcp.NewConn(addr, timeout)`          | [`Conn::connect`], [`ConnBuilder::connect_timeout`]     |
//! | `NewConnTLS`, `NewConnKeyCrt`          | [`Conn::connect_tls`], [`ConnBuilder::tls`]             |
//! | `Conn.SendPkg`, `SendPkgWithTimeout`   | [`Conn::send_pkg`], [`Conn::send_pkg_timeout`]          |
//! | `Conn.RecvPkg`, `RecvPkgWithTimeout`   | [`Conn::recv_pkg`], [`Conn::recv_pkg_timeout`]          |
//! | `Conn.SendRecvPkg`, `...WithTimeout`   | [`Conn::send_recv_pkg`], [`Conn::send_recv_pkg_timeout`] |
//! | `Conn.Send`, `Recv(n)`, `RecvLine`     | [`Conn::send`], [`Conn::recv`], [`Conn::recv_line`]     |
//! | `Conn.SendRecv`, `...WithTimeout`      | [`Conn::send_recv`], [`Conn::send_recv_timeout`]        |
//! | `PkgOption{HeaderSize, MaxDataSize, Retry}` | [`PkgOption`]`::new().header_size(..).max_data_size(..).retry(..)`, passed to the `_with` forms |
//! | `Retry{Count, Interval}`               | [`Retry`]`::new(count, interval)`                       |
//! | `RemoteAddr`, `LocalAddr`              | [`Conn::peer_addr`], [`Conn::local_addr`]               |
//! | `gtcp.NewServer(addr, handler)` + `Run` | [`Server::bind`] + [`Server::serve`]                   |
//! | `NewServerTLS`, `NewServerKeyCrt`      | [`ServerBuilder::tls`], [`ServerBuilder::tls_pem_files`] |
//! | `Server.Close`                         | [`ServerHandle::shutdown`] (graceful, with a deadline)  |
//! | `GetListenedAddress`                   | [`Server::local_addr`], [`ServerHandle::local_addr`]    |
//! | `gtcp.NewPoolConn(addr)`, `PoolConn.Close` | [`Pool::get`], dropping the [`PooledConn`]          |
//! | `err.Error() == "EOF"`                 | [`PkgError::Closed`], [`PkgError::is_closed`]           |
//!
//! Where this differs from gtcp, and why: a `_timeout` call bounds the
//! whole call (waiting for the write lock included), and with a [`Retry`]
//! each attempt; only failures another attempt could fix are retried
//! (timeouts, transient socket errors), never a closed connection or a
//! malformed package. A send cut off in the middle of a package refuses all
//! later sends ([`PkgError::SendBroken`]) instead of writing after a torn
//! package. `recv_line` has a length limit. An empty package is returned
//! as empty bytes, not `nil`.

mod accept;
mod codec;
mod conn;
mod connect;
mod error;
mod options;
mod pool;
mod read_half;
mod retry;
mod server;
mod stream;
mod write_half;

pub use self::codec::PkgCodec;
pub use self::conn::Conn;
pub use self::connect::{ConnBuilder, DEFAULT_CONNECT_TIMEOUT};
pub use self::error::PkgError;
pub use self::options::{default_max_data_size, PkgOption, Retry, DEFAULT_HEADER_SIZE};
pub use self::pool::{Pool, PoolBuilder, PooledConn, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_IDLE};
pub use self::read_half::{ReadHalf, DEFAULT_MAX_LINE_LEN};
pub use self::server::{HandlerResult, Server, ServerBuilder, ServerHandle, ShutdownReport};
pub use self::write_half::WriteHalf;
