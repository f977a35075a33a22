//! The read side: decoding what is buffered, reading more within the input
//! budget, and giving buffers back when the session goes quiet.

use std::{
    io,
    task::{Context, Poll},
    time::Duration,
};

use bytes::BytesMut;
use tokio::time::Instant;
use tokio_util::codec::{Decoder, Encoder};

use super::{
    conn::{Conn, ReadSide, Stage, HIGH_WATER},
    spare::Spare,
};
use crate::{
    budget::MIN_GRANT,
    error::panic_message,
    transport::{Transport, HEADER_SLACK},
    BoxError, Error,
};

/// Quiet time after which a session gives its empty buffers back. Releasing
/// on every pause instead costs an allocation and a copy per batch.
const IDLE_RELEASE: Duration = Duration::from_millis(100);
/// The most one read may take from the input budget (one read's worth of
/// the stream's read buffer).
const READ_GRANT: usize = 64 * 1024;
/// How often a session with nothing buffered, waiting for room in the
/// input budget, asks the holders of partial packets again (one may have
/// registered just after it asked).
const PRESS_AGAIN: Duration = Duration::from_millis(100);

impl<T, C, R, W> Conn<T, C, R, W>
where
    T: Transport,
    C: Decoder<Item = R> + Encoder<W, Error = <C as Decoder>::Error>,
    <C as Decoder>::Error: Into<BoxError>,
{
    /// The next decoded packet, reading from the socket as needed.
    pub(super) fn next_message(&mut self, cx: &mut Context<'_>) -> Option<R> {
        loop {
            if !self.rbuf.is_empty() {
                // Under dispatch's guard, which reads a panic here as the
                // codec's by this mark.
                self.stage = Stage::Decode;
                let decoded = self.codec.decode(&mut self.rbuf);
                self.stage = Stage::Ours;
                match decoded {
                    Ok(Some(_)) if T::FRAMED && !self.rbuf.is_empty() => {
                        let left = self.rbuf.len();
                        self.codec_failed(format!(
                            "a message carried more than one packet ({left} bytes left over)"
                        ));
                        return None;
                    }
                    Ok(Some(m)) => return Some(self.received(m)),
                    Ok(None) if T::FRAMED => {
                        let len = self.rbuf.len();
                        self.codec_failed(format!(
                            "a message of {len} bytes is not a whole packet"
                        ));
                        return None;
                    }
                    Ok(None) => {
                        let max = self.session.max_packet_len();
                        if self.rbuf.len() > max.saturating_add(HEADER_SLACK) {
                            let len = self.rbuf.len();
                            self.rbuf = BytesMut::new();
                            self.fail(Error::PacketTooLarge {
                                peer: self.session.peer_addr().clone(),
                                len,
                                max,
                            });
                            return None;
                        }
                    }
                    Err(e) => {
                        self.codec_failed(e);
                        return None;
                    }
                }
            }
            if self.read == ReadSide::Ended {
                if self.rbuf.is_empty() {
                    self.begin_drain();
                    return None;
                }
                // The codec may complete a last packet at end of stream.
                self.stage = Stage::Decode;
                let decoded = self.codec.decode_eof(&mut self.rbuf);
                self.stage = Stage::Ours;
                return match decoded {
                    Ok(Some(m)) => Some(self.received(m)),
                    _ => {
                        let buffered = self.rbuf.len();
                        self.rbuf = BytesMut::new();
                        self.fail(Error::UnexpectedEof {
                            peer: self.session.peer_addr().clone(),
                            buffered,
                        });
                        None
                    }
                };
            }
            if self.is_draining() {
                if !self.rbuf.is_empty() {
                    tracing::debug!(
                        bytes = self.rbuf.len(),
                        "closing: dropping an incomplete packet"
                    );
                    self.rbuf = BytesMut::new();
                }
                return None;
            }
            if self.wbuf.len() >= HIGH_WATER {
                // The peer is not reading what we write: stop reading until it does.
                return None;
            }
            let read = if self.read == ReadSide::Dry {
                Poll::Pending
            } else {
                let limit = self.read_grant(cx)?;
                if !T::FRAMED && self.rbuf.capacity() == 0 {
                    // A session that gave its buffer back borrows the
                    // thread's (see `spare`).
                    if let Some(spare) = Spare::Read.take() {
                        self.rbuf = spare;
                    }
                }
                self.io.poll_read_into(cx, &mut self.rbuf, limit)
            };
            if self.io.take_activity() {
                // A WebSocket ping or pong: the peer is alive, and the read
                // timeout counts from here. The transport's buffers were used
                // (read, and a pong written): they go back when idle.
                self.session.update_active();
                self.read_waiting_since = None;
                self.buffers_used = true;
            }
            match read {
                Poll::Pending => {
                    self.read = ReadSide::Dry;
                    self.settle_budget();
                    self.read_blocked = true;
                    if self.read_waiting_since.is_none() && self.session.read_timeout().is_some() {
                        self.read_waiting_since = Some(self.now());
                    }
                    if self.charged > 0 {
                        if let Some(budget) = &self.budget {
                            // Part of a packet waits here: if the budget runs
                            // out, this session is asked to give way.
                            self.holding =
                                Some(budget.hold(self.session.id(), cx.waker(), self.holding));
                        }
                    }
                    return None;
                }
                Poll::Ready(Ok(None)) => {
                    self.settle_budget();
                    self.read = ReadSide::Ended;
                }
                Poll::Ready(Ok(Some(n))) => {
                    // Within the grant nothing is owed; a message transport
                    // may bring more than the grant, charged at once.
                    if self.held() > self.charged {
                        self.settle_budget();
                    }
                    crate::session::Counters::add(&self.session.counters().bytes_in, n as u64);
                    self.buffers_used = true;
                    self.last_read = self.now();
                    self.last_io = self.last_read;
                    self.read_waiting_since = None;
                }
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::InvalidData && T::FRAMED => {
                    // Bad input in a message transport (a refused text
                    // message, one above the size limit): the connection
                    // itself is sound, so it closes properly.
                    self.settle_budget();
                    match e.into_inner() {
                        Some(inner) => self.codec_failed(inner),
                        None => self.codec_failed("invalid message"),
                    }
                    return None;
                }
                Poll::Ready(Err(e)) => {
                    self.io_failed(e);
                    self.settle_budget();
                    return None;
                }
            }
        }
    }

    fn received(&mut self, m: R) -> R {
        // Counted, and the session stamped active, once per pass of
        // dispatch (`flush_counts`): atomics per packet are measurable.
        self.decoded += 1;
        m
    }

    /// How many bytes the next read may take: the grant taken from the
    /// input budget (unlimited without one). `None` when the budget is
    /// spent and the session must wait for room:
    ///
    /// - with nothing buffered, it asks the sessions holding partial
    ///   packets to give way (again every [`PRESS_AGAIN`] while it waits);
    /// - holding part of a packet, it waits without asking, but gives way
    ///   (closed with [`Error::InputBudget`]) when asked, or after its wait
    ///   time without room.
    fn read_grant(&mut self, cx: &mut Context<'_>) -> Option<usize> {
        let Some(budget) = &self.budget else {
            return Some(usize::MAX);
        };
        // What the last grant left unread is still charged (the pass of
        // dispatch settles at its end): the next read takes it without
        // going back to the budget, whose counter is shared by every
        // session.
        let left = self.charged.saturating_sub(self.held());
        if left >= MIN_GRANT {
            return Some(left);
        }
        if self.budget_wait.is_none() {
            if let Some(grant) = budget.try_take(READ_GRANT, MIN_GRANT) {
                self.charged += grant;
                return Some(left + grant);
            }
        }
        self.wait_for_grant(cx)
    }

    /// The budget had no grant at first look: gives back what this session
    /// holds beyond its input, looks again, and otherwise waits for room
    /// (see [`read_grant`](Self::read_grant)).
    fn wait_for_grant(&mut self, cx: &mut Context<'_>) -> Option<usize> {
        let budget = self.budget.clone()?;
        self.settle_budget();
        for _ in 0..2 {
            if let Some(grant) = budget.try_take(READ_GRANT, MIN_GRANT) {
                if self.budget_wait.take().is_some() {
                    budget.stop_waiting(self.session.id());
                }
                self.charged += grant;
                return Some(grant);
            }
            let now = self.now();
            let since = *self.budget_wait.get_or_insert(now);
            if self.charged > 0 {
                let asked = self.holding.is_some_and(|at| at != budget.pressed());
                if asked || now >= since + self.session.wait_time() {
                    self.budget_spent(budget.limit());
                    return None;
                }
                if budget.wait(self.session.id(), cx.waker()) {
                    continue;
                }
                return None;
            }
            if !budget.wait(self.session.id(), cx.waker()) {
                budget.press_holders();
                self.budget_wait = Some(now);
                tracing::debug!(
                    used = budget.used(),
                    limit = budget.limit(),
                    "input budget spent: waiting before reading"
                );
                return None;
            }
        }
        None
    }

    /// While the session waits for room in the budget: when it next looks
    /// by itself (to ask again, or to give up holding a partial packet).
    pub(super) fn budget_deadline(&self) -> Option<Instant> {
        let since = self.budget_wait?;
        Some(if self.charged > 0 {
            since + self.session.wait_time()
        } else {
            since + PRESS_AGAIN
        })
    }

    /// Closes the session for holding part of a packet it cannot complete
    /// within the spent budget, giving its share back.
    fn budget_spent(&mut self, limit: usize) {
        let held = self.charged;
        self.fail(Error::InputBudget {
            peer: self.session.peer_addr().clone(),
            held,
            budget: limit,
        });
        self.settle_budget();
    }

    /// Brings the budget's charge in line with the input this session holds
    /// (its read buffer and what the transport buffers), and publishes it
    /// in the session's stats.
    pub(super) fn settle_budget(&mut self) {
        let held = self.held();
        if held == self.charged {
            return;
        }
        if let Some(budget) = &self.budget {
            if held > self.charged {
                budget.charge(held - self.charged);
            } else {
                budget.give_back(self.charged - held);
            }
        }
        self.charged = held;
        self.session
            .counters()
            .buffered_input
            .store(held as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// The input this session holds: its read buffer and what the
    /// transport buffers.
    fn held(&self) -> usize {
        self.rbuf.len() + self.io.buffered()
    }

    /// When the session may give its buffers back, if it used any.
    pub(super) fn idle_release_at(&self) -> Option<Instant> {
        (self.buffers_used && self.rbuf.is_empty() && self.wbuf.is_empty())
            .then(|| self.last_io + IDLE_RELEASE)
    }

    /// The session is about to wait: a stream's read buffer with nothing
    /// left in it, and no packet still holding part of it, goes back to
    /// the thread for the next session to read into (see `spare`).
    pub(super) fn give_back_rbuf(&mut self) {
        if !T::FRAMED {
            Spare::Read.give(&mut self.rbuf);
        }
    }

    /// An idle session keeps no buffers: they come back when data flows.
    /// Empty buffers are replaced whatever their reported capacity: a
    /// `BytesMut` whose bytes were all split off reports none, yet still
    /// owns the allocation its packets came from.
    pub(super) fn release_idle_buffers(&mut self) {
        if self.rbuf.is_empty() {
            self.rbuf = BytesMut::new();
        }
        if self.wbuf.is_empty() {
            self.wbuf = BytesMut::new();
            self.frames = Default::default();
        }
        if self.backlog.is_empty() {
            self.backlog = Default::default();
        }
        if self.flush_waiters.is_empty() {
            self.flush_waiters = Vec::new();
        }
        // No deadline is left once idle (the idle release was the last).
        self.timer = None;
        self.armed = None;
        self.io.release_idle();
        self.session.queue().release_idle();
        self.buffers_used = false;
    }
}

/// Runs a codec call with a panic turned into an error: a codec (a user's
/// package handler, say) slicing past the end of hostile input must close
/// its session cleanly, not kill the session's task. The call's own result
/// is handed back as it is (converting it here cost a copy per packet).
pub(super) fn contain<T>(f: impl FnOnce() -> T) -> Result<T, BoxError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .map_err(|payload| format!("codec panicked: {}", panic_message(&*payload)).into())
}
