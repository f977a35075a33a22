//! The outbound side of a session: backpressure, `try_send`, `send_timeout`,
//! raw bytes, `flush`, and what closing does to sends.
mod common;

use std::{net::SocketAddr, time::Duration};

use bytes::Bytes;
use common::*;
use getty::{Addr, EndpointKind, Registry, SendError, Session, SessionConfig};
use tokio::{
    io::AsyncReadExt,
    net::{TcpSocket, TcpStream},
    time::Instant,
};

const LIMIT: Duration = Duration::from_secs(5);
/// A packet big enough that a few fill the socket buffers.
const BIG: usize = 256 * 1024;

fn detached(capacity: usize) -> Session<u32> {
    Session::new(
        EndpointKind::Detached,
        Addr::Unknown,
        Addr::Unknown,
        SessionConfig::default().queue_capacity(capacity),
    )
}

async fn only_session<W>(registry: &Registry<W>) -> Session<W> {
    eventually(LIMIT, "exactly one session registered", || {
        registry.len() == 1
    })
    .await;
    registry.sessions().pop().expect("one session")
}

/// A raw client with a small receive buffer, so a peer that does not read
/// stalls the server's writes quickly.
async fn small_window_client(addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(addr).await.unwrap()
}

async fn expect_eof(s: &mut TcpStream) {
    let mut buf = [0u8; 64];
    let n = within(LIMIT, s.read(&mut buf))
        .await
        .expect("read after close");
    assert_eq!(n, 0, "expected EOF, got {:?}", &buf[..n]);
}

/// Queues big packets until no room appears for 300 ms: the peer does not
/// read, the socket and the driver's buffer are full, and the queue is too.
/// Returns how many were accepted.
async fn fill_until_stuck(s: &Session, pkg: &Bytes) -> usize {
    within(Duration::from_secs(20), async {
        let mut accepted = 0;
        loop {
            match s
                .send_timeout(pkg.clone(), Duration::from_millis(300))
                .await
            {
                Ok(()) => accepted += 1,
                Err(SendError::Timeout) => return accepted,
                Err(e) => panic!("unexpected {e:?}"),
            }
            assert!(accepted < 1000, "the queue never filled up");
        }
    })
    .await
}

#[test]
fn try_send_returns_blocked_when_the_queue_is_full() {
    let s = detached(2);
    assert_eq!(s.try_send(1), Ok(()));
    assert_eq!(s.try_send(2), Ok(()));
    assert_eq!(s.try_send(3), Err(SendError::Blocked));
    assert_eq!(s.try_send(4), Err(SendError::Blocked));
    s.close();
    assert_eq!(s.try_send(5), Err(SendError::Closed));
}

#[tokio::test]
async fn send_timeout_returns_timeout_when_no_room_appears() {
    let s = detached(1);
    assert_eq!(s.send_timeout(1, Duration::from_millis(50)).await, Ok(()));
    let start = Instant::now();
    assert_eq!(
        s.send_timeout(2, Duration::from_millis(100)).await,
        Err(SendError::Timeout)
    );
    assert!(start.elapsed() >= Duration::from_millis(100));
}

#[tokio::test]
async fn a_send_waiting_for_room_fails_with_closed_when_the_session_closes() {
    let s = detached(1);
    s.try_send(1).unwrap();
    let mut waiting = tokio_test::task::spawn(s.send(2));
    assert!(waiting.poll().is_pending(), "no room: send must wait");
    s.close();
    assert!(waiting.is_woken(), "close must wake a waiting sender");
    assert_eq!(
        waiting.poll(),
        std::task::Poll::Ready(Err(SendError::Closed))
    );
}

#[tokio::test]
async fn send_waits_for_room_while_the_peer_does_not_read() {
    let (server, _log) = recording_server(SessionConfig::default().queue_capacity(2)).await;
    let mut raw = small_window_client(server.local_addr()).await;
    let s = only_session(server.sessions()).await;

    let big = Bytes::from(vec![7u8; BIG]);
    let accepted = fill_until_stuck(&s, &big).await;
    assert!(accepted >= 2, "accepted {accepted}");
    assert_eq!(s.try_send(big.clone()), Err(SendError::Blocked));

    let pending = tokio::spawn({
        let s = s.clone();
        async move { s.send(Bytes::from_static(b"last")).await }
    });
    // Nothing reads, so no room can appear: the send keeps waiting.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !pending.is_finished(),
        "send returned while the queue was full"
    );

    // The peer reads: room appears and the send completes, in order.
    for i in 0..accepted {
        assert_eq!(read_frame(&mut raw).await.len(), BIG, "packet {i}");
    }
    assert_eq!(read_frame(&mut raw).await, b"last");
    assert_eq!(within(LIMIT, pending).await.unwrap(), Ok(()));
    server.shutdown(LIMIT).await;
}

