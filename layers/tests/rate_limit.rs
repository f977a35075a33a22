//! `RateLimit`: a packet rate limit per session. Unit tests on a mock
//! service with a paused clock (the bucket math and each policy), then end to
//! end over 127.0.0.1: a flood delayed, dropped or closed, and a second
//! session unaffected by the first one's flood.

use std::{
    convert::Infallible,
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use getty::{
    codec::LengthCodec, new_session_fn, Addr, BoxError, EndpointKind, Error, Event, Request,
    Server, ServerHandle, Session, SessionConfig,
};
use getty_layers::rate_limit::{OverLimit, Rate, RateLimit, RateLimitError, RateLimitLayer};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::Instant,
};
use tokio_test::{assert_pending, assert_ready_ok};
use tower::{service_fn, Service, ServiceBuilder};
use tower_test::mock;

const LIMIT: Duration = Duration::from_secs(10);
const MS: Duration = Duration::from_millis(1);

type Mock = mock::Mock<Request<Bytes>, Option<Bytes>>;
type Handle = mock::Handle<Request<Bytes>, Option<Bytes>>;

fn detached() -> Session {
    Session::new(
        EndpointKind::Detached,
        Addr::Unknown,
        Addr::Unknown,
        SessionConfig::default(),
    )
}

fn message(session: &Session, text: &'static str) -> Request<Bytes> {
    Request::new(
        session.clone(),
        Event::Message(Bytes::from_static(text.as_bytes())),
    )
}

fn spawn(rate: Rate, policy: OverLimit) -> (mock::Spawn<RateLimit<Mock>>, Handle) {
    mock::spawn_layer(RateLimitLayer::new(rate).on_over_limit(policy))
}

/// Calls with a message the inner service answers with itself; returns the answer.
async fn pass(
    svc: &mut mock::Spawn<RateLimit<Mock>>,
    handle: &mut Handle,
    session: &Session,
    text: &'static str,
) -> Option<Bytes> {
    let fut = svc.call(message(session, text));
    let (req, respond) = handle
        .next_request()
        .await
        .expect("the inner service got the packet");
    respond.send_response(req.into_message());
    fut.await.expect("no service error")
}

/// Whether the inner service has a request waiting.
fn inner_got_one(handle: &mut Handle) -> bool {
    handle.poll_request().is_ready()
}

// ----- unit tests: a mock inner service, a paused clock ---------------------

#[tokio::test(start_paused = true)]
async fn delay_poll_ready_is_pending_until_the_bucket_has_a_token() {
    // 10 per second: one token per 100 ms, bursts of 2.
    let (mut svc, mut handle) = spawn(Rate::per_second(10).with_burst(2), OverLimit::Delay);
    let session = detached();
    for text in ["a", "b"] {
        assert_ready_ok!(svc.poll_ready(), "within the burst");
        assert!(pass(&mut svc, &mut handle, &session, text).await.is_some());
    }
    assert_pending!(svc.poll_ready(), "the burst is spent");
    assert_eq!(svc.get_ref().available(), 0);
    tokio::time::advance(99 * MS).await;
    assert!(!svc.is_woken(), "woken before the token is there");
    assert_pending!(svc.poll_ready());
    tokio::time::advance(MS).await;
    assert!(svc.is_woken(), "the service's own timer wakes the task");
    assert_ready_ok!(svc.poll_ready());
    assert!(pass(&mut svc, &mut handle, &session, "c").await.is_some());
    assert_pending!(svc.poll_ready());
}

#[tokio::test(start_paused = true)]
async fn delay_spaces_a_flood_at_the_rate_after_the_burst() {
    let rate = Rate::per_second(50).with_burst(5);
    let (mut svc, mut handle) = spawn(rate, OverLimit::Delay);
    let session = detached();
    let start = Instant::now();
    let mut admitted_at = Vec::new();
    for _ in 0..25 {
        std::future::poll_fn(|cx| svc.get_mut().poll_ready(cx))
            .await
            .unwrap();
        admitted_at.push(start.elapsed());
        pass(&mut svc, &mut handle, &session, "x").await;
    }
    // 5 at once, then one per 20 ms, exactly.
    for (i, at) in admitted_at.iter().enumerate() {
        let want = if i < 5 {
            Duration::ZERO
        } else {
            (i as u32 - 4) * 20 * MS
        };
        assert_eq!(*at, want, "packet {i}");
    }
}

