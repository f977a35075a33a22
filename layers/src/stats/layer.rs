//! [`StatsLayer`]: wraps a session's stack in a [`StatsService`].

use tower_layer::Layer;

use super::{Stats, StatsService};

/// Wraps each session's service in a [`StatsService`] counting into one
/// [`Stats`] handle.
///
/// Put it in the stack the make-service builds for every session (it keeps
/// per-session state, so a stack is built per session anyway), outermost so
/// that latency includes the layers below it and every event is seen.
///
/// ```
/// use bytes::Bytes;
/// use getty::{new_session_fn, EventListener, ListenerService, Session};
/// use getty_layers::stats::{Stats, StatsLayer};
///
/// struct Echo;
/// impl EventListener<Bytes> for Echo {
///     fn on_message(&mut self, _: &Session, pkg: Bytes) -> Option<Bytes> { Some(pkg) }
/// }
///
/// let stats = Stats::new();
/// let layer = StatsLayer::new(stats.clone());
/// let make = new_session_fn(move |_: &Session| {
///     Ok::<_, getty::BoxError>(
///         tower::ServiceBuilder::new()
///             .layer(layer.clone())
///             .service(ListenerService::new(Echo)),
///     )
/// });
/// // server.serve(LengthCodec::new(), make); later: println!("{}", stats.snapshot());
/// # let _ = make;
/// ```
#[derive(Debug, Clone)]
pub struct StatsLayer {
    stats: Stats,
}

impl StatsLayer {
    /// A layer counting into `stats`.
    pub fn new(stats: Stats) -> Self {
        StatsLayer { stats }
    }

    /// The handle counted into.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }
}

impl<S> Layer<S> for StatsLayer {
    type Service = StatsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        StatsService::new(inner, self.stats.clone())
    }
}
