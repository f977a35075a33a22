//! WebSocket as a message transport: one binary message is one packet.
//!
//! The handshakes ([`handshake`]) and the frame format ([`frame`]) are ours,
//! over the connection's [`Io`] (TCP or TLS), so every buffer is one this
//! transport can give back when the session is idle (see `frame`'s docs for
//! why tungstenite's stream is not used).
//!
//! | state      | reading                          | writing                      |
//! |------------|----------------------------------|------------------------------|
//! | `Open`     | messages to the driver; pings owe a pong (the newest one only) | data frames, pongs, pings |
//! | `Received` | the peer's Close came: end of input | our Close echoes its code, then FIN |
//! | `Sent`     | data dropped, waiting for the peer's Close (bounded by the wait time) | nothing more |
//! | `Done`     | nothing                          | FIN                          |
//!
//! Backpressure: while a pong is owed and cannot be written, nothing more is
//! read, and when that lasts the write timeout ends the session; data
//! frames are taken only while the output buffer is below [`OUT_HIGH`], so
//! the driver's own high-water mark and write timeout see a peer that does
//! not read.

mod frame;
mod handshake;

pub(crate) use self::handshake::HandshakeError;

use std::{
    future::Future,
    io,
    pin::Pin,
    task::{ready, Context, Poll},
    time::Duration,
};

use bytes::{Buf, BytesMut};
use tokio::io::AsyncWrite;
use tokio_util::sync::CancellationToken;

use self::frame::{code, OpCode, Violation, MAX_CONTROL};
use super::Io;
use crate::codec::LengthCodecError;

/// Output bytes buffered before frames are written to the socket: one write
/// for many small messages, and the point above which a data frame waits.
const OUT_HIGH: usize = 64 * 1024;

/// Which end of the connection this is: a server reads masked frames and
/// writes plain ones, a client the other way round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Server,
    Client,
}

/// The closing handshake (RFC 6455 §7), see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closing {
    Open,
    /// The peer's Close came first, with this code (if it had one).
    Received(Option<u16>),
    /// Ours went first; the peer's answer is awaited.
    Sent,
    Done,
}

/// A control frame's payload, kept inline (at most 125 bytes).
#[derive(Clone, Copy)]
struct Control {
    len: u8,
    bytes: [u8; MAX_CONTROL],
}

impl Control {
    fn new(payload: &[u8]) -> Self {
        let mut bytes = [0u8; MAX_CONTROL];
        let len = payload.len().min(MAX_CONTROL);
        bytes[..len].copy_from_slice(&payload[..len]);
        Control {
            len: len as u8,
            bytes,
        }
    }

    fn payload(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// A fragmented message being put together.
struct Partial {
    text: bool,
    data: BytesMut,
}

/// Settings a WebSocket session starts with.
#[derive(Debug, Clone, Default)]
pub(crate) struct WsSettings {
    /// The largest message, in payload bytes (the session's `max_packet_len`).
    pub(crate) max: usize,
    /// How long owed control frames (pongs) may stay unwritten.
    pub(crate) write_timeout: Option<Duration>,
    /// Cancelled when the server or client shuts down: a close then says
    /// 1001 (going away) rather than 1000.
    pub(crate) going_away: Option<CancellationToken>,
}

pub(crate) struct WsIo {
    io: Io,
    role: Role,
    settings: WsSettings,
    accept_text: bool,
    /// Input not yet parsed: at most the start of one frame once the
    /// complete ones are taken.
    rbuf: BytesMut,
    partial: Option<Partial>,
    /// Payload bytes of a frame to drop (while waiting for the peer's Close).
    skip: u64,
    /// Frame boundaries were lost after bad input: input is dropped unread.
    lost: bool,
    /// Frames not yet written.
    out: BytesMut,
    /// A data frame whose header went into `out`: how much of its payload
    /// followed, and its mask.
    sending: Option<(usize, Option<[u8; 4]>)>,
    /// The newest ping not yet answered: at most one pong is owed, a newer
    /// ping replacing an unsent one (RFC 6455 §5.5.3).
    pong: Option<Control>,
    ping_due: bool,
    /// Ping or pong seen since the driver last asked.
    activity: bool,
    closing: Closing,
    /// What this side found wrong with the input: the close code says so.
    violation: Option<Violation>,
    /// Runs while an owed pong cannot be written (the write timeout).
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
    masker: Option<frame::Masker>,
}

impl WsIo {
    fn new(io: Io, role: Role, settings: WsSettings, accept_text: bool, input: BytesMut) -> Self {
        WsIo {
            io,
            role,
            settings,
            accept_text,
            rbuf: input,
            partial: None,
            skip: 0,
            lost: false,
            out: BytesMut::new(),
            sending: None,
            pong: None,
            ping_due: false,
            activity: false,
            closing: Closing::Open,
            violation: None,
            stalled: None,
            masker: (role == Role::Client).then(frame::Masker::new),
        }
    }

    fn mask(&mut self) -> Option<[u8; 4]> {
        self.masker.as_mut().map(frame::Masker::mask)
    }

    // ----- reading ---------------------------------------------------------

    /// The next whole message into `buf` (handed over without a copy when
    /// `buf` is empty, as the driver's is); `Ok(None)` once the peer's Close
    /// came. At most `limit` bytes are read from the socket (the input
    /// budget's grant): once they are, `Ok(Some(0))` hands control back
    /// with no message, so the driver can count what is held and grant more.
    pub(super) fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        mut limit: usize,
    ) -> Poll<io::Result<Option<usize>>> {
        if self.closing != Closing::Open {
            return Poll::Ready(Ok(None));
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
                    let read = ready!(super::Io::poll_read_into(
                        &mut self.io,
                        cx,
                        &mut self.rbuf,
                        limit
                    ))?;
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
                    let code = close_code(&payload)?;
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
                    Box::new(LengthCodecError::TooLarge { len, max }),
                ),
            };
        self.violation = Some(violation);
        io::Error::new(io::ErrorKind::InvalidData, error)
    }

