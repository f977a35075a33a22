//! The calls in flight, yielding their results in the order they started.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use futures_util::stream::{FuturesOrdered, StreamExt};
use pin_project::pin_project;

/// With `max_in_flight == 1` (getty's default) the one call lives inline:
/// no allocation per call. Above that, calls go into a `FuturesOrdered`,
/// which allocates one task node per call and is made only when first used.
#[pin_project]
pub(crate) struct Pipeline<F: Future> {
    #[pin]
    one: Option<F>,
    many: Option<FuturesOrdered<F>>,
    single: bool,
}

impl<F: Future> Pipeline<F> {
    pub(crate) fn new(max_in_flight: usize) -> Self {
        Pipeline {
            one: None,
            many: None,
            single: max_in_flight <= 1,
        }
    }

    pub(crate) fn len(&self) -> usize {
        usize::from(self.one.is_some()) + self.many.as_ref().map_or(0, FuturesOrdered::len)
    }

    pub(crate) fn push(self: Pin<&mut Self>, fut: F) {
        let mut this = self.project();
        if *this.single {
            debug_assert!(this.one.is_none());
            this.one.set(Some(fut));
        } else {
            this.many
                .get_or_insert_with(FuturesOrdered::new)
                .push_back(fut);
        }
    }

    /// The next finished call in start order; `Ready(None)` when empty.
    pub(crate) fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<F::Output>> {
        let mut this = self.project();
        if let Some(fut) = this.one.as_mut().as_pin_mut() {
            let out = std::task::ready!(fut.poll(cx));
            this.one.set(None);
            return Poll::Ready(Some(out));
        }
        match this.many {
            Some(many) if !many.is_empty() => many.poll_next_unpin(cx),
            _ => Poll::Ready(None),
        }
    }

    /// Drops every call still in flight.
    pub(crate) fn clear(self: Pin<&mut Self>) {
        let mut this = self.project();
        this.one.set(None);
        *this.many = None;
    }
}
