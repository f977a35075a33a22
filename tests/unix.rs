//! Unix domain sockets: a getty server bound to a path, getty and raw
//! clients, the socket file's life, binding errors, and one listener run
//! unchanged over TCP and Unix.

mod common;
#[path = "support/tls.rs"]
mod tls_support;

use std::{
    os::unix::fs::FileTypeExt,
    path::{Path, PathBuf},
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use bytes::Bytes;
use common::*;
use getty::{
    codec::LengthCodec, new_session_fn, Addr, BoxError, Client, EndpointKind, Error, EventListener,
    ListenerService, Server, Session,
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::UnixStream,
};

const LIMIT: Duration = Duration::from_secs(5);

/// A unique socket path under the temp dir, removed (if still there) on drop.
struct SockPath(PathBuf);

impl SockPath {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "getty-unix-{}-{}.sock",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&path);
        SockPath(path)
    }
}

impl std::ops::Deref for SockPath {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for SockPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn is_socket(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

fn client_side(
    log: &Log,
) -> impl tower::Service<
    Session,
    Response = ListenerService<ClientSide>,
    Error = BoxError,
    Future = impl Send + 'static,
> + Clone
       + Send
       + 'static {
    let log = log.clone();
    new_session_fn(move |_: &Session| {
        Ok::<_, BoxError>(ListenerService::new(ClientSide { log: log.clone() }))
    })
}

/// Writes one length-prefixed frame on any stream.
async fn send_frame<S: AsyncWrite + Unpin>(s: &mut S, payload: &[u8]) {
    s.write_all(&frame(payload)).await.expect("write frame");
}

/// Reads one length-prefixed frame from any stream (5 s limit).
async fn recv_frame<S: AsyncRead + Unpin>(s: &mut S) -> Vec<u8> {
    within(LIMIT, async {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).await.expect("read length");
        let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut buf).await.expect("read payload");
        buf
    })
    .await
}

// ----- 1. getty client and server over a Unix socket ------------------------------

#[tokio::test]
async fn a_unix_socket_server_and_client_echo_with_unix_kinds_and_addresses() {
    let path = SockPath::new();
    let server = Server::builder().bind_unix(&*path).expect("bind_unix");
    assert_eq!(server.addr(), &Addr::Unix(Some(path.to_path_buf())));
    let (server, server_log) = serve_recording(server);
    assert_eq!(server.addr(), &Addr::Unix(Some(path.to_path_buf())));
    assert_eq!(server.addr().as_socket_addr(), None);
    assert_eq!(
        server.addr().to_string(),
        format!("unix:{}", path.display())
    );

    let log = Log::default();
    let c = Client::builder()
        .connect_unix(&*path, LengthCodec::new(), client_side(&log))
        .await
        .expect("connect");
    eventually(LIMIT, "a session on each side", || {
        c.session_count() == 1 && server.session_count() == 1
    })
    .await;
    let mine = c.sessions().sessions().pop().unwrap();
    let theirs = server.sessions().sessions().pop().unwrap();
    assert_eq!(mine.kind(), EndpointKind::UnixClient);
    assert_eq!(theirs.kind(), EndpointKind::UnixServer);
    assert_eq!(theirs.local_addr(), &Addr::Unix(Some(path.to_path_buf())));
    assert_eq!(mine.peer_addr(), &Addr::Unix(Some(path.to_path_buf())));
    // The connecting end is unnamed.
    assert_eq!(theirs.peer_addr(), &Addr::Unix(None));
    assert_eq!(mine.local_addr(), &Addr::Unix(None));

    mine.send(Bytes::from_static(b"over")).await.unwrap();
    mine.send(Bytes::from_static(b"unix")).await.unwrap();
    eventually(LIMIT, "both echoes", || log.count("message:") == 2).await;
    assert_eq!(log.events(), ["open", "message:over", "message:unix"]);
    assert_eq!(
        server_log.events(),
        ["open", "message:over", "message:unix"]
    );
    let wire = (frame(b"over").len() + frame(b"unix").len()) as u64;
    let s = theirs.stats();
    assert_eq!(
        (s.bytes_in, s.bytes_out, s.packets_in, s.packets_out),
        (wire, wire, 2, 2)
    );

    c.close();
    within(LIMIT, c.closed()).await;
    eventually(LIMIT, "the server session closed", || {
        server.session_count() == 0
    })
    .await;
    assert_eq!(server_log.count("close"), 1);
    assert_eq!(log.count("error:"), 0, "{:?}", log.events());
    within(LIMIT, server.shutdown(LIMIT)).await;
}