    // ----- writing ---------------------------------------------------------

    /// Writes the owed pong (and whatever is before it in `out`); pending
    /// while it cannot be written, failing once that outlasts the write
    /// timeout.
    fn poll_owed(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
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
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
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
    pub(super) fn poll_send_frame(
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

    pub(super) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.put_owed_control();
        ready!(self.poll_write_out(cx))?;
        self.stalled = None;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    // ----- closing ---------------------------------------------------------

    /// The closing handshake, then FIN. `error` names the failure that ended
    /// the session, if one did. The driver bounds this by the wait time.
    pub(super) fn poll_close(
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
            let read = super::Io::poll_read_into(&mut self.io, cx, &mut self.rbuf, usize::MAX);
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

    // ----- the driver's hooks ------------------------------------------------

    pub(super) fn tick(&mut self) {
        self.ping_due = true;
    }

    pub(super) fn take_activity(&mut self) -> bool {
        std::mem::take(&mut self.activity)
    }

    pub(super) fn buffered(&self) -> usize {
        self.rbuf.len() + self.partial.as_ref().map_or(0, |p| p.data.len())
    }

    pub(super) fn release_idle(&mut self) {
        if self.rbuf.is_empty() {
            self.rbuf = BytesMut::new();
        }
        if self.out.is_empty() && self.sending.is_none() {
            self.out = BytesMut::new();
        }
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

/// The code of a Close frame's payload (`None` when it has none).
fn close_code(payload: &[u8]) -> Result<Option<u16>, Violation> {
    match payload {
        [] => Ok(None),
        [_] => Err(Violation::protocol("a Close frame with a one-byte body")),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !frame::is_valid_close_code(code) {
                return Err(Violation::protocol("a Close frame with a reserved code"));
            }
            if std::str::from_utf8(reason).is_err() {
                return Err(Violation {
                    code: code::INVALID,
                    reason: "a Close reason that is not UTF-8",
                });
            }
            Ok(Some(code))
        }
    }
}

/// Approves a handshake's `Origin` header (`None` when absent).
pub(crate) type OriginCheck = std::sync::Arc<dyn Fn(Option<&str>) -> bool + Send + Sync>;

/// A WebSocket server's options (see `ServerBuilder::websocket`); each is
/// set on its own, in any order.
#[derive(Clone, Default)]
pub(crate) struct WsOptions {
    /// The path served; `None` when the server does not speak WebSocket.
    pub(crate) path: Option<String>,
    pub(crate) accept_text: bool,
    pub(crate) origin: Option<OriginCheck>,
}

impl std::fmt::Debug for WsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsOptions")
            .field("path", &self.path)
            .field("accept_text", &self.accept_text)
            .field("origin_check", &self.origin.is_some())
            .finish()
    }
}

/// The server handshake, then the session's transport. Refusals are
/// answered with their HTTP status (see [`handshake`]).
pub(crate) async fn accept(
    mut io: Io,
    options: &WsOptions,
    settings: WsSettings,
) -> Result<WsIo, HandshakeError> {
    let input = handshake::accept(&mut io, options).await?;
    Ok(WsIo::new(
        io,
        Role::Server,
        settings,
        options.accept_text,
        input,
    ))
}

/// The client handshake for `url` over an established stream.
pub(crate) async fn connect(
    mut io: Io,
    url: &str,
    settings: WsSettings,
) -> Result<WsIo, HandshakeError> {
    let input = handshake::connect(&mut io, url).await?;
    Ok(WsIo::new(io, Role::Client, settings, true, input))
}
