//! The task pool: a bound shared by the sessions of a server, per-session
//! order kept, slow sessions not blocking others while permits are free,
//! load shedding (ours and tower's), and the permit discipline.

use std::{
    future::Future,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    task::Poll,
    time::Duration,
};

use bytes::Bytes;
use getty::{
    codec::LengthCodec, new_session_fn, Addr, BoxError, EndpointKind, Error, Event, Request,
    Server, ServerHandle, Session, SessionConfig,
};
use getty_layers::pool::{PoolFullError, TaskPool, TaskPoolLayer, TaskPoolService};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::{mpsc, Notify},
};
use tower::{Layer, ServiceBuilder};
use tower_test::mock;

const LIMIT: Duration = Duration::from_secs(10);

// ----- helpers --------------------------------------------------------------

async fn within<T>(limit: Duration, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or_else(|_| panic!("did not finish within {limit:?}"))
}

/// Polls `cond` every 5 ms until it holds, failing after `LIMIT`.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + LIMIT;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(payload);
    v
}

async fn write_frame(s: &mut TcpStream, payload: &str) {
    s.write_all(&frame(payload.as_bytes())).await.unwrap();
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

async fn expect_eof(s: &mut TcpStream) {
    let mut buf = [0u8; 64];
    let n = within(LIMIT, s.read(&mut buf))
        .await
        .expect("read after close");
    assert_eq!(n, 0, "expected EOF, got {:?}", &buf[..n]);
}

/// A server whose every session is `layer` around `handler`.
async fn serve<L, H, F>(config: SessionConfig, layer: L, handler: H) -> ServerHandle
where
    L: Layer<tower::util::ServiceFn<H>> + Clone + Send + Sync + 'static,
    L::Service: getty::SessionService<Bytes, Bytes>,
    H: Fn(Request<Bytes>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Option<Bytes>, BoxError>> + Send + 'static,
{
    let server = Server::builder()
        .session_config(config)
        .bind("127.0.0.1:0")
        .await
        .expect("bind");
    server.serve(
        LengthCodec::new(),
        new_session_fn(move |_: &Session| {
            Ok::<_, BoxError>(layer.layer(tower::service_fn(handler.clone())))
        }),
    )
}

fn text(pkg: &Bytes) -> String {
    String::from_utf8(pkg.to_vec()).unwrap()
}

/// Counts handler executions at once and remembers the highest count.
#[derive(Clone, Default)]
struct Concurrency {
    now: Arc<AtomicUsize>,
    max: Arc<AtomicUsize>,
    reached: Arc<Notify>,
}

impl Concurrency {
    fn enter(&self) -> usize {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(n, Ordering::SeqCst);
        self.reached.notify_waiters();
        n
    }
    fn leave(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
    fn max(&self) -> usize {
        self.max.load(Ordering::SeqCst)
    }
    /// Waits (up to 2 s) until `n` executions have been seen at once.
    async fn until_max(&self, n: usize) {
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            loop {
                let notified = self.reached.notified();
                if self.max() >= n {
                    return;
                }
                notified.await;
            }
        })
        .await;
    }
}

/// A gate a handler waits at until the test opens it (bounded by `LIMIT`).
#[derive(Clone, Default)]
struct Gate {
    open: Arc<AtomicBool>,
    notify: Arc<Notify>,
}

impl Gate {
    async fn wait(&self) {
        let _ = tokio::time::timeout(LIMIT, async {
            loop {
                let notified = self.notify.notified();
                if self.open.load(Ordering::SeqCst) {
                    return;
                }
                notified.await;
            }
        })
        .await;
    }
    fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }
    fn is_open(&self) -> bool {
        self.open.load(Ordering::SeqCst)
    }
}

type BoxFuture = std::pin::Pin<Box<dyn Future<Output = Result<Option<Bytes>, BoxError>> + Send>>;

/// A handler: "slow" signals `started` and waits at `gate`; anything else
/// is echoed at once. Errors are recorded in `errors`.
#[derive(Clone)]
struct GatedEcho {
    gate: Gate,
    started: mpsc::UnboundedSender<()>,
    errors: Arc<Mutex<Vec<String>>>,
    pool_full: Arc<Mutex<Vec<PoolFullError>>>,
}

impl GatedEcho {
    fn new() -> (Self, mpsc::UnboundedReceiver<()>) {
        let (started, rx) = mpsc::unbounded_channel();
        let echo = GatedEcho {
            gate: Gate::default(),
            started,
            errors: Arc::default(),
            pool_full: Arc::default(),
        };
        (echo, rx)
    }

