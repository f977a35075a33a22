//! What a WebSocket server holds in memory, counted by a global allocator
//! that records every allocation of this test binary: an idle session costs
//! the same whatever it received before, and a peer that pings without
//! reading cannot make the server hold more than a bounded amount.
//!
//! The peers are raw sockets with hand-written frames, so the client side
//! holds no buffer between calls and what grows is the server's. The two
//! tests share the allocator's counters, so they take turns.

mod common;
mod ws_raw;

use std::{
    alloc::System,
    net::SocketAddr,
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc,
    },
    time::Duration,
};

use common::{eventually, within};
use getty::{new_session_fn, BoxError, Request, Server, ServerHandle, Session, SessionConfig};
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};
use tokio::{io::AsyncWriteExt, net::TcpStream, time::Instant};
use tokio_util::codec::BytesCodec;
use ws_raw::{client_frame, connect, read_data, BINARY, PING};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// The allocator's counters are global: one test at a time.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const LIMIT: Duration = Duration::from_secs(10);

/// Heap bytes held by the whole process right now (`stats_alloc` already
/// counts a reallocation's growth or shrinking in these two).
fn held() -> i64 {
    let s = GLOBAL.stats();
    s.bytes_allocated as i64 - s.bytes_deallocated as i64
}

/// A WebSocket echo server (one binary message is one packet).
async fn echo_server(config: SessionConfig) -> ServerHandle {
    let server = Server::builder()
        .session_config(config)
        .websocket("/ws")
        .bind("127.0.0.1:0")
        .await
        .expect("bind");
    server.serve(
        BytesCodec::new(),
        new_session_fn(|_: &Session| {
            Ok::<_, BoxError>(tower::service_fn(
                |req: Request<bytes::BytesMut>| async move {
                    Ok::<_, BoxError>(req.into_message().map(bytes::BytesMut::freeze))
                },
            ))
        }),
    )
}

/// Opens `n` raw WebSocket connections; with `message`, each sends it and
/// reads its echo back before the next one starts.
async fn open_sessions(
    addr: SocketAddr,
    n: usize,
    message: Option<&[u8]>,
    into: &mut Vec<TcpStream>,
) {
    for _ in 0..n {
        let mut s = connect(addr, "/ws").await;
        if let Some(message) = message {
            s.write_all(&client_frame(true, BINARY, message))
                .await
                .expect("write the message");
            let echo = read_data(&mut s, message.len()).await;
            assert_eq!(echo.payload.len(), message.len(), "the echo");
        }
        into.push(s);
    }
}

/// After the quiet period a WebSocket session that once carried a 1 MiB
/// message each way holds no more heap than one that never carried
/// anything: every read, write and reassembly buffer is given back.
#[tokio::test]
async fn an_idle_ws_session_holds_no_more_after_a_1_mib_message_than_a_fresh_one() {
    let _turn = TURN.lock().await;
    const N: usize = 16;
    const QUIET: Duration = Duration::from_millis(400);
    let server = echo_server(SessionConfig::default().max_packet_len(2 << 20)).await;
    let addr = server.local_addr();
    let message = vec![0x5au8; 1 << 20];
    let mut streams = Vec::with_capacity(4 * N);
    // Warm up: lazily made statics, the runtime's slabs and the like.
    open_sessions(addr, N, Some(&message), &mut streams).await;
    open_sessions(addr, N, None, &mut streams).await;
    eventually(LIMIT, "the warm-up sessions", || {
        server.session_count() == 2 * N
    })
    .await;
    tokio::time::sleep(QUIET).await;

    let before = held();
    open_sessions(addr, N, None, &mut streams).await;
    eventually(LIMIT, "the quiet sessions", || {
        server.session_count() == 3 * N
    })
    .await;
    tokio::time::sleep(QUIET).await;
    let quiet = held();

    open_sessions(addr, N, Some(&message), &mut streams).await;
    eventually(LIMIT, "the sessions that carried a message", || {
        server.session_count() == 4 * N
    })
    .await;
    tokio::time::sleep(QUIET).await;
    let busy = held();

    let per_quiet = (quiet - before) / N as i64;
    let per_busy = (busy - quiet) / N as i64;
    println!("idle ws session: {per_quiet} bytes fresh, {per_busy} bytes after a 1 MiB echo");
    assert!(
        per_busy <= per_quiet + 300,
        "an idle session holds {per_busy} bytes after one 1 MiB message, \
         {per_quiet} bytes when it never carried one"
    );
    drop(streams);
    within(LIMIT, server.shutdown(Duration::from_secs(2))).await;
}

/// A peer that floods pings and never reads: the server owes it at most one
/// pong, stops reading once that cannot be written, so what it holds stays
/// bounded, and the write timeout closes the connection.
#[tokio::test]
async fn a_peer_that_pings_without_reading_is_held_to_bounded_memory_and_cut_at_the_write_timeout()
{
    let _turn = TURN.lock().await;
    const FLOOD: usize = 50 << 20;
    const BOUND: i64 = 4 << 20;
    let write_timeout = Duration::from_secs(1);
    let server = echo_server(SessionConfig::default().write_timeout(Some(write_timeout))).await;
    let addr = server.local_addr();
    // One chunk of 500 pings with 125-byte payloads (the largest allowed).
    let ping = client_frame(true, PING, &[b'p'; 125]);
    let chunk: Vec<u8> = ping
        .iter()
        .copied()
        .cycle()
        .take(ping.len() * 500)
        .collect();

    let before = held();
    let peak = Arc::new(AtomicI64::new(0));
    let sampler = {
        let peak = Arc::clone(&peak);
        tokio::spawn(async move {
            loop {
                peak.fetch_max(held() - before, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let mut s = connect(addr, "/ws").await;
    eventually(LIMIT, "the session", || server.session_count() == 1).await;

    // Write until the flood is out, the server cuts the connection, or a
    // write has been stuck well past the write timeout.
    let start = Instant::now();
    let mut written = 0;
    let mut cut = false;
    while written < FLOOD && start.elapsed() < Duration::from_secs(30) {
        match tokio::time::timeout(write_timeout * 4, s.write_all(&chunk)).await {
            Ok(Ok(())) => written += chunk.len(),
            Ok(Err(_)) => {
                cut = true;
                break;
            }
            Err(_) => break,
        }
    }
    let flood_ended = start.elapsed();
    // However the flood ended, the server must drop the peer soon after.
    let closing = Instant::now();
    while server.session_count() > 0 && closing.elapsed() < write_timeout * 5 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let closed = server.session_count() == 0;
    sampler.abort();
    let peak = peak.load(Ordering::Relaxed);
    println!(
        "ping flood: {written} bytes written in {flood_ended:?} (cut: {cut}), \
         server growth peaked at {peak} bytes; closed {:?} later: {closed}",
        closing.elapsed()
    );
    assert!(
        peak < BOUND,
        "the server grew by {peak} bytes under a flood of {written} bytes of pings"
    );
    assert!(
        written < FLOOD,
        "the server read all {written} bytes of pings from a peer that reads nothing"
    );
    assert!(
        closed,
        "the flooding peer's session was still open {:?} after the flood ended",
        write_timeout * 5
    );
    // Cut by the write timeout: not before its pongs had been stuck that long.
    assert!(
        flood_ended >= write_timeout,
        "cut after {flood_ended:?}, before the {write_timeout:?} write timeout"
    );
    within(LIMIT, server.shutdown(Duration::from_secs(2))).await;
}