#[tokio::test]
async fn send_bytes_and_send_bytes_vectored_bypass_the_encoder() {
    let (server, _log) = recording_server(SessionConfig::default()).await;
    let mut raw = TcpStream::connect(server.local_addr()).await.unwrap();
    let s = only_session(server.sessions()).await;

    s.send_bytes(Bytes::from_static(b"raw:")).await.unwrap();
    s.send_bytes_vectored(vec![
        Bytes::from_static(b"one"),
        Bytes::new(),
        Bytes::from_static(b"two"),
    ])
    .await
    .unwrap();
    s.send(Bytes::from_static(b"pk")).await.unwrap();

    let want: &[u8] = b"raw:onetwo\x00\x00\x00\x02pk";
    let mut got = vec![0u8; want.len()];
    within(LIMIT, raw.read_exact(&mut got)).await.unwrap();
    assert_eq!(got, want);
    eventually(LIMIT, "bytes counted", || {
        s.stats().bytes_out == want.len() as u64
    })
    .await;
    assert_eq!(s.stats().packets_out, 1, "raw bytes are not packets");
    server.shutdown(LIMIT).await;
}

#[tokio::test]
async fn flush_resolves_after_everything_queued_before_it_was_written() {
    let (server, _log) = recording_server(SessionConfig::default()).await;
    let mut raw = TcpStream::connect(server.local_addr()).await.unwrap();
    let s = only_session(server.sessions()).await;

    for p in ["first", "second", "third"] {
        s.send(Bytes::from(p)).await.unwrap();
    }
    within(LIMIT, s.flush()).await.unwrap();
    // Everything before the flush crossed the socket when it resolved.
    assert_eq!(s.stats().bytes_out, (4 + 5) + (4 + 6) + (4 + 5));
    for p in ["first", "second", "third"] {
        assert_eq!(read_frame(&mut raw).await, p.as_bytes());
    }
    server.shutdown(LIMIT).await;
}

#[tokio::test]
async fn flush_waits_while_the_peer_does_not_read() {
    let (server, _log) = recording_server(SessionConfig::default()).await;
    let mut raw = small_window_client(server.local_addr()).await;
    let s = only_session(server.sessions()).await;

    // 16 MiB: far more than the socket buffers hold.
    let count = 64;
    let big = Bytes::from(vec![1u8; BIG]);
    for _ in 0..count {
        within(LIMIT, s.send(big.clone())).await.unwrap();
    }
    let flushing = tokio::spawn({
        let s = s.clone();
        async move { s.flush().await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !flushing.is_finished(),
        "flush resolved before the peer read anything"
    );

    for i in 0..count {
        assert_eq!(read_frame(&mut raw).await.len(), BIG, "packet {i}");
    }
    assert_eq!(within(LIMIT, flushing).await.unwrap(), Ok(()));
    assert_eq!(s.stats().bytes_out, (count * (4 + BIG)) as u64);
    server.shutdown(LIMIT).await;
}

#[tokio::test]
async fn sends_accepted_before_close_are_written_before_the_socket_closes() {
    let (server, log) = recording_server(SessionConfig::default()).await;
    let mut raw = TcpStream::connect(server.local_addr()).await.unwrap();
    let s = only_session(server.sessions()).await;

    let n = 500;
    for i in 0..n {
        s.send(Bytes::from(format!("pkt-{i}"))).await.unwrap();
    }
    s.close();
    for i in 0..n {
        assert_eq!(read_frame(&mut raw).await, format!("pkt-{i}").as_bytes());
    }
    expect_eof(&mut raw).await;
    within(LIMIT, s.finished()).await;
    assert_eq!(s.stats().packets_out, n as u64);
    assert_eq!(log.events(), ["open", "close"]);
    server.shutdown(LIMIT).await;
}

#[tokio::test]
async fn every_send_after_close_fails_with_closed() {
    let (server, _log) = recording_server(SessionConfig::default()).await;
    let _raw = TcpStream::connect(server.local_addr()).await.unwrap();
    let s = only_session(server.sessions()).await;

    s.close();
    let p = || Bytes::from_static(b"late");
    assert_eq!(s.send(p()).await, Err(SendError::Closed));
    assert_eq!(s.try_send(p()), Err(SendError::Closed));
    assert_eq!(
        s.send_timeout(p(), Duration::from_secs(1)).await,
        Err(SendError::Closed)
    );
    assert_eq!(s.send_bytes(p()).await, Err(SendError::Closed));
    assert_eq!(
        s.send_bytes_vectored(vec![p()]).await,
        Err(SendError::Closed)
    );
    assert_eq!(s.flush().await, Err(SendError::Closed));

    within(LIMIT, s.finished()).await;
    assert_eq!(s.send(p()).await, Err(SendError::Closed));
    assert_eq!(s.stats().packets_out, 0);
    server.shutdown(LIMIT).await;
}
