//! The stats layer: session, traffic, error and latency accounting, with a
//! tower-test mock and over real sockets on 127.0.0.1; the histogram; the
//! snapshot's JSON and Display.

use std::{
    collections::BTreeMap,
    future::Future,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use futures_util::{stream, StreamExt};
use getty::{
    codec::LengthCodec, new_session_fn, Addr, BoxError, EndpointKind, Error, Event, EventListener,
    ListenerService, Request, Server, ServerHandle, Session, SessionConfig,
};
use getty_layers::stats::{Histogram, Stats, StatsLayer, StatsService, StatsSnapshot};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_test::assert_ready_ok;
use tower_test::mock;

const LIMIT: Duration = Duration::from_secs(10);

// ----- helpers --------------------------------------------------------------

/// Awaits `fut`, failing the test if it takes longer than `limit`.
async fn within<T>(limit: Duration, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or_else(|_| panic!("did not finish within {limit:?}"))
}

/// Polls `cond` every 5 ms until it holds, failing the test after `limit`.
async fn eventually(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn detached() -> Session {
    Session::new(
        EndpointKind::Detached,
        Addr::Unknown,
        Addr::Unknown,
        SessionConfig::default(),
    )
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(payload);
    v
}

/// Reads one frame; `None` on EOF or a reset.
async fn read_frame(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await.ok()?;
    let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).await.ok()?;
    Some(buf)
}

/// Waits for the server to close the connection (EOF or reset).
async fn expect_closed(s: &mut TcpStream) {
    let mut buf = [0u8; 64];
    let read = within(LIMIT, s.read(&mut buf)).await;
    assert!(
        !matches!(read, Ok(n) if n > 0),
        "expected the server to close, got {read:?}"
    );
}

/// What the innermost listener itself saw, to check the layer against.
#[derive(Default)]
struct Seen {
    made: AtomicU64,
    opened: AtomicU64,
    refused: AtomicU64,
    closed: AtomicU64,
    messages: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
    sessions: Mutex<Vec<Session>>,
}

/// Echoes; a packet starting with `!` also gets a "pushed" packet through
/// `Session::try_send`; refuses `Open` while `refuse` says so.
struct Echo {
    seen: Arc<Seen>,
    refuse: bool,
}

impl EventListener<Bytes> for Echo {
    fn on_open(&mut self, _: &Session) -> Result<Option<Bytes>, BoxError> {
        if self.refuse {
            self.seen.refused.fetch_add(1, Ordering::SeqCst);
            return Err("refused by the listener".into());
        }
        self.seen.opened.fetch_add(1, Ordering::SeqCst);
        Ok(None)
    }
    fn on_message(&mut self, session: &Session, pkg: Bytes) -> Option<Bytes> {
        self.seen.messages.fetch_add(1, Ordering::SeqCst);
        if pkg.starts_with(b"!") {
            session
                .try_send(Bytes::from_static(b"pushed"))
                .expect("room in the queue");
        }
        Some(pkg)
    }
    fn on_error(&mut self, _: &Session, error: &Error) {
        *self
            .seen
            .errors
            .lock()
            .unwrap()
            .entry(error.kind().as_str().to_owned())
            .or_default() += 1;
    }
    fn on_close(&mut self, _: &Session) {
        self.seen.closed.fetch_add(1, Ordering::SeqCst);
    }
}

/// A length-prefixed echo server with the stats layer outermost; every
/// `refuse_every`-th session (if any) is refused by the listener's `on_open`.
async fn stats_server(
    stats: &Stats,
    config: SessionConfig,
    refuse_every: Option<u64>,
) -> (ServerHandle, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let server = Server::builder()
        .session_config(config)
        .bind("127.0.0.1:0")
        .await
        .expect("bind");
    let (layer, s) = (StatsLayer::new(stats.clone()), seen.clone());
    let handle = server.serve(
        LengthCodec::new(),
        new_session_fn(move |session: &Session| {
            let n = s.made.fetch_add(1, Ordering::SeqCst) + 1;
            s.sessions.lock().unwrap().push(session.clone());
            let refuse = refuse_every.is_some_and(|every| n % every == 0);
            Ok::<_, BoxError>(tower::ServiceBuilder::new().layer(layer.clone()).service(
                ListenerService::new(Echo {
                    seen: s.clone(),
                    refuse,
                }),
            ))
        }),
    );
    (handle, seen)
}

/// Waits until every session of the server has ended (its task is gone).
async fn all_sessions_ended(server: &ServerHandle) {
    eventually(LIMIT, "server session_count() back to 0", || {
        server.session_count() == 0
    })
    .await;
}

type MockReq = Request<Bytes>;
type MockResp = Option<Bytes>;

// ----- tower-test mock ------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn mock_message_latency_is_the_time_from_call_to_inner_completion() {
    let stats = Stats::new();
    let (mut svc, mut inner) = mock::spawn_layer::<MockReq, MockResp, _>(stats.layer());
    let session = detached();

    assert_ready_ok!(svc.poll_ready());
    let open = svc.call(Request::new(session.clone(), Event::Open));
    let (_, reply) = inner.next_request().await.unwrap();
    tokio::time::advance(Duration::from_secs(7)).await;
    reply.send_response(None);
    open.await.unwrap();

    // Messages handled in 1, 2, ..., 100 ms; the 100th fails.
    for ms in 1..=100u64 {
        assert_ready_ok!(svc.poll_ready());
        let call = svc.call(Request::new(
            session.clone(),
            Event::Message(Bytes::from(ms.to_string())),
        ));
        let (_, reply) = inner.next_request().await.unwrap();
        tokio::time::advance(Duration::from_millis(ms)).await;
        if ms == 100 {
            reply.send_error("handler failed");
            assert!(call.await.is_err());
        } else {
            reply.send_response(None);
            call.await.unwrap();
        }
    }
    // A tick that takes long is not a message: no latency.
    assert_ready_ok!(svc.poll_ready());
    let tick = svc.call(Request::new(session.clone(), Event::Tick));
    let (_, reply) = inner.next_request().await.unwrap();
    tokio::time::advance(Duration::from_secs(9)).await;
    reply.send_response(None);
    tick.await.unwrap();

    let latency = stats.snapshot().latency;
    assert_eq!(latency.count, 100, "messages only, failed ones included");
    assert_eq!(latency.max_us, 100_000, "the max is exact");
    for (q, got) in [(50, latency.p50_us), (99, latency.p99_us)] {
        let want = q * 1000;
        assert!(
            (Histogram::lowest_equivalent(want)..=Histogram::highest_equivalent(want))
                .contains(&got),
            "p{q}: {got}µs, want {want}µs within its bucket"
        );
    }
    assert_eq!(latency.mean_us, 50_500);
}