    fn handler(&self) -> impl Fn(Request<Bytes>) -> BoxFuture + Clone + Send + Sync + 'static {
        let this = self.clone();
        move |req: Request<Bytes>| {
            let this = this.clone();
            let fut: BoxFuture = Box::pin(async move {
                match req.event {
                    Event::Message(pkg) => {
                        if pkg == "slow" {
                            let _ = this.started.send(());
                            this.gate.wait().await;
                        }
                        Ok(Some(pkg))
                    }
                    Event::Error(e) => {
                        if let Error::Raised { source } = &e {
                            if let Some(full) = source.downcast_ref::<PoolFullError>() {
                                this.pool_full.lock().unwrap().push(full.clone());
                            }
                        }
                        this.errors.lock().unwrap().push(e.to_string());
                        Ok(None)
                    }
                    _ => Ok(None),
                }
            });
            fut
        }
    }
}

/// A small deterministic pseudo-random number (splitmix64).
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn detached() -> Session {
    Session::new(
        EndpointKind::Detached,
        Addr::Unknown,
        Addr::Unknown,
        SessionConfig::default(),
    )
}

// ----- order ----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_pipelining_sessions_through_a_pool_of_two_each_get_their_replies_in_order() {
    const SESSIONS: u64 = 12;
    const PACKETS: u64 = 30;
    let pool = TaskPool::new(2);
    let conc = Concurrency::default();
    let c = conc.clone();
    let server = serve(
        SessionConfig::default().max_in_flight(4),
        TaskPoolLayer::new(pool.clone()),
        move |req: Request<Bytes>| {
            let c = c.clone();
            async move {
                let Some(pkg) = req.into_message() else {
                    return Ok(None);
                };
                // "s:i": a random delay of 0-3 ms per packet.
                let (s, i) = text(&pkg)
                    .split_once(':')
                    .map(|(s, i)| (s.parse::<u64>().unwrap(), i.parse::<u64>().unwrap()))
                    .unwrap();
                let n = c.enter();
                assert!(n <= 2, "{n} handlers at once in a pool of 2");
                tokio::time::sleep(Duration::from_millis(mix(s * 1000 + i) % 4)).await;
                c.leave();
                Ok(Some(pkg))
            }
        },
    )
    .await;

    let addr = server.local_addr();
    let clients: Vec<_> = (0..SESSIONS)
        .map(|s| {
            tokio::spawn(async move {
                let mut raw = TcpStream::connect(addr).await.unwrap();
                // All packets at once, so the session pipelines them.
                let mut wire = Vec::new();
                for i in 0..PACKETS {
                    wire.extend_from_slice(&frame(format!("{s}:{i}").as_bytes()));
                }
                raw.write_all(&wire).await.unwrap();
                let mut got = Vec::new();
                for _ in 0..PACKETS {
                    got.push(read_frame(&mut raw).await);
                }
                let want: Vec<String> = (0..PACKETS).map(|i| format!("{s}:{i}")).collect();
                assert_eq!(got, want, "session {s} got its replies out of order");
            })
        })
        .collect();
    for client in clients {
        within(LIMIT, client).await.unwrap();
    }
    assert!(conc.max() <= 2, "max concurrency {}", conc.max());
    eventually("every permit back", || pool.available() == 2).await;
    server.shutdown(LIMIT).await;
}

#[tokio::test]
async fn a_later_packet_that_finishes_first_is_still_answered_second() {
    // Packet "first" waits until "second" has been handled, so the two run
    // in the pool at once and complete in reverse order.
    let pool = TaskPool::new(2);
    let second_done = Arc::new(Notify::new());
    let finished = Arc::new(Mutex::new(Vec::new()));
    let (done, f) = (second_done.clone(), finished.clone());
    let server = serve(
        SessionConfig::default().max_in_flight(2),
        TaskPoolLayer::new(pool.clone()),
        move |req: Request<Bytes>| {
            let (done, f) = (done.clone(), f.clone());
            async move {
                let Some(pkg) = req.into_message() else {
                    return Ok(None);
                };
                if pkg == "first" {
                    within(LIMIT, done.notified()).await;
                } else {
                    done.notify_one();
                }
                f.lock().unwrap().push(text(&pkg));
                Ok(Some(pkg))
            }
        },
    )
    .await;
    let mut raw = TcpStream::connect(server.local_addr()).await.unwrap();
    let mut wire = frame(b"first");
    wire.extend_from_slice(&frame(b"second"));
    raw.write_all(&wire).await.unwrap();
    assert_eq!(read_frame(&mut raw).await, "first");
    assert_eq!(read_frame(&mut raw).await, "second");
    assert_eq!(*finished.lock().unwrap(), ["second", "first"]);
    server.shutdown(LIMIT).await;
}

