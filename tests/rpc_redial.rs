//! Redialing under refusal over 127.0.0.1: a dialed session whose
//! credential stops being accepted does not redial forever.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use getty::rpc::{
    plugin::{AuthBearer, AuthChecker},
    CallCtx, Message, Peer, Router, Status,
};

/// A server that accepts the first authentication and refuses every later
/// one (a credential revoked after the first session), counting checks.
async fn revoking_server(checks: Arc<AtomicUsize>) -> (Peer, String) {
    let checker = AuthChecker::new(move |_: &getty::Session<Message>, _: String| {
        if checks.fetch_add(1, Ordering::SeqCst) == 0 {
            Ok("welcome")
        } else {
            Err(Status::framework_with(Status::CODE_UNAUTHORIZED, "revoked"))
        }
    });
    let server = Peer::builder()
        .router(Router::new().call("/ping", |_: CallCtx, _: ()| async {
            Ok::<_, Status>("pong")
        }))
        .session_layer(checker)
        .build();
    let addr = server.listen("127.0.0.1:0").await.unwrap().local_addr();
    (server, addr.to_string())
}

#[tokio::test]
async fn refused_redials_stop_after_redial_times_in_a_row() {
    let checks = Arc::new(AtomicUsize::new(0));
    let (server, addr) = revoking_server(Arc::clone(&checks)).await;
    let client = Peer::builder()
        .session_layer(AuthBearer::new("token".to_owned()))
        .redial_times(Some(2))
        .redial_interval(Duration::from_millis(20))
        .build();
    let session = client.dial(&addr).await.unwrap();
    let pong: String = session.call("/ping", ()).await.unwrap();
    assert_eq!(pong, "pong");

    for s in server.sessions() {
        s.close();
    }
    // Two redials, both refused, then no more: 1 + 2 checks, however long
    // we wait (at 20 ms a redial, 1 s would allow about 50 more).
    let start = Instant::now();
    while checks.load(Ordering::SeqCst) < 3 && start.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(checks.load(Ordering::SeqCst), 3, "redials after refusals");
    assert!(!session.is_healthy());
    let err = session.call::<_, String>("/ping", ()).await.unwrap_err();
    assert_eq!(err.code(), Status::CODE_CONN_CLOSED);
}

#[tokio::test]
async fn without_a_redial_limit_refused_redials_go_on() {
    let checks = Arc::new(AtomicUsize::new(0));
    let (server, addr) = revoking_server(Arc::clone(&checks)).await;
    let client = Peer::builder()
        .session_layer(AuthBearer::new("token".to_owned()))
        .redial_interval(Duration::from_millis(20))
        .build();
    let session = client.dial(&addr).await.unwrap();
    let _: String = session.call("/ping", ()).await.unwrap();
    for s in server.sessions() {
        s.close();
    }
    let start = Instant::now();
    while checks.load(Ordering::SeqCst) < 6 && start.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        checks.load(Ordering::SeqCst) >= 6,
        "erpc's unlimited redial stopped"
    );
    session.close();
}
