//! Plain packages: gtcp's `SendPkg` / `RecvPkg` (TODO docs).

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
