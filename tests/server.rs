//! The TCP server: binding, the registry, the session cap and shutdown.
mod common;

use std::{
    collections::HashSet,
    convert::Infallible,
    io,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::Bytes;
use common::*;
use getty::{
    codec::{LengthCodec, LinesCodec},
    new_session_fn, Addr, BoxError, Event, EventListener, ListenerService, Registry, Request,
    Server, ServerHandle, Session, SessionConfig,
};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
    sync::Notify,
    time::Instant,
};
use tower::service_fn;

const LIMIT: Duration = Duration::from_secs(5);

/// Waits until the server closes the connection: EOF, or a reset.
async fn expect_closed(s: &mut TcpStream) {
    let mut buf = [0u8; 64];
    match within(LIMIT, s.read(&mut buf)).await {
        Ok(0) => {}
        Ok(n) => panic!("expected the connection closed, got {:?}", &buf[..n]),
        Err(e) => assert!(
            matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
            ),
            "unexpected error {e}"
        ),
    }
}

/// A raw client with a small receive buffer: when it does not read, the
/// server's writes stall quickly.
async fn small_window_client(addr: std::net::SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(addr).await.unwrap()
}

async fn connect_all(server: &ServerHandle, n: usize) -> Vec<TcpStream> {
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(TcpStream::connect(server.local_addr()).await.unwrap());
    }
    eventually(LIMIT, "all sessions registered", || {
        server.session_count() == n
    })
    .await;
    v
}

#[tokio::test]
async fn binding_port_zero_reports_the_real_local_address() {
    let server = Server::builder().bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr();
    assert_ne!(addr.port(), 0);
    assert_eq!(addr.ip().to_string(), "127.0.0.1");
    let handle = server.serve(
        LengthCodec::new(),
        new_session_fn(|_: &Session| {
            Ok::<_, Infallible>(service_fn(|req: Request<Bytes>| async move {
                Ok::<_, Infallible>(req.into_message())
            }))
        }),
    );
    assert_eq!(handle.local_addr(), addr);
    let mut raw = TcpStream::connect(addr).await.unwrap();
    write_frame(&mut raw, b"here").await;
    assert_eq!(read_frame(&mut raw).await, b"here");
    handle.shutdown(LIMIT).await;
}

/// Relays each line to every other session of its server's registry.
struct Chat {
    room: Registry<String>,
}

impl EventListener<String, String> for Chat {
    fn on_message(&mut self, me: &Session<String>, line: String) -> Option<String> {
        self.room.broadcast_except(me.id(), line);
        None
    }
}

/// The next line from a raw peer, without its newline (5 s limit).
async fn next_line(peer: &mut BufReader<TcpStream>) -> String {
    let mut line = String::new();
    let n = within(LIMIT, peer.read_line(&mut line))
        .await
        .expect("read a line");
    assert!(n > 0, "the server closed the connection");
    line.trim_end().to_owned()
}

#[tokio::test]
async fn a_chat_server_reaches_the_other_sessions_from_its_new_session_callback() {
    let server = Server::builder().bind("127.0.0.1:0").await.unwrap();
    // The registry exists before serving, so the callback can hold it.
    let room = server.registry();
    let handle = server.serve(
        LinesCodec::new(),
        new_session_fn(move |me: &Session<String>| {
            // Everybody already here hears of the newcomer; the newcomer
            // does not hear of itself.
            room.broadcast_except(me.id(), "joined".to_owned());
            Ok::<_, BoxError>(ListenerService::new(Chat { room: room.clone() }))
        }),
    );
    assert!(handle.sessions().is_empty());
    let mut peers = Vec::new();
    for n in 1..=3 {
        let peer = TcpStream::connect(handle.local_addr()).await.unwrap();
        peers.push(BufReader::new(peer));
        eventually(LIMIT, "the peer's session registered", || {
            handle.session_count() == n
        })
        .await;
    }
    let [a, b, c] = &mut peers[..] else {
        unreachable!("three peers")
    };
    // a heard b and c join; b heard c join; c heard nobody.
    assert_eq!(next_line(a).await, "joined");
    assert_eq!(next_line(a).await, "joined");
    assert_eq!(next_line(b).await, "joined");

    a.get_mut().write_all(b"hello from a\n").await.unwrap();
    assert_eq!(next_line(b).await, "hello from a");
    assert_eq!(next_line(c).await, "hello from a");
    c.get_mut().write_all(b"hello from c\n").await.unwrap();
    // a's next line is c's: its own line did not come back to it.
    assert_eq!(next_line(a).await, "hello from c");
    assert_eq!(next_line(b).await, "hello from c");
    // Nor did c's come back to c: its next line is b's.
    b.get_mut().write_all(b"hello from b\n").await.unwrap();
    assert_eq!(next_line(c).await, "hello from b");
    assert_eq!(next_line(a).await, "hello from b");
    handle.shutdown(LIMIT).await;
}

