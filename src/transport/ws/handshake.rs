//! The opening handshakes (RFC 6455 §4): the server's answer to an HTTP
//! upgrade request, and the client's request and check of the answer.
//!
//! Written over our own bounded buffer with `httparse` (tungstenite's
//! handshake reads without a bound on the header bytes it buffers and gives
//! no HTTP answer to most bad requests): the request head may take at most
//! [`MAX_HEAD`] bytes, and every refusal is an HTTP response naming why.
//! Bytes that arrive after the head (a client may send its first frames at
//! once) are handed to the frame layer.
//!
//! | request                                    | answer |
//! |--------------------------------------------|--------|
//! | not parseable as HTTP, or not a `GET`      | 400    |
//! | another path (upgrade or not)              | 404    |
//! | the path, but no `Upgrade: websocket`      | 426 (`Upgrade: websocket`) |
//! | HTTP/1.0, no `Host`, no `Connection: Upgrade`, a missing or malformed `Sec-WebSocket-Key`, no `Sec-WebSocket-Version` | 400 |
//! | `Sec-WebSocket-Version` other than 13      | 426 (`Sec-WebSocket-Version: 13`) |
//! | an `Origin` the origin check refuses       | 403    |
//! | a head above 8 KiB, or above 64 headers    | 431    |
//! | a valid upgrade                            | 101    |

use std::{borrow::Cow, fmt, io, time::Duration};

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::handshake::{client::generate_key, derive_accept_key};

use super::WsOptions;
use crate::transport::Io;

/// The most bytes a request or response head may take.
pub(super) const MAX_HEAD: usize = 8 * 1024;
/// The most header fields a head may have.
const MAX_HEADERS: usize = 64;
/// How long a refused client may take to read our answer, and how much of
/// its input is read and dropped meanwhile, so the answer is not lost to a
/// reset (closing a socket with unread input resets it).
const LINGER: Duration = Duration::from_millis(500);
const LINGER_BYTES: usize = 64 * 1024;

