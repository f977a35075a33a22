//! The running session: one poll loop that opens, reads, dispatches,
//! writes and keeps time.
//!
//! Each turn of the loop, in order:
//!
//! | step      | what                                                        |
//! |-----------|-------------------------------------------------------------|
//! | queue     | `Session::send*` items encoded to `wbuf` (below high water)  |
//! | dispatch  | finished calls' responses to `wbuf`; then the next event (`Open` first; then failure, reported error, tick, message): `poll_ready`, then `call`, and a call in the pipeline's inline slot polled at once (its response to `wbuf` if it answered), all under one panic guard |
//! | write     | `wbuf` to the socket, only when nothing else moved (batching) or above high water |
//! | timer     | ticks, read timeout, write timeout, drain deadline, idle release |
//!
//! Every state a session can be in is the product of four named parts:
//! its **phase**, its **read side**, its **write side** and one
//! **failure** slot (`failure`: the error that closes it, until that error
//! has passed the stack as `Event::Error`).
//!
//! | phase        | reads | starts events        | writes | next                                  |
//! |--------------|-------|----------------------|--------|---------------------------------------|
//! | `Opening`    | no    | `Open` only          | yes    | `Running` when `Open` answers; `Draining` on `close()`, a failure or a refusal |
//! | `Running`    | yes   | all                  | yes    | `Draining` on `close()`, EOF or a failure |
//! | `Draining`   | no    | the failure, reported errors, packets already decoded | yes | done when nothing is left; `Abandoned` at its deadline (the wait time) |
//! | `Abandoned`  | no    | no                   | no     | done                                  |
//!
//! | read side | meaning | next |
//! |-----------|---------|------|
//! | `Open`    | input may come | `Dry` when a read finds none; `Ended` at EOF, a close frame, TLS without close_notify |
//! | `Dry`     | none came in this wakeup: not read again before the next | `Open` at the next wakeup |
//! | `Ended`   | the peer ended its input: what is buffered is decoded, then the session drains | — |
//!
//! | write side | meaning | next |
//! |------------|---------|------|
//! | `Open`     | output is written | `Broken` on an I/O error or the write timeout |
//! | `Broken`   | output is dropped; no close frame, no lingering | — |
//!
//! `Open`'s own progress is `Open::{Waiting, InFlight, Accepted, Refused}`:
//! only a session whose `Open` was accepted passes `Close` through the
//! stack. After the loop: the write side's goodbye (FIN, close_notify,
//! WebSocket Close), `Close`, close callbacks, then the lingering close
//! (`close.rs`).
//!
//! While `Open` is in flight the session already writes, keeps its write
//! timeout and honours `close()`: a handler can greet its peer and await
//! `flush()` during `Open`. Nothing is read before `Open` answers, so the
//! read timeout, which measures the peer's silence while we wait to read,
//! starts then; ticks that come due meanwhile are delivered after it.
//!
//! Reading happens inside dispatch and only when a call can start, so a busy
//! service pushes back on the peer. A turn budget makes a busy session yield.

use std::{
    collections::VecDeque,
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::BytesMut;
use tokio::{sync::oneshot, time::Instant};
use tokio_util::codec::{Decoder, Encoder};
use tower::Service;

use super::{call::Call, pipeline::Pipeline, timer::Timer};
use crate::{
    budget::InputBudget,
    codec::{LengthCodecError, PacketTooLarge},
    session::queue::Outbound,
    transport::Transport,
    BoxError, Error, Request, Session,
};

/// Loop turns before a busy session yields to the runtime.
const BUDGET: usize = 32;
/// Bytes waiting to be written above which the driver stops reading and
/// encoding until the socket takes them.
pub(super) const HIGH_WATER: usize = 64 * 1024;

pub(super) type CallOf<S, R, W> = Call<<S as Service<Request<R, W>>>::Future>;

/// Where the session is in its life (see the module docs' table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Opening,
    Running,
    Draining { deadline: Instant },
    Abandoned,
}

/// The read side of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReadSide {
    /// Input may come (whether the driver reads it is the phase's say).
    Open,
    /// Input may come, but a read in this wakeup found none: the transport
    /// wakes the driver when some comes, and asking again before that
    /// (each turn of the loop) costs a readiness check and a budget grant.
    Dry,
    /// The peer ended its input (EOF, a close frame, TLS without
    /// close_notify).
    Ended,
}

/// The write side of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WriteSide {
    /// Output can be written.
    Open,
    /// The socket failed or timed out writing: output is dropped.
    Broken,
}

