//! The trace layer: slow-handler warnings, packet logging, and spans per
//! event inside a span per session, checked on captured `fmt` output.

use std::{
    future::Future,
    io,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use getty::{
    codec::LengthCodec, new_session_fn, Addr, BoxError, EndpointKind, Event, Request, Server,
    Session, SessionConfig,
};
use getty_layers::trace::{Trace, TraceLayer};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tower::{service_fn, Layer, Service, ServiceExt};
use tracing::{subscriber::DefaultGuard, Level};

const LIMIT: Duration = Duration::from_secs(10);

// ----- helpers --------------------------------------------------------------

/// Everything a `fmt` subscriber wrote, one event per line.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Capture {
    fn lines(&self) -> Vec<String> {
        String::from_utf8(self.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn lines_with(&self, needle: &str) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter(|l| l.contains(needle))
            .collect()
    }
}

/// Captures this thread's tracing output at `level` and above while the
/// guard lives (tests run on a current-thread runtime, so the server's
/// tasks log here too).
fn capture(level: Level) -> (Capture, DefaultGuard) {
    let cap = Capture::default();
    let writer = cap.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(level)
        .with_ansi(false)
        .without_time()
        .finish();
    (cap, tracing::subscriber::set_default(subscriber))
}

fn detached() -> Session {
    Session::new(
        EndpointKind::Detached,
        Addr::Unknown,
        Addr::Unknown,
        SessionConfig::default(),
    )
}

async fn within<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, fut)
        .await
        .unwrap_or_else(|_| panic!("did not finish within {LIMIT:?}"))
}

/// Passes `events` through `svc`, one after another, as a driver would.
async fn run<S>(svc: &mut S, session: &Session, events: Vec<Event<Bytes>>) -> Vec<Option<Bytes>>
where
    S: Service<Request<Bytes>, Response = Option<Bytes>, Error = BoxError>,
{
    let mut out = Vec::new();
    for event in events {
        let req = Request::new(session.clone(), event);
        out.push(within(svc.ready().await.unwrap().call(req)).await.unwrap());
    }
    out
}

/// A field's value on a `fmt` line: the text after `name=` up to the next
/// space (the values checked here have none).
fn field<'a>(line: &'a str, name: &str) -> &'a str {
    let key = format!(" {name}=");
    let start = line
        .find(&key)
        .unwrap_or_else(|| panic!("no field {name} in {line:?}"))
        + key.len();
    line[start..].split(' ').next().unwrap()
}

/// Parses a `Debug`-formatted `Duration` such as `300ms`, `1.5s`, `12µs`.
fn parse_duration(s: &str) -> Duration {
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap();
    let (n, unit) = s.split_at(split);
    let n: f64 = n.parse().unwrap();
    let secs = match unit {
        "s" => n,
        "ms" => n / 1e3,
        "µs" => n / 1e6,
        "ns" => n / 1e9,
        other => panic!("unknown unit {other:?} in {s:?}"),
    };
    Duration::from_secs_f64(secs)
}

/// 200 bytes whose `Debug` rendering is `b"xxx...x"`.
fn big_packet() -> Bytes {
    Bytes::from(vec![b'x'; 200])
}

/// An echo service that takes `delay` (on the paused test clock) over
/// each message.
fn echo_after(
    delay: Duration,
) -> impl Service<Request<Bytes>, Response = Option<Bytes>, Error = BoxError, Future: Send> + Clone
{
    service_fn(move |req: Request<Bytes>| async move {
        if req.message().is_some() {
            tokio::time::sleep(delay).await;
        }
        Ok::<_, BoxError>(req.into_message())
    })
}

