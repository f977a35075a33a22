//! Per-route numbers: [`RpcStats`] counts calls by status code and pushes,
//! and times both, for every route it wraps.

mod future;
mod snapshot;

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use tower::{Layer, Service};

use self::future::Record;
pub use self::future::RpcStatsFuture;
pub use self::snapshot::{Latency, RouteStats, StatsSnapshot, LATENCY_BOUNDS};
use crate::rpc::{Inbound, Message, MessageType};

/// Counts what its routes handle: calls by route and status code, pushes
/// by route, and handling times per route. A route layer and a cloneable
/// handle at once: add a clone with
/// [`PeerBuilder::route_layer`](crate::rpc::PeerBuilder::route_layer) or
/// [`Router::layer`](crate::rpc::Router::layer) and read the numbers from
/// another with [`snapshot`](RpcStats::snapshot).
///
/// Routes are keyed by service method, its query part cut off; with an
/// unknown-call handler wrapped, every method a client makes up gets its
/// own entry. Calls no route takes (answered 404 by the router itself) are
/// not counted.
///
/// ```
/// use getty::rpc::{plugin::stats::RpcStats, CallCtx, Peer, Router, Status};
///
/// async fn hello(_: CallCtx, name: String) -> Result<String, Status> { Ok(format!("hello {name}")) }
///
/// let stats = RpcStats::new();
/// let peer = Peer::builder()
///     .router(Router::new().call("/hello", hello))
///     .route_layer(stats.clone())
///     .build();
/// // later
/// let snapshot = stats.snapshot();
/// if let Some(hello) = snapshot.route("/hello") {
///     println!("{} calls, {} OK, mean {:?}", hello.calls, hello.statuses.get(&0).unwrap_or(&0), hello.latency.mean());
/// }
/// # let _ = peer;
/// ```
#[derive(Clone, Default)]
pub struct RpcStats {
    shared: Arc<Shared>,
}

/// The numbers, behind one lock: counting is a map lookup and a few
/// additions, short enough not to contend.
#[derive(Default)]
pub(super) struct Shared {
    routes: Mutex<HashMap<String, RouteStats>>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl Shared {
    fn count(&self, route: String, mtype: MessageType, code: Option<i32>, elapsed: Duration) {
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        let stats = routes.entry(route).or_default();
        match mtype {
            MessageType::Push => stats.pushes += 1,
            _ => stats.calls += 1,
        }
        if let Some(code) = code {
            *stats.statuses.entry(code).or_default() += 1;
        }
        stats.latency.record(elapsed);
    }
}

impl fmt::Debug for RpcStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RpcStats")
            .field("snapshot", &self.snapshot())
            .finish()
    }
}

impl RpcStats {
    /// Empty numbers.
    pub fn new() -> RpcStats {
        RpcStats::default()
    }

    /// The numbers so far.
    pub fn snapshot(&self) -> StatsSnapshot {
        let routes = self.shared.routes.lock().unwrap_or_else(|p| p.into_inner());
        StatsSnapshot {
            routes: routes.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        }
    }

    /// Forgets every number.
    pub fn reset(&self) {
        self.shared
            .routes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

impl<S> Layer<S> for RpcStats {
    type Service = RpcStatsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcStatsService {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The service [`RpcStats`] wraps a route in.
///
/// ```
/// use getty::rpc::{plugin::stats::{RpcStats, RpcStatsService}, router::Route};
/// use tower::Layer;
///
/// fn wrap(route: Route) -> RpcStatsService<Route> {
///     RpcStats::new().layer(route)
/// }
/// # let _ = wrap;
/// ```
#[derive(Debug, Clone)]
pub struct RpcStatsService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Service<Inbound> for RpcStatsService<S>
where
    S: Service<Inbound, Response = Option<Message>>,
{
    type Response = Option<Message>;
    type Error = S::Error;
    type Future = RpcStatsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, inbound: Inbound) -> Self::Future {
        let method = &inbound.message.service_method;
        let route = method
            .split_once('?')
            .map_or(method.as_str(), |(path, _)| path);
        let record = Record {
            shared: Arc::clone(&self.shared),
            mtype: inbound.message.mtype,
            route: route.to_owned(),
        };
        RpcStatsFuture::new(self.inner.call(inbound), record)
    }
}
