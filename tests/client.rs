//! The TCP client: N connections, reconnecting, backoff, giving up, closing.
mod common;

use std::{collections::HashSet, net::SocketAddr, time::Duration};

use bytes::Bytes;
use common::*;
use getty::{
    codec::LengthCodec, new_session_fn, BoxError, Client, EndpointKind, EventListener,
    ListenerService, Session, SessionConfig,
};
use tokio::time::Instant;

const LIMIT: Duration = Duration::from_secs(5);

/// The client side: records its events, answers nothing.
struct ClientSide {
    log: Log,
}

impl EventListener<Bytes> for ClientSide {
    fn on_open(&mut self, _: &Session) -> Result<(), BoxError> {
        self.log.push("open");
        Ok(())
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
        .await;
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
        .await;
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
    assert!(
        waited >= interval - Duration::from_millis(50),
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
        .await;
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
    // Four attempts, three pauses: 50 + 100 + 200 ms. A fifth attempt would
    // add 400 ms more.
    let took = time_until_giving_up(Duration::from_millis(50), Duration::from_secs(10), 4).await;
    assert!(took >= Duration::from_millis(350), "gave up after {took:?}");
    assert!(took < Duration::from_millis(750), "gave up after {took:?}");
}

#[tokio::test]
async fn max_backoff_caps_the_pause_between_failed_attempts() {
    // Five attempts, four pauses of at most 40 ms; doubling without the cap
    // would take 40 + 80 + 160 + 320 ms.
    let took = time_until_giving_up(Duration::from_millis(40), Duration::from_millis(40), 5).await;
    assert!(took >= Duration::from_millis(160), "gave up after {took:?}");
    assert!(took < Duration::from_millis(600), "gave up after {took:?}");
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
        .await;
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
        .await;
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
