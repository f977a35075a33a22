//! How a session ends: closing, reported errors, the shutdown stages
//! (close, force, kill) and the end, with its close callbacks.

use std::sync::atomic::Ordering;

use tokio_util::sync::CancellationToken;

use super::{callbacks::run_contained, lock, Session};
use crate::{BoxError, Error};

/// How sessions end, as tokio-util cancellation tokens: `close` (drain
/// within the wait time), `force` (skip the drain, abandon a pending open;
/// `Close` still passes) and `kill` (abandon a `Close` still being handled).
/// Each is a child of the next, so killing forces and forcing closes. A
/// server or client holds one set for all its sessions; each session has a
/// `close` of its own, a child of its owner's, and shares the owner's
/// `force` and `kill`.
#[derive(Debug, Clone)]
pub(crate) struct Stages {
    pub(crate) close: CancellationToken,
    pub(crate) force: CancellationToken,
    pub(crate) kill: CancellationToken,
}

impl Stages {
    pub(crate) fn new() -> Self {
        let kill = CancellationToken::new();
        let force = kill.child_token();
        let close = force.child_token();
        Stages { close, force, kill }
    }

    /// A session's stages under this owner.
    pub(super) fn for_session(&self) -> Stages {
        Stages {
            close: self.close.child_token(),
            force: self.force.clone(),
            kill: self.kill.clone(),
        }
    }
}

/// Errors reported with [`Session::report_error`] that may wait for the
/// driver at once; more are dropped (logged) until it catches up.
const MAX_REPORTED: usize = 64;

impl<W> Session<W> {
    /// Whether [`close`](Session::close) was called or the connection ended.
    pub fn is_closed(&self) -> bool {
        self.inner.stages.close.is_cancelled()
    }

    /// Closes the session. Idempotent and safe from any task.
    ///
    /// New sends fail from now on; what was queued before is still written,
    /// within the session's wait time, then the socket is closed,
    /// [`Event::Close`](crate::Event::Close) passes the stack once and the
    /// close callbacks run.
    pub fn close(&self) {
        self.inner.stages.close.cancel();
        self.inner.queue.close();
    }

    /// Passes `reason` down the session's stack as
    /// [`Event::Error`](crate::Event::Error) (as [`Error::Raised`]); the
    /// session carries on. For layers and applications that want a problem
    /// seen by every layer and the listener's `on_error` without closing.
    ///
    /// ```
    /// # use getty::{Addr, EndpointKind, Session, SessionConfig};
    /// # let s: Session = Session::new(EndpointKind::Detached, Addr::Unknown, Addr::Unknown, SessionConfig::default());
    /// s.report_error("slow request: 2.5s over a 1s deadline");
    /// assert!(!s.is_closed());
    /// ```
    pub fn report_error(&self, reason: impl Into<BoxError>) {
        self.raise_error(reason.into(), false);
    }

    /// Closes the session with a reason: it passes the stack as
    /// [`Event::Error`](crate::Event::Error) (as [`Error::Raised`]), then the
    /// session drains and `Close` follows, as for any failure. Later reasons
    /// are logged only. A heartbeat closing an idle peer uses this.
    ///
    /// ```
    /// # use getty::{Addr, EndpointKind, Session, SessionConfig};
    /// # let s: Session = Session::new(EndpointKind::Detached, Addr::Unknown, Addr::Unknown, SessionConfig::default());
    /// s.close_with_error("reader idle for 30s");
    /// assert!(s.is_closed());
    /// ```
    pub fn close_with_error(&self, reason: impl Into<BoxError>) {
        self.raise_error(reason.into(), true);
        self.close();
    }

    fn raise_error(&self, source: BoxError, fatal: bool) {
        {
            let mut raised = lock(&self.inner.raised);
            // Bounded: a task reporting in a loop must not grow this without
            // end nor bury the session's input under errors. The first fatal
            // reason is the one that counts; later ones are only logged, as
            // the driver does.
            let full = if fatal {
                raised.iter().any(|(_, fatal)| *fatal)
            } else {
                raised.len() >= MAX_REPORTED
            };
            if full {
                tracing::debug!(error = %source, "reported error dropped: too many waiting to be handled");
                return;
            }
            raised.push((Error::Raised { source }, fatal));
        }
        self.inner.has_raised.store(true, Ordering::Release);
        self.inner.queue.wake_driver();
    }

