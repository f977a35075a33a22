//! A deadline on handling each packet, with a policy for what an expiry
//! means for the session.
//!
//! [`EventTimeout`] starts a timer for every [`Event::Message`] that enters
//! the stack. When the inner service has not answered by the deadline, its
//! future is dropped (the work is cancelled at its next `.await`), the
//! session is told why with an [`EventTimeoutError`] naming the deadline, and
//! the call resolves `Ok` with an empty response (`S::Response::default()`:
//! `None` for `Option<W>`, an empty `Vec<W>`), so nothing is written for that
//! packet. The [`OnTimeout`] policy decides the rest:
//!
//! | policy                         | the session gets                                           | then                               |
//! |--------------------------------|------------------------------------------------------------|------------------------------------|
//! | [`OnTimeout::Continue`] (default) | `Event::Error(Error::Raised)` via [`Session::report_error`] | carries on: the next packet is served |
//! | [`OnTimeout::Close`]           | `Event::Error(Error::Raised)` via [`Session::close_with_error`] | drains and closes; `Close` follows |
//!
//! Other events (`Open`, `Tick`, `Error`, `Close`) pass untouched, with no
//! timer. Each expiry is logged at warn level.
//!
//! # Compared with `tower::timeout`
//!
//! tower's [`TimeoutLayer`](https://docs.rs/tower/latest/tower/timeout/struct.TimeoutLayer.html)
//! works in a getty stack unchanged. The two differ in what an expiry means:
//!
//! - tower's turns it into a *service error* (`Elapsed`). The driver sees
//!   [`Error::Handler`](getty::Error::Handler) with `Elapsed` as its source,
//!   and a service error while handling a message always closes the session.
//!   It also times every event, `Tick` and `Close` included.
//! - ours only times messages, names the deadline in an
//!   [`Error::Raised`](getty::Error::Raised) (downcast its source to
//!   [`EventTimeoutError`]), and lets the policy decide whether the session
//!   survives.
//!
//! ```
//! use bytes::Bytes;
//! use getty::{new_session_fn, BoxError, EventListener, ListenerService, Session};
//! use getty_layers::timeout::{EventTimeoutLayer, OnTimeout};
//! use std::time::Duration;
//! use tower::ServiceBuilder;
//!
//! struct Echo;
//! impl EventListener<Bytes> for Echo {
//!     fn on_message(&mut self, _: &Session, pkg: Bytes) -> Option<Bytes> { Some(pkg) }
//! }
//!
//! // Ours: a slow packet is reported (or closes, with OnTimeout::Close).
//! let ours = new_session_fn(|_: &Session| {
//!     Ok::<_, BoxError>(
//!         ServiceBuilder::new()
//!             .layer(EventTimeoutLayer::new(Duration::from_secs(1)).on_timeout(OnTimeout::Continue))
//!             .service(ListenerService::new(Echo)),
//!     )
//! });
//!
//! // tower's: a slow packet (or tick, or close) is a service error that closes the session.
//! let towers = new_session_fn(|_: &Session| {
//!     Ok::<_, BoxError>(
//!         ServiceBuilder::new()
//!             .timeout(Duration::from_secs(1))
//!             .service(ListenerService::new(Echo)),
//!     )
//! });
//! # let _ = (ours, towers);
//! ```
//!
//! # What can be cancelled
//!
//! Dropping the inner future cancels work that awaits. A handler that runs
//! synchronously inside `call` (such as an [`EventListener`](getty::EventListener)'s
//! `on_message` behind [`ListenerService`](getty::ListenerService)) has
//! finished before the timer starts, so it is never timed out; move slow work
//! into an async service, or onto a task pool, to bound it.
//!
//! [`Event::Message`]: getty::Event::Message
//! [`Session::report_error`]: getty::Session::report_error
//! [`Session::close_with_error`]: getty::Session::close_with_error

mod error;
pub mod future;
mod layer;

use std::{
    task::{Context, Poll},
    time::Duration,
};

use getty::{Event, Request};
use tower::Service;

use self::future::ResponseFuture;
pub use self::{error::EventTimeoutError, layer::EventTimeoutLayer};

/// What an expired deadline does to the session, besides cancelling the
/// packet's handling.
///
/// ```
/// use getty_layers::timeout::OnTimeout;
///
/// assert_eq!(OnTimeout::default(), OnTimeout::Continue);
/// assert_eq!(OnTimeout::Close.to_string(), "session closed");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OnTimeout {
    /// Report the timeout ([`Session::report_error`](getty::Session::report_error)):
    /// the session's stack sees `Event::Error` and the session carries on.
    #[default]
    Continue,
    /// Close the session with the timeout as its reason
    /// ([`Session::close_with_error`](getty::Session::close_with_error)):
    /// `Event::Error`, then the drain and `Event::Close`.
    Close,
}

impl std::fmt::Display for OnTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OnTimeout::Continue => "session carries on",
            OnTimeout::Close => "session closed",
        })
    }
}

/// Puts a deadline on handling each [`Event::Message`];
/// see the [module docs](self) for what an expiry does.
///
/// Usually made by [`EventTimeoutLayer`]; by hand:
///
/// ```
/// use bytes::Bytes;
/// use getty::{Addr, EndpointKind, Event, Request, Session, SessionConfig};
/// use getty_layers::timeout::{EventTimeout, OnTimeout};
/// use std::{convert::Infallible, time::Duration};
/// use tower::{service_fn, Service, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let slow = service_fn(|req: Request<Bytes>| async move {
///     tokio::time::sleep(Duration::from_secs(60)).await;
///     Ok::<_, Infallible>(req.into_message())
/// });
/// let mut svc = EventTimeout::new(slow, Duration::from_millis(10), OnTimeout::Close);
/// let session: Session = Session::new(
///     EndpointKind::Detached, Addr::Unknown, Addr::Unknown, SessionConfig::default(),
/// );
/// let req = Request::new(session.clone(), Event::Message(Bytes::from_static(b"ping")));
/// // Cancelled after 10 ms: no answer, and the policy closed the session.
/// assert_eq!(svc.ready().await.unwrap().call(req).await.unwrap(), None);
/// assert!(session.is_closed());
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct EventTimeout<S> {
    inner: S,
    deadline: Duration,
    policy: OnTimeout,
}

impl<S> EventTimeout<S> {
    /// Wraps `inner`: each message must be handled within `deadline`, or
    /// `policy` applies.
    pub fn new(inner: S, deadline: Duration, policy: OnTimeout) -> Self {
        EventTimeout {
            inner,
            deadline,
            policy,
        }
    }

    /// The deadline for handling one message.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// What an expiry does to the session.
    pub fn policy(&self) -> OnTimeout {
        self.policy
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
}

impl<S, P, W> Service<Request<P, W>> for EventTimeout<S>
where
    S: Service<Request<P, W>>,
    S::Response: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, W>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<P, W>) -> Self::Future {
        if !matches!(req.event, Event::Message(_)) {
            return ResponseFuture::untimed(self.inner.call(req));
        }
        let session = req.session.clone();
        let sleep = tokio::time::sleep(self.deadline);
        ResponseFuture::timed(
            self.inner.call(req),
            sleep,
            session,
            self.deadline,
            self.policy,
        )
    }
}
