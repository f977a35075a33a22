//! A task pool: one bound on handler work shared by all sessions of a
//! server (getty's `WithServerTaskPool`).
//!
//! Make one [`TaskPool`] of `n` permits and apply
//! [`TaskPoolLayer::new(pool.clone())`](TaskPoolLayer::new) to every
//! session's stack in the new-session callback: at most `n` events are then
//! being handled at once, across all sessions. getty's driver calls
//! `poll_ready` only when it has an event to hand over, so an idle session
//! holds no permit; a session whose event finds the pool full waits for a
//! permit in `poll_ready` and reads no further packet meanwhile
//! (backpressure). A slow handler holds one permit, so it delays other
//! sessions only once all `n` are taken.
//!
//! # Order
//!
//! getty's Go task pool hands a session's messages to pool goroutines and
//! loses their order. Here the pool only decides *when* a call may start;
//! the driver keeps the calls of a session in request order and writes their
//! responses in that order, even when a later call finishes first (with
//! `max_in_flight` above 1 a session may have several events in the pool).
//!
//! # Permits
//!
//! `poll_ready` reserves a permit and `call` spends it; the
//! [`ResponseFuture`] holds it until the inner future completes. A clone of
//! [`TaskPoolService`] starts without a reservation, and dropping a service
//! gives back what it reserved. Every event takes a permit, not just
//! messages: `Open`, `Tick`, `Error` and `Close` are handler work too. Do not
//! let a handler wait, while holding its permit, for another event of a
//! session under the same pool: with the pool full that waits forever.
//!
//! A closed session's `Error` and `Close` are the exception: they never wait
//! for the pool, so a session whose peer left ends even while other
//! sessions hold every permit. Since `poll_ready` cannot know which event
//! comes next, it stops waiting once the session is closed; a message still
//! being drained (graceful shutdown, `close()`), a tick or an open of a
//! closed session then waits for its permit in the [`ResponseFuture`],
//! before the inner future is first polled, so the bound holds while
//! sessions drain. Work that an inner service does inside `call` itself
//! rather than in its future (such as a
//! [`ListenerService`](getty::ListenerService)'s callbacks) is not held back
//! by that wait: in a draining session it runs without a permit.
//!
//! # Load shedding
//!
//! [`TaskPoolLayer::shed_when_full`] makes `poll_ready` never wait: a
//! message that finds the pool full is not handled, the session gets a
//! [`PoolFullError`] as a reported error (an `Error` event, and it carries
//! on) and an empty response. That needs `S::Response: Default` (true of
//! `Option<W>` and `Vec<W>`, what getty's services answer with).
//!
//! tower's [`LoadShed`](https://docs.rs/tower/0.5/tower/load_shed/index.html)
//! also works *outside* a waiting task pool layer: our `poll_ready` is
//! `Pending` while the pool is full, so `LoadShed` rejects the event with
//! `Overloaded`, which getty treats like any service error: an `Error`
//! event, then the session closes. Note that `LoadShed` rejects *every*
//! event while the pool is full, that `Error` and `Close` included: layers
//! outside it see them, the handler inside may not. Use `shed_when_full` to
//! keep the session and its lifecycle events.
//!
//! # Why not tower's `GlobalConcurrencyLimitLayer`
//!
//! In waiting mode this layer does what tower's
//! [`GlobalConcurrencyLimitLayer::with_semaphore`](https://docs.rs/tower/0.5/tower/limit/struct.GlobalConcurrencyLimitLayer.html)
//! does (same permit discipline, same `PollSemaphore`), and that layer works
//! on a getty stack too. This one exists for what tower's cannot do: shed
//! load by *reporting* to the session instead of failing the event (a
//! failure closes a getty session), never shed the session's lifecycle
//! events, free the permit when the handler completes (not when its future
//! is dropped), and give the pool's numbers ([`TaskPool::available`],
//! [`TaskPool::in_use`], [`TaskPool::shed_count`]) through a handle.
//!
//! ```
//! use getty::{Addr, EndpointKind, Event, Request, Session, SessionConfig};
//! use getty_layers::pool::{TaskPool, TaskPoolLayer};
//! use tower::{service_fn, Layer, Service, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), getty::BoxError> {
//! let pool = TaskPool::new(1);
//! let layer = TaskPoolLayer::new(pool.clone());
//! let handler = service_fn(|req: Request<u32, u32>| async move {
//!     Ok::<_, getty::BoxError>(req.into_message().map(|n| n * 2))
//! });
//! let session = Session::new(EndpointKind::Detached, Addr::Unknown, Addr::Unknown, SessionConfig::default());
//!
//! let mut a = layer.layer(handler.clone());
//! let mut b = layer.layer(handler);
//! a.ready().await?; // a holds the only permit...
//! let waiting = b.ready(); // ...so b waits for it
//! let answer = a.call(Request::new(session.clone(), Event::Message(21))).await?;
//! assert_eq!(answer, Some(42));
//! waiting.await?; // a's answer gave the permit back
//! assert_eq!(pool.in_use(), 1);
//! # Ok(())
//! # }
//! ```

mod error;
mod future;
mod handle;
mod layer;

use std::{
    fmt,
    task::{ready, Context, Poll},
};

use getty::{Event, Request};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::PollSemaphore;
use tower::Service;

use crate::probe::{report_due, ClosedProbe};

pub use self::{
    error::PoolFullError, future::ResponseFuture, handle::TaskPool, layer::TaskPoolLayer,
};

