//! The calls in flight, yielding their results in the order they started,
//! or as they complete for a session without ordered responses.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use futures_util::stream::{FuturesOrdered, FuturesUnordered, StreamExt};
use pin_project::pin_project;

use super::call::Call;
use crate::{BoxError, Error};

/// With `max_in_flight == 1` (getty's default) the one call lives inline:
/// no allocation per call. Above that, calls go into a `FuturesOrdered`
/// (responses in request order) or a `FuturesUnordered` (in completion
/// order), each allocating one task node per call and made when first used.
/// A call goes into the one its session's setting names when it starts, so
/// the setting can change on a live session.
///
/// An unordered call takes the inline slot when it is free: a service that
/// answers at once (most RPC handlers) then never allocates a node, the
/// slot being free again by the time the next call starts. An ordered call
/// never does (above one in flight): its answer must wait for the ones
/// started before it, which the `FuturesOrdered` keeps in line.
#[pin_project]
pub(crate) struct Pipeline<F: Future> {
    #[pin]
    one: Option<F>,
    ordered: Option<FuturesOrdered<F>>,
    unordered: Option<FuturesUnordered<F>>,
    single: bool,
}

impl<F: Future> Pipeline<F> {
    pub(crate) fn new(max_in_flight: usize) -> Self {
        Pipeline {
            one: None,
            ordered: None,
            unordered: None,
            single: max_in_flight <= 1,
        }
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        usize::from(self.one.is_some())
            + self.ordered.as_ref().map_or(0, FuturesOrdered::len)
            + self.unordered.as_ref().map_or(0, FuturesUnordered::len)
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds a call; true when it went into the inline slot, where the
    /// caller may poll it at once with [`Pipeline::poll_one`].
    // Forced: with a mere hint the compiler kept it out of the dispatch
    // loop, a call per packet (about 1% of the TCP echo server's time).
    #[inline(always)]
    pub(crate) fn push(self: Pin<&mut Self>, fut: F, ordered: bool) -> bool {
        let mut this = self.project();
        if *this.single || (!ordered && this.one.is_none()) {
            debug_assert!(this.one.is_none());
            this.one.set(Some(fut));
            return true;
        } else if ordered {
            this.ordered
                .get_or_insert_with(FuturesOrdered::new)
                .push_back(fut);
        } else {
            this.unordered
                .get_or_insert_with(FuturesUnordered::new)
                .push(fut);
        }
        false
    }

    /// The next finished call (in start order among ordered calls);
    /// `Ready(None)` when none is in flight.
    #[inline]
    pub(crate) fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<F::Output>> {
        let mut this = self.project();
        let mut pending = false;
        if let Some(fut) = this.one.as_mut().as_pin_mut() {
            match fut.poll(cx) {
                Poll::Ready(out) => {
                    this.one.set(None);
                    return Poll::Ready(Some(out));
                }
                // Alone when single; else the sets below have their turn.
                Poll::Pending if *this.single => return Poll::Pending,
                Poll::Pending => pending = true,
            }
        }
        if let Some(ordered) = this.ordered.as_mut().filter(|o| !o.is_empty()) {
            match ordered.poll_next_unpin(cx) {
                Poll::Ready(Some(out)) => return Poll::Ready(Some(out)),
                Poll::Ready(None) => {}
                Poll::Pending => pending = true,
            }
        }
        if let Some(unordered) = this.unordered.as_mut().filter(|u| !u.is_empty()) {
            match unordered.poll_next_unpin(cx) {
                Poll::Ready(Some(out)) => return Poll::Ready(Some(out)),
                Poll::Ready(None) => {}
                Poll::Pending => pending = true,
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(None)
        }
    }

    /// Drops the call in the inline slot (it panicked).
    pub(crate) fn clear_one(self: Pin<&mut Self>) {
        self.project().one.set(None);
    }

    /// Drops every call still in flight.
    pub(crate) fn clear(self: Pin<&mut Self>) {
        let mut this = self.project();
        this.one.set(None);
        *this.ordered = None;
        *this.unordered = None;
    }
}

impl<G, T, E> Pipeline<Call<G>>
where
    G: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    /// Polls the call in the inline slot without its own panic guard, for
    /// a caller already inside one (the dispatch step, which tells a panic
    /// here by its stage and then drops the call with
    /// [`Pipeline::clear_one`]). Only the inline slot may be polled so: a
    /// call panicking inside a `FuturesOrdered` would leave a gap in its
    /// order that is never filled.
    #[inline]
    pub(crate) fn poll_one(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<(super::call::Kind, Result<T, Error>)> {
        let mut this = self.project();
        let Some(call) = this.one.as_mut().as_pin_mut() else {
            return Poll::Pending;
        };
        let out = std::task::ready!(call.poll_unguarded(cx));
        this.one.set(None);
        Poll::Ready(out)
    }
}
