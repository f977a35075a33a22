//! [`AuthFuture`]: what the auth services answer an event with.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use pin_project::pin_project;

use crate::rpc::Message;

/// The inner service's future for the events the auth layer passes on, or
/// the layer's own answer (an `AUTH_REPLY`, or nothing) for those it takes.
///
/// ```
/// use getty::{rpc::{plugin::auth::{AuthBearer, AuthFuture}, Message, SessionStack}, Request};
/// use tower::{Layer, Service};
///
/// type StackFuture = <SessionStack as Service<Request<Message, Message>>>::Future;
///
/// fn handle(stack: SessionStack, req: Request<Message, Message>) -> AuthFuture<StackFuture> {
///     AuthBearer::new("token").layer(stack).call(req)
/// }
/// # let _ = handle;
/// ```
#[pin_project]
#[derive(Debug)]
pub struct AuthFuture<F> {
    #[pin]
    kind: Kind<F>,
}

#[pin_project(project = KindProj)]
#[derive(Debug)]
enum Kind<F> {
    Inner(#[pin] F),
    Answered(Option<Option<Message>>),
}

impl<F> AuthFuture<F> {
    pub(super) fn inner(fut: F) -> Self {
        AuthFuture {
            kind: Kind::Inner(fut),
        }
    }

    pub(super) fn answered(reply: Option<Message>) -> Self {
        AuthFuture {
            kind: Kind::Answered(Some(reply)),
        }
    }
}

impl<F, E> Future for AuthFuture<F>
where
    F: Future<Output = Result<Option<Message>, E>>,
{
    type Output = Result<Option<Message>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner(fut) => fut.poll(cx),
            // Polled again after completion: answer nothing rather than panic.
            KindProj::Answered(reply) => Poll::Ready(Ok(reply.take().flatten())),
        }
    }
}
