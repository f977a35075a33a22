//! The TCP client: N connections, reconnecting, backoff, giving up, closing.
mod common;

use std::{
    collections::HashSet,
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::Bytes;
use common::*;
use getty::{
    codec::LengthCodec,
    new_session_fn,
    tls::{rustls::RootCertStore, ClientTlsConfig},
    BoxError, Client, EndpointKind, EventListener, ListenerService, Server, Session, SessionConfig,
    WaitConnectedError,
};
use tokio::{io::AsyncWriteExt, time::Instant};

const LIMIT: Duration = Duration::from_secs(5);

/// The client side: records its events, answers nothing.
struct ClientSide {
    log: Log,
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
    fn on_close(&mut self, _: &Session) {
        self.log.push("close");
    }
}

fn client_make(
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

/// An address where nothing listens.
fn dead_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

#[tokio::test]
async fn connection_number_n_gives_n_sessions_on_the_server() {
    let (server, server_log) = recording_server(SessionConfig::default()).await;
    let log = Log::default();
    let client = Client::builder()
        .connection_number(3)
        .connect(
            server.local_addr().to_string(),
            LengthCodec::new(),
            client_make(&log),
        )
        .await
        .expect("connect");
    eventually(LIMIT, "three sessions on the server", || {
        server.session_count() == 3
    })
    .await;
    eventually(LIMIT, "three on the client", || client.session_count() == 3).await;

    let mine = client.sessions().sessions();
    let theirs: HashSet<_> = server
        .sessions()
        .sessions()
        .iter()
        .map(|s| s.peer_addr().clone())
        .collect();
    for s in &mine {
        assert_eq!(s.kind(), EndpointKind::TcpClient);
        assert!(theirs.contains(s.local_addr()), "{s} has no server end");
    }

    // Each connection works: the server echoes to the session that sent.
    for s in &mine {
        s.send(Bytes::from(format!("hi-{}", s.id()))).await.unwrap();
    }
    eventually(LIMIT, "three echoes", || log.count("message:hi-") == 3).await;
    for s in &mine {
        assert_eq!(log.count(&format!("message:hi-{}", s.id())), 1);
    }
    assert_eq!(server_log.count("open"), 3);

    client.close();
    within(LIMIT, client.closed()).await;
    server.shutdown(LIMIT).await;
}

#[tokio::test]
async fn a_lost_session_is_reconnected_after_the_reconnect_interval() {
    let (server, _server_log) = recording_server(SessionConfig::default()).await;
    let log = Log::default();
    let interval = Duration::from_millis(200);
    let client = Client::builder()
        .connection_number(2)
        .reconnect_interval(interval)
        .connect(
            server.local_addr().to_string(),
            LengthCodec::new(),
            client_make(&log),
        )
        .await
        .expect("connect");
    eventually(LIMIT, "two sessions", || server.session_count() == 2).await;
    let before: HashSet<u64> = server
        .sessions()
        .sessions()
        .iter()
        .map(|s| s.id())
        .collect();
    let victim = server.sessions().sessions().pop().unwrap();

    // The server drops one connection.
    victim.close();
    eventually(LIMIT, "client saw the loss", || log.count("close") == 1).await;
    let lost_at = Instant::now();
    eventually(LIMIT, "reconnected", || log.count("open") == 3).await;
    let waited = lost_at.elapsed();
    // Jittered: between half the interval and all of it.
    assert!(
        waited >= interval / 2 - Duration::from_millis(50),
        "reconnected after {waited:?}, interval {interval:?}"
    );
    eventually(LIMIT, "two sessions again", || server.session_count() == 2).await;
    let after: HashSet<u64> = server
        .sessions()
        .sessions()
        .iter()
        .map(|s| s.id())
        .collect();
    assert!(!after.contains(&victim.id()));
    assert_eq!(
        before.intersection(&after).count(),
        1,
        "one survived, one is new"
    );
    assert_eq!(client.session_count(), 2);

    client.close();
    within(LIMIT, client.closed()).await;
    server.shutdown(LIMIT).await;
}

/// Connects to a dead address; returns how long until the client gave up.
async fn time_until_giving_up(
    interval: Duration,
    max_backoff: Duration,
    attempts: u32,
) -> Duration {
    let log = Log::default();
    let start = Instant::now();
    let client = Client::builder()
        .reconnect_interval(interval)
        .max_backoff(max_backoff)
        .max_reconnect_attempts(Some(attempts))
        .connect(
            dead_addr().to_string(),
            LengthCodec::new(),
            client_make(&log),
        )
        .await
        .expect_err("the first attempt fails")
        .into_client()
        .expect("a well-formed target");
    assert!(!client.is_closed(), "still trying right after connect");
    within(LIMIT, client.closed()).await;
    let took = start.elapsed();
    assert!(
        client.is_closed(),
        "a client whose slots all gave up is closed"
    );
    assert_eq!(client.session_count(), 0);
    assert_eq!(log.count("open"), 0);
    took
}

#[tokio::test]
async fn failed_attempts_back_off_doubling_and_the_client_gives_up_after_max_attempts() {
    // Four attempts, three pauses: 50 + 100 + 200 ms, each jittered down to
    // half at most (175 ms). A fifth attempt would add 200-400 ms more.
    let took = time_until_giving_up(Duration::from_millis(50), Duration::from_secs(10), 4).await;
    assert!(took >= Duration::from_millis(175), "gave up after {took:?}");
    assert!(took < Duration::from_millis(600), "gave up after {took:?}");
}

#[tokio::test]
async fn max_backoff_caps_the_pause_between_failed_attempts() {
    // Five attempts, four pauses of 20-40 ms; doubling without the cap
    // would take 20-40 + 40-80 + 80-160 + 160-320 ms.
    let took = time_until_giving_up(Duration::from_millis(40), Duration::from_millis(40), 5).await;
    assert!(took >= Duration::from_millis(80), "gave up after {took:?}");
    assert!(took < Duration::from_millis(300), "gave up after {took:?}");
}

#[tokio::test]
async fn close_returns_at_once_while_a_slot_waits_to_reconnect() {
    let (server, _server_log) = recording_server(SessionConfig::default()).await;
    let log = Log::default();
    let client = Client::builder()
        .reconnect_interval(Duration::from_secs(30))
        .connect(
            server.local_addr().to_string(),
            LengthCodec::new(),
            client_make(&log),
        )
        .await
        .expect("connect");
    eventually(LIMIT, "connected", || server.session_count() == 1).await;
    server.sessions().close_all();
    eventually(LIMIT, "client session ended", || {
        log.count("close") == 1 && client.session_count() == 0
    })
    .await;

    // The slot now sleeps 30 s before reconnecting.
    let start = Instant::now();
    client.close();
    let took = start.elapsed();
    assert!(took < Duration::from_millis(50), "close took {took:?}");
    assert!(client.is_closed());
    within(Duration::from_secs(1), client.closed()).await;
    assert_eq!(log.count("open"), 1, "no reconnect after close");
    assert_eq!(server.session_count(), 0);
    server.shutdown(LIMIT).await;
}

#[tokio::test]
async fn close_closes_every_session_and_closed_resolves() {
    let (server, server_log) = recording_server(SessionConfig::default()).await;
    let log = Log::default();
    let client = Client::builder()
        .connection_number(3)
        .reconnect_interval(Duration::from_millis(10))
        .connect(
            server.local_addr().to_string(),
            LengthCodec::new(),
            client_make(&log),
        )
        .await
        .expect("connect");
    eventually(LIMIT, "three sessions", || server.session_count() == 3).await;
    let sessions = client.sessions().sessions();
    assert!(!client.is_closed());

    let start = Instant::now();
    client.close();
    assert!(start.elapsed() < Duration::from_millis(50));
    within(LIMIT, client.closed()).await;
    assert!(sessions.iter().all(Session::is_closed));
    assert_eq!(client.session_count(), 0);
    assert_eq!(log.count("close"), 3);
    assert_eq!(log.count("open"), 3, "no reconnect after close");
    eventually(LIMIT, "server sessions gone", || {
        server.session_count() == 0
    })
    .await;
    assert_eq!(server_log.count("close"), 3);
    server.shutdown(LIMIT).await;
}

/// Accepts TCP, writes `garbage` and closes, counting the connections.
async fn garbage_server(garbage: &'static [u8]) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        // Bounded: the test ends long before 100 connections.
        for _ in 0..100 {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, Ordering::SeqCst);
            let _ = s.write_all(garbage).await;
            drop(s);
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn a_failed_tls_handshake_after_tcp_connects_counts_as_a_failed_attempt() {
    let (addr, accepted) = garbage_server(b"HTTP/1.1 400 not TLS\r\n\r\n").await;
    let log = Log::default();
    let client = Client::builder()
        .tls(ClientTlsConfig::with_roots(RootCertStore::empty()))
        .reconnect_interval(Duration::from_millis(20))
        .max_reconnect_attempts(Some(1))
        .connect(addr.to_string(), LengthCodec::new(), client_make(&log))
        .await
        .expect_err("the first attempt fails")
        .into_client()
        .expect("a well-formed target");
    within(LIMIT, client.closed()).await;
    assert!(client.is_closed(), "gave up");
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "connection attempts");
    assert_eq!(log.count("open"), 0);
}

#[tokio::test]
async fn a_failed_websocket_handshake_after_tcp_connects_counts_as_a_failed_attempt() {
    let (addr, accepted) =
        garbage_server(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n").await;
    let log = Log::default();
    let client = Client::builder()
        .reconnect_interval(Duration::from_millis(20))
        .max_reconnect_attempts(Some(1))
        .connect_ws(
            &format!("ws://{addr}/ws"),
            LengthCodec::new(),
            client_make(&log),
        )
        .await
        .expect_err("the first attempt fails")
        .into_client()
        .expect("a well-formed target");
    within(LIMIT, client.closed()).await;
    assert!(client.is_closed(), "gave up");
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "connection attempts");
    assert_eq!(log.count("open"), 0);
}

/// Twelve connections lose the server at the same moment (a restart): with
/// jitter they come back spread over [interval / 2, interval], not in the
/// same instant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_lost_at_once_reconnect_at_different_times() {
    const SLOTS: usize = 12;
    let interval = Duration::from_millis(400);
    let opened: Arc<std::sync::Mutex<Vec<Instant>>> = Arc::default();
    let o = opened.clone();
    let server = getty::Server::builder()
        .bind("127.0.0.1:0")
        .await
        .unwrap()
        .serve(
            LengthCodec::new(),
            new_session_fn(move |_: &Session| {
                o.lock().unwrap().push(Instant::now());
                Ok::<_, BoxError>(ListenerService::new(ClientSide {
                    log: Log::default(),
                }))
            }),
        );
    let log = Log::default();
    let client = Client::builder()
        .connection_number(SLOTS)
        .reconnect_interval(interval)
        .connect(
            server.local_addr().to_string(),
            LengthCodec::new(),
            client_make(&log),
        )
        .await
        .expect("connect");
    eventually(LIMIT, "every slot connected", || {
        server.session_count() == SLOTS
    })
    .await;
    let lost_at = Instant::now();
    for session in server.sessions().sessions() {
        session.close();
    }
    eventually(LIMIT, "every slot reconnected", || {
        opened.lock().unwrap().len() == 2 * SLOTS
    })
    .await;
    let again: Vec<Duration> = opened.lock().unwrap()[SLOTS..]
        .iter()
        .map(|at| at.duration_since(lost_at))
        .collect();
    let first = *again.iter().min().unwrap();
    let last = *again.iter().max().unwrap();
    assert!(
        first >= interval / 2 - Duration::from_millis(20),
        "a reconnect after {first:?}, before half the interval: {again:?}"
    );
    assert!(
        last - first >= Duration::from_millis(60),
        "reconnects spread over {:?} only: {again:?}",
        last - first
    );
    client.close();
    within(LIMIT, client.closed()).await;
    server.shutdown(LIMIT).await;
}

/// A client whose own `Open` refuses every session never starts one: each
/// attempt fails, backs off, and the slot gives up after the maximum.
#[tokio::test]
async fn a_session_refused_on_open_counts_as_a_failed_attempt() {
    struct Refuse;
    impl EventListener<Bytes> for Refuse {
        fn on_open(&mut self, _: &Session) -> Result<Option<Bytes>, BoxError> {
            Err("not today".into())
        }
        fn on_message(&mut self, _: &Session, _: Bytes) -> Option<Bytes> {
            None
        }
    }
    let (server, server_log) = recording_server(SessionConfig::default()).await;
    let client = Client::builder()
        .reconnect_interval(Duration::from_millis(20))
        .max_reconnect_attempts(Some(2))
        .connect(
            server.local_addr().to_string(),
            LengthCodec::new(),
            new_session_fn(|_: &Session| Ok::<_, BoxError>(ListenerService::new(Refuse))),
        )
        .await
        .expect_err("the first attempt fails")
        .into_client()
        .expect("a well-formed target");
    let gave_up = tokio::time::timeout(Duration::from_secs(2), client.closed()).await;
    client.close();
    within(LIMIT, client.closed()).await;
    assert!(gave_up.is_ok(), "still reconnecting after 2 s");
    eventually(LIMIT, "both connections ended on the server", || {
        server.session_count() == 0
    })
    .await;
    assert_eq!(server_log.count("open"), 2, "connection attempts");
    server.shutdown(LIMIT).await;
}

// ----- what connect tells the caller -----------------------------------------

/// A make-service that refuses the calls whose number (from 0) `refuse`
/// picks, recording the others' events into `log`.
fn refusing_make(
    log: &Log,
    refuse: impl Fn(usize) -> bool + Clone + Send + Sync + 'static,
) -> impl tower::Service<
    Session,
    Response = ListenerService<ClientSide>,
    Error = BoxError,
    Future = impl Send + 'static,
> + Clone
       + Send
       + 'static {
    let log = log.clone();
    let calls = Arc::new(AtomicUsize::new(0));
    new_session_fn(move |_: &Session| {
        if refuse(calls.fetch_add(1, Ordering::SeqCst)) {
            return Err::<_, BoxError>("refused by the test".into());
        }
        Ok(ListenerService::new(ClientSide { log: log.clone() }))
    })
}

