//! Regression tests for the fixes of a code review, over real sockets on
//! 127.0.0.1: each test fails on the behaviour the review found and passes
//! on the fixed one.

mod common;

use std::{
    convert::Infallible,
    future::{ready, Ready},
    io::{Read, Write},
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};
use common::*;
use getty::{
    codec::{LengthCodec, MakeCodec, ReadWriter, ReadWriterCodec},
    new_session_fn, Addr, BoxError, EndpointKind, Error, Event, EventListener, ListenerService,
    Request, Server, ServerHandle, Session, SessionConfig,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_util::codec::Decoder;
use tower::{service_fn, Service};

const LIMIT: Duration = Duration::from_secs(5);

// ----- helpers ----------------------------------------------------------------

/// An echo listener recording "open", "message:<utf8>", "tick",
/// "error:<kind>: <display>" and "close".
struct Watch {
    log: Log,
}

impl EventListener<Bytes> for Watch {
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
        self.log.push(format!("error:{}: {error}", error.kind()));
    }
    fn on_close(&mut self, _: &Session) {
        self.log.push("close");
    }
}

/// An echo server with `codec` whose sessions all record into one log.
async fn watched_server<MC>(config: SessionConfig, codec: MC) -> (ServerHandle, Log)
where
    MC: MakeCodec<Bytes>,
    MC::Codec: Decoder<Item = Bytes>,
{
    let log = Log::default();
    let server = bind(config).await;
    let l = log.clone();
    let handle = server.serve(
        codec,
        new_session_fn(move |_: &Session| {
            Ok::<_, BoxError>(ListenerService::new(Watch { log: l.clone() }))
        }),
    );
    (handle, log)
}

async fn bind(config: SessionConfig) -> Server {
    Server::builder()
        .session_config(config)
        .bind("127.0.0.1:0")
        .await
        .expect("bind")
}

/// The one live session of a server.
async fn only_session(server: &ServerHandle) -> Session {
    eventually(LIMIT, "one session is registered", || {
        server.session_count() == 1
    })
    .await;
    server.sessions().sessions().pop().expect("a session")
}

/// Asserts the server closed the connection: the next read is EOF.
async fn expect_eof(s: &mut TcpStream) {
    let mut buf = [0u8; 64];
    match within(LIMIT, s.read(&mut buf)).await {
        Ok(0) => {}
        Ok(n) => panic!("expected EOF, got {n} bytes: {:?}", &buf[..n]),
        Err(e) => panic!("expected EOF, got error {e}"),
    }
}

async fn echo(s: &mut TcpStream, payload: &[u8]) {
    write_frame(s, payload).await;
    assert_eq!(read_frame(s).await, payload);
}

/// Every frame in one write, so the server gets them in one read.
async fn write_frames(s: &mut TcpStream, payloads: &[&str]) {
    let mut wire = Vec::new();
    for p in payloads {
        wire.extend_from_slice(&frame(p.as_bytes()));
    }
    s.write_all(&wire).await.expect("write frames");
}

/// The next frame, or `None` when the server closed the connection.
async fn next_frame(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await.ok()?;
    let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).await.ok()?;
    Some(buf)
}

fn text(pkg: &[u8]) -> String {
    String::from_utf8_lossy(pkg).into_owned()
}

// ----- 1. output during a flood ---------------------------------------------

