//! Reading: frames parsed from the transport's own buffer into whole
//! messages, every rule of RFC 6455 §5 checked, each refusal recorded for
//! the close code.

use std::{
    io,
    task::{ready, Context, Poll},
};

use bytes::{Buf, BytesMut};

use super::{
    frame::{self, code, OpCode, Violation},
    Closing, Control, Partial, Role, WsIo,
};
use crate::{codec::PacketTooLarge, transport::Io};

impl WsIo {
    /// The next whole message into `buf` (handed over without a copy when
    /// `buf` is empty, as the driver's is); `Ok(None)` once the peer's Close
    /// came. At most `limit` bytes are read from the socket (the input
    /// budget's grant): once they are, `Ok(Some(0))` hands control back
    /// with no message, so the driver can count what is held and grant more.
    pub(crate) fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        mut limit: usize,
    ) -> Poll<io::Result<Option<usize>>> {
        if self.closing != Closing::Open {
            return Poll::Ready(Ok(None));
        }
        if buf.is_empty() {
            // What is left of the last message handed over still holds a
            // reference to our read buffer: let it go, so that the buffer
            // is reused in place when read into again rather than replaced
            // by a new allocation on every read.
            *buf = BytesMut::new();
        }
        loop {
            // The pong for the last ping goes out before the next frame is
            // read: while it cannot be written nothing more is read, so at
            // most one pong is ever owed and a peer that pings without
            // reading meets the write timeout.
            ready!(self.poll_owed(cx))?;
            match self.parse().map_err(|e| self.refuse(e))? {
                Step::Message(message) => {
                    let n = message.len();
                    if buf.is_empty() {
                        *buf = message;
                    } else {
                        buf.extend_from_slice(&message);
                    }
                    return Poll::Ready(Ok(Some(n)));
                }
                Step::Closed => return Poll::Ready(Ok(None)),
                Step::Ping => {}
                Step::More if limit == 0 => return Poll::Ready(Ok(Some(0))),
                Step::More => {
                    let read = ready!(Io::poll_read_into(&mut self.io, cx, &mut self.rbuf, limit))?;
                    let Some(n) = read else {
                        // Without a Close frame the connection was lost, not
                        // closed.
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::ConnectionReset,
                            "the peer ended the connection without a WebSocket Close frame",
                        )));
                    };
                    limit = limit.saturating_sub(n);
                }
            }
        }
    }

    /// Takes complete frames from the start of `rbuf` until one needs the
    /// caller: a whole non-empty message, the peer's Close, a ping (its
    /// pong is owed), or the end of what has arrived.
    fn parse(&mut self) -> Result<Step, Refused> {
        loop {
            let h = match frame::parse_header(&self.rbuf, self.role == Role::Server) {
                Ok(Some(h)) => h,
                Ok(None) => return Ok(Step::More),
                Err(v) => {
                    self.skip_refused_frame();
                    return Err(v.into());
                }
            };
            if !h.opcode.is_control() {
                if let Err(refused) = self.check_data_header(h.opcode, h.len) {
                    self.skip_refused_frame();
                    return Err(refused);
                }
            }
            let Some(total) = usize::try_from(h.len)
                .ok()
                .and_then(|len| len.checked_add(h.size))
            else {
                return Err(too_large(u64::MAX, self.settings.max));
            };
            if self.rbuf.len() < total {
                // Room for the rest of the frame at once, within the limit
                // checked above.
                self.rbuf.reserve(total - self.rbuf.len());
                return Ok(Step::More);
            }
            self.rbuf.advance(h.size);
            let mut payload = self.rbuf.split_to(total - h.size);
            if let Some(mask) = h.mask {
                frame::apply_mask(&mut payload, mask, 0);
            }
            match h.opcode {
                OpCode::Ping => {
                    self.activity = true;
                    self.pong = Some(Control::new(&payload));
                    return Ok(Step::Ping);
                }
                OpCode::Pong => self.activity = true,
                OpCode::Close => {
                    let code = frame::close_payload(&payload)?;
                    self.closing = Closing::Received(code);
                    return Ok(Step::Closed);
                }
                OpCode::Text | OpCode::Binary if h.fin => {
                    if let Some(message) = self.finish(h.opcode == OpCode::Text, payload)? {
                        return Ok(Step::Message(message));
                    }
                }
                OpCode::Text | OpCode::Binary => {
                    self.partial = Some(Partial {
                        text: h.opcode == OpCode::Text,
                        data: payload,
                    });
                }
                OpCode::Continuation => {
                    let Some(partial) = &mut self.partial else {
                        return Err(
                            Violation::protocol("a continuation with no message begun").into()
                        );
                    };
                    partial.data.extend_from_slice(&payload);
                    if h.fin {
                        if let Some(p) = self.partial.take() {
                            if let Some(message) = self.finish(p.text, p.data)? {
                                return Ok(Step::Message(message));
                            }
                        }
                    }
                }
            }
        }
    }

    /// Input was refused at a frame's header: the session closes, and while
    /// it waits for the peer's Close that frame's payload is skipped, so the
    /// frames after it are still understood. When its header is not whole,
    /// nothing more can be; the rest of the input is dropped unread.
    fn skip_refused_frame(&mut self) {
        match frame::extent(&self.rbuf) {
            Some((size, len)) => {
                self.rbuf.advance(size);
                self.skip = len;
            }
            None => {
                self.rbuf.clear();
                self.lost = true;
            }
        }
    }

    /// Checks a data frame's header against the message in progress and the
    /// size limit, before any of its payload is buffered.
    fn check_data_header(&self, opcode: OpCode, len: u64) -> Result<(), Refused> {
        let so_far = match (&self.partial, opcode) {
            (None, OpCode::Continuation) => {
                return Err(Violation::protocol("a continuation with no message begun").into())
            }
            (Some(_), OpCode::Text | OpCode::Binary) => {
                return Err(Violation::protocol("a new message inside a fragmented one").into())
            }
            (Some(p), _) => p.data.len(),
            (None, _) => 0,
        };
        if opcode == OpCode::Text && !self.accept_text {
            return Err(Refused::Text);
        }
        let max = self.settings.max;
        if len > (max - so_far.min(max)) as u64 {
            return Err(too_large((so_far as u64).saturating_add(len), max));
        }
        Ok(())
    }

    /// A whole message: text must be UTF-8; an empty one carries no packet.
    fn finish(&mut self, text: bool, data: BytesMut) -> Result<Option<BytesMut>, Refused> {
        if text && std::str::from_utf8(&data).is_err() {
            return Err(Violation {
                code: code::INVALID,
                reason: "a text message that is not UTF-8",
            }
            .into());
        }
        Ok((!data.is_empty()).then_some(data))
    }

    /// Records why the input is refused (for the close code) and turns it
    /// into the error the driver reports.
    fn refuse(&mut self, refused: Refused) -> io::Error {
        let (violation, error): (Violation, Box<dyn std::error::Error + Send + Sync>) =
            match refused {
                Refused::Violation(v) => (v, Box::new(v)),
                Refused::Text => (
                    Violation {
                        code: code::UNSUPPORTED,
                        reason: "text messages are not accepted",
                    },
                    "text messages are not accepted (binary messages carry packets)".into(),
                ),
                Refused::TooLarge { len, max } => (
                    Violation {
                        code: code::TOO_BIG,
                        reason: "message too big",
                    },
                    // Reported as any packet above max_packet_len is.
                    Box::new(PacketTooLarge::new(len, max)),
                ),
            };
        self.violation = Some(violation);
        io::Error::new(io::ErrorKind::InvalidData, error)
    }
}

/// Where parsing stopped.
enum Step {
    Message(BytesMut),
    Closed,
    Ping,
    More,
}

/// Why input was refused.
enum Refused {
    Violation(Violation),
    Text,
    TooLarge { len: u64, max: usize },
}

impl From<Violation> for Refused {
    fn from(v: Violation) -> Self {
        Refused::Violation(v)
    }
}

fn too_large(len: u64, max: usize) -> Refused {
    Refused::TooLarge { len, max }
}