#[tokio::test]
async fn connect_returns_once_every_slot_has_run_its_callback_and_open() {
    let (server, _server_log) = recording_server(SessionConfig::default()).await;
    let log = Log::default();
    let client = Client::builder()
        .connection_number(3)
        .connect(
            server.local_addr().to_string(),
            LengthCodec::new(),
            client_make(&log),
        )
        .await
        .expect("connect");
    // No waiting: the sessions started before connect returned.
    assert_eq!(log.count("open"), 3);
    assert_eq!(client.connected_count(), 3);
    assert_eq!(client.session_count(), 3);
    client.close();
    within(LIMIT, client.closed()).await;
    assert_eq!(client.connected_count(), 0);
    server.shutdown(LIMIT).await;
}

#[tokio::test]
async fn connect_fails_when_no_slot_connects_and_the_error_keeps_the_client_trying() {
    let addr = dead_addr();
    let log = Log::default();
    let err = Client::builder()
        .connection_number(2)
        .reconnect_interval(Duration::from_millis(20))
        .max_backoff(Duration::from_millis(40))
        .connect(addr.to_string(), LengthCodec::new(), client_make(&log))
        .await
        .expect_err("nothing listens");
    let message = err.to_string();
    assert!(message.contains(&addr.to_string()), "{message}");
    assert!(
        message.contains("none of 2 connections started"),
        "{message}"
    );
    assert!(!err.is_invalid_target());
    assert_eq!(
        std::error::Error::source(&err)
            .and_then(|e| e.downcast_ref::<std::io::Error>())
            .map(std::io::Error::kind),
        Some(std::io::ErrorKind::ConnectionRefused),
        "{err:?}"
    );
    let client = err.into_client().expect("a well-formed target");
    assert!(!client.is_closed(), "still trying");
    // The server comes up where the client keeps knocking.
    let server = Server::builder().bind(addr).await.expect("rebind the port");
    let (server, _server_log) = serve_recording(server);
    within(LIMIT, client.wait_connected(2, LIMIT))
        .await
        .expect("both slots connect");
    assert_eq!(server.session_count(), 2);
    client.close();
    within(LIMIT, client.closed()).await;
    server.shutdown(LIMIT).await;
}