/// How long the peer floods at most.
const FLOOD: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_is_written_while_the_peer_keeps_sending() {
    let server = bind(SessionConfig::default()).await;
    // Never replies: the only output is the test's `send`.
    let server = server.serve(
        LengthCodec::new(),
        new_session_fn(|_: &Session| {
            Ok::<_, BoxError>(service_fn(|_: Request<Bytes>| async {
                Ok::<Option<Bytes>, Infallible>(None)
            }))
        }),
    );

    let client = std::net::TcpStream::connect(server.local_addr()).expect("connect");
    client.set_nodelay(true).unwrap();
    // A server that stops reading ends the flood instead of hanging it.
    client
        .set_write_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let mut reading = client.try_clone().unwrap();
    reading
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let acked = Arc::new(AtomicBool::new(false));

    // The reader: when the first bytes arrive, and what they are.
    let a = acked.clone();
    let reader = std::thread::spawn(move || {
        let mut len = [0u8; 4];
        reading.read_exact(&mut len).expect("read the ack's length");
        let arrived = Instant::now();
        a.store(true, Ordering::SeqCst);
        let mut payload = vec![0u8; u32::from_be_bytes(len) as usize];
        reading.read_exact(&mut payload).expect("read the ack");
        (arrived, payload)
    });

    // The flood: 64 KiB writes of empty frames (the most work per byte for
    // the server), until the ack arrives or FLOOD is over.
    let a = acked.clone();
    let written = Arc::new(AtomicU64::new(0));
    let w = written.clone();
    let mut flooding = client;
    let writer = std::thread::spawn(move || {
        let batch: Vec<u8> = (0..16 * 1024).flat_map(|_| frame(b"")).collect();
        let started = Instant::now();
        let stopped_by_ack = loop {
            if a.load(Ordering::SeqCst) {
                break true;
            }
            if started.elapsed() >= FLOOD {
                break false;
            }
            if let Err(e) = flooding.write_all(&batch) {
                panic!("the flood failed after {:?}: {e}", started.elapsed());
            }
            w.fetch_add(batch.len() as u64, Ordering::SeqCst);
        };
        (stopped_by_ack, started.elapsed())
    });

    let session = only_session(&server).await;
    // The flood is under way and the server cannot keep up: it has read
    // 1 MiB and at least 1 MiB more waits in the socket buffers.
    const MIB: u64 = 1024 * 1024;
    eventually(LIMIT, "the server is busy and behind the flood", || {
        let read = session.stats().bytes_in;
        read >= MIB && written.load(Ordering::SeqCst) >= read + MIB
    })
    .await;
    assert!(!acked.load(Ordering::SeqCst), "bytes before the ack");
    let sent = Instant::now();
    within(LIMIT, session.send(Bytes::from_static(b"ack")))
        .await
        .expect("send the ack");

    let (arrived, payload) = within(LIMIT, tokio::task::spawn_blocking(move || reader.join()))
        .await
        .unwrap()
        .expect("the reader thread");
    let (stopped_by_ack, flooded) =
        within(LIMIT, tokio::task::spawn_blocking(move || writer.join()))
            .await
            .unwrap()
            .expect("the flood thread");
    assert_eq!(payload, b"ack");
    let delay = arrived.duration_since(sent);
    assert!(
        stopped_by_ack,
        "the ack was held back until the flood stopped after {flooded:?} (it arrived {delay:?} after it was sent)"
    );
    assert!(
        delay < Duration::from_secs(1),
        "the ack took {delay:?} while the peer kept sending"
    );
    drop(session);
    within(LIMIT, server.shutdown(Duration::from_secs(1))).await;
}

// ----- 2. a panicking codec --------------------------------------------------

/// A 4-byte length-prefixed package handler with the classic bug: it slices
/// the header without checking that 4 bytes are there.
struct Careless;

impl ReadWriter for Careless {
    type Packet = Bytes;

    fn read(&self, _: &Session, data: &[u8]) -> Result<Option<(Bytes, usize)>, BoxError> {
        let header: [u8; 4] = data[..4].try_into().unwrap();
        let len = u32::from_be_bytes(header) as usize;
        if data.len() < 4 + len {
            return Ok(None);
        }
        Ok(Some((Bytes::copy_from_slice(&data[4..4 + len]), 4 + len)))
    }

    fn write(&self, _: &Session, pkg: Bytes) -> Result<Bytes, BoxError> {
        Ok(frame(&pkg).into())
    }
}

#[tokio::test]
async fn a_panicking_codec_fails_its_session_and_the_server_carries_on() {
    let log = Log::default();
    let callbacks = Arc::new(AtomicUsize::new(0));
    let server = bind(SessionConfig::default()).await;
    let (l, cb) = (log.clone(), callbacks.clone());
    let server = server.serve(
        ReadWriterCodec::new(Careless),
        new_session_fn(move |s: &Session| {
            let cb = cb.clone();
            s.add_close_callback("test", "count", move || {
                cb.fetch_add(1, Ordering::SeqCst);
            });
            Ok::<_, BoxError>(ListenerService::new(Watch { log: l.clone() }))
        }),
    );

    let mut victim = TcpStream::connect(server.local_addr()).await.unwrap();
    echo(&mut victim, b"fine").await;
    // One byte: the handler slices 4 of it and panics.
    victim.write_all(&[0]).await.unwrap();
    expect_eof(&mut victim).await;
    eventually(LIMIT, "the close callback ran", || {
        callbacks.load(Ordering::SeqCst) >= 1
    })
    .await;
    let events = log.events();
    assert_eq!(events.len(), 4, "{events:?}");
    assert_eq!(events[..2], ["open", "message:fine"], "{events:?}");
    assert!(
        events[2].starts_with("error:codec: ") && events[2].contains("codec panicked"),
        "not a contained codec panic: {:?}",
        events[2]
    );
    assert_eq!(events[3], "close", "{events:?}");
    eventually(LIMIT, "the registry is empty", || {
        server.session_count() == 0
    })
    .await;

    // A new connection is served.
    let mut later = TcpStream::connect(server.local_addr()).await.unwrap();
    echo(&mut later, b"hello").await;
    assert_eq!(log.count("message:hello"), 1);
    drop(later);
    eventually(LIMIT, "the later session closes", || {
        log.count("close") == 2
    })
    .await;
    within(LIMIT, server.shutdown(Duration::from_secs(1))).await;
    assert_eq!(
        callbacks.load(Ordering::SeqCst),
        2,
        "each session's close callback runs exactly once"
    );
    assert_eq!(log.count("error"), 1, "{:?}", log.events());
}

