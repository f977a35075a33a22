//! The heartbeat layer: idle detection on ticks, closing with an
//! `IdleError`, pings that keep a peer's reader busy, the cron period it
//! sets, and ticks still reaching the listener.
#[path = "../../tests/common/mod.rs"]
mod common;

use std::{
    convert::Infallible,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use bytes::Bytes;
use common::*;
use getty::{
    codec::LengthCodec, new_session_fn, Addr, BoxError, Client, EndpointKind, Error, Event,
    EventListener, ListenerService, Request, SendError, Server, ServerHandle, Session,
    SessionConfig,
};
use getty_layers::heartbeat::{Heartbeat, HeartbeatLayer, IdleError, IdleState};
use tokio::{io::AsyncReadExt, net::TcpStream, time::Instant};
use tokio_test::assert_ready_ok;
use tower::{service_fn, ServiceBuilder};
use tower_test::mock;

const LIMIT: Duration = Duration::from_secs(5);
/// Scheduling latency allowed between a due tick and its check on the server.
const TICK_SLACK: Duration = Duration::from_millis(200);
/// Latency allowed on top of that for the close to reach a client as EOF.
const EOF_SLACK: Duration = Duration::from_millis(500);

// ----- over sockets ---------------------------------------------------------

/// What the server's listener saw.
#[derive(Clone, Default)]
struct Seen {
    log: Log,
    idle: Arc<Mutex<Vec<IdleError>>>,
    sessions: Arc<Mutex<Vec<Session>>>,
    /// While set, the listener sends "news" on every tick.
    chatty: Arc<AtomicBool>,
}

impl Seen {
    fn idle_errors(&self) -> Vec<IdleError> {
        self.idle.lock().unwrap().clone()
    }
    fn session(&self) -> Session {
        self.sessions.lock().unwrap()[0].clone()
    }
}

/// Records events; does not echo (a heartbeat server only listens).
struct Listener {
    seen: Seen,
}

impl EventListener<Bytes> for Listener {
    fn on_open(&mut self, _: &Session) -> Result<Option<Bytes>, BoxError> {
        self.seen.log.push("open");
        Ok(None)
    }
    fn on_message(&mut self, _: &Session, pkg: Bytes) -> Option<Bytes> {
        self.seen
            .log
            .push(format!("message:{}", String::from_utf8_lossy(&pkg)));
        None
    }
    fn on_cron(&mut self, session: &Session) {
        self.seen.log.push("tick");
        if self.seen.chatty.load(Ordering::SeqCst) {
            session.try_send(Bytes::from_static(b"news")).unwrap();
        }
    }
    fn on_error(&mut self, _: &Session, error: &Error) {
        let idle = std::error::Error::source(error).and_then(|s| s.downcast_ref::<IdleError>());
        match (error, idle) {
            (Error::Raised { .. }, Some(idle)) => {
                self.seen.log.push(format!("idle:{error}"));
                self.seen.idle.lock().unwrap().push(idle.clone());
            }
            _ => self.seen.log.push(format!("error:{error}")),
        }
    }
    fn on_close(&mut self, _: &Session) {
        self.seen.log.push("close");
    }
}

/// A length-prefixed server whose sessions run `heartbeat` over a [`Listener`].
async fn heartbeat_server(heartbeat: HeartbeatLayer) -> (ServerHandle, Seen) {
    let seen = Seen::default();
    let server = Server::builder().bind("127.0.0.1:0").await.expect("bind");
    let s = seen.clone();
    let handle = server.serve(
        LengthCodec::new(),
        new_session_fn(move |session: &Session| {
            s.sessions.lock().unwrap().push(session.clone());
            Ok::<_, BoxError>(
                ServiceBuilder::new()
                    .layer(heartbeat.clone())
                    .service(ListenerService::new(Listener { seen: s.clone() })),
            )
        }),
    );
    (handle, seen)
}

/// Reads (and drops) frames until the server closes the connection.
async fn until_eof(s: &mut TcpStream) {
    within(LIMIT, async {
        let mut buf = [0u8; 1024];
        while s.read(&mut buf).await.expect("read") > 0 {}
    })
    .await
}

#[tokio::test]
async fn a_silent_client_is_closed_within_one_cron_period_after_the_reader_idle_limit() {
    let limit = Duration::from_millis(300);
    let period = limit / 4; // set by the layer: the session has no cron period
    let (server, seen) =
        heartbeat_server(HeartbeatLayer::new().close_when_reader_idle(limit)).await;

    let start = Instant::now();
    let mut raw = TcpStream::connect(server.local_addr()).await.unwrap();
    until_eof(&mut raw).await;
    let took = start.elapsed();

    assert!(
        took >= limit,
        "closed after {took:?}, before the {limit:?} limit"
    );
    assert!(
        took < limit + period + EOF_SLACK,
        "closed after {took:?}: not within one cron period ({period:?}) of the limit"
    );
    // The server's own measure, free of network latency.
    eventually(LIMIT, "close", || seen.log.count("close") == 1).await;
    let errors = seen.idle_errors();
    assert_eq!(errors.len(), 1, "{:?}", seen.log.events());
    let idle = errors[0].idle();
    assert_eq!(errors[0].state(), IdleState::ReaderIdle);
    assert!(idle >= limit, "idle {idle:?}");
    assert!(idle < limit + period + TICK_SLACK, "idle {idle:?}");
    assert_eq!(seen.session().cron_period(), Some(period));
    server.shutdown(LIMIT).await;
}

#[tokio::test]
async fn on_error_sees_the_idle_error_as_raised_and_on_close_follows() {
    let limit = Duration::from_millis(100);
    let (server, seen) =
        heartbeat_server(HeartbeatLayer::new().close_when_reader_idle(limit)).await;
    let mut raw = TcpStream::connect(server.local_addr()).await.unwrap();
    let client_addr = raw.local_addr().unwrap();
    until_eof(&mut raw).await;
    eventually(LIMIT, "close", || seen.log.count("close") == 1).await;

    let events: Vec<String> = seen
        .log
        .events()
        .into_iter()
        .filter(|e| e != "tick")
        .collect();
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(events[0], "open");
    assert_eq!(events[2], "close");
    // on_error got Error::Raised whose source downcasts to IdleError.
    let errors = seen.idle_errors();
    assert_eq!(errors.len(), 1);
    let e = &errors[0];
    assert_eq!(e.state(), IdleState::ReaderIdle);
    assert_eq!(e.limit(), limit);
    assert_eq!(e.peer(), &Addr::from(client_addr));
    let shown = format!(
        "idle:reader idle for {:.1?} (limit 100ms) from {client_addr}",
        e.idle()
    );
    assert_eq!(events[1], shown);
    server.shutdown(LIMIT).await;
}

#[tokio::test]
async fn a_client_pinging_when_writer_idle_keeps_a_reader_idle_server_from_closing_it() {
    let server_limit = Duration::from_millis(300);
    let ping_limit = Duration::from_millis(100);
    let (server, seen) =
        heartbeat_server(HeartbeatLayer::new().close_when_reader_idle(server_limit)).await;

    let start = Instant::now();
    let client = Client::builder()
        .connect(
            server.local_addr().to_string(),
            LengthCodec::new(),
            new_session_fn(move |_: &Session| {
                Ok::<_, BoxError>(
                    ServiceBuilder::new()
                        .layer(
                            HeartbeatLayer::new()
                                .ping_when_writer_idle(ping_limit, || Bytes::from_static(b"ping")),
                        )
                        .service(service_fn(|_: Request<Bytes>| async {
                            Ok::<_, Infallible>(None::<Bytes>)
                        })),
                )
            }),
        )
        .await
        .expect("connect");

    // Ten pings a ping limit apart span more than three server limits.
    eventually(LIMIT, "ten pings at the server", || {
        seen.log.count("message:ping") >= 10
    })
    .await;
    let elapsed = start.elapsed();
    assert!(elapsed >= server_limit * 3, "only {elapsed:?}");
    let pings = seen.log.count("message:ping") as u32;
    assert!(
        pings <= (elapsed.as_millis() / ping_limit.as_millis()) as u32 + 2,
        "{pings} pings in {elapsed:?}: more than one per ping limit"
    );
    assert_eq!(
        seen.log.count("message:"),
        pings as usize,
        "only pings were sent"
    );
    // One session all along: never closed, never reconnected.
    assert_eq!(seen.log.count("open"), 1);
    assert_eq!(seen.log.count("idle:"), 0, "{:?}", seen.log.events());
    assert_eq!(seen.log.count("close"), 0);
    assert!(!seen.session().is_closed());
    assert_eq!(client.session_count(), 1);

    client.shutdown(LIMIT).await;
    server.shutdown(LIMIT).await;
}

#[tokio::test]
async fn close_when_all_idle_waits_until_neither_side_has_traffic() {
    let limit = Duration::from_millis(300);
    let period = limit / 4;
    let (server, seen) = heartbeat_server(HeartbeatLayer::new().close_when_all_idle(limit)).await;
    seen.chatty.store(true, Ordering::SeqCst);

    // The client says nothing, but the server writes every tick: its reader
    // is idle, its writer is not, so it is not all idle.
    let start = Instant::now();
    let mut raw = TcpStream::connect(server.local_addr()).await.unwrap();
    let mut news = 0;
    while start.elapsed() < limit * 3 {
        assert_eq!(read_frame(&mut raw).await, b"news");
        news += 1;
    }
    assert!(news >= 3);
    assert_eq!(seen.log.count("close"), 0, "{:?}", seen.log.events());
    assert!(!seen.session().is_closed());
    assert!(
        seen.session().active().elapsed() >= limit * 2,
        "reader idle all along"
    );

    // Now the server goes quiet too.
    seen.chatty.store(false, Ordering::SeqCst);
    let quiet = Instant::now();
    until_eof(&mut raw).await;
    let took = quiet.elapsed();
    // The last write may have left up to one tick after `quiet`.
    assert!(took + period >= limit, "closed {took:?} after going quiet");
    assert!(
        took < limit + period + EOF_SLACK,
        "closed {took:?} after going quiet"
    );

    eventually(LIMIT, "close", || seen.log.count("close") == 1).await;
    let errors = seen.idle_errors();
    assert_eq!(errors.len(), 1, "{:?}", seen.log.events());
    assert_eq!(errors[0].state(), IdleState::AllIdle);
    assert!(errors[0].idle() >= limit);
    assert!(
        errors[0].idle() < limit + period + TICK_SLACK,
        "{:?}",
        errors[0]
    );
    assert!(seen
        .log
        .events()
        .iter()
        .any(|e| e.starts_with("idle:all idle for ")));
    server.shutdown(LIMIT).await;
}

#[tokio::test]
async fn ticks_still_reach_the_listener_and_a_configured_cron_period_is_kept() {
    let limit = Duration::from_millis(400);
    let period = Duration::from_millis(40);
    let seen = Seen::default();
    let server = Server::builder()
        .session_config(SessionConfig::default().cron_period(Some(period)))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let s = seen.clone();
    let server = server.serve(
        LengthCodec::new(),
        new_session_fn(move |session: &Session| {
            s.sessions.lock().unwrap().push(session.clone());
            Ok::<_, BoxError>(
                ServiceBuilder::new()
                    .layer(HeartbeatLayer::new().close_when_reader_idle(limit))
                    .service(ListenerService::new(Listener { seen: s.clone() })),
            )
        }),
    );
    let mut raw = TcpStream::connect(server.local_addr()).await.unwrap();
    until_eof(&mut raw).await;
    eventually(LIMIT, "close", || seen.log.count("close") == 1).await;
    // The session's own period (40 ms), not the layer's default (100 ms).
    assert_eq!(seen.session().cron_period(), Some(period));
    let ticks = seen.log.count("tick");
    assert!(ticks >= 5, "{ticks} ticks reached on_cron in {limit:?}");
    let errors = seen.idle_errors();
    assert!(
        errors[0].idle() < limit + period + TICK_SLACK,
        "{:?}",
        errors[0]
    );
    server.shutdown(LIMIT).await;
}

/// A session configured with a coarse cron period (4 s) under a 500 ms
/// reader-idle limit: the layer lowers the period to what the limit needs,
/// so the silent client is closed about 500 ms in, not at the first 4 s tick.
#[tokio::test]
async fn a_coarser_existing_cron_period_is_lowered_to_what_the_idle_limit_needs() {
    let limit = Duration::from_millis(500);
    let coarse = Duration::from_secs(4);
    let period = limit / 4;
    let seen = Seen::default();
    let server = Server::builder()
        .session_config(SessionConfig::default().cron_period(Some(coarse)))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let s = seen.clone();
    let server = server.serve(
        LengthCodec::new(),
        new_session_fn(move |session: &Session| {
            s.sessions.lock().unwrap().push(session.clone());
            Ok::<_, BoxError>(
                ServiceBuilder::new()
                    .layer(HeartbeatLayer::new().close_when_reader_idle(limit))
                    .service(ListenerService::new(Listener { seen: s.clone() })),
            )
        }),
    );
    let start = Instant::now();
    let mut raw = TcpStream::connect(server.local_addr()).await.unwrap();
    until_eof(&mut raw).await;
    let took = start.elapsed();
    assert!(
        took >= limit,
        "closed after {took:?}, before the {limit:?} limit"
    );
    assert!(
        took < limit + period + EOF_SLACK,
        "closed after {took:?}: the idle limit is {limit:?}, the session's cron period was {coarse:?}"
    );
    eventually(LIMIT, "close", || seen.log.count("close") == 1).await;
    assert_eq!(seen.session().cron_period(), Some(period));
    server.shutdown(LIMIT).await;
}

// ----- unit tests: a mock inner service and a detached session ---------------

fn detached(capacity: usize) -> Session {
    Session::new(
        EndpointKind::Detached,
        Addr::Unknown,
        Addr::Unknown,
        SessionConfig::default().queue_capacity(capacity),
    )
}

/// Passes `event` through the service; returns the event the mock saw.
async fn pass(
    svc: &mut mock::Spawn<Heartbeat<mock::Mock<Request<Bytes>, Option<Bytes>>>>,
    handle: &mut mock::Handle<Request<Bytes>, Option<Bytes>>,
    session: &Session,
    event: Event<Bytes>,
) -> &'static str {
    assert_ready_ok!(svc.poll_ready());
    let fut = svc.call(Request::new(session.clone(), event));
    let (req, respond) = within(LIMIT, handle.next_request()).await.expect("request");
    respond.send_response(None);
    assert!(within(LIMIT, fut).await.expect("response").is_none());
    req.event.name()
}