#[tokio::test]
async fn dropping_a_connect_error_closes_its_client() {
    let (server, server_log) = recording_server(SessionConfig::default()).await;
    let log = Log::default();
    // Every attempt connects, and the client's own callback refuses it.
    let err = Client::builder()
        .reconnect_interval(Duration::from_millis(10))
        .max_backoff(Duration::from_millis(10))
        .connect(
            server.local_addr().to_string(),
            LengthCodec::new(),
            refusing_make(&log, |_| true),
        )
        .await
        .expect_err("every session is refused");
    assert!(
        err.to_string().contains("did not start"),
        "{err}: names why"
    );
    eventually(LIMIT, "the client retries", || {
        server_log.count("open") >= 2
    })
    .await;
    drop(err);
    // Attempts stop: the count settles.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let settled = server_log.count("open");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        server_log.count("open"),
        settled,
        "no attempt after the drop"
    );
    eventually(LIMIT, "no session left on the server", || {
        server.session_count() == 0
    })
    .await;
    server.shutdown(LIMIT).await;
}

#[tokio::test]
async fn connect_succeeds_when_one_slot_connects_and_wait_connected_waits_for_the_rest() {
    let (server, _server_log) = recording_server(SessionConfig::default()).await;
    let log = Log::default();
    let client = Client::builder()
        .connection_number(2)
        .reconnect_interval(Duration::from_millis(50))
        .connect(
            server.local_addr().to_string(),
            LengthCodec::new(),
            // The second call is refused: one slot's first attempt fails.
            refusing_make(&log, |call| call == 1),
        )
        .await
        .expect("one slot connected");
    assert_eq!(client.connected_count(), 1);
    // That slot tries again and its second session starts.
    within(LIMIT, client.wait_connected(2, LIMIT))
        .await
        .expect("the refused slot reconnects");
    assert_eq!(client.connected_count(), 2);
    assert_eq!(log.count("open"), 2);
    client.close();
    within(LIMIT, client.closed()).await;
    server.shutdown(LIMIT).await;
}

