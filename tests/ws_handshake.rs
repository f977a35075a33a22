//! The WebSocket opening handshake over 127.0.0.1 (RFC 6455 §4.2): every
//! request that is not a valid upgrade for the server's path gets an HTTP
//! answer saying why, with no session; wss has one deadline for TLS and
//! the upgrade together; and the builder's WebSocket options do not depend
//! on the order they are set in.

mod common;
mod ws_raw;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use common::{eventually, within, Log};
use getty::{
    new_session_fn,
    tls::{
        rustls::{self, pki_types::PrivatePkcs8KeyDer, RootCertStore},
        ServerTlsConfig,
    },
    BoxError, ListenerService, Server, Session,
};
use rcgen::{CertificateParams, KeyPair};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::Instant,
};
use tokio_util::codec::BytesCodec;
use ws_raw::*;

const LIMIT: Duration = Duration::from_secs(5);

/// A request to `addr` with `lines` as its request line and headers.
fn request(lines: &[&str]) -> Vec<u8> {
    let mut r = lines.join("\r\n");
    r.push_str("\r\n\r\n");
    r.into_bytes()
}

// ----- answers to requests that are not upgrades --------------------------------------

#[tokio::test]
async fn each_refused_handshake_gets_the_http_status_rfc_6455_asks_for_and_no_session() {
    let (server, log) = recording_echo(Server::builder().websocket("/ws")).await;
    let addr = server.local_addr();
    let host = format!("Host: {addr}");
    let host = host.as_str();
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "a plain GET for another path",
            request(&["GET /index.html HTTP/1.1", host]),
            404,
        ),
        (
            "an upgrade for another path",
            upgrade_request(addr, "/elsewhere").into_bytes(),
            404,
        ),
        (
            "a plain GET for the WebSocket path",
            request(&["GET /ws HTTP/1.1", host]),
            426,
        ),
        (
            "a POST upgrade",
            request(&[
                "POST /ws HTTP/1.1",
                host,
                "Upgrade: websocket",
                "Connection: Upgrade",
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                "Sec-WebSocket-Version: 13",
            ]),
            400,
        ),
        (
            "an HTTP/1.0 upgrade",
            request(&[
                "GET /ws HTTP/1.0",
                host,
                "Upgrade: websocket",
                "Connection: Upgrade",
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                "Sec-WebSocket-Version: 13",
            ]),
            400,
        ),
        (
            "a key that is not 16 bytes in base64",
            request(&[
                "GET /ws HTTP/1.1",
                host,
                "Upgrade: websocket",
                "Connection: Upgrade",
                "Sec-WebSocket-Key: not-a-key",
                "Sec-WebSocket-Version: 13",
            ]),
            400,
        ),
        (
            "no key",
            request(&[
                "GET /ws HTTP/1.1",
                host,
                "Upgrade: websocket",
                "Connection: Upgrade",
                "Sec-WebSocket-Version: 13",
            ]),
            400,
        ),
        (
            "no Connection: Upgrade",
            request(&[
                "GET /ws HTTP/1.1",
                host,
                "Upgrade: websocket",
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                "Sec-WebSocket-Version: 13",
            ]),
            400,
        ),
        (
            "no Host",
            request(&[
                "GET /ws HTTP/1.1",
                "Upgrade: websocket",
                "Connection: Upgrade",
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                "Sec-WebSocket-Version: 13",
            ]),
            400,
        ),
        (
            "not HTTP at all",
            b"\x16\x03\x01\x02\x00 hello\r\n\r\n".to_vec(),
            400,
        ),
    ];
    for (what, bytes, expected) in cases {
        let (head, mut s) = send_request(addr, &bytes).await;
        assert_eq!(status(&head), Some(expected), "{what}: {head:?}");
        // Done, as an HTTP client would be: the server may close at once.
        s.shutdown().await.expect("shutdown");
        assert_ne!(
            read_to_end(&mut s, LIMIT).await,
            End::Open,
            "{what}: the connection stayed open"
        );
    }

    // An unsupported version is told which one is.
    let (head, _s) = send_request(
        addr,
        &request(&[
            "GET /ws HTTP/1.1",
            host,
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version: 8",
        ]),
    )
    .await;
    assert_eq!(status(&head), Some(426), "{head:?}");
    assert_eq!(
        header(&head, "Sec-WebSocket-Version"),
        Some("13"),
        "{head:?}"
    );

    assert_eq!(server.session_count(), 0);
    assert!(log.events().is_empty(), "{:?}", log.events());

    // The server still upgrades a good request, with the RFC's sample answer.
    let (head, _s) =
        send_request(addr, upgrade_request(addr, "/ws?query=ignored").as_bytes()).await;
    assert_eq!(status(&head), Some(101), "{head:?}");
    assert_eq!(
        header(&head, "Sec-WebSocket-Accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "{head:?}"
    );
    eventually(LIMIT, "a session", || server.session_count() == 1).await;
    drop(_s);
    within(LIMIT, server.shutdown(LIMIT)).await;
}

