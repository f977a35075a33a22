//! A packet rate limit per session: a token bucket that counts
//! [`Event::Message`]s, with a policy for packets over the limit.
//!
//! | policy                        | a packet over the limit                                   | the session            |
//! |-------------------------------|-----------------------------------------------------------|------------------------|
//! | [`OverLimit::Delay`] (default) | waits for a token: `poll_ready` is `Pending`, so the driver stops reading and TCP pushes back on the peer | carries on, slowed down |
//! | [`OverLimit::Drop`]           | never reaches the inner service; reported with [`Session::report_error`] | carries on |
//! | [`OverLimit::Close`]          | never reaches the inner service; the session closes with [`Session::close_with_error`] | closes |
//!
//! The reason reported or closed with is a [`RateLimitError`] (the stack sees
//! it as `Event::Error(Error::Raised)`); a refused packet gets an empty
//! response (`S::Response::default()`), so nothing is written back for it.
//!
//! # One bucket per session
//!
//! Each [`RateLimit`] owns its bucket, and getty builds a stack per session
//! in the make-service, so sessions are limited independently: a flood on one
//! session neither slows nor uses up another. A [`Clone`] starts with a full
//! bucket of its own. (Sharing one service between sessions, e.g. behind a
//! `tower::buffer::Buffer`, would share the bucket: do not, for a per-session
//! limit.)
//!
//! ```
//! use bytes::Bytes;
//! use getty::{new_session_fn, BoxError, EventListener, ListenerService, Session};
//! use getty_layers::rate_limit::{OverLimit, Rate, RateLimitLayer};
//!
//! struct Echo;
//! impl EventListener<Bytes> for Echo {
//!     fn on_message(&mut self, _: &Session, pkg: Bytes) -> Option<Bytes> { Some(pkg) }
//! }
//!
//! // 50 packets a second per session, bursts of 10; a flooder is slowed down.
//! let make = new_session_fn(|_: &Session| {
//!     Ok::<_, BoxError>(
//!         tower::ServiceBuilder::new()
//!             .layer(RateLimitLayer::new(Rate::per_second(50).with_burst(10)))
//!             .service(ListenerService::new(Echo)),
//!     )
//! });
//! # let _ = make;
//! ```
//!
//! # How `Delay` waits, and what else waits with it
//!
//! The driver calls `poll_ready` before it knows which event comes next (a
//! packet, a `Tick`, a reported `Error`). [`OverLimit::Delay`] therefore takes
//! the token in `poll_ready` (it is honest backpressure: `Pending` until the
//! bucket has a token, with the wake-up from a timer inside the service) and
//! keeps it for the next `Message`; other events pass without spending it.
//! The cost: while a session is over its limit, its ticks and reported errors
//! also wait for the next token, at most one [`Rate::interval`].
//!
//! Once the session is closed nothing waits: `poll_ready` is ready at once,
//! so the final `Close` is never held up, and packets still buffered while
//! the session drains are admitted while there are tokens and discarded
//! (logged at debug, counted in [`RateLimit::dropped`]) when there are none.
//! A peer that floods and disconnects does not get its backlog handled at
//! full speed.
//!
//! `Drop` and `Close` decide in `call`, where the event is known: their
//! `poll_ready` is the inner service's.
//!
//! # Compared with `tower::limit::RateLimit`
//!
//! tower's rate limit works in a getty stack too, but it counts every event
//! (ticks, errors, `Open` and `Close` use up the limit), uses fixed windows
//! (a full window's worth can pass at the end of one window and again at the
//! start of the next), and can only delay.
//!
//! [`Event::Message`]: getty::Event::Message
//! [`Session::report_error`]: getty::Session::report_error
//! [`Session::close_with_error`]: getty::Session::close_with_error

mod error;
pub mod future;
mod layer;
mod rate;

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{ready, Context, Poll},
};

use getty::{Event, Request, Session};
use tokio::time::{Instant, Sleep};
use tower::Service;

