//! WebSocket as a message transport: one binary message is one packet.

use std::{
    io,
    pin::Pin,
    task::{ready, Context, Poll},
};

use bytes::{Bytes, BytesMut};
use futures_util::{Sink, Stream};
use tokio_tungstenite::{
    tungstenite::{
        error::CapacityError,
        protocol::{frame::coding::CloseCode, CloseFrame},
        Error as WsError, Message,
    },
    WebSocketStream,
};

use super::Io;
use crate::codec::LengthCodecError;

pub(crate) struct WsIo {
    ws: WebSocketStream<Io>,
    accept_text: bool,
    /// Ping or pong seen since the driver last asked.
    activity: bool,
    /// A ping goes out with the next flush.
    ping_due: bool,
    close_sent: bool,
    /// The peer closed first: tungstenite queued the reply; we only flush it.
    close_received: bool,
    /// The session ends because a text message was refused.
    refused_text: bool,
    /// The session ends on a WebSocket protocol violation (close code 1002).
    protocol_error: bool,
}

fn to_io(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        WsError::ConnectionClosed | WsError::AlreadyClosed => io::ErrorKind::BrokenPipe.into(),
        other => io::Error::other(other),
    }
}

impl WsIo {
    pub(crate) fn new(ws: WebSocketStream<Io>, accept_text: bool) -> Self {
        WsIo {
            ws,
            accept_text,
            activity: false,
            ping_due: false,
            close_sent: false,
            close_received: false,
            refused_text: false,
            protocol_error: false,
        }
    }

    pub(super) fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
    ) -> Poll<io::Result<Option<usize>>> {
        loop {
            // Reading also sends the pongs and close replies tungstenite
            // queued for what it received.
            let message = match ready!(Pin::new(&mut self.ws).poll_next(cx)) {
                None => return Poll::Ready(Ok(None)),
                Some(Ok(message)) => message,
                Some(Err(e)) => {
                    self.protocol_error = matches!(e, WsError::Protocol(_));
                    return Poll::Ready(read_error(e));
                }
            };
            let payload: Bytes = match message {
                Message::Binary(b) => b,
                Message::Text(t) if self.accept_text => Bytes::from(t),
                Message::Text(_) => {
                    self.refused_text = true;
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "text messages are not accepted (binary messages carry packets)",
                    )));
                }
                Message::Ping(_) | Message::Pong(_) => {
                    self.activity = true;
                    continue;
                }
                Message::Close(_) => {
                    self.close_received = true;
                    return Poll::Ready(Ok(None));
                }
                Message::Frame(_) => continue,
            };
            if payload.is_empty() {
                // No packet in it; nothing to decode.
                continue;
            }
            buf.extend_from_slice(&payload);
            return Poll::Ready(Ok(Some(payload.len())));
        }
    }

    /// Sends the first `len` bytes of `buf` as one binary message, handing
    /// tungstenite the bytes themselves rather than a copy.
    pub(super) fn poll_send_frame(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        len: usize,
    ) -> Poll<io::Result<()>> {
        if self.close_received {
            // The peer closed: it takes no more data, only our close reply.
            let _ = buf.split_to(len);
            return Poll::Ready(Ok(()));
        }
        ready!(Pin::new(&mut self.ws).poll_ready(cx)).map_err(to_io)?;
        let frame = buf.split_to(len).freeze();
        Pin::new(&mut self.ws)
            .start_send(Message::Binary(frame))
            .map_err(to_io)?;
        Poll::Ready(Ok(()))
    }

    pub(super) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.ping_due && !self.close_received {
            ready!(Pin::new(&mut self.ws).poll_ready(cx)).map_err(to_io)?;
            Pin::new(&mut self.ws)
                .start_send(Message::Ping(Bytes::new()))
                .map_err(to_io)?;
            self.ping_due = false;
        }
        Pin::new(&mut self.ws).poll_flush(cx).map_err(to_io)
    }

    pub(super) fn poll_close(
        &mut self,
        cx: &mut Context<'_>,
        error: Option<&'static str>,
    ) -> Poll<io::Result<()>> {
        if !self.close_sent && !self.close_received {
            ready!(Pin::new(&mut self.ws).poll_ready(cx)).map_err(to_io)?;
            let frame = self.close_frame(error);
            Pin::new(&mut self.ws)
                .start_send(Message::Close(Some(frame)))
                .map_err(to_io)?;
            self.close_sent = true;
        }
        match ready!(Pin::new(&mut self.ws).poll_close(cx)) {
            Ok(()) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(to_io(e))),
        }
    }

    /// The close code and reason for how the session ended.
    fn close_frame(&self, error: Option<&'static str>) -> CloseFrame {
        let (code, reason) = if self.refused_text {
            (CloseCode::Unsupported, "text messages are not accepted")
        } else {
            match error {
                None => (CloseCode::Normal, ""),
                Some("packet_too_large") => (CloseCode::Size, "packet too large"),
                Some("codec") if self.protocol_error => (CloseCode::Protocol, "protocol error"),
                Some("codec") => (CloseCode::Invalid, "malformed packet"),
                Some("read_timeout") => (CloseCode::Policy, "read timeout"),
                Some("raised") => (CloseCode::Policy, "closed by the server"),
                Some(_) => (CloseCode::Error, "server error"),
            }
        };
        CloseFrame {
            code,
            reason: reason.into(),
        }
    }

    pub(super) fn tick(&mut self) {
        self.ping_due = true;
    }

    pub(super) fn take_activity(&mut self) -> bool {
        std::mem::take(&mut self.activity)
    }
}

