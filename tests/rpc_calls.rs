//! What travels with a call over 127.0.0.1: codecs, the reply codec a
//! caller asks for, transfer filters, bad bodies, groups and their layers,
//! unknown routes, hostile frames and graceful shutdown.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use getty::rpc::{
    codec::{CodecId, Proto, Raw},
    xfer::{Gzip, Md5},
    CallCtx, Message, MessageType, Peer, PushCtx, Router, Status,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::mpsc,
};

async fn echo(_: CallCtx, arg: Raw) -> Result<Raw, Status> {
    Ok(arg)
}

async fn add(_: CallCtx, pair: (i64, i64)) -> Result<i64, Status> {
    Ok(pair.0 + pair.1)
}

async fn greet(_: CallCtx, name: String) -> Result<String, Status> {
    Ok(format!("hello {name}"))
}

async fn sleep(_: CallCtx, ms: u64) -> Result<u64, Status> {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Ok(ms)
}

#[derive(Clone, PartialEq, prost::Message)]
struct Pair {
    #[prost(int32, tag = "1")]
    a: i32,
    #[prost(int32, tag = "2")]
    b: i32,
}

async fn swap(_: CallCtx, Proto(p): Proto<Pair>) -> Result<Proto<Pair>, Status> {
    Ok(Proto(Pair { a: p.b, b: p.a }))
}

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Login {
    user: String,
    age: u32,
}

async fn login(_: CallCtx, form: Login) -> Result<String, Status> {
    Ok(format!("{} is {}", form.user, form.age))
}

fn router() -> Router {
    Router::new()
        .call("/echo", echo)
        .call("/add", add)
        .call("/greet", greet)
        .call("/sleep", sleep)
        .call("/swap", swap)
        .call("/login", login)
}

fn filtered() -> getty::rpc::PeerBuilder {
    Peer::builder()
        .xfer_filter(Gzip::new(5))
        .xfer_filter(Md5::new())
}

async fn serve(router: Router) -> (Peer, String) {
    let peer = filtered().router(router).build();
    let handle = peer.listen("127.0.0.1:0").await.unwrap();
    (peer, handle.local_addr().to_string())
}

async fn client(addr: &str) -> getty::rpc::Session {
    filtered().build().dial(addr).await.unwrap()
}