#[tokio::test]
async fn mock_errors_are_counted_by_kind_when_an_error_event_passes() {
    let stats = Stats::new();
    let (mut svc, mut inner) = mock::spawn_layer::<MockReq, MockResp, _>(stats.layer());
    let session = detached();
    let errors = [
        Error::ReadTimeout {
            peer: Addr::Unknown,
            timeout: Duration::from_secs(1),
        },
        Error::PacketTooLarge {
            peer: Addr::Unknown,
            len: 9000,
            max: 64,
        },
        Error::ReadTimeout {
            peer: Addr::Unknown,
            timeout: Duration::from_secs(1),
        },
        Error::HandlerPanic {
            message: "boom".into(),
        },
    ];
    for error in errors {
        assert_ready_ok!(svc.poll_ready());
        let call = svc.call(Request::new(session.clone(), Event::Error(error)));
        let (req, reply) = inner.next_request().await.unwrap();
        assert!(matches!(req.event, Event::Error(_)), "passed on unchanged");
        reply.send_response(None);
        call.await.unwrap();
    }
    let snap = stats.snapshot();
    let want: BTreeMap<String, u64> = [
        ("handler_panic", 1),
        ("packet_too_large", 1),
        ("read_timeout", 2),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(snap.errors, want);
    assert_eq!(snap.error_count(), 4);
    assert_eq!(snap.errors_of("read_timeout"), 2);
    assert_eq!(snap.errors_of("io"), 0);
}

#[tokio::test]
async fn mock_an_open_refused_by_the_inner_service_counts_refused_not_opened_and_no_close() {
    let stats = Stats::new();
    let (mut svc, mut inner) = mock::spawn_layer::<MockReq, MockResp, _>(stats.layer());
    let session = detached();

    assert_ready_ok!(svc.poll_ready());
    let open = svc.call(Request::new(session.clone(), Event::Open));
    let (_, reply) = inner.next_request().await.unwrap();
    assert_eq!(stats.snapshot().opened, 0, "not counted while pending");
    reply.send_error("go away");
    assert!(open.await.is_err());
    let snap = stats.snapshot();
    assert_eq!((snap.opened, snap.refused, snap.live), (0, 1, 0));

    // A Close for it anyway (getty sends none) does not count.
    assert_ready_ok!(svc.poll_ready());
    let close = svc.call(Request::new(session.clone(), Event::Close));
    inner.next_request().await.unwrap().1.send_response(None);
    close.await.unwrap();
    drop(svc);
    let snap = stats.snapshot();
    assert_eq!(
        (snap.opened, snap.closed, snap.live, snap.refused),
        (0, 0, 0, 1)
    );
}

#[tokio::test]
async fn mock_an_opened_service_dropped_without_close_counts_the_session_closed() {
    let stats = Stats::new();
    let (mut svc, mut inner) = mock::spawn_layer::<MockReq, MockResp, _>(stats.layer());

    assert_ready_ok!(svc.poll_ready());
    let open = svc.call(Request::new(detached(), Event::Open));
    inner.next_request().await.unwrap().1.send_response(None);
    open.await.unwrap();
    let snap = stats.snapshot();
    assert_eq!((snap.opened, snap.closed, snap.live), (1, 0, 1));

    // As getty's driver does when poll_ready failed: no Close, the stack dropped.
    drop(svc);
    let snap = stats.snapshot();
    assert_eq!((snap.opened, snap.closed, snap.live), (1, 1, 0));
}

#[tokio::test]
async fn mock_an_open_completing_after_its_service_was_dropped_is_not_counted_opened() {
    let stats = Stats::new();
    let (mut svc, mut inner) = mock::spawn_layer::<MockReq, MockResp, _>(stats.layer());

    assert_ready_ok!(svc.poll_ready());
    let open = svc.call(Request::new(detached(), Event::Open));
    let (_, reply) = inner.next_request().await.unwrap();
    drop(svc);
    reply.send_response(None);
    open.await.unwrap();
    let snap = stats.snapshot();
    assert_eq!((snap.opened, snap.closed, snap.live), (0, 0, 0));
}

#[tokio::test]
async fn mock_a_clone_is_a_fresh_service_for_another_session() {
    let stats = Stats::new();
    let (svc, mut inner) = mock::pair::<MockReq, MockResp>();
    let mut first = mock::Spawn::new(StatsService::new(svc, stats.clone()));
    assert_ready_ok!(first.poll_ready());
    let open = first.call(Request::new(detached(), Event::Open));
    inner.next_request().await.unwrap().1.send_response(None);
    open.await.unwrap();

    // The clone never opened: dropping it closes nothing, and its own
    // session counts on its own.
    let mut second = mock::Spawn::new(first.get_ref().clone());
    assert_ready_ok!(second.poll_ready());
    let open = second.call(Request::new(detached(), Event::Open));
    inner.next_request().await.unwrap().1.send_response(None);
    open.await.unwrap();
    assert_eq!(stats.snapshot().opened, 2);
    drop(second);
    assert_eq!(stats.snapshot().live, 1);
    drop(first);
    let snap = stats.snapshot();
    assert_eq!((snap.opened, snap.closed, snap.live), (2, 2, 0));
}

// ----- over real sockets ----------------------------------------------------

#[tokio::test]
async fn packets_and_bytes_match_what_clients_sent_and_received_send_traffic_included() {
    let stats = Stats::new();
    let (server, seen) = stats_server(&stats, SessionConfig::default(), None).await;
    let addr = server.local_addr();

    let clients = (0..5).map(|c| {
        tokio::spawn(async move {
            let mut raw = TcpStream::connect(addr).await.unwrap();
            let (mut sent, mut received) = ((0u64, 0u64), (0u64, 0u64));
            for i in 0..20usize {
                // Every fourth packet asks for an extra pushed packet.
                let bang = if i % 4 == 0 { "!" } else { "" };
                let payload = format!("{bang}client {c} packet {i} {}", "x".repeat(i * 7 % 50));
                raw.write_all(&frame(payload.as_bytes())).await.unwrap();
                sent = (sent.0 + 1, sent.1 + 4 + payload.len() as u64);
                let answers = if bang.is_empty() { 1 } else { 2 };
                for _ in 0..answers {
                    let got = within(LIMIT, read_frame(&mut raw)).await.expect("answer");
                    received = (received.0 + 1, received.1 + 4 + got.len() as u64);
                }
            }
            (sent, received)
        })
    });
    let (mut sent, mut received) = ((0, 0), (0, 0));
    for client in clients {
        let (s, r) = within(LIMIT, client).await.unwrap();
        sent = (sent.0 + s.0, sent.1 + s.1);
        received = (received.0 + r.0, received.1 + r.1);
    }
    // The clients are gone: every session sees EOF, then Close.
    all_sessions_ended(&server).await;

    let snap = stats.snapshot();
    assert_eq!(
        (snap.packets_in, snap.bytes_in),
        sent,
        "in = what clients sent"
    );
    assert_eq!(
        (snap.packets_out, snap.bytes_out),
        received,
        "out = what clients received, pushed packets included"
    );
    assert_eq!(received.0, 5 * (20 + 5));
    assert!(snap.writes > 0 && snap.writes <= snap.packets_out);
    assert_eq!((snap.opened, snap.closed, snap.live), (5, 5, 0));
    assert_eq!(snap.latency.count, seen.messages.load(Ordering::SeqCst));
    assert_eq!(snap.error_count(), 0, "{snap}");

    // The aggregate is the sum of the per-session figures.
    let sessions = seen.sessions.lock().unwrap().clone();
    let sum = sessions
        .iter()
        .map(Session::stats)
        .fold((0, 0, 0, 0, 0), |a, s| {
            (
                a.0 + s.packets_in,
                a.1 + s.bytes_in,
                a.2 + s.packets_out,
                a.3 + s.bytes_out,
                a.4 + s.writes,
            )
        });
    assert_eq!(
        sum,
        (
            snap.packets_in,
            snap.bytes_in,
            snap.packets_out,
            snap.bytes_out,
            snap.writes
        )
    );
    server.shutdown(LIMIT).await;
}

#[tokio::test]
async fn errors_are_counted_by_kind_over_sockets_packet_too_large_and_read_timeout() {
    let stats = Stats::new();
    let config = SessionConfig::default()
        .max_packet_len(64)
        .read_timeout(Some(Duration::from_secs(1)));
    let (server, seen) = stats_server(&stats, config, None).await;

    // A length prefix far above max_packet_len.
    let mut big = TcpStream::connect(server.local_addr()).await.unwrap();
    big.write_all(&1000u32.to_be_bytes()).await.unwrap();
    big.write_all(&[0u8; 100]).await.unwrap();
    expect_closed(&mut big).await;
    // A peer that says nothing.
    let mut silent = TcpStream::connect(server.local_addr()).await.unwrap();
    expect_closed(&mut silent).await;
    all_sessions_ended(&server).await;

    let snap = stats.snapshot();
    assert_eq!(snap.errors_of("packet_too_large"), 1, "{snap}");
    assert_eq!(snap.errors_of("read_timeout"), 1, "{snap}");
    assert_eq!(snap.error_count(), 2, "{snap}");
    assert_eq!(
        snap.errors,
        *seen.errors.lock().unwrap(),
        "as the listener saw"
    );
    assert_eq!((snap.opened, snap.closed, snap.live), (2, 2, 0));
    server.shutdown(LIMIT).await;
}

#[tokio::test]
async fn a_storm_of_1000_connects_and_disconnects_leaves_opened_eq_closed_plus_live_and_live_0() {
    const N: u64 = 1000;
    let stats = Stats::new();
    let config = SessionConfig::default().max_packet_len(1024);
    // Every 10th session is refused by on_open.
    let (server, seen) = stats_server(&stats, config, Some(10)).await;
    let addr = server.local_addr();

    // Snapshots taken all through the storm keep the invariant.
    let storming = Arc::new(AtomicBool::new(true));
    let watcher = {
        let (stats, storming) = (stats.clone(), storming.clone());
        tokio::spawn(async move {
            let mut taken = 0u64;
            while storming.load(Ordering::SeqCst) {
                let s = stats.snapshot();
                assert_eq!(s.opened, s.closed + s.live, "{s}");
                taken += 1;
                tokio::task::yield_now().await;
            }
            taken
        })
    };

    // 50 at a time: echo, connect-and-drop, oversized packet, half a packet.
    within(
        LIMIT,
        stream::iter(0..N)
            .map(|i| async move {
                let Ok(mut raw) = TcpStream::connect(addr).await else {
                    panic!("connect {i} failed");
                };
                match i % 4 {
                    0 => {
                        if raw.write_all(&frame(b"ping")).await.is_ok() {
                            // None when this session was refused.
                            let _ = read_frame(&mut raw).await;
                        }
                    }
                    1 => {}
                    2 => {
                        let _ = raw.write_all(&5000u32.to_be_bytes()).await;
                        let mut buf = [0u8; 16];
                        let _ = raw.read(&mut buf).await;
                    }
                    _ => {
                        let _ = raw.write_all(&frame(b"cut short")[..7]).await;
                    }
                }
            })
            .buffer_unordered(50)
            .collect::<Vec<()>>(),
    )
    .await;
    eventually(LIMIT, "every connection accepted", || {
        seen.made.load(Ordering::SeqCst) == N
    })
    .await;
    all_sessions_ended(&server).await;
    storming.store(false, Ordering::SeqCst);
    let taken = within(LIMIT, watcher).await.unwrap();

    let snap = stats.snapshot();
    assert_eq!(snap.opened, snap.closed + snap.live, "{snap}");
    assert_eq!(snap.live, 0, "{snap}");
    assert_eq!(snap.refused, N / 10, "{snap}");
    assert_eq!(snap.opened + snap.refused, N, "{snap}");
    assert_eq!(snap.opened, seen.opened.load(Ordering::SeqCst));
    assert_eq!(snap.closed, seen.closed.load(Ordering::SeqCst));
    assert_eq!(snap.refused, seen.refused.load(Ordering::SeqCst));
    assert_eq!(snap.errors, *seen.errors.lock().unwrap(), "{snap}");
    assert_eq!(snap.latency.count, seen.messages.load(Ordering::SeqCst));
    assert_eq!(server.session_count(), 0, "no session task left behind");
    assert!(taken > 0);
    server.shutdown(LIMIT).await;
}

#[tokio::test]
async fn an_open_that_panics_is_counted_refused_not_opened_over_sockets() {
    struct PanicsOnOpen;
    impl EventListener<Bytes> for PanicsOnOpen {
        fn on_open(&mut self, _: &Session) -> Result<Option<Bytes>, BoxError> {
            panic!("on_open panics (expected by the test)");
        }
        fn on_message(&mut self, _: &Session, pkg: Bytes) -> Option<Bytes> {
            Some(pkg)
        }
    }
    let stats = Stats::new();
    let layer = stats.layer();
    let server = Server::builder().bind("127.0.0.1:0").await.unwrap().serve(
        LengthCodec::new(),
        new_session_fn(move |_: &Session| {
            Ok::<_, BoxError>(
                tower::ServiceBuilder::new()
                    .layer(layer.clone())
                    .service(ListenerService::new(PanicsOnOpen)),
            )
        }),
    );
    let mut raw = TcpStream::connect(server.local_addr()).await.unwrap();
    expect_closed(&mut raw).await;
    all_sessions_ended(&server).await;

    let snap = stats.snapshot();
    assert_eq!(
        (snap.refused, snap.opened, snap.closed, snap.live),
        (1, 0, 0, 0),
        "{snap}"
    );
    server.shutdown(LIMIT).await;
}

/// Echoes one message, then fails every `poll_ready`.
struct DiesAfterOneMessage {
    dead: bool,
}

impl tower::Service<Request<Bytes>> for DiesAfterOneMessage {
    type Response = Option<Bytes>;
    type Error = BoxError;
    type Future = std::future::Ready<Result<Option<Bytes>, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(if self.dead {
            Err("dead service (expected by the test)".into())
        } else {
            Ok(())
        })
    }

    fn call(&mut self, req: Request<Bytes>) -> Self::Future {
        self.dead |= req.message().is_some();
        std::future::ready(Ok(req.into_message()))
    }
}

