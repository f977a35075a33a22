//! Closing: the closing handshake (RFC 6455 §7), then FIN.

use std::{
    io,
    pin::Pin,
    task::{ready, Context, Poll},
};

use bytes::Buf;
use tokio::io::AsyncWrite;
use tokio_util::sync::CancellationToken;

use super::{
    frame::{self, code, OpCode, MAX_CONTROL},
    Closing, Role, WsIo,
};
use crate::transport::Io;

impl WsIo {
    /// The closing handshake, then FIN. `error` names the failure that ended
    /// the session, if one did. The driver bounds this by the wait time.
    pub(crate) fn poll_close(
        &mut self,
        cx: &mut Context<'_>,
        error: Option<&'static str>,
    ) -> Poll<io::Result<()>> {
        loop {
            match self.closing {
                Closing::Open if self.sending.is_some() => {
                    // Half a message is out (the wait time ran out): no
                    // Close frame can follow it.
                    self.closing = Closing::Done;
                }
                Closing::Open => {
                    let (code, reason) = self.close_code(error);
                    // A control frame carries at most 125 bytes; the
                    // reasons are short ASCII, but a cut must not panic.
                    let reason = reason.get(..MAX_CONTROL - 2).unwrap_or(reason);
                    let mut payload = [0u8; MAX_CONTROL];
                    payload[..2].copy_from_slice(&code.to_be_bytes());
                    payload[2..2 + reason.len()].copy_from_slice(reason.as_bytes());
                    let mask = self.mask();
                    frame::put_control(
                        &mut self.out,
                        OpCode::Close,
                        &payload[..2 + reason.len()],
                        mask,
                    );
                    self.closing = Closing::Sent;
                }
                Closing::Received(code) => {
                    if self.sending.is_none() {
                        // The answer echoes the peer's code (RFC 6455 §5.5.1).
                        let payload = code.map(u16::to_be_bytes);
                        let mask = self.mask();
                        frame::put_control(
                            &mut self.out,
                            OpCode::Close,
                            payload.as_ref().map_or(&[][..], |p| &p[..]),
                            mask,
                        );
                    }
                    self.closing = Closing::Done;
                }
                Closing::Sent => {
                    ready!(self.poll_write_out(cx))?;
                    ready!(Pin::new(&mut self.io).poll_flush(cx))?;
                    // Input keeps coming until the peer's Close: the TCP
                    // connection ends only after it, so the answer is not
                    // met by a reset.
                    let _ = ready!(self.poll_until_close(cx));
                    self.closing = Closing::Done;
                }
                Closing::Done => {
                    ready!(self.poll_write_out(cx))?;
                    return Pin::new(&mut self.io).poll_shutdown(cx);
                }
            }
        }
    }

    /// Reads and drops input until the peer's Close frame or the end of the
    /// stream; data frames are skipped as they arrive, never buffered whole.
    fn poll_until_close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            if self.lost {
                self.rbuf.clear();
            }
            if self.skip > 0 {
                let n = self.skip.min(self.rbuf.len() as u64);
                self.rbuf.advance(n as usize);
                self.skip -= n;
            }
            if self.skip == 0 {
                let header = frame::parse_header(&self.rbuf, self.role == Role::Server)
                    .map_err(|v| io::Error::new(io::ErrorKind::InvalidData, v))?;
                if let Some(h) = header {
                    if !h.opcode.is_control() {
                        self.rbuf.advance(h.size);
                        self.skip = h.len;
                        continue;
                    }
                    // A control frame is at most 127 + 4 bytes: take it whole.
                    let total = h.size + h.len as usize;
                    if self.rbuf.len() >= total {
                        self.rbuf.advance(total);
                        if h.opcode == OpCode::Close {
                            return Poll::Ready(Ok(()));
                        }
                        continue;
                    }
                }
            }
            let read = Io::poll_read_into(&mut self.io, cx, &mut self.rbuf, usize::MAX);
            if ready!(read)?.is_none() {
                return Poll::Ready(Ok(()));
            }
        }
    }

    /// The close code and reason for how the session ended.
    fn close_code(&self, error: Option<&'static str>) -> (u16, &'static str) {
        if let Some(v) = self.violation {
            return (v.code, v.reason);
        }
        let going_away = self
            .settings
            .going_away
            .as_ref()
            .is_some_and(CancellationToken::is_cancelled);
        match error {
            None if going_away => (code::GOING_AWAY, "going away"),
            None => (code::NORMAL, ""),
            Some("packet_too_large") => (code::TOO_BIG, "packet too large"),
            Some("codec") => (code::INVALID, "malformed packet"),
            Some("read_timeout") => (code::POLICY, "read timeout"),
            Some("raised") => (code::POLICY, "closed by the server"),
            Some(_) => (code::ERROR, "server error"),
        }
    }
}
