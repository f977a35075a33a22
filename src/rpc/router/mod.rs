//! [`Router`]: service methods to handlers, erpc's router, as tower services.

mod catch;
mod context;
mod handler;
mod route;
mod table;

use std::{
    convert::Infallible,
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use tower::{Layer, Service};

pub use self::context::{CallCtx, PushCtx};
pub(crate) use self::handler::ReplyShape;
pub use self::handler::{CallHandler, IntoReply, PushHandler, Reply};
use self::{
    catch::CatchError,
    handler::{CallService, PushService},
    table::Table,
};
use crate::{
    rpc::{
        codec::{FromBody, Raw},
        session::Conn,
        Message, MessageType, Session, Status,
    },
    BoxError,
};

/// What a route's service takes: a call or push and the session it came on.
/// Plugins written as tower layers (see [`Router::layer`]) see it.
#[derive(Debug)]
pub struct Inbound {
    /// The session the message came on.
    pub session: Session,
    /// The message, its body still encoded.
    pub message: Message,
}

pub use self::route::Route;
pub(crate) use self::route::{Handle, ReplyCheck, RouteFuture};

/// Service methods to handlers (erpc's router), every route a tower
/// service.
///
/// - [`call`](Router::call) and [`push`](Router::push) route an exact
///   service method to an async handler `(ctx, typed arg) -> Result<_, Status>`;
/// - [`nest`](Router::nest) mounts a group under a prefix (teleport's
///   `SubRoute`), keeping the group's own layers (its plugins);
/// - [`layer`](Router::layer) wraps every route so far in a tower layer;
/// - [`unknown_call`](Router::unknown_call) and
///   [`unknown_push`](Router::unknown_push) catch the rest. Without them an
///   unknown call is answered 404 and an unknown push is dropped with a
///   warning, as erpc does.
///
/// A body that does not decode into the handler's argument is answered 400,
/// a handler that panics 500; the session carries on either way.
///
/// ```
/// use getty::rpc::{codec::Raw, CallCtx, PushCtx, Router, Status};
///
/// async fn echo(_: CallCtx, arg: Raw) -> Result<Raw, Status> { Ok(arg) }
/// async fn fail(_: CallCtx, _: ()) -> Result<(), Status> { Err(Status::new(1234, "home fail")) }
/// async fn hello(ctx: PushCtx, who: String) -> Result<(), Status> {
///     println!("{} greets {who}", ctx.peer_addr());
///     Ok(())
/// }
///
/// let home = Router::new().call("/echo", echo).call("/fail", fail)
///     .layer(tower::limit::ConcurrencyLimitLayer::new(64));
/// let router = Router::new().nest("/home", home).push("/push/hello", hello);
/// assert!(router.has_call("/home/echo") && router.has_push("/push/hello"));
/// ```
#[derive(Clone)]
pub struct Router {
    calls: Table,
    pushes: Table,
    unknown_call: Option<Route>,
    unknown_push: Option<Route>,
    /// The answer to a call nobody takes (404, or 400 without a method).
    refuse: Route,
}

impl Default for Router {
    fn default() -> Router {
        Router {
            calls: Table::default(),
            pushes: Table::default(),
            unknown_call: None,
            unknown_push: None,
            refuse: Route::handler(Refuse),
        }
    }
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("calls", &self.calls.methods())
            .field("pushes", &self.pushes.methods())
            .field("unknown_call", &self.unknown_call.is_some())
            .field("unknown_push", &self.unknown_push.is_some())
            .finish()
    }
}

impl Router {
    /// A router without routes.
    pub fn new() -> Router {
        Router::default()
    }

    /// Routes calls to `service_method` to `handler`, replacing an earlier
    /// route of the same method.
    pub fn call<H, A, R>(mut self, service_method: impl Into<String>, handler: H) -> Router
    where
        H: CallHandler<A, R>,
        A: FromBody + Send + 'static,
        R: IntoReply + Send + 'static,
    {
        self.calls.insert(
            service_method.into(),
            Route::handler(CallService::new(handler)),
        );
        self
    }

    /// Routes pushes to `service_method` to `handler`.
    pub fn push<H, A>(mut self, service_method: impl Into<String>, handler: H) -> Router
    where
        H: PushHandler<A>,
        A: FromBody + Send + 'static,
    {
        self.pushes.insert(
            service_method.into(),
            Route::handler(PushService::new(handler)),
        );
        self
    }

