//! Writing: data frames batched in `out` (or written straight from the
//! driver's buffer when large), the owed pong and the cron's ping between
//! them, and the write timeout for control frames the peer does not read.

use std::{
    future::Future,
    io,
    pin::Pin,
    task::{ready, Context, Poll},
};

use bytes::{Buf, BytesMut};
use tokio::io::AsyncWrite;

use super::{
    frame::{self, OpCode},
    Closing, WsIo, OUT_HIGH,
};

impl WsIo {
    /// Writes the owed pong (and whatever is before it in `out`); pending
    /// while it cannot be written, failing once that outlasts the write
    /// timeout.
    pub(super) fn poll_owed(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.pong.is_none() {
            return Poll::Ready(Ok(()));
        }
        loop {
            if !self.out.is_empty() && self.poll_write_out(cx)?.is_pending() {
                return self.poll_stalled(cx);
            }
            if self.sending.is_some() {
                // Half a data frame is out: the pong follows it, once the
                // driver's next write finishes it.
                return self.poll_stalled(cx);
            }
            match self.pong.take() {
                Some(pong) => {
                    let mask = self.mask();
                    frame::put_control(&mut self.out, OpCode::Pong, pong.payload(), mask);
                }
                None => break,
            }
        }
        if Pin::new(&mut self.io).poll_flush(cx)?.is_pending() {
            return self.poll_stalled(cx);
        }
        self.stalled = None;
        Poll::Ready(Ok(()))
    }

    /// Owed output cannot be written: pending, or the write timeout's error.
    fn poll_stalled(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(timeout) = self.settings.write_timeout else {
            return Poll::Pending;
        };
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        ready!(timer.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "write_timeout {timeout:?}: the peer reads none of the control frames owed to it"
            ),
        )))
    }

    /// Writes `out` to the socket until it is empty.
    pub(super) fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.out.is_empty() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.out))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out.advance(n);
        }
        Poll::Ready(Ok(()))
    }

    /// Puts the owed pong and a due ping into `out`, between data frames.
    fn put_owed_control(&mut self) {
        if self.sending.is_some() || self.closing != Closing::Open || self.out.len() >= OUT_HIGH {
            return;
        }
        if let Some(pong) = self.pong.take() {
            let mask = self.mask();
            frame::put_control(&mut self.out, OpCode::Pong, pong.payload(), mask);
        }
        if std::mem::take(&mut self.ping_due) {
            let mask = self.mask();
            frame::put_control(&mut self.out, OpCode::Ping, &[], mask);
        }
    }

    /// Sends the first `len` bytes of `buf` as one binary message and
    /// removes them from `buf`. Small messages are copied into `out` (one
    /// write for many); a large unmasked payload is written straight from
    /// `buf`. Pending while `out` is full and the socket takes nothing.
    pub(crate) fn poll_send_frame(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        len: usize,
    ) -> Poll<io::Result<()>> {
        if self.closing != Closing::Open {
            // A Close crossed: no data may follow it.
            buf.advance(len);
            return Poll::Ready(Ok(()));
        }
        loop {
            let (done, mask) = match self.sending {
                Some(sending) => sending,
                None => {
                    self.put_owed_control();
                    if self.out.len() + frame::MAX_HEADER > OUT_HIGH {
                        ready!(self.poll_write_out(cx))?;
                    }
                    let mask = self.mask();
                    frame::put_header(&mut self.out, true, OpCode::Binary, len, mask);
                    self.sending = Some((0, mask));
                    (0, mask)
                }
            };
            if done == len {
                self.sending = None;
                buf.advance(len);
                return Poll::Ready(Ok(()));
            }
            let room = OUT_HIGH.saturating_sub(self.out.len());
            let rest = &buf[done..len];
            let taken = if mask.is_none() && rest.len() > room {
                ready!(self.poll_write_out(cx))?;
                let n = ready!(Pin::new(&mut self.io).poll_write(cx, rest))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                n
            } else if room == 0 {
                ready!(self.poll_write_out(cx))?;
                0
            } else {
                let n = rest.len().min(room);
                let start = self.out.len();
                self.out.extend_from_slice(&rest[..n]);
                if let Some(mask) = mask {
                    frame::apply_mask(&mut self.out[start..], mask, done);
                }
                n
            };
            self.sending = Some((done + taken, mask));
        }
    }

    pub(crate) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.put_owed_control();
        ready!(self.poll_write_out(cx))?;
        self.stalled = None;
        Pin::new(&mut self.io).poll_flush(cx)
    }
}