/// A length-prefix codec whose encoder writes the header of a `boom`
/// packet and then panics: the classic half-written frame.
#[derive(Clone, Default)]
struct BoomOnEncode(LengthCodec);

impl Decoder for BoomOnEncode {
    type Item = Bytes;
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, std::io::Error> {
        self.0.decode(src).map_err(std::io::Error::other)
    }
}

impl tokio_util::codec::Encoder<Bytes> for BoomOnEncode {
    type Error = std::io::Error;

    fn encode(&mut self, pkg: Bytes, dst: &mut BytesMut) -> Result<(), std::io::Error> {
        if &pkg[..] == b"boom" {
            dst.extend_from_slice(&[0, 0, 0, 4]);
            panic!("boom in encode");
        }
        self.0.encode(pkg, dst).map_err(std::io::Error::other)
    }
}

/// When a recording echo's future answers a message.
#[derive(Debug, Clone, Copy)]
enum Answer {
    /// On its first poll.
    AtOnce,
    /// On its second poll, so the response is written from the pipeline
    /// rather than as soon as the call returned.
    NextPoll,
    /// After a sleep: a slow handler.
    After(Duration),
}

/// An echo service recording "open", "message:<utf8>", "error:<kind>:
/// <display>" and "close", answering messages as `answer` says.
fn recording_echo(
    log: Log,
    answer: Answer,
) -> impl Service<Request<Bytes>, Response = Option<Bytes>, Error = Infallible, Future: Send>
       + Send
       + 'static {
    service_fn(move |req: Request<Bytes>| {
        let log = log.clone();
        async move {
            Ok(match req.event {
                Event::Open => {
                    log.push("open");
                    None
                }
                Event::Message(pkg) => {
                    match answer {
                        Answer::AtOnce => {}
                        Answer::NextPoll => tokio::task::yield_now().await,
                        Answer::After(delay) => tokio::time::sleep(delay).await,
                    }
                    log.push(format!("message:{}", text(&pkg)));
                    Some(pkg)
                }
                Event::Error(e) => {
                    log.push(format!("error:{}: {e}", e.kind()));
                    None
                }
                Event::Close => {
                    log.push("close");
                    None
                }
                _ => None,
            })
        }
    })
}

/// A panicking encoder fails its session with a codec error, and none of
/// the half-written frame reaches the peer, whether the response was
/// written as soon as the call returned or later from the pipeline.
async fn a_panicking_encoder_is_contained(answer: Answer) {
    let log = Log::default();
    let server = bind(SessionConfig::default()).await;
    let l = log.clone();
    let server = server.serve(
        BoomOnEncode::default(),
        new_session_fn(move |_: &Session| Ok::<_, BoxError>(recording_echo(l.clone(), answer))),
    );
    // EOF at once: the 4 header bytes written before the panic are gone.
    let events = boom_closes_only_its_session(server, &log).await;
    assert_eq!(events.len(), 5, "{events:?}");
    assert_eq!(
        events[..3],
        ["open", "message:fine", "message:boom"],
        "{events:?}"
    );
    assert!(
        events[3].starts_with("error:codec: ") && events[3].contains("codec panicked"),
        "not a contained encoder panic: {:?}",
        events[3]
    );
}

/// Sends `fine` (echoed) and then `boom` on one connection and expects the
/// server to close it with nothing more written; then checks that a new
/// connection is served, and shuts the server down. Returns the closed
/// session's events.
async fn boom_closes_only_its_session(server: ServerHandle, log: &Log) -> Vec<String> {
    let mut victim = TcpStream::connect(server.local_addr()).await.unwrap();
    echo(&mut victim, b"fine").await;
    write_frame(&mut victim, b"boom").await;
    expect_eof(&mut victim).await;
    eventually(LIMIT, "the session closed", || log.count("close") == 1).await;
    let events = log.events();

    let mut later_peer = TcpStream::connect(server.local_addr()).await.unwrap();
    echo(&mut later_peer, b"hello").await;
    drop(later_peer);
    within(LIMIT, server.shutdown(Duration::from_secs(1))).await;
    events
}