#[tokio::test]
async fn open_gives_a_session_without_cron_period_a_quarter_of_the_smallest_limit() {
    let (mut svc, mut handle) = mock::spawn_layer(
        HeartbeatLayer::new()
            .close_when_reader_idle(Duration::from_secs(30))
            .ping_when_writer_idle(Duration::from_secs(10), || Bytes::from_static(b"ping")),
    );
    let session = detached(8);
    assert_eq!(
        pass(&mut svc, &mut handle, &session, Event::Open).await,
        "open"
    );
    assert_eq!(session.cron_period(), Some(Duration::from_millis(2500)));
}

#[tokio::test]
async fn the_cron_period_set_on_open_is_at_least_10ms_or_the_configured_one_and_an_existing_one_is_kept_only_if_finer(
) {
    let (mut svc, mut handle) =
        mock::spawn_layer(HeartbeatLayer::new().close_when_all_idle(Duration::from_millis(20)));
    let session = detached(8);
    pass(&mut svc, &mut handle, &session, Event::Open).await;
    assert_eq!(session.cron_period(), Some(Duration::from_millis(10)));

    let (mut svc, mut handle) = mock::spawn_layer(
        HeartbeatLayer::new()
            .close_when_all_idle(Duration::from_secs(1))
            .cron_period(Duration::from_millis(70)),
    );
    let session = detached(8);
    pass(&mut svc, &mut handle, &session, Event::Open).await;
    assert_eq!(session.cron_period(), Some(Duration::from_millis(70)));

    // A coarser period is lowered to the layer's, a finer one kept.
    let session = detached(8);
    session.set_cron_period(Some(Duration::from_secs(3)));
    pass(&mut svc, &mut handle, &session, Event::Open).await;
    assert_eq!(session.cron_period(), Some(Duration::from_millis(70)));
    let session = detached(8);
    session.set_cron_period(Some(Duration::from_millis(30)));
    pass(&mut svc, &mut handle, &session, Event::Open).await;
    assert_eq!(session.cron_period(), Some(Duration::from_millis(30)));
    // Coarsened after open, it is lowered again on the next tick.
    session.set_cron_period(Some(Duration::from_secs(3)));
    pass(&mut svc, &mut handle, &session, Event::Tick).await;
    assert_eq!(session.cron_period(), Some(Duration::from_millis(70)));

    // No checks, no period.
    let (mut svc, mut handle) = mock::spawn_layer(HeartbeatLayer::new());
    let session = detached(8);
    pass(&mut svc, &mut handle, &session, Event::Open).await;
    assert_eq!(session.cron_period(), None);
}