#[tokio::test]
async fn broadcast_except_skips_only_the_named_session() {
    let (server, _log) = recording_server(SessionConfig::default()).await;
    let mut clients = connect_all(&server, 3).await;
    let registry = server.sessions();
    let first = Addr::from(clients[0].local_addr().unwrap());
    let skipped = registry
        .sessions()
        .into_iter()
        .find(|s| s.peer_addr() == &first)
        .expect("the first client's session");
    assert_eq!(
        registry.broadcast_except(skipped.id(), Bytes::from_static(b"news")),
        2
    );
    for c in &mut clients[1..] {
        assert_eq!(read_frame(c).await, b"news");
    }
    // The skipped one's next frame is the one sent to all.
    assert_eq!(registry.broadcast(Bytes::from_static(b"all")), 3);
    assert_eq!(read_frame(&mut clients[0]).await, b"all");
    // An unknown id skips nobody.
    assert_eq!(
        registry.broadcast_except(u64::MAX, Bytes::from_static(b"x")),
        3
    );
    server.shutdown(LIMIT).await;
}

#[tokio::test]
async fn the_registry_counts_finds_iterates_and_broadcasts() {
    let (server, _log) = recording_server(SessionConfig::default()).await;
    let registry = server.sessions();
    assert!(registry.is_empty());
    let mut clients = connect_all(&server, 3).await;
    assert_eq!(registry.len(), 3);
    assert!(!registry.is_empty());

    let sessions = registry.sessions();
    let ids: HashSet<u64> = sessions.iter().map(Session::id).collect();
    assert_eq!(ids.len(), 3, "distinct ids");
    let peers: HashSet<Addr> = clients
        .iter()
        .map(|c| Addr::from(c.local_addr().unwrap()))
        .collect();
    for s in &sessions {
        let found = registry.get(s.id()).expect("get by id");
        assert_eq!(found.id(), s.id());
        assert!(peers.contains(found.peer_addr()), "{found}");
    }
    let unknown = ids.iter().max().unwrap() + 1_000_000;
    assert!(registry.get(unknown).is_none());

    assert_eq!(registry.broadcast(Bytes::from_static(b"news")), 3);
    for c in &mut clients {
        assert_eq!(read_frame(c).await, b"news");
    }

    // A session that ends leaves the registry.
    let gone = clients.pop().unwrap();
    let gone_peer = Addr::from(gone.local_addr().unwrap());
    let gone_id = sessions
        .iter()
        .find(|s| s.peer_addr() == &gone_peer)
        .unwrap()
        .id();
    drop(gone);
    eventually(LIMIT, "two left", || registry.len() == 2).await;
    assert!(registry.get(gone_id).is_none());
    assert_eq!(registry.broadcast(Bytes::from_static(b"again")), 2);
    for c in &mut clients {
        assert_eq!(read_frame(c).await, b"again");
    }
    server.shutdown(LIMIT).await;
}

#[tokio::test]
async fn max_sessions_closes_extra_connections_and_the_registry_never_exceeds_it() {
    let server = Server::builder()
        .max_sessions(2)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let log = Log::default();
    let l = log.clone();
    let server = server.serve(
        LengthCodec::new(),
        new_session_fn(move |_: &Session| {
            Ok::<_, getty::BoxError>(getty::ListenerService::new(Recorder { log: l.clone() }))
        }),
    );

    // Watch the count the whole time.
    let stop = Arc::new(AtomicBool::new(false));
    let max_seen = Arc::new(AtomicUsize::new(0));
    let watcher = tokio::spawn({
        let (server, stop, max_seen) = (server.clone(), stop.clone(), max_seen.clone());
        async move {
            while !stop.load(Ordering::SeqCst) {
                max_seen.fetch_max(server.session_count(), Ordering::SeqCst);
                tokio::task::yield_now().await;
            }
        }
    });

    let mut clients = connect_all(&server, 2).await;
    let mut extra = TcpStream::connect(server.local_addr()).await.unwrap();
    expect_closed(&mut extra).await;
    for (i, c) in clients.iter_mut().enumerate() {
        let p = format!("still-{i}");
        write_frame(c, p.as_bytes()).await;
        assert_eq!(read_frame(c).await, p.as_bytes());
    }
    assert_eq!(server.session_count(), 2);
    assert_eq!(log.count("open"), 2, "the extra connection got no session");

    // The cap counts live sessions: once one leaves, a new one is served.
    drop(clients.pop());
    eventually(LIMIT, "one left", || server.session_count() == 1).await;
    let mut next = TcpStream::connect(server.local_addr()).await.unwrap();
    write_frame(&mut next, b"welcome").await;
    assert_eq!(read_frame(&mut next).await, b"welcome");

    stop.store(true, Ordering::SeqCst);
    watcher.await.unwrap();
    assert_eq!(max_seen.load(Ordering::SeqCst), 2);
    server.shutdown(LIMIT).await;
}