#[tokio::test]
async fn a_session_whose_service_dies_in_poll_ready_gets_no_close_yet_is_counted_closed() {
    let stats = Stats::new();
    let layer = stats.layer();
    let server = Server::builder().bind("127.0.0.1:0").await.unwrap().serve(
        LengthCodec::new(),
        new_session_fn(move |_: &Session| {
            Ok::<_, BoxError>(
                tower::ServiceBuilder::new()
                    .layer(layer.clone())
                    .service(DiesAfterOneMessage { dead: false }),
            )
        }),
    );
    let mut raw = TcpStream::connect(server.local_addr()).await.unwrap();
    raw.write_all(&frame(b"last words")).await.unwrap();
    let echo = within(LIMIT, read_frame(&mut raw)).await;
    assert_eq!(echo.as_deref(), Some(&b"last words"[..]));
    // The next packet makes the driver poll the service, which fails: the
    // session is abandoned, without Error or Close.
    raw.write_all(&frame(b"unheard")).await.unwrap();
    expect_closed(&mut raw).await;
    all_sessions_ended(&server).await;

    let snap = stats.snapshot();
    assert_eq!((snap.opened, snap.closed, snap.live), (1, 1, 0), "{snap}");
    assert_eq!(snap.error_count(), 0, "no Error passed: {snap}");
    server.shutdown(LIMIT).await;
}

