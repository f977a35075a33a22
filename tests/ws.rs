//! WebSocket over real sockets on 127.0.0.1: getty ws and wss clients and
//! servers, raw handshakes (wrong path, origin check, silence), raw
//! tokio-tungstenite peers (text messages, oversized messages, pings, close
//! codes, two packets in one message), a real non-Rust client (Python's
//! `websockets`), and reconnection.

mod common;
mod ws_raw;

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use bytes::Bytes;
use common::{eventually, frame, within, Log};
use futures_util::{SinkExt, StreamExt};
use getty::{
    codec::LengthCodec,
    new_session_fn,
    tls::{
        rustls::{self, pki_types::PrivatePkcs8KeyDer, RootCertStore},
        ClientTlsConfig, ServerTlsConfig,
    },
    BoxError, Client, ClientBuilder, EndpointKind, Error, EventListener, ListenerService, Server,
    ServerBuilder, ServerHandle, Session, SessionConfig, SessionStats,
};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::Instant,
};
use tokio_tungstenite::{
    tungstenite::{
        client::IntoClientRequest,
        protocol::{frame::coding::CloseCode, CloseFrame},
        Message,
    },
    WebSocketStream,
};
use tokio_util::codec::BytesCodec;

const LIMIT: Duration = Duration::from_secs(5);

// ----- what a server or client saw -----------------------------------------------

/// Shared record of one server's (or client's) sessions.
#[derive(Clone, Default)]
struct Seen {
    /// "open", "message:<utf8>", "tick", "error:<kind>:<display>", "close".
    log: Log,
    /// How many sessions the new-session callback was asked for.
    made: Arc<AtomicUsize>,
    /// Each session's stats, taken in `on_close`.
    closed_stats: Arc<Mutex<Vec<SessionStats>>>,
    /// A getty-style heartbeat: on each tick, close the session with an
    /// error when nothing was received (packet, ping or pong) for this long.
    idle_limit: Option<Duration>,
}

impl Seen {
    fn made(&self) -> usize {
        self.made.load(Ordering::SeqCst)
    }

    fn closed_stats(&self) -> Vec<SessionStats> {
        self.closed_stats.lock().unwrap().clone()
    }

    /// The events other than ticks, in order.
    fn events(&self) -> Vec<String> {
        self.log
            .events()
            .into_iter()
            .filter(|e| e != "tick")
            .collect()
    }
}

/// A recording listener for whole-message packets (`BytesMut` from
/// `BytesCodec`, `Bytes` from `LengthCodec`); echoes when `echo`.
struct Rec {
    seen: Seen,
    echo: bool,
}

impl<P: Into<Bytes> + Send + 'static> EventListener<P> for Rec {
    fn on_open(&mut self, _: &Session) -> Result<Option<Bytes>, BoxError> {
        self.seen.log.push("open");
        Ok(None)
    }
    fn on_message(&mut self, _: &Session, pkg: P) -> Option<Bytes> {
        let pkg: Bytes = pkg.into();
        self.seen
            .log
            .push(format!("message:{}", String::from_utf8_lossy(&pkg)));
        self.echo.then_some(pkg)
    }
    fn on_cron(&mut self, session: &Session) {
        self.seen.log.push("tick");
        if let Some(limit) = self.seen.idle_limit {
            if session.active().elapsed() > limit {
                session.close_with_error("idle: no packet, ping or pong received");
            }
        }
    }
    fn on_error(&mut self, _: &Session, error: &Error) {
        self.seen
            .log
            .push(format!("error:{}:{error}", error.kind()));
    }
    fn on_close(&mut self, session: &Session) {
        self.seen.log.push("close");
        self.seen.closed_stats.lock().unwrap().push(session.stats());
    }
}

/// A WebSocket echo server from `builder` (already `.websocket(..)`), with
/// `BytesCodec` as the whole-message codec, recording into `seen`.
async fn ws_server(builder: ServerBuilder, seen: &Seen) -> ServerHandle {
    let server = builder.bind("127.0.0.1:0").await.expect("bind");
    let seen = seen.clone();
    server.serve(
        BytesCodec::new(),
        new_session_fn(move |_: &Session| {
            seen.made.fetch_add(1, Ordering::SeqCst);
            Ok::<_, BoxError>(ListenerService::new(Rec {
                seen: seen.clone(),
                echo: true,
            }))
        }),
    )
}

