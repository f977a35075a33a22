//! The bounded outbound queue between `Session::send*` and the driver.
//!
//! Written by hand instead of using `tokio::sync::mpsc` because a bounded mpsc
//! channel allocates its first 32-slot block when it is created: about 1.3 KiB
//! per session before anything is sent, a third of our idle-session budget.
//! A `VecDeque` allocates nothing until used; a `Semaphore` carries the bound
//! and the waiting senders.

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicBool, Ordering},
        Mutex,
    },
    task::{Context, Poll, Waker},
};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use tokio::sync::{oneshot, Semaphore, TryAcquireError};

use crate::SendError;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding these locks cannot leave them inconsistent
    // (each change is a single call), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One item for the driver to write.
pub(crate) enum Outbound<W> {
    /// A packet for the encoder.
    Packet(W),
    /// Raw bytes that bypass the encoder.
    Bytes(Bytes),
    /// Several raw buffers, written back to back.
    Vectored(Vec<Bytes>),
    /// Resolve once everything before it is written.
    Flush(oneshot::Sender<()>),
}

struct State<W> {
    items: VecDeque<Outbound<W>>,
    closed: bool,
}

pub(crate) struct Queue<W> {
    state: Mutex<State<W>>,
    /// Set after a push, cleared when the driver takes the items: lets the
    /// driver skip the lock when nothing was queued (a stale `true` only
    /// costs one empty look).
    has_items: AtomicBool,
    permits: Semaphore,
    driver: AtomicWaker,
    /// Tasks waiting in `poll_reserve`, woken when room comes back or the
    /// queue closes. Empty (no allocation) unless someone polls.
    reserving: Mutex<Vec<Waker>>,
    /// Someone waits in `reserving`: the driver's release skips the lock
    /// otherwise.
    has_reserving: AtomicBool,
}

impl<W> Queue<W> {
    /// A queue for `capacity` items, clamped to what the semaphore can
    /// count (a config's public field may hold anything).
    pub(crate) fn new(capacity: usize) -> Self {
        Queue {
            state: Mutex::new(State {
                items: VecDeque::new(),
                closed: false,
            }),
            has_items: AtomicBool::new(false),
            permits: Semaphore::new(super::config::clamp_queue_capacity(capacity)),
            driver: AtomicWaker::new(),
            reserving: Mutex::new(Vec::new()),
            has_reserving: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<W>> {
        lock(&self.state)
    }

    fn push(&self, item: Outbound<W>) -> Result<(), SendError> {
        {
            let mut state = self.lock();
            if state.closed {
                return Err(SendError::Closed);
            }
            state.items.push_back(item);
        }
        self.has_items.store(true, Ordering::Release);
        self.driver.wake();
        Ok(())
    }

    pub(crate) async fn send(&self, item: Outbound<W>) -> Result<(), SendError> {
        self.reserve().await?;
        self.push(item)
    }

    pub(crate) fn try_send(&self, item: Outbound<W>) -> Result<(), SendError> {
        self.try_reserve()?;
        self.push(item)
    }

    /// Takes one place in the queue, waiting for room.
    pub(crate) async fn reserve(&self) -> Result<(), SendError> {
        let permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| SendError::Closed)?;
        permit.forget();
        Ok(())
    }

    /// Takes one place in the queue if there is room now.
    pub(crate) fn try_reserve(&self) -> Result<(), SendError> {
        match self.permits.try_acquire() {
            Ok(permit) => {
                permit.forget();
                Ok(())
            }
            Err(TryAcquireError::NoPermits) => Err(SendError::Blocked),
            Err(TryAcquireError::Closed) => Err(SendError::Closed),
        }
    }

    /// Takes one place in the queue, or registers `cx` to be woken when
    /// room comes back.
    pub(crate) fn poll_reserve(&self, cx: &Context<'_>) -> Poll<Result<(), SendError>> {
        match self.try_reserve() {
            Err(SendError::Blocked) => {}
            done => return Poll::Ready(done),
        }
        {
            let mut waiting = lock(&self.reserving);
            if !waiting.iter().any(|w| w.will_wake(cx.waker())) {
                waiting.push(cx.waker().clone());
            }
            self.has_reserving.store(true, Ordering::Release);
        }
        // Room given back between the first look and the registration.
        match self.try_reserve() {
            Err(SendError::Blocked) => Poll::Pending,
            done => Poll::Ready(done),
        }
    }

    /// Queues an item in a place taken with `reserve`.
    pub(crate) fn push_reserved(&self, item: Outbound<W>) -> Result<(), SendError> {
        let pushed = self.push(item);
        if pushed.is_err() {
            self.release(1);
        }
        pushed
    }

    /// Refuses further sends; what is queued stays for the driver to drain.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.permits.close();
        self.driver.wake();
        self.wake_reserving();
    }

    fn wake_reserving(&self) {
        if !self.has_reserving.swap(false, Ordering::AcqRel) {
            return;
        }
        let waiting = std::mem::take(&mut *lock(&self.reserving));
        for waker in waiting {
            waker.wake();
        }
    }

    /// Swaps everything queued into `out` (which must be empty), reusing its
    /// allocation for the queue. The items keep their room in the queue
    /// until the driver hands it back with [`release`](Self::release) once
    /// they are in its write buffer, so the bound covers its backlog too.
    pub(crate) fn swap(&self, out: &mut VecDeque<Outbound<W>>) {
        debug_assert!(out.is_empty());
        let mut state = self.lock();
        self.has_items.store(false, Ordering::Relaxed);
        std::mem::swap(&mut state.items, out);
    }

    /// Whether anything may be queued (see `has_items`).
    pub(crate) fn has_items(&self) -> bool {
        self.has_items.load(Ordering::Acquire)
    }

    /// Returns room for `n` packets to the senders.
    pub(crate) fn release(&self, n: usize) {
        if n > 0 {
            self.permits.add_permits(n);
            self.wake_reserving();
        }
    }

    /// Whether `close` was called: one atomic load (the semaphore's state),
    /// where the session's close token takes a lock, so the driver can look
    /// after every event.
    pub(crate) fn is_closed(&self) -> bool {
        self.permits.is_closed()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.lock().items.is_empty()
    }

    /// Drops everything still queued (the connection is gone).
    pub(crate) fn discard(&self) {
        let items = std::mem::take(&mut self.lock().items);
        drop(items);
    }

    /// Gives back the queue's allocation when it holds nothing (an idle
    /// session keeps no buffers).
    pub(crate) fn release_idle(&self) {
        let mut state = self.lock();
        if state.items.is_empty() && state.items.capacity() > 0 {
            state.items = VecDeque::new();
        }
    }

    pub(crate) fn register(&self, cx: &Context<'_>) {
        self.driver.register(cx.waker());
    }

    pub(crate) fn wake_driver(&self) {
        self.driver.wake();
    }
}