#[tokio::test]
async fn wait_connected_times_out_naming_how_many_connected() {
    let (server, _server_log) = recording_server(SessionConfig::default()).await;
    let log = Log::default();
    let client = Client::builder()
        .connection_number(2)
        .reconnect_interval(Duration::from_millis(20))
        .connect(
            server.local_addr().to_string(),
            LengthCodec::new(),
            // Only the first session is ever accepted.
            refusing_make(&log, |call| call > 0),
        )
        .await
        .expect("one slot connected");
    let timeout = Duration::from_millis(300);
    let start = Instant::now();
    let err = client
        .wait_connected(2, timeout)
        .await
        .expect_err("the second slot never connects");
    assert!(start.elapsed() >= timeout);
    assert_eq!(
        err,
        WaitConnectedError::TimedOut {
            connected: 1,
            wanted: 2,
            timeout
        }
    );
    assert_eq!(err.to_string(), "1 of 2 sessions connected after 300ms");
    client.close();
    within(LIMIT, client.closed()).await;
    server.shutdown(LIMIT).await;
}

#[tokio::test]
async fn wait_connected_fails_at_once_when_the_client_has_given_up() {
    let log = Log::default();
    let client = Client::builder()
        .max_reconnect_attempts(Some(1))
        .connect(
            dead_addr().to_string(),
            LengthCodec::new(),
            client_make(&log),
        )
        .await
        .expect_err("nothing listens")
        .into_client()
        .expect("a well-formed target");
    let start = Instant::now();
    let err = client
        .wait_connected(1, Duration::from_secs(30))
        .await
        .expect_err("no slot is left to connect");
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "waited the timeout"
    );
    assert_eq!(
        err,
        WaitConnectedError::Closed {
            connected: 0,
            wanted: 1
        }
    );
}

