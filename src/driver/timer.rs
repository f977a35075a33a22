//! Keeping time: ticks, the read and write timeouts, the drain deadline,
//! the input budget's waits and the idle release, behind one timer that is
//! armed only for the earliest deadline.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, Waker},
};

use bytes::BytesMut;
use pin_project::pin_project;
use tokio::time::{Instant, Sleep};
use tokio_util::codec::{Decoder, Encoder};

use super::conn::{Conn, Phase, WriteSide};
use crate::{transport::Transport, BoxError, Error};

/// The session's one timer, and the waker it was last polled with.
#[pin_project]
pub(super) struct Timer {
    #[pin]
    sleep: Sleep,
    polled_with: Option<Waker>,
}

impl Timer {
    fn new(deadline: Instant) -> Self {
        Timer {
            sleep: tokio::time::sleep_until(deadline),
            polled_with: None,
        }
    }

    fn reset(self: Pin<&mut Self>, deadline: Instant) {
        let this = self.project();
        this.sleep.reset(deadline);
        // A reset timer is registered anew by its next poll.
        *this.polled_with = None;
    }

    /// Polls the timer, unless it is armed for a deadline still ahead and
    /// was polled with this waker already: then it will wake this task, and
    /// polling it again (its registration takes locked instructions, on
    /// memory of its own) would change nothing.
    fn poll_due(self: Pin<&mut Self>, cx: &mut Context<'_>, now: Instant) -> Poll<()> {
        let this = self.project();
        let registered = this
            .polled_with
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()));
        if registered && now < this.sleep.deadline() {
            return Poll::Pending;
        }
        let polled = this.sleep.poll(cx);
        if polled.is_pending() && !registered {
            *this.polled_with = Some(cx.waker().clone());
        }
        polled
    }
}

impl<T, C, R, W> Conn<T, C, R, W>
where
    T: Transport,
    C: Decoder<Item = R> + Encoder<W, Error = <C as Decoder>::Error>,
    <C as Decoder>::Error: Into<BoxError>,
{
    /// Fires what is due and arms the timer for the next deadline.
    pub(super) fn poll_timer(&mut self, cx: &mut Context<'_>) -> bool {
        // The clock as last read in this poll, since the last turn that ran
        // handlers (a write or a read in between read it already): at most
        // a few turns of writing and timekeeping old.
        let now = self.now();
        let mut fired = false;
        let drain_deadline = match self.phase {
            Phase::Draining { deadline } => Some(deadline),
            _ => None,
        };
        if let Some(deadline) = drain_deadline {
            if now >= deadline {
                tracing::debug!("wait time over: abandoning what is left to write");
                self.phase = Phase::Abandoned;
                return true;
            }
        } else {
            let period = self.session.cron_period();
            if period != self.tick_period {
                // A new period (set on the live session) counts from now.
                self.tick_period = period;
                self.next_tick = period.map(|p| now + p);
            }
            if let (Some(period), Some(next)) = (period, self.next_tick) {
                if now >= next {
                    self.pending_tick = true;
                    // A keep-alive (a WebSocket ping) goes with the next flush.
                    self.io.tick();
                    if T::FRAMED {
                        self.needs_flush = true;
                    }
                    self.next_tick = Some(now + period);
                    fired = true;
                }
            }
        }
        let read_timeout = self
            .session
            .read_timeout()
            .filter(|_| self.phase == Phase::Running);
        if let (Some(timeout), Some(since)) = (read_timeout, self.read_waiting_since) {
            if now >= since + timeout {
                self.fail(Error::ReadTimeout {
                    peer: self.session.peer_addr().clone(),
                    timeout,
                });
                fired = true;
            }
        }
        let write_timeout = self.session.write_timeout().filter(|_| self.owes_output());
        if let (Some(timeout), Some(since)) = (write_timeout, self.stalled_since) {
            if now >= since + timeout {
                let pending = self.wbuf.len();
                self.write = WriteSide::Broken;
                self.wbuf = BytesMut::new();
                self.fail(Error::WriteTimeout {
                    peer: self.session.peer_addr().clone(),
                    timeout,
                    pending,
                });
                fired = true;
            }
        }

        // The earliest deadline still ahead.
        let mut next = drain_deadline;
        let mut consider = |d: Option<Instant>| {
            if let Some(d) = d {
                next = Some(next.map_or(d, |n| n.min(d)));
            }
        };
        if drain_deadline.is_none() {
            consider(self.next_tick);
        }
        if self.phase == Phase::Running {
            consider(
                read_timeout
                    .zip(self.read_waiting_since)
                    .map(|(t, since)| since + t),
            );
        }
        if self.owes_output() {
            consider(
                self.session
                    .write_timeout()
                    .zip(self.stalled_since)
                    .map(|(t, s)| s + t),
            );
        }
        if self.phase == Phase::Running {
            consider(self.budget_deadline());
        }
        if let Some(release_at) = self.idle_release_at() {
            if now >= release_at {
                self.release_idle_buffers();
            } else {
                consider(Some(release_at));
            }
        }
        match next {
            None => self.armed = None,
            Some(deadline) => {
                // Made when first needed, dropped with the idle buffers: a
                // session with no deadline holds no timer.
                let timer = self
                    .timer
                    .get_or_insert_with(|| Box::pin(Timer::new(deadline)));
                // Re-arm only for an earlier deadline; a timer that fires
                // early just leads here again (cheaper than a reset per turn).
                if self.armed.is_none_or(|armed| deadline < armed) {
                    timer.as_mut().reset(deadline);
                    self.armed = Some(deadline);
                }
                if timer.as_mut().poll_due(cx, now).is_ready() {
                    self.armed = None;
                    fired = true;
                }
            }
        }
        fired
    }
}