#[tokio::test]
async fn an_encoder_panicking_on_a_response_answered_at_once_writes_none_of_it() {
    a_panicking_encoder_is_contained(Answer::AtOnce).await;
}

#[tokio::test]
async fn an_encoder_panicking_on_a_response_answered_later_writes_none_of_it() {
    a_panicking_encoder_is_contained(Answer::NextPoll).await;
}

/// A response future that panics on its very first poll (an `async` block
/// with no `.await` before the panic) fails only its own session.
#[tokio::test]
async fn a_future_panicking_on_its_first_poll_fails_only_its_session() {
    a_future_panicking_on_its_first_poll_is_contained(SessionConfig::default()).await;
}

/// The same with several calls in flight in completion order, where the
/// call takes the inline slot only when it is free.
#[tokio::test]
async fn a_future_panicking_on_its_first_poll_with_unordered_calls_fails_only_its_session() {
    let config = SessionConfig::default()
        .max_in_flight(4)
        .ordered_responses(false);
    a_future_panicking_on_its_first_poll_is_contained(config).await;
}

async fn a_future_panicking_on_its_first_poll_is_contained(config: SessionConfig) {
    let log = Log::default();
    let server = bind(config).await;
    let l = log.clone();
    let server = server.serve(
        LengthCodec::new(),
        new_session_fn(move |_: &Session| {
            let mut echo = recording_echo(l.clone(), Answer::AtOnce);
            Ok::<_, BoxError>(service_fn(move |req: Request<Bytes>| {
                let boom = matches!(&req.event, Event::Message(p) if &p[..] == b"boom");
                let answer = echo.call(req);
                async move {
                    if boom {
                        panic!("boom on the first poll");
                    }
                    answer.await
                }
            }))
        }),
    );
    let events = boom_closes_only_its_session(server, &log).await;
    assert_eq!(events.len(), 4, "{events:?}");
    assert_eq!(events[..2], ["open", "message:fine"], "{events:?}");
    assert!(
        events[2].starts_with("error:handler_panic: ")
            && events[2].contains("boom on the first poll"),
        "not a contained handler panic: {:?}",
        events[2]
    );
    assert_eq!(events[3], "close", "{events:?}");
}

// ----- 3. a panicking new-session callback ---------------------------------

#[tokio::test]
async fn a_panicking_new_session_callback_refuses_only_that_connection() {
    let log = Log::default();
    let made = Arc::new(AtomicUsize::new(0));
    let server = bind(SessionConfig::default()).await;
    let (l, m) = (log.clone(), made.clone());
    let server = server.serve(
        LengthCodec::new(),
        new_session_fn(move |_: &Session| {
            if m.fetch_add(1, Ordering::SeqCst) == 0 {
                panic!("the new-session callback panics for the first connection");
            }
            Ok::<_, BoxError>(ListenerService::new(Watch { log: l.clone() }))
        }),
    );

    let mut first = TcpStream::connect(server.local_addr()).await.unwrap();
    expect_eof(&mut first).await;
    assert_eq!(made.load(Ordering::SeqCst), 1);
    assert!(log.events().is_empty(), "{:?}", log.events());
    eventually(LIMIT, "the refused session is gone", || {
        server.session_count() == 0
    })
    .await;

    let mut second = TcpStream::connect(server.local_addr())
        .await
        .expect("the server still accepts");
    echo(&mut second, b"hello").await;
    echo(&mut second, b"again").await;
    assert_eq!(made.load(Ordering::SeqCst), 2);
    assert_eq!(log.events(), ["open", "message:hello", "message:again"]);
    within(LIMIT, server.shutdown(Duration::from_secs(1))).await;
}

// ----- 4. read timeout and a slow handler -----------------------------------