/// Why a handshake did not complete.
#[derive(Debug)]
#[non_exhaustive]
pub(crate) enum HandshakeError {
    /// The server refused the request with this HTTP status.
    Refused { status: u16, reason: &'static str },
    /// The connection ended before the handshake did.
    Closed,
    /// The server's answer was not a valid upgrade (client side).
    BadResponse(String),
    /// Reading or writing failed.
    Io(io::Error),
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::Refused { status, reason } => {
                write!(f, "refused with HTTP {status}: {reason}")
            }
            HandshakeError::Closed => f.write_str("the connection ended during the handshake"),
            HandshakeError::BadResponse(why) => {
                write!(f, "the server did not upgrade to WebSocket: {why}")
            }
            HandshakeError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for HandshakeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HandshakeError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for HandshakeError {
    fn from(e: io::Error) -> Self {
        HandshakeError::Io(e)
    }
}

/// A refusal: status, why, and header lines to add.
#[derive(Debug, Clone, Copy)]
struct Refusal {
    status: u16,
    reason: &'static str,
    headers: &'static str,
}

const fn refuse(status: u16, reason: &'static str) -> Refusal {
    Refusal {
        status,
        reason,
        headers: "",
    }
}

/// Reads until a whole head is in `buf` (at most [`MAX_HEAD`] bytes);
/// `parse` says whether it is complete. `Ok(None)` when the head outgrew
/// the bound.
async fn read_head<T>(
    io: &mut Io,
    buf: &mut BytesMut,
    mut parse: impl FnMut(&[u8]) -> Option<T>,
) -> Result<Option<T>, HandshakeError> {
    loop {
        if let Some(done) = parse(buf) {
            return Ok(Some(done));
        }
        let room = MAX_HEAD - buf.len();
        if room == 0 {
            return Ok(None);
        }
        buf.reserve(room.min(2048));
        let n = io.read_buf(&mut (&mut *buf).limit(room)).await?;
        if n == 0 {
            return Err(HandshakeError::Closed);
        }
    }
}

/// Answers the upgrade request on `io`: `Ok` with the bytes that came after
/// the request (the first frames), or the refusal, answered and logged by
/// the caller.
pub(super) async fn accept(io: &mut Io, options: &WsOptions) -> Result<BytesMut, HandshakeError> {
    let mut buf = BytesMut::new();
    let parsed = read_head(io, &mut buf, |bytes| {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(bytes) {
            Ok(httparse::Status::Partial) => None,
            Ok(httparse::Status::Complete(len)) => Some(check(&request, options).map(|k| (k, len))),
            Err(httparse::Error::TooManyHeaders) => {
                Some(Err(refuse(431, "more than 64 header fields")))
            }
            Err(_) => Some(Err(refuse(400, "not an HTTP/1.1 request"))),
        }
    })
    .await?;
    let parsed = parsed.unwrap_or(Err(refuse(431, "request head above 8 KiB")));
    match parsed {
        Ok((accept_key, len)) => {
            let response = format!(
                "HTTP/1.1 101 Switching Protocols\r\n\
                 Upgrade: websocket\r\n\
                 Connection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {accept_key}\r\n\r\n"
            );
            io.write_all(response.as_bytes()).await?;
            io.flush().await?;
            Ok(after_head(buf, len))
        }
        Err(refusal) => {
            answer(io, refusal).await;
            Err(HandshakeError::Refused {
                status: refusal.status,
                reason: refusal.reason,
            })
        }
    }
}

/// Whether `request` is a WebSocket upgrade for this server; its
/// `Sec-WebSocket-Accept` value if so.
fn check(request: &httparse::Request<'_, '_>, options: &WsOptions) -> Result<String, Refusal> {
    if request.method != Some("GET") {
        return Err(refuse(400, "a WebSocket upgrade is a GET request"));
    }
    if path_of(request.path.unwrap_or_default()) != options.path.as_deref().unwrap_or("/") {
        return Err(refuse(404, "no WebSocket endpoint at this path"));
    }
    if request.version != Some(1) {
        return Err(refuse(400, "a WebSocket upgrade needs HTTP/1.1"));
    }
    let headers: &[httparse::Header<'_>] = request.headers;
    if single(headers, "host")?.is_none() {
        return Err(refuse(400, "no Host header"));
    }
    if !has_token(headers, "upgrade", "websocket") {
        return Err(Refusal {
            status: 426,
            reason: "this resource speaks WebSocket only",
            headers: "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n",
        });
    }
    if !has_token(headers, "connection", "upgrade") {
        return Err(refuse(400, "no Connection: Upgrade header"));
    }
    match single(headers, "sec-websocket-version")? {
        None => return Err(refuse(400, "no Sec-WebSocket-Version header")),
        Some(v) if v.trim_ascii() == b"13" => {}
        Some(_) => {
            return Err(Refusal {
                status: 426,
                reason: "only WebSocket version 13 is supported",
                headers: "Sec-WebSocket-Version: 13\r\n",
            })
        }
    }
    let key = match single(headers, "sec-websocket-key")? {
        Some(key) if is_valid_key(key.trim_ascii()) => key.trim_ascii(),
        Some(_) => return Err(refuse(400, "Sec-WebSocket-Key is not 16 bytes in base64")),
        None => return Err(refuse(400, "no Sec-WebSocket-Key header")),
    };
    if let Some(check) = &options.origin {
        let origin = single(headers, "origin")?.and_then(|v| std::str::from_utf8(v).ok());
        if !check(origin) {
            return Err(refuse(403, "origin not allowed"));
        }
    }
    Ok(derive_accept_key(key))
}

/// The path of a request target, without its query; an absolute-form
/// target (`http://host/path`) gives its path.
fn path_of(target: &str) -> &str {
    let target = match target.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => target,
    };
    target.split(['?', '#']).next().unwrap_or_default()
}

/// The value of header `name`, which may appear at most once.
fn single<'h>(headers: &[httparse::Header<'h>], name: &str) -> Result<Option<&'h [u8]>, Refusal> {
    let mut found = headers.iter().filter(|h| h.name.eq_ignore_ascii_case(name));
    let first = found.next().map(|h| h.value);
    if found.next().is_some() {
        return Err(refuse(400, "a WebSocket header appears twice"));
    }
    Ok(first)
}

/// Whether some header `name` lists `token` (comma-separated, any case).
fn has_token(headers: &[httparse::Header<'_>], name: &str, token: &str) -> bool {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .flat_map(|h| h.value.split(|&b| b == b','))
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Whether `key` is the base64 of 16 bytes: 22 alphabet characters, the
/// last with its low 4 bits clear, then `==`.
fn is_valid_key(key: &[u8]) -> bool {
    fn value(c: u8) -> Option<u8> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        })
    }
    key.len() == 24
        && key.ends_with(b"==")
        && key[..22].iter().all(|&c| value(c).is_some())
        && value(key[21]).is_some_and(|v| v & 0x0f == 0)
}