// ----- the snapshot ---------------------------------------------------------

/// A snapshot with one open session, one message and one error.
async fn some_snapshot() -> StatsSnapshot {
    let stats = Stats::new();
    let (mut svc, mut inner) = mock::spawn_layer::<MockReq, MockResp, _>(stats.layer());
    let session = detached();
    let events = [
        Event::Open,
        Event::Message(Bytes::from_static(b"hi")),
        Event::Error(Error::ReadTimeout {
            peer: Addr::Unknown,
            timeout: Duration::from_secs(1),
        }),
    ];
    for event in events {
        assert_ready_ok!(svc.poll_ready());
        let call = svc.call(Request::new(session.clone(), event));
        inner.next_request().await.unwrap().1.send_response(None);
        call.await.unwrap();
    }
    stats.snapshot()
}

#[tokio::test]
async fn the_snapshot_serializes_to_json_with_the_expected_fields() {
    let snap = some_snapshot().await;
    let json = serde_json::to_value(&snap).unwrap();
    let keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut want = vec![
        "opened",
        "closed",
        "live",
        "refused",
        "packets_in",
        "packets_out",
        "bytes_in",
        "bytes_out",
        "writes",
        "errors",
        "latency",
    ];
    want.sort_unstable();
    let mut keys = keys;
    keys.sort_unstable();
    assert_eq!(keys, want);
    assert_eq!(json["opened"], 1);
    assert_eq!(json["live"], 1);
    assert_eq!(json["closed"], 0);
    assert_eq!(json["errors"], serde_json::json!({ "read_timeout": 1 }));
    let latency = json["latency"].as_object().unwrap();
    let mut latency_keys: Vec<&str> = latency.keys().map(String::as_str).collect();
    latency_keys.sort_unstable();
    assert_eq!(
        latency_keys,
        ["count", "max_us", "mean_us", "p50_us", "p90_us", "p99_us"]
    );
    assert_eq!(latency["count"], 1);
}