// ----- slow handlers --------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_slow_handler_logs_exactly_one_warning_with_elapsed_event_name_and_truncated_packet() {
    let (cap, _guard) = capture(Level::TRACE);
    let mut svc = TraceLayer::new()
        .slow_threshold(Duration::from_millis(100))
        .summary_bytes(24)
        .layer(echo_after(Duration::from_millis(300)));
    let session = detached();
    let pkg = big_packet();
    let answers = run(
        &mut svc,
        &session,
        vec![
            Event::Open,
            Event::Message(pkg.clone()),
            Event::Tick,
            Event::Close,
        ],
    )
    .await;
    assert_eq!(answers, [None, Some(pkg.clone()), None, None]);

    let warnings = cap.lines_with("WARN");
    assert_eq!(warnings.len(), 1, "{:#?}", cap.lines());
    let line = &warnings[0];
    assert!(line.contains("slow handler"), "{line}");
    assert_eq!(field(line, "event"), "\"message\"", "{line}");
    let elapsed = parse_duration(field(line, "elapsed"));
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(5),
        "elapsed {elapsed:?} in {line}"
    );
    assert_eq!(field(line, "threshold"), "100ms", "{line}");
    // The packet's Debug rendering, cut to 24 bytes and marked.
    let debug = format!("{pkg:?}");
    assert_eq!(
        field(line, "packet"),
        format!("{}...", &debug[..24]),
        "{line}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_fast_handler_logs_no_warning() {
    let (cap, _guard) = capture(Level::TRACE);
    let mut svc = TraceLayer::new()
        .slow_threshold(Duration::from_millis(100))
        .layer(echo_after(Duration::from_millis(20)));
    let session = detached();
    let answers = run(
        &mut svc,
        &session,
        vec![
            Event::Open,
            Event::Message(big_packet()),
            Event::Message(Bytes::from_static(b"hi")),
            Event::Tick,
            Event::Close,
        ],
    )
    .await;
    assert_eq!(answers.iter().filter(|a| a.is_some()).count(), 2);
    assert!(cap.lines_with("WARN").is_empty(), "{:#?}", cap.lines());
    assert!(cap.lines_with("slow handler").is_empty());
}

#[tokio::test(start_paused = true)]
async fn slow_lifecycle_events_warn_too_without_a_packet() {
    let (cap, _guard) = capture(Level::TRACE);
    let mut svc = TraceLayer::new()
        .slow_threshold(Duration::from_millis(100))
        .layer(service_fn(|req: Request<Bytes>| async move {
            if matches!(req.event, Event::Open) {
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            Ok::<_, BoxError>(req.into_message())
        }));
    run(
        &mut svc,
        &detached(),
        vec![Event::Open, Event::Message(Bytes::from_static(b"quick"))],
    )
    .await;
    let warnings = cap.lines_with("WARN");
    assert_eq!(warnings.len(), 1, "{:#?}", cap.lines());
    assert_eq!(field(&warnings[0], "event"), "\"open\"");
    assert!(!warnings[0].contains("packet="), "{}", warnings[0]);
}

// ----- packet logging -------------------------------------------------------

#[tokio::test]
async fn log_packets_logs_each_packet_at_debug_cut_to_max_bytes() {
    let (cap, _guard) = capture(Level::DEBUG);
    let mut svc = TraceLayer::new()
        .log_packets(16)
        .layer(echo_after(Duration::ZERO));
    let session = detached();
    let big = big_packet();
    run(
        &mut svc,
        &session,
        vec![
            Event::Open,
            Event::Message(big.clone()),
            Event::Message(Bytes::from_static(b"hello")),
            Event::Close,
        ],
    )
    .await;
    let logged = cap.lines_with("packet received");
    assert_eq!(logged.len(), 2, "{:#?}", cap.lines());
    assert!(logged.iter().all(|l| l.contains("DEBUG")), "{logged:#?}");
    let debug = format!("{big:?}");
    assert_eq!(field(&logged[0], "packet"), format!("{}...", &debug[..16]));
    assert_eq!(field(&logged[1], "packet"), "b\"hello\"", "short: whole");
}

#[tokio::test]
async fn packets_are_not_logged_unless_asked_or_above_debug() {
    // Not asked: nothing even at trace level.
    let (cap, guard) = capture(Level::TRACE);
    let mut svc = Trace::new(echo_after(Duration::ZERO));
    run(&mut svc, &detached(), vec![Event::Message(big_packet())]).await;
    assert!(
        cap.lines_with("packet received").is_empty(),
        "{:#?}",
        cap.lines()
    );
    drop(guard);

    // Asked, but the subscriber is at info: nothing.
    let (cap, _guard) = capture(Level::INFO);
    let mut svc = TraceLayer::new()
        .log_packets(16)
        .layer(echo_after(Duration::ZERO));
    run(&mut svc, &detached(), vec![Event::Message(big_packet())]).await;
    assert!(cap.lines().is_empty(), "{:#?}", cap.lines());
}

// ----- spans ----------------------------------------------------------------

/// An echo service that logs one info line per event.
fn chatty() -> impl Service<Request<Bytes>, Response = Option<Bytes>, Error = BoxError, Future: Send>
       + Clone
       + Send
       + 'static {
    service_fn(|req: Request<Bytes>| async move {
        tracing::info!(event = req.event.name(), "in handler");
        Ok::<_, BoxError>(req.into_message())
    })
}