#[tokio::test]
async fn read_timeout_does_not_fire_while_a_slow_handler_holds_back_reading() {
    let timeout = Duration::from_millis(300);
    let log = Log::default();
    let server = bind(SessionConfig::default().read_timeout(Some(timeout))).await;
    let l = log.clone();
    let server = server.serve(
        LengthCodec::new(),
        new_session_fn(move |_: &Session| {
            let slow = Answer::After(Duration::from_millis(500));
            Ok::<_, BoxError>(recording_echo(l.clone(), slow))
        }),
    );

    let mut c = TcpStream::connect(server.local_addr()).await.unwrap();
    let payloads = ["1", "2", "3", "4", "5", "6"];
    // A frame every 100 ms: the peer is never silent for the read timeout;
    // only the handler is slow.
    let mut pace = tokio::time::interval(Duration::from_millis(100));
    for p in payloads {
        pace.tick().await;
        write_frame(&mut c, p.as_bytes()).await;
    }
    for p in payloads {
        let echoed = within(LIMIT, next_frame(&mut c)).await;
        assert_eq!(
            echoed.as_deref().map(text),
            Some(p.to_string()),
            "events so far: {:?}",
            log.events()
        );
    }
    // Every message was handled, in order, with no error between them.
    let events = log.events();
    let expected: Vec<String> = std::iter::once("open".to_string())
        .chain(payloads.iter().map(|p| format!("message:{p}")))
        .collect();
    assert_eq!(events[..expected.len()], expected[..], "{events:?}");

    // The read timeout is still on: now that the peer is silent it fires.
    eventually(LIMIT, "the idle peer's read timeout", || {
        log.count("close") == 1
    })
    .await;
    let events = log.events();
    assert_eq!(events.len(), expected.len() + 2, "{events:?}");
    assert!(
        events[expected.len()].starts_with("error:read_timeout: "),
        "{events:?}"
    );
    assert_eq!(events[expected.len() + 1], "close", "{events:?}");
    expect_eof(&mut c).await;
    within(LIMIT, server.shutdown(Duration::from_secs(1))).await;
}

// ----- 5. a handler's sends and its response --------------------------------

#[tokio::test]
async fn a_handlers_send_is_written_before_its_response() {
    let server = bind(SessionConfig::default()).await;
    let server = server.serve(
        LengthCodec::new(),
        new_session_fn(|_: &Session| {
            Ok::<_, BoxError>(service_fn(|req: Request<Bytes>| async move {
                match req.event {
                    Event::Open => {
                        req.session
                            .send(Bytes::from_static(b"sent on open"))
                            .await?;
                        Ok::<_, BoxError>(Some(Bytes::from_static(b"greeting")))
                    }
                    Event::Message(pkg) => {
                        let p = text(&pkg);
                        req.session.send(Bytes::from(format!("1st:{p}"))).await?;
                        Ok(Some(Bytes::from(format!("2nd:{p}"))))
                    }
                    _ => Ok(None),
                }
            }))
        }),
    );

    let mut c = TcpStream::connect(server.local_addr()).await.unwrap();
    assert_eq!(text(&read_frame(&mut c).await), "sent on open");
    assert_eq!(text(&read_frame(&mut c).await), "greeting");

    let payloads = ["a", "b", "c", "d", "e", "f", "g", "h"];
    write_frames(&mut c, &payloads).await;
    let mut got = Vec::new();
    for _ in 0..2 * payloads.len() {
        got.push(text(&read_frame(&mut c).await));
    }
    let expected: Vec<String> = payloads
        .iter()
        .flat_map(|p| [format!("1st:{p}"), format!("2nd:{p}")])
        .collect();
    assert_eq!(got, expected);
    // One packet at a time too.
    for p in ["x", "y"] {
        write_frame(&mut c, p.as_bytes()).await;
        assert_eq!(text(&read_frame(&mut c).await), format!("1st:{p}"));
        assert_eq!(text(&read_frame(&mut c).await), format!("2nd:{p}"));
    }
    drop(c);
    within(LIMIT, server.shutdown(Duration::from_secs(1))).await;
}

// ----- 6. a huge declared length with no maximum ---------------------------

/// One frame with an 8-byte big-endian length.
fn frame8(payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u64).to_be_bytes().to_vec();
    v.extend_from_slice(payload);
    v
}

async fn read_frame8(s: &mut TcpStream) -> Vec<u8> {
    within(LIMIT, async {
        let mut len = [0u8; 8];
        s.read_exact(&mut len).await.expect("read length");
        let mut buf = vec![0u8; u64::from_be_bytes(len) as usize];
        s.read_exact(&mut buf).await.expect("read payload");
        buf
    })
    .await
}

fn unbounded_codec() -> LengthCodec {
    LengthCodec::builder()
        .length_field_bytes(8)
        .max_packet_len(usize::MAX)
        .new_codec()
}