#[tokio::test]
async fn the_display_is_one_human_line_with_sessions_traffic_errors_by_kind_and_latency() {
    let text = some_snapshot().await.to_string();
    assert!(!text.contains('\n'), "{text}");
    assert!(
        text.starts_with("sessions: 1 live, 1 opened, 0 closed, 0 refused; in: 0 pkgs, 0 bytes;"),
        "{text}"
    );
    assert!(text.contains("errors: 1 (read_timeout 1)"), "{text}");
    assert!(text.contains("latency: p50 "), "{text}");
    assert!(text.ends_with("(1 calls)"), "{text}");
}

// ----- the histogram ----------------------------------------------------------

/// `got` is what a percentile whose true value is `want` may report.
fn within_bucket(got: u64, want: u64) -> bool {
    (Histogram::lowest_equivalent(want)..=Histogram::highest_equivalent(want)).contains(&got)
        && got.abs_diff(want) * 16 <= want.max(1)
}

#[test]
fn histogram_percentiles_of_known_inputs_are_within_bucket_precision() {
    // 1..=10_000: the value at rank r is r.
    let h = Histogram::new();
    for v in 1..=10_000 {
        h.record(v);
    }
    assert_eq!(h.count(), 10_000);
    assert_eq!(h.max(), 10_000);
    for (q, want) in [(0.5, 5_000), (0.9, 9_000), (0.99, 9_900), (0.999, 9_990)] {
        let got = h.value_at_quantile(q);
        assert!(within_bucket(got, want), "q{q}: got {got}, want {want}");
    }
    assert_eq!(h.value_at_quantile(1.0), 10_000, "p100 is the exact max");
    let s = h.summary();
    assert!(within_bucket(s.p50_us, 5_000) && within_bucket(s.p99_us, 9_900));
    assert_eq!((s.count, s.max_us, s.mean_us), (10_000, 10_000, 5_000));

    // Skewed: 990 fast, 10 slow.
    let h = Histogram::new();
    for _ in 0..990 {
        h.record(100);
    }
    for _ in 0..10 {
        h.record(1_000_000);
    }
    assert!(within_bucket(h.value_at_quantile(0.5), 100));
    assert!(
        within_bucket(h.value_at_quantile(0.99), 100),
        "rank 990 is fast"
    );
    assert_eq!(h.value_at_quantile(0.999), 1_000_000, "capped at the max");

    // Below 16, every value has its own bucket: exact.
    let h = Histogram::new();
    for v in 0..16 {
        h.record(v);
    }
    for v in 0..16u64 {
        assert_eq!(h.value_at_quantile((v + 1) as f64 / 16.0), v);
    }

    // Empty: zeros.
    let s = Histogram::new().summary();
    assert_eq!((s.count, s.p50_us, s.p99_us, s.max_us), (0, 0, 0, 0));
}

#[test]
fn histogram_records_from_many_threads_at_once_without_losing_a_value() {
    let h = Arc::new(Histogram::new());
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let h = h.clone();
            std::thread::spawn(move || {
                for v in 0..10_000u64 {
                    h.record(v * 8 + t);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(h.count(), 80_000);
    assert_eq!(h.max(), 79_999);
    assert!(within_bucket(h.value_at_quantile(0.5), 40_000));
}
