//! Counting allocations: sessions on one thread take turns with the
//! thread's read and write buffers rather than each holding its own, and a
//! packet a handler keeps is never overwritten by another session reading
//! into the buffer it came from. Alone in its own test binary because the
//! counting allocator is process-wide.

use std::{
    alloc::System,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use futures_util::future::join_all;
use getty::{
    codec::LengthCodec,
    new_session_fn,
    rpc::{
        codec::{CodecId, Raw},
        CallCtx, Peer, Router, Status,
    },
    BoxError, EventListener, ListenerService, Server, ServerHandle, Session,
};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use tokio::net::TcpStream;

mod common;
use common::{read_frame, write_frame};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Echoes each packet; when `kept` is given, keeps it too.
struct Echo(Option<Arc<Mutex<Vec<Bytes>>>>);

impl EventListener<Bytes> for Echo {
    fn on_message(&mut self, _: &Session, pkg: Bytes) -> Option<Bytes> {
        if let Some(kept) = &self.0 {
            kept.lock().expect("not poisoned").push(pkg.clone());
        }
        Some(pkg)
    }
}

async fn echo_server(kept: Option<Arc<Mutex<Vec<Bytes>>>>) -> ServerHandle {
    let server = Server::builder().bind("127.0.0.1:0").await.expect("bind");
    server.serve(
        LengthCodec::new(),
        new_session_fn(move |_: &Session| {
            Ok::<_, BoxError>(ListenerService::new(Echo(kept.clone())))
        }),
    )
}

/// Sends `payload` as one frame and checks that it comes back.
async fn round_trip(client: &mut TcpStream, payload: &[u8]) {
    write_frame(client, payload).await;
    assert_eq!(
        read_frame(client).await,
        payload,
        "the echo is the packet sent"
    );
}

const SESSIONS: usize = 100;

#[tokio::test(flavor = "current_thread")]
async fn sessions_taking_turns_hold_the_threads_buffers_not_a_pair_each() {
    let server = echo_server(None).await;
    let mut clients = Vec::with_capacity(SESSIONS);
    let region = Region::new(GLOBAL);
    for _ in 0..SESSIONS {
        clients.push(
            TcpStream::connect(server.local_addr())
                .await
                .expect("connect"),
        );
    }
    // Every session reads and writes, in turn.
    for round in 0..3u8 {
        for client in &mut clients {
            round_trip(client, &[round; 500]).await;
        }
    }
    let change = region.change();
    let held = change.bytes_allocated as isize - change.bytes_deallocated as isize
        + change.bytes_reallocated;

    // A read and a write buffer of its own for each session that read and
    // wrote would hold 100 × 2 × 64 KiB, 12.5 MiB. Taking turns with the
    // thread's, the sessions hold what a session is (a few KiB each) and the
    // thread's two buffers.
    assert!(
        held < 2 * 1024 * 1024,
        "100 sessions that each read and wrote hold {held} bytes"
    );
    server.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_kept_packet_is_not_overwritten_while_other_sessions_read_and_write() {
    let kept = Arc::new(Mutex::new(Vec::new()));
    let server = echo_server(Some(Arc::clone(&kept))).await;
    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(
            TcpStream::connect(server.local_addr())
                .await
                .expect("connect"),
        );
    }
    // Each client's packets are distinct (client, round) fills; the
    // sessions take turns on the one thread while every packet is kept.
    let payload = |client: usize, round: usize| vec![(client * 31 + round) as u8; 300 + client];
    for round in 0..40 {
        for (i, client) in clients.iter_mut().enumerate() {
            round_trip(client, &payload(i, round)).await;
        }
    }
    let kept = kept.lock().expect("not poisoned").clone();
    assert_eq!(kept.len(), 8 * 40);
    for (n, packet) in kept.iter().enumerate() {
        let (round, client) = (n / 8, n % 8);
        assert_eq!(
            packet[..],
            payload(client, round)[..],
            "kept packet {n} (client {client}, round {round}) changed"
        );
    }
    server.shutdown(Duration::from_secs(5)).await;
}

async fn rpc_echo(_: CallCtx, body: Raw) -> Result<Raw, Status> {
    Ok(body)
}

/// An RPC client with a call in flight on each of many sessions: a
/// session's driver reads its reply and waits again before the caller's
/// task takes the reply, so the read buffer is still shared with the
/// reply's body when the session would give it back. The unused rest of
/// it is lent on to the next session instead of each reply costing a
/// fresh buffer.
#[tokio::test(flavor = "current_thread")]
async fn replies_waiting_for_their_callers_do_not_cost_a_read_buffer_each() {
    const CLIENTS: usize = 20;
    const ROUNDS: usize = 25;
    let server = Peer::builder()
        .router(Router::new().call("/echo", rpc_echo))
        .build();
    let addr = server
        .listen("127.0.0.1:0")
        .await
        .expect("listen")
        .local_addr();
    let client = Peer::builder().build();
    let mut sessions = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        sessions.push(client.dial(addr.to_string()).await.expect("dial"));
    }
    let body = |i: usize, round: usize| Bytes::from(vec![(i * 7 + round) as u8; 581]);
    let call_all = |round: usize| {
        join_all(
            sessions
                .iter()
                .enumerate()
                .map(move |(i, session)| async move {
                    let Raw(reply) = session
                        .call("/echo", Raw(body(i, round)))
                        .codec(CodecId::PLAIN)
                        .await
                        .expect("echoed");
                    assert_eq!(reply, body(i, round), "session {i}'s own reply");
                }),
        )
    };
    // Every session has read and written once: their state is in place.
    call_all(0).await;
    let region = Region::new(GLOBAL);
    for round in 1..=ROUNDS {
        call_all(round).await;
    }
    let per_call = region.change().bytes_allocated / (CLIENTS * ROUNDS);

    // A 64 KiB read buffer per reply would be over 65,536 bytes a call;
    // what a call needs of its own (its body, the queue's and the table's
    // entries) is a few KiB.
    assert!(
        per_call < 16 * 1024,
        "{per_call} bytes allocated per call (client and server together)"
    );
    client.shutdown(Duration::from_secs(5)).await;
    server.shutdown(Duration::from_secs(5)).await;
}
