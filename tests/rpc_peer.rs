//! The RPC peer over real sockets on 127.0.0.1: calls, replies, pushes,
//! statuses, timeouts and the end of a session.

use std::time::Duration;

use getty::rpc::{codec::Raw, CallCtx, Peer, PushCtx, Router, Status};
use tokio::sync::mpsc;

async fn echo(_: CallCtx, arg: Raw) -> Result<Raw, Status> {
    Ok(arg)
}

async fn fail(_: CallCtx, _: ()) -> Result<(), Status> {
    Err(Status::new(1234, "home fail"))
}

async fn sleep(_: CallCtx, ms: u64) -> Result<u64, Status> {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Ok(ms)
}

async fn push_me(ctx: CallCtx, _: ()) -> Result<String, Status> {
    ctx.push("/push/hello", "world").await?;
    Ok("pushed".into())
}

async fn panics(_: CallCtx, _: ()) -> Result<(), Status> {
    panic!("boom")
}

fn home() -> Router {
    Router::new().nest(
        "/home",
        Router::new()
            .call("/echo", echo)
            .call("/fail", fail)
            .call("/sleep", sleep)
            .call("/push_me", push_me)
            .call("/panics", panics),
    )
}

async fn server() -> (Peer, std::net::SocketAddr) {
    let peer = Peer::builder().router(home()).build();
    let handle = peer.listen("127.0.0.1:0").await.unwrap();
    (peer, handle.local_addr())
}

#[tokio::test]
async fn a_call_gets_its_typed_reply_and_a_failing_one_its_status() {
    let (_server, addr) = server().await;
    let client = Peer::builder().build();
    let session = client.dial(addr.to_string()).await.unwrap();
    let reply: Vec<i32> = session.call("/home/echo", vec![1, 2, 3]).await.unwrap();
    assert_eq!(reply, [1, 2, 3]);
    let err = session.call::<_, ()>("/home/fail", ()).await.unwrap_err();
    assert_eq!((err.code(), err.msg()), (1234, "home fail"));
    let err = session.call::<_, ()>("/home/nope", ()).await.unwrap_err();
    assert_eq!(err.code(), Status::CODE_NOT_FOUND);
}

#[tokio::test]
async fn a_panicking_handler_answers_500_and_the_session_carries_on() {
    let (_server, addr) = server().await;
    let session = Peer::builder()
        .build()
        .dial(addr.to_string())
        .await
        .unwrap();
    let err = session.call::<_, ()>("/home/panics", ()).await.unwrap_err();
    assert_eq!(err.code(), 500);
    assert!(err.to_string().contains("boom"), "{err}");
    let reply: String = session.call("/home/echo", "still here").await.unwrap();
    assert_eq!(reply, "still here");
}

#[tokio::test]
async fn replies_come_back_in_completion_order() {
    let (_server, addr) = server().await;
    let session = Peer::builder()
        .build()
        .dial(addr.to_string())
        .await
        .unwrap();
    let slow = session.call::<_, u64>("/home/sleep", 800u64);
    let slow = tokio::spawn(async move { slow.await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let quick: u64 = session
        .call("/home/sleep", 1u64)
        .timeout(Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(quick, 1);
    assert!(
        !slow.is_finished(),
        "the quick call waited behind the slow one"
    );
    assert_eq!(slow.await.unwrap().unwrap(), 800);
}

#[tokio::test]
async fn a_call_that_times_out_gets_408_and_its_late_reply_is_dropped() {
    let (_server, addr) = server().await;
    let session = Peer::builder()
        .build()
        .dial(addr.to_string())
        .await
        .unwrap();
    let err = session
        .call::<_, u64>("/home/sleep", 300u64)
        .timeout(Duration::from_millis(50))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Status::CODE_HANDLE_TIMEOUT);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(session.late_replies(), 1);
    let reply: u64 = session.call("/home/sleep", 2u64).await.unwrap();
    assert_eq!(reply, 2);
}

#[tokio::test]
async fn a_handler_pushes_to_its_caller_before_replying() {
    let (_server, addr) = server().await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let on_hello = move |ctx: PushCtx, who: String| {
        let tx = tx.clone();
        async move {
            let _ = tx.send((ctx.service_method().to_owned(), who));
            Ok(())
        }
    };
    let client = Peer::builder()
        .router(Router::new().push("/push/hello", on_hello))
        .build();
    let session = client.dial(addr.to_string()).await.unwrap();
    let reply: String = session.call("/home/push_me", ()).await.unwrap();
    assert_eq!(reply, "pushed");
    let pushed = tokio::time::timeout(Duration::from_secs(2), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pushed, ("/push/hello".to_owned(), "world".to_owned()));
}

#[tokio::test]
async fn when_the_server_goes_away_every_waiting_call_fails_at_once_with_102() {
    let (server, addr) = server().await;
    let session = Peer::builder()
        .redial_times(Some(0))
        .call_timeout(None)
        .build()
        .dial(addr.to_string())
        .await
        .unwrap();
    let calls: Vec<_> = (0..3)
        .map(|_| {
            let call = session.call::<_, u64>("/home/sleep", 10_000u64);
            tokio::spawn(async move { call.await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(session.pending_calls(), 3);
    let started = std::time::Instant::now();
    server.shutdown(Duration::from_millis(100)).await;
    for call in calls {
        let err = tokio::time::timeout(Duration::from_secs(2), call)
            .await
            .expect("a waiting call outlived its session")
            .unwrap()
            .unwrap_err();
        assert_eq!(err.code(), Status::CODE_CONN_CLOSED, "{err}");
    }
    assert!(started.elapsed() < Duration::from_secs(2));
}