#[tokio::test]
async fn a_tick_before_the_limit_leaves_the_session_open_and_one_after_closes_it_and_still_passes()
{
    let limit = Duration::from_millis(50);
    let (mut svc, mut handle) =
        mock::spawn_layer(HeartbeatLayer::new().close_when_reader_idle(limit));
    let session = detached(8);
    assert_eq!(
        pass(&mut svc, &mut handle, &session, Event::Tick).await,
        "tick"
    );
    assert!(!session.is_closed());
    tokio::time::sleep(limit).await; // the idle time itself
    assert_eq!(
        pass(&mut svc, &mut handle, &session, Event::Tick).await,
        "tick"
    );
    assert!(session.is_closed());
    // Later ticks pass too, and do nothing more.
    assert_eq!(
        pass(&mut svc, &mut handle, &session, Event::Tick).await,
        "tick"
    );
}

#[tokio::test]
async fn each_state_is_measured_from_its_own_clock() {
    let limit = Duration::from_millis(40);
    let layers = [
        (IdleState::ReaderIdle, false),
        (IdleState::WriterIdle, true),
        (IdleState::AllIdle, false),
    ];
    for (state, closes) in layers {
        let (mut svc, mut handle) =
            mock::spawn_layer(HeartbeatLayer::new().close_when(state, limit));
        let session = detached(8);
        tokio::time::sleep(limit).await;
        // A packet "arrived" just now; nothing was ever written.
        session.update_active();
        pass(&mut svc, &mut handle, &session, Event::Tick).await;
        assert_eq!(session.is_closed(), closes, "{state}");
    }
}

