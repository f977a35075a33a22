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
    task::Context,
};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use tokio::sync::{oneshot, Semaphore, TryAcquireError};

use crate::SendError;

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
}

impl<W> Queue<W> {
    pub(crate) fn new(capacity: usize) -> Self {
        Queue {
            state: Mutex::new(State {
                items: VecDeque::new(),
                closed: false,
            }),
            has_items: AtomicBool::new(false),
            permits: Semaphore::new(capacity.max(1)),
            driver: AtomicWaker::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<W>> {
        // A panic while holding this lock cannot leave the deque inconsistent
        // (push/pop are single calls), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
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
        let permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| SendError::Closed)?;
        permit.forget();
        self.push(item)
    }

    pub(crate) fn try_send(&self, item: Outbound<W>) -> Result<(), SendError> {
        match self.permits.try_acquire() {
            Ok(permit) => permit.forget(),
            Err(TryAcquireError::NoPermits) => return Err(SendError::Blocked),
            Err(TryAcquireError::Closed) => return Err(SendError::Closed),
        }
        self.push(item)
    }

    /// Refuses further sends; what is queued stays for the driver to drain.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.permits.close();
        self.driver.wake();
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
        }
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
