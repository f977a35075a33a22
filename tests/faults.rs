//! Bad input and faults, over real sockets on 127.0.0.1: oversized length
//! prefixes, codec errors, peers that vanish, stay silent or never read,
//! panicking handlers, close storms and connection churn.

mod common;

use std::{
    collections::HashMap,
    convert::Infallible,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use common::*;
use getty::{
    codec::{LengthCodec, MakeCodec, ReadWriter, ReadWriterCodec},
    new_session_fn, BoxError, Error, Event, EventListener, ListenerService, Request, SendError,
    Server, ServerHandle, Session, SessionConfig,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_util::codec::Decoder;

const LIMIT: Duration = Duration::from_secs(5);

// ----- a probing listener ---------------------------------------------------

/// One thing a session's listener saw.
#[derive(Clone)]
struct Seen {
    /// The peer's port: which client connection the session belongs to.
    port: u16,
    /// "open", "message:<utf8>", "error:<variant and fields>", "close".
    event: String,
    /// For errors, the error's Display.
    display: Option<String>,
}

/// Everything every session of a server saw, in order.
#[derive(Clone, Default)]
struct Probe(Arc<Mutex<Vec<Seen>>>);

impl Probe {
    fn push(&self, port: u16, event: String, display: Option<String>) {
        self.0.lock().unwrap().push(Seen {
            port,
            event,
            display,
        });
    }

    /// The events of the session whose peer is `client` (the client socket's
    /// local address).
    fn events(&self, client: &TcpStream) -> Vec<String> {
        self.events_of(client.local_addr().unwrap().port())
    }

    /// The events of the session whose peer port is `port`.
    fn events_of(&self, port: u16) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.port == port)
            .map(|s| s.event.clone())
            .collect()
    }

    /// The Display of the (first) error of `client`'s session.
    fn error_display(&self, client: &TcpStream) -> String {
        self.error_display_of(client.local_addr().unwrap().port())
    }

    fn error_display_of(&self, port: u16) -> String {
        self.0
            .lock()
            .unwrap()
            .iter()
            .find(|s| s.port == port && s.display.is_some())
            .and_then(|s| s.display.clone())
            .expect("the session saw an error")
    }

    fn has(&self, client: &TcpStream, event: &str) -> bool {
        self.events(client).iter().any(|e| e == event)
    }
}

/// The variant of an error with the fields a test checks.
fn describe(e: &Error) -> String {
    match e {
        Error::PacketTooLarge { peer, len, max } => {
            format!("PacketTooLarge len={len} max={max} peer={peer}")
        }
        Error::Codec { peer, .. } => format!("Codec peer={peer}"),
        Error::UnexpectedEof { peer, .. } => format!("UnexpectedEof peer={peer}"),
        Error::ReadTimeout { peer, timeout } => {
            format!("ReadTimeout timeout={timeout:?} peer={peer}")
        }
        Error::WriteTimeout { peer, timeout, .. } => {
            format!("WriteTimeout timeout={timeout:?} peer={peer}")
        }
        Error::HandlerPanic { message } => format!("HandlerPanic message={message}"),
        Error::Handler { source } => format!("Handler {source}"),
        Error::Io { peer, source } => format!("Io {source} peer={peer}"),
        other => format!("unexpected {other:?}"),
    }
}

/// An echo listener that records into a [`Probe`] and panics on "boom".
struct ProbeListener {
    probe: Probe,
    port: u16,
}

impl EventListener<Bytes> for ProbeListener {
    fn on_open(&mut self, _: &Session) -> Result<Option<Bytes>, BoxError> {
        self.probe.push(self.port, "open".into(), None);
        Ok(None)
    }
    fn on_message(&mut self, _: &Session, pkg: Bytes) -> Option<Bytes> {
        if &pkg[..] == b"boom" {
            panic!("boom");
        }
        self.probe.push(
            self.port,
            format!("message:{}", String::from_utf8_lossy(&pkg).trim_end()),
            None,
        );
        Some(pkg)
    }
    fn on_error(&mut self, _: &Session, error: &Error) {
        self.probe.push(
            self.port,
            format!("error:{}", describe(error)),
            Some(error.to_string()),
        );
    }
    fn on_close(&mut self, _: &Session) {
        self.probe.push(self.port, "close".into(), None);
    }
}