#[tokio::test]
async fn a_huge_declared_length_with_an_unbounded_max_does_not_allocate_it() {
    const MIB: usize = 1024 * 1024;

    // The codec alone: 64 TiB declared, nothing of it there.
    let mut codec = unbounded_codec();
    let mut buf = BytesMut::from(&(1u64 << 46).to_be_bytes()[..]);
    assert!(matches!(codec.decode(&mut buf), Ok(None)));
    assert!(
        buf.capacity() < MIB,
        "a bare header reserved {} bytes",
        buf.capacity()
    );
    // As the payload trickles in, the buffer grows with it, not with the
    // declared length.
    for _ in 0..4 {
        buf.extend_from_slice(&[7u8; 64 * 1024]);
        assert!(matches!(codec.decode(&mut buf), Ok(None)));
    }
    assert!(
        buf.capacity() < 2 * MIB,
        "256 KiB of payload reserved {} bytes",
        buf.capacity()
    );

    // u64::MAX declared: no overflow, no panic.
    let mut codec = unbounded_codec();
    let mut buf = BytesMut::from(&u64::MAX.to_be_bytes()[..]);
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        codec.decode(&mut buf).map(|p| p.is_some())
    }));
    match decoded {
        Ok(Ok(false)) | Ok(Err(_)) => {}
        Ok(Ok(true)) => panic!("a packet decoded from a bare header"),
        Err(_) => panic!("decoding a u64::MAX length panicked"),
    }
    assert!(buf.capacity() < MIB, "reserved {} bytes", buf.capacity());

    // Over a socket: a session with no maximum survives both headers.
    let (server, log) = watched_server(
        SessionConfig::default().max_packet_len(usize::MAX),
        unbounded_codec(),
    )
    .await;
    for (round, declared) in [1u64 << 46, u64::MAX].into_iter().enumerate() {
        let mut c = TcpStream::connect(server.local_addr()).await.unwrap();
        let session = only_session(&server).await;
        c.write_all(&declared.to_be_bytes()).await.unwrap();
        // This runtime has one thread: once the test runs again the driver
        // has read and decoded the header.
        eventually(LIMIT, "the server read the header", || {
            session.stats().bytes_in >= 8
        })
        .await;
        assert!(
            !session.is_closed(),
            "the session failed on a header declaring {declared}: {:?}",
            log.events()
        );
        // The client gives up on the packet: the session ends cleanly.
        drop(c);
        within(LIMIT, session.finished()).await;
        eventually(LIMIT, "the session closes", || {
            log.count("close") == round + 1
        })
        .await;
        eventually(LIMIT, "the registry is empty", || {
            server.session_count() == 0
        })
        .await;
    }
    let events = log.events();
    assert_eq!(events.len(), 6, "{events:?}");
    for round in events.chunks(3) {
        assert_eq!(round[0], "open", "{events:?}");
        assert!(round[1].starts_with("error:unexpected_eof"), "{events:?}");
        assert_eq!(round[2], "close", "{events:?}");
    }

    // The server keeps serving.
    let mut c = TcpStream::connect(server.local_addr()).await.unwrap();
    c.write_all(&frame8(b"still here")).await.unwrap();
    assert_eq!(read_frame8(&mut c).await, b"still here");
    drop(c);
    within(LIMIT, server.shutdown(Duration::from_secs(1))).await;
}

// ----- 7. a live cron period change ------------------------------------------

#[tokio::test]
async fn a_live_cron_period_change_takes_effect_at_once() {
    let (server, log) =
        recording_server(SessionConfig::default().cron_period(Some(Duration::from_secs(3600))))
            .await;
    let mut c = TcpStream::connect(server.local_addr()).await.unwrap();
    // Open, a message, and an idle turn since: the hour-long tick is armed.
    echo(&mut c, b"up").await;
    let session = only_session(&server).await;
    assert_eq!(session.cron_period(), Some(Duration::from_secs(3600)));
    assert_eq!(log.count("tick"), 0);

    let period = Duration::from_millis(50);
    session.set_cron_period(Some(period));
    assert_eq!(session.cron_period(), Some(period));
    eventually(Duration::from_secs(1), "ticks at the new period", || {
        log.count("tick") >= 3
    })
    .await;
    // The session is otherwise unaffected.
    echo(&mut c, b"still up").await;
    drop(c);
    within(LIMIT, server.shutdown(Duration::from_secs(1))).await;
}

// ----- 8. nothing after a failure --------------------------------------------