/// A getty WebSocket client from `builder` to `url`, recording (no echo).
async fn ws_client(builder: ClientBuilder, url: &str, seen: &Seen) -> Client {
    let seen = seen.clone();
    builder
        .connect_ws(
            url,
            BytesCodec::new(),
            new_session_fn(move |_: &Session| {
                seen.made.fetch_add(1, Ordering::SeqCst);
                Ok::<_, BoxError>(ListenerService::new(Rec {
                    seen: seen.clone(),
                    echo: false,
                }))
            }),
        )
        .await
        .unwrap_or_else(|e| e.into_client().expect("a well-formed target"))
}

/// The one live session of a registry-holder, once there is one.
async fn only_session(
    what: &str,
    count: impl Fn() -> usize,
    all: impl Fn() -> Vec<Session>,
) -> Session {
    eventually(LIMIT, what, || count() == 1).await;
    all().pop().expect("one session")
}

// ----- raw peers -----------------------------------------------------------------

type RawWs = WebSocketStream<TcpStream>;

/// A raw tokio-tungstenite client (`client_async` over a TCP stream:
/// getty builds tokio-tungstenite without its `connect` feature, so
/// `connect_async` is not available), optionally sending an `Origin`.
async fn raw_ws(addr: SocketAddr, path: &str, origin: Option<&str>) -> RawWs {
    let mut request = format!("ws://{addr}{path}")
        .into_client_request()
        .expect("client request");
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("Origin", origin.parse().expect("header value"));
    }
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (ws, response) = within(LIMIT, tokio_tungstenite::client_async(request, tcp))
        .await
        .expect("WebSocket handshake");
    assert_eq!(response.status().as_u16(), 101);
    ws
}

/// The next data message (binary or text), skipping pings and pongs.
async fn next_data(ws: &mut RawWs) -> Message {
    within(LIMIT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(m)) => return m,
                other => panic!("expected a data message, got {other:?}"),
            }
        }
    })
    .await
}

/// Reads until the peer's Close frame and returns it, after sending the
/// answer tungstenite queued for it (the server waits for that answer
/// before it ends the connection); fails on data, on the end of the stream
/// without one, and after `LIMIT`.
async fn next_close(ws: &mut RawWs) -> CloseFrame {
    within(LIMIT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(Message::Close(Some(frame)))) => {
                    ws.flush().await.expect("answer the Close");
                    return frame;
                }
                other => panic!("expected a Close frame with a code, got {other:?}"),
            }
        }
    })
    .await
}

/// A hand-written WebSocket upgrade request (RFC 6455's sample key).
fn upgrade_request(addr: SocketAddr, path: &str, origin: Option<&str>) -> String {
    let mut request = format!(
        "GET {path} HTTP/1.1\r\n\
         Host: {addr}\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n"
    );
    if let Some(origin) = origin {
        request.push_str(&format!("Origin: {origin}\r\n"));
    }
    request.push_str("\r\n");
    request
}

/// Sends a hand-written upgrade request and reads the response head (up to
/// the blank line); returns it with the stream.
async fn raw_handshake(addr: SocketAddr, path: &str, origin: Option<&str>) -> (String, TcpStream) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(upgrade_request(addr, path, origin).as_bytes())
        .await
        .expect("write request");
    // Byte by byte, so nothing after the head (the first WebSocket frames)
    // is taken from the stream.
    let head = within(LIMIT, async {
        let mut got = Vec::new();
        while !got.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            let n = s.read(&mut byte).await.expect("read response");
            assert!(
                n > 0,
                "closed before a response head: {:?}",
                String::from_utf8_lossy(&got)
            );
            got.push(byte[0]);
        }
        String::from_utf8_lossy(&got).into_owned()
    })
    .await;
    (head, s)
}

/// Reads the server's (unmasked) frames from a raw upgraded stream that
/// never answers anything, until a Close frame; returns its code and how
/// many pings came before it.
async fn raw_close_code(s: &mut TcpStream) -> (u16, usize) {
    within(LIMIT, async {
        let mut pings = 0;
        loop {
            let mut header = [0u8; 2];
            s.read_exact(&mut header).await.expect("frame header");
            assert_eq!(header[1] & 0x80, 0, "a server frame must not be masked");
            let len = match header[1] & 0x7f {
                126 => u64::from(s.read_u16().await.expect("length")),
                127 => s.read_u64().await.expect("length"),
                n => u64::from(n),
            };
            let mut payload = vec![0u8; usize::try_from(len).unwrap()];
            s.read_exact(&mut payload).await.expect("frame payload");
            match header[0] & 0x0f {
                0x9 => pings += 1,
                0x8 => {
                    assert!(payload.len() >= 2, "a Close frame without a code");
                    return (u16::from_be_bytes([payload[0], payload[1]]), pings);
                }
                op => panic!("unexpected frame with opcode {op:#x}"),
            }
        }
    })
    .await
}