#[tokio::test]
#[should_panic(expected = "no IP address")]
async fn local_addr_of_a_unix_server_panics_pointing_to_addr() {
    let path = SockPath::new();
    let server: Server = Server::builder().bind_unix(&*path).expect("bind_unix");
    let _ = server.local_addr();
}

#[tokio::test]
async fn a_unix_client_with_nothing_listening_retries_and_gives_up() {
    let path = SockPath::new();
    let log = Log::default();
    let c = Client::builder()
        .reconnect_interval(Duration::from_millis(20))
        .max_reconnect_attempts(Some(3))
        .connect_unix(&*path, LengthCodec::new(), client_side(&log))
        .await
        .expect_err("the first attempt fails")
        .into_client()
        .expect("a well-formed target");
    within(LIMIT, c.closed()).await;
    assert!(c.is_closed());
    assert_eq!(c.session_count(), 0);
    assert!(log.events().is_empty());
}

#[tokio::test]
async fn a_unix_client_reconnects_after_losing_its_session() {
    let path = SockPath::new();
    let (server, server_log) = serve_recording(Server::builder().bind_unix(&*path).unwrap());
    let log = Log::default();
    let c = Client::builder()
        .reconnect_interval(Duration::from_millis(20))
        .connect_unix(&*path, LengthCodec::new(), client_side(&log))
        .await
        .expect("connect");
    eventually(LIMIT, "the first session", || server.session_count() == 1).await;
    let first = server.sessions().sessions().pop().unwrap();
    first.close();
    eventually(LIMIT, "a second session", || server_log.count("open") == 2).await;
    eventually(LIMIT, "the client is back", || c.session_count() == 1).await;
    let s = c.sessions().sessions().pop().unwrap();
    s.send(Bytes::from_static(b"again")).await.unwrap();
    eventually(LIMIT, "the echo", || log.count("message:again") == 1).await;
    c.close();
    within(LIMIT, c.closed()).await;
    within(LIMIT, server.shutdown(LIMIT)).await;
}

// ----- 2. a raw Unix-socket client --------------------------------------------------

#[tokio::test]
async fn a_raw_unix_stream_client_speaks_the_same_framing() {
    let path = SockPath::new();
    let (server, server_log) = serve_recording(Server::builder().bind_unix(&*path).unwrap());

    let mut raw = UnixStream::connect(&*path).await.expect("connect");
    send_frame(&mut raw, b"first").await;
    assert_eq!(recv_frame(&mut raw).await, b"first");
    // Two frames in one write, and one frame split across writes.
    let mut two = frame(b"a");
    two.extend_from_slice(&frame(b"bc"));
    raw.write_all(&two).await.unwrap();
    assert_eq!(recv_frame(&mut raw).await, b"a");
    assert_eq!(recv_frame(&mut raw).await, b"bc");
    let split = frame(b"split");
    raw.write_all(&split[..3]).await.unwrap();
    raw.flush().await.unwrap();
    raw.write_all(&split[3..]).await.unwrap();
    assert_eq!(recv_frame(&mut raw).await, b"split");
    assert_eq!(
        server_log.events(),
        [
            "open",
            "message:first",
            "message:a",
            "message:bc",
            "message:split"
        ]
    );

    // Closing the raw end ends the session cleanly.
    drop(raw);
    eventually(LIMIT, "the session closed", || server.session_count() == 0).await;
    assert_eq!(server_log.count("close"), 1);
    assert_eq!(server_log.count("error:"), 0, "{:?}", server_log.events());
    within(LIMIT, server.shutdown(LIMIT)).await;
}

#[tokio::test]
async fn shutdown_closes_a_raw_unix_client_with_eof() {
    let path = SockPath::new();
    let (server, server_log) = serve_recording(Server::builder().bind_unix(&*path).unwrap());
    let mut raw = UnixStream::connect(&*path).await.unwrap();
    send_frame(&mut raw, b"hi").await;
    assert_eq!(recv_frame(&mut raw).await, b"hi");
    within(Duration::from_secs(10), server.shutdown(LIMIT)).await;
    let mut buf = [0u8; 16];
    match within(LIMIT, raw.read(&mut buf)).await {
        Ok(0) => {}
        other => panic!("expected EOF, got {other:?}"),
    }
    assert_eq!(server_log.events(), ["open", "message:hi", "close"]);
}

// ----- 3. the socket file ---------------------------------------------------------------