/// Writes the refusal, ends our side, and reads what the client still sends
/// for a moment, so it can read the answer before the connection closes.
async fn answer(io: &mut Io, refusal: Refusal) {
    let phrase = match refusal.status {
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        _ => "Error",
    };
    let body = refusal.reason;
    let response = format!(
        "HTTP/1.1 {} {phrase}\r\n\
         Connection: close\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\n\
         {}\r\n\
         {body}\n",
        refusal.status,
        body.len() + 1,
        refusal.headers,
    );
    let written = async {
        io.write_all(response.as_bytes()).await?;
        io.shutdown().await
    };
    if written.await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(LINGER, async {
        let mut drained = 0;
        let mut sink = BytesMut::new();
        while drained < LINGER_BYTES {
            sink.clear();
            sink.reserve(4096);
            match io.read_buf(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    })
    .await;
}

/// The client's side for `url` (`ws://host[:port]/path?query`): sends the
/// upgrade request and checks the answer; `Ok` with the bytes that came
/// after the answer (the server's first frames).
pub(super) async fn connect(io: &mut Io, url: &str) -> Result<BytesMut, HandshakeError> {
    let (host, resource) = split_url(url);
    let key = generate_key();
    let request = format!(
        "GET {resource} HTTP/1.1\r\n\
         Host: {host}\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    io.write_all(request.as_bytes()).await?;
    io.flush().await?;
    let expected = derive_accept_key(key.as_bytes());
    let mut buf = BytesMut::new();
    let parsed = read_head(io, &mut buf, |bytes| {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(bytes) {
            Ok(httparse::Status::Partial) => None,
            Ok(httparse::Status::Complete(len)) => {
                Some(check_response(&response, &expected).map(|()| len))
            }
            Err(e) => Some(Err(format!("not an HTTP response ({e})"))),
        }
    })
    .await?;
    let len = parsed
        .unwrap_or_else(|| Err("a response head above 8 KiB".to_owned()))
        .map_err(HandshakeError::BadResponse)?;
    Ok(after_head(buf, len))
}

/// What came after a head of `len` bytes: usually nothing, and then no
/// buffer at all, so the session's first read waits without one.
fn after_head(mut buf: BytesMut, len: usize) -> BytesMut {
    buf.advance(len);
    if buf.is_empty() {
        BytesMut::new()
    } else {
        buf
    }
}

fn check_response(response: &httparse::Response<'_, '_>, expected: &str) -> Result<(), String> {
    if response.code != Some(101) {
        return Err(format!(
            "it answered {} {}",
            response.code.unwrap_or_default(),
            response.reason.unwrap_or_default()
        ));
    }
    let headers: &[httparse::Header<'_>] = response.headers;
    if !has_token(headers, "upgrade", "websocket") || !has_token(headers, "connection", "upgrade") {
        return Err("101 without Upgrade: websocket and Connection: Upgrade".to_owned());
    }
    let accept = headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-accept"))
        .map(|h| h.value.trim_ascii());
    if accept != Some(expected.as_bytes()) {
        return Err("a wrong Sec-WebSocket-Accept".to_owned());
    }
    Ok(())
}

/// The `Host` value and the request target of a `ws://` or `wss://` URL.
fn split_url(url: &str) -> (&str, Cow<'_, str>) {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.split('#').next().unwrap_or_default();
    let (authority, resource) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    // Credentials (`user:password@`) are not part of the host.
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if resource.starts_with('?') {
        // "ws://host?q" asks for "/?q".
        return (host, Cow::Owned(format!("/{resource}")));
    }
    (host, Cow::Borrowed(resource))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_base64_of_16_bytes() {
        assert!(is_valid_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25jZQ="));
        assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25jZR=="), "low bits set");
        assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25j*Q=="));
        assert!(!is_valid_key(b""));
    }

    #[test]
    fn paths_drop_query_and_authority() {
        assert_eq!(path_of("/ws?x=1"), "/ws");
        assert_eq!(path_of("http://host:80/ws?x"), "/ws");
        assert_eq!(path_of("http://host"), "/");
        assert_eq!(path_of("/"), "/");
    }

    #[test]
    fn urls_split_into_host_and_target() {
        assert_eq!(split_url("ws://h:1/p?q#f"), ("h:1", "/p?q".into()));
        assert_eq!(split_url("wss://u:pw@h"), ("h", "/".into()));
        assert_eq!(split_url("ws://[::1]:9/x"), ("[::1]:9", "/x".into()));
        assert_eq!(split_url("ws://h?q"), ("h", "/?q".into()));
    }
}
