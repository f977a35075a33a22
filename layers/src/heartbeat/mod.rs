//! Heartbeats: idle detection after netty's `IdleStateHandler`.
//!
//! [`HeartbeatLayer`] watches how long a session has received nothing
//! (reader idle), written nothing (writer idle), or both (all idle), on
//! every [`Event::Tick`], and closes the session or sends it a ping when a
//! limit is reached. A server closes silent clients; a client pings when it
//! has been quiet, so the server's reader sees traffic.
//!
//! ```no_run
//! use bytes::Bytes;
//! use getty::{codec::LengthCodec, new_session_fn, BoxError, Error, EventListener, ListenerService, Server, Session};
//! use getty_layers::heartbeat::{HeartbeatLayer, IdleError};
//! use std::time::Duration;
//!
//! struct Echo;
//! impl EventListener<Bytes> for Echo {
//!     fn on_message(&mut self, _: &Session, pkg: Bytes) -> Option<Bytes> { Some(pkg) }
//!     fn on_error(&mut self, session: &Session, error: &Error) {
//!         if let Some(idle) = std::error::Error::source(error).and_then(|e| e.downcast_ref::<IdleError>()) {
//!             println!("{session}: {idle}"); // "reader idle for 30.0s (limit 30s) from ..."
//!         }
//!     }
//! }
//!
//! # async fn demo() -> std::io::Result<()> {
//! let server = Server::builder().bind("127.0.0.1:0").await?;
//! let handle = server.serve(
//!     LengthCodec::new(),
//!     new_session_fn(|_: &Session| {
//!         Ok::<_, BoxError>(
//!             tower::ServiceBuilder::new()
//!                 .layer(HeartbeatLayer::new().close_when_reader_idle(Duration::from_secs(30)))
//!                 .service(ListenerService::new(Echo)),
//!         )
//!     }),
//! );
//! # handle.shutdown(Duration::from_secs(1)).await;
//! # Ok(())
//! # }
//! ```

mod error;
mod layer;

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use bytes::Bytes;
use getty::{Event, Request, SendError, Session};
use tower::Service;

use self::layer::{Action, Config};
pub use self::{
    error::{IdleError, IdleState},
    layer::HeartbeatLayer,
};

/// The heartbeat service: passes every event to the inner service, and on
/// [`Event::Tick`] first checks the session for idleness and acts (close or
/// ping). On [`Event::Open`] (and on every tick) it makes the session's cron
/// period at most what its limits need.
/// Made by [`HeartbeatLayer`]; see there for the rules.
///
/// ```
/// use bytes::Bytes;
/// use getty::{Addr, EndpointKind, Event, Request, Session, SessionConfig};
/// use getty_layers::heartbeat::{Heartbeat, HeartbeatLayer};
/// use std::{convert::Infallible, time::Duration};
/// use tower::{service_fn, Service, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let inner = service_fn(|_: Request<Bytes>| async { Ok::<_, Infallible>(None::<Bytes>) });
/// let config = HeartbeatLayer::new().close_when_reader_idle(Duration::from_millis(20));
/// let mut svc = Heartbeat::new(inner, config);
///
/// let session: Session =
///     Session::new(EndpointKind::Detached, Addr::Unknown, Addr::Unknown, SessionConfig::default());
/// svc.ready().await.unwrap().call(Request::new(session.clone(), Event::Open)).await.unwrap();
/// assert_eq!(session.cron_period(), Some(Duration::from_millis(10)), "set on open");
///
/// std::thread::sleep(Duration::from_millis(25)); // nothing received for longer than 20 ms
/// svc.ready().await.unwrap().call(Request::new(session.clone(), Event::Tick)).await.unwrap();
/// assert!(session.is_closed());
/// # }
/// ```
pub struct Heartbeat<S, W = Bytes> {
    inner: S,
    config: Arc<Config<W>>,
    /// When each state was last pinged, and in which session (a service
    /// cloned from another session's must not inherit its pings).
    pinged: [Option<(u64, Instant)>; 3],
}

