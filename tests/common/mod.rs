//! Helpers shared by the integration tests: servers on 127.0.0.1 port 0,
//! raw framed I/O for hostile peers, and bounded waiting.
#![allow(dead_code)]

use std::{
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use getty::{
    codec::LengthCodec, new_session_fn, BoxError, Error, EventListener, ListenerService, Server,
    ServerHandle, Session, SessionConfig,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Everything a listener saw, in order: "open", "message:<utf8>", "tick",
/// "error:<display>", "close".
#[derive(Clone, Default)]
pub struct Log(pub Arc<Mutex<Vec<String>>>);

impl Log {
    pub fn push(&self, s: impl Into<String>) {
        self.0.lock().unwrap().push(s.into());
    }
    pub fn events(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
    pub fn count(&self, prefix: &str) -> usize {
        self.events()
            .iter()
            .filter(|e| e.starts_with(prefix))
            .count()
    }
}

/// An echo listener that records its events.
pub struct Recorder {
    pub log: Log,
}

impl EventListener<Bytes> for Recorder {
    fn on_open(&mut self, _: &Session) -> Result<Option<Bytes>, BoxError> {
        self.log.push("open");
        Ok(None)
    }
    fn on_message(&mut self, _: &Session, pkg: Bytes) -> Option<Bytes> {
        self.log
            .push(format!("message:{}", String::from_utf8_lossy(&pkg)));
        Some(pkg)
    }
    fn on_cron(&mut self, _: &Session) {
        self.log.push("tick");
    }
    fn on_error(&mut self, _: &Session, error: &Error) {
        self.log.push(format!("error:{error}"));
    }
    fn on_close(&mut self, _: &Session) {
        self.log.push("close");
    }
}

/// A length-prefixed echo server whose sessions all record into one log.
pub async fn recording_server(config: SessionConfig) -> (ServerHandle, Log) {
    let server = Server::builder()
        .session_config(config)
        .bind("127.0.0.1:0")
        .await
        .expect("bind");
    serve_recording(server)
}

/// Serves a recording length-prefixed echo on a bound server (any transport).
pub fn serve_recording(server: Server) -> (ServerHandle, Log) {
    let log = Log::default();
    let l = log.clone();
    let handle = server.serve(
        LengthCodec::new(),
        new_session_fn(move |_: &Session| {
            Ok::<_, BoxError>(ListenerService::new(Recorder { log: l.clone() }))
        }),
    );
    (handle, log)
}

/// The client side: records everything, answers nothing.
pub struct ClientSide {
    pub log: Log,
}

impl EventListener<Bytes> for ClientSide {
    fn on_open(&mut self, _: &Session) -> Result<Option<Bytes>, BoxError> {
        self.log.push("open");
        Ok(None)
    }
    fn on_message(&mut self, _: &Session, pkg: Bytes) -> Option<Bytes> {
        self.log
            .push(format!("message:{}", String::from_utf8_lossy(&pkg)));
        None
    }
    fn on_error(&mut self, _: &Session, error: &Error) {
        self.log.push(format!("error:{error}"));
    }
    fn on_close(&mut self, _: &Session) {
        self.log.push("close");
    }
}

/// One 4-byte big-endian length-prefixed frame.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(payload);
    v
}

/// Writes one frame on a raw socket.
pub async fn write_frame(s: &mut TcpStream, payload: &[u8]) {
    s.write_all(&frame(payload)).await.expect("write frame");
}

/// Reads one frame from a raw socket (5 s limit).
pub async fn read_frame(s: &mut TcpStream) -> Vec<u8> {
    within(Duration::from_secs(5), async {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).await.expect("read length");
        let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut buf).await.expect("read payload");
        buf
    })
    .await
}

/// Awaits `fut`, failing the test if it takes longer than `limit`.
pub async fn within<T>(limit: Duration, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or_else(|_| panic!("did not finish within {limit:?}"))
}

/// Polls `cond` every 5 ms until it holds, failing the test after `limit`.
pub async fn eventually(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !cond() {
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {limit:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
