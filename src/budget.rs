//! The input budget: a cap on the bytes that all sessions of one server
//! (or one client) together hold for input not yet handed to the stack.
//!
//! Each session charges the budget before it reads (a grant of at most one
//! read's worth), keeps the charge for the bytes it then holds (an
//! incomplete packet, packets not yet decoded) and gives it back as packets
//! leave for the stack. When the budget is spent a session does not read:
//! its peer is held back by TCP flow control.
//!
//! Peers that each send most of a large packet and stall could hold the
//! budget, and so every session, forever. So a session that finds no room:
//!
//! - with nothing buffered, waits and asks the sessions holding partial
//!   packets to give way; they are closed with
//!   [`Error::InputBudget`](crate::Error::InputBudget) if there is still no
//!   room when they look, which frees their share;
//! - holding part of a packet itself, waits without asking, and gives way
//!   when asked, or after its wait time without room.
//!
//! Written by hand: a `tokio::sync::Semaphore` counts permits the same way
//! but cannot charge more than it has (a UDP datagram or WebSocket message
//! arrives whole and must be counted as it is), and its fair queue would
//! make one session waiting for a large grant hold up every small one.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Mutex,
    },
    task::Waker,
};

/// The smallest grant worth a read: below it a session waits, so that a
/// nearly spent budget does not turn into many one-byte reads.
pub(crate) const MIN_GRANT: usize = 4 * 1024;

/// The default budget of a server or a client: 256 MiB.
pub(crate) const DEFAULT_INPUT_BUDGET: usize = 256 * 1024 * 1024;

/// A budget shared by the sessions of one server or client.
#[derive(Debug)]
pub(crate) struct InputBudget {
    limit: usize,
    used: AtomicUsize,
    /// Sessions waiting for room, by session id: one waker each however
    /// often a session looks.
    waiting: Mutex<HashMap<u64, Waker>>,
    /// How many sessions `waiting` holds: giving back skips the lock when
    /// none waits (every read gives back the unused part of its grant).
    waiters: AtomicUsize,
    /// Sessions that wait on their socket holding part of a packet: when
    /// another session finds the budget spent they are woken, look again,
    /// and give way if it is still spent.
    holders: Mutex<HashMap<u64, Waker>>,
    /// Counts `press_holders` calls: a session registers as a holder again
    /// only after one, so waiting on a socket costs an atomic load, not a lock.
    pressed: AtomicU64,
}

impl InputBudget {
    pub(crate) fn new(limit: usize) -> Self {
        InputBudget {
            limit,
            used: AtomicUsize::new(0),
            waiting: Mutex::new(HashMap::new()),
            waiters: AtomicUsize::new(0),
            holders: Mutex::new(HashMap::new()),
            pressed: AtomicU64::new(0),
        }
    }

    /// The budget's size in bytes.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes charged by all sessions now.
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    /// Takes up to `want` bytes, at least `min` (or `want` if smaller);
    /// `None` when that much is not free.
    pub(crate) fn try_take(&self, want: usize, min: usize) -> Option<usize> {
        let min = min.min(want);
        let mut used = self.used.load(Ordering::Acquire);
        loop {
            let free = self.limit.saturating_sub(used);
            if free < min || want == 0 {
                return None;
            }
            let take = want.min(free);
            match self.used.compare_exchange_weak(
                used,
                used + take,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(take),
                Err(now) => used = now,
            }
        }
    }

    /// Charges `n` bytes that already arrived, even past the limit (a
    /// datagram or a message is counted whole).
    pub(crate) fn charge(&self, n: usize) {
        if n > 0 {
            self.used.fetch_add(n, Ordering::AcqRel);
        }
    }

    /// Gives `n` bytes back and wakes the sessions waiting for room.
    pub(crate) fn give_back(&self, n: usize) {
        if n == 0 {
            return;
        }
        // SeqCst with `wait`: either the waiter sees the room given back,
        // or this sees the waiter.
        let before = self.used.fetch_sub(n, Ordering::SeqCst);
        debug_assert!(before >= n, "budget gave back more than it charged");
        if self.limit.saturating_sub(before - n) >= MIN_GRANT
            && self.waiters.load(Ordering::SeqCst) > 0
        {
            let waiting = {
                let mut map = lock(&self.waiting);
                self.waiters.store(0, Ordering::SeqCst);
                std::mem::take(&mut *map)
            };
            for (_, waker) in waiting {
                waker.wake();
            }
        }
    }

