//! `EventTimeout`: a deadline on handling each packet. Unit tests on a mock
//! service with a paused clock, then end to end over 127.0.0.1, side by side
//! with tower's own `TimeoutLayer`.

use std::{
    convert::Infallible,
    future::Future,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use bytes::Bytes;
use getty::{
    codec::LengthCodec, new_session_fn, Addr, BoxError, EndpointKind, Error, Event, Request,
    Server, ServerHandle, Session, SessionConfig,
};
use getty_layers::timeout::{EventTimeout, EventTimeoutError, EventTimeoutLayer, OnTimeout};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_test::{assert_pending, assert_ready, assert_ready_ok};
use tower::{
    service_fn, timeout::error::Elapsed, timeout::TimeoutLayer, Layer, Service, ServiceBuilder,
    ServiceExt,
};
use tower_test::mock;

const LIMIT: Duration = Duration::from_secs(5);
const DEADLINE: Duration = Duration::from_millis(100);

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

fn spawn(policy: OnTimeout) -> (mock::Spawn<EventTimeout<Mock>>, Handle) {
    mock::spawn_layer(EventTimeoutLayer::new(DEADLINE).on_timeout(policy))
}

// ----- unit tests: a mock inner service, a paused clock ---------------------

#[tokio::test(start_paused = true)]
async fn a_message_not_answered_by_the_deadline_resolves_empty_and_the_session_carries_on() {
    let (mut svc, mut handle) = spawn(OnTimeout::Continue);
    let session = detached();
    assert_ready_ok!(svc.poll_ready());
    let mut fut = tokio_test::task::spawn(svc.call(message(&session, "slow")));
    let (req, _respond) = handle
        .next_request()
        .await
        .expect("the inner service got the packet");
    assert_eq!(req.message().map(|b| &b[..]), Some(&b"slow"[..]));

    assert_pending!(fut.poll());
    tokio::time::advance(DEADLINE - Duration::from_millis(1)).await;
    assert_pending!(fut.poll());
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(fut.is_woken(), "the deadline wakes the call");
    assert_eq!(
        assert_ready!(fut.poll()).expect("an expiry is not a service error"),
        None
    );
    assert!(
        !session.is_closed(),
        "OnTimeout::Continue keeps the session"
    );
}

#[tokio::test(start_paused = true)]
async fn with_on_timeout_close_an_expiry_closes_the_session() {
    let (mut svc, mut handle) = spawn(OnTimeout::Close);
    let session = detached();
    assert_ready_ok!(svc.poll_ready());
    let mut fut = tokio_test::task::spawn(svc.call(message(&session, "slow")));
    let _pending = handle.next_request().await.unwrap();
    assert_pending!(fut.poll());
    tokio::time::advance(DEADLINE).await;
    assert_eq!(assert_ready!(fut.poll()).unwrap(), None);
    assert!(session.is_closed(), "OnTimeout::Close closes the session");
}

#[tokio::test(start_paused = true)]
async fn a_message_answered_in_time_passes_its_response_through() {
    let (mut svc, mut handle) = spawn(OnTimeout::Close);
    let session = detached();
    assert_ready_ok!(svc.poll_ready());
    let mut fut = tokio_test::task::spawn(svc.call(message(&session, "fast")));
    let (req, respond) = handle.next_request().await.unwrap();
    tokio::time::advance(DEADLINE - Duration::from_millis(1)).await;
    assert_pending!(fut.poll());
    respond.send_response(req.into_message());
    assert_eq!(
        assert_ready!(fut.poll()).unwrap(),
        Some(Bytes::from_static(b"fast"))
    );
    // Long after the deadline nothing fires: the answer came in time.
    tokio::time::advance(DEADLINE * 10).await;
    assert!(!session.is_closed());
}

#[tokio::test(start_paused = true)]
async fn an_inner_error_passes_through_unchanged() {
    let (mut svc, mut handle) = spawn(OnTimeout::Close);
    let session = detached();
    assert_ready_ok!(svc.poll_ready());
    let mut fut = tokio_test::task::spawn(svc.call(message(&session, "bad")));
    let (_, respond) = handle.next_request().await.unwrap();
    respond.send_error("inner failure");
    let err = assert_ready!(fut.poll()).expect_err("the inner error");
    assert_eq!(err.to_string(), "inner failure");
    assert!(
        !session.is_closed(),
        "an inner error is the driver's business"
    );
}

#[tokio::test(start_paused = true)]
async fn events_other_than_messages_are_not_timed() {
    let (mut svc, mut handle) = spawn(OnTimeout::Close);
    let session = detached();
    let events: Vec<Event<Bytes>> = vec![
        Event::Open,
        Event::Tick,
        Event::Error(Error::HandlerPanic {
            message: "x".into(),
        }),
        Event::Close,
    ];
    for event in events {
        let name = event.name();
        assert_ready_ok!(svc.poll_ready());
        let mut fut = tokio_test::task::spawn(svc.call(Request::new(session.clone(), event)));
        let (req, respond) = handle.next_request().await.unwrap();
        assert_eq!(req.event.name(), name, "passed to the inner service as is");
        tokio::time::advance(DEADLINE * 100).await;
        assert_pending!(fut.poll(), "{name} was timed");
        respond.send_response(Some(Bytes::from_static(b"late but fine")));
        assert_eq!(
            assert_ready!(fut.poll()).unwrap(),
            Some(Bytes::from_static(b"late but fine")),
            "{name}"
        );
    }
    assert!(!session.is_closed(), "no expiry for non-message events");
}

#[tokio::test(start_paused = true)]
async fn poll_ready_is_the_inner_services() {
    let (mut svc, mut handle) = spawn(OnTimeout::Continue);
    handle.allow(0);
    assert_pending!(svc.poll_ready());
    handle.allow(1);
    assert!(svc.is_woken());
    assert_ready_ok!(svc.poll_ready());
}

#[tokio::test(start_paused = true)]
async fn an_expiry_drops_the_inner_future_at_once() {
    let dropped = Arc::new(AtomicBool::new(false));
    let d = dropped.clone();
    let inner = service_fn(move |_: Request<Bytes>| {
        let guard = DropFlag(d.clone());
        async move {
            let _guard = guard;
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok::<_, Infallible>(None::<Bytes>)
        }
    });
    let mut svc = EventTimeoutLayer::new(DEADLINE).layer(inner);
    let session = detached();
    let fut = svc.ready().await.unwrap().call(message(&session, "slow"));
    let mut fut = tokio_test::task::spawn(fut);
    assert_pending!(fut.poll());
    tokio::time::advance(DEADLINE).await;
    assert_eq!(assert_ready!(fut.poll()).unwrap(), None);
    // `fut` itself is still alive: the inner future went at the expiry.
    assert!(
        dropped.load(Ordering::SeqCst),
        "the inner future was not dropped"
    );
    drop(fut);
}

struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
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

/// Names an error the way the tests expect to see it.
fn describe(session: &Session, e: &Error) -> String {
    let closed = session.is_closed();
    match e {
        Error::Raised { source } => match source.downcast_ref::<EventTimeoutError>() {
            Some(t) => format!(
                "error:event-timeout({:?}, {}, closed={closed})",
                t.deadline,
                match t.policy {
                    OnTimeout::Continue => "continue",
                    OnTimeout::Close => "close",
                    _ => "other",
                }
            ),
            None => format!("error:raised:{source}"),
        },
        Error::Handler { source } if source.downcast_ref::<Elapsed>().is_some() => {
            format!("error:handler(elapsed, closed={closed})")
        }
        other => format!("error:other:{other}"),
    }
}

/// An echo service in which the packet "slow" takes an hour (and records
/// its cancellation) and every event is logged.
fn slow_or_echo(
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
                    let text = String::from_utf8_lossy(&pkg).into_owned();
                    log.push(format!("message:{text}"));
                    if text == "slow" {
                        let guard = PushOnDrop(log.clone(), "cancelled:slow");
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        std::mem::forget(guard);
                        log.push("finished:slow");
                    }
                    return Ok(Some(pkg));
                }
                Event::Error(e) => log.push(describe(&req.session, &e)),
                Event::Close => log.push("close"),
                _ => {}
            }
            Ok(None)
        }
    })
}

