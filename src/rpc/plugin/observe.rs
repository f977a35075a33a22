//! What the route plugins share: a future that times a route's handling
//! and shows the outcome to an observer when it completes.

use std::{
    future::Future,
    pin::Pin,
    task::{ready, Context, Poll},
    time::{Duration, Instant},
};

use pin_project::pin_project;

use crate::rpc::{Inbound, Message, MessageType, ServiceMethod};

/// How a route handled a message.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Outcome<'a> {
    /// A call's reply.
    Reply(&'a Message),
    /// Nothing to send: a push was handled.
    NoReply,
    /// The service below failed; the router answers a call with a 500 (or
    /// the error's own status).
    Failed,
}

impl Outcome<'_> {
    /// The status code a call was answered with; `None` for a push.
    pub(crate) fn code(&self, mtype: MessageType) -> Option<i32> {
        match (mtype, self) {
            (_, Outcome::Reply(reply)) => Some(reply.status.code()),
            (MessageType::Call, Outcome::Failed) => {
                Some(crate::rpc::Status::CODE_INTERNAL_SERVER_ERROR)
            }
            _ => None,
        }
    }
}

/// Told how a message was handled, once, when its handling completes.
pub(crate) trait Observer {
    fn observe(self, elapsed: Duration, outcome: Outcome<'_>);
}

/// What a route plugin keeps of the message it passes on.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) mtype: MessageType,
    pub(crate) seq: i32,
    pub(crate) service_method: ServiceMethod,
    pub(crate) peer: crate::Addr,
}

impl Seen {
    pub(crate) fn of(inbound: &Inbound) -> Seen {
        Seen {
            mtype: inbound.message.mtype,
            seq: inbound.message.seq,
            service_method: inbound.message.service_method.clone(),
            peer: inbound.session.peer_addr(),
        }
    }
}

/// The route's future, timed from its creation, with its observer.
#[pin_project]
#[derive(Debug)]
pub(crate) struct Observed<F, O> {
    #[pin]
    inner: F,
    started: Instant,
    observer: Option<O>,
}

impl<F, O> Observed<F, O> {
    pub(crate) fn new(inner: F, observer: O) -> Self {
        Observed {
            inner,
            started: Instant::now(),
            observer: Some(observer),
        }
    }
}

impl<F, O, E> Future for Observed<F, O>
where
    F: Future<Output = Result<Option<Message>, E>>,
    O: Observer,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = ready!(this.inner.poll(cx));
        if let Some(observer) = this.observer.take() {
            let outcome = match &out {
                Ok(Some(reply)) => Outcome::Reply(reply),
                Ok(None) => Outcome::NoReply,
                Err(_) => Outcome::Failed,
            };
            observer.observe(this.started.elapsed(), outcome);
        }
        Poll::Ready(out)
    }
}

/// A route plugin's future type: its own name over [`Observed`].
macro_rules! route_future {
    ($(#[$doc:meta])* $name:ident, $record:ty) => {
        $(#[$doc])*
        #[pin_project::pin_project]
        #[derive(Debug)]
        pub struct $name<F> {
            #[pin]
            inner: $crate::rpc::plugin::observe::Observed<F, $record>,
        }

        impl<F> $name<F> {
            pub(super) fn new(inner: F, record: $record) -> Self {
                $name {
                    inner: $crate::rpc::plugin::observe::Observed::new(inner, record),
                }
            }
        }

        impl<F, E> std::future::Future for $name<F>
        where
            F: std::future::Future<Output = Result<Option<$crate::rpc::Message>, E>>,
        {
            type Output = F::Output;

            fn poll(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<Self::Output> {
                self.project().inner.poll(cx)
            }
        }
    };
}
pub(crate) use route_future;