#[tokio::test]
async fn headers_above_8_kib_or_above_64_fields_get_431_and_no_session() {
    let (server, log) = recording_echo(Server::builder().websocket("/ws")).await;
    let addr = server.local_addr();
    let upgrade = |extra: &str| {
        format!(
            "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
        )
    };
    // 20 long fields: 18 KB in all, well within 64 fields.
    let long: String = (0..20)
        .map(|i| format!("X-Long-{i}: {}\r\n", "l".repeat(900)))
        .collect();
    // 70 short fields: under 2 KB, but more fields than the server parses.
    let many: String = (0..70).map(|i| format!("X-Many-{i}: m\r\n")).collect();
    for (what, extra) in [("a head above 8 KiB", long), ("70 header fields", many)] {
        let (head, mut s) = send_request(addr, upgrade(&extra).as_bytes()).await;
        assert_eq!(status(&head), Some(431), "{what}: {head:?}");
        s.shutdown().await.expect("shutdown");
        assert_ne!(read_to_end(&mut s, LIMIT).await, End::Open, "{what}");
    }
    assert_eq!(server.session_count(), 0);
    assert!(log.events().is_empty(), "{:?}", log.events());
    // Just under the bound is fine.
    let fits: String = (0..7)
        .map(|i| format!("X-Fits-{i}: {}\r\n", "f".repeat(1000)))
        .collect();
    assert!(upgrade(&fits).len() < 8 * 1024);
    let (head, s) = send_request(addr, upgrade(&fits).as_bytes()).await;
    assert_eq!(status(&head), Some(101), "{head:?}");
    drop(s);
    within(LIMIT, server.shutdown(LIMIT)).await;
}

// ----- bytes that follow a head -----------------------------------------------------

/// A client may send its first frame with the upgrade request, in the same
/// write: the frame is not lost with the request's buffer.
#[tokio::test]
async fn a_frame_sent_with_the_upgrade_request_is_read_as_the_first_message() {
    let (server, log) = recording_echo(Server::builder().websocket("/ws")).await;
    let addr = server.local_addr();
    let mut bytes = upgrade_request(addr, "/ws").into_bytes();
    bytes.extend_from_slice(&client_frame(true, BINARY, b"eager"));
    let (head, mut s) = send_request(addr, &bytes).await;
    assert_eq!(status(&head), Some(101), "{head:?}");
    assert_eq!(read_data(&mut s, 64).await.payload, b"eager");
    assert_eq!(log.events(), ["open", "message:eager"]);
    drop(s);
    within(LIMIT, server.shutdown(LIMIT)).await;
}

/// A server may send its first frame with its 101 answer: the getty client
/// reads it as its first packet.
#[tokio::test]
async fn a_frame_sent_with_the_101_answer_reaches_a_getty_client() {
    use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let raw_server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.expect("accept");
        let mut request = Vec::new();
        while !request.ends_with(b"\r\n\r\n") && request.len() < 8192 {
            let mut byte = [0u8; 1];
            if s.read(&mut byte).await.expect("read the request") == 0 {
                break;
            }
            request.push(byte[0]);
        }
        let request = String::from_utf8_lossy(&request).into_owned();
        let key = header(&format!("\r\n{request}"), "Sec-WebSocket-Key")
            .expect("a key")
            .to_owned();
        let mut answer = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n\r\n",
            derive_accept_key(key.as_bytes())
        )
        .into_bytes();
        // An unmasked server frame in the same write as the answer.
        answer.extend_from_slice(&frame_with(true, 0, BINARY, None, b"early"));
        s.write_all(&answer).await.expect("answer");
        // Keep the connection until the test is done with it.
        let mut sink = [0u8; 1024];
        while let Ok(n) = s.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    });
    let log = Log::default();
    let l = log.clone();
    // The raw server never answers a Close: a short wait time ends the
    // client's close early.
    let client = getty::Client::builder()
        .session_config(getty::SessionConfig::default().wait_time(Duration::from_millis(200)))
        .connect_ws(
            &format!("ws://{addr}/x"),
            BytesCodec::new(),
            new_session_fn(move |_: &Session| {
                Ok::<_, BoxError>(ListenerService::new(Echo { log: l.clone() }))
            }),
        )
        .await
        .expect("a ws URL");
    eventually(LIMIT, "the early message", || {
        log.count("message:early") == 1
    })
    .await;
    client.close();
    within(LIMIT, client.closed()).await;
    raw_server.abort();
}