struct PushOnDrop(Log, &'static str);

impl Drop for PushOnDrop {
    fn drop(&mut self) {
        self.0.push(self.1);
    }
}

async fn serve<S, F>(make_stack: F) -> ServerHandle
where
    F: Fn() -> S + Send + 'static,
    S: getty::SessionService<Bytes, Bytes>,
{
    let server = Server::builder().bind("127.0.0.1:0").await.expect("bind");
    server.serve(
        LengthCodec::new(),
        new_session_fn(move |_: &Session| Ok::<_, BoxError>(make_stack())),
    )
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(payload);
    v
}

async fn write_frame(s: &mut TcpStream, payload: &[u8]) {
    s.write_all(&frame(payload)).await.expect("write frame");
}

async fn read_frame(s: &mut TcpStream) -> Vec<u8> {
    within(LIMIT, async {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).await.expect("read length");
        let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut buf).await.expect("read payload");
        buf
    })
    .await
}

/// Reads until the server closes; fails on any byte (no reply was due).
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
    let deadline = tokio::time::Instant::now() + LIMIT;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {LIMIT:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn continue_reports_the_deadline_skips_the_reply_and_serves_the_next_packet() {
    let log = Log::default();
    let l = log.clone();
    let server = serve(move || {
        ServiceBuilder::new()
            .layer(EventTimeoutLayer::new(DEADLINE).on_timeout(OnTimeout::Continue))
            .service(slow_or_echo(l.clone()))
    })
    .await;
    let mut raw = TcpStream::connect(server.local_addr()).await.unwrap();
    write_frame(&mut raw, b"slow").await;
    eventually("the timeout reported", || log.count("error:") == 1).await;
    write_frame(&mut raw, b"fast").await;
    // The first frame back is the fast one: the slow packet got no reply.
    assert_eq!(read_frame(&mut raw).await, b"fast");
    let s = server.sessions().sessions().pop().expect("the session");
    assert!(!s.is_closed(), "the session carries on");

    drop(raw);
    eventually("close", || log.count("close") == 1).await;
    assert_eq!(
        log.events(),
        [
            "open",
            "message:slow",
            "cancelled:slow",
            "error:event-timeout(100ms, continue, closed=false)",
            "message:fast",
            "close"
        ]
    );
    server.shutdown(LIMIT).await;
}

#[tokio::test]
async fn close_reports_the_deadline_then_closes_the_session_and_its_socket() {
    let log = Log::default();
    let l = log.clone();
    let server = serve(move || {
        ServiceBuilder::new()
            .layer(EventTimeoutLayer::new(DEADLINE).on_timeout(OnTimeout::Close))
            .service(slow_or_echo(l.clone()))
    })
    .await;
    let mut raw = TcpStream::connect(server.local_addr()).await.unwrap();
    write_frame(&mut raw, b"slow").await;
    // No reply, then the socket closes.
    expect_eof(&mut raw).await;
    eventually("close", || log.count("close") == 1).await;
    assert_eq!(
        log.events(),
        [
            "open",
            "message:slow",
            "cancelled:slow",
            "error:event-timeout(100ms, close, closed=true)",
            "close"
        ]
    );
    server.shutdown(LIMIT).await;
}

/// A packet that arrived in the same write as the one that timed out is
/// not handled once the expiry closed the session: the order is the slow
/// message, its error, then Close.
#[tokio::test]
async fn close_on_timeout_handles_no_packet_that_came_after_the_slow_one() {
    let log = Log::default();
    let l = log.clone();
    let server = serve(move || {
        ServiceBuilder::new()
            .layer(EventTimeoutLayer::new(DEADLINE).on_timeout(OnTimeout::Close))
            .service(slow_or_echo(l.clone()))
    })
    .await;
    let mut raw = TcpStream::connect(server.local_addr()).await.unwrap();
    let mut both = frame(b"slow");
    both.extend_from_slice(&frame(b"fast"));
    raw.write_all(&both).await.unwrap();
    expect_eof(&mut raw).await;
    eventually("close", || log.count("close") == 1).await;
    assert_eq!(
        log.events(),
        [
            "open",
            "message:slow",
            "cancelled:slow",
            "error:event-timeout(100ms, close, closed=true)",
            "close"
        ]
    );
    server.shutdown(LIMIT).await;
}

/// tower's `TimeoutLayer` works in a getty stack unchanged; the difference
/// is what its expiry means: a service error (`Error::Handler` from
/// `Elapsed`), which always closes the session, where ours names the
/// deadline in `Error::Raised` and, with `Continue`, keeps the session.
#[tokio::test]
async fn towers_timeout_layer_works_unchanged_but_its_expiry_is_a_handler_error_that_closes() {
    let towers_log = Log::default();
    let l = towers_log.clone();
    let towers = serve(move || {
        ServiceBuilder::new()
            .layer(TimeoutLayer::new(DEADLINE))
            .service(slow_or_echo(l.clone()))
    })
    .await;
    let ours_log = Log::default();
    let l = ours_log.clone();
    let ours = serve(move || {
        ServiceBuilder::new()
            .layer(EventTimeoutLayer::new(DEADLINE))
            .service(slow_or_echo(l.clone()))
    })
    .await;

    // Both answer in time alike.
    let mut to_towers = TcpStream::connect(towers.local_addr()).await.unwrap();
    let mut to_ours = TcpStream::connect(ours.local_addr()).await.unwrap();
    for raw in [&mut to_towers, &mut to_ours] {
        write_frame(raw, b"fast").await;
        assert_eq!(read_frame(raw).await, b"fast");
        write_frame(raw, b"slow").await;
    }

    // tower's: a service error with Elapsed as its source; the session closes.
    expect_eof(&mut to_towers).await;
    eventually("close (tower)", || towers_log.count("close") == 1).await;
    assert_eq!(
        towers_log.events(),
        [
            "open",
            "message:fast",
            "message:slow",
            "cancelled:slow",
            "error:handler(elapsed, closed=true)",
            "close"
        ]
    );

    // Ours: the deadline named in a raised error; the session serves on.
    eventually("the timeout reported (ours)", || {
        ours_log.count("error:") == 1
    })
    .await;
    write_frame(&mut to_ours, b"after").await;
    assert_eq!(read_frame(&mut to_ours).await, b"after");
    assert_eq!(
        ours_log.events(),
        [
            "open",
            "message:fast",
            "message:slow",
            "cancelled:slow",
            "error:event-timeout(100ms, continue, closed=false)",
            "message:after"
        ]
    );
    drop(to_ours);
    eventually("close (ours)", || ours_log.count("close") == 1).await;
    towers.shutdown(LIMIT).await;
    ours.shutdown(LIMIT).await;
}

#[test]
fn the_service_and_its_future_are_send_and_sync_for_any_send_inner_service() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<EventTimeout<Mock>>();
    send_sync::<
        getty_layers::timeout::future::ResponseFuture<
            mock::future::ResponseFuture<Option<Bytes>>,
            Bytes,
        >,
    >();
}
