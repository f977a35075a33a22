//! The tower face of the RPC client over 127.0.0.1: `Channel` as a
//! `Service<Call>` whose `poll_ready` is the session's outbound readiness,
//! tower's own layers on it, and `Balanced` over several servers.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use getty::{
    rpc::{codec::CodecId, codec::Raw, Balanced, Call, CallCtx, Channel, Peer, Router, Status},
    SessionConfig,
};
use tower::{Service, ServiceBuilder, ServiceExt};

async fn sleep(_: CallCtx, ms: u64) -> Result<u64, Status> {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Ok(ms)
}

/// A server that counts the calls it answers.
async fn counting_server(hits: Arc<AtomicUsize>) -> (Peer, String) {
    let echo = move |_: CallCtx, arg: Raw| {
        let hits = Arc::clone(&hits);
        async move {
            hits.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Status>(arg)
        }
    };
    let peer = Peer::builder()
        .router(Router::new().call("/echo", echo).call("/sleep", sleep))
        .build();
    let handle = peer.listen("127.0.0.1:0").await.unwrap();
    (peer, handle.local_addr().to_string())
}

fn ping() -> Call {
    Call::new("/echo", CodecId::PLAIN, "ping")
}

#[tokio::test]
async fn a_channel_answers_calls_and_towers_timeout_bounds_them() {
    let (_server, addr) = counting_server(Arc::default()).await;
    let session = Peer::builder().build().dial(&addr).await.unwrap();
    let mut channel = Channel::new(session.clone());
    let reply = channel.ready().await.unwrap().call(ping()).await.unwrap();
    assert_eq!(&reply.body[..], b"ping");

    let mut bounded = ServiceBuilder::new()
        .timeout(Duration::from_millis(100))
        .service(Channel::new(session.clone()));
    let slow = Call::encode("/sleep", 2_000u64, CodecId::JSON, &Default::default()).unwrap();
    let err = bounded.ready().await.unwrap().call(slow).await.unwrap_err();
    assert!(err.is::<tower::timeout::error::Elapsed>(), "{err}");
    // The abandoned call left nothing waiting.
    assert_eq!(session.pending_calls(), 0);
}

#[tokio::test]
async fn a_peer_that_stops_reading_makes_the_channel_not_ready_and_load_shed_refuses() {
    // Accepts and never reads: the client's socket, then its queue, fill.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let holder = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(socket);
    });
    let client = Peer::builder()
        .session_config(
            SessionConfig::default()
                .queue_capacity(4)
                .max_packet_len(1 << 20),
        )
        .call_timeout(Some(Duration::from_secs(20)))
        .build();
    let session = client.dial(&addr).await.unwrap();
    let mut shed = ServiceBuilder::new()
        .load_shed()
        .service(Channel::new(session));
    let body = bytes::Bytes::from(vec![b'x'; 512 * 1024]);
    let mut sent = 0;
    let mut overloaded = false;
    for _ in 0..400 {
        let call = Call::new("/echo", CodecId::PLAIN, body.clone());
        let fut = shed.ready().await.unwrap().call(call);
        match tokio::time::timeout(Duration::from_millis(50), fut).await {
            Ok(Err(e)) if e.is::<tower::load_shed::error::Overloaded>() => {
                overloaded = true;
                break;
            }
            Ok(other) => panic!("unexpected answer from a peer that never reads: {other:?}"),
            Err(_) => sent += 1, // accepted and waiting for a reply
        }
        // Let the session's task move what it can into the socket.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(overloaded, "never refused after {sent} calls of 512 KiB");
    assert!(
        sent >= 4,
        "refused before even the queue was full ({sent} sent)"
    );
    holder.abort();
}

#[tokio::test]
async fn balanced_calls_reach_every_server_and_avoid_one_that_is_down() {
    let hits_a = Arc::new(AtomicUsize::new(0));
    let hits_b = Arc::new(AtomicUsize::new(0));
    let (server_a, addr_a) = counting_server(Arc::clone(&hits_a)).await;
    let (_server_b, addr_b) = counting_server(Arc::clone(&hits_b)).await;
    let client = Peer::builder()
        .redial_interval(Duration::from_millis(50))
        .build();
    let mut balanced = Balanced::dial(&client, [addr_a.clone(), addr_b.clone()])
        .await
        .unwrap();
    for _ in 0..200 {
        balanced.ready().await.unwrap().call(ping()).await.unwrap();
    }
    let (a, b) = (hits_a.load(Ordering::SeqCst), hits_b.load(Ordering::SeqCst));
    assert_eq!(a + b, 200);
    assert!(a > 20 && b > 20, "p2c left a server nearly idle: {a} / {b}");

    server_a.shutdown(Duration::from_millis(200)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before_b = hits_b.load(Ordering::SeqCst);
    for i in 0..50 {
        let reply = tokio::time::timeout(Duration::from_secs(2), async {
            balanced.ready().await?.call(ping()).await
        })
        .await
        .unwrap_or_else(|_| panic!("call {i} hung with one server down"));
        reply.unwrap_or_else(|e| panic!("call {i} failed with one server down: {e}"));
    }
    assert_eq!(hits_b.load(Ordering::SeqCst) - before_b, 50);
}

#[tokio::test]
async fn a_redialing_channel_waits_for_the_server_to_come_back() {
    let hits = Arc::new(AtomicUsize::new(0));
    let (server, addr) = counting_server(Arc::clone(&hits)).await;
    let client = Peer::builder()
        .redial_interval(Duration::from_millis(50))
        .build();
    let session = client.dial(&addr).await.unwrap();
    let mut channel = Channel::new(session.clone());
    channel.ready().await.unwrap().call(ping()).await.unwrap();

    server.shutdown(Duration::from_millis(200)).await;
    for _ in 0..100 {
        if !session.is_healthy() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!session.is_healthy());
    // A plain call fails at once while no connection is up ...
    let err = session.call::<_, String>("/echo", "x").await.unwrap_err();
    assert_eq!(err.code(), Status::CODE_CONN_CLOSED);

    // ... while the channel is not ready until the server is back.
    let restarted = Peer::builder()
        .router(
            Router::new().call("/echo", |_: CallCtx, arg: Raw| async move {
                Ok::<_, Status>(arg)
            }),
        )
        .build();
    let mut readiness = Box::pin(async move { channel.ready().await.map(|c| c.call(ping())) });
    assert!(
        tokio::time::timeout(Duration::from_millis(200), &mut readiness)
            .await
            .is_err(),
        "ready with no server to call"
    );
    let _handle = restarted.listen(&addr).await.unwrap();
    let call = tokio::time::timeout(Duration::from_secs(5), readiness)
        .await
        .expect("the channel never became ready after the server came back")
        .unwrap();
    let reply = call.await.unwrap();
    assert_eq!(&reply.body[..], b"ping");
}