/// A server with `codec` whose sessions all record into one probe.
async fn probe_server<MC>(config: SessionConfig, codec: MC) -> (ServerHandle, Probe)
where
    MC: MakeCodec<Bytes>,
    MC::Codec: Decoder<Item = Bytes>,
{
    let probe = Probe::default();
    let server = Server::builder()
        .session_config(config)
        .bind("127.0.0.1:0")
        .await
        .expect("bind");
    let p = probe.clone();
    let handle = server.serve(
        codec,
        new_session_fn(move |s: &Session| {
            let port = s.peer_addr().as_socket_addr().expect("inet peer").port();
            Ok::<_, BoxError>(ListenerService::new(ProbeListener {
                probe: p.clone(),
                port,
            }))
        }),
    );
    (handle, probe)
}

/// The peer address the server sees for this client socket.
fn peer_of(client: &TcpStream) -> String {
    client.local_addr().unwrap().to_string()
}

/// Asserts the server closed the connection cleanly: the next read is EOF
/// (not data, not a reset), within the limit.
async fn expect_eof(client: &mut TcpStream) {
    let mut buf = [0u8; 64];
    match within(LIMIT, client.read(&mut buf)).await {
        Ok(0) => {}
        Ok(n) => panic!("expected EOF, got {n} bytes: {:?}", &buf[..n]),
        Err(e) => panic!("expected EOF, got error {e}"),
    }
}

async fn echo(client: &mut TcpStream, payload: &[u8]) {
    write_frame(client, payload).await;
    assert_eq!(read_frame(client).await, payload);
}

// ----- 1. length prefix above the maximum ----------------------------------

#[tokio::test]
async fn length_prefix_above_max_is_rejected_on_the_header_with_packet_too_large_then_close() {
    let (server, probe) = probe_server(
        SessionConfig::default().max_packet_len(4096),
        LengthCodec::new(),
    )
    .await;
    let mut c = TcpStream::connect(server.local_addr()).await.unwrap();
    let peer = peer_of(&c);

    // Only the 4-byte header: 9_000_000 bytes declared, no payload ever sent.
    c.write_all(&9_000_000u32.to_be_bytes()).await.unwrap();

    // The error must come from the header alone: no payload follows.
    eventually(LIMIT, "close after the oversized header", || {
        probe.has(&c, "close")
    })
    .await;
    assert_eq!(
        probe.events(&c),
        [
            "open".to_string(),
            format!("error:PacketTooLarge len=9000000 max=4096 peer={peer}"),
            "close".to_string(),
        ]
    );
    let display = probe.error_display(&c);
    for part in ["9000000", "4096", &peer] {
        assert!(display.contains(part), "{display:?} does not name {part}");
    }
    expect_eof(&mut c).await;
    within(LIMIT, server.shutdown(Duration::from_secs(1))).await;
}

#[tokio::test]
async fn garbage_stream_to_length_codec_server_closes_cleanly_without_affecting_other_sessions() {
    let (server, probe) = probe_server(SessionConfig::default(), LengthCodec::new()).await;
    let mut good = TcpStream::connect(server.local_addr()).await.unwrap();
    echo(&mut good, b"before").await;

    // An HTTP request to a length-prefixed server: "GET " reads as a length
    // of 0x47455420 bytes, far above the 1 MiB default.
    let mut stranger = TcpStream::connect(server.local_addr()).await.unwrap();
    let peer = peer_of(&stranger);
    stranger
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    expect_eof(&mut stranger).await;
    eventually(LIMIT, "the stranger's session closes", || {
        probe.has(&stranger, "close")
    })
    .await;
    assert_eq!(
        probe.events(&stranger),
        [
            "open".to_string(),
            format!(
                "error:PacketTooLarge len={} max={} peer={peer}",
                u32::from_be_bytes(*b"GET "),
                1024 * 1024
            ),
            "close".to_string(),
        ]
    );

    // The other session did not notice.
    echo(&mut good, b"after").await;
    assert_eq!(
        probe.events(&good),
        ["open", "message:before", "message:after"]
    );
    eventually(LIMIT, "only the good session is left", || {
        server.session_count() == 1
    })
    .await;
    within(LIMIT, server.shutdown(Duration::from_secs(1))).await;
}