/// Whose code the dispatch step is running, so that a panic in it is
/// answered as that code's failure (see `dispatch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    /// The driver's own.
    Ours,
    /// The codec's `decode`.
    Decode,
    /// The service's `poll_ready`.
    Ready,
    /// The service's `call` for an event of this kind.
    Call(super::call::Kind),
    /// The first poll of that call's future, in the pipeline's inline slot.
    Poll(super::call::Kind),
    /// The codec's `encode` of a response, which started at `before` in
    /// the write buffer.
    Encode { before: usize },
}

/// How the `Open` event went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Open {
    /// Not yet handed to the service (it was not ready).
    Waiting,
    InFlight,
    /// Accepted: the session passes `Close` through the stack at its end.
    Accepted,
    /// Refused (or never answered): no `Close` for a session never opened.
    Refused,
}

pub(super) struct Conn<T, C, R, W> {
    pub(super) io: T,
    pub(super) codec: C,
    pub(super) session: Session<W>,
    pub(super) phase: Phase,
    pub(super) open: Open,
    pub(super) rbuf: BytesMut,
    pub(super) wbuf: BytesMut,
    pub(super) backlog: VecDeque<Outbound<W>>,
    pub(super) flush_waiters: Vec<oneshot::Sender<()>>,
    pub(super) pending_msg: Option<R>,
    /// The failure that closes the session, until it passes the stack.
    pub(super) failure: Option<Error>,
    /// An error was raised; later ones are only logged.
    failed: bool,
    /// Errors reported with `Session::report_error` (or dropped datagrams),
    /// in the order raised.
    pub(super) reported: VecDeque<Error>,
    /// The last event started was a reported error: a waiting packet goes
    /// next, so reports cannot starve input.
    pub(super) after_report: bool,
    pub(super) pending_tick: bool,
    pub(super) max_in_flight: usize,
    pub(super) read: ReadSide,
    pub(super) write: WriteSide,
    pub(super) needs_flush: bool,
    /// In framed mode, the length of each packet waiting in `wbuf`.
    pub(super) frames: VecDeque<usize>,
    /// The kind of the failure that ended the session, for the close frame.
    pub(super) close_reason: Option<&'static str>,
    /// `poll_ready` failed or panicked: the service can take no more events.
    pub(super) service_dead: bool,
    /// Whose code the dispatch step is in (for a panic's meaning).
    pub(super) stage: Stage,
    pub(super) last_read: Instant,
    /// The last socket read or write that moved bytes.
    pub(super) last_io: Instant,
    /// Buffers were used since they were last given back.
    pub(super) buffers_used: bool,
    pub(super) next_tick: Option<Instant>,
    /// The cron period `next_tick` was computed with.
    pub(super) tick_period: Option<Duration>,
    /// Since when the driver has been waiting on the socket for input (the
    /// read timeout runs only then, not while backpressure keeps it from
    /// reading), as getty sets a read deadline just before each read.
    pub(super) read_waiting_since: Option<Instant>,
    /// The last dispatch pass ended waiting on the socket.
    pub(super) read_blocked: bool,
    pub(super) stalled_since: Option<Instant>,
    pub(super) armed: Option<Instant>,
    /// The one timer, armed for the earliest deadline; `None` while the
    /// session has no deadline and after it gave its buffers back.
    pub(super) timer: Option<Pin<Box<Timer>>>,
    /// This turn's reading of the clock (see `now`).
    clock: Option<Instant>,
    /// The input budget this session charges, and what it charged.
    pub(super) budget: Option<Arc<InputBudget>>,
    pub(super) charged: usize,
    /// The budget's press count when this session last registered as
    /// holding part of a packet.
    pub(super) holding: Option<u64>,
    /// Since when the session waits for room in the budget (for a session
    /// with nothing buffered: since it last asked the holders to give way).
    pub(super) budget_wait: Option<Instant>,
    /// Packets decoded and encoded since the counters were last updated.
    pub(super) decoded: u32,
    pub(super) encoded: u32,
}

impl<T, C, R, W> Drop for Conn<T, C, R, W> {
    fn drop(&mut self) {
        self.flush_counts();
        if let Some(budget) = &self.budget {
            budget.give_back(self.charged);
            budget.forget(self.session.id());
        }
    }
}