    /// Whether errors were raised since the driver last took them: a plain
    /// load, inlined (the driver looks after every event, and the swap in
    /// `take_raised` is a locked instruction).
    #[inline]
    pub(crate) fn has_raised(&self) -> bool {
        self.inner.has_raised.load(Ordering::Acquire)
    }

    /// Takes the raised errors, oldest first (for the driver).
    pub(crate) fn take_raised(&self) -> Vec<(Error, bool)> {
        if !self.inner.has_raised.swap(false, Ordering::AcqRel) {
            return Vec::new();
        }
        std::mem::take(&mut *lock(&self.inner.raised))
    }

    /// Resolves once the session has ended: the socket is closed, `Close`
    /// passed the stack and the close callbacks ran.
    pub async fn finished(&self) {
        loop {
            let notified = self.inner.finished_notify.notified();
            if self.inner.finished.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }

    /// Registers `callback` to run once after the session closes (getty's
    /// `AddCloseCallback`).
    ///
    /// The pair `(handler, key)` identifies it: adding the same pair again
    /// replaces the callback in place, keeping its position. Callbacks run in
    /// the order added, after `Close` passed the stack, each once; a panicking
    /// callback is logged and the others still run. A callback added after
    /// the callbacks ran is run at once, on the caller's thread.
    ///
    /// Keys are any `PartialEq` value, so getty's "non-comparable key" error
    /// is a compile error here.
    ///
    /// ```
    /// # use getty::{Addr, EndpointKind, Session, SessionConfig};
    /// # let s: Session = Session::new(EndpointKind::Detached, Addr::Unknown, Addr::Unknown, SessionConfig::default());
    /// s.add_close_callback("cleanup", "resources", || println!("closed"));
    /// s.add_close_callback("cleanup", 7u32, || println!("keys need not share a type"));
    /// s.remove_close_callback(&"cleanup", &"resources");
    /// s.remove_close_callback(&"never", &"added"); // a no-op
    /// assert_eq!(s.close_callback_count(), 1);
    /// ```
    pub fn add_close_callback<H, K, F>(&self, handler: H, key: K, callback: F)
    where
        H: PartialEq + Send + Sync + 'static,
        K: PartialEq + Send + Sync + 'static,
        F: FnOnce() + Send + 'static,
    {
        let late = lock(&self.inner.callbacks).add(handler, key, callback);
        if let Some(callback) = late {
            run_contained(self.inner.id, Box::new(callback));
        }
    }

    /// Removes the callback registered under `(handler, key)`; a no-op when
    /// there is none (getty's `RemoveCloseCallback`).
    pub fn remove_close_callback<H, K>(&self, handler: &H, key: &K)
    where
        H: PartialEq + Send + Sync + 'static,
        K: PartialEq + Send + Sync + 'static,
    {
        lock(&self.inner.callbacks).remove(handler, key);
    }

    /// How many close callbacks are registered and not yet run.
    pub fn close_callback_count(&self) -> usize {
        lock(&self.inner.callbacks).len()
    }
    pub(crate) fn is_forced(&self) -> bool {
        self.inner.stages.force.is_cancelled()
    }

    /// Resolves once the session is forced closed (its owner's second
    /// shutdown stage: skip the drain, abandon a pending open).
    pub(crate) async fn forced(&self) {
        self.inner.stages.force.cancelled().await;
    }

    /// Resolves once the session is killed (the last stage: a `Close` still
    /// being handled is abandoned).
    pub(crate) async fn killed(&self) {
        self.inner.stages.kill.cancelled().await;
    }

    /// The end of a session: runs the close callbacks in order, then wakes
    /// whoever waits in [`finished`](Session::finished).
    pub(crate) fn finish(&self) {
        self.close();
        let callbacks = lock(&self.inner.callbacks).take();
        for callback in callbacks {
            run_contained(self.inner.id, callback);
        }
        self.inner.finished.store(true, Ordering::Release);
        self.inner.finished_notify.notify_waiters();
    }
}