/// Reads until the peer closes the connection (EOF or reset), within `LIMIT`.
async fn until_closed(s: &mut TcpStream) {
    within(LIMIT, async {
        let mut buf = [0u8; 1024];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
}

fn status_line(head: &str) -> &str {
    head.lines().next().unwrap_or_default()
}

// ----- certificates ----------------------------------------------------------------

/// A CA and a "localhost" server certificate it signed, in memory.
struct Pki {
    ca: rcgen::Certificate,
    leaf: rcgen::Certificate,
    leaf_key: KeyPair,
}

impl Pki {
    fn new() -> Self {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "getty ws test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate().expect("CA key");
        let ca = ca_params.self_signed(&ca_key).expect("self-sign the CA");

        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("leaf params");
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let leaf_key = KeyPair::generate().expect("leaf key");
        let leaf = params
            .signed_by(&leaf_key, &ca, &ca_key)
            .expect("sign the leaf");
        Pki { ca, leaf, leaf_key }
    }

    fn server_config(&self) -> ServerTlsConfig {
        let config = rustls::ServerConfig::builder_with_provider(getty::tls::provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![self.leaf.der().clone()],
                PrivatePkcs8KeyDer::from(self.leaf_key.serialize_der()).into(),
            )
            .expect("rustls server config");
        ServerTlsConfig::from_rustls(Arc::new(config))
    }

    /// Trusts the CA and verifies the server as "localhost".
    fn client_config(&self) -> ClientTlsConfig {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.der().clone()).expect("add root");
        ClientTlsConfig::with_roots(roots)
            .server_name("localhost")
            .expect("server name")
    }
}

// ----- 1. ws echo ------------------------------------------------------------------

/// Echoes `words` through a getty client session and checks kinds, order
/// and the stats of both sides (bytes are message payloads).
async fn check_getty_echo(
    server: &ServerHandle,
    seen: &Seen,
    url: &str,
    builder: ClientBuilder,
    kinds: (EndpointKind, EndpointKind),
) {
    let words = ["one", "two", "three", "four"];
    let mine_seen = Seen::default();
    let c = ws_client(builder, url, &mine_seen).await;
    let mine = only_session(
        "the client's session",
        || c.session_count(),
        || c.sessions().sessions(),
    )
    .await;
    let theirs = only_session(
        "the server's session",
        || server.session_count(),
        || server.sessions().sessions(),
    )
    .await;
    assert_eq!(mine.kind(), kinds.0);
    assert_eq!(theirs.kind(), kinds.1);
    assert_eq!(mine.local_addr(), theirs.peer_addr());

    for word in words {
        mine.send(Bytes::from(word)).await.unwrap();
    }
    eventually(LIMIT, "every echo", || {
        mine_seen.log.count("message:") == words.len()
    })
    .await;
    let expected: Vec<String> = std::iter::once("open".to_owned())
        .chain(words.iter().map(|w| format!("message:{w}")))
        .collect();
    assert_eq!(mine_seen.events(), expected, "client events, in order");
    assert_eq!(seen.events(), expected, "server events, in order");

    let payload: u64 = words.iter().map(|w| w.len() as u64).sum();
    let n = words.len() as u64;
    let s = theirs.stats();
    assert_eq!((s.packets_in, s.packets_out), (n, n), "server {s}");
    assert_eq!((s.bytes_in, s.bytes_out), (payload, payload), "server {s}");
    let m = mine.stats();
    assert_eq!((m.packets_in, m.packets_out), (n, n), "client {m}");
    assert_eq!((m.bytes_in, m.bytes_out), (payload, payload), "client {m}");

    within(LIMIT, c.shutdown(LIMIT)).await;
    eventually(LIMIT, "the server session closed", || {
        server.session_count() == 0
    })
    .await;
    assert_eq!(mine_seen.log.count("error:"), 0, "{:?}", mine_seen.events());
    assert_eq!(seen.log.count("error:"), 0, "{:?}", seen.events());
    assert_eq!(seen.log.count("close"), 1);
    assert_eq!(mine_seen.log.count("close"), 1);
}

#[tokio::test]
async fn ws_client_and_server_echo_packets_in_order_with_ws_kinds_and_stats() {
    let seen = Seen::default();
    let server = ws_server(Server::builder().websocket("/echo"), &seen).await;
    let url = format!("ws://{}/echo", server.local_addr());
    check_getty_echo(
        &server,
        &seen,
        &url,
        Client::builder(),
        (EndpointKind::WsClient, EndpointKind::WsServer),
    )
    .await;
    assert_eq!(seen.made(), 1);
    within(LIMIT, server.shutdown(LIMIT)).await;
}

// ----- 2. wss echo -----------------------------------------------------------------

#[tokio::test]
async fn wss_client_and_server_echo_packets_in_order_with_wss_kinds_and_stats() {
    let pki = Pki::new();
    let seen = Seen::default();
    let server = ws_server(
        Server::builder()
            .tls(pki.server_config())
            .websocket("/secure"),
        &seen,
    )
    .await;
    // The TCP connection goes to 127.0.0.1; the certificate is verified as
    // "localhost" through the TLS configuration's server name.
    let url = format!("wss://127.0.0.1:{}/secure", server.local_addr().port());
    check_getty_echo(
        &server,
        &seen,
        &url,
        Client::builder().tls(pki.client_config()),
        (EndpointKind::WssClient, EndpointKind::WssServer),
    )
    .await;
    assert_eq!(seen.made(), 1);
    within(LIMIT, server.shutdown(LIMIT)).await;
}

// ----- 3. wrong path -----------------------------------------------------------------

#[tokio::test]
async fn a_handshake_for_another_path_gets_http_404_and_no_session() {
    let seen = Seen::default();
    let server = ws_server(Server::builder().websocket("/echo"), &seen).await;
    let addr = server.local_addr();

    let (head, mut s) = raw_handshake(addr, "/wrong", None).await;
    assert!(
        status_line(&head).starts_with("HTTP/1.1 404"),
        "response: {head:?}"
    );
    until_closed(&mut s).await;
    assert_eq!(server.session_count(), 0);
    assert_eq!(seen.made(), 0);
    assert!(seen.events().is_empty(), "{:?}", seen.events());

    // The same hand-written request for the right path is upgraded, so the
    // 404 was about the path alone, and the server still serves.
    let (head, _s) = raw_handshake(addr, "/echo", None).await;
    assert!(
        status_line(&head).starts_with("HTTP/1.1 101"),
        "response: {head:?}"
    );
    eventually(LIMIT, "a session for the right path", || {
        server.session_count() == 1
    })
    .await;
    assert_eq!(seen.made(), 1);
    // Gone before the shutdown, which would wait for its Close otherwise.
    drop(_s);
    within(LIMIT, server.shutdown(LIMIT)).await;
}

// ----- 4. origin check -----------------------------------------------------------------

#[tokio::test]
async fn check_origin_refuses_a_bad_or_missing_origin_with_403_and_admits_a_good_one() {
    let seen = Seen::default();
    let server = ws_server(
        Server::builder()
            .websocket("/echo")
            .check_origin(|origin| origin == Some("https://good.example")),
        &seen,
    )
    .await;
    let addr = server.local_addr();

    for origin in [Some("https://evil.example"), None] {
        let (head, mut s) = raw_handshake(addr, "/echo", origin).await;
        assert!(
            status_line(&head).starts_with("HTTP/1.1 403"),
            "origin {origin:?}: {head:?}"
        );
        until_closed(&mut s).await;
        assert_eq!(server.session_count(), 0, "origin {origin:?}");
        assert_eq!(seen.made(), 0, "origin {origin:?}");
    }

    let mut ws = raw_ws(addr, "/echo", Some("https://good.example")).await;
    ws.send(Message::binary(&b"from a good origin"[..]))
        .await
        .unwrap();
    assert_eq!(
        next_data(&mut ws).await,
        Message::binary(&b"from a good origin"[..])
    );
    assert_eq!(server.session_count(), 1);
    assert_eq!(seen.made(), 1);
    let theirs = server.sessions().sessions().pop().unwrap();
    assert_eq!(theirs.kind(), EndpointKind::WsServer);
    drop(ws);
    within(LIMIT, server.shutdown(LIMIT)).await;
}

// ----- 5. text messages -----------------------------------------------------------------

#[tokio::test]
async fn a_text_message_is_refused_by_default_with_close_code_1003_then_error_and_close() {
    let seen = Seen::default();
    let server = ws_server(Server::builder().websocket("/echo"), &seen).await;
    let mut ws = raw_ws(server.local_addr(), "/echo", None).await;
    // A binary message first: the session works.
    ws.send(Message::binary(&b"bin"[..])).await.unwrap();
    assert_eq!(next_data(&mut ws).await, Message::binary(&b"bin"[..]));

    ws.send(Message::text("hello")).await.unwrap();
    let close = next_close(&mut ws).await;
    assert_eq!(close.code, CloseCode::Unsupported, "{close:?}");
    assert_eq!(u16::from(close.code), 1003);

    eventually(LIMIT, "the server session closed", || {
        seen.log.count("close") == 1
    })
    .await;
    let events = seen.events();
    assert_eq!(events.len(), 4, "events: {events:?}");
    assert_eq!(events[..2], ["open", "message:bin"], "events: {events:?}");
    assert!(events[2].starts_with("error:"), "events: {events:?}");
    assert!(
        events[2].contains("text messages are not accepted"),
        "events: {events:?}"
    );
    assert_eq!(events[3], "close", "events: {events:?}");
    assert_eq!(server.session_count(), 0);
    within(LIMIT, server.shutdown(LIMIT)).await;
}

#[tokio::test]
async fn with_accept_text_messages_a_text_message_is_a_packet_echoed_as_binary() {
    let seen = Seen::default();
    let server = ws_server(
        Server::builder()
            .websocket("/echo")
            .accept_text_messages(true),
        &seen,
    )
    .await;
    let mut ws = raw_ws(server.local_addr(), "/echo", None).await;
    ws.send(Message::text("héllo")).await.unwrap();
    assert_eq!(
        next_data(&mut ws).await,
        Message::binary("héllo".as_bytes().to_vec())
    );
    ws.send(Message::binary(&b"and binary"[..])).await.unwrap();
    assert_eq!(
        next_data(&mut ws).await,
        Message::binary(&b"and binary"[..])
    );
    assert_eq!(
        seen.events(),
        ["open", "message:héllo", "message:and binary"]
    );

    ws.close(None).await.unwrap();
    eventually(LIMIT, "the server session closed", || {
        seen.log.count("close") == 1
    })
    .await;
    assert_eq!(seen.log.count("error:"), 0, "{:?}", seen.events());
    within(LIMIT, server.shutdown(LIMIT)).await;
}

// ----- 6. message too large -----------------------------------------------------------------

#[tokio::test]
async fn a_message_above_max_packet_len_closes_with_code_1009_after_an_error_event() {
    let seen = Seen::default();
    let server = ws_server(
        Server::builder()
            .session_config(SessionConfig::default().max_packet_len(1024))
            .websocket("/echo"),
        &seen,
    )
    .await;
    let mut ws = raw_ws(server.local_addr(), "/echo", None).await;
    // Exactly the limit is a packet.
    ws.send(Message::binary(vec![b'a'; 1024])).await.unwrap();
    assert_eq!(next_data(&mut ws).await, Message::binary(vec![b'a'; 1024]));

    ws.send(Message::binary(vec![b'x'; 4096])).await.unwrap();
    let close = next_close(&mut ws).await;
    assert_eq!(close.code, CloseCode::Size, "{close:?}");
    assert_eq!(u16::from(close.code), 1009);

    eventually(LIMIT, "the server session closed", || {
        seen.log.count("close") == 1
    })
    .await;
    let events = seen.events();
    assert_eq!(events.len(), 4, "events: {events:?}");
    assert_eq!(events[0], "open");
    assert_eq!(events[1], format!("message:{}", "a".repeat(1024)));
    assert!(
        events[2].starts_with("error:packet_too_large:"),
        "events: {events:?}"
    );
    assert_eq!(events[3], "close");
    within(LIMIT, server.shutdown(LIMIT)).await;
}

// ----- 7. pings and activity -----------------------------------------------------------------

#[tokio::test]
async fn the_server_sends_a_ping_on_every_cron_tick() {
    let seen = Seen::default();
    let server = ws_server(
        Server::builder()
            .session_config(SessionConfig::default().cron_period(Some(Duration::from_millis(100))))
            .websocket("/echo"),
        &seen,
    )
    .await;
    let mut ws = raw_ws(server.local_addr(), "/echo", None).await;
    let mut arrivals = Vec::new();
    within(LIMIT, async {
        while arrivals.len() < 4 {
            match ws.next().await {
                Some(Ok(Message::Ping(_))) => arrivals.push(Instant::now()),
                other => panic!("expected pings only, got {other:?}"),
            }
        }
    })
    .await;
    // One ping per tick, not a burst: the first and the fourth are three
    // periods (300 ms) apart, give or take a late first arrival.
    let spread = arrivals[3] - arrivals[0];
    assert!(
        spread >= Duration::from_millis(200),
        "4 pings within {spread:?}"
    );
    assert!(seen.log.count("tick") >= 4, "{:?}", seen.log.events());
    // No data message is involved: pings are not packets.
    let theirs = server.sessions().sessions().pop().expect("the session");
    assert_eq!(theirs.stats().packets_out, 0);
    assert!(seen.log.count("tick") >= 3, "{:?}", seen.log.events());
    drop(ws);
    within(LIMIT, server.shutdown(LIMIT)).await;
}

#[tokio::test]
async fn pongs_keep_active_moving_so_an_active_based_heartbeat_keeps_a_quiet_peer() {
    let idle_limit = Duration::from_millis(1000);
    let seen = Seen {
        idle_limit: Some(idle_limit),
        ..Seen::default()
    };
    // The deaf peer below never answers the server's Close: a short wait
    // time keeps the server from waiting long for it.
    let server = ws_server(
        Server::builder()
            .session_config(
                SessionConfig::default()
                    .cron_period(Some(Duration::from_millis(100)))
                    .wait_time(Duration::from_millis(300)),
            )
            .websocket("/echo"),
        &seen,
    )
    .await;
    let addr = server.local_addr();

    // A peer that sends no data but keeps reading: tungstenite answers each
    // ping with a pong.
    let mut ws = raw_ws(addr, "/echo", None).await;
    let pings = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&pings);
    let reader = tokio::spawn(async move {
        while let Some(Ok(m)) = ws.next().await {
            if m.is_ping() {
                counted.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    let theirs = only_session(
        "the server session",
        || server.session_count(),
        || server.sessions().sessions(),
    )
    .await;

    // active() moves forward between ticks while no packet arrives.
    let a0 = theirs.active();
    eventually(LIMIT, "active() to move forward", || theirs.active() > a0).await;
    let a1 = theirs.active();
    eventually(LIMIT, "active() to move forward again", || {
        theirs.active() > a1
    })
    .await;
    assert_eq!(theirs.stats().packets_in, 0, "no data was sent");

    // Well past the idle limit, the heartbeat has not closed the session.
    eventually(Duration::from_secs(10), "16 ticks (1.6 s)", || {
        seen.log.count("tick") >= 16
    })
    .await;
    assert!(!theirs.is_closed(), "{:?}", seen.events());
    assert_eq!(seen.log.count("error:"), 0, "{:?}", seen.events());
    assert!(pings.load(Ordering::SeqCst) >= 10, "pings answered");
    assert!(
        theirs.active().elapsed() < idle_limit,
        "active {:?} ago",
        theirs.active().elapsed()
    );

    // The contrast: a peer that never reads never answers, its session's
    // active() stands still, and the same heartbeat closes it (close code
    // 1008 for an error the application raised).
    // It is a raw socket after a hand-written handshake: a tungstenite
    // client would try to answer the pings once it reads.
    let (head, mut deaf) = raw_handshake(addr, "/echo", None).await;
    assert!(status_line(&head).starts_with("HTTP/1.1 101"), "{head:?}");
    eventually(LIMIT, "the deaf peer's session", || {
        server.session_count() == 2
    })
    .await;
    eventually(
        Duration::from_secs(10),
        "the deaf peer's session closed",
        || server.session_count() == 1,
    )
    .await;
    assert!(
        seen.events()
            .iter()
            .any(|e| e.starts_with("error:raised:idle")),
        "{:?}",
        seen.events()
    );
    let (code, deaf_pings) = raw_close_code(&mut deaf).await;
    assert_eq!(code, u16::from(CloseCode::Policy));
    assert!(deaf_pings >= 5, "{deaf_pings} pings before the close");
    // The answering peer is still there.
    assert!(!theirs.is_closed());

    reader.abort();
    within(LIMIT, server.shutdown(LIMIT)).await;
}

// ----- 8. normal close -----------------------------------------------------------------

#[tokio::test]
async fn closing_a_session_sends_close_code_1000() {
    let seen = Seen::default();
    let server = ws_server(Server::builder().websocket("/echo"), &seen).await;
    let mut ws = raw_ws(server.local_addr(), "/echo", None).await;
    let theirs = only_session(
        "the server session",
        || server.session_count(),
        || server.sessions().sessions(),
    )
    .await;
    theirs.close();
    let close = next_close(&mut ws).await;
    assert_eq!(close.code, CloseCode::Normal, "{close:?}");
    assert_eq!(u16::from(close.code), 1000);
    eventually(LIMIT, "the server session closed", || {
        seen.log.count("close") == 1
    })
    .await;
    assert_eq!(seen.events(), ["open", "close"]);
    within(LIMIT, server.shutdown(LIMIT)).await;
}

/// A close the client starts is answered with the server's own close
/// frame, so the client sees a clean close (1000), not an abnormal one.
#[tokio::test]
async fn a_close_the_client_starts_is_answered_with_a_close_frame() {
    let seen = Seen::default();
    let server = ws_server(Server::builder().websocket("/echo"), &seen).await;
    let mut ws = raw_ws(server.local_addr(), "/echo", None).await;
    only_session(
        "the server session",
        || server.session_count(),
        || server.sessions().sessions(),
    )
    .await;
    ws.send(Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    })))
    .await
    .unwrap();
    let reply = next_close(&mut ws).await;
    assert_eq!(reply.code, CloseCode::Normal, "{reply:?}");
    eventually(LIMIT, "the server session closed", || {
        seen.log.count("close") == 1
    })
    .await;
    within(LIMIT, server.shutdown(LIMIT)).await;
}

// ----- 9. interop with Python's websockets -----------------------------------------------------

/// Connects to argv[1], sends three binary messages, checks their echoes,
/// closes normally and prints "ok".
const PYTHON_CLIENT: &str = r#"
import asyncio, sys
try:
    import websockets
except ImportError as e:
    sys.stderr.write("the Python package 'websockets' is missing (%s): run python3 -m pip install websockets\n" % e)
    sys.exit(3)

async def main(url):
    sent = [b"alpha", b"beta", b"\x00\x01\x02 gamma"]
    async with websockets.connect(url) as ws:
        for m in sent:
            await ws.send(m)
        for m in sent:
            got = await asyncio.wait_for(ws.recv(), 5)
            if got != m:
                sys.stderr.write("expected %r, got %r\n" % (m, got))
                sys.exit(1)
    print("ok")

asyncio.run(asyncio.wait_for(main(sys.argv[1]), 15))
"#;

#[tokio::test]
async fn pythons_websockets_client_echoes_three_binary_messages() {
    let seen = Seen::default();
    let server = ws_server(Server::builder().websocket("/py"), &seen).await;
    let url = format!("ws://{}/py", server.local_addr());
    let (ok, stdout, stderr) = tokio::task::spawn_blocking(move || {
        ws_raw::run_python(PYTHON_CLIENT, &[&url], Duration::from_secs(20))
    })
    .await
    .expect("python runner");
    assert!(
        ok,
        "the Python client failed; stdout {stdout:?}, stderr {stderr:?}"
    );
    assert_eq!(stdout.trim(), "ok", "stderr {stderr:?}");

    eventually(LIMIT, "the Python client's session closed", || {
        seen.log.count("close") == 1
    })
    .await;
    assert_eq!(seen.made(), 1);
    assert_eq!(
        seen.events(),
        [
            "open",
            "message:alpha",
            "message:beta",
            &format!("message:{}", String::from_utf8_lossy(b"\x00\x01\x02 gamma")),
            "close"
        ]
    );
    let stats = seen.closed_stats();
    assert_eq!(stats.len(), 1);
    assert_eq!(
        (stats[0].packets_in, stats[0].packets_out),
        (3, 3),
        "{}",
        stats[0]
    );
    assert_eq!(server.session_count(), 0);
    within(LIMIT, server.shutdown(LIMIT)).await;
}

// ----- 10. reconnect -----------------------------------------------------------------

#[tokio::test]
async fn a_ws_client_reconnects_after_the_server_closes_its_session() {
    let seen = Seen::default();
    let server = ws_server(Server::builder().websocket("/echo"), &seen).await;
    let url = format!("ws://{}/echo", server.local_addr());
    let mine_seen = Seen::default();
    let c = ws_client(
        Client::builder()
            .connection_number(1)
            .reconnect_interval(Duration::from_millis(50)),
        &url,
        &mine_seen,
    )
    .await;
    let first = only_session(
        "the first server session",
        || server.session_count(),
        || server.sessions().sessions(),
    )
    .await;
    let first_mine = only_session(
        "the first client session",
        || c.session_count(),
        || c.sessions().sessions(),
    )
    .await;

    first.close();
    eventually(LIMIT, "a second session on both sides", || {
        let server_new = server
            .sessions()
            .sessions()
            .iter()
            .any(|s| s.id() != first.id());
        let client_new = c
            .sessions()
            .sessions()
            .iter()
            .any(|s| s.id() != first_mine.id());
        server_new && client_new
    })
    .await;
    assert_eq!(seen.made(), 2);
    assert_eq!(mine_seen.made(), 2);
    assert!(first_mine.is_closed());

    // The new session works.
    let second = c.sessions().sessions().pop().unwrap();
    assert_eq!(second.kind(), EndpointKind::WsClient);
    second.send(Bytes::from_static(b"again")).await.unwrap();
    eventually(LIMIT, "the echo on the new session", || {
        mine_seen.log.count("message:again") == 1
    })
    .await;
    assert_eq!(
        mine_seen.events(),
        ["open", "close", "open", "message:again"]
    );
    assert_eq!(mine_seen.log.count("error:"), 0, "{:?}", mine_seen.events());

    within(LIMIT, c.shutdown(LIMIT)).await;
    within(LIMIT, server.shutdown(LIMIT)).await;
}

// ----- 11. handshake timeout -----------------------------------------------------------------

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_handshake_timeout_without_a_session() {
    let seen = Seen::default();
    let server = ws_server(
        Server::builder()
            .handshake_timeout(Duration::from_millis(200))
            .websocket("/echo"),
        &seen,
    )
    .await;
    let start = Instant::now();
    let mut s = TcpStream::connect(server.local_addr()).await.unwrap();
    until_closed(&mut s).await;
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(200), "closed after {took:?}");
    assert!(took < Duration::from_secs(3), "closed after {took:?}");
    assert_eq!(server.session_count(), 0);
    assert_eq!(seen.made(), 0);
    assert!(seen.events().is_empty(), "{:?}", seen.events());

    // A prompt handshake on the same server still works.
    let mut ws = raw_ws(server.local_addr(), "/echo", None).await;
    ws.send(Message::binary(&b"prompt"[..])).await.unwrap();
    assert_eq!(next_data(&mut ws).await, Message::binary(&b"prompt"[..]));
    drop(ws);
    within(LIMIT, server.shutdown(LIMIT)).await;
}

