//! Hostile and bursty peers against the driver: the input budget, clean
//! closes that keep owed replies (lingering close, TLS without
//! close_notify), `Open` that writes and flushes, and reported-error
//! floods.
mod common;

use std::{
    convert::Infallible,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::Bytes;
use common::*;
use getty::{
    codec::LengthCodec, new_session_fn, Event, Request, Server, ServerHandle, Session,
    SessionConfig,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tower::service_fn;

const LIMIT: Duration = Duration::from_secs(10);

// ----- lingering close (issue 7, item 5) -------------------------------------

/// A client with a small receive buffer, so that the server's replies
/// back up into the server's own kernel buffer, where a reset at its close
/// would throw them away.
async fn small_window_client(server: &ServerHandle) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(32 * 1024).unwrap();
    socket.connect(server.local_addr()).await.unwrap()
}

/// Reads slowly until the peer closes: bytes read and how the stream ended
/// (`None` for a clean EOF).
async fn read_slowly_to_end(
    rd: &mut tokio::net::tcp::OwnedReadHalf,
) -> (usize, Option<std::io::Error>) {
    let mut got = 0usize;
    let ended = within(Duration::from_secs(30), async {
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            match rd.read(&mut chunk).await {
                Ok(0) => return None,
                Ok(n) => got += n,
                Err(e) => return Some(e),
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    (got, ended)
}

#[tokio::test]
async fn owed_echoes_reach_a_slow_reader_whose_junk_after_a_too_large_prefix_is_unread() {
    let (server, log) = recording_server(SessionConfig::default().max_packet_len(256 * 1024)).await;
    let (mut rd, mut wr) = small_window_client(&server).await.into_split();
    let writer = async move {
        for _ in 0..10 {
            wr.write_all(&frame(&[b'e'; 100 * 1024])).await.unwrap();
        }
        // A prefix declaring 1 MiB (over max_packet_len), then junk the
        // server will never read.
        wr.write_all(&(1u32 << 20).to_be_bytes()).await.unwrap();
        let _ = wr.write_all(&vec![0xAB; 64 * 1024]).await;
        wr
    };
    let (_wr, (got, ended)) = tokio::join!(writer, read_slowly_to_end(&mut rd));
    assert!(ended.is_none(), "the stream ends with a FIN, not {ended:?}");
    assert_eq!(got, 10 * (4 + 100 * 1024), "every owed echo arrives whole");
    assert_eq!(log.count("error:packet of"), 1);
}

#[tokio::test]
async fn graceful_shutdown_delivers_every_echo_it_handled_to_a_slow_reader() {
    let (server, log) = recording_server(SessionConfig::default()).await;
    let (mut rd, mut wr) = small_window_client(&server).await.into_split();
    const LEN: usize = 4000;
    let writer = async move {
        let payload = vec![b'p'; LEN];
        // 8 MB, more than the server reads before it closes (its replies
        // back up to this slow reader): it has unread input when it does.
        for _ in 0..2000 {
            if wr.write_all(&frame(&payload)).await.is_err() {
                break;
            }
        }
        wr
    };
    let shutdown = async {
        eventually(LIMIT, "the server handled some packets", || {
            log.count("message:") >= 100
        })
        .await;
        server.shutdown(Duration::from_secs(10)).await;
    };
    let (_wr, (), (got, ended)) = tokio::join!(writer, shutdown, read_slowly_to_end(&mut rd));
    assert!(ended.is_none(), "the stream ends with a FIN, not {ended:?}");
    let handled = log.count("message:");
    assert_eq!(
        got,
        handled * (4 + LEN),
        "every packet the server handled was echoed whole ({handled} handled)"
    );
}

// ----- TLS without close_notify (issue 7, item 6) -----------------------------

mod tls {
    use super::*;
    use getty::tls::ServerTlsConfig;
    use tokio_rustls::{
        rustls::{pki_types::ServerName, ClientConfig, RootCertStore},
        TlsConnector,
    };

    #[tokio::test]
    async fn a_tls_peer_that_closes_tcp_without_close_notify_still_gets_its_echoes() {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let dir = std::env::temp_dir().join(format!("getty-rel-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert_path, cert.cert.pem()).unwrap();
        std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
        let tls = ServerTlsConfig::from_pem_files(&cert_path, &key_path).unwrap();
        let _ = std::fs::remove_dir_all(&dir);

        let server = Server::builder()
            .tls(tls)
            .bind("127.0.0.1:0")
            .await
            .unwrap();
        let (server, log) = serve_recording(server);

        let mut roots = RootCertStore::empty();
        roots.add(cert.cert.der().clone()).unwrap();
        let config = ClientConfig::builder_with_provider(getty::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tcp = TcpStream::connect(server.local_addr()).await.unwrap();
        let mut tls = TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        let mut burst = Vec::new();
        for i in 0..10 {
            burst.extend_from_slice(&frame(format!("tls-{i}").as_bytes()));
        }
        tls.write_all(&burst).await.unwrap();
        tls.flush().await.unwrap();
        // The FIN goes right behind the data, with no close_notify.
        tls.get_mut().0.shutdown().await.unwrap();

        let mut got = Vec::new();
        let ended = within(LIMIT, async {
            loop {
                let mut chunk = [0u8; 4096];
                match tls.read(&mut chunk).await {
                    Ok(0) => return None,
                    Ok(n) => got.extend_from_slice(&chunk[..n]),
                    Err(e) => return Some(e),
                }
            }
        })
        .await;
        let mut expected = Vec::new();
        for i in 0..10 {
            expected.extend_from_slice(&frame(format!("tls-{i}").as_bytes()));
        }
        assert_eq!(got, expected, "all ten echoes arrive (ended: {ended:?})");
        eventually(LIMIT, "the session closed without an error", || {
            log.count("close") == 1
        })
        .await;
        assert_eq!(log.count("error:"), 0, "{:?}", log.events());
    }
}

// ----- Open that writes and flushes (issue 7, item 13) ------------------------

/// A server whose `Open` sends `greetings` packets (more than the queue
/// holds) and awaits `flush()`, logging "flushed"; messages are echoed.
async fn greeting_server(greetings: usize, log: Log) -> ServerHandle {
    let server = Server::builder()
        .session_config(SessionConfig::default().queue_capacity(2))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    server.serve(
        LengthCodec::new(),
        new_session_fn(move |_: &Session| {
            let log = log.clone();
            Ok::<_, Infallible>(service_fn(move |req: Request<Bytes>| {
                let log = log.clone();
                async move {
                    match req.event {
                        Event::Open => {
                            for i in 0..greetings {
                                let hello = Bytes::from(format!("hello-{i}"));
                                if req.session.send(hello).await.is_err() {
                                    log.push("send failed");
                                }
                            }
                            match req.session.flush().await {
                                Ok(()) => log.push("flushed"),
                                Err(e) => log.push(format!("flush failed: {e}")),
                            }
                            Ok(None)
                        }
                        Event::Message(pkg) => Ok::<_, Infallible>(Some(pkg)),
                        Event::Close => {
                            log.push("close");
                            Ok(None)
                        }
                        _ => Ok(None),
                    }
                }
            }))
        }),
    )
}

#[tokio::test]
async fn open_can_send_more_than_the_queue_holds_and_await_flush() {
    let log = Log::default();
    let server = greeting_server(5, log.clone()).await;
    let mut client = TcpStream::connect(server.local_addr()).await.unwrap();
    for i in 0..5 {
        assert_eq!(
            read_frame(&mut client).await,
            format!("hello-{i}").as_bytes()
        );
    }
    eventually(LIMIT, "flush() in Open returned", || {
        log.count("flushed") == 1
    })
    .await;
    // The session runs on normally after its greeting.
    write_frame(&mut client, b"after").await;
    assert_eq!(read_frame(&mut client).await, b"after");
}

#[tokio::test]
async fn close_during_a_hung_open_ends_the_session_within_its_wait_time() {
    let server = Server::builder()
        .session_config(SessionConfig::default().wait_time(Duration::from_millis(300)))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let closed = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&closed);
    let server = server.serve(
        LengthCodec::new(),
        new_session_fn(move |_: &Session| {
            let c = Arc::clone(&c);
            Ok::<_, Infallible>(service_fn(move |req: Request<Bytes>| {
                let c = Arc::clone(&c);
                async move {
                    match req.event {
                        Event::Open => {
                            // Greets, then hangs far past the test.
                            let _ = req.session.send(Bytes::from_static(b"hi")).await;
                            tokio::time::sleep(Duration::from_secs(600)).await;
                        }
                        Event::Close => {
                            c.fetch_add(1, Ordering::SeqCst);
                        }
                        _ => {}
                    }
                    Ok::<_, Infallible>(None::<Bytes>)
                }
            }))
        }),
    );
    let mut client = TcpStream::connect(server.local_addr()).await.unwrap();
    assert_eq!(
        read_frame(&mut client).await,
        b"hi",
        "written while Open hangs"
    );
    let session = {
        eventually(LIMIT, "one session", || server.session_count() == 1).await;
        server.sessions().sessions().pop().unwrap()
    };
    session.close();
    within(Duration::from_secs(3), session.finished()).await;
    let mut rest = Vec::new();
    let n = within(LIMIT, client.read_to_end(&mut rest)).await.unwrap();
    assert_eq!(n, 0, "the socket closed with nothing more");
    assert_eq!(
        closed.load(Ordering::SeqCst),
        0,
        "a session whose Open never answered gets no Close"
    );
}

// ----- reported-error floods (issue 7, item 16) -------------------------------

#[tokio::test]
async fn a_report_error_flood_neither_starves_input_nor_queues_without_bound() {
    let errors_seen = Arc::new(AtomicUsize::new(0));
    let reporting = Arc::new(AtomicBool::new(true));
    let reported = Arc::new(AtomicUsize::new(0));
    let server = Server::builder().bind("127.0.0.1:0").await.unwrap();
    let (seen, run, count) = (
        Arc::clone(&errors_seen),
        Arc::clone(&reporting),
        Arc::clone(&reported),
    );
    let server = server.serve(
        LengthCodec::new(),
        new_session_fn(move |session: &Session| {
            // A task that reports errors as fast as it can while the test runs.
            let (s, run, count) = (session.clone(), Arc::clone(&run), Arc::clone(&count));
            tokio::spawn(async move {
                let started = tokio::time::Instant::now();
                while run.load(Ordering::Relaxed) && started.elapsed() < LIMIT {
                    for _ in 0..1000 {
                        s.report_error("flood");
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    tokio::task::yield_now().await;
                }
            });
            let seen = Arc::clone(&seen);
            Ok::<_, Infallible>(service_fn(move |req: Request<Bytes>| {
                let seen = Arc::clone(&seen);
                async move {
                    match req.event {
                        Event::Message(pkg) => return Ok(Some(pkg)),
                        Event::Error(_) => {
                            seen.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {}
                    }
                    Ok::<_, Infallible>(None)
                }
            }))
        }),
    );
    let mut client = TcpStream::connect(server.local_addr()).await.unwrap();
    for i in 0..20 {
        let word = format!("echo-{i}");
        write_frame(&mut client, word.as_bytes()).await;
        assert_eq!(read_frame(&mut client).await, word.as_bytes());
    }
    assert!(
        reporting.load(Ordering::Relaxed),
        "the echoes came back while the flood still ran"
    );
    reporting.store(false, Ordering::Relaxed);
    let (reported, seen) = (
        reported.load(Ordering::Relaxed),
        errors_seen.load(Ordering::Relaxed),
    );
    assert!(
        seen < reported,
        "reports beyond the bound were dropped ({seen} handled of {reported})"
    );
}

// ----- the input budget (issue 7, item 3) -------------------------------------

/// What one staller sends: a header declaring 400 KiB, then 250 KiB of it.
const STALLED: usize = 4 + 250 * 1024;

async fn staller(server: &ServerHandle) -> TcpStream {
    let mut s = TcpStream::connect(server.local_addr()).await.unwrap();
    s.write_all(&(400u32 * 1024).to_be_bytes()).await.unwrap();
    s.write_all(&vec![7u8; STALLED - 4]).await.unwrap();
    s
}

#[tokio::test]
async fn peers_stalling_mid_packet_give_way_so_a_well_behaved_client_is_served() {
    // Room for four stallers, and less than one read's minimum grant besides.
    const BUDGET: usize = 4 * STALLED + 100;
    let server = Server::builder()
        .session_config(SessionConfig::default().max_packet_len(512 * 1024))
        .max_buffered_input(Some(BUDGET))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let (server, log) = serve_recording(server);

    let mut stallers = Vec::new();
    for i in 1..=4 {
        stallers.push(staller(&server).await);
        let what = format!("staller {i}'s input is buffered");
        eventually(LIMIT, &what, || server.buffered_input() == i * STALLED).await;
    }
    // Each session shows its share in its stats.
    let shares: Vec<u64> = server
        .sessions()
        .sessions()
        .iter()
        .map(|s| s.stats().buffered_input)
        .collect();
    assert_eq!(shares, vec![STALLED as u64; 4]);

    // The budget is spent, and the stallers wait for room without taking
    // it from each other.
    assert_eq!(log.count("error:"), 0, "{:?}", log.events());
    // A well-behaved client is still served: the stallers give way.
    let mut good = TcpStream::connect(server.local_addr()).await.unwrap();
    write_frame(&mut good, b"still served").await;
    assert_eq!(read_frame(&mut good).await, b"still served");
    eventually(LIMIT, "a staller was closed naming the budget", || {
        log.count(&format!("error:input budget of {BUDGET} bytes spent")) >= 1
    })
    .await;
    assert!(server.buffered_input() <= BUDGET);
    drop(stallers);
}

#[tokio::test]
async fn a_packet_that_outgrows_the_budget_closes_its_session_and_gives_its_share_back() {
    const BUDGET: usize = 256 * 1024;
    let server = Server::builder()
        .session_config(SessionConfig::default().max_packet_len(1 << 20))
        .max_buffered_input(Some(BUDGET))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let (server, log) = serve_recording(server);
    let mut big = TcpStream::connect(server.local_addr()).await.unwrap();
    big.write_all(&(1u32 << 20).to_be_bytes()).await.unwrap();
    let sending = async {
        // The server stops reading at the budget and closes: the write
        // may fail or stall; either is fine.
        let _ = tokio::time::timeout(
            Duration::from_secs(3),
            big.write_all(&vec![1u8; 900 * 1024]),
        )
        .await;
    };
    let watching = async {
        let mut most = 0;
        for _ in 0..300 {
            most = most.max(server.buffered_input());
            if log.count("close") == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        most
    };
    let ((), most) = tokio::join!(sending, watching);
    assert!(most <= BUDGET, "held {most} bytes at most, budget {BUDGET}");
    eventually(LIMIT, "the session was closed naming the budget", || {
        log.count("error:input budget of 262144 bytes spent") == 1 && log.count("close") == 1
    })
    .await;
    assert_eq!(server.buffered_input(), 0, "its share was given back");
}

#[tokio::test]
async fn with_the_budget_spent_by_complete_packets_a_new_session_waits_then_is_served() {
    // Less than a read's minimum grant is left once the first session holds
    // five complete 1,000-byte packets behind a blocked handler.
    const BUDGET: usize = 8 * 1024;
    let server = Server::builder()
        .session_config(SessionConfig::default().max_in_flight(2))
        .max_buffered_input(Some(BUDGET))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let blocked = Arc::new(AtomicBool::new(false));
    let (g, b) = (Arc::clone(&gate), Arc::clone(&blocked));
    let server = server.serve(
        LengthCodec::new(),
        new_session_fn(move |_: &Session| {
            let (g, b) = (Arc::clone(&g), Arc::clone(&b));
            Ok::<_, Infallible>(service_fn(move |req: Request<Bytes>| {
                let (g, b) = (Arc::clone(&g), Arc::clone(&b));
                async move {
                    match req.event {
                        Event::Message(pkg) if pkg.as_ref() == b"block" => {
                            b.store(true, Ordering::SeqCst);
                            let _ = g.acquire().await.map(|p| p.forget());
                            Ok(Some(pkg))
                        }
                        Event::Message(pkg) => Ok(Some(pkg)),
                        _ => Ok::<_, Infallible>(None),
                    }
                }
            }))
        }),
    );
    let mut first = TcpStream::connect(server.local_addr()).await.unwrap();
    write_frame(&mut first, b"block").await;
    eventually(LIMIT, "the first handler is blocked", || {
        blocked.load(Ordering::SeqCst)
    })
    .await;
    let mut six = Vec::new();
    for _ in 0..6 {
        six.extend_from_slice(&frame(&[3u8; 1000]));
    }
    first.write_all(&six).await.unwrap();
    eventually(
        LIMIT,
        "five packets wait behind the blocked handler",
        || server.buffered_input() == 5 * 1004,
    )
    .await;

    let mut second = TcpStream::connect(server.local_addr()).await.unwrap();
    write_frame(&mut second, b"second").await;
    let early = tokio::time::timeout(Duration::from_millis(300), read_frame(&mut second)).await;
    assert!(
        early.is_err(),
        "no room: the second session does not read yet"
    );
    assert_eq!(server.session_count(), 2, "nobody was closed");

    gate.add_permits(1);
    assert_eq!(
        read_frame(&mut second).await,
        b"second",
        "served once room came back"
    );
    assert_eq!(read_frame(&mut first).await, b"block");
    for _ in 0..6 {
        assert_eq!(read_frame(&mut first).await, vec![3u8; 1000]);
    }
}

#[tokio::test]
async fn without_a_budget_the_stats_still_show_what_a_session_holds() {
    let server = Server::builder()
        .max_buffered_input(None)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let (server, _log) = serve_recording(server);
    let mut s = TcpStream::connect(server.local_addr()).await.unwrap();
    s.write_all(&100u32.to_be_bytes()).await.unwrap();
    s.write_all(&[1u8; 50]).await.unwrap();
    eventually(
        LIMIT,
        "the partial packet shows in the session's stats",
        || {
            server
                .sessions()
                .sessions()
                .first()
                .is_some_and(|s| s.stats().buffered_input == 54)
        },
    )
    .await;
    assert_eq!(server.buffered_input(), 0, "nothing is charged");
}
