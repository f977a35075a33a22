//! erpc's plugins as tower layers, over real sockets on 127.0.0.1: auth
//! and heartbeat byte for byte against erpc's golden frames, and the route
//! plugins (slow calls, detail log, stats).

use std::{
    io::{self, Write},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use getty::{
    codec::{Decoder, Encoder},
    rpc::{
        codec::{CodecId, Raw},
        plugin::{
            auth::{AuthBearer, AuthChecker},
            detail::DetailLog,
            heartbeat::{self, HeartbeatPing, HeartbeatPong},
            slow::SlowCall,
            stats::{RpcStats, LATENCY_BOUNDS},
        },
        CallCtx, Message, MessageType, Peer, PushCtx, RawProto, Router, Status, XferFilters,
    },
    BytesMut,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

// Golden frames of erpc v6 (packed by erpc's own socket package and seen
// live between real erpc peers; see the wire spec's part 2).
/// AUTH_CALL seq 1, json `"client-auth-info-12345"`.
const H_AUTH_CALL: &str =
    "0000002c00013104000006636f64653d3000006a22636c69656e742d617574682d696e666f2d313233343522";
/// AUTH_REPLY seq 1, json `"server-ok"`.
const H2_AUTH_REPLY: &str = "0000001f00013105000006636f64653d3000006a227365727665722d6f6b22";
/// Heartbeat PUSH seq 1 to `/heartbeat`, meta `hb_=3`, empty json body.
const I_HEARTBEAT_PUSH: &str =
    "00000023000131030a2f6865617274626561740006636f64653d30000568625f3d336a";
/// CALL seq 1 to `/home/echo`, plain `hello`.
const E2_CALL_PLAIN: &str =
    "00000023000131010a2f686f6d652f6563686f0006636f64653d3000007368656c6c6f";
/// PUSH seq 1 to `/push/hello`, json `{"hello":"world"}`.
const D2_PUSH_PLAIN: &str = "00000030000131030b2f707573682f68656c6c6f0006636f64653d3000006a7b2268656c6c6f223a22776f726c64227d";

const GOLDEN_INFO: &str = "client-auth-info-12345";
const LONG: Duration = Duration::from_secs(10);

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn proto() -> RawProto {
    RawProto::new(XferFilters::new(), 1 << 20)
}

fn decode(frame: &[u8]) -> Message {
    proto()
        .decode(&mut BytesMut::from(frame))
        .unwrap()
        .expect("a whole frame")
}

fn encode(msg: Message) -> Vec<u8> {
    let mut buf = BytesMut::new();
    proto().encode(msg, &mut buf).unwrap();
    buf.to_vec()
}

/// One whole frame as it came, `None` at EOF (or a reset: the peer closed).
async fn read_frame(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let read = async {
        let mut len = [0u8; 4];
        stream.read_exact(&mut len).await?;
        let mut frame = len.to_vec();
        frame.resize(u32::from_be_bytes(len) as usize, 0);
        stream.read_exact(&mut frame[4..]).await?;
        Ok::<_, io::Error>(frame)
    };
    tokio::time::timeout(LONG, read)
        .await
        .expect("nothing came within the time limit")
        .ok()
}

/// Polls `ok` until it holds, failing after [`LONG`].
async fn eventually(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + LONG;
    while !ok() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn echo(_: CallCtx, arg: Raw) -> Result<Raw, Status> {
    Ok(arg)
}

/// Accepts the golden info, refuses everything else with 401.
fn checker(seen: Arc<AtomicUsize>) -> AuthChecker {
    AuthChecker::new(move |session: &getty::Session<Message>, info: String| {
        seen.fetch_add(1, Ordering::SeqCst);
        if info == GOLDEN_INFO {
            session.set_attribute(info);
            Ok("server-ok")
        } else {
            Err(Status::framework_with(
                Status::CODE_UNAUTHORIZED,
                "unknown client",
            ))
        }
    })
}

/// A server authenticating with [`checker`], routing `/home/echo` and
/// counting the calls that reach the router.
async fn auth_server() -> (Peer, String, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let (checks, routed) = (Arc::default(), Arc::new(AtomicUsize::new(0)));
    let counted = Arc::clone(&routed);
    let echo_counted = move |ctx: CallCtx, arg: Raw| {
        counted.fetch_add(1, Ordering::SeqCst);
        async move { echo(ctx, arg).await }
    };
    let whoami = |ctx: CallCtx, _: ()| async move {
        let core = ctx.session().inner().ok_or(Status::new(1, "gone"))?;
        core.attribute::<String>()
            .ok_or(Status::new(2, "no identity"))
    };
    let server = Peer::builder()
        .router(
            Router::new()
                .call("/home/echo", echo_counted)
                .call("/whoami", whoami),
        )
        .session_layer(checker(Arc::clone(&checks)))
        .build();
    let addr = server.listen("127.0.0.1:0").await.unwrap().local_addr();
    (server, addr.to_string(), checks, routed)
}

#[tokio::test]
async fn the_checker_answers_the_golden_auth_call_with_the_golden_auth_reply_then_lets_calls_through(
) {
    let (_server, addr, _, routed) = auth_server().await;
    let mut raw = TcpStream::connect(&addr).await.unwrap();
    raw.write_all(&hex(H_AUTH_CALL)).await.unwrap();
    assert_eq!(read_frame(&mut raw).await.unwrap(), hex(H2_AUTH_REPLY));

    raw.write_all(&hex(E2_CALL_PLAIN)).await.unwrap();
    let reply = decode(&read_frame(&mut raw).await.unwrap());
    assert_eq!((reply.mtype, reply.seq), (MessageType::Reply, 1));
    assert_eq!(&reply.body[..], b"hello");
    assert_eq!(routed.load(Ordering::SeqCst), 1);
}

/// A bearer peer dialing a raw socket: its dial in flight, and the socket
/// that already read its first frame, the golden `AUTH_CALL`.
async fn bearer_dialing_raw_server() -> (
    tokio::task::JoinHandle<Result<getty::rpc::Session, Status>>,
    TcpStream,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let client = Peer::builder()
        .session_layer(AuthBearer::new(GOLDEN_INFO))
        .build();
    let dial = tokio::spawn(async move { client.dial(addr).await });
    let (mut raw, _) = listener.accept().await.unwrap();
    assert_eq!(read_frame(&mut raw).await.unwrap(), hex(H_AUTH_CALL));
    (dial, raw)
}

#[tokio::test]
async fn the_bearers_first_frame_is_the_golden_auth_call_and_dial_waits_for_the_auth_reply() {
    let (dial, mut raw) = bearer_dialing_raw_server().await;

    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!dial.is_finished(), "dial returned before the AUTH_REPLY");
    raw.write_all(&hex(H2_AUTH_REPLY)).await.unwrap();
    let session = tokio::time::timeout(LONG, dial)
        .await
        .unwrap()
        .unwrap()
        .unwrap();

    // Normal traffic follows; the AUTH_CALL took seq 1.
    session.push("/note", "after auth").await.unwrap();
    let push = decode(&read_frame(&mut raw).await.unwrap());
    assert_eq!((push.mtype, push.seq), (MessageType::Push, 2));
}

#[tokio::test]
async fn a_refused_dial_returns_the_checkers_401() {
    let (server, addr, checks, _) = auth_server().await;
    let client = Peer::builder()
        .session_layer(AuthBearer::new("intruder"))
        .build();
    let err = client.dial(addr).await.unwrap_err();
    assert_eq!(err.code(), Status::CODE_UNAUTHORIZED, "{err}");
    assert_eq!(err.cause(), Some("unknown client"));
    assert_eq!(checks.load(Ordering::SeqCst), 1);
    eventually("the refused session is gone from both peers", || {
        server.session_count() == 0 && client.session_count() == 0
    })
    .await;
}

#[tokio::test]
async fn the_server_answers_a_refused_auth_call_401_then_closes_the_connection() {
    let (_server, addr, _, _) = auth_server().await;
    let mut raw = TcpStream::connect(&addr).await.unwrap();
    let call = Message::new(MessageType::AuthCall, 1, "").with_body(CodecId::JSON, "\"intruder\"");
    raw.write_all(&encode(call)).await.unwrap();
    let reply = decode(&read_frame(&mut raw).await.unwrap());
    assert_eq!((reply.mtype, reply.seq), (MessageType::AuthReply, 1));
    assert_eq!(reply.status.code(), Status::CODE_UNAUTHORIZED);
    assert_eq!(read_frame(&mut raw).await, None, "the session stayed open");
}

#[tokio::test]
async fn a_first_message_other_than_auth_call_gets_401_and_never_reaches_the_router() {
    let (_server, addr, checks, routed) = auth_server().await;
    let mut raw = TcpStream::connect(&addr).await.unwrap();
    raw.write_all(&hex(E2_CALL_PLAIN)).await.unwrap();
    let reply = decode(&read_frame(&mut raw).await.unwrap());
    assert_eq!((reply.mtype, reply.seq), (MessageType::AuthReply, 1));
    assert_eq!(reply.status.code(), Status::CODE_UNAUTHORIZED);
    assert_eq!(
        reply.status.cause(),
        Some("auth message(1st) expect: AUTH_CALL, but received: CALL")
    );
    assert_eq!(read_frame(&mut raw).await, None, "the session stayed open");
    assert_eq!(routed.load(Ordering::SeqCst), 0);
    assert_eq!(checks.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_auth_call_after_the_handshake_closes_the_session() {
    let (_server, addr, _, _) = auth_server().await;
    let mut raw = TcpStream::connect(&addr).await.unwrap();
    raw.write_all(&hex(H_AUTH_CALL)).await.unwrap();
    assert_eq!(read_frame(&mut raw).await.unwrap(), hex(H2_AUTH_REPLY));
    raw.write_all(&hex(H_AUTH_CALL)).await.unwrap();
    assert_eq!(read_frame(&mut raw).await, None, "the session stayed open");
}

#[tokio::test]
async fn a_first_answer_other_than_auth_reply_fails_the_dial_with_401() {
    let (dial, mut raw) = bearer_dialing_raw_server().await;
    raw.write_all(&hex(D2_PUSH_PLAIN)).await.unwrap();
    let err = tokio::time::timeout(LONG, dial)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(err.code(), Status::CODE_UNAUTHORIZED);
    assert_eq!(
        err.cause(),
        Some("auth message(1st) expect: AUTH_REPLY, but received: PUSH")
    );
}

#[tokio::test]
async fn a_redialed_connection_authenticates_again_before_its_calls() {
    let (server, addr, checks, _) = auth_server().await;
    let client = Peer::builder()
        .session_layer(AuthBearer::new(GOLDEN_INFO))
        .redial_interval(Duration::from_millis(50))
        .build();
    let session = client.dial(addr).await.unwrap();
    let me: String = session.call("/whoami", ()).await.unwrap();
    assert_eq!(me, GOLDEN_INFO, "the checker's attribute");

    for s in server.sessions() {
        s.close();
    }
    eventually("the client redialed and authenticated again", || {
        checks.load(Ordering::SeqCst) == 2 && session.is_healthy()
    })
    .await;
    let me: String = session.call("/whoami", ()).await.unwrap();
    assert_eq!(me, GOLDEN_INFO);
}

#[tokio::test]
async fn the_ping_push_for_a_3s_rate_is_the_golden_heartbeat_push() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let client = Peer::builder()
        .session_layer(HeartbeatPing::new(Duration::from_secs(3), false))
        .build();
    let _session = client.dial(addr).await.unwrap();
    let (mut raw, _) = listener.accept().await.unwrap();
    assert_eq!(read_frame(&mut raw).await.unwrap(), hex(I_HEARTBEAT_PUSH));
}

/// A server answering heartbeats, counting what its routes handle.
async fn pong_server(stats: &RpcStats) -> (Peer, String) {
    let server = Peer::builder()
        .router(heartbeat::pong(Router::new().call("/home/echo", echo)))
        .route_layer(stats.clone())
        .session_layer(HeartbeatPong::new())
        .build();
    let addr = server.listen("127.0.0.1:0").await.unwrap().local_addr();
    (server, addr.to_string())
}

fn heartbeats(stats: &RpcStats) -> (u64, u64) {
    stats
        .snapshot()
        .route("/heartbeat")
        .map_or((0, 0), |r| (r.calls, r.pushes))
}

#[tokio::test]
async fn heartbeat_calls_are_answered_ok_and_keep_an_idle_session_open() {
    let stats = RpcStats::new();
    let (server, addr) = pong_server(&stats).await;
    let client = Peer::builder()
        .session_layer(HeartbeatPing::with_any_rate(
            Duration::from_millis(200),
            true,
        ))
        .build();
    let session = client.dial(addr).await.unwrap();
    // hb_=1: the pong closes after 2 s of silence; well past that by now.
    eventually("a dozen heartbeats", || heartbeats(&stats).0 >= 12).await;
    let answered = stats
        .snapshot()
        .route("/heartbeat")
        .unwrap()
        .statuses
        .clone();
    assert_eq!(answered.keys().collect::<Vec<_>>(), [&0], "all answered OK");
    assert!(session.is_healthy());
    assert_eq!(server.session_count(), 1);
}

#[tokio::test]
async fn a_session_with_traffic_is_not_pinged() {
    let stats = RpcStats::new();
    let (_server, addr) = pong_server(&stats).await;
    let client = Peer::builder()
        .session_layer(HeartbeatPing::with_any_rate(Duration::from_secs(1), false))
        .build();
    let session = client.dial(addr).await.unwrap();
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(2500) {
        let _: Raw = session.call("/home/echo", 1).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(heartbeats(&stats), (0, 0));
    // And once quiet, it is.
    eventually("a heartbeat push", || heartbeats(&stats).1 >= 1).await;
}

#[tokio::test]
async fn pong_closes_a_session_silent_for_twice_its_rate() {
    let (_server, addr) = pong_server(&RpcStats::new()).await;
    let mut raw = TcpStream::connect(&addr).await.unwrap();
    let mut push = hex(I_HEARTBEAT_PUSH);
    let rate = push.len() - 2;
    push[rate] = b'1'; // hb_=1
    raw.write_all(&push).await.unwrap();
    let sent = Instant::now();
    assert_eq!(read_frame(&mut raw).await, None);
    assert!(
        sent.elapsed() >= Duration::from_secs(2),
        "{:?}",
        sent.elapsed()
    );
}

#[tokio::test]
async fn pong_answers_an_invalid_first_rate_400_and_a_valid_one_null() {
    let (_server, addr) = pong_server(&RpcStats::new()).await;
    let session = Peer::builder().build().dial(addr).await.unwrap();
    let err = session
        .call::<_, serde_json::Value>("/heartbeat", ())
        .meta("hb_", "abc")
        .await
        .unwrap_err();
    assert_eq!((err.code(), err.msg()), (400, "Invalid Heartbeat Rate"));
    let ok: serde_json::Value = session
        .call("/heartbeat", ())
        .meta("hb_", "5")
        .await
        .unwrap();
    assert_eq!(ok, serde_json::Value::Null);
}

#[tokio::test]
async fn a_failing_heartbeat_call_closes_the_session() {
    let server = Peer::builder().router(Router::new()).build();
    let addr = server.listen("127.0.0.1:0").await.unwrap().local_addr();
    let client = Peer::builder()
        .session_layer(HeartbeatPing::with_any_rate(
            Duration::from_millis(100),
            true,
        ))
        .redial_times(Some(0))
        .build();
    let session = client.dial(addr.to_string()).await.unwrap();
    // No pong: the heartbeat call is answered 404.
    eventually("the session closed", || !session.is_healthy()).await;
}

/// Log lines written while the guard lives, on this thread (the tests'
/// runtime runs every session task here).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    fn lines(&self, containing: &str) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .filter(|l| l.contains(containing))
            .map(str::to_owned)
            .collect()
    }
}

async fn sleep_ms(_: CallCtx, ms: u64) -> Result<u64, Status> {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Ok(ms)
}

async fn note(_: PushCtx, _: Raw) -> Result<(), Status> {
    Ok(())
}

fn home() -> Router {
    Router::new()
        .call("/home/echo", echo)
        .call("/home/sleep", sleep_ms)
        .call("/home/fail", |_: CallCtx, _: ()| async {
            Err::<(), _>(Status::new(1234, "home fail"))
        })
        .push("/home/note", note)
}

#[tokio::test]
async fn slow_call_warns_for_a_call_over_the_threshold_and_not_for_a_fast_one() {
    let (logs, _guard) = Logs::capture();
    let server = Peer::builder()
        .router(home())
        .route_layer(SlowCall::new(Duration::from_millis(300)))
        .build();
    let addr = server.listen("127.0.0.1:0").await.unwrap().local_addr();
    let session = Peer::builder()
        .build()
        .dial(addr.to_string())
        .await
        .unwrap();
    let _: Raw = session.call("/home/echo", "quick").await.unwrap();
    let _: u64 = session.call("/home/sleep", 400u64).await.unwrap();

    let slow = logs.lines("slow CALL");
    assert_eq!(slow.len(), 1, "{slow:?}");
    let line = &slow[0];
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("service_method=/home/sleep"), "{line}");
    assert!(
        line.contains(&format!("peer={}", session.local_addr())),
        "{line}"
    );
    assert!(line.contains("seq=2 "), "{line}");
    assert!(line.contains("elapsed="), "{line}");
}

#[tokio::test]
async fn detail_log_writes_a_line_per_call_and_push_with_sizes_and_bodies_only_when_asked() {
    let (logs, _guard) = Logs::capture();
    let mut sessions = Vec::new();
    for bodies in [false, true] {
        let server = Peer::builder()
            .router(home())
            .route_layer(DetailLog::new().with_bodies(bodies))
            .build();
        let addr = server.listen("127.0.0.1:0").await.unwrap().local_addr();
        let session = Peer::builder()
            .build()
            .dial(addr.to_string())
            .await
            .unwrap();
        let _: Raw = session.call("/home/echo", "hello").await.unwrap();
        session.push("/home/note", "x".repeat(300)).await.unwrap();
        let prefix = format!("PUSH<- {} ", session.local_addr());
        eventually("the push was logged", || logs.lines(&prefix).len() == 1).await;
        sessions.push((server, session));
    }
    let calls = logs.lines("CALL<- ");
    assert_eq!(calls.len(), 2, "{calls:?}");
    let pushes = logs.lines("PUSH<- ");
    for (i, (_, session)) in sessions.iter().enumerate() {
        let call = &calls[i];
        assert!(
            call.contains(&format!("CALL<- {} ", session.local_addr())),
            "{call}"
        );
        assert!(
            call.contains(r#""/home/echo" RECV(seq=1 meta=0B body=7B"#),
            "{call}"
        );
        assert!(call.contains("SEND(status=0 meta=0B body=7B"), "{call}");
        assert!(pushes[i].contains(r#""/home/note" RECV(seq=2 meta=0B body=302B"#));
    }
    assert!(!calls[0].contains("hello") && !pushes[0].contains("xxx"));
    assert!(calls[1].contains(r#"body=7B "\"hello\"""#), "{}", calls[1]);
    assert!(pushes[1].contains("…(+46B)"), "{}", pushes[1]);
}

#[tokio::test]
async fn rpc_stats_counts_calls_by_route_and_status_pushes_and_latency_exactly() {
    let stats = RpcStats::new();
    let server = Peer::builder()
        .router(home())
        .route_layer(stats.clone())
        .build();
    let addr = server.listen("127.0.0.1:0").await.unwrap().local_addr();
    let session = Peer::builder()
        .build()
        .dial(addr.to_string())
        .await
        .unwrap();
    for _ in 0..3 {
        let _: Raw = session.call("/home/echo", 1).await.unwrap();
    }
    for _ in 0..2 {
        session.call::<_, ()>("/home/fail", ()).await.unwrap_err();
    }
    let _: u64 = session.call("/home/sleep", 20u64).await.unwrap();
    let _ = session.call::<_, ()>("/home/nope", ()).await.unwrap_err();
    session.push("/home/note", 1).await.unwrap();
    eventually("the push was counted", || {
        stats.snapshot().route("/home/note").is_some()
    })
    .await;

    let snap = stats.snapshot();
    let routes: Vec<_> = snap.routes.keys().map(String::as_str).collect();
    assert_eq!(
        routes,
        ["/home/echo", "/home/fail", "/home/note", "/home/sleep"]
    );
    let echo = snap.route("/home/echo").unwrap();
    assert_eq!((echo.calls, echo.pushes), (3, 0));
    assert_eq!(echo.statuses, [(0, 3)].into());
    assert_eq!(echo.latency.count, 3);
    assert_eq!(echo.latency.buckets.iter().sum::<u64>(), 3);
    let fail = snap.route("/home/fail").unwrap();
    assert_eq!((fail.calls, fail.statuses.clone()), (2, [(1234, 2)].into()));
    let note = snap.route("/home/note").unwrap();
    assert_eq!((note.calls, note.pushes, note.statuses.len()), (0, 1, 0));
    assert_eq!(note.latency.count, 1);
    let sleep = &snap.route("/home/sleep").unwrap().latency;
    assert_eq!(sleep.count, 1);
    assert!(sleep.max >= Duration::from_millis(20) && sleep.sum == sleep.max);
    assert_eq!(sleep.buckets[..2], [0, 0], "over {:?}", LATENCY_BOUNDS[1]);
}
