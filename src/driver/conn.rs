//! The running session: one poll loop that reads, dispatches, writes and
//! keeps time.
//!
//! Each turn of the loop, in order:
//!
//! | step      | what                                                        |
//! |-----------|-------------------------------------------------------------|
//! | calls     | finished calls, in start order: responses encoded to `wbuf` |
//! | queue     | `Session::send*` items encoded to `wbuf` (below high water)  |
//! | dispatch  | next event (error, tick, message): `poll_ready`, then `call` |
//! | write     | `wbuf` to the socket, only when nothing else moved (batching) or above high water |
//! | timer     | ticks, read timeout, write timeout, drain deadline          |
//!
//! Reading happens inside dispatch and only when a call can start, so a busy
//! service pushes back on the peer. A turn budget makes a busy session yield.
//!
//! Closing is a drain: no more reading; decoded packets, calls in flight,
//! the queue and `wbuf` finish within the wait time; then the caller closes
//! the socket and sends `Close` through the stack.

use std::{
    collections::VecDeque,
    future::Future,
    io,
    panic::{catch_unwind, AssertUnwindSafe},
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::{Buf, BytesMut};
use tokio::{
    sync::oneshot,
    time::{Instant, Sleep},
};
use tokio_util::codec::{Decoder, Encoder};
use tower::Service;

use super::{
    call::{self, Call, Kind},
    pipeline::Pipeline,
};
use crate::{
    codec::LengthCodecError,
    error::panic_message,
    session::queue::Outbound,
    transport::{Transport, HEADER_SLACK},
    BoxError, Error, Event, Request, Session,
};

/// Loop turns before a busy session yields to the runtime.
const BUDGET: usize = 32;
/// Events started in one pass of dispatch.
const PUMP: usize = 64;
/// Bytes waiting to be written above which the driver stops reading and
/// encoding until the socket takes them.
const HIGH_WATER: usize = 64 * 1024;
/// Quiet time after which a session gives its empty buffers back. Releasing
/// on every pause instead costs an allocation and a copy per batch.
const IDLE_RELEASE: Duration = Duration::from_millis(100);
/// First allocation of the write buffer.
const WRITE_CHUNK: usize = 8 * 1024;

pub(super) type CallOf<S, R, W> = Call<<S as Service<Request<R, W>>>::Future>;

pub(super) struct Conn<T, C, R, W> {
    pub(super) io: T,
    codec: C,
    session: Session<W>,
    rbuf: BytesMut,
    wbuf: BytesMut,
    backlog: VecDeque<Outbound<W>>,
    flush_waiters: Vec<oneshot::Sender<()>>,
    pending_msg: Option<R>,
    /// Errors to pass down the stack, in the order raised: at most one
    /// failure (it closes the session) and any reported errors.
    pending_errors: VecDeque<Error>,
    pending_tick: bool,
    max_in_flight: usize,
    /// Reading from the socket continues (no EOF, not closing).
    reading: bool,
    eof: bool,
    /// The socket cannot be written: drop output.
    pub(super) broken: bool,
    /// An error was raised; later ones are only logged.
    failed: bool,
    needs_flush: bool,
    /// A message transport: one packet per read and per write.
    framed: bool,
    /// Refused input is dropped and reported, not fatal (UDP).
    lossy: bool,
    /// In framed mode, the length of each packet waiting in `wbuf`.
    frames: VecDeque<usize>,
    /// The kind of the failure that ended the session, for the close frame.
    close_reason: Option<&'static str>,
    /// `poll_ready` failed or panicked: the service can take no more events.
    pub(super) service_dead: bool,
    /// The drain deadline passed or the session was forced: stop now.
    abandon: bool,
    drain_deadline: Option<Instant>,
    last_read: Instant,
    /// The last socket read or write that moved bytes.
    last_io: Instant,
    next_tick: Option<Instant>,
    /// The cron period `next_tick` was computed with.
    tick_period: Option<Duration>,
    /// Since when the driver has been waiting on the socket for input (the
    /// read timeout runs only then, not while backpressure keeps it from
    /// reading), as getty sets a read deadline just before each read.
    read_waiting_since: Option<Instant>,
    /// The last dispatch pass ended waiting on the socket.
    read_blocked: bool,
    stalled_since: Option<Instant>,
    armed: Option<Instant>,
    /// This turn's reading of the clock (see `now`).
    clock: Option<Instant>,
}

impl<T, C, R, W> Conn<T, C, R, W>
where
    T: Transport,
    C: Decoder<Item = R> + Encoder<W, Error = <C as Decoder>::Error>,
    <C as Decoder>::Error: Into<BoxError>,
{
    pub(super) fn new(io: T, codec: C, session: Session<W>, max_in_flight: usize) -> Self {
        let now = Instant::now();
        Conn {
            framed: io.framed(),
            lossy: io.lossy(),
            frames: VecDeque::new(),
            close_reason: None,
            io,
            codec,
            max_in_flight,
            session,
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
            backlog: VecDeque::new(),
            flush_waiters: Vec::new(),
            pending_msg: None,
            pending_errors: VecDeque::new(),
            pending_tick: false,
            reading: true,
            eof: false,
            broken: false,
            failed: false,
            needs_flush: false,
            service_dead: false,
            abandon: false,
            drain_deadline: None,
            last_read: now,
            last_io: now,
            next_tick: None,
            tick_period: None,
            read_waiting_since: None,
            read_blocked: false,
            stalled_since: None,
            armed: None,
            clock: None,
        }
    }

    pub(super) fn poll_run<S>(
        &mut self,
        cx: &mut Context<'_>,
        svc: &mut S,
        mut calls: Pin<&mut Pipeline<CallOf<S, R, W>>>,
        mut timer: Pin<&mut Sleep>,
    ) -> Poll<()>
    where
        S: Service<Request<R, W>>,
        S::Response: IntoIterator<Item = W>,
        S::Error: Into<BoxError>,
    {
        self.session.queue().register(cx);
        for turn in 0..BUDGET {
            self.clock = None;
            if self.session.is_forced() {
                return Poll::Ready(());
            }
            if self.session.is_closed() {
                self.begin_drain();
            }
            let mut progress = self.fill_from_queue(HIGH_WATER);
            self.read_blocked = false;
            progress |= self.dispatch(cx, svc, calls.as_mut());
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
                progress |= self.poll_timer(cx, timer.as_mut());
            }
            if self.is_done(calls.len()) {
                return Poll::Ready(());
            }
            if !progress {
                return Poll::Pending;
            }
        }
        // One busy session must not starve the others on this worker.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    // ----- events and failures ---------------------------------------------

    /// The time, read at most once per turn of the loop: on a message
    /// transport a read and a write are one packet each, and a clock read
    /// apiece is measurable.
    fn now(&mut self) -> Instant {
        *self.clock.get_or_insert_with(Instant::now)
    }

    /// Starts closing: no more reading, finish what is there within the wait time.
    fn begin_drain(&mut self) {
        if self.drain_deadline.is_none() {
            self.session.close();
            // `close` from another thread marks the session closed before it
            // closes the queue; close it here too so nothing can be accepted
            // after the drain looked at the queue.
            self.session.queue().close();
            self.drain_deadline = Some(Instant::now() + self.session.wait_time());
            self.reading = false;
            self.pending_tick = false;
        }
    }

    /// Raises the session's error: it passes the stack as `Event::Error`,
    /// then the session drains and closes. Only the first error is raised.
    fn fail(&mut self, error: Error) {
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
        self.close_reason = Some(error.kind());
        // After a failure no more packets are delivered: Error, then Close.
        self.rbuf = BytesMut::new();
        self.pending_msg = None;
        self.pending_errors.push_back(error);
        self.begin_drain();
    }

    /// Takes the errors raised with `Session::report_error` and
    /// `close_with_error` into the event order.
    fn absorb_raised(&mut self) {
        for (error, fatal) in self.session.take_raised() {
            if fatal {
                self.fail(error);
            } else {
                tracing::debug!(%error, "error reported");
                self.pending_errors.push_back(error);
            }
        }
    }

    fn io_failed(&mut self, source: io::Error) {
        self.broken = true;
        self.wbuf = BytesMut::new();
        self.rbuf = BytesMut::new();
        self.fail(Error::Io {
            peer: self.session.peer_addr().clone(),
            source,
        });
    }

    fn codec_failed(&mut self, e: impl Into<BoxError>) {
        self.rbuf = BytesMut::new();
        let peer = self.session.peer_addr().clone();
        let error = match e.into().downcast::<LengthCodecError>() {
            Ok(e) => match *e {
                LengthCodecError::TooLarge { len, max } => Error::PacketTooLarge {
                    peer,
                    len: usize::try_from(len).unwrap_or(usize::MAX),
                    max,
                },
                other => Error::Codec {
                    peer,
                    source: Box::new(other),
                },
            },
            Err(source) => Error::Codec { peer, source },
        };
        if self.lossy {
            // A datagram stands alone: drop it, report it, carry on.
            tracing::debug!(%error, "datagram dropped");
            self.pending_errors.push_back(error);
            return;
        }
        self.fail(error);
    }

    fn handler_failed(&mut self, kind: Kind, error: Error) {
        match kind {
            Kind::Error | Kind::Close | Kind::Open => {
                tracing::warn!(event = kind.name(), %error, "service failed handling the event")
            }
            Kind::Message | Kind::Tick => self.fail(error),
        }
    }

    // ----- the steps of a turn ---------------------------------------------

    /// Writes a call's response. What the handler queued with
    /// `Session::send` before returning goes first, whatever the high-water
    /// mark (the queue's capacity bounds it), so a handler's sends and its
    /// response keep the order it made them in.
    pub(super) fn respond(&mut self, packets: impl IntoIterator<Item = W>) {
        self.fill_from_queue(usize::MAX);
        self.encode_all(packets);
    }

    /// Encodes a response's packets into the write buffer.
    fn encode_all(&mut self, packets: impl IntoIterator<Item = W>) {
        for pkg in packets {
            if !self.encode(pkg) {
                break;
            }
        }
    }

    fn encode(&mut self, pkg: W) -> bool {
        if self.broken {
            return false;
        }
        let before = self.wbuf.len();
        match encode_packet(&mut self.codec, &mut self.wbuf, &self.session, pkg) {
            Ok(()) => {
                self.mark_frame(before);
                true
            }
            Err(e) => {
                self.codec_failed(e);
                false
            }
        }
    }

    /// In framed mode, notes that the bytes from `before` on are one message.
    fn mark_frame(&mut self, before: usize) {
        if self.framed && self.wbuf.len() > before {
            self.frames.push_back(self.wbuf.len() - before);
        }
    }

    /// Moves `Session::send*` items into the write buffer.
    fn fill_from_queue(&mut self, limit: usize) -> bool {
        let queue = self.session.queue();
        if self.backlog.is_empty() && !queue.has_items() {
            return false;
        }
        if self.broken {
            self.backlog.clear();
            self.flush_waiters.clear();
            queue.discard();
            return false;
        }
        let mut taken = 0;
        let mut failure = None;
        while self.wbuf.len() < limit {
            let item = match self.backlog.pop_front() {
                Some(item) => item,
                None => {
                    queue.swap(&mut self.backlog);
                    match self.backlog.pop_front() {
                        Some(item) => item,
                        None => break,
                    }
                }
            };
            taken += 1;
            let before = self.wbuf.len();
            match item {
                Outbound::Packet(pkg) => {
                    if let Err(e) =
                        encode_packet(&mut self.codec, &mut self.wbuf, &self.session, pkg)
                    {
                        failure = Some(e);
                        break;
                    }
                }
                Outbound::Bytes(b) => self.wbuf.extend_from_slice(&b),
                Outbound::Vectored(bufs) => {
                    for b in bufs {
                        self.wbuf.extend_from_slice(&b);
                    }
                }
                Outbound::Flush(tx) => {
                    self.flush_waiters.push(tx);
                    self.needs_flush = true;
                }
            }
            if self.framed && self.wbuf.len() > before {
                self.frames.push_back(self.wbuf.len() - before);
            }
        }
        queue.release(taken);
        if let Some(e) = failure {
            self.codec_failed(e);
        }
        taken > 0
    }

    /// Collects finished calls and starts new ones while there is room in
    /// flight and something to handle. Finishing and starting alternate
    /// without leaving this loop, so a batch of packets handled by a ready
    /// service costs one pass of the outer loop, not one per packet.
    fn dispatch<S>(
        &mut self,
        cx: &mut Context<'_>,
        svc: &mut S,
        mut calls: Pin<&mut Pipeline<CallOf<S, R, W>>>,
    ) -> bool
    where
        S: Service<Request<R, W>>,
        S::Response: IntoIterator<Item = W>,
        S::Error: Into<BoxError>,
    {
        let mut progress = false;
        for _ in 0..PUMP {
            // Finished calls first, in start order: their responses go out.
            while let Poll::Ready(Some((kind, result))) = calls.as_mut().poll_next(cx) {
                progress = true;
                match result {
                    Ok(response) => self.respond(response),
                    Err(e) => self.handler_failed(kind, e),
                }
            }
            // What the finished calls raised or closed takes effect before
            // the next packet is read.
            self.absorb_raised();
            if self.session.is_closed() {
                self.begin_drain();
            }
            if calls.len() >= self.max_in_flight {
                break;
            }
            if self.pending_errors.is_empty() && !self.pending_tick && self.pending_msg.is_none() {
                self.pending_msg = self.next_message(cx);
            }
            let event = if !self.pending_errors.is_empty() {
                Kind::Error
            } else if self.pending_tick {
                Kind::Tick
            } else if self.pending_msg.is_some() {
                Kind::Message
            } else {
                break;
            };
            match call::poll_ready(svc, cx) {
                Poll::Pending => break,
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(error)) => {
                    tracing::error!(%error, "service cannot take events; session abandoned");
                    self.service_dead = true;
                    return true;
                }
            }
            let event = match event {
                Kind::Error => self.pending_errors.pop_front().map(Event::Error),
                Kind::Tick => {
                    self.pending_tick = false;
                    if self.pending_msg.is_some() || !self.rbuf.is_empty() {
                        // Input is waiting because our own stack holds it
                        // back (a rate limit, a full pool): the peer is not
                        // idle, so a heartbeat must not take it for idle.
                        self.session.update_active();
                    }
                    Some(Event::Tick)
                }
                _ => self.pending_msg.take().map(Event::Message),
            };
            let Some(event) = event else { break };
            match call::start(svc, Request::new(self.session.clone(), event)) {
                Ok(c) => calls.as_mut().push(c),
                Err((kind, e)) => self.handler_failed(kind, e),
            }
            progress = true;
        }
        progress
    }

    /// The next decoded packet, reading from the socket as needed.
    fn next_message(&mut self, cx: &mut Context<'_>) -> Option<R> {
        loop {
            if !self.rbuf.is_empty() {
                match contain(|| self.codec.decode(&mut self.rbuf)) {
                    Ok(Some(_)) if self.framed && !self.rbuf.is_empty() => {
                        let left = self.rbuf.len();
                        self.codec_failed(format!(
                            "a message carried more than one packet ({left} bytes left over)"
                        ));
                        return None;
                    }
                    Ok(Some(m)) => return Some(self.received(m)),
                    Ok(None) if self.framed => {
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
            if self.eof {
                if self.rbuf.is_empty() {
                    self.begin_drain();
                    return None;
                }
                // The codec may complete a last packet at end of stream.
                return match contain(|| self.codec.decode_eof(&mut self.rbuf)) {
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
            if !self.reading {
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
            let read = self.io.poll_read_into(cx, &mut self.rbuf);
            if self.io.take_activity() {
                // A WebSocket ping or pong: the peer is alive, and it counts
                // as input for the read timeout too.
                self.session.update_active();
                self.read_waiting_since = None;
            }
            match read {
                Poll::Pending => {
                    self.read_blocked = true;
                    if self.read_waiting_since.is_none() && self.session.read_timeout().is_some() {
                        self.read_waiting_since = Some(self.now());
                    }
                    return None;
                }
                Poll::Ready(Ok(None)) => self.eof = true,
                Poll::Ready(Ok(Some(n))) => {
                    crate::session::Counters::add(&self.session.counters().bytes_in, n as u64);
                    self.last_read = self.now();
                    self.last_io = self.last_read;
                    self.read_waiting_since = None;
                }
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::InvalidData && self.framed => {
                    // Bad input in a message transport (a refused text
                    // message, one above the size limit): the connection
                    // itself is sound, so it closes properly.
                    match e.into_inner() {
                        Some(inner) => self.codec_failed(inner),
                        None => self.codec_failed("invalid message"),
                    }
                    return None;
                }
                Poll::Ready(Err(e)) => {
                    self.io_failed(e);
                    return None;
                }
            }
        }
    }

    fn received(&mut self, m: R) -> R {
        crate::session::Counters::add(&self.session.counters().packets_in, 1);
        // The packet's bytes arrived at the last read: stamp that time, which
        // saves a clock read per packet.
        self.session.mark_active(self.last_read.into_std());
        m
    }

    /// Writes the buffer, then flushes. True when anything moved.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> bool {
        if self.broken {
            return false;
        }
        let (mut bytes, mut writes) = (0u64, 0u64);
        let mut blocked = false;
        while !self.wbuf.is_empty() {
            let written = if self.framed {
                // A message transport takes one packet per write, whole,
                // and owns it: no copy on the way out.
                let len = self.frames.front().copied().unwrap_or(self.wbuf.len());
                self.io
                    .poll_send_frame(cx, &mut self.wbuf, len)
                    .map_ok(|()| len)
            } else {
                let written = self.io.poll_write_from(cx, &self.wbuf);
                if let Poll::Ready(Ok(n)) = written {
                    self.wbuf.advance(n);
                }
                written
            };
            match written {
                Poll::Ready(Ok(0)) if !self.framed => {
                    self.io_failed(io::ErrorKind::WriteZero.into());
                    return true;
                }
                Poll::Ready(Ok(n)) => {
                    if self.framed {
                        self.frames.pop_front();
                    }
                    bytes += n as u64;
                    writes += 1;
                }
                Poll::Ready(Err(e)) => {
                    self.io_failed(e);
                    return true;
                }
                Poll::Pending => {
                    blocked = true;
                    break;
                }
            }
        }
        // Counted and stamped once per call, not per message.
        let mut progress = writes > 0;
        if progress {
            let counters = self.session.counters();
            crate::session::Counters::add(&counters.bytes_out, bytes);
            crate::session::Counters::add(&counters.writes, writes);
            self.stalled_since = None;
            self.needs_flush = true;
            self.last_io = self.now();
            self.session.mark_written(self.last_io.into_std());
        }
        if blocked {
            self.stalled_since.get_or_insert_with(Instant::now);
            return progress;
        }
        if self.needs_flush {
            match self.io.poll_flush(cx) {
                Poll::Ready(Ok(())) => {
                    self.needs_flush = false;
                    for tx in self.flush_waiters.drain(..) {
                        let _ = tx.send(());
                    }
                    progress = true;
                }
                Poll::Ready(Err(e)) => {
                    self.io_failed(e);
                    progress = true;
                }
                Poll::Pending => {}
            }
        }
        progress
    }

    /// Fires what is due and arms the timer for the next deadline.
    fn poll_timer(&mut self, cx: &mut Context<'_>, mut timer: Pin<&mut Sleep>) -> bool {
        let now = Instant::now();
        let mut fired = false;
        if let Some(deadline) = self.drain_deadline {
            if now >= deadline {
                tracing::debug!("wait time over: abandoning what is left to write");
                self.abandon = true;
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
                    if self.framed {
                        self.needs_flush = true;
                    }
                    self.next_tick = Some(now + period);
                    fired = true;
                }
            }
        }
        let read_timeout = self.session.read_timeout().filter(|_| self.reading);
        if let (Some(timeout), Some(since)) = (read_timeout, self.read_waiting_since) {
            if now >= since + timeout {
                self.fail(Error::ReadTimeout {
                    peer: self.session.peer_addr().clone(),
                    timeout,
                });
                fired = true;
            }
        }
        let write_timeout = self
            .session
            .write_timeout()
            .filter(|_| !self.wbuf.is_empty() && !self.broken);
        if let (Some(timeout), Some(since)) = (write_timeout, self.stalled_since) {
            if now >= since + timeout {
                let pending = self.wbuf.len();
                self.broken = true;
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
        let mut next = self.drain_deadline;
        let mut consider = |d: Option<Instant>| {
            if let Some(d) = d {
                next = Some(next.map_or(d, |n| n.min(d)));
            }
        };
        if self.drain_deadline.is_none() {
            consider(self.next_tick);
        }
        if self.reading {
            consider(
                read_timeout
                    .zip(self.read_waiting_since)
                    .map(|(t, since)| since + t),
            );
        }
        if !self.wbuf.is_empty() && !self.broken {
            consider(
                self.session
                    .write_timeout()
                    .zip(self.stalled_since)
                    .map(|(t, s)| s + t),
            );
        }
        if self.holds_idle_buffers() {
            let release_at = self.last_io + IDLE_RELEASE;
            if now >= release_at {
                self.release_idle_buffers();
            } else {
                consider(Some(release_at));
            }
        }
        match next {
            None => self.armed = None,
            Some(deadline) => {
                // Re-arm only for an earlier deadline; a timer that fires
                // early just leads here again (cheaper than a reset per turn).
                if self.armed.is_none_or(|armed| deadline < armed) {
                    timer.as_mut().reset(deadline);
                    self.armed = Some(deadline);
                }
                if timer.as_mut().poll(cx).is_ready() {
                    self.armed = None;
                    fired = true;
                }
            }
        }
        fired
    }

    fn is_done(&self, in_flight: usize) -> bool {
        self.abandon
            || (self.drain_deadline.is_some()
                && in_flight == 0
                && self.pending_errors.is_empty()
                && self.pending_msg.is_none()
                && self.rbuf.is_empty()
                && self.backlog.is_empty()
                && (self.broken || (self.wbuf.is_empty() && !self.needs_flush))
                && self.session.queue().is_empty())
    }

    fn holds_idle_buffers(&self) -> bool {
        // A message transport has buffers of its own (WebSocket's frames).
        self.framed
            || (self.rbuf.is_empty() && self.rbuf.capacity() > 0)
            || (self.wbuf.is_empty() && self.wbuf.capacity() > 0)
            || (self.backlog.is_empty() && self.backlog.capacity() > 0)
            || (self.flush_waiters.is_empty() && self.flush_waiters.capacity() > 0)
    }

    /// An idle session keeps no buffers: they come back when data flows.
    fn release_idle_buffers(&mut self) {
        // Whatever the capacity says: a fully split or advanced buffer
        // reports 0 while it still owns its allocation.
        if self.rbuf.is_empty() {
            self.rbuf = BytesMut::new();
        }
        if self.wbuf.is_empty() {
            self.wbuf = BytesMut::new();
        }
        if self.backlog.is_empty() && self.backlog.capacity() > 0 {
            self.backlog = VecDeque::new();
        }
        if self.flush_waiters.is_empty() && self.flush_waiters.capacity() > 0 {
            self.flush_waiters = Vec::new();
        }
        self.io.release_idle();
    }

    /// Closes the sending side (a WebSocket close frame naming how the
    /// session ended), bounded by the wait time.
    pub(super) async fn shutdown(&mut self) {
        if self.broken {
            return;
        }
        let wait = self.session.wait_time();
        let reason = self.close_reason;
        let io = &mut self.io;
        let _ =
            tokio::time::timeout(wait, std::future::poll_fn(|cx| io.poll_close(cx, reason))).await;
    }
}

/// Runs a codec call with a panic turned into an error: a codec (a user's
/// package handler, say) slicing past the end of hostile input must close
/// its session cleanly, not kill the session's task.
fn contain<T, E: Into<BoxError>>(f: impl FnOnce() -> Result<T, E>) -> Result<T, BoxError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r.map_err(Into::into),
        Err(payload) => Err(format!("codec panicked: {}", panic_message(&*payload)).into()),
    }
}

/// Encodes one packet into the write buffer, counting it.
fn encode_packet<C: Encoder<W>, W>(
    codec: &mut C,
    wbuf: &mut BytesMut,
    session: &Session<W>,
    pkg: W,
) -> Result<(), BoxError>
where
    C::Error: Into<BoxError>,
{
    if wbuf.capacity() == 0 {
        wbuf.reserve(WRITE_CHUNK);
    }
    let before = wbuf.len();
    if let Err(e) = contain(|| codec.encode(pkg, wbuf)) {
        // Whatever the encoder wrote before failing must not go out: on a
        // message transport it would shift every later message.
        wbuf.truncate(before);
        return Err(e);
    }
    crate::session::Counters::add(&session.counters().packets_out, 1);
    Ok(())
}