#[tokio::test]
async fn no_packet_is_delivered_after_a_failure() {
    let log = Log::default();
    let server = bind(SessionConfig::default()).await;
    let l = log.clone();
    let server = server.serve(
        LengthCodec::new(),
        new_session_fn(move |_: &Session| {
            let log = l.clone();
            Ok::<_, BoxError>(service_fn(move |req: Request<Bytes>| {
                let log = log.clone();
                async move {
                    match req.event {
                        Event::Open => log.push("open"),
                        Event::Message(pkg) => {
                            log.push(format!("message:{}", text(&pkg)));
                            if &pkg[..] == b"bad" {
                                return Err::<Option<Bytes>, BoxError>("refused: bad".into());
                            }
                            return Ok(Some(pkg));
                        }
                        Event::Error(e) => log.push(format!("error:{}", e.kind())),
                        Event::Close => log.push("close"),
                        _ => {}
                    }
                    Ok(None)
                }
            }))
        }),
    );

    let mut c = TcpStream::connect(server.local_addr()).await.unwrap();
    write_frames(&mut c, &["ok1", "bad", "ok2", "ok3"]).await;
    assert_eq!(read_frame(&mut c).await, b"ok1");
    // Nothing more is answered: the connection ends.
    expect_eof(&mut c).await;
    eventually(LIMIT, "close", || log.count("close") == 1).await;
    within(LIMIT, server.shutdown(Duration::from_secs(1))).await;
    assert_eq!(
        log.events(),
        [
            "open",
            "message:ok1",
            "message:bad",
            "error:handler",
            "close"
        ]
    );
}

// ----- 9. shutdown and a make-service that is never ready -------------------

/// A make-service that is never ready.
struct NeverReady {
    polled: Arc<AtomicUsize>,
}

impl Service<Session> for NeverReady {
    type Response = ListenerService<Recorder>;
    type Error = BoxError;
    type Future = Ready<Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.polled.fetch_add(1, Ordering::SeqCst);
        Poll::Pending
    }

    fn call(&mut self, _: Session) -> Self::Future {
        ready(Err("called although never ready".into()))
    }
}

#[tokio::test]
async fn shutdown_is_not_stuck_on_a_make_service_that_is_not_ready() {
    let polled = Arc::new(AtomicUsize::new(0));
    let server = bind(SessionConfig::default()).await;
    let server = server.serve(
        LengthCodec::new(),
        NeverReady {
            polled: polled.clone(),
        },
    );
    // A connection makes the server wait for the make-service.
    let mut c = TcpStream::connect(server.local_addr()).await.unwrap();
    eventually(LIMIT, "the server waits for the make-service", || {
        polled.load(Ordering::SeqCst) >= 1
    })
    .await;

    let started = Instant::now();
    within(LIMIT, server.shutdown(Duration::from_millis(300))).await;
    assert!(
        started.elapsed() < LIMIT,
        "shutdown took {:?}",
        started.elapsed()
    );
    // The waiting connection was let go.
    expect_eof(&mut c).await;
    assert_eq!(server.session_count(), 0);
}

// ----- 10. a zero cron period -------------------------------------------------

#[tokio::test]
async fn zero_cron_period_is_raised_to_one_millisecond() {
    let config = SessionConfig::default().cron_period(Some(Duration::ZERO));
    let detached: Session = Session::new(
        EndpointKind::Detached,
        Addr::Unknown,
        Addr::Unknown,
        config.clone(),
    );
    assert_eq!(detached.cron_period(), Some(Duration::from_millis(1)));
    detached.set_cron_period(Some(Duration::from_micros(10)));
    assert_eq!(detached.cron_period(), Some(Duration::from_millis(1)));
    detached.set_cron_period(None);
    assert_eq!(detached.cron_period(), None);

    let (server, log) = recording_server(config).await;
    let mut c = TcpStream::connect(server.local_addr()).await.unwrap();
    echo(&mut c, b"first").await;
    let session = only_session(&server).await;
    assert_eq!(session.cron_period(), Some(Duration::from_millis(1)));
    session.set_cron_period(Some(Duration::ZERO));
    assert_eq!(session.cron_period(), Some(Duration::from_millis(1)));

    // Ticks come, at most about one a millisecond (a zero period would
    // tick on every turn of the driver).
    let before = log.count("tick");
    let since = Instant::now();
    eventually(LIMIT, "ticks", || log.count("tick") >= before + 20).await;
    let ticks = log.count("tick") - before;
    let ms = since.elapsed().as_millis() as usize;
    assert!(ticks <= 2 * ms + 20, "{ticks} ticks in {ms} ms");
    echo(&mut c, b"second").await;
    drop(c);
    within(LIMIT, server.shutdown(Duration::from_secs(1))).await;
}

mod transport_review {
    use super::*;
    use bytes::BufMut;
    use tokio::net::UdpSocket;

