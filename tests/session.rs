//! The `Session` handle over real sockets: identity, addresses, attributes,
//! activity, stats, closing, close callbacks and per-session settings.
mod common;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use common::*;
use getty::{
    codec::LengthCodec, new_session_fn, Addr, BoxError, Client, EndpointKind, EventListener,
    ListenerService, Registry, Server, ServerHandle, Session, SessionConfig, SessionStats,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const LIMIT: Duration = Duration::from_secs(5);

/// Waits until `registry` holds exactly one session and returns it.
async fn only_session<W>(registry: &Registry<W>) -> Session<W> {
    eventually(LIMIT, "exactly one session registered", || {
        registry.len() == 1
    })
    .await;
    registry.sessions().pop().expect("one session")
}

/// Reads until the peer closes; fails if data arrives instead.
async fn expect_eof(s: &mut TcpStream) {
    let mut buf = [0u8; 64];
    let n = within(LIMIT, s.read(&mut buf))
        .await
        .expect("read after close");
    assert_eq!(n, 0, "expected EOF, got {:?}", &buf[..n]);
}

/// Shared ordered record of what happened, across listener and callbacks.
#[derive(Clone, Default)]
struct Order(Arc<Mutex<Vec<String>>>);

impl Order {
    fn push(&self, s: &str) {
        self.0.lock().unwrap().push(s.to_owned());
    }
    fn get(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// Echoes, counts messages in a typed attribute, and records `on_close`.
struct Counting {
    order: Order,
}

#[derive(Clone, Debug, PartialEq)]
struct MsgCount(u32);

impl EventListener<Bytes> for Counting {
    fn on_message(&mut self, session: &Session, pkg: Bytes) -> Option<Bytes> {
        // The attribute map is locked inside `with_attribute`: insert outside.
        let counted = session.with_attribute(|c: Option<&mut MsgCount>| c.map(|c| c.0 += 1));
        if counted.is_none() {
            session.set_attribute(MsgCount(1));
        }
        Some(pkg)
    }
    fn on_close(&mut self, _: &Session) {
        self.order.push("on_close");
    }
}

/// A server whose listener is [`Counting`]; `Order` records `on_close`.
async fn counting_server() -> (ServerHandle, Order) {
    let order = Order::default();
    let o = order.clone();
    let server = Server::builder().bind("127.0.0.1:0").await.expect("bind");
    let handle = server.serve(
        LengthCodec::new(),
        new_session_fn(move |_: &Session| {
            Ok::<_, BoxError>(ListenerService::new(Counting { order: o.clone() }))
        }),
    );
    (handle, order)
}

/// A client-side listener that answers nothing.
struct Quiet;

impl EventListener<Bytes> for Quiet {
    fn on_message(&mut self, _: &Session, _: Bytes) -> Option<Bytes> {
        None
    }
}

/// bytes in, bytes out, packets in, packets out.
fn counts(s: &SessionStats) -> [u64; 4] {
    [s.bytes_in, s.bytes_out, s.packets_in, s.packets_out]
}

fn assert_clone_send_sync<T: Clone + Send + Sync + 'static>() {}

#[test]
fn session_handle_is_clone_send_sync() {
    assert_clone_send_sync::<Session>();
    assert_clone_send_sync::<Session<String>>();

    // And a clone really is the same session on another thread.
    let s: Session = Session::new(
        EndpointKind::Detached,
        Addr::Unknown,
        Addr::Unknown,
        SessionConfig::default(),
    );
    let c = s.clone();
    std::thread::spawn(move || c.set_name("from-thread"))
        .join()
        .unwrap();
    assert_eq!(s.name(), "from-thread");
}

#[tokio::test]
async fn sessions_have_unique_ids_default_kind_names_and_settable_names() {
    let (server, _log) = recording_server(SessionConfig::default()).await;
    let _a = TcpStream::connect(server.local_addr()).await.unwrap();
    let _b = TcpStream::connect(server.local_addr()).await.unwrap();
    eventually(LIMIT, "two sessions", || server.session_count() == 2).await;
    let sessions = server.sessions().sessions();
    let (s1, s2) = (&sessions[0], &sessions[1]);
    assert_ne!(s1.id(), s2.id());
    assert_eq!(s1.name(), "tcp-server");
    assert_eq!(s2.name(), "tcp-server");

    s1.set_name("alpha");
    assert_eq!(s1.name(), "alpha");
    assert_eq!(s2.name(), "tcp-server", "names are per session");
    // Every handle of a session sees the new name.
    let again = server.sessions().get(s1.id()).expect("lookup by id");
    assert_eq!(again.name(), "alpha");
    assert!(
        again
            .to_string()
            .starts_with(&format!("alpha-{} ", s1.id())),
        "display token: {again}"
    );
    server.shutdown(LIMIT).await;
}

#[tokio::test]
async fn local_and_peer_addresses_match_the_sockets() {
    let (server, _log) = recording_server(SessionConfig::default()).await;
    let raw = TcpStream::connect(server.local_addr()).await.unwrap();
    let s = only_session(server.sessions()).await;
    assert_eq!(s.local_addr().as_socket_addr(), Some(server.local_addr()));
    assert_eq!(s.local_addr(), &Addr::from(raw.peer_addr().unwrap()));
    assert_eq!(s.peer_addr(), &Addr::from(raw.local_addr().unwrap()));
    server.shutdown(LIMIT).await;
}

#[tokio::test]
async fn kind_is_tcp_server_when_accepted_and_tcp_client_when_connected() {
    let (server, _log) = recording_server(SessionConfig::default()).await;
    let client = Client::builder()
        .connect(
            server.local_addr().to_string(),
            LengthCodec::new(),
            new_session_fn(|_: &Session| Ok::<_, BoxError>(ListenerService::new(Quiet))),
        )
        .await
        .expect("connect");
    let on_client = only_session(client.sessions()).await;
    let on_server = only_session(server.sessions()).await;

    assert_eq!(on_client.kind(), EndpointKind::TcpClient);
    assert_eq!(on_client.name(), "tcp-client");
    assert_eq!(on_server.kind(), EndpointKind::TcpServer);
    assert_eq!(on_server.name(), "tcp-server");
    // The two ends of the same connection.
    assert_eq!(on_client.local_addr(), on_server.peer_addr());
    assert_eq!(on_client.peer_addr(), on_server.local_addr());

    client.close();
    within(LIMIT, client.closed()).await;
    server.shutdown(LIMIT).await;
}

#[tokio::test]
async fn typed_attributes_get_set_remove_and_with_attribute() {
    let (server, _order) = counting_server().await;
    let mut raw = TcpStream::connect(server.local_addr()).await.unwrap();
    let s = only_session(server.sessions()).await;

    assert_eq!(s.attribute::<u32>(), None);
    assert_eq!(s.set_attribute(7u32), None);
    assert_eq!(
        s.set_attribute(8u32),
        Some(7),
        "set returns the previous value"
    );
    assert_eq!(s.set_attribute(String::from("user-1")), None);
    assert_eq!(s.attribute::<u32>(), Some(8));
    assert_eq!(s.attribute::<String>().as_deref(), Some("user-1"));
    assert_eq!(s.attribute::<u64>(), None, "keyed by type");

    let doubled = s.with_attribute(|v: Option<&mut u32>| {
        let v = v.expect("present");
        *v *= 2;
        *v
    });
    assert_eq!(doubled, 16);
    assert_eq!(s.attribute::<u32>(), Some(16), "changed in place");
    assert!(s.with_attribute(|v: Option<&mut u64>| v.is_none()));

    assert_eq!(s.remove_attribute::<u32>(), Some(16));
    assert_eq!(s.remove_attribute::<u32>(), None);
    assert_eq!(s.attribute::<u32>(), None);
    assert_eq!(s.attribute::<String>().as_deref(), Some("user-1"));

    // The listener updates an attribute on its task; the test sees it here.
    for p in ["a", "b", "c"] {
        write_frame(&mut raw, p.as_bytes()).await;
        assert_eq!(read_frame(&mut raw).await, p.as_bytes());
    }
    assert_eq!(s.attribute::<MsgCount>(), Some(MsgCount(3)));
    server.shutdown(LIMIT).await;
}

#[tokio::test]
async fn active_moves_on_each_decoded_packet_and_not_on_send() {
    let (server, _log) = recording_server(SessionConfig::default()).await;
    let mut raw = TcpStream::connect(server.local_addr()).await.unwrap();
    let s = only_session(server.sessions()).await;
    let created = s.active();

    // Sending from the server side does not count as activity.
    s.send(Bytes::from_static(b"push")).await.unwrap();
    within(LIMIT, s.flush()).await.unwrap();
    assert_eq!(read_frame(&mut raw).await, b"push");
    assert_eq!(s.stats().packets_out, 1);
    assert_eq!(s.active(), created, "a send must not touch active()");

    // Receiving a packet does.
    write_frame(&mut raw, b"ping").await;
    assert_eq!(read_frame(&mut raw).await, b"ping");
    let first = s.active();
    assert!(first > created, "active() must move on a decoded packet");

    // And again on the next one.
    write_frame(&mut raw, b"ping2").await;
    assert_eq!(read_frame(&mut raw).await, b"ping2");
    assert!(s.active() > first, "active() must move on every packet");
    server.shutdown(LIMIT).await;
}

#[tokio::test]
async fn stats_count_bytes_and_packets_in_and_out() {
    let (server, _log) = recording_server(SessionConfig::default()).await;
    let mut raw = TcpStream::connect(server.local_addr()).await.unwrap();
    let s = only_session(server.sessions()).await;
    assert_eq!(counts(&s.stats()), [0, 0, 0, 0]);

    // Two frames: 4 + 3 and 4 + 5 bytes, echoed back.
    write_frame(&mut raw, b"abc").await;
    write_frame(&mut raw, b"defgh").await;
    assert_eq!(read_frame(&mut raw).await, b"abc");
    assert_eq!(read_frame(&mut raw).await, b"defgh");
    eventually(LIMIT, "stats after echo", || {
        counts(&s.stats()) == [16, 16, 2, 2]
    })
    .await;
    let stats = s.stats();
    assert_eq!(
        stats.to_string(),
        "read bytes: 16, write bytes: 16, read pkgs: 2, write pkgs: 2"
    );

    // Raw bytes count as bytes, not packets.
    s.send_bytes(Bytes::from_static(b"xyz")).await.unwrap();
    within(LIMIT, s.flush()).await.unwrap();
    let mut buf = [0u8; 3];
    within(LIMIT, raw.read_exact(&mut buf)).await.unwrap();
    assert_eq!(counts(&s.stats()), [16, 19, 2, 2]);
    server.shutdown(LIMIT).await;
}

#[tokio::test]
async fn close_is_idempotent_and_close_passes_the_stack_once() {
    let (server, log) = recording_server(SessionConfig::default()).await;
    let mut raw = TcpStream::connect(server.local_addr()).await.unwrap();
    let s = only_session(server.sessions()).await;
    assert!(!s.is_closed());

    s.close();
    assert!(s.is_closed());
    s.close();
    s.clone().close();
    assert!(s.is_closed());

    expect_eof(&mut raw).await;
    within(LIMIT, s.finished()).await;
    assert_eq!(log.events(), ["open", "close"]);
    eventually(LIMIT, "session unregistered", || {
        server.session_count() == 0
    })
    .await;
    server.shutdown(LIMIT).await;
}

#[tokio::test]
async fn close_callback_with_the_same_handler_and_key_is_replaced_in_place() {
    let (server, _order) = counting_server().await;
    let _raw = TcpStream::connect(server.local_addr()).await.unwrap();
    let s = only_session(server.sessions()).await;
    let ran = Order::default();

    let r = ran.clone();
    s.add_close_callback("h", "a", move || r.push("a-first"));
    let r = ran.clone();
    s.add_close_callback("h", "b", move || r.push("b"));
    let r = ran.clone();
    s.add_close_callback("other", "a", move || r.push("other-a"));
    let r = ran.clone();
    s.add_close_callback("h", "a", move || r.push("a-second"));
    assert_eq!(
        s.close_callback_count(),
        3,
        "(h, a) was replaced, not added"
    );

    s.close();
    within(LIMIT, s.finished()).await;
    assert_eq!(ran.get(), ["a-second", "b", "other-a"]);
    server.shutdown(LIMIT).await;
}

#[tokio::test]
async fn removing_an_unknown_close_callback_is_a_no_op() {
    let (server, _order) = counting_server().await;
    let _raw = TcpStream::connect(server.local_addr()).await.unwrap();
    let s = only_session(server.sessions()).await;
    let ran = Order::default();

    let r = ran.clone();
    s.add_close_callback("h", "keep", move || r.push("keep"));
    let r = ran.clone();
    s.add_close_callback("h", "drop", move || r.push("drop"));

    s.remove_close_callback(&"h", &"never-added");
    s.remove_close_callback(&"nobody", &"keep");
    s.remove_close_callback(&"h", &7u32); // same handler, a key of another type
    assert_eq!(s.close_callback_count(), 2);

    s.remove_close_callback(&"h", &"drop");
    assert_eq!(s.close_callback_count(), 1);

    s.close();
    within(LIMIT, s.finished()).await;
    assert_eq!(ran.get(), ["keep"]);
    server.shutdown(LIMIT).await;
}

#[tokio::test]
async fn close_callbacks_run_once_in_order_after_close_passed_the_stack() {
    let (server, order) = counting_server().await;
    let mut raw = TcpStream::connect(server.local_addr()).await.unwrap();
    let s = only_session(server.sessions()).await;

    for name in ["cb1", "cb2", "cb3"] {
        let o = order.clone();
        s.add_close_callback("test", name, move || o.push(name));
    }
    assert_eq!(s.close_callback_count(), 3);
    assert!(order.get().is_empty(), "nothing runs before the close");

    // The peer going away closes the session.
    write_frame(&mut raw, b"x").await;
    assert_eq!(read_frame(&mut raw).await, b"x");
    drop(raw);
    within(LIMIT, s.finished()).await;
    assert_eq!(order.get(), ["on_close", "cb1", "cb2", "cb3"]);
    assert_eq!(s.close_callback_count(), 0);

    // Closing again runs nothing again; a callback added now runs at once.
    s.close();
    let o = order.clone();
    s.add_close_callback("test", "late", move || o.push("late"));
    assert_eq!(order.get(), ["on_close", "cb1", "cb2", "cb3", "late"]);
    server.shutdown(LIMIT).await;
}

#[tokio::test]
async fn a_panicking_close_callback_is_contained_and_later_ones_still_run() {
    let (server, order) = counting_server().await;
    let raw = TcpStream::connect(server.local_addr()).await.unwrap();
    let s = only_session(server.sessions()).await;

    let o = order.clone();
    s.add_close_callback("test", 1u8, move || o.push("cb1"));
    s.add_close_callback("test", 2u8, || panic!("close callback blew up"));
    let o = order.clone();
    s.add_close_callback("test", 3u8, move || o.push("cb3"));

    drop(raw);
    within(LIMIT, s.finished()).await;
    assert_eq!(order.get(), ["on_close", "cb1", "cb3"]);
    eventually(LIMIT, "session unregistered", || {
        server.session_count() == 0
    })
    .await;

    // The server is unharmed.
    let mut again = TcpStream::connect(server.local_addr()).await.unwrap();
    write_frame(&mut again, b"still here").await;
    assert_eq!(read_frame(&mut again).await, b"still here");
    server.shutdown(LIMIT).await;
}

#[test]
fn session_config_defaults_reach_a_new_session() {
    let s: Session = Session::new(
        EndpointKind::Detached,
        Addr::Unknown,
        Addr::Unknown,
        SessionConfig::default(),
    );
    assert_eq!(s.kind(), EndpointKind::Detached);
    assert_eq!(s.max_packet_len(), 1024 * 1024);
    assert_eq!(s.read_timeout(), None);
    assert_eq!(s.write_timeout(), Some(Duration::from_secs(30)));
    assert_eq!(s.cron_period(), None);
    assert_eq!(s.wait_time(), Duration::from_secs(3));
    assert_eq!(s.max_in_flight(), 1);
}

/// `queue_capacity(usize::MAX)` ("unbounded") used to panic inside every
/// connection task (tokio's semaphore holds at most `usize::MAX >> 3`
/// permits): the setter clamps it, and so does a session made from a config
/// whose field was set directly.
#[tokio::test]
async fn a_server_with_queue_capacity_usize_max_serves_an_echo() {
    let config = SessionConfig::default().queue_capacity(usize::MAX);
    assert_eq!(config.queue_capacity, SessionConfig::MAX_QUEUE_CAPACITY);
    let mut direct = SessionConfig::default();
    direct.queue_capacity = usize::MAX;
    for config in [config, direct] {
        let (server, log) = recording_server(config).await;
        let mut c = TcpStream::connect(server.local_addr()).await.unwrap();
        write_frame(&mut c, b"still here").await;
        assert_eq!(read_frame(&mut c).await, b"still here");
        let s = only_session(server.sessions()).await;
        for i in 0..100u32 {
            s.try_send(Bytes::from(i.to_string())).unwrap();
        }
        for i in 0..100u32 {
            assert_eq!(read_frame(&mut c).await, i.to_string().as_bytes());
        }
        assert_eq!(log.count("error"), 0, "{:?}", log.events());
        server.shutdown(LIMIT).await;
    }
}

#[tokio::test]
async fn per_session_settings_getters_and_setters() {
    let config = SessionConfig::default()
        .max_packet_len(4096)
        .read_timeout(Some(Duration::from_secs(60)))
        .write_timeout(Some(Duration::from_secs(7)))
        .cron_period(Some(Duration::from_secs(3600)))
        .wait_time(Duration::from_millis(1500))
        .max_in_flight(3);
    let (server, _log) = recording_server(config).await;
    let _raw = TcpStream::connect(server.local_addr()).await.unwrap();
    let s = only_session(server.sessions()).await;

    // The server's config reaches the session.
    assert_eq!(s.max_packet_len(), 4096);
    assert_eq!(s.read_timeout(), Some(Duration::from_secs(60)));
    assert_eq!(s.write_timeout(), Some(Duration::from_secs(7)));
    assert_eq!(s.cron_period(), Some(Duration::from_secs(3600)));
    assert_eq!(s.wait_time(), Duration::from_millis(1500));
    assert_eq!(s.max_in_flight(), 3);

    // Setters change them.
    s.set_max_packet_len(100);
    s.set_read_timeout(Some(Duration::from_secs(61)));
    s.set_write_timeout(None);
    s.set_cron_period(Some(Duration::from_secs(3601)));
    s.set_wait_time(Duration::from_millis(250));
    s.set_max_in_flight(8);
    assert_eq!(s.max_packet_len(), 100);
    assert_eq!(s.read_timeout(), Some(Duration::from_secs(61)));
    assert_eq!(s.write_timeout(), None);
    assert_eq!(s.cron_period(), Some(Duration::from_secs(3601)));
    assert_eq!(s.wait_time(), Duration::from_millis(250));
    assert_eq!(s.max_in_flight(), 8);

    s.set_read_timeout(None);
    s.set_cron_period(None);
    s.set_max_in_flight(0);
    assert_eq!(s.read_timeout(), None);
    assert_eq!(s.cron_period(), None);
    assert_eq!(s.max_in_flight(), 1, "at least one in flight");
    server.shutdown(LIMIT).await;
}

#[tokio::test]
async fn set_cron_period_on_a_live_session_starts_ticks() {
    let (server, log) = recording_server(SessionConfig::default()).await;
    let _raw = TcpStream::connect(server.local_addr()).await.unwrap();
    let s = only_session(server.sessions()).await;
    eventually(LIMIT, "open", || log.count("open") == 1).await;
    assert_eq!(log.count("tick"), 0);

    s.set_cron_period(Some(Duration::from_millis(20)));
    eventually(LIMIT, "ticks after set_cron_period", || {
        log.count("tick") >= 3
    })
    .await;
    server.shutdown(LIMIT).await;
}

#[tokio::test]
async fn set_read_timeout_on_a_live_session_closes_it_when_idle() {
    let (server, log) = recording_server(SessionConfig::default()).await;
    let mut raw = TcpStream::connect(server.local_addr()).await.unwrap();
    let s = only_session(server.sessions()).await;

    s.set_read_timeout(Some(Duration::from_millis(100)));
    expect_eof(&mut raw).await;
    within(LIMIT, s.finished()).await;
    let events = log.events();
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(events[0], "open");
    assert!(
        events[1].starts_with("error:nothing received"),
        "{events:?}"
    );
    assert_eq!(events[2], "close");
    server.shutdown(LIMIT).await;
}

mod raised {
    use super::*;
    use getty::{EventListener, ListenerService, Server};

    /// Records `error:<kind>:<display>:<closed?>` so a test sees whether the
    /// session was closing when the error passed.
    struct Watch {
        log: Log,
    }

    impl EventListener<Bytes> for Watch {
        fn on_message(&mut self, s: &Session, pkg: Bytes) -> Option<Bytes> {
            match &pkg[..] {
                b"report" => s.report_error("a reported problem"),
                b"fatal" => s.close_with_error("a fatal problem"),
                _ => {}
            }
            Some(pkg)
        }
        fn on_error(&mut self, s: &Session, e: &getty::Error) {
            self.log
                .push(format!("error:{}:{e}:{}", e.kind(), s.is_closed()));
        }
        fn on_close(&mut self, _: &Session) {
            self.log.push("close");
        }
    }

    async fn watch_server() -> (getty::ServerHandle, Log) {
        let log = Log::default();
        let l = log.clone();
        let server = Server::builder().bind("127.0.0.1:0").await.unwrap().serve(
            LengthCodec::new(),
            new_session_fn(move |_: &Session| {
                Ok::<_, BoxError>(ListenerService::new(Watch { log: l.clone() }))
            }),
        );
        (server, log)
    }

    #[tokio::test]
    async fn a_reported_error_passes_the_stack_and_the_session_carries_on() {
        let (server, log) = watch_server().await;
        let mut c = TcpStream::connect(server.local_addr()).await.unwrap();
        write_frame(&mut c, b"report").await;
        assert_eq!(read_frame(&mut c).await, b"report");
        eventually(LIMIT, "the reported error", || log.count("error") == 1).await;
        write_frame(&mut c, b"still here").await;
        assert_eq!(read_frame(&mut c).await, b"still here");
        assert_eq!(log.events(), ["error:raised:a reported problem:false"]);
        server.shutdown(LIMIT).await;
        assert_eq!(log.events().last().map(String::as_str), Some("close"));
    }

    #[tokio::test]
    async fn close_with_error_passes_the_reason_then_closes() {
        let (server, log) = watch_server().await;
        let mut c = TcpStream::connect(server.local_addr()).await.unwrap();
        write_frame(&mut c, b"fatal").await;
        // The reply to the packet that closed the session is still written.
        assert_eq!(read_frame(&mut c).await, b"fatal");
        let mut rest = Vec::new();
        within(LIMIT, c.read_to_end(&mut rest)).await.unwrap();
        assert!(rest.is_empty());
        eventually(LIMIT, "close", || log.count("close") == 1).await;
        assert_eq!(log.events(), ["error:raised:a fatal problem:true", "close"]);
        server.shutdown(LIMIT).await;
    }

    #[tokio::test]
    async fn last_write_moves_on_send_and_not_on_receive() {
        let (server, log) = watch_server().await;
        let _ = log;
        let mut c = TcpStream::connect(server.local_addr()).await.unwrap();
        eventually(LIMIT, "session", || server.session_count() == 1).await;
        let s = server.sessions().sessions().pop().unwrap();
        let created = s.last_write();

        tokio::time::sleep(Duration::from_millis(20)).await;
        c.write_all(&frame(b"")[..3]).await.unwrap(); // half a header: read, nothing written
        eventually(LIMIT, "bytes read", || s.stats().bytes_in == 3).await;
        assert_eq!(s.last_write(), created);

        s.send(Bytes::from_static(b"hi")).await.unwrap();
        s.flush().await.unwrap();
        assert!(s.last_write() > created);
        server.shutdown(LIMIT).await;
    }
}