#[tokio::test(start_paused = true)]
async fn delay_counts_only_messages_other_events_keep_the_reserved_token() {
    let (mut svc, mut handle) = spawn(Rate::per_second(10).with_burst(1), OverLimit::Delay);
    let session = detached();
    for event in [Event::Open, Event::Tick, Event::Tick] {
        assert_ready_ok!(svc.poll_ready());
        let fut = svc.call(Request::new(session.clone(), event));
        let (_, respond) = handle.next_request().await.unwrap();
        respond.send_response(None);
        fut.await.unwrap();
    }
    assert_eq!(svc.get_ref().available(), 1, "ticks spent nothing");
    assert_ready_ok!(svc.poll_ready());
    assert!(pass(&mut svc, &mut handle, &session, "m").await.is_some());
    assert_eq!(svc.get_ref().available(), 0);
    assert_pending!(svc.poll_ready(), "the message spent the only token");
}

#[tokio::test(start_paused = true)]
async fn delay_waits_no_more_once_the_session_is_closed() {
    let (mut svc, mut handle) = spawn(Rate::new(1, Duration::from_secs(3600)), OverLimit::Delay);
    let session = detached();
    assert_ready_ok!(svc.poll_ready());
    pass(&mut svc, &mut handle, &session, "a").await;
    assert_pending!(svc.poll_ready(), "an hour until the next token");

    session.close();
    // The driver polls again when the session closes: nothing waits now.
    assert_ready_ok!(svc.poll_ready());
    // A packet still buffered while draining, over the limit: discarded.
    let refused = svc.call(message(&session, "late"));
    assert_eq!(refused.await.unwrap(), None);
    assert!(
        !inner_got_one(&mut handle),
        "the inner service never saw it"
    );
    assert_eq!(svc.get_ref().dropped(), 1);
    // And the final Close passes at once.
    assert_ready_ok!(svc.poll_ready());
    let fut = svc.call(Request::new(session.clone(), Event::Close));
    let (req, respond) = handle.next_request().await.unwrap();
    assert_eq!(req.event.name(), "close");
    respond.send_response(None);
    fut.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn drop_refuses_over_limit_packets_without_calling_the_inner_service() {
    let (mut svc, mut handle) = spawn(Rate::per_second(10).with_burst(2), OverLimit::Drop);
    let session = detached();
    for text in ["a", "b"] {
        assert_ready_ok!(svc.poll_ready());
        assert!(pass(&mut svc, &mut handle, &session, text).await.is_some());
    }
    for n in 1..=3 {
        assert_ready_ok!(svc.poll_ready(), "Drop never holds poll_ready");
        let refused = svc.call(message(&session, "over"));
        assert_eq!(refused.await.unwrap(), None, "an empty response");
        assert!(
            !inner_got_one(&mut handle),
            "the inner service never saw it"
        );
        assert_eq!(svc.get_ref().dropped(), n);
    }
    assert!(!session.is_closed(), "Drop keeps the session");
    // Refused packets took no tokens: one interval later a packet passes.
    tokio::time::advance(100 * MS).await;
    assert_ready_ok!(svc.poll_ready());
    assert!(pass(&mut svc, &mut handle, &session, "c").await.is_some());
}

#[tokio::test(start_paused = true)]
async fn close_refuses_the_packet_over_the_limit_and_closes_the_session() {
    let (mut svc, mut handle) = spawn(Rate::per_second(10).with_burst(1), OverLimit::Close);
    let session = detached();
    assert_ready_ok!(svc.poll_ready());
    pass(&mut svc, &mut handle, &session, "a").await;
    assert!(!session.is_closed());
    assert_ready_ok!(svc.poll_ready());
    assert_eq!(svc.call(message(&session, "b")).await.unwrap(), None);
    assert!(!inner_got_one(&mut handle));
    assert!(session.is_closed(), "OverLimit::Close closes the session");
    assert_eq!(svc.get_ref().dropped(), 1);
}

#[tokio::test(start_paused = true)]
async fn drop_and_close_poll_ready_is_the_inner_services() {
    for policy in [OverLimit::Drop, OverLimit::Close] {
        let (mut svc, mut handle) = spawn(Rate::per_second(1).with_burst(1), policy);
        handle.allow(0);
        assert_pending!(svc.poll_ready(), "{policy:?}");
        handle.allow(1);
        assert!(svc.is_woken());
        assert_ready_ok!(svc.poll_ready(), "{policy:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_clone_starts_with_a_full_bucket_of_its_own() {
    let (mut svc, mut handle) = spawn(Rate::per_second(10).with_burst(3), OverLimit::Delay);
    let session = detached();
    for _ in 0..3 {
        assert_ready_ok!(svc.poll_ready());
        pass(&mut svc, &mut handle, &session, "x").await;
    }
    assert_pending!(svc.poll_ready());
    let clone = svc.get_ref().clone();
    assert_eq!(clone.available(), 3, "the clone's bucket is full");
    assert_eq!(
        svc.get_ref().available(),
        0,
        "the original's is still empty"
    );
}

#[tokio::test(start_paused = true)]
async fn the_bucket_refills_up_to_the_burst_and_no_further() {
    let (mut svc, mut handle) = spawn(Rate::per_second(10).with_burst(4), OverLimit::Drop);
    let session = detached();
    for _ in 0..4 {
        assert_ready_ok!(svc.poll_ready());
        assert!(pass(&mut svc, &mut handle, &session, "x").await.is_some());
    }
    tokio::time::advance(250 * MS).await;
    assert_eq!(svc.get_ref().available(), 2, "two whole tokens in 250 ms");
    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(
        svc.get_ref().available(),
        4,
        "a quiet minute refills to the burst only"
    );
    for _ in 0..4 {
        assert_ready_ok!(svc.poll_ready());
        assert!(pass(&mut svc, &mut handle, &session, "x").await.is_some());
    }
    assert_ready_ok!(svc.poll_ready());
    assert_eq!(svc.call(message(&session, "over")).await.unwrap(), None);
    assert_eq!(svc.get_ref().dropped(), 1);
}

// ----- end to end over 127.0.0.1 ---------------------------------------------

/// Everything the innermost service saw, in order.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn push(&self, s: impl Into<String>) {
        self.0.lock().unwrap().push(s.into());
    }
    fn events(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
    fn count(&self, prefix: &str) -> usize {
        self.events()
            .iter()
            .filter(|e| e.starts_with(prefix))
            .count()
    }
}

/// An echo service that logs every event; a `RateLimitError` is logged
/// with its fields.
fn echo(
    log: Log,
) -> impl Service<Request<Bytes>, Response = Option<Bytes>, Error = Infallible, Future = impl Send>
       + Send
       + Clone
       + 'static {
    service_fn(move |req: Request<Bytes>| {
        let log = log.clone();
        async move {
            match req.event {
                Event::Open => log.push("open"),
                Event::Message(pkg) => {
                    log.push(format!("message:{}", String::from_utf8_lossy(&pkg)));
                    return Ok(Some(pkg));
                }
                Event::Error(Error::Raised { source }) => {
                    match source.downcast_ref::<RateLimitError>() {
                        Some(e) => log.push(format!(
                            "error:rate-limit({:?}, dropped={}, peer={}, closed={})",
                            e.policy,
                            e.dropped,
                            e.peer,
                            req.session.is_closed()
                        )),
                        None => log.push(format!("error:raised:{source}")),
                    }
                }
                Event::Error(other) => log.push(format!("error:other:{other}")),
                Event::Close => log.push("close"),
                _ => {}
            }
            Ok(None)
        }
    })
}

/// A server whose sessions are each limited to `rate`, and the time each
/// session's stack (so its bucket) was made.
async fn serve(
    rate: Rate,
    policy: OverLimit,
    log: Log,
) -> (ServerHandle, Arc<Mutex<Vec<Instant>>>) {
    let made = Arc::new(Mutex::new(Vec::new()));
    let m = made.clone();
    let server = Server::builder().bind("127.0.0.1:0").await.expect("bind");
    let handle = server.serve(
        LengthCodec::new(),
        new_session_fn(move |_: &Session| {
            let stack = ServiceBuilder::new()
                .layer(RateLimitLayer::new(rate).on_over_limit(policy))
                .service(echo(log.clone()));
            m.lock().unwrap().push(Instant::now());
            Ok::<_, BoxError>(stack)
        }),
    );
    (handle, made)
}

fn frames(payloads: impl IntoIterator<Item = String>) -> Vec<u8> {
    let mut wire = Vec::new();
    for p in payloads {
        wire.extend_from_slice(&(p.len() as u32).to_be_bytes());
        wire.extend_from_slice(p.as_bytes());
    }
    wire
}

async fn read_frame(s: &mut TcpStream) -> String {
    within(LIMIT, async {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).await.expect("read length");
        let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut buf).await.expect("read payload");
        String::from_utf8(buf).unwrap()
    })
    .await
}

