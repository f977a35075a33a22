//! [`ServiceBuilderExt`]: getty's layers as `ServiceBuilder` methods.

use tower::{layer::util::Stack, ServiceBuilder};

#[cfg(feature = "heartbeat")]
use crate::heartbeat::HeartbeatLayer;
#[cfg(feature = "on-close")]
use crate::on_close::OnCloseLayer;
#[cfg(feature = "pool")]
use crate::pool::TaskPoolLayer;
#[cfg(feature = "rate-limit")]
use crate::rate_limit::RateLimitLayer;
#[cfg(feature = "stats")]
use crate::stats::{Stats, StatsLayer};
#[cfg(feature = "timeout")]
use crate::timeout::EventTimeoutLayer;
#[cfg(feature = "trace")]
use crate::trace::TraceLayer;

/// getty's layers as [`ServiceBuilder`] methods, so a session's stack reads
/// top to bottom, outermost first, mixed freely with tower's own layers.
///
/// The names avoid tower's inherent `ServiceBuilder` methods (`timeout`,
/// `rate_limit`, `concurrency_limit`), which would otherwise win silently.
///
/// ```
/// use bytes::Bytes;
/// use getty::{EventListener, ListenerService, Session};
/// use getty_layers::{
///     heartbeat::HeartbeatLayer, pool::{TaskPool, TaskPoolLayer}, rate_limit::{Rate, RateLimitLayer},
///     stats::Stats, timeout::EventTimeoutLayer, trace::TraceLayer, ServiceBuilderExt,
/// };
/// use std::time::Duration;
/// use tower::ServiceBuilder;
///
/// struct Echo;
/// impl EventListener<Bytes> for Echo {
///     fn on_message(&mut self, _: &Session, pkg: Bytes) -> Option<Bytes> { Some(pkg) }
/// }
///
/// let stats = Stats::new();
/// let pool = TaskPool::new(64);
/// let stack = ServiceBuilder::new()
///     .trace_events(TraceLayer::new().slow_threshold(Duration::from_millis(200)))
///     .stats(&stats)
///     // Given to a server the packet type is inferred; here it is named.
///     .heartbeat(HeartbeatLayer::<Bytes>::new().close_when_reader_idle(Duration::from_secs(60)))
///     .on_close(|s: &Session| println!("{} gone", s.id()))
///     .session_rate_limit(RateLimitLayer::new(Rate::per_second(1000)))
///     .task_pool(TaskPoolLayer::new(pool.clone()))
///     .event_timeout(EventTimeoutLayer::new(Duration::from_secs(1)))
///     .timeout(Duration::from_secs(5)) // tower's own, mixed in
///     .service(ListenerService::new(Echo));
/// # let _ = stack;
/// ```
pub trait ServiceBuilderExt<L>: Sized {
    /// Adds a [`HeartbeatLayer`]: idle detection on `Tick`.
    #[cfg(feature = "heartbeat")]
    fn heartbeat<W>(self, layer: HeartbeatLayer<W>) -> ServiceBuilder<Stack<HeartbeatLayer<W>, L>>;

    /// Adds a [`StatsLayer`] counting into `stats`.
    #[cfg(feature = "stats")]
    fn stats(self, stats: &Stats) -> ServiceBuilder<Stack<StatsLayer, L>>;

    /// Adds an [`OnCloseLayer`]: `callback` runs once when the session ends.
    #[cfg(feature = "on-close")]
    fn on_close<F>(self, callback: F) -> ServiceBuilder<Stack<OnCloseLayer<F>, L>>;

    /// Adds an [`EventTimeoutLayer`]: a deadline per message, with a policy.
    #[cfg(feature = "timeout")]
    fn event_timeout(self, layer: EventTimeoutLayer)
        -> ServiceBuilder<Stack<EventTimeoutLayer, L>>;

    /// Adds a [`TaskPoolLayer`]: handler work bounded across sessions.
    #[cfg(feature = "pool")]
    fn task_pool(self, layer: TaskPoolLayer) -> ServiceBuilder<Stack<TaskPoolLayer, L>>;

    /// Adds a [`TraceLayer`]: a span per event and slow-handler warnings.
    #[cfg(feature = "trace")]
    fn trace_events(self, layer: TraceLayer) -> ServiceBuilder<Stack<TraceLayer, L>>;

    /// Adds a [`RateLimitLayer`]: packets per second for this session.
    #[cfg(feature = "rate-limit")]
    fn session_rate_limit(self, layer: RateLimitLayer) -> ServiceBuilder<Stack<RateLimitLayer, L>>;
}

impl<L> ServiceBuilderExt<L> for ServiceBuilder<L> {
    #[cfg(feature = "heartbeat")]
    fn heartbeat<W>(self, layer: HeartbeatLayer<W>) -> ServiceBuilder<Stack<HeartbeatLayer<W>, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "stats")]
    fn stats(self, stats: &Stats) -> ServiceBuilder<Stack<StatsLayer, L>> {
        self.layer(StatsLayer::new(stats.clone()))
    }

    #[cfg(feature = "on-close")]
    fn on_close<F>(self, callback: F) -> ServiceBuilder<Stack<OnCloseLayer<F>, L>> {
        self.layer(OnCloseLayer::new(callback))
    }

    #[cfg(feature = "timeout")]
    fn event_timeout(
        self,
        layer: EventTimeoutLayer,
    ) -> ServiceBuilder<Stack<EventTimeoutLayer, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "pool")]
    fn task_pool(self, layer: TaskPoolLayer) -> ServiceBuilder<Stack<TaskPoolLayer, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "trace")]
    fn trace_events(self, layer: TraceLayer) -> ServiceBuilder<Stack<TraceLayer, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "rate-limit")]
    fn session_rate_limit(self, layer: RateLimitLayer) -> ServiceBuilder<Stack<RateLimitLayer, L>> {
        self.layer(layer)
    }
}
