//! WebSocket as a message transport: one binary message is one packet.
//!
//! The handshakes ([`handshake`]) and the frame format ([`frame`]) are ours,
//! over the connection's [`Io`] (TCP or TLS), so every buffer is one this
//! transport can give back when the session is idle (see `frame`'s docs for
//! why tungstenite's stream is not used).
//!
//! | state      | reading                                   | writing                        |
//! |------------|-------------------------------------------|--------------------------------|
//! | `Open`     | whole messages to the driver; a ping owes a pong | data frames, pongs, pings |
//! | `Received` | the peer's Close came: end of input       | our Close echoing its code, FIN |
//! | `Sent`     | dropped until the peer's Close (the driver bounds this by the wait time) | nothing more |
//! | `Done`     | nothing                                   | FIN                            |
//!
//! Backpressure: a ping's pong is written before the next frame is read,
//! so at most one pong is ever owed; while it cannot be written nothing
//! more is read, and when that lasts the write timeout ends the session.
//! Data frames are taken only while the output buffer is below
//! [`OUT_HIGH`], so the driver's own high-water mark and write timeout see
//! a peer that does not read its data.
//!
//! | file        | what                                                      |
//! |-------------|-----------------------------------------------------------|
//! | `handshake` | the HTTP upgrade, both sides                              |
//! | `frame`     | header, mask, close codes                                 |
//! | `read`      | frames to messages, every check, refusals                 |
//! | `write`     | data frames, owed pongs and pings, the control write timeout |
//! | `close`     | the closing handshake                                     |

mod close;
mod frame;
mod handshake;
mod read;
mod write;

pub(crate) use self::handshake::HandshakeError;

use std::{pin::Pin, time::Duration};

use bytes::BytesMut;
use tokio_util::sync::CancellationToken;

use self::frame::{Violation, MAX_CONTROL};
use super::Io;

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
    /// How long owed control frames (pongs) may stay unwritten: the
    /// session's write timeout as configured when it starts (a later
    /// `Session::set_write_timeout` applies to data, not to this).
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
    /// The pong owed for the last ping: written before the next frame is
    /// read, so there is never more than one.
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

    // ----- the driver's hooks ------------------------------------------------

    pub(crate) fn tick(&mut self) {
        self.ping_due = true;
    }

    pub(crate) fn take_activity(&mut self) -> bool {
        std::mem::take(&mut self.activity)
    }

    pub(crate) fn buffered(&self) -> usize {
        self.rbuf.len() + self.partial.as_ref().map_or(0, |p| p.data.len())
    }

    pub(crate) fn release_idle(&mut self) {
        if self.rbuf.is_empty() {
            self.rbuf = BytesMut::new();
        }
        if self.out.is_empty() && self.sending.is_none() {
            self.out = BytesMut::new();
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
