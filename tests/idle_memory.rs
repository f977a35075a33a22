//! An idle session holds what a session that never sent anything holds,
//! whatever its history (issue 7, items 1 and 4): measured by counting the
//! heap bytes the server's process holds, with the clients in another
//! process (Python, `tests/peers/idle_client.py`) so that only the server
//! is counted.
//!
//! Each test first opens and closes sessions that send large packets, so
//! that what grows once per server and is kept (tokio's I/O slab, the
//! registry's table) has grown before anything is measured. Then it opens
//! `N` sessions that send nothing (or, on UDP, one tiny datagram) and
//! measures what each costs, then `N` that each send one large packet and
//! read its echo, and measures again after the quiet period.

use std::{
    alloc::System,
    io::{BufRead, BufReader, Write},
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use bytes::Bytes;
use getty::{
    codec::LengthCodec, new_session_fn, tls::ServerTlsConfig, BoxError, EventListener,
    ListenerService, Server, ServerHandle, Session, SessionConfig,
};
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// One measurement at a time: the counter is process-wide.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const N: usize = 40;
/// How much more an idle session that once moved a large packet may hold
/// than one that never sent anything.
const SLACK: i64 = 512;

fn heap_in_use() -> i64 {
    let s = GLOBAL.stats();
    s.bytes_allocated as i64 - s.bytes_deallocated as i64
}

struct Echo;

impl EventListener<Bytes> for Echo {
    fn on_message(&mut self, _: &Session, pkg: Bytes) -> Option<Bytes> {
        Some(pkg)
    }
}

fn serve(server: Server) -> ServerHandle {
    server.serve(
        LengthCodec::new(),
        new_session_fn(|_: &Session| Ok::<_, BoxError>(ListenerService::new(Echo))),
    )
}

/// A running Python client; closing its stdin makes it close its sockets.
struct Peer(Child);

impl Peer {
    fn start(transport: &str, addr: &str, count: usize, size: usize, ca: Option<&Path>) -> Peer {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/idle_client.py");
        let mut cmd = Command::new("python3");
        cmd.arg(script)
            .arg(transport)
            .arg(addr)
            .arg(count.to_string())
            .arg(size.to_string());
        if let Some(ca) = ca {
            cmd.arg(ca);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs the idle client");
        let stdout = child.stdout.take().expect("stdout");
        // Read on a thread so that a stuck client fails the test in time.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the client reports ready within 60 s");
        assert_eq!(line.trim(), "ready", "the client failed");
        Peer(child)
    }

    fn finish(mut self) {
        drop(self.0.stdin.take());
        let _ = self.0.wait();
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.0.stdin.take() {
            let _ = stdin.flush();
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_for_sessions(server: &ServerHandle, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while server.session_count() != n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "expected {n} sessions, have {}",
            server.session_count()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Heap bytes per session that `start` adds once its sessions are idle.
async fn cost_per_session(
    server: &ServerHandle,
    live: usize,
    start: impl FnOnce() -> Peer,
) -> (i64, Peer) {
    // The quiet period after which sessions give their buffers back is
    // 100 ms; wait well past it before each reading.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let before = heap_in_use();
    let peer = tokio::task::block_in_place(start);
    wait_for_sessions(server, live + N).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    ((heap_in_use() - before) / N as i64, peer)
}

/// Runs the warm-up and both measurements against `server`.
async fn compare(
    server: ServerHandle,
    transport: &str,
    addr: &str,
    big: usize,
    small: usize,
    ca: Option<&Path>,
) {
    let warm = tokio::task::block_in_place(|| Peer::start(transport, addr, 3 * N, big, ca));
    wait_for_sessions(&server, 3 * N).await;
    let live = if transport == "udp" {
        // A UDP session ends only on its read timeout: the warm-up ones stay.
        3 * N
    } else {
        warm.finish();
        wait_for_sessions(&server, 0).await;
        0
    };
    let (fresh, _fresh_peer) =
        cost_per_session(&server, live, || Peer::start(transport, addr, N, small, ca)).await;
    let (busy, _busy_peer) = cost_per_session(&server, live + N, || {
        Peer::start(transport, addr, N, big, ca)
    })
    .await;
    println!(
        "{transport}: {fresh} bytes per fresh idle session, {busy} after one {big}-byte packet"
    );
    assert!(
        busy <= fresh + SLACK,
        "{transport}: an idle session that moved one {big}-byte packet holds {busy} bytes, \
         one that did not {fresh} bytes"
    );
    assert_eq!(server.buffered_input(), 0, "idle sessions hold no input");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_tcp_session_holds_no_more_after_a_1_mb_packet() {
    let _serial = SERIAL.lock().await;
    let server = serve(Server::builder().bind("127.0.0.1:0").await.unwrap());
    let addr = server.local_addr().to_string();
    compare(server, "tcp", &addr, 1_000_000, 0, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_unix_session_holds_no_more_after_a_1_mb_packet() {
    let _serial = SERIAL.lock().await;
    let dir = std::env::temp_dir().join(format!("getty-idle-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("idle.sock");
    let server = serve(Server::builder().bind_unix(&path).unwrap());
    compare(server, "unix", path.to_str().unwrap(), 1_000_000, 0, None).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_tls_session_holds_no_more_after_a_1_mb_packet() {
    let _serial = SERIAL.lock().await;
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = std::env::temp_dir().join(format!("getty-idle-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let tls = ServerTlsConfig::from_pem_files(&cert_path, &key_path).unwrap();
    let server = serve(
        Server::builder()
            .tls(tls)
            .bind("127.0.0.1:0")
            .await
            .unwrap(),
    );
    let addr = server.local_addr().to_string();
    compare(server, "tls", &addr, 1_000_000, 0, Some(&cert_path)).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_udp_session_holds_no_more_after_a_60_kb_datagram() {
    let _serial = SERIAL.lock().await;
    let server = serve(
        Server::builder()
            .session_config(SessionConfig::default().read_timeout(Some(Duration::from_secs(60))))
            .bind_udp("127.0.0.1:0")
            .await
            .unwrap(),
    );
    let addr = server.local_addr().to_string();
    // A UDP session exists only once a datagram came: the baseline sends 8 bytes.
    compare(server, "udp", &addr, 60_000, 8, None).await;
}
