//! The service stack: event order, plain tower services, responses of any
//! length, tower layers, the make-service, refusing sessions, pipelining
//! and write batching.
mod common;

use std::{
    convert::Infallible,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use bytes::Bytes;
use common::*;
use getty::{
    codec::LengthCodec, new_session_fn, BoxError, Error, Event, EventListener, ListenerService,
    Request, Server, Session, SessionConfig,
};
use tokio::{io::AsyncReadExt, io::AsyncWriteExt, net::TcpStream, time::Instant};
use tower::{
    limit::ConcurrencyLimitLayer, service_fn, timeout::error::Elapsed, timeout::TimeoutLayer,
    ServiceBuilder,
};

const LIMIT: Duration = Duration::from_secs(5);

async fn bind(config: SessionConfig) -> Server {
    Server::builder()
        .session_config(config)
        .bind("127.0.0.1:0")
        .await
        .expect("bind")
}

async fn expect_eof(s: &mut TcpStream) {
    let mut buf = [0u8; 64];
    let n = within(LIMIT, s.read(&mut buf))
        .await
        .expect("read after close");
    assert_eq!(n, 0, "expected EOF, got {:?}", &buf[..n]);
}

/// Counts calls in the service at once and remembers the highest count.
#[derive(Clone, Default)]
struct Concurrency {
    now: Arc<AtomicUsize>,
    max: Arc<AtomicUsize>,
}

impl Concurrency {
    fn enter(&self) {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(n, Ordering::SeqCst);
    }
    fn leave(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
    fn max(&self) -> usize {
        self.max.load(Ordering::SeqCst)
    }
}

/// A service that sleeps for the number of milliseconds in each message,
/// then echoes it; records concurrency and the order calls finished in.
fn sleepy(
    conc: Concurrency,
    finished: Arc<Mutex<Vec<String>>>,
) -> impl tower::Service<
    Request<Bytes>,
    Response = Option<Bytes>,
    Error = Infallible,
    Future = impl Send + 'static,
> + Clone
       + Send
       + 'static {
    service_fn(move |req: Request<Bytes>| {
        let conc = conc.clone();
        let finished = finished.clone();
        async move {
            let Some(pkg) = req.into_message() else {
                return Ok(None);
            };
            let text = String::from_utf8(pkg.to_vec()).unwrap();
            let ms: u64 = text.parse().unwrap();
            conc.enter();
            tokio::time::sleep(Duration::from_millis(ms)).await;
            conc.leave();
            finished.lock().unwrap().push(text);
            Ok::<_, Infallible>(Some(pkg))
        }
    })
}

/// All frames in one write, so the server has them all at once.
async fn write_frames(s: &mut TcpStream, payloads: &[&str]) {
    let mut wire = Vec::new();
    for p in payloads {
        wire.extend_from_slice(&frame(p.as_bytes()));
    }
    s.write_all(&wire).await.unwrap();
}

#[tokio::test]
async fn events_pass_the_stack_in_order_open_messages_ticks_close() {
    let config = SessionConfig::default().cron_period(Some(Duration::from_millis(30)));
    let (server, log) = recording_server(config).await;
    let mut raw = TcpStream::connect(server.local_addr()).await.unwrap();
    for p in ["a", "b", "c"] {
        write_frame(&mut raw, p.as_bytes()).await;
    }
    for p in ["a", "b", "c"] {
        assert_eq!(read_frame(&mut raw).await, p.as_bytes());
    }
    let ticks = log.count("tick");
    eventually(LIMIT, "a tick after the messages", || {
        log.count("tick") > ticks
    })
    .await;
    drop(raw);
    eventually(LIMIT, "close", || log.count("close") == 1).await;

    let events = log.events();
    assert_eq!(
        events.first().map(String::as_str),
        Some("open"),
        "{events:?}"
    );
    assert_eq!(
        events.last().map(String::as_str),
        Some("close"),
        "{events:?}"
    );
    assert_eq!(log.count("open"), 1);
    assert_eq!(log.count("close"), 1);
    assert_eq!(log.count("error"), 0, "{events:?}");
    let messages: Vec<&str> = events
        .iter()
        .filter(|e| e.starts_with("message:"))
        .map(String::as_str)
        .collect();
    assert_eq!(messages, ["message:a", "message:b", "message:c"]);
    let last_message = events.iter().rposition(|e| e == "message:c").unwrap();
    let last_tick = events.iter().rposition(|e| e == "tick").unwrap();
    assert!(last_tick > last_message, "{events:?}");
    server.shutdown(LIMIT).await;
}

#[tokio::test]
async fn a_plain_tower_service_fn_echoes() {
    let server = bind(SessionConfig::default()).await;
    let handle = server.serve(
        LengthCodec::new(),
        new_session_fn(|_: &Session| {
            Ok::<_, Infallible>(service_fn(|req: Request<Bytes>| async move {
                Ok::<_, Infallible>(req.into_message())
            }))
        }),
    );
    let mut raw = TcpStream::connect(handle.local_addr()).await.unwrap();
    for p in ["hello", "tower", ""] {
        write_frame(&mut raw, p.as_bytes()).await;
        assert_eq!(read_frame(&mut raw).await, p.as_bytes());
    }
    handle.shutdown(LIMIT).await;
}

#[tokio::test]
async fn a_response_of_none_one_or_several_packets_is_written_in_request_order() {
    let server = bind(SessionConfig::default()).await;
    // "n:tag" answers with n packets "tag-1" .. "tag-n".
    let handle = server.serve(
        LengthCodec::new(),
        new_session_fn(|_: &Session| {
            Ok::<_, Infallible>(service_fn(|req: Request<Bytes>| async move {
                let Some(pkg) = req.into_message() else {
                    return Ok::<_, Infallible>(Vec::new());
                };
                let text = String::from_utf8(pkg.to_vec()).unwrap();
                let (n, tag) = text.split_once(':').unwrap();
                let n: usize = n.parse().unwrap();
                Ok((1..=n)
                    .map(|i| Bytes::from(format!("{tag}-{i}")))
                    .collect::<Vec<_>>())
            }))
        }),
    );
    let mut raw = TcpStream::connect(handle.local_addr()).await.unwrap();
    write_frames(&mut raw, &["0:a", "1:b", "3:c", "0:d", "2:e", "1:end"]).await;
    for want in ["b-1", "c-1", "c-2", "c-3", "e-1", "e-2", "end-1"] {
        assert_eq!(String::from_utf8(read_frame(&mut raw).await).unwrap(), want);
    }
    handle.shutdown(LIMIT).await;
}

#[tokio::test]
async fn timeout_and_concurrency_limit_layers_wrap_a_listener_service() {
    let log = Log::default();
    let l = log.clone();
    let server = bind(SessionConfig::default()).await;
    let handle = server.serve(
        LengthCodec::new(),
        new_session_fn(move |_: &Session| {
            Ok::<_, BoxError>(
                ServiceBuilder::new()
                    .layer(ConcurrencyLimitLayer::new(2))
                    .layer(TimeoutLayer::new(Duration::from_secs(1)))
                    .service(ListenerService::new(Recorder { log: l.clone() })),
            )
        }),
    );
    let mut raw = TcpStream::connect(handle.local_addr()).await.unwrap();
    for p in ["x", "y"] {
        write_frame(&mut raw, p.as_bytes()).await;
        assert_eq!(read_frame(&mut raw).await, p.as_bytes());
    }
    drop(raw);
    eventually(LIMIT, "close", || log.count("close") == 1).await;
    assert_eq!(log.events(), ["open", "message:x", "message:y", "close"]);
    handle.shutdown(LIMIT).await;
}

#[tokio::test]
async fn a_firing_timeout_layer_raises_a_handler_error_from_elapsed_and_closes_the_session() {
    let log = Log::default();
    let l = log.clone();
    let server = bind(SessionConfig::default()).await;
    let handle = server.serve(
        LengthCodec::new(),
        new_session_fn(move |_: &Session| {
            let l = l.clone();
            let slow = service_fn(move |req: Request<Bytes>| {
                let l = l.clone();
                async move {
                    match req.event {
                        Event::Open => l.push("open"),
                        Event::Message(_) => {
                            l.push("message-started");
                            tokio::time::sleep(Duration::from_secs(30)).await;
                            l.push("message-finished");
                        }
                        Event::Error(e) => {
                            let elapsed = std::error::Error::source(&e)
                                .is_some_and(|s| s.downcast_ref::<Elapsed>().is_some());
                            match e {
                                Error::Handler { .. } if elapsed => {
                                    l.push("error:handler(elapsed)")
                                }
                                other => l.push(format!("error:other:{other}")),
                            }
                        }
                        Event::Close => l.push("close"),
                        _ => l.push("other"),
                    }
                    Ok::<_, Infallible>(None::<Bytes>)
                }
            });
            Ok::<_, BoxError>(
                ServiceBuilder::new()
                    .layer(ConcurrencyLimitLayer::new(1))
                    .layer(TimeoutLayer::new(Duration::from_millis(100)))
                    .service(slow),
            )
        }),
    );
    let mut raw = TcpStream::connect(handle.local_addr()).await.unwrap();
    write_frame(&mut raw, b"slow").await;
    // Closed long before the 30 s handler could finish.
    expect_eof(&mut raw).await;
    eventually(LIMIT, "close", || log.count("close") == 1).await;
    assert_eq!(
        log.events(),
        ["open", "message-started", "error:handler(elapsed)", "close"]
    );
    handle.shutdown(LIMIT).await;
}

#[tokio::test]
async fn the_make_service_can_name_the_session_and_set_its_cron_period() {
    struct Named {
        log: Log,
    }
    impl EventListener<Bytes> for Named {
        fn on_open(&mut self, s: &Session) -> Result<Option<Bytes>, BoxError> {
            self.log.push(format!("open:{}", s.name()));
            Ok(None)
        }
        fn on_message(&mut self, _: &Session, pkg: Bytes) -> Option<Bytes> {
            Some(pkg)
        }
        fn on_cron(&mut self, s: &Session) {
            self.log.push(format!("tick:{}", s.name()));
        }
    }

    let log = Log::default();
    let l = log.clone();
    // The server's config has no cron period: ticks come from the callback.
    let server = bind(SessionConfig::default()).await;
    let handle = server.serve(
        LengthCodec::new(),
        new_session_fn(move |s: &Session| {
            s.set_name("configured");
            s.set_cron_period(Some(Duration::from_millis(20)));
            Ok::<_, BoxError>(ListenerService::new(Named { log: l.clone() }))
        }),
    );
    let _raw = TcpStream::connect(handle.local_addr()).await.unwrap();
    eventually(LIMIT, "two ticks", || log.count("tick:configured") >= 2).await;
    assert_eq!(log.events()[0], "open:configured");
    let s = handle.sessions().sessions().pop().unwrap();
    assert_eq!(s.name(), "configured");
    assert_eq!(s.cron_period(), Some(Duration::from_millis(20)));
    handle.shutdown(LIMIT).await;
}

#[tokio::test]
async fn a_make_service_error_refuses_the_connection_and_no_event_reaches_any_stack() {
    let log = Log::default();
    let l = log.clone();
    let mut made = 0;
    let server = bind(SessionConfig::default()).await;
    let handle = server.serve(
        LengthCodec::new(),
        new_session_fn(move |_: &Session| {
            made += 1;
            // A stack is built either way; the first one is thrown away.
            let stack = ListenerService::new(Recorder { log: l.clone() });
            if made == 1 {
                Err::<_, BoxError>("not this one".into())
            } else {
                Ok(stack)
            }
        }),
    );

    let mut refused = TcpStream::connect(handle.local_addr()).await.unwrap();
    expect_eof(&mut refused).await;
    eventually(LIMIT, "refused session gone", || {
        handle.session_count() == 0
    })
    .await;
    assert!(log.events().is_empty(), "{:?}", log.events());

    // The server goes on; the next session is served normally.
    let mut ok = TcpStream::connect(handle.local_addr()).await.unwrap();
    write_frame(&mut ok, b"hi").await;
    assert_eq!(read_frame(&mut ok).await, b"hi");
    drop(ok);
    eventually(LIMIT, "close", || log.count("close") == 1).await;
    assert_eq!(log.events(), ["open", "message:hi", "close"]);
    handle.shutdown(LIMIT).await;
}

#[tokio::test]
async fn an_on_open_error_refuses_the_session_without_a_close_event() {
    struct Refuse {
        log: Log,
    }
    impl EventListener<Bytes> for Refuse {
        fn on_open(&mut self, _: &Session) -> Result<Option<Bytes>, BoxError> {
            self.log.push("open");
            Err("go away".into())
        }
        fn on_message(&mut self, _: &Session, pkg: Bytes) -> Option<Bytes> {
            self.log.push("message");
            Some(pkg)
        }
        fn on_error(&mut self, _: &Session, _: &Error) {
            self.log.push("error");
        }
        fn on_close(&mut self, _: &Session) {
            self.log.push("close");
        }
    }

    let log = Log::default();
    let l = log.clone();
    let sessions = Arc::new(Mutex::new(Vec::new()));
    let ss = sessions.clone();
    let server = bind(SessionConfig::default()).await;
    let handle = server.serve(
        LengthCodec::new(),
        new_session_fn(move |s: &Session| {
            ss.lock().unwrap().push(s.clone());
            Ok::<_, BoxError>(ListenerService::new(Refuse { log: l.clone() }))
        }),
    );
    let mut raw = TcpStream::connect(handle.local_addr()).await.unwrap();
    expect_eof(&mut raw).await;
    eventually(LIMIT, "session made", || {
        sessions.lock().unwrap().len() == 1
    })
    .await;
    let s = sessions.lock().unwrap()[0].clone();
    within(LIMIT, s.finished()).await;
    assert!(s.is_closed());
    assert_eq!(log.events(), ["open"]);
    handle.shutdown(LIMIT).await;
    assert_eq!(log.events(), ["open"]);
}

#[tokio::test]
async fn a_listener_greets_the_peer_from_on_open_before_answering_its_packets() {
    struct Greeter;
    impl EventListener<Bytes> for Greeter {
        fn on_open(&mut self, s: &Session) -> Result<Option<Bytes>, BoxError> {
            Ok(Some(Bytes::from(format!("welcome {}", s.id()))))
        }
        fn on_message(&mut self, _: &Session, pkg: Bytes) -> Option<Bytes> {
            Some(pkg)
        }
    }

    let server = bind(SessionConfig::default()).await;
    let handle = server.serve(
        LengthCodec::new(),
        new_session_fn(|_: &Session| Ok::<_, BoxError>(ListenerService::new(Greeter))),
    );
    // A peer that says nothing is greeted.
    let mut quiet = TcpStream::connect(handle.local_addr()).await.unwrap();
    let quiet_greeting = read_frame(&mut quiet).await;
    assert!(
        quiet_greeting.starts_with(b"welcome "),
        "{quiet_greeting:?}"
    );
    // A peer that speaks first still hears the greeting first.
    let mut eager = TcpStream::connect(handle.local_addr()).await.unwrap();
    write_frames(&mut eager, &["first", "second"]).await;
    let greeting = read_frame(&mut eager).await;
    assert!(greeting.starts_with(b"welcome "), "{greeting:?}");
    assert_eq!(read_frame(&mut eager).await, b"first");
    assert_eq!(read_frame(&mut eager).await, b"second");
    // Each session got its own greeting.
    assert_ne!(greeting, quiet_greeting);
    handle.shutdown(LIMIT).await;
}

#[tokio::test]
async fn max_in_flight_above_one_pipelines_calls_and_keeps_response_order() {
    let conc = Concurrency::default();
    let finished = Arc::new(Mutex::new(Vec::new()));
    let (c, f) = (conc.clone(), finished.clone());
    let server = bind(SessionConfig::default().max_in_flight(4)).await;
    let handle = server.serve(
        LengthCodec::new(),
        new_session_fn(move |_: &Session| Ok::<_, Infallible>(sleepy(c.clone(), f.clone()))),
    );
    let mut raw = TcpStream::connect(handle.local_addr()).await.unwrap();
    let delays = ["400", "300", "200", "100"];
    let start = Instant::now();
    write_frames(&mut raw, &delays).await;
    for want in delays {
        assert_eq!(read_frame(&mut raw).await, want.as_bytes());
    }
    let took = start.elapsed();
    // The calls finished in reverse, yet the answers came in request order.
    assert_eq!(*finished.lock().unwrap(), ["100", "200", "300", "400"]);
    assert_eq!(conc.max(), 4, "all four calls ran at once");
    assert!(
        took < Duration::from_millis(1000),
        "took {took:?}: not less than the sum of the delays"
    );
    handle.shutdown(LIMIT).await;
}

#[tokio::test]
async fn max_in_flight_set_in_the_make_service_enables_pipelining() {
    let conc = Concurrency::default();
    let finished = Arc::new(Mutex::new(Vec::new()));
    let (c, f) = (conc.clone(), finished.clone());
    // The server's config keeps the default of one in flight.
    let server = bind(SessionConfig::default()).await;
    let handle = server.serve(
        LengthCodec::new(),
        new_session_fn(move |s: &Session| {
            s.set_max_in_flight(3);
            Ok::<_, Infallible>(sleepy(c.clone(), f.clone()))
        }),
    );
    let mut raw = TcpStream::connect(handle.local_addr()).await.unwrap();
    let delays = ["300", "200", "100"];
    write_frames(&mut raw, &delays).await;
    for want in delays {
        assert_eq!(read_frame(&mut raw).await, want.as_bytes());
    }
    assert_eq!(conc.max(), 3);
    assert_eq!(*finished.lock().unwrap(), ["100", "200", "300"]);
    handle.shutdown(LIMIT).await;
}

#[tokio::test]
async fn by_default_one_event_is_in_the_service_at_a_time() {
    let conc = Concurrency::default();
    let finished = Arc::new(Mutex::new(Vec::new()));
    let (c, f) = (conc.clone(), finished.clone());
    let server = bind(SessionConfig::default()).await;
    let handle = server.serve(
        LengthCodec::new(),
        new_session_fn(move |_: &Session| Ok::<_, Infallible>(sleepy(c.clone(), f.clone()))),
    );
    let mut raw = TcpStream::connect(handle.local_addr()).await.unwrap();
    let delays = ["40", "30", "20", "10"];
    let start = Instant::now();
    write_frames(&mut raw, &delays).await;
    for want in delays {
        assert_eq!(read_frame(&mut raw).await, want.as_bytes());
    }
    assert!(start.elapsed() >= Duration::from_millis(100), "sequential");
    assert_eq!(conc.max(), 1);
    assert_eq!(
        *finished.lock().unwrap(),
        delays,
        "finished in request order"
    );
    handle.shutdown(LIMIT).await;
}

#[tokio::test]
async fn a_concurrency_limit_layer_bounds_calls_below_max_in_flight() {
    let conc = Concurrency::default();
    let finished = Arc::new(Mutex::new(Vec::new()));
    let (c, f) = (conc.clone(), finished.clone());
    let server = bind(SessionConfig::default().max_in_flight(8)).await;
    let handle = server.serve(
        LengthCodec::new(),
        new_session_fn(move |_: &Session| {
            Ok::<_, Infallible>(
                ServiceBuilder::new()
                    .layer(ConcurrencyLimitLayer::new(2))
                    .service(sleepy(c.clone(), f.clone())),
            )
        }),
    );
    let mut raw = TcpStream::connect(handle.local_addr()).await.unwrap();
    let delays = ["30", "30", "30", "30", "30", "30"];
    write_frames(&mut raw, &delays).await;
    for want in delays {
        assert_eq!(read_frame(&mut raw).await, want.as_bytes());
    }
    assert_eq!(conc.max(), 2);
    handle.shutdown(LIMIT).await;
}

#[tokio::test]
async fn a_thousand_pipelined_packets_echo_back_in_order_with_batched_writes() {
    let (server, log) = recording_server(SessionConfig::default()).await;
    let mut raw = TcpStream::connect(server.local_addr()).await.unwrap();
    let n = 1000;
    let mut wire = Vec::new();
    for i in 0..n {
        wire.extend_from_slice(&frame(format!("msg-{i}").as_bytes()));
    }
    let (mut rd, mut wr) = raw.split();
    let writing = async {
        wr.write_all(&wire).await.unwrap();
    };
    let reading = async {
        let mut buf = vec![0u8; wire.len()];
        rd.read_exact(&mut buf).await.unwrap();
        buf
    };
    let ((), echoed) = within(LIMIT, async { tokio::join!(writing, reading) }).await;
    assert!(echoed == wire, "the echo differs from what was sent");

    let s = server.sessions().sessions().pop().unwrap();
    let stats = s.stats();
    assert_eq!(stats.packets_in, n);
    assert_eq!(stats.packets_out, n);
    assert!(
        stats.writes * 10 <= stats.packets_out,
        "{} socket writes for {} packets: responses are not batched",
        stats.writes,
        stats.packets_out
    );
    assert_eq!(log.count("message:"), n as usize);
    drop(raw);
    server.shutdown(LIMIT).await;
}