// ----- the bound ------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_handler_on_one_session_does_not_delay_another_while_a_permit_is_free() {
    let pool = TaskPool::new(2);
    let (echo, mut started) = GatedEcho::new();
    let server = serve(
        SessionConfig::default(),
        TaskPoolLayer::new(pool.clone()),
        echo.handler(),
    )
    .await;

    let mut slow = TcpStream::connect(server.local_addr()).await.unwrap();
    write_frame(&mut slow, "slow").await;
    within(LIMIT, started.recv()).await.unwrap();
    assert_eq!(pool.in_use(), 1, "the slow handler holds one permit");

    // The other session is answered while the slow handler still holds its
    // permit: it never waited for it.
    let mut other = TcpStream::connect(server.local_addr()).await.unwrap();
    for p in ["a", "b", "c"] {
        write_frame(&mut other, p).await;
        assert_eq!(read_frame(&mut other).await, p);
    }
    assert!(!echo.gate.is_open());
    assert_eq!(pool.in_use(), 1, "the slow handler still runs");

    echo.gate.open();
    assert_eq!(read_frame(&mut slow).await, "slow");
    eventually("every permit back", || pool.available() == 2).await;
    server.shutdown(LIMIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_n_handlers_run_at_once_across_twenty_sessions() {
    const N: usize = 3;
    let pool = TaskPool::new(N);
    let conc = Concurrency::default();
    let c = conc.clone();
    let server = serve(
        SessionConfig::default().max_in_flight(2),
        TaskPoolLayer::new(pool.clone()),
        move |req: Request<Bytes>| {
            let c = c.clone();
            async move {
                let Some(pkg) = req.into_message() else {
                    return Ok(None);
                };
                c.enter();
                // Hold the permit until the pool has been full once (or 2 s),
                // then a little longer, so an excess would be seen.
                c.until_max(N).await;
                tokio::time::sleep(Duration::from_millis(5)).await;
                c.leave();
                Ok(Some(pkg))
            }
        },
    )
    .await;

    let addr = server.local_addr();
    let clients: Vec<_> = (0..20)
        .map(|s| {
            tokio::spawn(async move {
                let mut raw = TcpStream::connect(addr).await.unwrap();
                let mut wire = Vec::new();
                for i in 0..5 {
                    wire.extend_from_slice(&frame(format!("{s}-{i}").as_bytes()));
                }
                raw.write_all(&wire).await.unwrap();
                for i in 0..5 {
                    assert_eq!(read_frame(&mut raw).await, format!("{s}-{i}"));
                }
            })
        })
        .collect();
    for client in clients {
        within(LIMIT, client).await.unwrap();
    }
    assert_eq!(conc.max(), N, "most handlers at once");
    eventually("every permit back", || pool.available() == N).await;
    server.shutdown(LIMIT).await;
}

/// Graceful shutdown closes every session while their pipelined packets are
/// still waiting for the pool: the drained packets are handler work too and
/// take a permit; only `Error` and `Close` of a closed session pass without.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bound_holds_while_closed_sessions_drain_their_messages() {
    const SESSIONS: usize = 8;
    const PACKETS: usize = 4;
    let pool = TaskPool::new(1);
    let conc = Concurrency::default();
    let handled = Arc::new(AtomicUsize::new(0));
    let (c, h) = (conc.clone(), handled.clone());
    let server = serve(
        SessionConfig::default().wait_time(Duration::from_secs(5)),
        TaskPoolLayer::new(pool.clone()),
        move |req: Request<Bytes>| {
            let (c, h) = (c.clone(), h.clone());
            async move {
                let Some(pkg) = req.into_message() else {
                    return Ok(None);
                };
                c.enter();
                // Long enough for an excess to overlap, short enough that
                // 32 packets one at a time drain well within the wait time.
                tokio::time::sleep(Duration::from_millis(15)).await;
                c.leave();
                h.fetch_add(1, Ordering::SeqCst);
                Ok(Some(pkg))
            }
        },
    )
    .await;

    let addr = server.local_addr();
    let mut clients = Vec::new();
    for s in 0..SESSIONS {
        let mut raw = TcpStream::connect(addr).await.unwrap();
        let mut wire = Vec::new();
        for i in 0..PACKETS {
            wire.extend_from_slice(&frame(format!("{s}-{i}").as_bytes()));
        }
        raw.write_all(&wire).await.unwrap();
        clients.push(raw);
    }
    // The pool is fair: once 8 packets were handled, every session has read
    // its 4 packets and 3 of each wait for a permit. Shut down now.
    eventually("a first packet of every session handled", || {
        handled.load(Ordering::SeqCst) >= SESSIONS
    })
    .await;
    within(LIMIT, server.shutdown(LIMIT)).await;
    let mut answered = 0;
    for raw in &mut clients {
        // Everything owed arrives before the close (each read bounded).
        let mut buf = vec![0u8; 4096];
        while let Ok(n @ 1..) = within(LIMIT, raw.read(&mut buf)).await {
            answered += n;
        }
    }
    assert_eq!(
        conc.max(),
        1,
        "handlers at once in a pool of 1 while sessions drained"
    );
    assert_eq!(
        answered,
        SESSIONS * PACKETS * 7,
        "every drained packet answered"
    );
    assert_eq!(pool.available(), 1, "every permit back");
}