#[tokio::test]
async fn a_ping_is_queued_once_per_limit_not_on_every_tick() {
    let limit = Duration::from_millis(40);
    let (mut svc, mut handle) = mock::spawn_layer(
        HeartbeatLayer::new().ping_when_writer_idle(limit, || Bytes::from_static(b"ping")),
    );
    // A detached session writes nothing: its queue shows what was sent.
    let session = detached(3);
    tokio::time::sleep(limit).await;
    pass(&mut svc, &mut handle, &session, Event::Tick).await; // ping 1
    pass(&mut svc, &mut handle, &session, Event::Tick).await; // not due again
    tokio::time::sleep(limit).await;
    pass(&mut svc, &mut handle, &session, Event::Tick).await; // ping 2
    assert_eq!(
        session.try_send(Bytes::from_static(b"x")),
        Ok(()),
        "third place free"
    );
    assert_eq!(
        session.try_send(Bytes::from_static(b"y")),
        Err(SendError::Blocked)
    );
    assert!(!session.is_closed());
}

#[tokio::test]
async fn a_full_queue_skips_the_ping_without_failing_or_closing() {
    let limit = Duration::from_millis(20);
    let (mut svc, mut handle) = mock::spawn_layer(
        HeartbeatLayer::new().ping_when_all_idle(limit, || Bytes::from_static(b"ping")),
    );
    let session = detached(1);
    session.try_send(Bytes::from_static(b"stuck")).unwrap();
    tokio::time::sleep(limit).await;
    assert_eq!(
        pass(&mut svc, &mut handle, &session, Event::Tick).await,
        "tick"
    );
    assert!(!session.is_closed());
    // A closed session is not pinged either, and nothing fails.
    session.close();
    assert_eq!(
        pass(&mut svc, &mut handle, &session, Event::Tick).await,
        "tick"
    );
}

