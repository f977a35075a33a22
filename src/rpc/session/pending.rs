//! The calls a connection waits replies for, by seq, with their deadlines.
//!
//! A waiting call is a slot in one map: its outcome once known, the waker
//! of its caller, its deadline. The reply path fills the slot and wakes
//! the caller; the caller takes the outcome out. No channel or timer is
//! made per call: one sweeper task per connection (see `sweep.rs`) fails
//! the calls whose deadline passed.

use std::{
    collections::HashMap,
    future::Future,
    hash::{BuildHasherDefault, Hasher},
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, MutexGuard,
    },
    task::{Context, Poll, Waker},
    time::Duration,
};

use tokio::{sync::Notify, time::Instant};

use crate::rpc::{Message, Status};

/// What a waiting call gets: its reply, or why none will come.
pub(crate) type Outcome = Result<Message, Status>;

/// When a call stops waiting: the instant, and the limit it came from
/// (for the 408's text).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    pub(crate) at: Instant,
    pub(crate) limit: Duration,
}

impl Deadline {
    /// `limit` from now.
    pub(crate) fn after(limit: Duration) -> Deadline {
        Deadline {
            at: Instant::now() + limit,
            limit,
        }
    }

    /// The status of a call that reached its deadline: 408.
    pub(crate) fn expired(&self) -> Status {
        Status::framework_with(
            Status::CODE_HANDLE_TIMEOUT,
            format!("no reply within {:?}", self.limit),
        )
    }
}

/// The waiters of one connection. Once the connection ends, every waiter
/// is told why at once and later registrations fail with the same status,
/// so a call can never wait on a connection that is gone.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
pub(super) struct Shared {
    state: Mutex<State>,
    /// Replies that found nobody waiting (the caller timed out or gave up).
    late: AtomicU64,
    /// Wakes the sweeper: a deadline earlier than the one it sleeps to,
    /// or the end.
    pub(super) sweep: Notify,
}

/// Seqs are consecutive numbers: a multiplication spreads them over the
/// table at a fraction of the cost of the default SipHash.
#[derive(Default)]
struct SeqHasher(u64);

impl Hasher for SeqHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_i32(&mut self, seq: i32) {
        // The seq's bits as they are (the sign too), then mixed.
        self.write_u64(u64::from(seq as u32));
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

#[derive(Debug, Default)]
pub(super) struct State {
    waiters: HashMap<i32, Slot, BuildHasherDefault<SeqHasher>>,
    /// Why the connection ended, once it did.
    pub(super) ended: Option<Status>,
    /// The deadline the sweeper sleeps to (`None`: it waits to be told).
    pub(super) sweep_at: Option<Instant>,
    /// Whether the sweeper was started.
    sweeper: bool,
}

#[derive(Debug)]
struct Slot {
    outcome: Option<Outcome>,
    waker: Option<Waker>,
    deadline: Option<Deadline>,
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl State {
    /// Fails every call whose deadline is past `now` (their wakers go to
    /// `wake`); returns the earliest deadline still ahead.
    pub(super) fn expire(&mut self, now: Instant, wake: &mut Vec<Waker>) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        for slot in self.waiters.values_mut() {
            let Some(deadline) = slot.deadline.filter(|_| slot.outcome.is_none()) else {
                continue;
            };
            if deadline.at <= now {
                slot.outcome = Some(Err(deadline.expired()));
                wake.extend(slot.waker.take());
            } else if next.is_none_or(|next| deadline.at < next) {
                next = Some(deadline.at);
            }
        }
        next
    }
}

impl Pending {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.lock()
    }

    /// Registers a waiter for `seq`, failed with 408 at `deadline`;
    /// await the returned [`Reply`] for its outcome.
    pub(crate) fn register(&self, seq: i32, deadline: Option<Deadline>) -> Result<Reply, Status> {
        let mut state = self.lock();
        if let Some(why) = &state.ended {
            return Err(why.clone());
        }
        state.waiters.insert(
            seq,
            Slot {
                outcome: None,
                waker: None,
                deadline,
            },
        );
        if let Some(deadline) = deadline {
            let start = !std::mem::replace(&mut state.sweeper, true);
            // With one limit for every call, deadlines come in order and
            // only the first call of a quiet spell tells the sweeper.
            if state.sweep_at.is_none_or(|at| deadline.at < at) {
                state.sweep_at = Some(deadline.at);
                drop(state);
                if start {
                    tokio::spawn(super::sweep::sweep(Arc::clone(&self.shared)));
                } else {
                    self.shared.sweep.notify_one();
                }
            }
        }
        Ok(Reply {
            shared: Arc::clone(&self.shared),
            seq,
            done: false,
        })
    }