// ----- 2. a getty-style handler refuses garbage -----------------------------

/// Newline-terminated printable ASCII; anything else is refused.
struct AsciiLines;

impl ReadWriter for AsciiLines {
    type Packet = Bytes;

    fn read(&self, _: &Session, data: &[u8]) -> Result<Option<(Bytes, usize)>, BoxError> {
        for (i, &b) in data.iter().enumerate() {
            if b == b'\n' {
                return Ok(Some((Bytes::copy_from_slice(&data[..i]), i + 1)));
            }
            if !(b.is_ascii_graphic() || b == b' ') {
                return Err(format!("invalid byte 0x{b:02x} at offset {i}").into());
            }
        }
        Ok(None)
    }

    fn write(&self, _: &Session, pkg: Bytes) -> Result<Bytes, BoxError> {
        let mut v = pkg.to_vec();
        v.push(b'\n');
        Ok(v.into())
    }
}

#[tokio::test]
async fn read_writer_error_on_garbage_raises_codec_error_naming_the_handler_message_then_close_and_eof(
) {
    let (server, probe) =
        probe_server(SessionConfig::default(), ReadWriterCodec::new(AsciiLines)).await;
    let mut c = TcpStream::connect(server.local_addr()).await.unwrap();
    let peer = peer_of(&c);

    c.write_all(b"hello\n").await.unwrap();
    let mut echoed = [0u8; 6];
    within(LIMIT, c.read_exact(&mut echoed)).await.unwrap();
    assert_eq!(&echoed, b"hello\n");

    c.write_all(b"\xff\xfe\x00junk\n").await.unwrap();
    expect_eof(&mut c).await;
    eventually(LIMIT, "close after the codec error", || {
        probe.has(&c, "close")
    })
    .await;
    assert_eq!(
        probe.events(&c),
        [
            "open".to_string(),
            "message:hello".to_string(),
            format!("error:Codec peer={peer}"),
            "close".to_string(),
        ]
    );
    let display = probe.error_display(&c);
    assert!(
        display.contains("invalid byte 0xff at offset 0"),
        "{display:?} does not carry the handler's message"
    );
    assert!(
        display.contains(&peer),
        "{display:?} does not name the peer"
    );
    within(LIMIT, server.shutdown(Duration::from_secs(1))).await;
}

/// A codec that never completes a packet cannot make the session buffer
/// without bound: the driver cuts it off just past `max_packet_len`.
#[tokio::test]
async fn unterminated_input_beyond_max_packet_len_is_cut_off_by_the_driver_with_packet_too_large() {
    let (server, probe) = probe_server(
        SessionConfig::default().max_packet_len(4096),
        ReadWriterCodec::new(AsciiLines),
    )
    .await;
    let mut c = TcpStream::connect(server.local_addr()).await.unwrap();
    let peer = peer_of(&c);
    let port = c.local_addr().unwrap().port();
    // 1 MiB of one line with no end. The server may close while this is
    // being written, so write errors are expected and ignored.
    let writer = tokio::spawn(async move {
        let _ = c.write_all(&vec![b'a'; 1024 * 1024]).await;
        c
    });
    eventually(LIMIT, "close after the runaway line", || {
        probe.events_of(port).iter().any(|e| e == "close")
    })
    .await;
    let events = probe.events_of(port);
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(events[0], "open");
    assert_eq!(events[2], "close");
    let len: usize = events[1]
        .strip_prefix("error:PacketTooLarge len=")
        .and_then(|rest| rest.strip_suffix(&format!(" max=4096 peer={peer}")))
        .unwrap_or_else(|| panic!("not a PacketTooLarge: {}", events[1]))
        .parse()
        .unwrap();
    assert!(
        len > 4096 && len < 64 * 1024,
        "buffered {len} bytes before cutting off"
    );
    drop(within(LIMIT, writer).await.unwrap());
    within(LIMIT, server.shutdown(Duration::from_secs(1))).await;
}

