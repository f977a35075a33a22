//! The write side: responses and queued sends encoded into the write
//! buffer, written in batches, flushed when nothing more is ready.

use std::{
    io,
    task::{Context, Poll},
};

use bytes::{Buf, BytesMut};
use tokio::time::Instant;
use tokio_util::codec::{Decoder, Encoder};

use super::{
    conn::{Conn, Stage, WriteSide},
    read::contain,
    spare::{Spare, CHUNK},
};
use crate::{session::queue::Outbound, transport::Transport, BoxError};

impl<T, C, R, W> Conn<T, C, R, W>
where
    T: Transport,
    C: Decoder<Item = R> + Encoder<W, Error = <C as Decoder>::Error>,
    <C as Decoder>::Error: Into<BoxError>,
{
    /// Writes a call's response. What the handler queued with
    /// `Session::send` before returning goes first, whatever the high-water
    /// mark (the queue's capacity bounds it), so a handler's sends and its
    /// response keep the order it made them in.
    pub(super) fn respond(&mut self, packets: impl IntoIterator<Item = W>, guard: Guard) {
        self.fill_from_queue(usize::MAX);
        for pkg in packets {
            if !self.encode(pkg, guard) {
                break;
            }
        }
    }

    fn encode(&mut self, pkg: W, guard: Guard) -> bool {
        if self.write == WriteSide::Broken {
            return false;
        }
        let before = self.wbuf.len();
        if guard == Guard::Caller {
            // A panic unwinds to the caller's guard, which truncates the
            // buffer back to `before` (see `Stage::Encode`).
            self.stage = Stage::Encode { before };
        }
        let encoded = encode_packet(&mut self.codec, &mut self.wbuf, pkg, guard);
        self.stage = Stage::Ours;
        match encoded {
            Ok(()) => {
                self.encoded += 1;
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
        self.buffers_used = true;
        if T::FRAMED && self.wbuf.len() > before {
            self.frames.push_back(self.wbuf.len() - before);
        }
    }

    /// Moves `Session::send*` items into the write buffer. Looked at
    /// before every response: the common case, nothing queued, is a check
    /// inlined at the call site.
    #[inline]
    pub(super) fn fill_from_queue(&mut self, limit: usize) -> bool {
        if self.backlog.is_empty() && !self.session.queue().has_items() {
            return false;
        }
        self.take_from_queue(limit)
    }

    fn take_from_queue(&mut self, limit: usize) -> bool {
        if self.write == WriteSide::Broken {
            self.backlog.clear();
            self.flush_waiters.clear();
            self.session.queue().discard();
            return false;
        }
        let mut taken = 0;
        let mut failure = None;
        if self.wbuf.capacity() == 0 {
            self.wbuf = new_wbuf();
        }
        while self.wbuf.len() < limit {
            let item = match self.backlog.pop_front() {
                Some(item) => item,
                None => {
                    self.session.queue().swap(&mut self.backlog);
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
                    if let Err(e) = encode_packet(&mut self.codec, &mut self.wbuf, pkg, Guard::Own)
                    {
                        failure = Some(e);
                        break;
                    }
                    self.encoded += 1;
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
            self.mark_frame(before);
        }
        self.session.queue().release(taken);
        if let Some(e) = failure {
            self.codec_failed(e);
        }
        taken > 0
    }

    /// Writes the buffer, then flushes. True when anything moved.
    pub(super) fn poll_write(&mut self, cx: &mut Context<'_>) -> bool {
        if self.write == WriteSide::Broken {
            return false;
        }
        let (mut bytes, mut writes) = (0u64, 0u64);
        let mut blocked = false;
        while !self.wbuf.is_empty() {
            let written = if T::FRAMED {
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
                Poll::Ready(Ok(0)) if !T::FRAMED => {
                    self.io_failed(io::ErrorKind::WriteZero.into());
                    return true;
                }
                Poll::Ready(Ok(n)) => {
                    if T::FRAMED {
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
        if self.wbuf.is_empty() && self.wbuf.capacity() > 0 {
            if T::FRAMED {
                // Written bytes are skipped, not removed: without this the
                // next batch would be encoded after them, each batch
                // walking on through the whole chunk (memory long out of
                // cache) instead of reusing its start. Allocates nothing.
                let _ = self.wbuf.try_reclaim(CHUNK);
            } else {
                // All written: the buffer goes back to the thread, for the
                // next session with output (see `spare`).
                Spare::Write.give(&mut self.wbuf);
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
                    self.stalled_since = None;
                    for tx in self.flush_waiters.drain(..) {
                        let _ = tx.send(());
                    }
                    progress = true;
                }
                Poll::Ready(Err(e)) => {
                    self.io_failed(e);
                    progress = true;
                }
                Poll::Pending => {
                    // Output owed to the peer (a flush the transport could
                    // not finish) counts as stalled like bytes in `wbuf`.
                    self.stalled_since.get_or_insert_with(Instant::now);
                }
            }
        }
        progress
    }
}

/// A write buffer for a session that has none: the thread's spare, or a
/// new one.
fn new_wbuf() -> BytesMut {
    Spare::Write
        .take()
        .unwrap_or_else(|| BytesMut::with_capacity(CHUNK))
}

/// Whose panic guard an encode runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Guard {
    /// Its own: each packet's encode is wrapped in `catch_unwind`.
    Own,
    /// The caller's, already around it: the encode marks its stage
    /// instead, one guard for a whole event rather than one per step.
    Caller,
}

/// Encodes one packet into the write buffer, under `guard`.
// Forced: a response answered at once is encoded through this, per packet,
// and as a call of its own it cost the TCP echo about 25 instructions a
// packet (the codec's `encode`, itself inlined, is in it twice).
#[inline(always)]
fn encode_packet<C: Encoder<W>, W>(
    codec: &mut C,
    wbuf: &mut BytesMut,
    pkg: W,
    guard: Guard,
) -> Result<(), BoxError>
where
    C::Error: Into<BoxError>,
{
    if wbuf.capacity() == 0 {
        *wbuf = new_wbuf();
    }
    let before = wbuf.len();
    let failed: BoxError = match guard {
        Guard::Own => match contain(|| codec.encode(pkg, wbuf)) {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => e.into(),
            Err(panicked) => panicked,
        },
        Guard::Caller => match codec.encode(pkg, wbuf) {
            Ok(()) => return Ok(()),
            Err(e) => e.into(),
        },
    };
    // Whatever the encoder wrote before failing must not go out: on a
    // message transport it would shift every later message.
    wbuf.truncate(before);
    Err(failed)
}