#[tokio::test]
async fn the_socket_file_exists_while_serving_and_is_removed_on_shutdown() {
    let path = SockPath::new();
    assert!(!path.exists());
    let server = Server::builder().bind_unix(&*path).unwrap();
    assert!(is_socket(&path), "bound: {} is a socket", path.display());
    let (server, _log) = serve_recording(server);
    assert!(is_socket(&path), "serving: {} is a socket", path.display());

    // Serving, with a live session.
    let mut raw = UnixStream::connect(&*path).await.unwrap();
    send_frame(&mut raw, b"alive").await;
    assert_eq!(recv_frame(&mut raw).await, b"alive");
    assert!(is_socket(&path));

    within(Duration::from_secs(10), server.shutdown(LIMIT)).await;
    assert!(
        std::fs::symlink_metadata(&*path).is_err(),
        "{} still exists after shutdown",
        path.display()
    );
    // Nothing accepts there any more.
    assert!(UnixStream::connect(&*path).await.is_err());
    // And the path can be bound again.
    let again = Server::builder().bind_unix(&*path).expect("rebind");
    let (again, _log) = serve_recording(again);
    let mut raw = UnixStream::connect(&*path).await.unwrap();
    send_frame(&mut raw, b"reborn").await;
    assert_eq!(recv_frame(&mut raw).await, b"reborn");
    within(Duration::from_secs(10), again.shutdown(LIMIT)).await;
    assert!(!path.exists());
}

#[tokio::test]
async fn a_file_that_replaced_the_socket_is_left_alone_on_shutdown() {
    let path = SockPath::new();
    let (server, _log) = serve_recording(Server::builder().bind_unix(&*path).unwrap());
    assert!(is_socket(&path));
    // Someone replaces the socket file while the server runs.
    std::fs::remove_file(&*path).unwrap();
    std::fs::write(&*path, b"precious").unwrap();

    within(Duration::from_secs(10), server.shutdown(LIMIT)).await;
    assert_eq!(
        std::fs::read(&*path).ok().as_deref(),
        Some(&b"precious"[..]),
        "the regular file at {} was removed or changed",
        path.display()
    );
}

/// A rolling restart: the new server removes the old one's socket file and
/// binds the same path; the old server, shutting down after, must not
/// remove the new one's socket.
#[tokio::test]
async fn a_server_shutting_down_leaves_the_socket_of_its_successor_at_the_same_path() {
    let path = SockPath::new();
    let (old, _log) = serve_recording(Server::builder().bind_unix(&*path).unwrap());
    std::fs::remove_file(&*path).unwrap();
    let (new, _log) = serve_recording(Server::builder().bind_unix(&*path).unwrap());

    within(Duration::from_secs(10), old.shutdown(LIMIT)).await;
    assert!(is_socket(&path), "the successor's socket was removed");
    let mut raw = UnixStream::connect(&*path).await.unwrap();
    send_frame(&mut raw, b"successor").await;
    assert_eq!(recv_frame(&mut raw).await, b"successor");
    within(Duration::from_secs(10), new.shutdown(LIMIT)).await;
    assert!(!path.exists(), "the successor removes its own socket");
}

// ----- 4. binding errors -----------------------------------------------------------------

#[tokio::test]
async fn binding_over_an_existing_file_is_an_error_and_leaves_the_file_alone() {
    let path = SockPath::new();
    std::fs::write(&*path, b"precious").unwrap();
    let err = Server::builder()
        .bind_unix::<Bytes>(&*path)
        .expect_err("bind over a regular file");
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse, "{err}");
    assert_eq!(std::fs::read(&*path).unwrap(), b"precious");
}

#[tokio::test]
async fn binding_over_a_live_socket_is_an_error_and_the_first_server_keeps_serving() {
    let path = SockPath::new();
    let (server, _log) = serve_recording(Server::builder().bind_unix(&*path).unwrap());
    let err = Server::builder()
        .bind_unix::<Bytes>(&*path)
        .expect_err("bind over a live socket");
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse, "{err}");
    assert!(is_socket(&path));
    let mut raw = UnixStream::connect(&*path).await.unwrap();
    send_frame(&mut raw, b"still").await;
    assert_eq!(recv_frame(&mut raw).await, b"still");
    within(Duration::from_secs(10), server.shutdown(LIMIT)).await;
}

#[tokio::test]
async fn bind_unix_with_tls_is_an_invalid_input_error() {
    let (server_tls, _) = tls_support::self_signed_tls(&["localhost"]);
    let path = SockPath::new();
    let err = Server::builder()
        .tls(server_tls)
        .bind_unix::<Bytes>(&*path)
        .expect_err("TLS over a Unix socket");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("TLS"), "{err}");
    // Refused before binding: no file was made.
    assert!(std::fs::symlink_metadata(&*path).is_err());
}

