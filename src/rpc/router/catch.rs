//! [`CatchError`]: a layered route's errors as replies.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use tower::Service;

use super::{Inbound, ReplyShape};
use crate::{
    rpc::{Message, MessageType, Status},
    BoxError,
};

/// Turns the errors of a service into what a route answers: a reply with
/// the error's status to a call (500 unless the error is a [`Status`]), a
/// warning for a push. A `poll_ready` error is kept and answered the same
/// way by the next `call`, without calling the service.
#[derive(Clone, Debug)]
pub(crate) struct CatchError<S> {
    inner: S,
    not_ready: Option<Status>,
}

impl<S> CatchError<S> {
    pub(crate) fn new(inner: S) -> Self {
        CatchError {
            inner,
            not_ready: None,
        }
    }
}

fn status_of(e: BoxError) -> Status {
    match e.downcast::<Status>() {
        Ok(status) => *status,
        Err(e) => Status::framework_with(Status::CODE_INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

fn answer(
    mtype: MessageType,
    shape: ReplyShape,
    service_method: &str,
    status: Status,
) -> Option<Message> {
    if mtype == MessageType::Call {
        Some(shape.failed(status))
    } else {
        tracing::warn!(%service_method, %status, "push failed");
        None
    }
}

impl<S> Service<Inbound> for CatchError<S>
where
    S: Service<Inbound, Response = Option<Message>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = Option<Message>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Option<Message>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        if self.not_ready.is_some() {
            return Poll::Ready(Ok(()));
        }
        match self.inner.poll_ready(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Ready(Err(e)) => {
                self.not_ready = Some(status_of(e.into()));
                Poll::Ready(Ok(()))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn call(&mut self, inbound: Inbound) -> Self::Future {
        let mtype = inbound.message.mtype;
        let shape = ReplyShape::of(&inbound.message);
        let method = inbound.message.service_method.clone();
        if let Some(status) = self.not_ready.take() {
            return Box::pin(std::future::ready(Ok(answer(
                mtype, shape, &method, status,
            ))));
        }
        let fut = self.inner.call(inbound);
        Box::pin(async move {
            Ok(match fut.await {
                Ok(reply) => reply,
                Err(e) => answer(mtype, shape, &method, status_of(e.into())),
            })
        })
    }
}
