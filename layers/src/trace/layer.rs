//! [`TraceLayer`]: spans per event, slow-handler warnings, packet logging.

use std::time::Duration;

use tower_layer::Layer;

use super::Trace;

/// Summary budget of a slow-handler warning, in bytes.
const DEFAULT_SUMMARY_BYTES: usize = 64;

/// Adds a span per event, warns about slow handlers and optionally logs
/// packets; see the [module docs](super) for what is logged where.
///
/// ```
/// use bytes::Bytes;
/// use getty::{BoxError, Request};
/// use getty_layers::trace::TraceLayer;
/// use std::time::Duration;
/// use tower::ServiceBuilder;
///
/// let stack = ServiceBuilder::new()
///     .layer(
///         TraceLayer::new()
///             .slow_threshold(Duration::from_millis(200)) // warn above 200 ms
///             .summary_bytes(32)                          // of the packet, in the warning
///             .log_packets(128),                          // debug-log packets, cut at 128 bytes
///     )
///     .service_fn(|req: Request<Bytes>| async move { Ok::<_, BoxError>(req.into_message()) });
/// # let _ = stack;
/// ```
#[derive(Debug, Clone, Copy)]
pub struct TraceLayer {
    pub(super) slow_threshold: Option<Duration>,
    pub(super) log_packets: Option<usize>,
    pub(super) summary_bytes: usize,
}

impl TraceLayer {
    /// Spans per event only: no slow-handler warnings, no packet logging.
    pub fn new() -> Self {
        TraceLayer {
            slow_threshold: None,
            log_packets: None,
            summary_bytes: DEFAULT_SUMMARY_BYTES,
        }
    }

    /// Warns (once per event, when its handling completes) about any event
    /// whose handling took longer than `threshold`: teleport's slow-comet
    /// warning. The line carries the elapsed time, the event's name and,
    /// for a message, a summary of the packet.
    ///
    /// ```
    /// # use getty_layers::trace::TraceLayer;
    /// let layer = TraceLayer::new().slow_threshold(std::time::Duration::from_secs(1));
    /// assert_eq!(layer.get_slow_threshold(), Some(std::time::Duration::from_secs(1)));
    /// ```
    pub fn slow_threshold(mut self, threshold: Duration) -> Self {
        self.slow_threshold = Some(threshold);
        self
    }

    /// Logs every packet received, at debug level, as its `Debug` rendering
    /// cut to `max_bytes` bytes (and `...` when cut).
    ///
    /// ```
    /// # use getty_layers::trace::TraceLayer;
    /// assert_eq!(TraceLayer::new().log_packets(256).get_log_packets(), Some(256));
    /// ```
    pub fn log_packets(mut self, max_bytes: usize) -> Self {
        self.log_packets = Some(max_bytes);
        self
    }

    /// How much of the packet's `Debug` rendering a slow-handler warning
    /// carries, in bytes (default 64).
    ///
    /// ```
    /// # use getty_layers::trace::TraceLayer;
    /// assert_eq!(TraceLayer::new().get_summary_bytes(), 64);
    /// assert_eq!(TraceLayer::new().summary_bytes(16).get_summary_bytes(), 16);
    /// ```
    pub fn summary_bytes(mut self, max_bytes: usize) -> Self {
        self.summary_bytes = max_bytes;
        self
    }

    /// The slow-handler threshold, if set.
    pub fn get_slow_threshold(&self) -> Option<Duration> {
        self.slow_threshold
    }

    /// The packet-logging budget, if packets are logged.
    pub fn get_log_packets(&self) -> Option<usize> {
        self.log_packets
    }

    /// The summary budget of slow-handler warnings.
    pub fn get_summary_bytes(&self) -> usize {
        self.summary_bytes
    }
}

impl Default for TraceLayer {
    fn default() -> Self {
        TraceLayer::new()
    }
}

impl<S> Layer<S> for TraceLayer {
    type Service = Trace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Trace::with_settings(inner, *self)
    }
}