// ----- 5. one listener over TCP and Unix -------------------------------------------------

/// A listener that knows nothing of transports: it answers "<n>:<payload>"
/// (n counts this session's packets) and records its session's kind.
struct Numbered {
    log: Log,
    n: usize,
}

impl EventListener<Bytes> for Numbered {
    fn on_open(&mut self, session: &Session) -> Result<Option<Bytes>, BoxError> {
        self.log.push(format!("open:{}", session.kind()));
        Ok(None)
    }
    fn on_message(&mut self, _: &Session, pkg: Bytes) -> Option<Bytes> {
        self.n += 1;
        self.log
            .push(format!("message:{}", String::from_utf8_lossy(&pkg)));
        Some(Bytes::from(format!(
            "{}:{}",
            self.n,
            String::from_utf8_lossy(&pkg)
        )))
    }
    fn on_error(&mut self, _: &Session, error: &Error) {
        self.log.push(format!("error:{error}"));
    }
    fn on_close(&mut self, session: &Session) {
        self.log.push(format!("close:{}", session.kind()));
    }
}

/// What one run of [`converse`] saw.
struct Conversation {
    server_events: Vec<String>,
    client_events: Vec<String>,
    server_kind: EndpointKind,
    client_kind: EndpointKind,
}

/// Serves `Numbered` on `server` (whatever it is bound to), connects a getty
/// client to the server's address, exchanges three packets, and shuts down.
async fn converse(server: Server) -> Conversation {
    let addr = server.addr().clone();
    let server_log = Log::default();
    let l = server_log.clone();
    let handle = server.serve(
        LengthCodec::new(),
        new_session_fn(move |_: &Session| {
            Ok::<_, BoxError>(ListenerService::new(Numbered {
                log: l.clone(),
                n: 0,
            }))
        }),
    );
    let log = Log::default();
    let builder = Client::builder();
    let c = match &addr {
        Addr::Inet(a) => builder
            .connect(a.to_string(), LengthCodec::new(), client_side(&log))
            .await
            .expect("connect"),
        Addr::Unix(Some(path)) => builder
            .connect_unix(path, LengthCodec::new(), client_side(&log))
            .await
            .expect("connect"),
        other => panic!("unexpected server address {other}"),
    };
    eventually(LIMIT, "a session on each side", || {
        c.session_count() == 1 && handle.session_count() == 1
    })
    .await;
    let mine = c.sessions().sessions().pop().unwrap();
    let server_kind = handle.sessions().sessions().pop().unwrap().kind();
    for word in ["one", "two", "three"] {
        mine.send(Bytes::from(word)).await.unwrap();
    }
    eventually(LIMIT, "three answers", || log.count("message:") == 3).await;
    c.close();
    within(LIMIT, c.closed()).await;
    eventually(LIMIT, "the server session closed", || {
        handle.session_count() == 0
    })
    .await;
    within(Duration::from_secs(10), handle.shutdown(LIMIT)).await;
    Conversation {
        server_events: server_log.events(),
        client_events: log.events(),
        server_kind,
        client_kind: mine.kind(),
    }
}

#[tokio::test]
async fn the_same_listener_runs_unchanged_over_tcp_and_unix() {
    let tcp = converse(Server::builder().bind("127.0.0.1:0").await.unwrap()).await;
    let path = SockPath::new();
    let unix = converse(Server::builder().bind_unix(&*path).unwrap()).await;

    assert_eq!(
        (tcp.server_kind, tcp.client_kind),
        (EndpointKind::TcpServer, EndpointKind::TcpClient)
    );
    assert_eq!(
        (unix.server_kind, unix.client_kind),
        (EndpointKind::UnixServer, EndpointKind::UnixClient)
    );
    let answers = [
        "open",
        "message:1:one",
        "message:2:two",
        "message:3:three",
        "close",
    ];
    assert_eq!(tcp.client_events, answers);
    assert_eq!(unix.client_events, answers);
    let seen = |kind: &str| {
        vec![
            format!("open:{kind}"),
            "message:one".to_owned(),
            "message:two".to_owned(),
            "message:three".to_owned(),
            format!("close:{kind}"),
        ]
    };
    assert_eq!(tcp.server_events, seen("tcp-server"));
    assert_eq!(unix.server_events, seen("unix-server"));
    // The Unix server removed its socket file.
    assert!(!path.exists());
}