impl<T, C, R, W> Conn<T, C, R, W> {
    /// Adds the packets counted since the last call to the session's stats,
    /// and stamps it active at the read they came from.
    pub(super) fn flush_counts(&mut self) {
        let counters = self.session.counters();
        if self.decoded > 0 {
            crate::session::Counters::add(&counters.packets_in, u64::from(self.decoded));
            self.session.mark_active(self.last_read.into_std());
            self.decoded = 0;
        }
        if self.encoded > 0 {
            crate::session::Counters::add(&counters.packets_out, u64::from(self.encoded));
            self.encoded = 0;
        }
    }
}

impl<T, C, R, W> Conn<T, C, R, W>
where
    T: Transport,
    C: Decoder<Item = R> + Encoder<W, Error = <C as Decoder>::Error>,
    <C as Decoder>::Error: Into<BoxError>,
{
    pub(super) fn new(
        io: T,
        codec: C,
        session: Session<W>,
        budget: Option<Arc<InputBudget>>,
    ) -> Self {
        let now = Instant::now();
        Conn {
            frames: VecDeque::new(),
            close_reason: None,
            io,
            codec,
            max_in_flight: session.max_in_flight(),
            session,
            phase: Phase::Opening,
            open: Open::Waiting,
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
            backlog: VecDeque::new(),
            flush_waiters: Vec::new(),
            pending_msg: None,
            failure: None,
            failed: false,
            reported: VecDeque::new(),
            after_report: false,
            pending_tick: false,
            read: ReadSide::Open,
            write: WriteSide::Open,
            needs_flush: false,
            service_dead: false,
            stage: Stage::Ours,
            last_read: now,
            last_io: now,
            buffers_used: false,
            next_tick: None,
            tick_period: None,
            read_waiting_since: None,
            read_blocked: false,
            stalled_since: None,
            armed: None,
            timer: None,
            clock: None,
            budget,
            charged: 0,
            holding: None,
            budget_wait: None,
            decoded: 0,
            encoded: 0,
        }
    }

    pub(super) fn poll_run<S>(
        &mut self,
        cx: &mut Context<'_>,
        svc: &mut S,
        mut calls: Pin<&mut Pipeline<CallOf<S, R, W>>>,
    ) -> Poll<()>
    where
        S: Service<Request<R, W>>,
        S::Response: IntoIterator<Item = W>,
        S::Error: Into<BoxError>,
    {
        self.session.queue().register(cx);
        // A closed session's queue is closed (see `run`), so the loop looks
        // there, one atomic load, rather than at the shutdown tokens, each
        // read under a lock in memory of its own. A session is forced only
        // once closed, and whoever forces it wakes its driver.
        if self.session.queue().is_closed() && self.session.is_forced() {
            return Poll::Ready(());
        }
        if self.read == ReadSide::Dry {
            self.read = ReadSide::Open;
        }
        self.clock = None;
        for turn in 0..BUDGET {
            self.drain_if_closed();
            let mut progress = self.fill_from_queue(HIGH_WATER);
            self.read_blocked = false;
            if self.dispatch(cx, svc, calls.as_mut()) {
                // Handlers ran: the clock is read anew when next needed.
                // Turns that only write and keep time share one reading.
                self.clock = None;
                progress = true;
            }
            if !self.read_blocked {
                self.read_waiting_since = None;
            }
            if self.service_dead {
                return Poll::Ready(());
            }
            // Writing waits for a quiet turn (one write for many packets),
            // but not past high water nor past a budget: a peer that never
            // stops sending must not hold our output back.
            if !progress || self.wbuf.len() >= HIGH_WATER || turn == BUDGET - 1 {
                progress |= self.poll_write(cx);
            }
            // Deadlines are checked when the session is about to wait, and
            // once per budget while it is busy: a clock read per turn is
            // measurable under load.
            if !progress || turn == BUDGET - 1 {
                progress |= self.poll_timer(cx);
            }
            if self.is_done(calls.len()) {
                return Poll::Ready(());
            }
            if !progress {
                self.give_back_rbuf();
                return Poll::Pending;
            }
        }
        // One busy session must not starve the others on this worker.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    // ----- events and failures ---------------------------------------------

    /// The time, read at most once per turn of the loop that ran handlers
    /// (and once for the turns between such turns): on a message transport
    /// a read and a write are one packet each, and a clock read apiece is
    /// measurable.
    pub(super) fn now(&mut self) -> Instant {
        *self.clock.get_or_insert_with(Instant::now)
    }

    pub(super) fn is_draining(&self) -> bool {
        matches!(self.phase, Phase::Draining { .. } | Phase::Abandoned)
    }

    /// Starts closing: no more reading, finish what is there within the wait time.
    pub(super) fn begin_drain(&mut self) {
        if self.is_draining() {
            return;
        }
        self.session.close();
        // `close` from another thread marks the session closed before it
        // closes the queue; close it here too so nothing can be accepted
        // after the drain looked at the queue.
        self.session.queue().close();
        self.phase = Phase::Draining {
            deadline: Instant::now() + self.session.wait_time(),
        };
        self.pending_tick = false;
    }

    /// Starts the drain if `close()` was called since the loop last looked.
    pub(super) fn drain_if_closed(&mut self) {
        if self.session.queue().is_closed() {
            self.begin_drain();
        }
    }

    /// Raises the session's error: it passes the stack as `Event::Error`,
    /// then the session drains and closes. Only the first error is raised.
    pub(super) fn fail(&mut self, error: Error) {
        if self.failed {
            tracing::debug!(%error, "further error while closing");
            return;
        }
        match &error {
            Error::Io { .. } | Error::UnexpectedEof { .. } | Error::ReadTimeout { .. } => {
                tracing::debug!(%error, "session failed")
            }
            _ => tracing::warn!(%error, "session failed"),
        }
        self.failed = true;
        self.close_reason = Some(error.kind().as_str());
        // After a failure no more packets are delivered: Error, then Close.
        self.rbuf = BytesMut::new();
        self.pending_msg = None;
        self.failure = Some(error);
        self.begin_drain();
    }

    pub(super) fn io_failed(&mut self, source: io::Error) {
        self.write = WriteSide::Broken;
        self.wbuf = BytesMut::new();
        self.rbuf = BytesMut::new();
        self.fail(Error::Io {
            peer: self.session.peer_addr().clone(),
            source,
        });
    }

    pub(super) fn codec_failed(&mut self, e: impl Into<BoxError>) {
        self.rbuf = BytesMut::new();
        let peer = self.session.peer_addr().clone();
        let error = match too_large(e.into()) {
            Ok(PacketTooLarge { len, max }) => Error::PacketTooLarge {
                peer,
                len: usize::try_from(len).unwrap_or(usize::MAX),
                max,
            },
            Err(source) => Error::Codec { peer, source },
        };
        if T::LOSSY {
            // A datagram stands alone: drop it, report it, carry on.
            tracing::debug!(%error, "datagram dropped");
            self.reported.push_back(error);
            return;
        }
        self.fail(error);
    }

    /// Output is waiting for the socket: bytes in `wbuf`, or a flush the
    /// transport could not finish (a WebSocket's own buffer).
    pub(super) fn owes_output(&self) -> bool {
        self.write == WriteSide::Open && (!self.wbuf.is_empty() || self.needs_flush)
    }

    fn is_done(&self, in_flight: usize) -> bool {
        match self.phase {
            Phase::Abandoned => true,
            Phase::Opening | Phase::Running => false,
            Phase::Draining { .. } => {
                // A session never opened has no events left to pass.
                let events_left = self.open == Open::Accepted
                    && (self.failure.is_some()
                        || !self.reported.is_empty()
                        || self.pending_msg.is_some()
                        || !self.rbuf.is_empty());
                in_flight == 0
                    && !events_left
                    && self.backlog.is_empty()
                    && (self.write == WriteSide::Broken
                        || (self.wbuf.is_empty() && !self.needs_flush))
                    && self.session.queue().is_empty()
            }
        }
    }
}

/// The packet-too-large error a codec returned, in any of the forms it can
/// take (`LengthCodec`'s own, the public [`PacketTooLarge`], either inside
/// an `io::Error`); otherwise the error as it was.
fn too_large(e: BoxError) -> Result<PacketTooLarge, BoxError> {
    let e = match e.downcast::<io::Error>() {
        Ok(io)
            if io.get_ref().is_some_and(|inner| {
                inner.is::<PacketTooLarge>() || inner.is::<LengthCodecError>()
            }) =>
        {
            match io.into_inner() {
                Some(inner) => inner,
                None => return Err("invalid data".into()),
            }
        }
        Ok(io) => return Err(io),
        Err(e) => e,
    };
    let e = match e.downcast::<PacketTooLarge>() {
        Ok(p) => return Ok(*p),
        Err(e) => e,
    };
    match e.downcast::<LengthCodecError>() {
        Ok(l) => match *l {
            LengthCodecError::TooLarge { len, max } => Ok(PacketTooLarge { len, max }),
            other => Err(Box::new(other)),
        },
        Err(e) => Err(e),
    }
}
