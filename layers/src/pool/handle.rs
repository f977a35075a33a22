//! [`TaskPool`]: the shared bound, and its numbers.

use std::{
    fmt,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A bound on handler work shared by every session it is given to (getty's
/// `WithServerTaskPool`): at most [`capacity`](TaskPool::capacity) events are
/// being handled at once across all of them.
///
/// A cheap, cloneable handle over one semaphore: make one per server, give a
/// clone to [`TaskPoolLayer::new`](super::TaskPoolLayer::new) in the
/// new-session callback, and keep one to read the pool's numbers.
///
/// ```
/// use getty_layers::pool::TaskPool;
///
/// let pool = TaskPool::new(4);
/// let same = pool.clone(); // the same permits
/// assert_eq!(same.capacity(), 4);
/// assert_eq!(pool.available(), 4);
/// assert_eq!(pool.in_use(), 0);
/// assert_eq!(pool.shed_count(), 0);
/// ```
#[derive(Clone)]
pub struct TaskPool {
    semaphore: Arc<Semaphore>,
    shared: Arc<Shared>,
}

struct Shared {
    capacity: usize,
    shed: AtomicU64,
}

impl TaskPool {
    /// A pool of `capacity` permits: at most that many events handled at once.
    ///
    /// # Panics
    /// When `capacity` is 0 (nothing could ever run) or above tokio's
    /// [`Semaphore::MAX_PERMITS`].
    pub fn new(capacity: usize) -> Self {
        assert!(capacity > 0, "a task pool needs at least one permit");
        TaskPool {
            semaphore: Arc::new(Semaphore::new(capacity)),
            shared: Arc::new(Shared {
                capacity,
                shed: AtomicU64::new(0),
            }),
        }
    }

    /// How many events may be handled at once.
    pub fn capacity(&self) -> usize {
        self.shared.capacity
    }

    /// Permits free right now. A permit is taken when a session's stack
    /// reports ready for an event (`poll_ready`) and given back when the
    /// event's handling completes.
    pub fn available(&self) -> usize {
        self.semaphore.available_permits()
    }

    /// Permits taken right now: events being handled, plus readiness
    /// reserved for events about to be.
    pub fn in_use(&self) -> usize {
        self.capacity().saturating_sub(self.available())
    }

    /// How many messages were not handled because the pool was full, over
    /// the pool's life (only layers made with
    /// [`shed_when_full`](super::TaskPoolLayer::shed_when_full) shed).
    pub fn shed_count(&self) -> u64 {
        self.shared.shed.load(Ordering::Relaxed)
    }

    pub(super) fn semaphore(&self) -> &Arc<Semaphore> {
        &self.semaphore
    }

    /// A permit if one is free now.
    pub(super) fn try_acquire(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.semaphore).try_acquire_owned().ok()
    }

    pub(super) fn count_shed(&self) {
        self.shared.shed.fetch_add(1, Ordering::Relaxed);
    }
}

impl fmt::Debug for TaskPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskPool")
            .field("capacity", &self.capacity())
            .field("available", &self.available())
            .field("shed", &self.shed_count())
            .finish()
    }
}