#[tokio::test]
async fn a_close_check_wins_over_a_ping_on_the_same_tick() {
    let limit = Duration::from_millis(20);
    let (mut svc, mut handle) = mock::spawn_layer(
        HeartbeatLayer::new()
            .ping_when_reader_idle(limit, || Bytes::from_static(b"ping"))
            .close_when_reader_idle(limit),
    );
    let session = detached(1);
    tokio::time::sleep(limit).await;
    pass(&mut svc, &mut handle, &session, Event::Tick).await;
    assert!(session.is_closed());
    // No ping took the one place in the queue before the close.
    assert_eq!(session.try_send(Bytes::new()), Err(SendError::Closed));
}

#[tokio::test]
async fn a_zero_limit_turns_a_check_off() {
    let (mut svc, mut handle) = mock::spawn_layer(
        HeartbeatLayer::new()
            .close_when_reader_idle(Duration::from_millis(10))
            .close_when_reader_idle(Duration::ZERO),
    );
    let session = detached(1);
    pass(&mut svc, &mut handle, &session, Event::Open).await;
    assert_eq!(session.cron_period(), None, "no checks left");
    tokio::time::sleep(Duration::from_millis(20)).await;
    pass(&mut svc, &mut handle, &session, Event::Tick).await;
    assert!(!session.is_closed());
}

