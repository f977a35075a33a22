use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use tokio_util::task::TaskTracker;

use crate::session::Stages;

use crate::Session;

/// The live sessions of a server or client: count, look up by id, iterate,
/// broadcast. Cheap to clone; every clone sees the same sessions.
///
/// A session is in the registry from the moment it is accepted (or
/// connected) until its driver has finished, close callbacks included.
///
/// ```
/// use getty::Registry;
///
/// let registry: Registry = Registry::default();
/// assert!(registry.is_empty());
/// assert_eq!(registry.broadcast(bytes::Bytes::from_static(b"hi")), 0);
/// ```
pub struct Registry<W = bytes::Bytes> {
    sessions: Arc<Mutex<HashMap<u64, Session<W>>>>,
}

impl<W> Default for Registry<W> {
    fn default() -> Self {
        Registry {
            sessions: Arc::default(),
        }
    }
}

impl<W> Clone for Registry<W> {
    fn clone(&self) -> Self {
        Registry {
            sessions: Arc::clone(&self.sessions),
        }
    }
}

impl<W> fmt::Debug for Registry<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("len", &self.len())
            .finish()
    }
}

impl<W> Registry<W> {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Session<W>>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many sessions are live.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no session is live.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// The session with this id, if it is live.
    pub fn get(&self, id: u64) -> Option<Session<W>> {
        self.lock().get(&id).cloned()
    }

    /// A snapshot of the live sessions.
    pub fn sessions(&self) -> Vec<Session<W>> {
        self.lock().values().cloned().collect()
    }

    /// Queues `pkg` on every live session that has room, without waiting:
    /// a slow peer cannot stall a broadcast. Returns how many accepted it.
    pub fn broadcast(&self, pkg: W) -> usize
    where
        W: Clone,
    {
        self.sessions()
            .iter()
            .filter(|s| s.try_send(pkg.clone()).is_ok())
            .count()
    }

    /// Queues `pkg` on every live session but the one with id `except`
    /// (the sender, say), as [`broadcast`](Self::broadcast) does: without
    /// waiting, skipping sessions whose queue is full. Returns how many
    /// accepted it.
    ///
    /// ```
    /// use getty::{Addr, EndpointKind, Registry, Session, SessionConfig};
    ///
    /// let registry: Registry = Registry::default();
    /// assert_eq!(registry.broadcast_except(7, bytes::Bytes::from_static(b"hi")), 0);
    /// ```
    pub fn broadcast_except(&self, except: u64, pkg: W) -> usize
    where
        W: Clone,
    {
        self.sessions()
            .iter()
            .filter(|s| s.id() != except && s.try_send(pkg.clone()).is_ok())
            .count()
    }

    /// Closes every live session (each drains within its wait time).
    pub fn close_all(&self) {
        for s in self.sessions() {
            s.close();
        }
    }

    /// Ends every session whose task `tracker` tracks, in three stages:
    /// close (each drains within its wait time) and wait up to `deadline`;
    /// then force (skip draining, abandon pending opens; `Close` still
    /// runs) and wait up to `deadline` again; then kill (abandon a `Close`
    /// still being handled) and wait for the tasks to end.
    pub(crate) async fn end_all(&self, tracker: &TaskTracker, deadline: Duration, stages: &Stages) {
        stages.close.cancel();
        self.close_all();
        if tokio::time::timeout(deadline, tracker.wait()).await.is_ok() {
            return;
        }
        tracing::warn!(
            remaining = self.len(),
            "deadline passed: forcing the remaining sessions closed"
        );
        stages.force.cancel();
        self.wake_all();
        if tokio::time::timeout(deadline, tracker.wait()).await.is_ok() {
            return;
        }
        tracing::warn!(
            remaining = self.len(),
            "sessions still handling close: abandoning them"
        );
        stages.kill.cancel();
        self.wake_all();
        tracker.wait().await;
    }

    /// Wakes every session's driver to look at its shutdown stage.
    fn wake_all(&self) {
        for s in self.sessions() {
            s.wake_driver();
        }
    }

    /// Adds a session; the guard removes it when dropped.
    pub(crate) fn register(&self, session: &Session<W>) -> Registered<W> {
        self.lock().insert(session.id(), session.clone());
        Registered {
            registry: self.clone(),
            id: session.id(),
        }
    }
}

/// Removes its session from the registry when dropped, however the
/// session's task ends.
pub(crate) struct Registered<W> {
    registry: Registry<W>,
    id: u64,
}

impl<W> Drop for Registered<W> {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
    }
}