#[tokio::test]
async fn shutdown_stops_accepting_new_connections() {
    let (server, log) = recording_server(SessionConfig::default()).await;
    let addr = server.local_addr();
    within(LIMIT, server.shutdown(LIMIT)).await;
    match TcpStream::connect(addr).await {
        Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}"),
        Ok(mut s) => expect_closed(&mut s).await,
    }
    assert_eq!(log.count("open"), 0);
    assert_eq!(server.session_count(), 0);
}

#[tokio::test]
async fn shutdown_lets_in_flight_calls_finish_and_flushes_queued_data() {
    let started = Arc::new(Notify::new());
    let st = started.clone();
    let server = Server::builder()
        .session_config(SessionConfig::default().wait_time(Duration::from_secs(20)))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let server = server.serve(
        LengthCodec::new(),
        new_session_fn(move |_: &Session| {
            let st = st.clone();
            Ok::<_, Infallible>(service_fn(move |req: Request<Bytes>| {
                let st = st.clone();
                async move {
                    let Some(pkg) = req.into_message() else {
                        return Ok::<_, Infallible>(None);
                    };
                    if &pkg[..] == b"slow" {
                        st.notify_one();
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        return Ok(Some(Bytes::from_static(b"slow done")));
                    }
                    Ok(Some(pkg))
                }
            }))
        }),
    );
    let mut busy = TcpStream::connect(server.local_addr()).await.unwrap();
    let mut fed = small_window_client(server.local_addr()).await;
    eventually(LIMIT, "two sessions", || server.session_count() == 2).await;
    let fed_peer = Addr::from(fed.local_addr().unwrap());
    let fed_session = server
        .sessions()
        .sessions()
        .into_iter()
        .find(|s| s.peer_addr() == &fed_peer)
        .unwrap();

    write_frame(&mut busy, b"slow").await;
    within(LIMIT, started.notified()).await;
    // 16 MiB for a peer that is not reading yet: most of it is still queued
    // when the shutdown starts.
    let big = Bytes::from(vec![9u8; 256 * 1024]);
    let n = 64;
    for _ in 0..n {
        within(LIMIT, fed_session.send(big.clone())).await.unwrap();
    }

    let shutting_down = tokio::spawn({
        let server = server.clone();
        async move { server.shutdown(Duration::from_secs(20)).await }
    });
    assert_eq!(read_frame(&mut busy).await, b"slow done");
    expect_closed(&mut busy).await;
    for i in 0..n {
        assert_eq!(read_frame(&mut fed).await.len(), big.len(), "packet {i}");
    }
    expect_closed(&mut fed).await;
    within(LIMIT, shutting_down).await.unwrap();
    assert_eq!(server.session_count(), 0);
}

#[tokio::test]
async fn shutdown_passes_close_through_every_session_stack_exactly_once() {
    let (server, log) = recording_server(SessionConfig::default()).await;
    let mut clients = connect_all(&server, 3).await;
    for c in &mut clients {
        write_frame(c, b"x").await;
        assert_eq!(read_frame(c).await, b"x");
    }
    within(LIMIT, server.shutdown(LIMIT)).await;
    assert_eq!(log.count("open"), 3);
    assert_eq!(log.count("close"), 3);
    assert_eq!(log.count("error"), 0, "{:?}", log.events());
    for c in &mut clients {
        expect_closed(c).await;
    }
    // A second shutdown changes nothing.
    within(LIMIT, server.shutdown(LIMIT)).await;
    assert_eq!(log.count("close"), 3);
}