// ----- the options, in either order --------------------------------------------------

#[tokio::test]
async fn check_origin_applies_whether_it_is_set_before_or_after_websocket() {
    let good = |origin: Option<&str>| origin == Some("https://good.example");
    for builder in [
        Server::builder().check_origin(good).websocket("/ws"),
        Server::builder().websocket("/ws").check_origin(good),
    ] {
        let (server, log) = recording_echo(builder).await;
        let addr = server.local_addr();
        let mut evil = upgrade_request(addr, "/ws");
        evil.insert_str(evil.len() - 2, "Origin: https://evil.example\r\n");
        let (head, _s) = send_request(addr, evil.as_bytes()).await;
        assert_eq!(status(&head), Some(403), "{head:?}");
        let mut fine = upgrade_request(addr, "/ws");
        fine.insert_str(fine.len() - 2, "Origin: https://good.example\r\n");
        let (head, _s) = send_request(addr, fine.as_bytes()).await;
        assert_eq!(status(&head), Some(101), "{head:?}");
        eventually(LIMIT, "one session", || server.session_count() == 1).await;
        assert_eq!(log.events(), ["open"]);
        drop(_s);
        within(LIMIT, server.shutdown(LIMIT)).await;
    }
}

#[tokio::test]
async fn accept_text_messages_applies_whether_it_is_set_before_or_after_websocket() {
    for builder in [
        Server::builder()
            .accept_text_messages(true)
            .websocket("/ws"),
        Server::builder()
            .websocket("/ws")
            .accept_text_messages(true),
    ] {
        let (server, log) = recording_echo(builder).await;
        let mut s = connect(server.local_addr(), "/ws").await;
        s.write_all(&client_frame(true, TEXT, b"words"))
            .await
            .expect("write");
        let echo = read_data(&mut s, 64).await;
        assert_eq!(
            (echo.opcode, echo.payload.as_slice()),
            (BINARY, &b"words"[..])
        );
        assert_eq!(log.events(), ["open", "message:words"]);
        drop(s);
        within(LIMIT, server.shutdown(LIMIT)).await;
    }
}

// ----- wss: one deadline ----------------------------------------------------------------

/// A certificate for "localhost" and a matching client configuration.
fn tls_pair() -> (ServerTlsConfig, Arc<rustls::ClientConfig>) {
    let key = KeyPair::generate().expect("key");
    let cert = CertificateParams::new(vec!["localhost".to_owned()])
        .expect("params")
        .self_signed(&key)
        .expect("self-signed");
    let server = rustls::ServerConfig::builder_with_provider(getty::tls::provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        )
        .expect("server config");
    let mut roots = RootCertStore::empty();
    roots.add(cert.der().clone()).expect("root");
    let client = rustls::ClientConfig::builder_with_provider(getty::tls::provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    (
        ServerTlsConfig::from_rustls(Arc::new(server)),
        Arc::new(client),
    )
}

/// A TLS client that waits `delay` before its ClientHello, then completes
/// TLS and sends nothing: the WebSocket upgrade stalls.
async fn slow_tls_then_silence(
    addr: SocketAddr,
    client: Arc<rustls::ClientConfig>,
    delay: Duration,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    tokio::time::sleep(delay).await;
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    tokio_rustls::TlsConnector::from(client)
        .connect(name, tcp)
        .await
        .expect("TLS handshake")
}

#[tokio::test]
async fn on_wss_the_handshake_timeout_bounds_tls_and_the_upgrade_together() {
    let timeout = Duration::from_millis(1200);
    let (server_tls, client_tls) = tls_pair();
    let (server, log) = recording_echo(
        Server::builder()
            .tls(server_tls)
            .websocket("/ws")
            .handshake_timeout(timeout),
    )
    .await;
    let start = Instant::now();
    let mut tls =
        slow_tls_then_silence(server.local_addr(), client_tls, Duration::from_millis(800)).await;
    let mut buf = [0u8; 64];
    let ended = within(LIMIT, tls.read(&mut buf)).await;
    let took = start.elapsed();
    assert!(matches!(ended, Ok(0) | Err(_)), "{ended:?}");
    assert!(
        took >= timeout - Duration::from_millis(100),
        "closed after {took:?}"
    );
    assert!(
        took < timeout + Duration::from_millis(500),
        "closed after {took:?}, though the handshake timeout is {timeout:?} in all"
    );
    assert_eq!(server.session_count(), 0);
    assert!(log.events().is_empty(), "{:?}", log.events());
    within(LIMIT, server.shutdown(LIMIT)).await;
}