fn read_error(e: WsError) -> io::Result<Option<usize>> {
    use tokio_tungstenite::tungstenite::error::ProtocolError;
    match e {
        WsError::ConnectionClosed | WsError::AlreadyClosed => Ok(None),
        WsError::Io(e) => Err(e),
        // The peer vanished without a close frame: a lost connection, not
        // bad input.
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            Err(io::ErrorKind::ConnectionReset.into())
        }
        // The limit is the session's max_packet_len: report it as one.
        WsError::Capacity(CapacityError::MessageTooLong { size, max_size }) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            LengthCodecError::TooLarge {
                len: size as u64,
                max: max_size.saturating_sub(super::HEADER_SLACK),
            },
        )),
        other => Err(io::Error::new(io::ErrorKind::InvalidData, other)),
    }
}

/// Approves a handshake's `Origin` header (`None` when absent).
pub(crate) type OriginCheck = std::sync::Arc<dyn Fn(Option<&str>) -> bool + Send + Sync>;

/// A WebSocket server's options (see `ServerBuilder::websocket`).
#[derive(Clone)]
pub(crate) struct WsOptions {
    pub(crate) path: String,
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

/// tungstenite's settings for a session allowing `max` bytes per packet.
fn config(max: usize) -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        // tungstenite allocates its read buffer up front: keep it modest.
        .read_buffer_size(16 * 1024)
        .max_message_size(Some(max.saturating_add(super::HEADER_SLACK)))
        .max_frame_size(Some(max.saturating_add(super::HEADER_SLACK)))
}

/// The server handshake: the path must match (else HTTP 404) and the
/// origin check, if any, must pass (else HTTP 403).
// The callback's error type is tungstenite's HTTP response, large by nature.
#[allow(clippy::result_large_err)]
pub(crate) async fn accept(io: Io, options: &WsOptions, max: usize) -> Result<WsIo, WsError> {
    use tokio_tungstenite::tungstenite::{
        handshake::server::{ErrorResponse, Request, Response},
        http::StatusCode,
    };
    let refuse = |status: StatusCode, why: &str| {
        let mut response = ErrorResponse::new(Some(why.to_owned()));
        *response.status_mut() = status;
        response
    };
    let callback = |request: &Request, response: Response| {
        if request.uri().path() != options.path {
            return Err(refuse(
                StatusCode::NOT_FOUND,
                "no WebSocket endpoint at this path",
            ));
        }
        if let Some(check) = &options.origin {
            let origin = request
                .headers()
                .get("origin")
                .and_then(|v| v.to_str().ok());
            if !check(origin) {
                return Err(refuse(StatusCode::FORBIDDEN, "origin not allowed"));
            }
        }
        Ok(response)
    };
    let ws =
        tokio_tungstenite::accept_hdr_async_with_config(io, callback, Some(config(max))).await?;
    Ok(WsIo::new(ws, options.accept_text))
}

/// The client handshake for `url` over an established stream.
pub(crate) async fn connect(io: Io, url: &str, max: usize) -> Result<WsIo, WsError> {
    let (ws, _response) =
        tokio_tungstenite::client_async_with_config(url, io, Some(config(max))).await?;
    Ok(WsIo::new(ws, true))
}