#[tokio::test]
async fn the_shutdown_deadline_forces_sessions_whose_handler_hangs_and_close_still_runs_once() {
    let log = Log::default();
    let l = log.clone();
    // A wait time far beyond the deadline: only forcing can end these sessions in time.
    let server = Server::builder()
        .session_config(SessionConfig::default().wait_time(Duration::from_secs(30)))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let server = server.serve(
        LengthCodec::new(),
        new_session_fn(move |_: &Session| {
            let l = l.clone();
            Ok::<_, Infallible>(service_fn(move |req: Request<Bytes>| {
                let l = l.clone();
                async move {
                    match req.event {
                        Event::Open => l.push("open"),
                        Event::Message(_) => {
                            l.push("hang");
                            std::future::pending::<()>().await;
                        }
                        Event::Close => l.push("close"),
                        _ => l.push("other"),
                    }
                    Ok::<_, Infallible>(None::<Bytes>)
                }
            }))
        }),
    );
    let mut hung = connect_all(&server, 3).await;
    let mut idle = hung.pop().unwrap();
    for c in &mut hung {
        write_frame(c, b"never answered").await;
    }
    eventually(LIMIT, "both handlers hang", || log.count("hang") == 2).await;

    let start = Instant::now();
    within(LIMIT, server.shutdown(Duration::from_millis(300))).await;
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(300), "took {took:?}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert_eq!(server.session_count(), 0);
    assert_eq!(log.count("open"), 3);
    assert_eq!(log.count("close"), 3, "{:?}", log.events());
    for c in &mut hung {
        expect_closed(c).await;
    }
    expect_closed(&mut idle).await;
}

/// A server whose service hangs forever on `hang_on`; records every event.
fn hanging_on(server: Server, log: &Log, hang_on: &'static str) -> ServerHandle {
    let l = log.clone();
    server.serve(
        LengthCodec::new(),
        new_session_fn(move |_: &Session| {
            let l = l.clone();
            Ok::<_, Infallible>(service_fn(move |req: Request<Bytes>| {
                let l = l.clone();
                async move {
                    let name = req.event.name();
                    l.push(name);
                    if name == hang_on {
                        std::future::pending::<()>().await;
                    }
                    Ok::<_, Infallible>(None::<Bytes>)
                }
            }))
        }),
    )
}

#[tokio::test]
async fn the_shutdown_deadline_ends_a_session_whose_open_handler_hangs() {
    let log = Log::default();
    let server = Server::builder().bind("127.0.0.1:0").await.unwrap();
    let server = hanging_on(server, &log, "open");
    let mut c = TcpStream::connect(server.local_addr()).await.unwrap();
    eventually(LIMIT, "open handler running", || log.count("open") == 1).await;

    within(LIMIT, server.shutdown(Duration::from_millis(300))).await;
    assert_eq!(server.session_count(), 0);
    expect_closed(&mut c).await;
    // Open never succeeded, so the session was never opened: no Close.
    assert_eq!(log.events(), ["open"]);
}

#[tokio::test]
async fn the_shutdown_deadline_ends_a_session_whose_close_handler_hangs() {
    let log = Log::default();
    let server = Server::builder().bind("127.0.0.1:0").await.unwrap();
    let server = hanging_on(server, &log, "close");
    let mut c = TcpStream::connect(server.local_addr()).await.unwrap();
    eventually(LIMIT, "opened", || log.count("open") == 1).await;

    within(LIMIT, server.shutdown(Duration::from_millis(300))).await;
    assert_eq!(server.session_count(), 0);
    expect_closed(&mut c).await;
    assert_eq!(log.events(), ["open", "close"]);
}

#[tokio::test]
async fn the_shutdown_deadline_ends_a_connection_whose_make_service_hangs() {
    let server = Server::builder().bind("127.0.0.1:0").await.unwrap();
    let server = server.serve(
        LengthCodec::new(),
        service_fn(|_: Session| async move {
            std::future::pending::<()>().await;
            Ok::<_, Infallible>(service_fn(|req: Request<Bytes>| async move {
                Ok::<_, Infallible>(req.into_message())
            }))
        }),
    );
    let mut c = TcpStream::connect(server.local_addr()).await.unwrap();
    eventually(LIMIT, "accepted", || server.session_count() == 1).await;

    within(LIMIT, server.shutdown(Duration::from_millis(300))).await;
    assert_eq!(server.session_count(), 0);
    expect_closed(&mut c).await;
}