#[tokio::test]
async fn a_detached_session_gets_its_own_session_span_with_its_id_around_each_event_span() {
    let (cap, _guard) = capture(Level::DEBUG);
    let mut svc = TraceLayer::new().layer(chatty());
    let session = detached();
    run(
        &mut svc,
        &session,
        vec![
            Event::Open,
            Event::Message(Bytes::from_static(b"m")),
            Event::Close,
        ],
    )
    .await;
    let lines = cap.lines_with("in handler");
    assert_eq!(lines.len(), 3, "{:#?}", cap.lines());
    let session_span = format!(
        "session{{id={} peer={} transport=\"detached\"}}",
        session.id(),
        session.peer_addr()
    );
    for (line, name) in lines.iter().zip(["open", "message", "close"]) {
        let want = format!("{session_span}:event{{name=\"{name}\"}}:");
        assert!(line.contains(&want), "{line}\nwanted {want}");
    }

    // A second session through the same service gets its own span.
    let other = detached();
    run(
        &mut svc,
        &other,
        vec![Event::Message(Bytes::from_static(b"m"))],
    )
    .await;
    let last = cap.lines_with("in handler").pop().unwrap();
    assert!(
        last.contains(&format!("session{{id={} ", other.id())),
        "{last}"
    );
}

#[tokio::test]
async fn a_server_session_keeps_the_core_session_span_and_gets_event_spans_inside_it() {
    let (cap, _guard) = capture(Level::DEBUG);
    let server = Server::builder().bind("127.0.0.1:0").await.expect("bind");
    let ids = Arc::new(Mutex::new(Vec::new()));
    let seen = ids.clone();
    let handle = server.serve(
        LengthCodec::new(),
        new_session_fn(move |session: &Session| {
            seen.lock().unwrap().push(session.id());
            Ok::<_, BoxError>(
                TraceLayer::new()
                    .slow_threshold(Duration::from_secs(60))
                    .layer(chatty()),
            )
        }),
    );
    let mut raw = TcpStream::connect(handle.local_addr()).await.unwrap();
    let local = raw.local_addr().unwrap();
    raw.write_all(b"\0\0\0\x04ping").await.unwrap();
    let mut reply = [0u8; 8];
    within(raw.read_exact(&mut reply)).await.unwrap();
    assert_eq!(&reply, b"\0\0\0\x04ping");
    handle.shutdown(LIMIT).await;

    let id = ids.lock().unwrap()[0];
    let lines = cap.lines_with("in handler");
    let message = lines
        .iter()
        .find(|l| l.contains("event=\"message\""))
        .unwrap_or_else(|| panic!("{:#?}", cap.lines()));
    let want =
        format!("session{{id={id} peer={local} transport=\"tcp\"}}:event{{name=\"message\"}}:");
    assert!(message.contains(&want), "{message}\nwanted {want}");
    // One session span: the core's; the layer opened none of its own.
    assert_eq!(message.matches("session{").count(), 1, "{message}");
    for name in ["open", "close"] {
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!("session{{id={id} "))
                    && l.contains(&format!("event{{name=\"{name}\"}}"))),
            "no {name} line in {lines:#?}"
        );
    }
}