pub use self::{error::RateLimitError, layer::RateLimitLayer, rate::Rate};
use self::{future::ResponseFuture, rate::Bucket};

/// What happens to a packet over the limit.
///
/// ```
/// use getty_layers::rate_limit::OverLimit;
///
/// assert_eq!(OverLimit::default(), OverLimit::Delay);
/// assert_eq!(OverLimit::Drop.to_string(), "packet dropped");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OverLimit {
    /// Wait for a token: `poll_ready` stays `Pending`, the driver stops
    /// reading, and TCP pushes back on the peer. Every packet is handled,
    /// late. Nothing is reported.
    #[default]
    Delay,
    /// Drop the packet (the inner service never sees it) and report a
    /// [`RateLimitError`]; the session carries on.
    Drop,
    /// Drop the packet and close the session with a [`RateLimitError`].
    Close,
}

impl fmt::Display for OverLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OverLimit::Delay => "packet delayed",
            OverLimit::Drop => "packet dropped",
            OverLimit::Close => "session closed",
        })
    }
}

use crate::probe::{report_due, ClosedProbe};

/// Limits the rate of [`Event::Message`]s a session's
/// stack handles; see the [module docs](self).
///
/// It serves any session whose packet type `W` is `Send + 'static` (every
/// session a server or client runs): with [`OverLimit::Delay`] it keeps a
/// type-erased handle on its session to see when it closes.
///
/// Usually made by [`RateLimitLayer`]; by hand (a paused clock shows the
/// delay exactly):
///
/// ```
/// use bytes::Bytes;
/// use getty::{Addr, EndpointKind, Event, Request, Session, SessionConfig};
/// use getty_layers::rate_limit::{OverLimit, Rate, RateLimit};
/// use std::{convert::Infallible, time::Duration};
/// use tokio::time::Instant;
/// use tower::{service_fn, Service, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let echo = service_fn(|req: Request<Bytes>| async move { Ok::<_, Infallible>(req.into_message()) });
/// let mut svc = RateLimit::new(echo, Rate::per_second(10).with_burst(2), OverLimit::Delay);
/// let session: Session = Session::new(
///     EndpointKind::Detached, Addr::Unknown, Addr::Unknown, SessionConfig::default(),
/// );
/// let start = Instant::now();
/// for _ in 0..4 {
///     let req = Request::new(session.clone(), Event::Message(Bytes::from_static(b"x")));
///     svc.ready().await.unwrap().call(req).await.unwrap();
/// }
/// // A burst of 2, then one packet per 100 ms.
/// assert_eq!(start.elapsed(), Duration::from_millis(200));
/// # }
/// ```
pub struct RateLimit<S> {
    inner: S,
    rate: Rate,
    policy: OverLimit,
    bucket: Bucket,
    /// `Delay`: a token taken in `poll_ready`, kept for the next message.
    reserved: bool,
    /// `Delay`: wakes `poll_ready` when the next token is there. Made on
    /// first need (an idle session holds no timer) and reset in place after.
    sleep: Option<Pin<Box<Sleep>>>,
    /// `Delay`: set by the first call, read by `poll_ready`.
    closed: Option<ClosedProbe>,
    /// Packets refused so far.
    dropped: u64,
    /// The last packet was refused (for logging the first of a run at warn).
    refusing: bool,
    /// When a refusal was last reported (`Drop`): reports are coalesced so
    /// a flood does not become one `Error` event per packet.
    last_report: Option<tokio::time::Instant>,
}

impl<S> RateLimit<S> {
    /// Wraps `inner` with a full bucket: at most `rate` packets, `policy`
    /// for the ones over it.
    pub fn new(inner: S, rate: Rate, policy: OverLimit) -> Self {
        RateLimit {
            inner,
            rate,
            policy,
            bucket: Bucket::new(rate, Instant::now()),
            reserved: false,
            sleep: None,
            closed: None,
            dropped: 0,
            refusing: false,
            last_report: None,
        }
    }

    /// The limit.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// What happens to a packet over the limit.
    pub fn policy(&self) -> OverLimit {
        self.policy
    }