    /// Hands a reply to its waiter; `false` when nobody waits for it (it
    /// is counted as late).
    pub(crate) fn complete(&self, reply: Message) -> bool {
        let mut state = self.lock();
        match state
            .waiters
            .get_mut(&reply.seq)
            .filter(|slot| slot.outcome.is_none())
        {
            Some(slot) => {
                slot.outcome = Some(Ok(reply));
                let waker = slot.waker.take();
                drop(state);
                if let Some(waker) = waker {
                    waker.wake();
                }
                true
            }
            None => {
                drop(state);
                self.shared.late.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Ends the connection: every waiter gets `why`, now and later (a
    /// reply already handed over stays its caller's).
    pub(crate) fn end(&self, why: Status) {
        let mut wake = Vec::new();
        {
            let mut state = self.lock();
            if state.ended.is_some() {
                return;
            }
            for slot in state.waiters.values_mut() {
                if slot.outcome.is_none() {
                    slot.outcome = Some(Err(why.clone()));
                    wake.extend(slot.waker.take());
                }
            }
            state.ended = Some(why);
        }
        self.shared.sweep.notify_one();
        wake.into_iter().for_each(Waker::wake);
    }

    /// How many calls wait.
    pub(crate) fn len(&self) -> usize {
        let state = self.lock();
        let waiting = state.waiters.values();
        waiting.filter(|slot| slot.outcome.is_none()).count()
    }

    /// Replies that arrived after their caller gave up, or for no call.
    pub(crate) fn late(&self) -> u64 {
        self.shared.late.load(Ordering::Relaxed)
    }
}

impl Drop for Pending {
    /// Stops the sweeper of a connection dropped without ending.
    fn drop(&mut self) {
        self.end(Status::framework_with(
            Status::CODE_CONN_CLOSED,
            "session closed",
        ));
    }
}

/// A registered call's outcome, once it comes. Dropped before that (its
/// caller stopped waiting, as tower's `Timeout` does), it takes its slot
/// with it: a reply coming later is late.
#[must_use = "a reply does nothing unless awaited"]
pub(crate) struct Reply {
    /// Owned, so a call can be sent before its future is first polled.
    shared: Arc<Shared>,
    seq: i32,
    done: bool,
}

impl Future for Reply {
    type Output = Outcome;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        let mut state = self.shared.lock();
        let Some(slot) = state.waiters.get_mut(&self.seq) else {
            // Only a slot taken by an earlier poll: the outcome is gone.
            let why = state.ended.clone();
            drop(state);
            self.done = true;
            return Poll::Ready(Err(why.unwrap_or_else(|| {
                Status::framework_with(Status::CODE_CONN_CLOSED, "session closed")
            })));
        };
        if let Some(outcome) = slot.outcome.take() {
            state.waiters.remove(&self.seq);
            drop(state);
            self.done = true;
            return Poll::Ready(outcome);
        }
        match &mut slot.waker {
            Some(waker) => waker.clone_from(cx.waker()),
            None => slot.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if !self.done {
            self.shared.lock().waiters.remove(&self.seq);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::MessageType;
    use futures_util::FutureExt;

    #[test]
    fn ending_fails_every_waiter_and_every_later_registration() {
        let pending = Pending::default();
        let reply = pending.register(1, None).unwrap();
        pending.end(Status::framework(Status::CODE_CONN_CLOSED));
        let outcome = reply.now_or_never().expect("ended: ready");
        assert_eq!(outcome.unwrap_err().code(), 102);
        assert_eq!(pending.register(2, None).err().unwrap().code(), 102);
    }

    #[test]
    fn a_reply_handed_over_before_the_end_stays_its_callers() {
        let pending = Pending::default();
        let reply = pending.register(3, None).unwrap();
        assert!(pending.complete(Message::new(MessageType::Reply, 3, "")));
        pending.end(Status::framework(Status::CODE_CONN_CLOSED));
        assert_eq!(reply.now_or_never().unwrap().unwrap().seq, 3);
    }

    #[test]
    fn a_reply_nobody_waits_for_is_counted_late() {
        let pending = Pending::default();
        drop(pending.register(7, None).unwrap());
        assert_eq!(pending.len(), 0);
        assert!(!pending.complete(Message::new(MessageType::Reply, 7, "")));
        assert!(!pending.complete(Message::new(MessageType::Reply, 8, "")));
        assert_eq!(pending.late(), 2);
    }

    #[test]
    fn expiring_fails_the_calls_past_their_deadline_only() {
        let pending = Pending::default();
        let now = Instant::now();
        let soon = Deadline {
            at: now,
            limit: Duration::from_millis(5),
        };
        let later = Deadline {
            at: now + Duration::from_secs(60),
            limit: Duration::from_secs(60),
        };
        let mut expired = pending.lock();
        expired.waiters.insert(
            1,
            Slot {
                outcome: None,
                waker: None,
                deadline: Some(soon),
            },
        );
        expired.waiters.insert(
            2,
            Slot {
                outcome: None,
                waker: None,
                deadline: Some(later),
            },
        );
        let mut wake = Vec::new();
        assert_eq!(expired.expire(now, &mut wake), Some(later.at));
        let timed_out = expired.waiters[&1].outcome.as_ref().unwrap();
        assert_eq!(timed_out.as_ref().unwrap_err().code(), 408);
        assert!(expired.waiters[&2].outcome.is_none());
    }
}