    /// Routes calls to `service_method` to a tower service of your own
    /// (it answers with the reply message; its errors become 500 replies,
    /// or the status itself when the error is a [`Status`]).
    pub fn call_service<S>(mut self, service_method: impl Into<String>, service: S) -> Router
    where
        S: Service<Inbound, Response = Option<Message>> + Clone + Send + Sync + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
    {
        self.calls.insert(
            service_method.into(),
            Route::service(CatchError::new(service)),
        );
        self
    }

    /// Handles calls to any service method without a route (teleport's
    /// `SetUnknownCall`); take [`Raw`] to get the body as it came.
    pub fn unknown_call<H, R>(mut self, handler: H) -> Router
    where
        H: CallHandler<Raw, R>,
        R: IntoReply + Send + 'static,
    {
        self.unknown_call = Some(Route::handler(CallService::new(handler)));
        self
    }

    /// Handles pushes to any service method without a route (teleport's
    /// `SetUnknownPush`).
    pub fn unknown_push<H>(mut self, handler: H) -> Router
    where
        H: PushHandler<Raw>,
    {
        self.unknown_push = Some(Route::handler(PushService::new(handler)));
        self
    }

    /// Mounts `group`'s routes under `prefix` (`/home` + `/echo` =
    /// `/home/echo`), each keeping the layers the group put on it: the
    /// group's plugins stay the group's. The group's unknown handlers are
    /// not taken.
    pub fn nest(mut self, prefix: &str, group: Router) -> Router {
        let prefix = prefix.trim_end_matches('/');
        for (method, route) in group.calls.into_routes() {
            self.calls.insert(format!("{prefix}{method}"), route);
        }
        for (method, route) in group.pushes.into_routes() {
            self.pushes.insert(format!("{prefix}{method}"), route);
        }
        self
    }

    /// Wraps every route added so far (unknown handlers included) in
    /// `layer`: a plugin for these routes. Routes added later are not
    /// wrapped. Errors of the layered service become 500 replies to calls
    /// (or the status itself when the error is a [`Status`]) and are
    /// logged for pushes.
    pub fn layer<L>(self, layer: L) -> Router
    where
        L: Layer<Route>,
        L::Service: Service<Inbound, Response = Option<Message>> + Clone + Send + Sync + 'static,
        <L::Service as Service<Inbound>>::Error: Into<BoxError>,
        <L::Service as Service<Inbound>>::Future: Send + 'static,
    {
        let wrap = |route: Route| Route::service(CatchError::new(layer.layer(route)));
        Router {
            calls: self.calls.map(wrap),
            pushes: self.pushes.map(wrap),
            unknown_call: self.unknown_call.map(wrap),
            unknown_push: self.unknown_push.map(wrap),
            refuse: self.refuse,
        }
    }

    /// Whether calls to `service_method` have a route.
    pub fn has_call(&self, service_method: &str) -> bool {
        self.calls.contains(service_method)
    }

    /// Whether pushes to `service_method` have a route.
    pub fn has_push(&self, service_method: &str) -> bool {
        self.pushes.contains(service_method)
    }

    /// The route a call or push goes to; `None` for a push nobody takes.
    /// A call always gets an answer (404 or 400 when there is no route).
    pub(crate) fn route(&self, msg: &Message) -> Option<&Route> {
        self.route_cached(msg, &mut RouteCache::default())
    }

    /// `route`, remembering in `cache` (a session's own) where the last
    /// call's route was: a session's calls mostly go to the method before
    /// them, and a fixed-size comparison finds it again where the table's
    /// lookup hashes the method, probes and compares through `memcmp`.
    pub(crate) fn route_cached(&self, msg: &Message, cache: &mut RouteCache) -> Option<&Route> {
        match msg.mtype {
            MessageType::Call => {
                let key = msg.service_method.inline_key();
                if let (Some(key), Some((last, at))) = (key, cache.last) {
                    if key == last {
                        return self.calls.at(at);
                    }
                }
                match self.calls.position(msg.service_method.as_bytes()) {
                    Some(at) => {
                        cache.last = key.map(|key| (key, at));
                        self.calls.at(at)
                    }
                    None => Some(self.unknown_call.as_ref().unwrap_or(&self.refuse)),
                }
            }
            MessageType::Push => self
                .pushes
                .get(msg.service_method.as_bytes())
                .or(self.unknown_push.as_ref()),
            _ => None,
        }
    }
}

