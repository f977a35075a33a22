//! Driver behaviour that is about the loop itself: batching and fairness.
mod common;

use std::time::Duration;

use common::*;
use getty::SessionConfig;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

#[tokio::test]
async fn pipelined_packets_are_answered_with_batched_writes() {
    let (server, _log) = recording_server(SessionConfig::default()).await;
    let mut s = TcpStream::connect(server.local_addr()).await.unwrap();
    let mut burst = Vec::new();
    for i in 0..1000u32 {
        burst.extend_from_slice(&frame(format!("p{i}").as_bytes()));
    }
    s.write_all(&burst).await.unwrap();
    for i in 0..1000u32 {
        assert_eq!(read_frame(&mut s).await, format!("p{i}").as_bytes());
    }
    let session = server
        .sessions()
        .sessions()
        .pop()
        .expect("one live session");
    let stats = session.stats();
    assert_eq!(stats.packets_out, 1000);
    assert_eq!(stats.bytes_out, stats.bytes_in);
    assert!(
        stats.writes * 10 <= stats.packets_out,
        "expected batched writes, got {} writes for {} packets",
        stats.writes,
        stats.packets_out
    );
    server.shutdown(Duration::from_secs(1)).await;
}

/// On a one-thread runtime, a peer that floods its session with packets
/// must not keep another session from being served.
#[tokio::test(flavor = "current_thread")]
async fn a_flooding_session_does_not_starve_a_quiet_one() {
    let (server, _log) = recording_server(SessionConfig::default()).await;
    let addr = server.local_addr();

    // The flooder writes 20 MB of small frames from another thread (so the
    // runtime under test only runs the server) and drains the echoes.
    let flood = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        let mut reader = s.try_clone().unwrap();
        let drain = std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            let mut total = 0usize;
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                total += n;
            }
            total
        });
        let chunk: Vec<u8> = (0..1000).flat_map(|_| frame(&[7u8; 16])).collect();
        for _ in 0..1000 {
            if s.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = s.shutdown(std::net::Shutdown::Write);
        drain.join().unwrap()
    });

    // Wait until the flood is being served, then time a quiet round trip.
    eventually(Duration::from_secs(5), "the flooder's session", || {
        server
            .sessions()
            .sessions()
            .iter()
            .any(|s| s.stats().packets_in > 10_000)
    })
    .await;
    let mut quiet = TcpStream::connect(addr).await.unwrap();
    write_frame(&mut quiet, b"ping").await;
    let reply = within(Duration::from_secs(2), read_frame(&mut quiet)).await;
    assert_eq!(reply, b"ping");
    let flooder = server
        .sessions()
        .sessions()
        .into_iter()
        .max_by_key(|s| s.stats().packets_in)
        .unwrap();
    assert!(
        flooder.stats().packets_in < 1_000_000,
        "the quiet session was served only after the flood ended"
    );

    let mut rest = Vec::new();
    drop(quiet.shutdown().await);
    let _ = quiet.read_to_end(&mut rest).await;
    let echoed = tokio::task::spawn_blocking(move || flood.join().unwrap())
        .await
        .unwrap();
    assert_eq!(echoed, 1_000_000 * 20);
    server.shutdown(Duration::from_secs(2)).await;
}