    /// Connections still in their WebSocket handshake count against
    /// `max_sessions`: the cap cannot be outrun by opening many at once.
    #[tokio::test]
    async fn max_sessions_counts_connections_still_shaking_hands() {
        let server = Server::builder()
            .max_sessions(2)
            .websocket("/")
            .bind("127.0.0.1:0")
            .await
            .unwrap()
            .serve(
                tokio_util::codec::BytesCodec::new(),
                new_session_fn(|_: &Session| {
                    Ok::<_, Infallible>(tower::service_fn(
                        |_req: Request<bytes::BytesMut>| async move {
                            Ok::<_, Infallible>(None::<Bytes>)
                        },
                    ))
                }),
            );
        // Two connections that never finish their handshake hold the slots.
        let _a = TcpStream::connect(server.local_addr()).await.unwrap();
        let _b = TcpStream::connect(server.local_addr()).await.unwrap();
        // A third (accepted after them, in connection order) is refused at
        // once: closed without a response.
        let mut c = TcpStream::connect(server.local_addr()).await.unwrap();
        let mut rest = Vec::new();
        let n = within(Duration::from_secs(2), c.read_to_end(&mut rest))
            .await
            .unwrap_or(0);
        assert_eq!(n, 0, "the refused connection got {rest:?}");
        server.shutdown(Duration::from_secs(1)).await;
    }

    /// A burst from many source addresses cannot make more virtual UDP
    /// sessions than the cap.
    #[tokio::test]
    async fn a_udp_burst_from_many_peers_stays_within_twice_max_sessions_and_the_newest_is_served()
    {
        let server = Server::builder()
            .max_sessions(3)
            .bind_udp("127.0.0.1:0")
            .await
            .unwrap()
            .serve(
                tokio_util::codec::BytesCodec::new(),
                new_session_fn(|_: &Session| {
                    Ok::<_, Infallible>(tower::service_fn(
                        |req: Request<bytes::BytesMut>| async move {
                            Ok::<_, Infallible>(req.into_message().map(|m| m.freeze()))
                        },
                    ))
                }),
            );
        let mut peers = Vec::new();
        for _ in 0..20 {
            let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            s.send_to(b"hi", server.local_addr()).await.unwrap();
            peers.push(s);
        }
        // The first three peers (in arrival order) get sessions and echoes.
        // Each later one evicts the longest idle session (issue 7): the
        // table holds the cap, plus at most as many evicted sessions still
        // draining, never more.
        let mut buf = [0u8; 16];
        for p in &peers[..3] {
            within(Duration::from_secs(5), p.recv(&mut buf))
                .await
                .unwrap();
        }
        for _ in 0..20 {
            assert!(server.session_count() <= 6, "{}", server.session_count());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The last peer to arrive was served.
        within(Duration::from_secs(5), peers[19].recv(&mut buf))
            .await
            .unwrap();
        eventually(Duration::from_secs(5), "evicted sessions end", || {
            server.session_count() <= 3
        })
        .await;
        server.shutdown(Duration::from_secs(1)).await;
    }

    /// An encoder that writes a header and then fails leaves nothing behind:
    /// on UDP (where the session carries on) the next reply is intact.
    #[tokio::test]
    async fn a_failed_encode_leaves_nothing_half_written() {
        #[derive(Clone)]
        struct Headed;
        impl tokio_util::codec::Decoder for Headed {
            type Item = bytes::BytesMut;
            type Error = std::io::Error;
            fn decode(
                &mut self,
                src: &mut bytes::BytesMut,
            ) -> std::io::Result<Option<bytes::BytesMut>> {
                Ok((!src.is_empty()).then(|| src.split()))
            }
        }
        impl tokio_util::codec::Encoder<Bytes> for Headed {
            type Error = std::io::Error;
            fn encode(&mut self, item: Bytes, dst: &mut bytes::BytesMut) -> std::io::Result<()> {
                dst.put_slice(b"HDR:");
                if &item[..] == b"bad" {
                    return Err(std::io::Error::other("cannot encode bad"));
                }
                dst.put_slice(&item);
                Ok(())
            }
        }
        let server = Server::builder()
            .bind_udp("127.0.0.1:0")
            .await
            .unwrap()
            .serve(
                Headed,
                new_session_fn(|_: &Session| {
                    Ok::<_, Infallible>(tower::service_fn(
                        |req: Request<bytes::BytesMut>| async move {
                            Ok::<_, Infallible>(req.into_message().map(|m| m.freeze()))
                        },
                    ))
                }),
            );
        let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        c.connect(server.local_addr()).await.unwrap();
        c.send(b"bad").await.unwrap();
        c.send(b"good").await.unwrap();
        let mut buf = [0u8; 64];
        let n = within(Duration::from_secs(5), c.recv(&mut buf))
            .await
            .unwrap();
        assert_eq!(&buf[..n], b"HDR:good");
        server.shutdown(Duration::from_secs(1)).await;
    }
}