/// A packet decoded before the garbage in the same segment is still
/// handled and answered while the session drains.
#[tokio::test]
async fn packet_before_garbage_in_the_same_write_is_still_answered_before_the_codec_error_closes() {
    let (server, probe) =
        probe_server(SessionConfig::default(), ReadWriterCodec::new(AsciiLines)).await;
    let mut c = TcpStream::connect(server.local_addr()).await.unwrap();
    let peer = peer_of(&c);
    c.write_all(b"hello\n\xffjunk\n").await.unwrap();
    let mut rest = Vec::new();
    within(LIMIT, c.read_to_end(&mut rest)).await.unwrap();
    assert_eq!(rest, b"hello\n");
    eventually(LIMIT, "close after the codec error", || {
        probe.has(&c, "close")
    })
    .await;
    assert_eq!(
        probe.events(&c),
        [
            "open".to_string(),
            "message:hello".to_string(),
            format!("error:Codec peer={peer}"),
            "close".to_string(),
        ]
    );
    within(LIMIT, server.shutdown(Duration::from_secs(1))).await;
}

// ----- 3. the peer vanishes mid-packet --------------------------------------

#[tokio::test]
async fn peer_vanishing_mid_packet_raises_unexpected_eof_then_close() {
    let (server, probe) = probe_server(SessionConfig::default(), LengthCodec::new()).await;
    let mut c = TcpStream::connect(server.local_addr()).await.unwrap();
    let peer = peer_of(&c);
    echo(&mut c, b"whole").await;

    // Header for 100 bytes, then only 50 of them, then gone.
    let mut half = 100u32.to_be_bytes().to_vec();
    half.extend_from_slice(&[b'x'; 50]);
    c.write_all(&half).await.unwrap();
    let port = c.local_addr().unwrap().port();
    drop(c);

    eventually(LIMIT, "close after the truncated packet", || {
        probe.events_of(port).iter().any(|e| e == "close")
    })
    .await;
    assert_eq!(
        probe.events_of(port),
        [
            "open".to_string(),
            "message:whole".to_string(),
            format!("error:UnexpectedEof peer={peer}"),
            "close".to_string(),
        ]
    );
    let display = probe.error_display_of(port);
    assert!(
        display.contains(&peer) && display.contains("in the middle of a packet"),
        "{display:?}"
    );
    eventually(LIMIT, "registry empty", || server.session_count() == 0).await;
    within(LIMIT, server.shutdown(Duration::from_secs(1))).await;
}

// ----- 4. a silent peer -----------------------------------------------------

#[tokio::test]
async fn silent_peer_hits_read_timeout_then_close_and_the_client_sees_eof() {
    let timeout = Duration::from_millis(200);
    let (server, probe) = probe_server(
        SessionConfig::default().read_timeout(Some(timeout)),
        LengthCodec::new(),
    )
    .await;
    let started = Instant::now();
    let mut c = TcpStream::connect(server.local_addr()).await.unwrap();
    let peer = peer_of(&c);

    expect_eof(&mut c).await;
    let elapsed = started.elapsed();
    assert!(
        elapsed >= timeout,
        "closed after {elapsed:?}, before the {timeout:?} read timeout"
    );
    eventually(LIMIT, "close after the read timeout", || {
        probe.has(&c, "close")
    })
    .await;
    assert_eq!(
        probe.events(&c),
        [
            "open".to_string(),
            format!("error:ReadTimeout timeout={timeout:?} peer={peer}"),
            "close".to_string(),
        ]
    );
    let display = probe.error_display(&c);
    assert!(display.contains(&peer), "{display:?}");
    within(LIMIT, server.shutdown(Duration::from_secs(1))).await;
}

