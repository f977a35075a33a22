//! The package API's server (bind, serve an async fn per connection,
//! panics contained, graceful shutdown with a deadline, TLS from PEM files,
//! Unix sockets), its pool of reusable connections, and its codec under
//! the core server, over real sockets.

mod pkg_support;

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use getty::{
    new_session_fn,
    pkg::{Conn, ConnBuilder, PkgCodec, PkgError, PkgOption, Pool, Server},
    tls::ClientTlsConfig,
    BoxError, EventListener, ListenerService, Session,
};
use pkg_support::*;
use tokio::{io::AsyncWriteExt, net::TcpStream};

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "getty-pkg-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Polls `cond` every 10 ms until it holds, failing after `limit`.
async fn eventually(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ----- the server ----------------------------------------------------------------

#[tokio::test]
async fn bind_on_port_zero_reports_the_bound_address_and_serves_it() {
    let server = Server::bind("127.0.0.1:0").await.expect("bind");
    let addr = server.local_addr().as_socket_addr().expect("an IP address");
    assert_ne!(addr.port(), 0);
    let handle = server.serve(echo);
    assert_eq!(handle.local_addr().as_socket_addr(), Some(addr));
    let mut conn = Conn::connect(addr.to_string()).await.expect("connect");
    assert_eq!(conn.send_recv_pkg(b"hi").await.expect("echo"), &b"hi"[..]);
    assert_eq!(handle.connections(), 1);
    drop(conn);
    eventually(LIMIT, "handler ends", || handle.connections() == 0).await;
    handle.shutdown(LIMIT).await;
}

#[tokio::test]
async fn binding_a_taken_address_is_a_bind_error_naming_it() {
    let (listener, addr) = raw_listener().await;
    let err = Server::bind(&addr).await.unwrap_err();
    assert!(matches!(err, PkgError::Bind { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with(&format!("cannot bind {addr}: ")),
        "{err}"
    );
    assert!(std::error::Error::source(&err).is_some());
    drop(listener);
}

#[tokio::test]
async fn connecting_where_nothing_listens_is_a_connect_error_naming_the_address() {
    let (listener, addr) = raw_listener().await;
    drop(listener);
    let err = Conn::connect(&addr).await.unwrap_err();
    assert!(matches!(err, PkgError::Connect { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with(&format!("cannot connect to {addr}: ")),
        "{err}"
    );
}

#[tokio::test]
async fn a_panicking_handler_is_contained_and_the_server_keeps_serving() {
    let server = Server::bind("127.0.0.1:0").await.expect("bind");
    let addr = server.local_addr().to_string();
    let handle = server.serve(|mut conn: Conn| async move {
        let pkg = conn.recv_pkg().await?;
        if &pkg[..] == b"panic" {
            panic!("handler asked to panic");
        }
        conn.send_pkg(&pkg).await
    });
    let mut doomed = Conn::connect(&addr).await.expect("connect");
    doomed.send_pkg(b"panic").await.expect("send");
    let err = within(LIMIT, doomed.recv_pkg()).await.unwrap_err();
    assert!(
        err.is_closed(),
        "the panicked handler's connection is closed: {err:?}"
    );
    let mut fine = Conn::connect(&addr).await.expect("connect after the panic");
    assert_eq!(
        within(LIMIT, fine.send_recv_pkg(b"ok"))
            .await
            .expect("echo"),
        &b"ok"[..]
    );
    eventually(LIMIT, "handlers end", || handle.connections() == 0).await;
    handle.shutdown(LIMIT).await;
}

#[tokio::test]
async fn shutdown_stops_accepting_waits_for_handlers_then_aborts_the_rest() {
    let server = Server::bind("127.0.0.1:0").await.expect("bind");
    let addr = server.local_addr().to_string();
    let stopping = server.shutdown_token();
    let handle = server.serve(move |mut conn: Conn| {
        let stopping = stopping.clone();
        async move {
            let role = conn.recv_pkg().await?;
            if &role[..] == b"polite" {
                // Finishes its conversation when shutdown begins.
                stopping.cancelled().await;
                conn.send_pkg(b"bye").await
            } else {
                // Ignores shutdown: sleeps far past the deadline.
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(())
            }
        }
    });
    let mut polite = Conn::connect(&addr).await.expect("connect");
    polite.send_pkg(b"polite").await.expect("send");
    let mut stubborn = Conn::connect(&addr).await.expect("connect");
    stubborn.send_pkg(b"stubborn").await.expect("send");
    eventually(LIMIT, "both handlers run", || handle.connections() == 2).await;

    let started = Instant::now();
    let report = within(LIMIT, handle.shutdown(Duration::from_millis(300))).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300),
        "returned before the deadline: {took:?}"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_eq!((report.drained, report.aborted), (1, 1), "{report:?}");
    assert_eq!(
        within(LIMIT, polite.recv_pkg()).await.expect("bye"),
        &b"bye"[..]
    );
    assert!(within(LIMIT, polite.recv_pkg())
        .await
        .unwrap_err()
        .is_closed());
    let err = within(LIMIT, stubborn.recv_pkg()).await.unwrap_err();
    assert!(
        err.is_closed(),
        "aborted handler's connection closed: {err:?}"
    );
    let refused = Conn::connect(&addr).await;
    assert!(
        matches!(refused, Err(PkgError::Connect { .. })),
        "still accepting"
    );
}

#[tokio::test]
async fn shutdown_with_idle_server_returns_at_once() {
    let (handle, _addr) = echo_server(PkgOption::new()).await;
    let started = Instant::now();
    let report = handle.shutdown(Duration::from_secs(30)).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!((report.drained, report.aborted), (0, 0));
}

#[tokio::test]
async fn accepted_connections_use_the_servers_package_option() {
    let (handle, addr) = echo_server(PkgOption::new().header_size(1)).await;
    let mut raw = TcpStream::connect(&addr).await.expect("connect");
    raw.write_all(&frame(1, b"one byte header"))
        .await
        .expect("write");
    let mut conn_side = Conn::builder()
        .pkg_option(PkgOption::new().header_size(1))
        .connect(&addr)
        .await
        .expect("connect");
    assert_eq!(
        conn_side.send_recv_pkg(b"x").await.expect("echo"),
        &b"x"[..]
    );
    let mut got = vec![0u8; 16];
    tokio::io::AsyncReadExt::read_exact(&mut raw, &mut got)
        .await
        .expect("read");
    assert_eq!(got, frame(1, b"one byte header"));
    drop((raw, conn_side));
    handle.shutdown(LIMIT).await;
}

// ----- TLS -------------------------------------------------------------------------

/// A CA and a "localhost" server certificate, as PEM files.
struct Pki {
    dir: Scratch,
}

impl Pki {
    fn new() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
        let dir = Scratch::new("tls");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "pkg test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate().expect("CA key");
        let ca = ca_params.self_signed(&ca_key).expect("CA");
        let leaf_params =
            CertificateParams::new(vec!["localhost".to_string()]).expect("leaf params");
        let leaf_key = KeyPair::generate().expect("leaf key");
        let leaf = leaf_params
            .signed_by(&leaf_key, &ca, &ca_key)
            .expect("leaf");
        std::fs::write(dir.0.join("ca.pem"), ca.pem()).expect("write");
        std::fs::write(dir.0.join("server.pem"), leaf.pem()).expect("write");
        std::fs::write(dir.0.join("server.key"), leaf_key.serialize_pem()).expect("write");
        Pki { dir }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.0.join(name)
    }

    fn client(&self) -> ClientTlsConfig {
        ClientTlsConfig::with_root_file(self.file("ca.pem"))
            .expect("roots")
            .server_name("localhost")
            .expect("name")
    }
}

#[tokio::test]
async fn a_tls_server_from_pem_files_exchanges_packages_with_a_tls_client() {
    let pki = Pki::new();
    let server = Server::builder()
        .tls_pem_files(pki.file("server.pem"), pki.file("server.key"))
        .expect("TLS config")
        .pkg_option(PkgOption::new().header_size(4))
        .bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = server.local_addr().to_string();
    let handle = server.serve(echo);
    let mut conn = ConnBuilder::new()
        .tls(pki.client())
        .pkg_option(PkgOption::new().header_size(4))
        .connect(&addr)
        .await
        .expect("TLS connect");
    for len in [0usize, 5, 200_000] {
        let data = vec![3u8; len];
        let reply = within(LIMIT, conn.send_recv_pkg(&data))
            .await
            .expect("echo");
        assert_eq!(reply.len(), len);
    }
    let mut again = Conn::connect_tls(&addr, pki.client())
        .await
        .expect("connect_tls");
    let opt = PkgOption::new().header_size(4);
    assert_eq!(
        again.send_recv_pkg_with(b"z", &opt).await.expect("echo"),
        &b"z"[..]
    );
    drop((conn, again));
    handle.shutdown(LIMIT).await;
}

#[tokio::test]
async fn a_plain_client_never_reaches_a_tls_servers_handler() {
    let pki = Pki::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let server = Server::builder()
        .tls_pem_files(pki.file("server.pem"), pki.file("server.key"))
        .expect("TLS config")
        .handshake_timeout(Duration::from_millis(500))
        .bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = server.local_addr().to_string();
    let seen = Arc::clone(&calls);
    let handle = server.serve(move |_conn: Conn| {
        seen.fetch_add(1, Ordering::SeqCst);
        async {}
    });
    let mut plain = Conn::connect(&addr).await.expect("TCP connect");
    let _ = plain.send_pkg(b"not a handshake").await;
    let err = within(LIMIT, plain.recv_pkg()).await.unwrap_err();
    assert!(!matches!(err, PkgError::Timeout { .. }), "{err:?}");
    eventually(LIMIT, "handshake gives up", || handle.connections() == 0).await;
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    handle.shutdown(LIMIT).await;
}

#[tokio::test]
async fn tls_pem_files_that_do_not_exist_are_a_tls_error_naming_the_file() {
    let err = Server::builder()
        .tls_pem_files("/nonexistent/cert.pem", "/nonexistent/key.pem")
        .unwrap_err();
    assert!(matches!(err, PkgError::Tls(_)), "{err:?}");
    assert!(err.to_string().contains("/nonexistent/cert.pem"), "{err}");
}

// ----- Unix sockets ------------------------------------------------------------------

#[tokio::test]
async fn a_unix_socket_server_serves_packages_and_removes_its_file_on_shutdown() {
    let dir = Scratch::new("unix");
    let path = dir.0.join("pkg.sock");
    let server = Server::builder()
        .pkg_option(PkgOption::new().header_size(3))
        .bind_unix(&path)
        .expect("bind unix");
    assert_eq!(
        server.local_addr().to_string(),
        format!("unix:{}", path.display())
    );
    let handle = server.serve(echo);
    let mut conn = ConnBuilder::new()
        .pkg_option(PkgOption::new().header_size(3))
        .connect_unix(&path)
        .await
        .expect("connect unix");
    assert_eq!(
        within(LIMIT, conn.send_recv_pkg(b"over unix"))
            .await
            .expect("echo"),
        &b"over unix"[..]
    );
    let mut plain = Conn::connect_unix(&path).await.expect("connect unix");
    let opt = PkgOption::new().header_size(3);
    assert_eq!(
        plain.send_recv_pkg_with(b"", &opt).await.expect("echo"),
        &b""[..]
    );
    drop((conn, plain));
    handle.shutdown(LIMIT).await;
    assert!(!path.exists(), "socket file left behind");
}

// ----- the pool ------------------------------------------------------------------------

/// An echo server counting the connections it accepted.
async fn counting_echo_server() -> (getty::pkg::ServerHandle, String, Arc<AtomicUsize>) {
    let accepted = Arc::new(AtomicUsize::new(0));
    let server = Server::bind("127.0.0.1:0").await.expect("bind");
    let addr = server.local_addr().to_string();
    let count = Arc::clone(&accepted);
    let handle = server.serve(move |conn: Conn| {
        count.fetch_add(1, Ordering::SeqCst);
        echo(conn)
    });
    (handle, addr, accepted)
}

#[tokio::test]
async fn the_pool_reuses_an_idle_connection_for_sequential_exchanges() {
    let (handle, addr, accepted) = counting_echo_server().await;
    let pool = Pool::new(addr);
    let mut first_local = None;
    for i in 0..5u8 {
        let mut conn = pool.get().await.expect("get");
        let reply = within(LIMIT, conn.send_recv_pkg([i])).await.expect("echo");
        assert_eq!(&reply[..], &[i]);
        let local = conn.local_addr().clone();
        assert_eq!(
            first_local.get_or_insert(local.clone()),
            &local,
            "a new connection"
        );
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    assert_eq!(pool.idle_count(), 1);
    pool.close();
    assert!(matches!(pool.get().await, Err(PkgError::PoolClosed)));
    let report = handle.shutdown(LIMIT).await;
    assert_eq!(report.aborted, 0, "closing the pool left a connection open");
}

#[tokio::test]
async fn the_pool_drops_connections_idle_past_the_expiry() {
    let (handle, addr, accepted) = counting_echo_server().await;
    let pool = Pool::builder()
        .idle_timeout(Duration::from_millis(150))
        .build(addr);
    drop(pool.get().await.expect("get"));
    assert_eq!(pool.idle_count(), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(pool.idle_count(), 0, "expired connection kept");
    // The server sees the expired connection closed.
    eventually(LIMIT, "expired connection closed", || {
        handle.connections() == 0
    })
    .await;
    let mut conn = pool.get().await.expect("get");
    assert_eq!(conn.send_recv_pkg(b"new").await.expect("echo"), &b"new"[..]);
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    drop(conn);
    pool.close();
    let report = handle.shutdown(LIMIT).await;
    assert_eq!(report.aborted, 0, "the pool kept a connection open");
}

#[tokio::test]
async fn the_pool_keeps_at_most_max_idle_connections() {
    let (handle, addr, accepted) = counting_echo_server().await;
    let pool = Pool::builder().max_idle(2).build(addr);
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(pool.get().await.expect("get"));
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 4);
    drop(held);
    assert_eq!(pool.idle_count(), 2);
    eventually(LIMIT, "the two extra connections closed", || {
        handle.connections() == 2
    })
    .await;
    drop(pool);
    let report = handle.shutdown(LIMIT).await;
    assert_eq!(
        report.aborted, 0,
        "dropping the pool left a connection open"
    );
}

#[tokio::test]
async fn the_pool_never_reuses_a_connection_that_failed_timed_out_or_was_closed_by_the_peer() {
    // A server that answers nothing, then closes on request.
    let server = Server::bind("127.0.0.1:0").await.expect("bind");
    let addr = server.local_addr().to_string();
    let handle = server.serve(|mut conn: Conn| async move {
        // Bounded by the peer: ends when it closes or asks.
        while let Ok(pkg) = conn.recv_pkg().await {
            match &pkg[..] {
                b"close" => return,
                b"echo" => {
                    let _ = conn.send_pkg(&pkg).await;
                }
                _ => {}
            }
        }
    });
    let pool = Pool::new(addr);

    // Timed out: a late reply could reach the next user.
    let mut conn = pool.get().await.expect("get");
    let err = conn
        .send_recv_pkg_timeout(b"silence", Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    drop(conn);
    assert_eq!(pool.idle_count(), 0, "timed-out connection pooled");

    // Closed by the peer while idle: get notices and connects anew.
    let mut conn = pool.get().await.expect("get");
    assert_eq!(
        conn.send_recv_pkg(b"echo").await.expect("echo"),
        &b"echo"[..]
    );
    conn.send_pkg(b"close").await.expect("send");
    let stale_local = conn.local_addr().clone();
    drop(conn);
    assert_eq!(pool.idle_count(), 1);
    eventually(LIMIT, "server closed it", || handle.connections() == 0).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut conn = pool.get().await.expect("get");
    assert_ne!(
        conn.local_addr(),
        &stale_local,
        "handed out a connection its peer closed"
    );
    assert_eq!(
        conn.send_recv_pkg(b"echo").await.expect("echo"),
        &b"echo"[..]
    );

    // A writer clone left outside: not pooled.
    let leaked = conn.writer();
    drop(conn);
    assert_eq!(
        pool.idle_count(),
        0,
        "connection with a live writer clone pooled"
    );

    // Detached and discarded ones never come back either.
    let detached: Conn = pool.get().await.expect("get").detach();
    pool.get().await.expect("get").discard();
    assert_eq!(pool.idle_count(), 0);
    drop((detached, leaked));
    let report = handle.shutdown(LIMIT).await;
    assert_eq!(report.aborted, 0);
}

// ----- the codec under the core server ------------------------------------------------

struct EchoListener;

impl EventListener<Bytes> for EchoListener {
    fn on_message(&mut self, _: &Session, pkg: Bytes) -> Option<Bytes> {
        Some(pkg)
    }
}

#[tokio::test]
async fn pkg_codec_frames_the_core_servers_sessions() {
    let server = getty::Server::builder()
        .bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = server.local_addr().to_string();
    let option = PkgOption::new().header_size(3);
    let handle = server.serve(
        PkgCodec::with_option(&option).expect("valid option"),
        new_session_fn(|_: &Session| Ok::<_, BoxError>(ListenerService::new(EchoListener))),
    );
    let mut conn = ConnBuilder::new()
        .pkg_option(option)
        .connect(&addr)
        .await
        .expect("connect");
    for data in [&b""[..], b"core", &[5u8; 100_000][..]] {
        let reply = within(LIMIT, conn.send_recv_pkg(data)).await.expect("echo");
        assert_eq!(&reply[..], data);
    }
    drop(conn);
    handle.shutdown(LIMIT).await;
}