    /// Tokens in the bucket now, counting one that `poll_ready` reserved for
    /// the next packet.
    pub fn available(&self) -> u32 {
        self.bucket.available(Instant::now(), self.rate.burst()) + u32::from(self.reserved)
    }

    /// Packets refused so far (dropped, refused before closing, or discarded
    /// while the session drained).
    pub fn dropped(&self) -> u64 {
        self.dropped
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

    /// `Delay`: takes a token into `reserved`, or registers for the time
    /// one will be there. Ready without a token once the session is closed.
    fn poll_token(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            if self.closed.as_ref().is_some_and(ClosedProbe::is_closed) {
                return Poll::Ready(());
            }
            let at = match self.bucket.try_take(Instant::now()) {
                Ok(()) => {
                    self.reserved = true;
                    self.refusing = false;
                    return Poll::Ready(());
                }
                Err(at) => at,
            };
            if !self.refusing {
                self.refusing = true;
                tracing::debug!(rate = %self.rate, "rate limit reached; delaying the session");
            }
            let sleep = match &mut self.sleep {
                Some(sleep) => {
                    if sleep.deadline() != at {
                        sleep.as_mut().reset(at);
                    }
                    sleep
                }
                None => self.sleep.insert(Box::pin(tokio::time::sleep_until(at))),
            };
            // Ready: the token is there now; take it on the next turn.
            ready!(sleep.as_mut().poll(cx));
        }
    }

    /// Counts and reports a refused packet per the policy.
    fn refuse<W>(&mut self, session: &Session<W>) {
        self.dropped += 1;
        if session.is_closed() || self.policy == OverLimit::Delay {
            // Draining after the close: the peer is gone or going; no report.
            tracing::debug!(session = %session, rate = %self.rate, "over the rate limit while closing; packet discarded");
            return;
        }
        let error = RateLimitError {
            peer: session.peer_addr().clone(),
            rate: self.rate,
            policy: self.policy,
            dropped: self.dropped,
        };
        if self.refusing {
            tracing::debug!(session = %session, %error, "rate limit exceeded");
        } else {
            tracing::warn!(session = %session, %error, "rate limit exceeded");
        }
        self.refusing = true;
        match self.policy {
            OverLimit::Close => session.close_with_error(error),
            _ => {
                if report_due(&mut self.last_report) {
                    session.report_error(error);
                }
            }
        }
    }
}

impl<S: Clone> Clone for RateLimit<S> {
    /// A clone with a full bucket of its own (and no reservation).
    fn clone(&self) -> Self {
        RateLimit::new(self.inner.clone(), self.rate, self.policy)
    }
}

impl<S: fmt::Debug> fmt::Debug for RateLimit<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .field("rate", &self.rate)
            .field("policy", &self.policy)
            .field("available", &self.available())
            .field("dropped", &self.dropped)
            .finish()
    }
}

impl<S, P, W> Service<Request<P, W>> for RateLimit<S>
where
    S: Service<Request<P, W>>,
    S::Response: Default,
    W: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.policy == OverLimit::Delay && !self.reserved {
            ready!(self.poll_token(cx));
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<P, W>) -> Self::Future {
        if self.policy == OverLimit::Delay && self.closed.is_none() {
            self.closed = Some(ClosedProbe::new(&req.session));
        }
        if !matches!(req.event, Event::Message(_)) {
            // Not counted; a reserved token stays for the next packet.
            return ResponseFuture::admitted(self.inner.call(req));
        }
        let admitted = if std::mem::take(&mut self.reserved) {
            true
        } else if self.policy == OverLimit::Delay && !req.session.is_closed() {
            // Called without `poll_ready` taking a token first: charge it anyway.
            self.bucket.take(Instant::now());
            true
        } else {
            self.bucket.try_take(Instant::now()).is_ok()
        };
        if admitted {
            self.refusing = false;
            ResponseFuture::admitted(self.inner.call(req))
        } else {
            self.refuse(&req.session);
            ResponseFuture::refused()
        }
    }
}
