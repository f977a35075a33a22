//! Calling the service with every panic contained.

use std::{
    future::{poll_fn, Future},
    panic::{catch_unwind, AssertUnwindSafe},
    pin::Pin,
    task::{Context, Poll},
};

use pin_project::pin_project;
use tower::Service;

use crate::{error::panic_message, BoxError, Error, Event};

/// Which event a call is for; decides what a failure of the call means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Open,
    Message,
    Tick,
    Error,
    Close,
}

impl Kind {
    pub(crate) fn of<P>(event: &Event<P>) -> Kind {
        match event {
            Event::Open => Kind::Open,
            Event::Message(_) => Kind::Message,
            Event::Tick => Kind::Tick,
            Event::Error(_) => Kind::Error,
            Event::Close => Kind::Close,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Open => "open",
            Kind::Message => "message",
            Kind::Tick => "tick",
            Kind::Error => "error",
            Kind::Close => "close",
        }
    }
}

pub(crate) fn panicked(payload: Box<dyn std::any::Any + Send>) -> Error {
    Error::HandlerPanic {
        message: panic_message(&*payload),
    }
}

/// A service's response future, tagged with its event and made panic-safe.
#[pin_project]
pub(crate) struct Call<F> {
    #[pin]
    fut: F,
    kind: Kind,
}

impl<F, T, E> Future for Call<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = (Kind, Result<T, Error>);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let kind = self.kind;
        catch_unwind(AssertUnwindSafe(|| self.as_mut().poll_unguarded(cx)))
            .unwrap_or_else(|payload| Poll::Ready((kind, Err(panicked(payload)))))
    }
}

/// `poll_ready`, with a panic turned into an error.
pub(crate) fn poll_ready<S, Req>(svc: &mut S, cx: &mut Context<'_>) -> Poll<Result<(), Error>>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    match catch_unwind(AssertUnwindSafe(|| svc.poll_ready(cx))) {
        Ok(Poll::Pending) => Poll::Pending,
        Ok(Poll::Ready(r)) => Poll::Ready(r.map_err(|e| Error::Handler { source: e.into() })),
        Err(payload) => Poll::Ready(Err(panicked(payload))),
    }
}

impl<F, T, E> Call<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    /// `poll` without the panic guard, for a caller inside one of its own
    /// (`poll` is this inside a guard).
    #[inline]
    pub(crate) fn poll_unguarded(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<(Kind, Result<T, Error>)> {
        let this = self.project();
        let kind = *this.kind;
        this.fut
            .poll(cx)
            .map(|r| (kind, r.map_err(|e| Error::Handler { source: e.into() })))
    }
}

impl<F> Call<F> {
    /// The future `call` returned for an event of `kind`.
    pub(crate) fn new(fut: F, kind: Kind) -> Call<F> {
        Call { fut, kind }
    }
}

/// `call`, after a successful `poll_ready`, with a panic turned into an error.
pub(crate) fn start<S, P, W>(
    svc: &mut S,
    req: crate::Request<P, W>,
) -> Result<Call<S::Future>, (Kind, Error)>
where
    S: Service<crate::Request<P, W>>,
{
    let kind = Kind::of(&req.event);
    catch_unwind(AssertUnwindSafe(|| svc.call(req)))
        .map(|fut| Call { fut, kind })
        .map_err(|payload| (kind, panicked(payload)))
}

/// One whole call outside the pipeline (`Open` and `Close`).
pub(crate) async fn call_one<S, P, W>(
    svc: &mut S,
    req: crate::Request<P, W>,
) -> Result<S::Response, Error>
where
    S: Service<crate::Request<P, W>>,
    S::Error: Into<BoxError>,
{
    poll_fn(|cx| poll_ready(svc, cx)).await?;
    let call = start(svc, req).map_err(|(_, e)| e)?;
    call.await.1
}