// ----- 12. one packet per message -----------------------------------------------------------------

#[tokio::test]
async fn a_message_carrying_two_length_prefixed_packets_is_a_codec_error_closed_with_1007() {
    let seen = Seen::default();
    let server = Server::builder()
        .websocket("/len")
        .bind("127.0.0.1:0")
        .await
        .expect("bind");
    let s = seen.clone();
    let server = server.serve(
        LengthCodec::new(),
        new_session_fn(move |_: &Session| {
            s.made.fetch_add(1, Ordering::SeqCst);
            Ok::<_, BoxError>(ListenerService::new(Rec {
                seen: s.clone(),
                echo: true,
            }))
        }),
    );
    let mut ws = raw_ws(server.local_addr(), "/len", None).await;
    // One length-prefixed packet per message is fine.
    ws.send(Message::binary(frame(b"one"))).await.unwrap();
    assert_eq!(next_data(&mut ws).await, Message::binary(frame(b"one")));

    let mut two = frame(b"two");
    two.extend_from_slice(&frame(b"three"));
    ws.send(Message::binary(two)).await.unwrap();
    let close = next_close(&mut ws).await;
    assert_eq!(close.code, CloseCode::Invalid, "{close:?}");
    assert_eq!(u16::from(close.code), 1007);

    eventually(LIMIT, "the server session closed", || {
        seen.log.count("close") == 1
    })
    .await;
    let events = seen.events();
    assert_eq!(events.len(), 4, "events: {events:?}");
    assert_eq!(events[..2], ["open", "message:one"], "events: {events:?}");
    assert!(
        events[2].starts_with("error:codec:") && events[2].contains("more than one packet"),
        "events: {events:?}"
    );
    assert_eq!(events[3], "close");
    within(LIMIT, server.shutdown(LIMIT)).await;
}