#[tokio::test]
async fn a_malformed_websocket_url_is_an_invalid_target_error_without_a_client() {
    let log = Log::default();
    let err = Client::builder()
        .connect_ws("http://127.0.0.1:1/", LengthCodec::new(), client_make(&log))
        .await
        .expect_err("not a ws:// URL");
    assert!(err.is_invalid_target());
    assert!(
        err.to_string().contains("not a ws:// or wss:// URL"),
        "{err}"
    );
    assert!(err.into_client().is_none());
}

#[tokio::test]
async fn the_on_connect_hook_runs_after_open_on_every_connect_and_reconnect() {
    let (server, server_log) = recording_server(SessionConfig::default()).await;
    let log = Log::default();
    let hooked = log.clone();
    let client = Client::builder()
        .reconnect_interval(Duration::from_millis(20))
        .on_connect(move |session| {
            hooked.push(format!("connected:{}", session.id()));
            // The hook can greet the server: it echoes.
            let _ = session.try_send(Bytes::from_static(b"hello"));
        })
        .connect(
            server.local_addr().to_string(),
            LengthCodec::new(),
            client_make(&log),
        )
        .await
        .expect("connect");
    // The hook has run when connect returns, after Open.
    let events = log.events();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0], "open");
    assert!(events[1].starts_with("connected:"), "{events:?}");
    eventually(LIMIT, "the greeting's echo", || {
        log.count("message:hello") == 1
    })
    .await;

    // The server drops the session: the client reconnects and the hook runs
    // again, for the new session.
    server.sessions().close_all();
    eventually(LIMIT, "the hook ran again", || log.count("connected:") == 2).await;
    eventually(LIMIT, "the second greeting reached the server", || {
        server_log.count("message:hello") == 2
    })
    .await;
    let connected: Vec<String> = log
        .events()
        .into_iter()
        .filter(|e| e.starts_with("connected:"))
        .collect();
    assert_ne!(connected[0], connected[1], "a new session each time");
    let events = log.events();
    let second_open = events
        .iter()
        .rposition(|e| e == "open")
        .expect("a second open");
    let second_hook = events
        .iter()
        .rposition(|e| e.starts_with("connected:"))
        .expect("a second hook");
    assert!(
        second_open < second_hook,
        "the hook runs after Open: {events:?}"
    );
    client.close();
    within(LIMIT, client.closed()).await;
    server.shutdown(LIMIT).await;
}