#[tokio::test]
async fn each_body_codec_carries_its_own_kind_of_value() {
    let (_server, addr) = serve(router()).await;
    let session = client(&addr).await;
    let sum: i64 = session.call("/add", (2, 40)).await.unwrap();
    assert_eq!(sum, 42);
    let hello: String = session
        .call("/greet", "ann")
        .codec(CodecId::PLAIN)
        .await
        .unwrap();
    assert_eq!(hello, "hello ann");
    let Proto(swapped) = session
        .call::<_, Proto<Pair>>("/swap", Proto(Pair { a: 1, b: 2 }))
        .await
        .unwrap();
    assert_eq!(swapped, Pair { a: 2, b: 1 });
    let text: String = session
        .call(
            "/login",
            Login {
                user: "bo b".into(),
                age: 7,
            },
        )
        .codec(CodecId::FORM)
        .accept_codec(CodecId::JSON)
        .await
        .unwrap();
    assert_eq!(text, "bo b is 7");
    // A form can only carry a struct or map: without asking for another
    // codec, the reply is in the call's, and a string cannot be one (erpc too).
    let err = session
        .call::<_, String>(
            "/login",
            Login {
                user: "c".into(),
                age: 1,
            },
        )
        .codec(CodecId::FORM)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Status::CODE_INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn a_raw_echo_answers_in_the_calls_codec_unless_the_caller_asks_for_another() {
    let (_server, addr) = serve(router()).await;
    let session = client(&addr).await;
    let call = Message::new(MessageType::Call, 0, "/echo").with_body(CodecId::PLAIN, "abc");
    let reply = session.call_message(call, None).await.unwrap();
    assert_eq!(
        (reply.body_codec, &reply.body[..]),
        (CodecId::PLAIN, &b"abc"[..])
    );
    assert_eq!(reply.mtype, MessageType::Reply);
    assert!(reply.service_method.is_empty());

    let mut call = Message::new(MessageType::Call, 0, "/greet").with_body(CodecId::JSON, "\"cy\"");
    call.meta.set("X-Accept-Body-Codec", "115");
    let reply = session.call_message(call, None).await.unwrap();
    assert_eq!(
        (reply.body_codec, &reply.body[..]),
        (CodecId::PLAIN, &b"hello cy"[..])
    );
}

#[tokio::test]
async fn a_call_through_gzip_and_md5_gets_its_reply_through_the_same_filters() {
    let (_server, addr) = serve(router()).await;
    let session = client(&addr).await;
    let big = "z".repeat(20_000);
    let reply: String = session
        .call("/greet", big.as_str())
        .xfer(b'm')
        .xfer(b'g')
        .await
        .unwrap();
    assert_eq!(reply, format!("hello {big}"));
    let call = Message::new(MessageType::Call, 0, "/echo")
        .with_body(CodecId::PLAIN, "x")
        .with_xfer_pipe([b'm', b'g'].into_iter().collect());
    let reply = session.call_message(call, None).await.unwrap();
    assert_eq!(reply.xfer_pipe.ids(), b"mg");
}

#[tokio::test]
async fn a_body_that_does_not_decode_is_answered_400_and_the_session_carries_on() {
    let (_server, addr) = serve(router()).await;
    let session = client(&addr).await;
    let err = session
        .call::<_, i64>("/add", "not a pair")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Status::CODE_BAD_MESSAGE);
    let call = Message::new(MessageType::Call, 0, "/add").with_body(CodecId(122), "[1,2]");
    let reply = session.call_message(call, None).await.unwrap();
    assert_eq!(reply.status.code(), 400);
    assert_eq!(reply.status.cause(), Some("unsupported codec id: 122"));
    let sum: i64 = session.call("/add", (1, 1)).await.unwrap();
    assert_eq!(sum, 2);
}

#[tokio::test]
async fn unknown_calls_and_pushes_go_to_their_handlers_when_set() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let unknown_push = move |ctx: PushCtx, body: Raw| {
        let tx = tx.clone();
        async move {
            let _ = tx.send((ctx.service_method().to_owned(), body.0));
            Ok(())
        }
    };
    let unknown_call = |ctx: CallCtx, body: Raw| async move {
        Ok::<_, Status>(format!(
            "{} got {} bytes",
            ctx.service_method(),
            body.0.len()
        ))
    };
    let (_server, addr) = serve(
        router()
            .unknown_call(unknown_call)
            .unknown_push(unknown_push),
    )
    .await;
    let session = client(&addr).await;
    let text: String = session.call("/nowhere", "12345").await.unwrap();
    assert_eq!(text, "/nowhere got 7 bytes");
    session.push("/elsewhere", "x").await.unwrap();
    let (method, body) = tokio::time::timeout(Duration::from_secs(2), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((method.as_str(), &body[..]), ("/elsewhere", &b"\"x\""[..]));
}

#[tokio::test]
async fn a_groups_layer_applies_to_its_routes_only() {
    #[derive(Clone)]
    struct Deny;
    impl<S> tower::Layer<S> for Deny {
        type Service =
            tower::util::BoxCloneSyncService<getty::rpc::Inbound, Option<Message>, getty::BoxError>;
        fn layer(&self, _: S) -> Self::Service {
            tower::util::BoxCloneSyncService::new(tower::service_fn(
                |_: getty::rpc::Inbound| async {
                    Err::<Option<Message>, getty::BoxError>(Box::new(Status::new(
                        1403,
                        "members only",
                    )))
                },
            ))
        }
    }
    let admin = Router::new().call("/stats", greet).layer(Deny);
    let (_server, addr) = serve(router().nest("/admin", admin)).await;
    let session = client(&addr).await;
    let err = session
        .call::<_, String>("/admin/stats", "x")
        .await
        .unwrap_err();
    assert_eq!((err.code(), err.msg()), (1403, "members only"));
    let ok: String = session.call("/greet", "x").await.unwrap();
    assert_eq!(ok, "hello x");
}

