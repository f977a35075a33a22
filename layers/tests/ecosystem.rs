//! getty-layers and tower's own layers stacked on one server: the stack of
//! `examples/layered_server.rs`, checked over real sockets, and what the
//! order of two deadlines means.

use std::{
    convert::Infallible,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use bytes::Bytes;
use getty::{
    codec::LengthCodec, new_session_fn, BoxError, Error, Event, Request, Server, ServerHandle,
    Session, SessionService,
};
use getty_layers::{
    heartbeat::{HeartbeatLayer, IdleError},
    pool::{TaskPool, TaskPoolLayer},
    rate_limit::{Rate, RateLimitLayer},
    stats::Stats,
    timeout::{EventTimeoutError, EventTimeoutLayer},
    trace::TraceLayer,
    ServiceBuilderExt,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tower::{timeout::error::Elapsed, ServiceBuilder};

const LIMIT: Duration = Duration::from_secs(5);

#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn push(&self, s: impl Into<String>) {
        self.0.lock().unwrap().push(s.into());
    }
    fn events(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
    fn has(&self, prefix: &str) -> bool {
        self.events().iter().any(|e| e.starts_with(prefix))
    }
}

/// Echoes; "slow" never finishes; logs errors by what they are.
fn handler(
    log: Log,
) -> impl tower::Service<
    Request<Bytes>,
    Response = Option<Bytes>,
    Error = Infallible,
    Future = impl std::future::Future<Output = Result<Option<Bytes>, Infallible>> + Send + 'static,
> + Send
       + Clone
       + 'static {
    tower::service_fn(move |req: Request<Bytes>| {
        let log = log.clone();
        async move {
            match req.event {
                Event::Message(pkg) if &pkg[..] == b"slow" => {
                    std::future::pending::<()>().await;
                    Ok(None)
                }
                Event::Message(pkg) => Ok(Some(pkg)),
                Event::Error(e) => {
                    log.push(describe(&e, req.session.is_closed()));
                    Ok(None)
                }
                Event::Close => {
                    log.push("close");
                    Ok(None)
                }
                _ => Ok(None),
            }
        }
    })
}

fn describe(e: &Error, closed: bool) -> String {
    let what = match e {
        Error::Raised { source } if source.downcast_ref::<EventTimeoutError>().is_some() => {
            "event-timeout"
        }
        Error::Raised { source } if source.downcast_ref::<IdleError>().is_some() => "idle",
        Error::Handler { source } if source.downcast_ref::<Elapsed>().is_some() => "tower-elapsed",
        _ => "other",
    };
    format!("error:{what}:closed={closed}")
}

async fn serve<S>(make: impl Fn() -> S + Send + 'static) -> ServerHandle
where
    S: SessionService<Bytes, Bytes>,
{
    Server::builder()
        .bind("127.0.0.1:0")
        .await
        .expect("bind")
        .serve(
            LengthCodec::new(),
            new_session_fn(move |_: &Session| Ok::<_, BoxError>(make())),
        )
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(payload);
    v
}

async fn read_frame(s: &mut TcpStream) -> Vec<u8> {
    tokio::time::timeout(LIMIT, async {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).await.expect("length");
        let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut buf).await.expect("payload");
        buf
    })
    .await
    .expect("a frame within the limit")
}

