//! [`SlowCall`]: the layer.

use std::time::Duration;

use tower::Layer;

use super::SlowCallService;

/// Logs a warning (target `getty::rpc::slow`) for each call or push its
/// routes took `threshold` or more to handle, with the service method, the
/// peer, the seq, the time taken and a call's status (teleport's
/// `SlowCometDuration`). A route layer: add it with
/// [`PeerBuilder::route_layer`](crate::rpc::PeerBuilder::route_layer) or
/// [`Router::layer`](crate::rpc::Router::layer).
///
/// The time is the handler's, from the route being called to its reply
/// being ready (decoding and encoding the bodies included).
///
/// ```
/// use getty::rpc::{plugin::slow::SlowCall, CallCtx, Peer, Router, Status};
/// use std::time::Duration;
///
/// async fn report(_: CallCtx, _: ()) -> Result<String, Status> { Ok("done".into()) }
///
/// let peer = Peer::builder()
///     .router(Router::new().call("/report", report))
///     .route_layer(SlowCall::new(Duration::from_millis(200)))
///     .build();
/// // WARN getty::rpc::slow: slow CALL service_method="/report" peer=127.0.0.1:50312 seq=3 elapsed=1.2s status=0
/// # let _ = peer;
/// ```
#[derive(Debug, Clone, Copy)]
pub struct SlowCall {
    threshold: Duration,
}

impl SlowCall {
    /// Warns about handling that took `threshold` or more.
    pub fn new(threshold: Duration) -> SlowCall {
        SlowCall { threshold }
    }

    /// The threshold.
    pub fn threshold(&self) -> Duration {
        self.threshold
    }
}

impl<S> Layer<S> for SlowCall {
    type Service = SlowCallService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SlowCallService {
            inner,
            threshold: self.threshold,
        }
    }
}
