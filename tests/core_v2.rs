//! What request/response builds on: one session over any transport
//! (`serve_connection`, `serve_messages`), outbound readiness
//! (`Session::reserve`, `poll_reserve`), replies in completion order, and
//! typed error kinds with a too-large error any codec can return.
mod common;

use std::{
    convert::Infallible,
    sync::{Arc, Mutex},
    task::Poll,
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use common::*;
use futures_util::{SinkExt, StreamExt, TryStreamExt};
use getty::{
    codec::{LengthCodec, PacketTooLarge},
    new_session_fn, Connection, ErrorKind, Event, Request, SendError, Server, Session,
    SessionConfig,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tokio_util::codec::{BytesCodec, Decoder, Framed, LengthDelimitedCodec};
use tower::service_fn;

const LIMIT: Duration = Duration::from_secs(5);

type Events = Arc<Mutex<Vec<String>>>;

/// An echo stack recording what it sees: "open", "message", "error:<kind>",
/// "close".
fn recording_echo(events: Events) -> impl getty::MakeSessionService<Bytes, Bytes> + Clone {
    new_session_fn(move |_: &Session| {
        let events = Arc::clone(&events);
        Ok::<_, Infallible>(service_fn(move |req: Request<Bytes>| {
            let events = Arc::clone(&events);
            async move {
                let mut log = events.lock().unwrap();
                Ok::<_, Infallible>(match req.event {
                    Event::Open => {
                        log.push("open".into());
                        None
                    }
                    Event::Message(p) => {
                        log.push("message".into());
                        Some(p)
                    }
                    Event::Error(e) => {
                        log.push(format!("error:{}", e.kind()));
                        None
                    }
                    Event::Close => {
                        log.push("close".into());
                        None
                    }
                    _ => None,
                })
            }
        }))
    })
}

// ----- serve_connection ------------------------------------------------------

#[tokio::test]
async fn serve_connection_runs_a_session_over_tokio_duplex() {
    let events = Events::default();
    let (mut client, server) = tokio::io::duplex(1024);
    let session = tokio::spawn(getty::serve_connection(
        server,
        LengthCodec::new(),
        recording_echo(Arc::clone(&events)),
    ));
    for word in ["one", "two", "three"] {
        client.write_all(&frame(word.as_bytes())).await.unwrap();
        let mut echo = vec![0u8; 4 + word.len()];
        within(LIMIT, client.read_exact(&mut echo)).await.unwrap();
        assert_eq!(echo, frame(word.as_bytes()));
    }
    drop(client);
    within(LIMIT, session).await.unwrap();
    assert_eq!(
        *events.lock().unwrap(),
        ["open", "message", "message", "message", "close"]
    );
}

#[tokio::test]
async fn serve_connection_runs_a_session_over_a_socket_accepted_by_hand() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let events = Events::default();
    let e = Arc::clone(&events);
    let server = tokio::spawn(async move {
        let (socket, peer) = listener.accept().await.unwrap();
        Connection::new()
            .peer_addr(peer.into())
            .serve(socket, LengthCodec::new(), recording_echo(e))
            .await;
    });
    let mut client = TcpStream::connect(addr).await.unwrap();
    write_frame(&mut client, b"by hand").await;
    assert_eq!(read_frame(&mut client).await, b"by hand");
    drop(client);
    within(LIMIT, server).await.unwrap();
    assert_eq!(
        events.lock().unwrap().last().map(String::as_str),
        Some("close")
    );
}

#[tokio::test]
async fn the_make_service_sets_the_session_over_a_user_transport_and_limits_hold() {
    let events = Events::default();
    let e = Arc::clone(&events);
    let (mut client, server) = tokio::io::duplex(1024);
    let make = new_session_fn(move |session: &Session| {
        session.set_max_packet_len(8);
        let e = Arc::clone(&e);
        Ok::<_, Infallible>(service_fn(move |req: Request<Bytes>| {
            let e = Arc::clone(&e);
            async move {
                if let Event::Error(err) = &req.event {
                    e.lock().unwrap().push(format!("error:{}", err.kind()));
                }
                Ok::<_, Infallible>(req.into_message())
            }
        }))
    });
    let session = tokio::spawn(getty::serve_connection(server, LengthCodec::new(), make));
    client.write_all(&frame(b"far too long")).await.unwrap();
    within(LIMIT, session).await.unwrap();
    assert_eq!(*events.lock().unwrap(), ["error:packet_too_large"]);
}

#[tokio::test]
async fn serve_messages_takes_each_message_as_one_packet() {
    let events = Events::default();
    let e = Arc::clone(&events);
    let (a, b) = tokio::io::duplex(4096);
    let messages = Framed::new(a, LengthDelimitedCodec::new()).map_ok(BytesMut::freeze);
    let mut client = Framed::new(b, LengthDelimitedCodec::new());
    let session = tokio::spawn(getty::serve_messages(
        messages,
        BytesCodec::new(),
        new_session_fn(move |_: &Session| {
            let e = Arc::clone(&e);
            Ok::<_, Infallible>(service_fn(move |req: Request<BytesMut>| {
                let e = Arc::clone(&e);
                async move {
                    Ok::<_, Infallible>(match req.event {
                        Event::Message(p) => {
                            e.lock().unwrap().push(format!("message:{}", p.len()));
                            Some(p.freeze())
                        }
                        _ => None,
                    })
                }
            }))
        }),
    ));
    for n in [1usize, 100, 3000] {
        client.send(Bytes::from(vec![b'm'; n])).await.unwrap();
        let echo = within(LIMIT, client.next()).await.unwrap().unwrap();
        assert_eq!(echo.len(), n);
    }
    drop(client);
    within(LIMIT, session).await.unwrap();
    assert_eq!(
        *events.lock().unwrap(),
        ["message:1", "message:100", "message:3000"]
    );
}

// ----- outbound readiness ------------------------------------------------------

#[tokio::test]
async fn reserve_holds_room_and_poll_reserve_is_woken_when_room_comes_back() {
    let (mut client, server) = tokio::io::duplex(1 << 16);
    let (tx, rx) = tokio::sync::oneshot::channel::<Session>();
    let tx = Mutex::new(Some(tx));
    let make = new_session_fn(move |session: &Session| {
        if let Some(tx) = tx.lock().unwrap().take() {
            let _ = tx.send(session.clone());
        }
        Ok::<_, Infallible>(service_fn(|req: Request<Bytes>| async move {
            Ok::<_, Infallible>(req.into_message())
        }))
    });
    let config = SessionConfig::default().queue_capacity(2);
    let run = tokio::spawn(Connection::new().session_config(config).serve(
        server,
        LengthCodec::new(),
        make,
    ));
    let session = within(LIMIT, rx).await.unwrap();

    // Two places: held by two permits, the queue is full for everyone.
    let first = session.reserve().await.unwrap();
    let second = session.try_reserve().unwrap();
    assert!(matches!(
        session.try_send(Bytes::new()),
        Err(SendError::Blocked)
    ));
    let woken = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let waker = {
        struct Flag(Arc<std::sync::atomic::AtomicBool>);
        impl std::task::Wake for Flag {
            fn wake(self: Arc<Self>) {
                self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        std::task::Waker::from(Arc::new(Flag(Arc::clone(&woken))))
    };
    let mut cx = std::task::Context::from_waker(&waker);
    assert!(session.poll_reserve(&mut cx).is_pending());

    // A permit dropped unused gives its place back and wakes the poller.
    drop(second);
    assert!(woken.load(std::sync::atomic::Ordering::SeqCst));
    let third = match session.poll_reserve(&mut cx) {
        Poll::Ready(Ok(permit)) => permit,
        other => panic!("expected room, got {other:?}"),
    };
    first.send(Bytes::from_static(b"first")).unwrap();
    third.send(Bytes::from_static(b"third")).unwrap();
    let mut got = vec![0u8; 2 * (4 + 5)];
    within(LIMIT, client.read_exact(&mut got)).await.unwrap();
    assert_eq!(got, [frame(b"first"), frame(b"third")].concat());

    session.close();
    assert!(matches!(session.reserve().await, Err(SendError::Closed)));
    drop(client);
    within(LIMIT, run).await.unwrap();
}

// ----- replies in completion order ---------------------------------------------

/// A server whose calls named "slow" take 500 ms and others answer at once,
/// with up to 8 calls in flight.
async fn slow_and_quick_server(ordered: bool) -> getty::ServerHandle {
    let server = Server::builder()
        .session_config(
            SessionConfig::default()
                .max_in_flight(8)
                .ordered_responses(ordered),
        )
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    server.serve(
        LengthCodec::new(),
        new_session_fn(|_: &Session| {
            Ok::<_, Infallible>(service_fn(|req: Request<Bytes>| async move {
                if let Event::Message(p) = &req.event {
                    if p.as_ref() == b"slow" {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
                Ok::<_, Infallible>(req.into_message())
            }))
        }),
    )
}

#[tokio::test]
async fn without_ordered_responses_a_quick_reply_overtakes_a_slow_one() {
    let server = slow_and_quick_server(false).await;
    let mut client = TcpStream::connect(server.local_addr()).await.unwrap();
    write_frame(&mut client, b"slow").await;
    write_frame(&mut client, b"quick").await;
    let first = tokio::time::timeout(Duration::from_millis(300), read_frame(&mut client))
        .await
        .expect("the quick reply does not wait for the slow call");
    assert_eq!(first, b"quick");
    assert_eq!(read_frame(&mut client).await, b"slow");
}

#[tokio::test]
async fn with_ordered_responses_replies_keep_request_order() {
    let server = slow_and_quick_server(true).await;
    let mut client = TcpStream::connect(server.local_addr()).await.unwrap();
    write_frame(&mut client, b"slow").await;
    write_frame(&mut client, b"quick").await;
    assert_eq!(read_frame(&mut client).await, b"slow");
    assert_eq!(read_frame(&mut client).await, b"quick");
}

#[tokio::test]
async fn ordered_responses_can_be_turned_off_on_a_live_session() {
    let server = slow_and_quick_server(true).await;
    let mut client = TcpStream::connect(server.local_addr()).await.unwrap();
    write_frame(&mut client, b"warm up").await;
    assert_eq!(read_frame(&mut client).await, b"warm up");
    let session = server.sessions().sessions().pop().unwrap();
    assert!(session.ordered_responses());
    session.set_ordered_responses(false);
    write_frame(&mut client, b"slow").await;
    write_frame(&mut client, b"quick").await;
    assert_eq!(read_frame(&mut client).await, b"quick");
    assert_eq!(read_frame(&mut client).await, b"slow");
}

// ----- error kinds and a too-large error for any codec -------------------------

/// Newline-ended lines of at most 8 bytes, refusing longer ones with
/// getty's public too-large error inside an `io::Error`.
#[derive(Clone)]
struct ShortLines;

impl Decoder for ShortLines {
    type Item = Bytes;
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, std::io::Error> {
        match src.iter().position(|b| *b == b'\n') {
            Some(i) if i <= 8 => {
                let line = src.split_to(i + 1);
                Ok(Some(line.freeze()))
            }
            Some(i) => Err(PacketTooLarge::new(i as u64, 8).into()),
            None if src.len() > 8 => Err(PacketTooLarge::new(src.len() as u64, 8).into()),
            None => Ok(None),
        }
    }
}

impl tokio_util::codec::Encoder<Bytes> for ShortLines {
    type Error = std::io::Error;

    fn encode(&mut self, item: Bytes, dst: &mut BytesMut) -> Result<(), std::io::Error> {
        dst.extend_from_slice(&item);
        Ok(())
    }
}

#[tokio::test]
async fn a_custom_codecs_too_large_error_is_reported_as_packet_too_large() {
    let events = Events::default();
    let (mut client, server) = tokio::io::duplex(1024);
    let session = tokio::spawn(getty::serve_connection(
        server,
        ShortLines,
        recording_echo(Arc::clone(&events)),
    ));
    client.write_all(b"short\n").await.unwrap();
    let mut echo = [0u8; 6];
    within(LIMIT, client.read_exact(&mut echo)).await.unwrap();
    client
        .write_all(b"this line is far too long\n")
        .await
        .unwrap();
    within(LIMIT, session).await.unwrap();
    assert_eq!(
        *events.lock().unwrap(),
        ["open", "message", "error:packet_too_large", "close"]
    );
}

#[test]
fn every_error_kind_has_a_stable_name() {
    let names: Vec<&str> = [
        ErrorKind::Io,
        ErrorKind::Codec,
        ErrorKind::PacketTooLarge,
        ErrorKind::UnexpectedEof,
        ErrorKind::ReadTimeout,
        ErrorKind::WriteTimeout,
        ErrorKind::InputBudget,
        ErrorKind::Handler,
        ErrorKind::HandlerPanic,
        ErrorKind::Raised,
    ]
    .iter()
    .map(|k| k.as_str())
    .collect();
    assert_eq!(
        names,
        [
            "io",
            "codec",
            "packet_too_large",
            "unexpected_eof",
            "read_timeout",
            "write_timeout",
            "input_budget",
            "handler",
            "handler_panic",
            "raised"
        ]
    );
}
