//! Counting allocations: a session whose earlier packets are still held
//! elsewhere (a reply on its way to a caller's task, a packet a handler
//! keeps) reads on into the rest of its read buffer; it does not allocate
//! a fresh 64 KiB buffer for every read. Alone in its own test binary
//! because the counting allocator is process-wide.

use std::{
    alloc::System,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use getty::{
    codec::LengthCodec, new_session_fn, BoxError, EventListener, ListenerService, Server, Session,
};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Echoes each packet and keeps it until the test ends.
struct Keeper(Arc<Mutex<Vec<Bytes>>>);

impl EventListener<Bytes> for Keeper {
    fn on_message(&mut self, _: &Session, pkg: Bytes) -> Option<Bytes> {
        self.0.lock().expect("not poisoned").push(pkg.clone());
        Some(pkg)
    }
}

const ROUND_TRIPS: usize = 200;
const PAYLOAD: usize = 100;

#[tokio::test(flavor = "current_thread")]
async fn reads_while_earlier_packets_are_held_do_not_allocate_a_buffer_each() {
    let kept = Arc::new(Mutex::new(Vec::with_capacity(2 * ROUND_TRIPS)));
    let server = Server::builder().bind("127.0.0.1:0").await.expect("bind");
    let keeper = Arc::clone(&kept);
    let server = server.serve(
        LengthCodec::new(),
        new_session_fn(move |_: &Session| {
            Ok::<_, BoxError>(ListenerService::new(Keeper(Arc::clone(&keeper))))
        }),
    );
    let mut client = TcpStream::connect(server.local_addr())
        .await
        .expect("connect");
    let mut frame = (PAYLOAD as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&[7u8; PAYLOAD]);
    let mut echo = vec![0u8; frame.len()];
    let mut round_trip = async |client: &mut TcpStream| {
        client.write_all(&frame).await.expect("write");
        tokio::time::timeout(Duration::from_secs(10), client.read_exact(&mut echo))
            .await
            .expect("an echo within 10 s")
            .expect("read");
        assert_eq!(echo, frame, "the echo is the packet sent");
    };
    // The session's read buffer exists once the first packet came.
    for _ in 0..ROUND_TRIPS {
        round_trip(&mut client).await;
    }

    let region = Region::new(GLOBAL);
    for _ in 0..ROUND_TRIPS {
        round_trip(&mut client).await;
    }
    let change = region.change();
    let allocated = change.bytes_allocated + change.bytes_reallocated.max(0) as usize;

    assert_eq!(kept.lock().expect("not poisoned").len(), 2 * ROUND_TRIPS);
    // Every one of the packets is still held: a buffer per read would be
    // 200 × 64 KiB, 12.5 MiB. Reading into the buffer's rest, the held
    // packets (20 KiB of them) fill one more buffer at most.
    assert!(
        allocated < 512 * 1024,
        "{ROUND_TRIPS} round trips with their packets held allocated {allocated} bytes"
    );
    server.shutdown(Duration::from_secs(5)).await;
}
