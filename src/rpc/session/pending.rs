//! The calls a connection waits replies for, by seq.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex, MutexGuard,
    },
};

use tokio::sync::oneshot;

use crate::rpc::{Message, Status};

/// What a waiting call gets: its reply, or why none will come.
pub(crate) type Outcome = Result<Message, Status>;

/// The waiters of one connection. Once the connection ends, every waiter
/// is told why at once and later registrations fail with the same status,
/// so a call can never wait on a connection that is gone.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    state: Mutex<State>,
    /// Replies that found nobody waiting (the caller timed out or gave up).
    late: AtomicU64,
}

#[derive(Debug)]
enum State {
    Open(HashMap<i32, oneshot::Sender<Outcome>>),
    Ended(Status),
}

impl Default for State {
    fn default() -> State {
        State::Open(HashMap::new())
    }
}

impl Pending {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a waiter for `seq`.
    pub(crate) fn register(&self, seq: i32) -> Result<oneshot::Receiver<Outcome>, Status> {
        match &mut *self.lock() {
            State::Open(waiters) => {
                let (tx, rx) = oneshot::channel();
                waiters.insert(seq, tx);
                Ok(rx)
            }
            State::Ended(why) => Err(why.clone()),
        }
    }

    /// Forgets the waiter of `seq` (its caller gave up).
    pub(crate) fn forget(&self, seq: i32) {
        if let State::Open(waiters) = &mut *self.lock() {
            waiters.remove(&seq);
        }
    }

    /// Hands a reply to its waiter; `false` when nobody waits for it (it
    /// is counted as late).
    pub(crate) fn complete(&self, reply: Message) -> bool {
        let waiter = match &mut *self.lock() {
            State::Open(waiters) => waiters.remove(&reply.seq),
            State::Ended(_) => None,
        };
        match waiter {
            Some(tx) => {
                tx.send(Ok(reply)).is_ok() || {
                    self.late.fetch_add(1, Ordering::Relaxed);
                    false
                }
            }
            None => {
                self.late.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Ends the connection: every waiter gets `why`, now and later.
    pub(crate) fn end(&self, why: Status) {
        let old = std::mem::replace(&mut *self.lock(), State::Ended(why.clone()));
        if let State::Open(waiters) = old {
            for (_, tx) in waiters {
                let _ = tx.send(Err(why.clone()));
            }
        }
    }

    /// How many calls wait.
    pub(crate) fn len(&self) -> usize {
        match &*self.lock() {
            State::Open(waiters) => waiters.len(),
            State::Ended(_) => 0,
        }
    }

    /// Replies that arrived after their caller gave up, or for no call.
    pub(crate) fn late(&self) -> u64 {
        self.late.load(Ordering::Relaxed)
    }
}

/// Forgets its call's waiter when dropped before the reply came: a caller
/// that stops waiting (its future dropped, as tower's `Timeout` does) leaves
/// nothing behind.
pub(crate) struct Waiting<'a> {
    pub(crate) pending: &'a Pending,
    pub(crate) seq: i32,
    pub(crate) done: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.pending.forget(self.seq);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::MessageType;

    #[test]
    fn ending_fails_every_waiter_and_every_later_registration() {
        let pending = Pending::default();
        let mut rx = pending.register(1).unwrap();
        pending.end(Status::framework(Status::CODE_CONN_CLOSED));
        assert_eq!(rx.try_recv().unwrap().unwrap_err().code(), 102);
        assert_eq!(pending.register(2).unwrap_err().code(), 102);
    }

    #[test]
    fn a_reply_nobody_waits_for_is_counted_late() {
        let pending = Pending::default();
        let rx = pending.register(7).unwrap();
        drop(rx);
        assert!(!pending.complete(Message::new(MessageType::Reply, 7, "")));
        assert!(!pending.complete(Message::new(MessageType::Reply, 8, "")));
        assert_eq!(pending.late(), 2);
    }
}
