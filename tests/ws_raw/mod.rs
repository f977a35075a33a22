//! A raw WebSocket peer for the WebSocket suites: hand-written handshakes
//! and frames over a plain `TcpStream`, so a test controls every byte
//! (masking, fragmentation, reserved bits, what it reads and when) and
//! holds no buffer of its own between calls.
#![allow(dead_code)]

use std::{net::SocketAddr, time::Duration};

use bytes::{Bytes, BytesMut};
use getty::{
    new_session_fn, BoxError, Error, EventListener, ListenerService, ServerBuilder, ServerHandle,
    Session,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_util::codec::BytesCodec;

use crate::common::Log;

/// Echoes every packet (one per message) and records "open",
/// "message:<utf8>", "error:<kind>:<display>", "close".
pub struct Echo {
    pub log: Log,
}

impl EventListener<BytesMut> for Echo {
    fn on_open(&mut self, _: &Session) -> Result<Option<Bytes>, BoxError> {
        self.log.push("open");
        Ok(None)
    }
    fn on_message(&mut self, _: &Session, pkg: BytesMut) -> Option<Bytes> {
        self.log
            .push(format!("message:{}", String::from_utf8_lossy(&pkg)));
        Some(pkg.freeze())
    }
    fn on_error(&mut self, _: &Session, error: &Error) {
        self.log.push(format!("error:{}:{error}", error.kind()));
    }
    fn on_close(&mut self, _: &Session) {
        self.log.push("close");
    }
}

/// A recording [`Echo`] server on 127.0.0.1 from `builder`, which names
/// the WebSocket path.
pub async fn recording_echo(builder: ServerBuilder) -> (ServerHandle, Log) {
    let server = builder.bind("127.0.0.1:0").await.expect("bind");
    let log = Log::default();
    let l = log.clone();
    let handle = server.serve(
        BytesCodec::new(),
        new_session_fn(move |_: &Session| {
            Ok::<_, BoxError>(ListenerService::new(Echo { log: l.clone() }))
        }),
    );
    (handle, log)
}

/// How long one raw read or handshake may take before the test fails.
pub const RAW_LIMIT: Duration = Duration::from_secs(5);

pub const CONTINUATION: u8 = 0x0;
pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;

/// The mask every raw client frame uses (any value will do).
pub const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A well-formed upgrade request for `path` (RFC 6455's sample key).
pub fn upgrade_request(addr: SocketAddr, path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\n\
         Host: {addr}\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// Writes `request` on a new connection and reads the response head (up
/// to the blank line, byte by byte so no frame is taken with it). Returns
/// the head and the stream; the head is empty when the server closed the
/// connection without answering.
pub async fn send_request(addr: SocketAddr, request: &[u8]) -> (String, TcpStream) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(request).await.expect("write request");
    let head = read_head(&mut s).await;
    (head, s)
}

/// Reads an HTTP response head byte by byte (at most 16 KiB); empty when
/// the connection ends first.
pub async fn read_head(s: &mut TcpStream) -> String {
    tokio::time::timeout(RAW_LIMIT, async {
        let mut got = Vec::new();
        while !got.ends_with(b"\r\n\r\n") && got.len() < 16 * 1024 {
            let mut byte = [0u8; 1];
            match s.read(&mut byte).await {
                Ok(1) => got.push(byte[0]),
                _ => break,
            }
        }
        String::from_utf8_lossy(&got).into_owned()
    })
    .await
    .expect("a response head (or the end of the connection) within the limit")
}

/// The status code of a response head, if it has one.
pub fn status(head: &str) -> Option<u16> {
    let line = head.lines().next()?;
    let mut parts = line.split(' ');
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    parts.next()?.parse().ok()
}

/// The value of header `name` in a response head (case-insensitive name).
pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// A completed raw WebSocket handshake for `path`.
pub async fn connect(addr: SocketAddr, path: &str) -> TcpStream {
    let (head, s) = send_request(addr, upgrade_request(addr, path).as_bytes()).await;
    assert_eq!(status(&head), Some(101), "handshake response: {head:?}");
    s
}

/// One frame as a client sends it: masked with [`MASK`].
pub fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame_with(fin, 0, opcode, Some(MASK), payload)
}

/// One frame with every bit chosen: `rsv` is the three reserved bits in
/// place (0x70 for all), `mask` `None` for an unmasked frame.
pub fn frame_with(
    fin: bool,
    rsv: u8,
    opcode: u8,
    mask: Option<[u8; 4]>,
    payload: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(if fin { 0x80 } else { 0 } | rsv | opcode);
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    out.extend_from_slice(&length_bytes(mask_bit, payload.len() as u64));
    if let Some(mask) = mask {
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// Only the header of a masked client frame claiming `len` payload bytes.
pub fn client_header(fin: bool, opcode: u8, len: u64) -> Vec<u8> {
    let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
    out.extend_from_slice(&length_bytes(0x80, len));
    out.extend_from_slice(&MASK);
    out
}

fn length_bytes(mask_bit: u8, len: u64) -> Vec<u8> {
    if len < 126 {
        vec![mask_bit | len as u8]
    } else if len <= u64::from(u16::MAX) {
        let mut v = vec![mask_bit | 126];
        v.extend_from_slice(&(len as u16).to_be_bytes());
        v
    } else {
        let mut v = vec![mask_bit | 127];
        v.extend_from_slice(&len.to_be_bytes());
        v
    }
}

/// A masked Close frame with `code`.
pub fn client_close(code: u16) -> Vec<u8> {
    client_frame(true, CLOSE, &code.to_be_bytes())
}

/// A frame the server sent.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A large payload would drown the failure message: show its start.
        let shown = &self.payload[..self.payload.len().min(32)];
        f.debug_struct("Frame")
            .field("fin", &self.fin)
            .field("opcode", &self.opcode)
            .field("len", &self.payload.len())
            .field("payload", &String::from_utf8_lossy(shown))
            .finish()
    }
}

impl Frame {
    /// The code of a Close frame (`None` for an empty one).
    pub fn close_code(&self) -> Option<u16> {
        assert_eq!(self.opcode, CLOSE, "not a Close frame: {self:?}");
        (self.payload.len() >= 2).then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// Reads one server frame (unmasked, at most `max` payload bytes); `None`
/// at the end of the stream or on a reset.
pub async fn read_frame(s: &mut TcpStream, max: usize) -> Option<Frame> {
    tokio::time::timeout(RAW_LIMIT, async {
        let mut header = [0u8; 2];
        s.read_exact(&mut header).await.ok()?;
        assert_eq!(header[1] & 0x80, 0, "a server frame must not be masked");
        let len = match header[1] & 0x7f {
            126 => u64::from(s.read_u16().await.ok()?),
            127 => s.read_u64().await.ok()?,
            n => u64::from(n),
        };
        let len = usize::try_from(len).expect("length fits usize");
        assert!(
            len <= max,
            "a frame of {len} bytes (at most {max} expected)"
        );
        let mut payload = vec![0u8; len];
        s.read_exact(&mut payload).await.ok()?;
        Some(Frame {
            fin: header[0] & 0x80 != 0,
            opcode: header[0] & 0x0f,
            payload,
        })
    })
    .await
    .expect("a frame (or the end of the stream) within the limit")
}

/// Reads frames until a Close frame, skipping pings and pongs; panics on a
/// data frame or the end of the stream.
pub async fn read_close(s: &mut TcpStream) -> Frame {
    loop {
        match read_frame(s, 1 << 20).await {
            Some(f) if f.opcode == PING || f.opcode == PONG => continue,
            Some(f) if f.opcode == CLOSE => return f,
            other => panic!("expected a Close frame, got {other:?}"),
        }
    }
}

/// Reads frames until the next data frame, skipping pings and pongs.
pub async fn read_data(s: &mut TcpStream, max: usize) -> Frame {
    loop {
        match read_frame(s, max).await {
            Some(f) if f.opcode == PING || f.opcode == PONG => continue,
            Some(f) => return f,
            None => panic!("the connection ended before a data frame"),
        }
    }
}

/// How the connection ended, read to its end within `limit`.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// An orderly FIN.
    Eof,
    /// The server reset the connection.
    Reset,
    /// Still open after `limit`.
    Open,
}

/// Reads and discards until the connection ends or `limit` passes.
pub async fn read_to_end(s: &mut TcpStream, limit: Duration) -> End {
    let mut buf = vec![0u8; 16 * 1024];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return End::Open,
            Ok(Ok(0)) => return End::Eof,
            Ok(Ok(_)) => continue,
            Ok(Err(_)) => return End::Reset,
        }
    }
}

/// Runs `python3 -c script args..`, killing it after `limit`; returns its
/// exit status, stdout and stderr. Needs python3 with the `websockets`
/// package (`python3 -m pip install websockets`).
pub fn run_python(script: &str, args: &[&str], limit: Duration) -> (bool, String, String) {
    use std::process::{Command, Stdio};
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run python3 ({e}): this test needs python3 with the `websockets` \
                 package (python3 -m pip install websockets)"
            )
        });
    let deadline = std::time::Instant::now() + limit;
    while child.try_wait().expect("wait for python3").is_none() {
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("python3 output");
            panic!(
                "python3 did not finish within {limit:?}; stdout {:?}, stderr {:?}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("python3 output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