/// A session's stack under a shared [`TaskPool`]; made by [`TaskPoolLayer`].
///
/// `poll_ready` reserves a permit (waiting for one, unless the service
/// [sheds](TaskPoolService::shed_when_full)), `call` spends it, and the
/// [`ResponseFuture`] gives it back when the inner future completes. A clone
/// shares the pool but starts without a reservation.
///
/// ```
/// use getty::{Addr, EndpointKind, Event, Request, Session, SessionConfig};
/// use getty_layers::pool::{TaskPool, TaskPoolService};
/// use tower::{service_fn, Service, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), getty::BoxError> {
/// let pool = TaskPool::new(1);
/// let handler = service_fn(|req: Request<u8, u8>| async move { Ok::<_, getty::BoxError>(req.into_message()) });
/// let mut svc = TaskPoolService::new(handler, pool.clone()).shed_when_full();
/// let session = Session::new(EndpointKind::Detached, Addr::Unknown, Addr::Unknown, SessionConfig::default());
///
/// svc.ready().await?;
/// let first = svc.call(Request::new(session.clone(), Event::Message(1)));
/// // The pool is full while `first` runs: a shedding service is still
/// // ready, and answers the next message with nothing.
/// svc.ready().await?;
/// assert_eq!(svc.call(Request::new(session.clone(), Event::Message(2))).await?, None);
/// assert_eq!(pool.shed_count(), 1);
/// assert_eq!(first.await?, Some(1));
/// # Ok(())
/// # }
/// ```
pub struct TaskPoolService<S> {
    inner: S,
    pool: TaskPool,
    semaphore: PollSemaphore,
    /// Reserved by `poll_ready`, spent by `call`.
    permit: Option<OwnedSemaphorePermit>,
    shed: bool,
    /// The session, once seen: after it closes, nothing waits for a permit.
    closed: Option<ClosedProbe>,
    /// When a shed message was last reported: one `Error` event per
    /// interval, not one per shed packet.
    last_report: Option<tokio::time::Instant>,
}

impl<S> TaskPoolService<S> {
    /// Puts `inner` under `pool`; events wait for a permit.
    pub fn new(inner: S, pool: TaskPool) -> Self {
        let semaphore = PollSemaphore::new(pool.semaphore().clone());
        TaskPoolService {
            inner,
            pool,
            semaphore,
            permit: None,
            shed: false,
            closed: None,
            last_report: None,
        }
    }

    /// Sheds messages when the pool is full instead of waiting; see
    /// [`TaskPoolLayer::shed_when_full`].
    pub fn shed_when_full(mut self) -> Self {
        self.shed = true;
        self
    }

    /// The pool.
    pub fn pool(&self) -> &TaskPool {
        &self.pool
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service (a reserved permit is given back).
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone> Clone for TaskPoolService<S> {
    /// The clone shares the pool but starts without a reservation: a permit
    /// is one call's, not the service's.
    fn clone(&self) -> Self {
        TaskPoolService {
            inner: self.inner.clone(),
            pool: self.pool.clone(),
            semaphore: self.semaphore.clone(),
            permit: None,
            shed: self.shed,
            closed: None,
            last_report: None,
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for TaskPoolService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskPoolService")
            .field("inner", &self.inner)
            .field("pool", &self.pool)
            .field("reserved", &self.permit.is_some())
            .field("shed", &self.shed)
            .finish()
    }
}

impl<S, P, W> Service<Request<P, W>> for TaskPoolService<S>
where
    S: Service<Request<P, W>>,
    S::Response: Default,
    W: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.permit.is_none() && !self.closed.as_ref().is_some_and(ClosedProbe::is_closed) {
            if self.shed {
                // Never wait: `call` decides what to do without a permit.
                self.permit = self.pool.try_acquire();
            } else {
                self.permit = ready!(self.semaphore.poll_acquire(cx));
                debug_assert!(
                    self.permit.is_some(),
                    "a task pool's semaphore is never closed"
                );
            }
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<P, W>) -> Self::Future {
        if self.closed.is_none() {
            self.closed = Some(ClosedProbe::new(&req.session));
        }
        let permit = self.permit.take();
        if permit.is_none() && req.session.is_closed() {
            // poll_ready no longer waits once the session is closed: it cannot
            // know whether the next event is the session's Close. A wait it
            // began earlier is still queued in `self.semaphore`.
            let waiting = std::mem::replace(
                &mut self.semaphore,
                PollSemaphore::new(self.pool.semaphore().clone()),
            );
            if matches!(req.event, Event::Error(_) | Event::Close) {
                // The last events must not wait for work capacity: they pass
                // without a permit, and the queued wait is dropped (giving
                // back a permit it may have been handed meanwhile).
                drop(waiting);
                return ResponseFuture::new(self.inner.call(req), None);
            }
            if !self.shed {
                // A message being drained, a tick or an open is handler
                // work: it runs once it has a permit, the queued wait keeping
                // its place in line.
                return ResponseFuture::after_permit(self.inner.call(req), waiting);
            }
        }
        if !self.shed {
            assert!(
                permit.is_some(),
                "TaskPoolService::call without a reserved permit: poll_ready must return Ready first"
            );
            return ResponseFuture::new(self.inner.call(req), permit);
        }
        // A permit may have come free since poll_ready.
        let permit = permit.or_else(|| self.pool.try_acquire());
        if permit.is_none() && matches!(req.event, Event::Message(_)) {
            self.pool.count_shed();
            tracing::debug!(
                session = req.session.id(),
                capacity = self.pool.capacity(),
                "task pool full: message shed"
            );
            if report_due(&mut self.last_report) {
                req.session
                    .report_error(PoolFullError::new(self.pool.capacity()));
            }
            return ResponseFuture::shed();
        }
        ResponseFuture::new(self.inner.call(req), permit)
    }
}