/// The route of the last call a session routed by its method, kept by the
/// session (see `Router::route_cached`). Valid for one router only: a
/// router's routes keep their places once it serves.
#[derive(Debug, Default)]
pub(crate) struct RouteCache {
    last: Option<(crate::rpc::method::InlineKey, usize)>,
}

/// Answers a call without a route: 400 for an empty service method, 404
/// otherwise (erpc's answers).
#[derive(Debug, Clone, Copy)]
struct Refuse;

impl Refuse {
    /// The refusal of `msg`: 400 for an empty service method, else 404.
    fn refusal(msg: &Message) -> Message {
        let status = if msg.service_method.is_empty() {
            Status::framework_with(
                Status::CODE_BAD_MESSAGE,
                "invalid service method for message",
            )
        } else {
            Status::framework(Status::CODE_NOT_FOUND)
        };
        ReplyShape::of(msg).failed(status)
    }
}

impl Handle for Refuse {
    fn handle_message(
        &self,
        _: Session,
        conn: &Arc<Conn>,
        msg: &mut Message,
        check: ReplyCheck,
    ) -> RouteFuture {
        // Checked like every handler's reply (a tiny frame, but the
        // session's limit may be tinier).
        let mut reply = Refuse::refusal(msg);
        check.apply(conn, &mut reply, msg.xfer_pipe.clone());
        Box::pin(std::future::ready(Ok(Some(reply))))
    }

    /// Needs no connection: a session redialing answers 404 all the same.
    fn handle(&self, inbound: Inbound) -> RouteFuture {
        Box::pin(std::future::ready(Ok(Some(Refuse::refusal(
            &inbound.message,
        )))))
    }
}

impl Service<Inbound> for Router {
    type Response = Option<Message>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Option<Message>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, inbound: Inbound) -> Self::Future {
        match self.route(&inbound.message) {
            Some(route) => route.dispatch(inbound),
            None => {
                tracing::warn!(
                    service_method = %inbound.message.service_method,
                    "push to an unknown service method dropped"
                );
                Box::pin(std::future::ready(Ok(None)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::rpc::ServiceMethod;

    async fn a(_: CallCtx, _: Bytes) -> Result<Bytes, Status> {
        Ok(Bytes::new())
    }

    /// A call as the decoder makes it: a short method kept in place.
    fn decoded_call(method: &str) -> Message {
        let frame = Bytes::copy_from_slice(method.as_bytes());
        let method = ServiceMethod::from_frame(&frame, 0..frame.len()).expect("utf-8");
        Message::new(MessageType::Call, 1, method)
    }

    fn same(a: Option<&Route>, b: Option<&Route>) -> bool {
        match (a, b) {
            (Some(a), Some(b)) => std::ptr::eq(a, b),
            _ => false,
        }
    }

    #[test]
    fn a_sessions_route_cache_finds_what_the_table_finds_as_methods_alternate() {
        let router = Router::new()
            .call("/home/echo", a)
            .call("/home/fail", a)
            .call("/a/method/longer/than/23/bytes", a);
        let mut cache = RouteCache::default();
        let methods = [
            "/home/echo",
            "/home/echo",
            "/home/fail",
            "/home/echo",
            "/nowhere",
            "/home/echo",
            "/a/method/longer/than/23/bytes",
            "/home/fail",
            "/home/fail",
        ];
        for method in methods {
            let msg = decoded_call(method);
            let cached = router.route_cached(&msg, &mut cache);
            let looked_up = router.route(&msg);
            assert!(same(cached, looked_up), "{method}: another route");
        }
        // The same route is not the same for different methods.
        let echo = router.route(&decoded_call("/home/echo"));
        let fail = router.route(&decoded_call("/home/fail"));
        assert!(!same(echo, fail));
        // An unknown method gets the refusal, never the cached route.
        let mut cache = RouteCache::default();
        let _ = router.route_cached(&decoded_call("/home/echo"), &mut cache);
        let unknown = router.route_cached(&decoded_call("/home/ecko"), &mut cache);
        assert!(same(unknown, Some(&router.refuse)));
    }

    #[test]
    fn a_replaced_route_takes_the_place_of_the_one_it_replaces() {
        let router = Router::new().call("/x", a).call("/y", a).call("/x", a);
        assert_eq!(router.calls.methods(), ["/x", "/y"]);
        let routes: Vec<String> = router.calls.into_routes().map(|(m, _)| m).collect();
        assert_eq!(routes.len(), 2, "{routes:?}");
    }
}