impl<S, W> Heartbeat<S, W> {
    /// Wraps `inner` with the checks configured in `config`.
    pub fn new(inner: S, config: HeartbeatLayer<W>) -> Self {
        Heartbeat {
            inner,
            config: Arc::clone(config.config()),
            pinged: [None; 3],
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// On `Open` and on every `Tick`: the session's cron period becomes at
    /// most what the checks need, so ticks come, and come often enough (see
    /// "Granularity" on [`HeartbeatLayer`]). A finer period is kept.
    fn fit_cron_period(&self, session: &Session<W>) {
        let Some(needed) = self.config.period() else {
            return;
        };
        match session.cron_period() {
            Some(period) if period <= needed => {}
            existing => {
                tracing::debug!(
                    ?existing,
                    period = ?needed,
                    "heartbeat: setting the cron period the idle limits need"
                );
                session.set_cron_period(Some(needed));
            }
        }
    }

    /// On `Tick`: closes on the first close rule reached, else sends at most
    /// one due ping.
    fn on_tick(&mut self, session: &Session<W>) {
        if session.is_closed() {
            return;
        }
        let now = Instant::now();
        let read = session.active();
        let written = session.last_write();
        let since = |state: IdleState| match state {
            IdleState::ReaderIdle => read,
            IdleState::WriterIdle => written,
            IdleState::AllIdle => read.max(written),
        };
        for rule in &self.config.rules {
            let from = since(rule.state);
            match &rule.action {
                Action::Close => {
                    let idle = now.saturating_duration_since(from);
                    if idle >= rule.limit {
                        let error = IdleError::new(
                            rule.state,
                            idle,
                            rule.limit,
                            session.peer_addr().clone(),
                        );
                        tracing::info!(session = %session, %error, "heartbeat: closing idle session");
                        session.close_with_error(error);
                        return;
                    }
                }
                Action::Ping(make_ping) => {
                    let slot = &mut self.pinged[rule.state.index()];
                    // A ping not yet written must not be repeated every tick.
                    let from = match *slot {
                        Some((id, at)) if id == session.id() => from.max(at),
                        _ => from,
                    };
                    let idle = now.saturating_duration_since(from);
                    if idle < rule.limit {
                        continue;
                    }
                    match session.try_send(make_ping()) {
                        Ok(()) => {
                            tracing::trace!(state = %rule.state, ?idle, "heartbeat: ping queued");
                            *slot = Some((session.id(), now));
                        }
                        Err(SendError::Blocked) => {
                            tracing::debug!(
                                state = %rule.state,
                                ?idle,
                                "heartbeat: outbound queue full, ping skipped"
                            );
                        }
                        Err(error) => {
                            tracing::debug!(state = %rule.state, %error, "heartbeat: ping not sent");
                        }
                    }
                    // At most one ping per tick.
                    return;
                }
            }
        }
    }
}

impl<S: Clone, W> Clone for Heartbeat<S, W> {
    fn clone(&self) -> Self {
        Heartbeat {
            inner: self.inner.clone(),
            config: Arc::clone(&self.config),
            pinged: self.pinged,
        }
    }
}

impl<S: fmt::Debug, W> fmt::Debug for Heartbeat<S, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Heartbeat")
            .field("inner", &self.inner)
            .field("rules", &self.config.rules)
            .finish()
    }
}

impl<S, P, W> Service<Request<P, W>> for Heartbeat<S, W>
where
    S: Service<Request<P, W>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<P, W>) -> Self::Future {
        match req.event {
            Event::Open => self.fit_cron_period(&req.session),
            Event::Tick => {
                self.fit_cron_period(&req.session);
                self.on_tick(&req.session);
            }
            _ => {}
        }
        self.inner.call(req)
    }
}