#[tokio::test]
async fn messages_errors_and_close_pass_through_untouched() {
    let (mut svc, mut handle) =
        mock::spawn_layer(HeartbeatLayer::new().close_when_reader_idle(Duration::from_millis(1)));
    let session = detached(1);
    std::thread::sleep(Duration::from_millis(5));
    let msg = Event::Message(Bytes::from_static(b"m"));
    assert_eq!(pass(&mut svc, &mut handle, &session, msg).await, "message");
    let err = Event::Error(Error::Raised { source: "x".into() });
    assert_eq!(pass(&mut svc, &mut handle, &session, err).await, "error");
    assert_eq!(
        pass(&mut svc, &mut handle, &session, Event::Close).await,
        "close"
    );
    assert!(!session.is_closed(), "only ticks check idleness");
}

#[test]
fn idle_error_display_names_state_duration_limit_and_peer() {
    let peer: Addr = "127.0.0.1:5555"
        .parse::<std::net::SocketAddr>()
        .unwrap()
        .into();
    let e = IdleError::new(
        IdleState::WriterIdle,
        Duration::from_millis(1_240),
        Duration::from_secs(1),
        peer.clone(),
    );
    assert_eq!(
        e.to_string(),
        "writer idle for 1.2s (limit 1s) from 127.0.0.1:5555"
    );
    assert_eq!(
        (e.state(), e.idle(), e.limit(), e.peer()),
        (
            IdleState::WriterIdle,
            Duration::from_millis(1_240),
            Duration::from_secs(1),
            &peer
        )
    );
}