async fn expect_eof(s: &mut TcpStream) {
    let mut rest = Vec::new();
    tokio::time::timeout(LIMIT, s.read_to_end(&mut rest))
        .await
        .expect("EOF within the limit")
        .expect("clean EOF");
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + LIMIT;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn getty_and_tower_layers_stack_on_one_server() {
    let stats = Stats::new();
    let pool = TaskPool::new(8);
    let ended = Arc::new(AtomicUsize::new(0));
    let log = Log::default();
    let (s, e, l, p) = (stats.clone(), ended.clone(), log.clone(), pool.clone());
    let server = serve(move || {
        let e = e.clone();
        ServiceBuilder::new()
            .trace_events(TraceLayer::new().slow_threshold(Duration::from_secs(1)))
            .stats(&s)
            .heartbeat(HeartbeatLayer::new().close_when_reader_idle(Duration::from_secs(30)))
            .on_close(move |_: &Session| {
                e.fetch_add(1, Ordering::SeqCst);
            })
            .session_rate_limit(RateLimitLayer::new(Rate::per_second(10_000)))
            .load_shed()
            .task_pool(TaskPoolLayer::new(p.clone()))
            .event_timeout(EventTimeoutLayer::new(Duration::from_secs(1)))
            .timeout(Duration::from_secs(5))
            .concurrency_limit(4)
            .buffer(16)
            .service(handler(l.clone()))
    })
    .await;

    let mut c = TcpStream::connect(server.local_addr()).await.unwrap();
    let burst: Vec<u8> = (0..20)
        .flat_map(|i| frame(format!("p{i}").as_bytes()))
        .collect();
    c.write_all(&burst).await.unwrap();
    for i in 0..20 {
        assert_eq!(read_frame(&mut c).await, format!("p{i}").as_bytes());
    }
    drop(c);
    eventually("the session ended", || server.session_count() == 0).await;

    assert_eq!(ended.load(Ordering::SeqCst), 1, "on_close ran once");
    let snap = stats.snapshot();
    assert_eq!((snap.opened, snap.closed, snap.live), (1, 1, 0));
    assert_eq!(snap.packets_in, 20);
    assert_eq!(snap.packets_out, 20);
    assert_eq!(snap.error_count(), 0);
    assert_eq!(pool.in_use(), 0, "every permit came back");
    assert_eq!(log.events(), ["close"]);
    server.shutdown(LIMIT).await;
}

/// Inner layers act first on their own deadline. Our `event_timeout`
/// inside tower's `timeout` cancels a slow handler, reports the deadline
/// and keeps the session; the same two deadlines swapped (tower's inside,
/// shorter) make the expiry a handler error that closes the session.
#[tokio::test]
async fn the_inner_deadline_decides_what_a_slow_handler_costs() {
    let kept_log = Log::default();
    let l = kept_log.clone();
    let kept = serve(move || {
        ServiceBuilder::new()
            .timeout(Duration::from_secs(2))
            .event_timeout(EventTimeoutLayer::new(Duration::from_millis(100)))
            .service(handler(l.clone()))
    })
    .await;
    let mut c = TcpStream::connect(kept.local_addr()).await.unwrap();
    c.write_all(&frame(b"slow")).await.unwrap();
    eventually("the event timeout", || kept_log.has("error:")).await;
    c.write_all(&frame(b"still here")).await.unwrap();
    assert_eq!(read_frame(&mut c).await, b"still here");
    assert_eq!(kept_log.events(), ["error:event-timeout:closed=false"]);
    kept.shutdown(LIMIT).await;

    let closed_log = Log::default();
    let l = closed_log.clone();
    let closed = serve(move || {
        ServiceBuilder::new()
            .event_timeout(EventTimeoutLayer::new(Duration::from_secs(2)))
            .timeout(Duration::from_millis(100))
            .service(handler(l.clone()))
    })
    .await;
    let mut c = TcpStream::connect(closed.local_addr()).await.unwrap();
    c.write_all(&frame(b"slow")).await.unwrap();
    expect_eof(&mut c).await;
    eventually("close", || closed_log.has("close")).await;
    assert_eq!(
        closed_log.events(),
        ["error:tower-elapsed:closed=true", "close"]
    );
    closed.shutdown(LIMIT).await;
}

#[tokio::test]
async fn the_heartbeat_closes_a_silent_client_through_the_full_stack() {
    let log = Log::default();
    let l = log.clone();
    let server = serve(move || {
        ServiceBuilder::new()
            .stats(&Stats::new())
            .heartbeat(HeartbeatLayer::new().close_when_reader_idle(Duration::from_millis(200)))
            .load_shed()
            .timeout(Duration::from_secs(5))
            .buffer(4)
            .service(handler(l.clone()))
    })
    .await;
    let mut c = TcpStream::connect(server.local_addr()).await.unwrap();
    expect_eof(&mut c).await;
    eventually("close", || log.has("close")).await;
    assert_eq!(log.events(), ["error:idle:closed=true", "close"]);
    server.shutdown(LIMIT).await;
}

/// A handler panicking deep inside the stack (behind tower's `buffer`,
/// whose worker task dies with it) costs only its own session: the session
/// gets an Error and a Close, and the server keeps serving new sessions.
#[tokio::test]
async fn a_panic_inside_the_layer_stack_is_contained_to_its_session() {
    let stats = Stats::new();
    let s = stats.clone();
    let server = serve(move || {
        ServiceBuilder::new()
            .stats(&s)
            .event_timeout(EventTimeoutLayer::new(Duration::from_secs(1)))
            .timeout(Duration::from_secs(5))
            .buffer(4)
            .service(tower::service_fn(|req: Request<Bytes>| async move {
                match req.event {
                    Event::Message(pkg) if &pkg[..] == b"boom" => panic!("handler bug"),
                    Event::Message(pkg) => Ok::<_, Infallible>(Some(pkg)),
                    _ => Ok(None),
                }
            }))
    })
    .await;

    let mut healthy = TcpStream::connect(server.local_addr()).await.unwrap();
    healthy.write_all(&frame(b"before")).await.unwrap();
    assert_eq!(read_frame(&mut healthy).await, b"before");

    let mut victim = TcpStream::connect(server.local_addr()).await.unwrap();
    victim.write_all(&frame(b"boom")).await.unwrap();
    expect_eof(&mut victim).await;

    healthy.write_all(&frame(b"after")).await.unwrap();
    assert_eq!(read_frame(&mut healthy).await, b"after");
    let mut newcomer = TcpStream::connect(server.local_addr()).await.unwrap();
    newcomer.write_all(&frame(b"hello")).await.unwrap();
    assert_eq!(read_frame(&mut newcomer).await, b"hello");

    eventually("the victim closed", || stats.snapshot().closed == 1).await;
    let snap = stats.snapshot();
    assert_eq!(snap.live, 2);
    assert!(
        snap.error_count() >= 1,
        "the panic reached the stack as an error: {snap}"
    );
    server.shutdown(LIMIT).await;
}

/// A session whose peer left must end even while the shared pool is full:
/// its Close does not wait for a permit another session holds.
#[tokio::test]
async fn a_closed_sessions_close_does_not_wait_for_a_full_pool() {
    let log = Log::default();
    let pool = TaskPool::new(1);
    let (l, p) = (log.clone(), pool.clone());
    let server = serve(move || {
        ServiceBuilder::new()
            .task_pool(TaskPoolLayer::new(p.clone()))
            .service(handler(l.clone()))
    })
    .await;
    let mut holder = TcpStream::connect(server.local_addr()).await.unwrap();
    let leaver = TcpStream::connect(server.local_addr()).await.unwrap();
    eventually("both open", || server.session_count() == 2).await;
    holder.write_all(&frame(b"slow")).await.unwrap(); // holds the only permit
    eventually("the permit taken", || pool.in_use() == 1).await;

    drop(leaver);
    eventually("the leaver's Close passed", || log.has("close")).await;
    eventually("the leaver ended", || server.session_count() == 1).await;
    assert_eq!(pool.in_use(), 1, "the slow handler still holds its permit");
    server.shutdown(Duration::from_millis(200)).await;
}

/// A peer that keeps sending is not idle, even when our own rate limit
/// holds its packets back: the heartbeat above the limit must not close it.
#[tokio::test]
async fn a_busy_peer_held_back_by_a_rate_limit_is_not_taken_for_idle() {
    let log = Log::default();
    let l = log.clone();
    let server = serve(move || {
        ServiceBuilder::new()
            .heartbeat(HeartbeatLayer::new().close_when_reader_idle(Duration::from_millis(300)))
            .session_rate_limit(RateLimitLayer::new(
                Rate::new(20, Duration::from_secs(1)).with_burst(1),
            ))
            .service(handler(l.clone()))
    })
    .await;
    let mut c = TcpStream::connect(server.local_addr()).await.unwrap();
    let (mut rd, mut wr) = c.split();
    // Twice the rate the limit lets through, for 1.5 s: the backlog grows,
    // reading pauses, yet the peer is anything but idle.
    let send = async {
        for i in 0..60 {
            wr.write_all(&frame(format!("p{i}").as_bytes()))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    };
    let drain = async {
        let mut buf = vec![0u8; 4096];
        while rd.read(&mut buf).await.unwrap_or(0) > 0 {}
    };
    tokio::select! {
        () = send => {}
        () = drain => panic!("the server closed a busy session"),
    }
    assert!(
        !log.has("error:"),
        "no idle error while busy: {:?}",
        log.events()
    );
    server.shutdown(LIMIT).await;
}