#[tokio::test]
async fn the_server_keeps_a_registry_of_its_sessions() {
    let (server, addr) = serve(router()).await;
    let a = client(&addr).await;
    let b = client(&addr).await;
    let _: i64 = a.call("/add", (1, 2)).await.unwrap();
    let _: i64 = b.call("/add", (1, 2)).await.unwrap();
    assert_eq!(server.session_count(), 2);
    let ids: Vec<u64> = server.sessions().iter().map(|s| s.id()).collect();
    assert!(ids.iter().all(|id| server.session(*id).is_some()));
    a.close();
    for _ in 0..100 {
        if server.session_count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.session_count(), 1);
}

#[tokio::test]
async fn dialing_nobody_fails_with_105() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let err = Peer::builder()
        .dial_timeout(Duration::from_secs(2))
        .build()
        .dial(addr)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Status::CODE_DIAL_FAILED);
}

#[tokio::test]
async fn a_frame_of_unknown_type_closes_only_its_own_session() {
    let (server, addr) = serve(router()).await;
    let good = client(&addr).await;
    let mut raw = TcpStream::connect(&addr).await.unwrap();
    // A PUSH frame (golden g2_push_seq_negative) with its mtype byte set to 9.
    let mut frame = hex(b"0000001700022d3503022f780006636f64653d3000006a");
    frame[8] = 9;
    raw.write_all(&frame).await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), raw.read(&mut buf))
        .await
        .expect("the server kept a session that sent mtype 9")
        .unwrap_or(0);
    assert_eq!(n, 0, "expected the server to close, got {:?}", &buf[..n]);
    let sum: i64 = good.call("/add", (2, 2)).await.unwrap();
    assert_eq!(sum, 4);
    assert_eq!(server.session_count(), 1);
}

#[tokio::test]
async fn graceful_shutdown_lets_calls_in_flight_finish_and_their_replies_go_out() {
    let (server, addr) = serve(router()).await;
    let session = Peer::builder()
        .redial_times(Some(0))
        .build()
        .dial(&addr)
        .await
        .unwrap();
    let slow = session.call::<_, u64>("/sleep", 400u64);
    let slow = tokio::spawn(async move { slow.await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let done = Arc::new(AtomicUsize::new(0));
    let shutdown = {
        let done = Arc::clone(&done);
        tokio::spawn(async move {
            server.shutdown(Duration::from_secs(5)).await;
            done.fetch_add(1, Ordering::SeqCst);
        })
    };
    assert_eq!(slow.await.unwrap().unwrap(), 400);
    tokio::time::timeout(Duration::from_secs(5), shutdown)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.load(Ordering::SeqCst), 1);
    assert!(
        TcpStream::connect(&addr).await.is_err(),
        "still accepting after shutdown"
    );
}

#[tokio::test]
async fn many_calls_in_flight_on_one_session_each_get_their_own_reply() {
    let (_server, addr) = serve(router()).await;
    let session = client(&addr).await;
    let calls: Vec<_> = (0..200i64)
        .map(|i| {
            let call = session.call::<_, i64>("/add", (i, 1000));
            tokio::spawn(async move { call.await })
        })
        .collect();
    let mut got = BTreeMap::new();
    for (i, call) in calls.into_iter().enumerate() {
        got.insert(i as i64, call.await.unwrap().unwrap());
    }
    assert!(got.iter().all(|(i, sum)| *sum == i + 1000));
}

fn hex(s: &[u8]) -> Vec<u8> {
    s.chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}