// ----- 5. a peer that never reads -------------------------------------------

#[tokio::test]
async fn peer_that_never_reads_blocks_try_send_then_send_waits_then_write_timeout_closes() {
    let write_timeout = Duration::from_secs(1);
    let (server, probe) = probe_server(
        SessionConfig::default()
            .queue_capacity(4)
            .write_timeout(Some(write_timeout)),
        LengthCodec::new(),
    )
    .await;
    // Connected, and never read from.
    let c = TcpStream::connect(server.local_addr()).await.unwrap();
    let peer = peer_of(&c);
    eventually(LIMIT, "the session is registered", || {
        server.session_count() == 1
    })
    .await;
    let session = server.sessions().sessions().pop().unwrap();
    eventually(LIMIT, "the session is open", || probe.has(&c, "open")).await;

    // Push 256 KiB packets until the queue stays full: loopback buffers take
    // several MB first. Bounded at 1024 packets (256 MiB).
    let big = Bytes::from(vec![7u8; 256 * 1024]);
    let mut accepted = 0usize;
    let mut stalled = false;
    for _ in 0..1024 {
        match session.try_send(big.clone()) {
            Ok(()) => accepted += 1,
            Err(SendError::Blocked) => {
                // Full right now; give the driver 100 ms to make room. When
                // it cannot, the socket is stalled.
                match session
                    .send_timeout(big.clone(), Duration::from_millis(100))
                    .await
                {
                    Ok(()) => accepted += 1,
                    Err(SendError::Timeout) => {
                        stalled = true;
                        break;
                    }
                    Err(e) => panic!("send_timeout failed with {e}"),
                }
            }
            Err(e) => panic!("try_send failed with {e} after {accepted} packets"),
        }
    }
    assert!(
        stalled,
        "the queue never stayed full after {accepted} packets"
    );
    assert!(accepted >= 4, "only {accepted} packets were accepted");

    // Blocked: try_send refuses and send waits.
    assert_eq!(session.try_send(big.clone()), Err(SendError::Blocked));
    let waiting = session.send(big.clone());
    tokio::pin!(waiting);
    assert!(
        tokio::time::timeout(Duration::from_millis(100), waiting.as_mut())
            .await
            .is_err(),
        "send completed although the queue is full and the peer does not read"
    );
    assert!(!probe.has(&c, "close"), "closed before the write timeout");

    // The write timeout closes the session; the waiting send learns it.
    assert_eq!(within(LIMIT, waiting).await, Err(SendError::Closed));
    eventually(LIMIT, "close after the write timeout", || {
        probe.has(&c, "close")
    })
    .await;
    assert_eq!(
        probe.events(&c),
        [
            "open".to_string(),
            format!("error:WriteTimeout timeout={write_timeout:?} peer={peer}"),
            "close".to_string(),
        ]
    );
    assert!(probe.error_display(&c).contains("write timeout"));
    assert_eq!(session.try_send(big), Err(SendError::Closed));
    within(LIMIT, session.finished()).await;
    eventually(LIMIT, "registry empty", || server.session_count() == 0).await;
    drop(c);
    within(LIMIT, server.shutdown(Duration::from_secs(1))).await;
}

// ----- 6. a panicking handler -----------------------------------------------

