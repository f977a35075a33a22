//! The sweeper of a connection's deadlines: one task, one timer, for
//! every call that waits with a timeout, in place of a timer per call.

use std::sync::Arc;

use tokio::time::{sleep_until, Instant};

use super::pending::Shared;

/// Fails the calls of a connection whose deadline passed, sleeping to the
/// earliest deadline ahead; ends with the connection.
///
/// A call registered with a deadline earlier than the one this sleeps to
/// wakes it (`Shared::sweep`). One that completes does not: the sweeper
/// may wake for a call already answered, and then sleeps again to the
/// next deadline it finds. With the common single timeout, deadlines come
/// in the order calls do and it wakes about once per timeout.
pub(super) async fn sweep(shared: Arc<Shared>) {
    let mut wake = Vec::new();
    loop {
        let next = {
            let mut state = shared.lock();
            if state.ended.is_some() {
                return;
            }
            let next = state.expire(Instant::now(), &mut wake);
            state.sweep_at = next;
            next
        };
        wake.drain(..).for_each(|waker| waker.wake());
        match next {
            Some(at) => {
                tokio::select! {
                    () = sleep_until(at) => {}
                    () = shared.sweep.notified() => {}
                }
            }
            None => shared.sweep.notified().await,
        }
    }
}