/// Reads until the server closes; fails on any byte.
async fn expect_eof(s: &mut TcpStream) {
    let mut buf = [0u8; 64];
    let n = within(LIMIT, s.read(&mut buf))
        .await
        .expect("read after close");
    assert_eq!(n, 0, "expected EOF, got {:?}", &buf[..n]);
}

async fn within<T>(limit: Duration, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or_else(|_| panic!("did not finish within {limit:?}"))
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {LIMIT:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn delay_echoes_every_packet_of_a_flood_no_faster_than_the_rate() {
    // 100 packets a second, bursts of 10: 110 packets need at least 1 s.
    let rate = Rate::per_second(100).with_burst(10);
    let n = 110u32;
    let log = Log::default();
    let start = Instant::now();
    let (server, _) = serve(rate, OverLimit::Delay, log.clone()).await;
    let mut raw = TcpStream::connect(server.local_addr()).await.unwrap();
    // The whole flood in one write: the server has every byte at once.
    raw.write_all(&frames((0..n).map(|i| i.to_string())))
        .await
        .unwrap();

    for i in 0..n {
        assert_eq!(read_frame(&mut raw).await, i.to_string(), "echoes in order");
        if i == n / 2 {
            // Halfway, the driver has not even decoded the rest: it stopped
            // reading while the limiter held it, so the peer is pushed back on.
            let s = server.sessions().sessions().pop().unwrap();
            assert!(
                s.stats().packets_in < u64::from(n),
                "{} of {n} packets decoded halfway through the delay",
                s.stats().packets_in
            );
        }
    }
    let took = start.elapsed();
    let least = rate.interval() * (n - rate.burst());
    assert!(
        took >= least,
        "{n} packets in {took:?}: faster than {rate} allows ({least:?})"
    );
    assert!(took < LIMIT, "took {took:?}");
    assert_eq!(log.count("message:"), n as usize);
    assert_eq!(log.count("error"), 0, "Delay reports nothing");
    server.shutdown(LIMIT).await;
}

#[tokio::test]
async fn a_flood_on_one_session_does_not_slow_another() {
    // 20 packets a second, bursts of 5: the flood of 45 needs at least 2 s.
    let rate = Rate::per_second(20).with_burst(5);
    let flood = 45u32;
    let log = Log::default();
    let (server, _) = serve(rate, OverLimit::Delay, log.clone()).await;
    let mut flooder = TcpStream::connect(server.local_addr()).await.unwrap();
    flooder
        .write_all(&frames((0..flood).map(|i| format!("f{i}"))))
        .await
        .unwrap();
    // Past its burst: the flooder is being delayed now.
    for i in 0..rate.burst() + 1 {
        assert_eq!(read_frame(&mut flooder).await, format!("f{i}"));
    }
    let flood_echoed = rate.burst() + 1;

    // A second session sends a burst of its own and gets it all back at
    // once, while the first is still held to the rate.
    let start = Instant::now();
    let mut other = TcpStream::connect(server.local_addr()).await.unwrap();
    other
        .write_all(&frames((0..rate.burst()).map(|i| format!("o{i}"))))
        .await
        .unwrap();
    for i in 0..rate.burst() {
        assert_eq!(read_frame(&mut other).await, format!("o{i}"));
    }
    let took = start.elapsed();
    // The flooder still has at least (45 - 6) / 20 s = 1.95 s to go.
    let flood_left = rate.interval() * (flood - flood_echoed);
    assert!(
        took < flood_left / 2,
        "the second session took {took:?}; the flood alone has {flood_left:?} left"
    );
    let seen = log.events();
    let flood_done = seen.iter().any(|e| *e == format!("message:f{}", flood - 1));
    assert!(
        !flood_done,
        "the flood finished before the second session was served"
    );

    for i in flood_echoed..flood {
        assert_eq!(read_frame(&mut flooder).await, format!("f{i}"));
    }
    server.shutdown(LIMIT).await;
}

#[tokio::test]
async fn delay_lets_a_session_over_its_limit_close_at_once() {
    // One packet an hour: the second packet would wait an hour.
    let log = Log::default();
    let (server, _) = serve(
        Rate::new(1, Duration::from_secs(3600)),
        OverLimit::Delay,
        log.clone(),
    )
    .await;
    let mut raw = TcpStream::connect(server.local_addr()).await.unwrap();
    raw.write_all(&frames(["first".to_string(), "second".to_string()]))
        .await
        .unwrap();
    assert_eq!(read_frame(&mut raw).await, "first");
    let s = server.sessions().sessions().pop().unwrap();
    eventually("the second packet decoded and held", || {
        s.stats().packets_in == 2
    })
    .await;

    s.close();
    expect_eof(&mut raw).await;
    within(LIMIT, s.finished()).await;
    assert_eq!(log.events(), ["open", "message:first", "close"]);
    server.shutdown(LIMIT).await;
}

#[tokio::test]
async fn drop_skips_over_limit_packets_reports_them_coalesced_and_keeps_the_session_open() {
    // Bursts of 3, then one packet per 500 ms: a batch of 10 sent at once
    // is 3 echoes and 7 drops.
    let rate = Rate::new(1, Duration::from_millis(500)).with_burst(3);
    let log = Log::default();
    let (server, made) = serve(rate, OverLimit::Drop, log.clone()).await;
    let mut raw = TcpStream::connect(server.local_addr()).await.unwrap();
    let peer = raw.local_addr().unwrap();
    raw.write_all(&frames((0..10).map(|i| i.to_string())))
        .await
        .unwrap();
    for i in 0..3 {
        assert_eq!(read_frame(&mut raw).await, i.to_string());
    }
    // One report for the run of drops, not one Error event per packet: a
    // flood must not turn into as many handler calls.
    eventually("the drops reported", || log.count("error:") == 1).await;
    assert_eq!(
        log.count("message:"),
        3,
        "dropped packets never reached the service"
    );

    // The session carries on: once the bucket has a token again, the next
    // packet is served. (Waiting for the refill is the rate itself.)
    let made_at = made.lock().unwrap()[0];
    tokio::time::sleep_until(made_at + rate.interval() + Duration::from_millis(20)).await;
    raw.write_all(&frames(["later".to_string()])).await.unwrap();
    assert_eq!(read_frame(&mut raw).await, "later");

    // A later flood, past the report interval, is reported again with the
    // running count of everything dropped.
    tokio::time::sleep_until(made_at + Duration::from_millis(1_200)).await;
    raw.write_all(&frames((0..5).map(|i| format!("again{i}"))))
        .await
        .unwrap();
    eventually("the second report", || log.count("error:") == 2).await;
    let errors: Vec<String> = log
        .events()
        .into_iter()
        .filter(|e| e.starts_with("error:"))
        .collect();
    assert_eq!(
        errors[0],
        format!("error:rate-limit(Drop, dropped=1, peer={peer}, closed=false)")
    );
    let second: u64 = errors[1]
        .split("dropped=")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .expect("a dropped count");
    assert!(second >= 8, "the count runs on across reports: {errors:?}");
    let s = server.sessions().sessions().pop().unwrap();
    assert!(!s.is_closed());
    assert_eq!(log.count("close"), 0);
    server.shutdown(LIMIT).await;
}

#[tokio::test]
async fn close_closes_the_session_with_the_rate_limit_as_its_reason() {
    // Bursts of 2, then one packet a minute: the third packet closes.
    let rate = Rate::new(1, Duration::from_secs(60)).with_burst(2);
    let log = Log::default();
    let (server, _) = serve(rate, OverLimit::Close, log.clone()).await;
    let mut raw = TcpStream::connect(server.local_addr()).await.unwrap();
    let peer = raw.local_addr().unwrap();
    raw.write_all(&frames((0..5).map(|i| i.to_string())))
        .await
        .unwrap();
    assert_eq!(read_frame(&mut raw).await, "0");
    assert_eq!(read_frame(&mut raw).await, "1");
    expect_eof(&mut raw).await;
    eventually("close", || log.count("close") == 1).await;
    assert_eq!(
        log.events(),
        [
            "open".to_string(),
            "message:0".to_string(),
            "message:1".to_string(),
            format!("error:rate-limit(Close, dropped=1, peer={peer}, closed=true)"),
            "close".to_string(),
        ]
    );
    server.shutdown(LIMIT).await;
}

#[test]
fn the_service_and_its_future_are_send_and_sync_for_any_send_inner_service() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<RateLimit<Mock>>();
    send_sync::<
        getty_layers::rate_limit::future::ResponseFuture<
            mock::future::ResponseFuture<Option<Bytes>>,
        >,
    >();
}