#[tokio::test]
async fn handler_panic_closes_only_its_session_and_the_server_keeps_serving() {
    let (server, probe) = probe_server(SessionConfig::default(), LengthCodec::new()).await;
    // Opened before the panic.
    let mut earlier = TcpStream::connect(server.local_addr()).await.unwrap();
    echo(&mut earlier, b"before").await;

    let mut victim = TcpStream::connect(server.local_addr()).await.unwrap();
    echo(&mut victim, b"fine").await;
    write_frame(&mut victim, b"boom").await;
    expect_eof(&mut victim).await;
    eventually(LIMIT, "the panicking session closes", || {
        probe.has(&victim, "close")
    })
    .await;
    assert_eq!(
        probe.events(&victim),
        [
            "open",
            "message:fine",
            "error:HandlerPanic message=boom",
            "close"
        ]
    );

    // A new connection is served.
    let mut later = TcpStream::connect(server.local_addr()).await.unwrap();
    echo(&mut later, b"hello").await;
    // The session opened before the panic still works.
    echo(&mut earlier, b"after").await;
    assert_eq!(
        probe.events(&earlier),
        ["open", "message:before", "message:after"]
    );
    assert_eq!(probe.events(&later), ["open", "message:hello"]);
    eventually(LIMIT, "two sessions left", || server.session_count() == 2).await;
    within(LIMIT, server.shutdown(Duration::from_secs(1))).await;
}

/// Counts `s`'s close callback runs in `count`.
fn count_closes(s: &Session, count: &Arc<AtomicUsize>) {
    let count = count.clone();
    s.add_close_callback("test", "count", move || {
        count.fetch_add(1, Ordering::SeqCst);
    });
}

/// A session service whose `poll_ready` panics once it has served a packet.
struct ReadyPanics {
    events: Arc<Mutex<Vec<String>>>,
    served: usize,
}

impl tower::Service<Request<Bytes>> for ReadyPanics {
    type Response = Option<Bytes>;
    type Error = BoxError;
    type Future = std::future::Ready<Result<Option<Bytes>, BoxError>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        // `Open` and one packet pass; asked again for a second packet, it panics.
        if self.served >= 2 {
            panic!("not ready, ever");
        }
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Bytes>) -> Self::Future {
        self.served += 1;
        self.events
            .lock()
            .unwrap()
            .push(req.event.name().to_owned());
        std::future::ready(Ok(req.into_message()))
    }
}