// ----- shedding -------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shedding_pool_reports_pool_full_drops_the_message_and_the_session_carries_on() {
    let pool = TaskPool::new(1);
    let (echo, mut started) = GatedEcho::new();
    let server = serve(
        SessionConfig::default(),
        TaskPoolLayer::new(pool.clone()).shed_when_full(),
        echo.handler(),
    )
    .await;

    let mut slow = TcpStream::connect(server.local_addr()).await.unwrap();
    write_frame(&mut slow, "slow").await;
    within(LIMIT, started.recv()).await.unwrap();
    assert_eq!(pool.available(), 0);

    // The pool is full: "dropped" is not handled, the session hears why.
    let mut other = TcpStream::connect(server.local_addr()).await.unwrap();
    write_frame(&mut other, "dropped").await;
    eventually("the pool-full error reported", || {
        !echo.pool_full.lock().unwrap().is_empty()
    })
    .await;
    assert_eq!(*echo.pool_full.lock().unwrap(), [PoolFullError::new(1)]);
    assert_eq!(
        *echo.errors.lock().unwrap(),
        ["task pool full: all 1 permits in use, message not handled"]
    );
    assert_eq!(pool.shed_count(), 1);

    // The session carries on: once a permit is free it is answered, and the
    // shed message had no answer.
    echo.gate.open();
    assert_eq!(read_frame(&mut slow).await, "slow");
    eventually("the permit back", || pool.available() == 1).await;
    write_frame(&mut other, "kept").await;
    assert_eq!(read_frame(&mut other).await, "kept");
    assert_eq!(server.session_count(), 2);
    assert_eq!(pool.shed_count(), 1);
    server.shutdown(LIMIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tower_load_shed_outside_a_full_pool_rejects_with_overloaded_and_the_session_closes() {
    let pool = TaskPool::new(1);
    let (echo, mut started) = GatedEcho::new();
    // What reaches the stack, seen outside LoadShed: event names, and errors.
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let s = seen.clone();
    let layer = ServiceBuilder::new()
        .map_request(move |req: Request<Bytes>| {
            let entry = match &req.event {
                Event::Error(e) => format!("error:{e}"),
                other => other.name().to_string(),
            };
            s.lock().unwrap().push(entry);
            req
        })
        .load_shed()
        .layer(TaskPoolLayer::new(pool.clone()));
    let server = serve(SessionConfig::default(), layer, echo.handler()).await;

    // Opened (and answering) before the pool fills.
    let mut other = TcpStream::connect(server.local_addr()).await.unwrap();
    write_frame(&mut other, "hello").await;
    assert_eq!(read_frame(&mut other).await, "hello");

    let mut slow = TcpStream::connect(server.local_addr()).await.unwrap();
    write_frame(&mut slow, "slow").await;
    within(LIMIT, started.recv()).await.unwrap();

    // The pool is full: our poll_ready is Pending, LoadShed rejects, the
    // core passes the error down the stack and closes the session.
    write_frame(&mut other, "rejected").await;
    expect_eof(&mut other).await;
    eventually("the overloaded error seen", || {
        seen.lock()
            .unwrap()
            .iter()
            .any(|e| e == "error:service error: service overloaded")
    })
    .await;

    // The slow session is unharmed.
    echo.gate.open();
    assert_eq!(read_frame(&mut slow).await, "slow");
    eventually("the permit back", || pool.available() == 1).await;
    server.shutdown(LIMIT).await;
}

// ----- permits, with tower-test ---------------------------------------------

type Mock = mock::Mock<Request<Bytes>, Option<Bytes>>;

fn message(text: &'static str) -> Request<Bytes> {
    Request::new(
        detached(),
        Event::Message(Bytes::from_static(text.as_bytes())),
    )
}

#[tokio::test]
async fn poll_ready_reserves_a_permit_call_spends_it_and_a_clone_starts_without_one() {
    let pool = TaskPool::new(1);
    let (inner, mut handle) = mock::pair::<Request<Bytes>, Option<Bytes>>();
    let mut first = mock::Spawn::new(TaskPoolLayer::new(pool.clone()).layer(inner));

    // Ready reserves the pool's only permit.
    assert!(matches!(first.poll_ready(), Poll::Ready(Ok(()))));
    assert_eq!(pool.available(), 0);
    assert!(format!("{:?}", first.get_ref()).contains("reserved: true"));

    // A clone shares the pool but not the reservation: it must wait.
    let mut second = mock::Spawn::new(first.get_ref().clone());
    assert!(format!("{:?}", second.get_ref()).contains("reserved: false"));
    assert!(second.poll_ready().is_pending());
    assert_eq!(pool.available(), 0, "cloning took no permit");

    // The call spends the reservation; the response future holds the permit.
    let response = first.call(message("one"));
    let (req, reply) = within(LIMIT, handle.next_request()).await.unwrap();
    assert_eq!(req.into_message().unwrap(), "one");
    assert!(!second.is_woken());
    assert_eq!(pool.available(), 0);

    // Completion gives the permit back and wakes the waiting clone.
    reply.send_response(Some(Bytes::from_static(b"1")));
    assert_eq!(
        within(LIMIT, response).await.unwrap(),
        Some(Bytes::from_static(b"1"))
    );
    assert!(second.is_woken());
    assert!(matches!(second.poll_ready(), Poll::Ready(Ok(()))));
    assert_eq!(pool.available(), 0, "now the clone holds it");

    // Dropping a service gives its reservation back.
    drop(second);
    assert_eq!(pool.available(), 1);
}

#[tokio::test]
#[should_panic(expected = "poll_ready must return Ready first")]
async fn call_without_a_reservation_panics_like_towers_concurrency_limit() {
    let (inner, _handle): (Mock, _) = mock::pair();
    let mut svc = TaskPoolService::new(inner, TaskPool::new(1));
    drop(tower::Service::call(&mut svc, message("unready")));
}

#[tokio::test]
async fn a_shedding_service_is_ready_when_full_sheds_messages_but_not_lifecycle_events() {
    let pool = TaskPool::new(1);
    let (inner, mut handle) = mock::pair::<Request<Bytes>, Option<Bytes>>();
    let mut busy = mock::Spawn::new(TaskPoolLayer::new(pool.clone()).layer(inner.clone()));
    let mut svc = mock::Spawn::new(
        TaskPoolLayer::new(pool.clone())
            .shed_when_full()
            .layer(inner),
    );

    // `busy` takes the only permit and keeps it with a call in flight.
    assert!(busy.poll_ready().is_ready());
    let held = busy.call(message("held"));
    let (_, held_reply) = within(LIMIT, handle.next_request()).await.unwrap();
    assert_eq!(pool.available(), 0);

    // The shedding service is ready all the same; its message is answered
    // with nothing and never reaches the inner service.
    assert!(matches!(svc.poll_ready(), Poll::Ready(Ok(()))));
    assert_eq!(
        within(LIMIT, svc.call(message("shed"))).await.unwrap(),
        None
    );
    assert_eq!(pool.shed_count(), 1);

    // A lifecycle event is never shed: it runs without a permit.
    assert!(svc.poll_ready().is_ready());
    let tick = svc.call(Request::new(detached(), Event::Tick));
    let (req, tick_reply) = within(LIMIT, handle.next_request()).await.unwrap();
    assert!(matches!(req.event, Event::Tick), "{:?}", req.event);
    tick_reply.send_response(None);
    assert_eq!(within(LIMIT, tick).await.unwrap(), None);
    assert_eq!(pool.shed_count(), 1);

    // Once the permit is back, messages are handled again.
    held_reply.send_response(None);
    within(LIMIT, held).await.unwrap();
    assert_eq!(pool.available(), 1);
    assert!(svc.poll_ready().is_ready());
    let answered = svc.call(message("handled"));
    let (req, reply) = within(LIMIT, handle.next_request()).await.unwrap();
    assert_eq!(req.into_message().unwrap(), "handled");
    reply.send_response(Some(Bytes::from_static(b"ok")));
    assert_eq!(
        within(LIMIT, answered).await.unwrap(),
        Some(Bytes::from_static(b"ok"))
    );
    assert_eq!(pool.shed_count(), 1);
    assert_eq!(pool.available(), 1);
}

#[test]
#[should_panic(expected = "at least one permit")]
fn a_pool_of_zero_permits_is_refused() {
    let _ = TaskPool::new(0);
}