    /// Registers `session`'s waker to hear when room is given back. Looks
    /// again after registering: room given back in between is not missed.
    pub(crate) fn wait(&self, session: u64, waker: &Waker) -> bool {
        {
            let mut map = lock(&self.waiting);
            map.insert(session, waker.clone());
            self.waiters.store(map.len(), Ordering::SeqCst);
        }
        self.limit.saturating_sub(self.used.load(Ordering::SeqCst)) >= MIN_GRANT
    }

    /// Registers `session` as holding part of a packet while it waits on
    /// its socket, unless it did since the last press (`registered` is the
    /// press count it registered at). Returns the count to keep.
    pub(crate) fn hold(&self, session: u64, waker: &Waker, registered: Option<u64>) -> u64 {
        let pressed = self.pressed();
        if registered == Some(pressed) {
            return pressed;
        }
        let mut holders = lock(&self.holders);
        // Read under the lock `press_holders` takes: a press either sees
        // this registration or is counted in what is returned.
        let pressed = self.pressed();
        holders.insert(session, waker.clone());
        pressed
    }

    /// How many times sessions were asked to give way.
    pub(crate) fn pressed(&self) -> u64 {
        self.pressed.load(Ordering::Acquire)
    }

    /// The budget is spent and a session with nothing buffered waits:
    /// wakes the sessions holding partial packets, which give way if it is
    /// still spent when they look.
    pub(crate) fn press_holders(&self) {
        let holders = {
            let mut holders = lock(&self.holders);
            self.pressed.fetch_add(1, Ordering::AcqRel);
            std::mem::take(&mut *holders)
        };
        for (_, waker) in holders {
            waker.wake();
        }
    }

    /// Forgets a session that waited and got room.
    pub(crate) fn stop_waiting(&self, session: u64) {
        let mut map = lock(&self.waiting);
        map.remove(&session);
        self.waiters.store(map.len(), Ordering::SeqCst);
    }

    /// Forgets a session that ended.
    pub(crate) fn forget(&self, session: u64) {
        self.stop_waiting(session);
        lock(&self.holders).remove(&session);
    }
}

fn lock(m: &Mutex<HashMap<u64, Waker>>) -> std::sync::MutexGuard<'_, HashMap<u64, Waker>> {
    // A map insert or remove cannot leave it half-changed.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_what_is_free_down_to_the_minimum() {
        let b = InputBudget::new(10_000);
        assert_eq!(b.try_take(8_000, MIN_GRANT), Some(8_000));
        assert_eq!(
            b.try_take(8_000, MIN_GRANT),
            None,
            "2,000 free is below the minimum"
        );
        assert_eq!(
            b.try_take(1_000, MIN_GRANT),
            Some(1_000),
            "a small want needs no minimum"
        );
        b.give_back(8_000);
        assert_eq!(b.used(), 1_000);
        assert_eq!(b.try_take(64 * 1024, MIN_GRANT), Some(9_000));
    }

    #[test]
    fn a_whole_message_is_charged_past_the_limit() {
        let b = InputBudget::new(1_000);
        b.charge(5_000);
        assert_eq!(b.used(), 5_000);
        assert_eq!(b.try_take(10, 1), None);
        b.give_back(5_000);
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn giving_back_wakes_the_waiting_sessions() {
        use std::sync::{
            atomic::{AtomicUsize, Ordering},
            Arc,
        };
        use std::task::Wake;
        struct Count(AtomicUsize);
        impl Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        let b = InputBudget::new(MIN_GRANT);
        assert_eq!(b.try_take(MIN_GRANT, MIN_GRANT), Some(MIN_GRANT));
        assert!(!b.wait(1, &waker));
        assert!(!b.wait(1, &waker), "a second look registers nothing new");
        b.give_back(MIN_GRANT);
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            1,
            "one wake per waiting session"
        );
    }
}
