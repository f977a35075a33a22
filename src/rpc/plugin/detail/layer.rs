//! [`DetailLog`]: the layer.

use tower::Layer;

use super::DetailLogService;

/// Logs each call or push its routes handle at info level (target
/// `getty::rpc::detail`), in the shape of erpc's run log: the direction,
/// the peer, the time taken, the service method, what was received (seq,
/// metadata and body sizes in bytes) and, for a call, what was sent back
/// (status code, sizes). A route layer: add it with
/// [`PeerBuilder::route_layer`](crate::rpc::PeerBuilder::route_layer) or
/// [`Router::layer`](crate::rpc::Router::layer).
///
/// ```text
/// CALL<- 127.0.0.1:50312 152µs "/home/echo" RECV(seq=2 meta=0B body=7B) SEND(status=0 meta=0B body=7B)
/// PUSH<- 127.0.0.1:50312 31µs "/push/note" RECV(seq=3 meta=5B body=4B)
/// ```
///
/// With [`with_bodies(true)`](DetailLog::with_bodies) the bodies are
/// printed too, as escaped text cut after [`BODY_LIMIT`](DetailLog::BODY_LIMIT)
/// bytes: they may hold secrets, so they are off by default.
///
/// ```
/// use getty::rpc::{plugin::detail::DetailLog, Peer, Router};
///
/// let peer = Peer::builder()
///     .router(Router::new())
///     .route_layer(DetailLog::new().with_bodies(true))
///     .build();
/// # let _ = peer;
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct DetailLog {
    bodies: bool,
}

impl DetailLog {
    /// How many bytes of a body are printed at most.
    pub const BODY_LIMIT: usize = 256;

    /// Logs sizes, not bodies.
    pub fn new() -> DetailLog {
        DetailLog::default()
    }

    /// Whether to print the bodies too (cut after
    /// [`BODY_LIMIT`](DetailLog::BODY_LIMIT) bytes).
    pub fn with_bodies(mut self, bodies: bool) -> DetailLog {
        self.bodies = bodies;
        self
    }
}

impl<S> Layer<S> for DetailLog {
    type Service = DetailLogService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DetailLogService {
            inner,
            bodies: self.bodies,
        }
    }
}