/// A panic in `poll_ready` ends its session as a failed `poll_ready`
/// does: the service takes no more events (no `Error`, no `Close` through
/// it), the connection closes, the close callbacks run and the server
/// serves on.
#[tokio::test]
async fn a_panicking_poll_ready_abandons_only_its_session() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let callbacks = Arc::new(AtomicUsize::new(0));
    let server = Server::builder().bind("127.0.0.1:0").await.unwrap();
    let (e, cb) = (events.clone(), callbacks.clone());
    let server = server.serve(
        LengthCodec::new(),
        new_session_fn(move |s: &Session| {
            count_closes(s, &cb);
            Ok::<_, BoxError>(ReadyPanics {
                events: e.clone(),
                served: 0,
            })
        }),
    );
    let mut victim = TcpStream::connect(server.local_addr()).await.unwrap();
    echo(&mut victim, b"one").await;
    write_frame(&mut victim, b"two").await;
    expect_eof(&mut victim).await;
    eventually(LIMIT, "the close callback runs", || {
        callbacks.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(*events.lock().unwrap(), ["open", "message"]);

    // A new connection gets a new service and is served.
    let mut later = TcpStream::connect(server.local_addr()).await.unwrap();
    echo(&mut later, b"hello").await;
    within(LIMIT, server.shutdown(Duration::from_secs(1))).await;
}

/// A panic inside a service's response future (not in `call`) is contained
/// the same way.
#[tokio::test]
async fn service_fn_panicking_inside_its_future_gets_handler_panic_and_close_and_the_server_keeps_serving(
) {
    let probe = Probe::default();
    let server = Server::builder().bind("127.0.0.1:0").await.unwrap();
    let p = probe.clone();
    let server = server.serve(
        LengthCodec::new(),
        new_session_fn(move |s: &Session| {
            let port = s.peer_addr().as_socket_addr().unwrap().port();
            let probe = p.clone();
            Ok::<_, BoxError>(tower::service_fn(move |req: Request<Bytes>| {
                let probe = probe.clone();
                async move {
                    tokio::task::yield_now().await;
                    let reply = match req.event {
                        Event::Open => {
                            probe.push(port, "open".into(), None);
                            None
                        }
                        Event::Message(pkg) if &pkg[..] == b"boom" => {
                            panic!("boom in a future")
                        }
                        Event::Message(pkg) => {
                            probe.push(
                                port,
                                format!("message:{}", String::from_utf8_lossy(&pkg)),
                                None,
                            );
                            Some(pkg)
                        }
                        Event::Error(e) => {
                            probe.push(
                                port,
                                format!("error:{}", describe(&e)),
                                Some(e.to_string()),
                            );
                            None
                        }
                        Event::Close => {
                            probe.push(port, "close".into(), None);
                            None
                        }
                        _ => None,
                    };
                    Ok::<_, Infallible>(reply)
                }
            }))
        }),
    );
    let mut earlier = TcpStream::connect(server.local_addr()).await.unwrap();
    echo(&mut earlier, b"before").await;

    let mut victim = TcpStream::connect(server.local_addr()).await.unwrap();
    echo(&mut victim, b"fine").await;
    write_frame(&mut victim, b"boom").await;
    expect_eof(&mut victim).await;
    eventually(LIMIT, "the panicking session closes", || {
        probe.has(&victim, "close")
    })
    .await;
    assert_eq!(
        probe.events(&victim),
        [
            "open",
            "message:fine",
            "error:HandlerPanic message=boom in a future",
            "close"
        ]
    );
    assert_eq!(
        probe.error_display(&victim),
        "service panicked: boom in a future"
    );

    let mut later = TcpStream::connect(server.local_addr()).await.unwrap();
    echo(&mut later, b"hello").await;
    echo(&mut earlier, b"after").await;
    assert_eq!(
        probe.events(&earlier),
        ["open", "message:before", "message:after"]
    );
    within(LIMIT, server.shutdown(Duration::from_secs(1))).await;
}

// ----- 7. a close storm ------------------------------------------------------

struct CountingListener {
    opens: Arc<AtomicUsize>,
    closes: Arc<AtomicUsize>,
    errors: Arc<AtomicUsize>,
}

impl EventListener<Bytes> for CountingListener {
    fn on_open(&mut self, _: &Session) -> Result<Option<Bytes>, BoxError> {
        self.opens.fetch_add(1, Ordering::SeqCst);
        Ok(None)
    }
    fn on_message(&mut self, _: &Session, pkg: Bytes) -> Option<Bytes> {
        Some(pkg)
    }
    fn on_error(&mut self, _: &Session, _: &Error) {
        self.errors.fetch_add(1, Ordering::SeqCst);
    }
    fn on_close(&mut self, _: &Session) {
        self.closes.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_from_64_tasks_at_once_delivers_close_and_runs_the_close_callback_exactly_once() {
    let opens = Arc::new(AtomicUsize::new(0));
    let closes = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let callbacks = Arc::new(AtomicUsize::new(0));
    let server = Server::builder().bind("127.0.0.1:0").await.unwrap();
    let (o, c, e, cb) = (
        opens.clone(),
        closes.clone(),
        errors.clone(),
        callbacks.clone(),
    );
    let server = server.serve(
        LengthCodec::new(),
        new_session_fn(move |s: &Session| {
            count_closes(s, &cb);
            Ok::<_, BoxError>(ListenerService::new(CountingListener {
                opens: o.clone(),
                closes: c.clone(),
                errors: e.clone(),
            }))
        }),
    );
    let mut client = TcpStream::connect(server.local_addr()).await.unwrap();
    echo(&mut client, b"up").await;
    let session = server.sessions().sessions().pop().unwrap();

    let barrier = Arc::new(tokio::sync::Barrier::new(64));
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let (session, barrier) = (session.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                session.close();
            })
        })
        .collect();
    for t in tasks {
        within(LIMIT, t).await.unwrap();
    }
    within(LIMIT, session.finished()).await;
    expect_eof(&mut client).await;
    eventually(LIMIT, "registry empty", || server.session_count() == 0).await;
    // The server has ended every session task: nothing more can arrive.
    within(LIMIT, server.shutdown(Duration::from_secs(1))).await;
    assert_eq!(opens.load(Ordering::SeqCst), 1);
    assert_eq!(closes.load(Ordering::SeqCst), 1, "Close events");
    assert_eq!(callbacks.load(Ordering::SeqCst), 1, "close callback runs");
    assert_eq!(
        errors.load(Ordering::SeqCst),
        0,
        "a plain close is no error"
    );
    // A callback added after the session ended runs at once, once.
    let late = Arc::new(AtomicUsize::new(0));
    let l = late.clone();
    session.add_close_callback("test", "late", move || {
        l.fetch_add(1, Ordering::SeqCst);
    });
    assert_eq!(late.load(Ordering::SeqCst), 1);
    assert_eq!(callbacks.load(Ordering::SeqCst), 1);
}

// ----- 8. churn --------------------------------------------------------------

#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
struct Life {
    opens: u32,
    messages: u32,
    closes: u32,
}

struct LifeListener {
    lives: Arc<Mutex<HashMap<u64, Life>>>,
}

impl LifeListener {
    fn with(&self, s: &Session, f: impl FnOnce(&mut Life)) {
        f(self.lives.lock().unwrap().entry(s.id()).or_default());
    }
}

impl EventListener<Bytes> for LifeListener {
    fn on_open(&mut self, s: &Session) -> Result<Option<Bytes>, BoxError> {
        self.with(s, |l| l.opens += 1);
        Ok(None)
    }
    fn on_message(&mut self, s: &Session, pkg: Bytes) -> Option<Bytes> {
        self.with(s, |l| l.messages += 1);
        Some(pkg)
    }
    fn on_close(&mut self, s: &Session) {
        self.with(s, |l| l.closes += 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_sessions_open_echo_and_close_concurrently_and_the_registry_returns_to_zero() {
    const N: usize = 1000;
    let lives = Arc::new(Mutex::new(HashMap::new()));
    let server = Server::builder().bind("127.0.0.1:0").await.unwrap();
    let l = lives.clone();
    let server = server.serve(
        LengthCodec::new(),
        new_session_fn(move |_: &Session| {
            Ok::<_, BoxError>(ListenerService::new(LifeListener { lives: l.clone() }))
        }),
    );
    let addr = server.local_addr();

    let mut clients = tokio::task::JoinSet::new();
    for i in 0..N {
        clients.spawn(async move {
            let mut c = TcpStream::connect(addr).await.expect("connect");
            let payload = format!("client-{i}");
            write_frame(&mut c, payload.as_bytes()).await;
            assert_eq!(read_frame(&mut c).await, payload.as_bytes());
        });
    }
    within(Duration::from_secs(10), async {
        while let Some(r) = clients.join_next().await {
            r.expect("client task");
        }
    })
    .await;

    eventually(Duration::from_secs(10), "registry back to 0", || {
        server.session_count() == 0
    })
    .await;
    {
        let lives = lives.lock().unwrap();
        assert_eq!(lives.len(), N, "sessions seen");
        let once = Life {
            opens: 1,
            messages: 1,
            closes: 1,
        };
        let odd: Vec<_> = lives.iter().filter(|(_, l)| **l != once).collect();
        assert!(odd.is_empty(), "sessions with other lives: {odd:?}");
    }
    let started = Instant::now();
    within(LIMIT, server.shutdown(Duration::from_secs(5))).await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "shutdown with no sessions took {:?}",
        started.elapsed()
    );
}
