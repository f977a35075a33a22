//! The on-close layer: a close callback registered from the stack, run by
//! getty once per opened session after `Close`, in order with the others,
//! with panics contained.
#[path = "../../tests/common/mod.rs"]
mod common;

use std::{
    convert::Infallible,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use bytes::Bytes;
use common::*;
use getty::{
    codec::LengthCodec, new_session_fn, Addr, BoxError, EndpointKind, Event, EventListener,
    ListenerService, Request, Server, ServerHandle, Session, SessionConfig,
};
use getty_layers::on_close::{OnClose, OnCloseLayer};
use tokio::net::TcpStream;
use tokio_test::assert_ready_ok;
use tower::{service_fn, Layer, Service, ServiceBuilder, ServiceExt};
use tower_test::mock;

const LIMIT: Duration = Duration::from_secs(5);

/// An echo listener that logs "open:<id>" and "close:<id>", and registers a
/// close callback of its own in `on_open` that logs "listener-callback:<id>".
struct Echo {
    log: Log,
    refuse: bool,
}

impl EventListener<Bytes> for Echo {
    fn on_open(&mut self, session: &Session) -> Result<Option<Bytes>, BoxError> {
        self.log.push(format!("open:{}", session.id()));
        if self.refuse {
            return Err("refused".into());
        }
        let (log, id) = (self.log.clone(), session.id());
        session.add_close_callback("listener", 0u8, move || {
            log.push(format!("listener-callback:{id}"))
        });
        Ok(None)
    }
    fn on_message(&mut self, _: &Session, pkg: Bytes) -> Option<Bytes> {
        Some(pkg)
    }
    fn on_close(&mut self, session: &Session) {
        self.log.push(format!("close:{}", session.id()));
    }
}

/// The sessions a server made, to wait for their end.
#[derive(Clone, Default)]
struct Sessions(Arc<Mutex<Vec<Session>>>);

impl Sessions {
    fn push(&self, s: &Session) {
        self.0.lock().unwrap().push(s.clone());
    }
    fn get(&self, i: usize) -> Session {
        self.0.lock().unwrap()[i].clone()
    }
    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

/// A server whose stacks are `OnCloseLayer(log "<name>:<id>")` for each
/// name, outermost first, over [`Echo`]; `refuse(n)` says whether the n-th
/// session's `on_open` refuses it.
async fn server(
    names: &'static [&'static str],
    refuse: fn(usize) -> bool,
) -> (ServerHandle, Log, Sessions) {
    let log = Log::default();
    let sessions = Sessions::default();
    let server = Server::builder().bind("127.0.0.1:0").await.expect("bind");
    let (l, ss) = (log.clone(), sessions.clone());
    let handle = server.serve(
        LengthCodec::new(),
        new_session_fn(move |session: &Session| {
            let n = ss.len();
            ss.push(session);
            let mut svc = tower::util::BoxService::new(ListenerService::new(Echo {
                log: l.clone(),
                refuse: refuse(n),
            }));
            for name in names.iter().rev() {
                let l = l.clone();
                svc = tower::util::BoxService::new(
                    ServiceBuilder::new()
                        .layer(OnCloseLayer::new(move |s: &Session| {
                            l.push(format!("{name}:{}", s.id()))
                        }))
                        .service(svc),
                );
            }
            Ok::<_, BoxError>(svc)
        }),
    );
    (handle, log, sessions)
}

/// Connects, checks the echo, hangs up and waits for the session's end.
async fn one_session(server: &ServerHandle, sessions: &Sessions, index: usize) -> Session {
    let mut raw = TcpStream::connect(server.local_addr()).await.unwrap();
    write_frame(&mut raw, b"hi").await;
    assert_eq!(read_frame(&mut raw).await, b"hi");
    drop(raw);
    eventually(LIMIT, "session made", || sessions.len() > index).await;
    let session = sessions.get(index);
    within(LIMIT, session.finished()).await;
    session
}

#[tokio::test]
async fn the_callback_runs_exactly_once_per_session_after_the_listeners_on_close() {
    let (server, log, sessions) = server(&["on-close"], |_| false).await;
    let a = one_session(&server, &sessions, 0).await;
    let b = one_session(&server, &sessions, 1).await;
    server.shutdown(LIMIT).await;

    for s in [a, b] {
        let id = s.id();
        let mine: Vec<String> = log
            .events()
            .into_iter()
            .filter(|e| e.ends_with(&format!(":{id}")))
            .collect();
        assert_eq!(
            mine,
            [
                format!("open:{id}"),
                format!("close:{id}"),
                format!("listener-callback:{id}"),
                format!("on-close:{id}"),
            ],
        );
        assert_eq!(s.close_callback_count(), 0);
    }
    assert_eq!(log.count("on-close:"), 2, "{:?}", log.events());
}

#[tokio::test]
async fn two_layers_both_run_in_the_order_their_open_completed_innermost_first() {
    let (server, log, sessions) = server(&["outer", "inner"], |_| false).await;
    let mut raw = TcpStream::connect(server.local_addr()).await.unwrap();
    write_frame(&mut raw, b"hi").await;
    assert_eq!(read_frame(&mut raw).await, b"hi");
    let s = sessions.get(0);
    // Registered under distinct keys: none replaced another.
    assert_eq!(s.close_callback_count(), 3);
    drop(raw);
    within(LIMIT, s.finished()).await;
    let id = s.id();
    assert_eq!(
        log.events(),
        [
            format!("open:{id}"),
            format!("close:{id}"),
            format!("listener-callback:{id}"),
            format!("inner:{id}"),
            format!("outer:{id}"),
        ]
    );
    server.shutdown(LIMIT).await;
}

#[tokio::test]
async fn a_session_refused_by_on_open_does_not_run_the_callback() {
    // The first session is refused by the listener's on_open; the second is served.
    let (server, log, sessions) = server(&["on-close"], |n| n == 0).await;
    let _refused = TcpStream::connect(server.local_addr()).await.unwrap();
    eventually(LIMIT, "refused session made", || sessions.len() == 1).await;
    let r = sessions.get(0);
    within(LIMIT, r.finished()).await;
    assert_eq!(log.events(), [format!("open:{}", r.id())]);

    let ok = one_session(&server, &sessions, 1).await;
    server.shutdown(LIMIT).await;
    assert_eq!(log.count("on-close:"), 1, "{:?}", log.events());
    assert_eq!(log.count(&format!("on-close:{}", ok.id())), 1);
    assert_eq!(log.count(&format!("on-close:{}", r.id())), 0);
}

#[tokio::test]
async fn a_panicking_callback_is_contained_and_the_server_keeps_serving() {
    let log = Log::default();
    let sessions = Sessions::default();
    let panics = Arc::new(AtomicUsize::new(0));
    let server = Server::builder().bind("127.0.0.1:0").await.unwrap();
    let (l, ss, p) = (log.clone(), sessions.clone(), panics.clone());
    let server = server.serve(
        LengthCodec::new(),
        new_session_fn(move |session: &Session| {
            ss.push(session);
            let (l2, p) = (l.clone(), p.clone());
            Ok::<_, BoxError>(
                ServiceBuilder::new()
                    .layer(OnCloseLayer::new(move |s: &Session| {
                        l2.push(format!("after-panic:{}", s.id()))
                    }))
                    .layer(OnCloseLayer::new(move |s: &Session| {
                        p.fetch_add(1, Ordering::SeqCst);
                        panic!("close callback of session {} panics", s.id());
                    }))
                    .service(ListenerService::new(Echo {
                        log: l.clone(),
                        refuse: false,
                    })),
            )
        }),
    );

    let a = one_session(&server, &sessions, 0).await;
    assert_eq!(panics.load(Ordering::SeqCst), 1);
    // The callback registered after the panicking one still ran.
    assert_eq!(log.count(&format!("after-panic:{}", a.id())), 1);

    // The server carries on: a new session is served, and its callbacks run.
    let b = one_session(&server, &sessions, 1).await;
    assert_eq!(panics.load(Ordering::SeqCst), 2);
    assert_eq!(log.count(&format!("after-panic:{}", b.id())), 1);
    assert_eq!(server.session_count(), 0);
    server.shutdown(LIMIT).await;
    assert_eq!(panics.load(Ordering::SeqCst), 2, "each ran once");
}

// ----- unit tests: a mock inner service and a detached session ---------------

fn detached() -> Session {
    Session::new(
        EndpointKind::Detached,
        Addr::Unknown,
        Addr::Unknown,
        SessionConfig::default(),
    )
}

#[tokio::test]
async fn open_registers_only_when_the_inner_service_answers_ok() {
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let (mut svc, mut handle) = mock::spawn_layer::<Request<Bytes>, Option<Bytes>, _>(
        OnCloseLayer::new(move |_: &Session| {
            r.fetch_add(1, Ordering::SeqCst);
        }),
    );

    // Refused by the inner service: nothing registered.
    let refused = detached();
    assert_ready_ok!(svc.poll_ready());
    let fut = svc.call(Request::new(refused.clone(), Event::Open));
    let (_, respond) = handle.next_request().await.unwrap();
    assert_eq!(refused.close_callback_count(), 0, "not before the answer");
    respond.send_error("refused");
    assert!(fut.await.is_err());
    assert_eq!(refused.close_callback_count(), 0);

    // Accepted: registered once the answer came.
    let accepted = detached();
    assert_ready_ok!(svc.poll_ready());
    let fut = svc.call(Request::new(accepted.clone(), Event::Open));
    let (_, respond) = handle.next_request().await.unwrap();
    assert_eq!(accepted.close_callback_count(), 0, "not before the answer");
    respond.send_response(None);
    assert!(fut.await.unwrap().is_none());
    assert_eq!(accepted.close_callback_count(), 1);
    assert_eq!(
        runs.load(Ordering::SeqCst),
        0,
        "the layer never runs it itself"
    );
}

#[tokio::test]
async fn events_other_than_open_register_nothing() {
    let (mut svc, mut handle) =
        mock::spawn_layer::<Request<Bytes>, Option<Bytes>, _>(OnCloseLayer::new(|_: &Session| {}));
    let session = detached();
    for event in [
        Event::Message(Bytes::from_static(b"m")),
        Event::Tick,
        Event::Close,
    ] {
        assert_ready_ok!(svc.poll_ready());
        let fut = svc.call(Request::new(session.clone(), event));
        let (_, respond) = handle.next_request().await.unwrap();
        respond.send_response(None);
        fut.await.unwrap();
    }
    assert_eq!(session.close_callback_count(), 0);
}

/// Passes `Open` through `svc`, expecting success.
async fn open<S>(mut svc: S, session: &Session)
where
    S: Service<Request<Bytes>>,
    S::Error: std::fmt::Debug,
{
    let req = Request::new(session.clone(), Event::Open);
    svc.ready().await.unwrap().call(req).await.unwrap();
}

#[tokio::test]
async fn distinct_layers_add_callbacks_while_clones_of_one_layer_replace_each_other() {
    let inner = || service_fn(|_: Request<Bytes>| async { Ok::<_, Infallible>(None::<Bytes>) });
    let runs = Log::default();
    let (r1, r2) = (runs.clone(), runs.clone());
    let one = OnCloseLayer::new(move |_: &Session| r1.push("one"));
    let two = OnCloseLayer::new(move |_: &Session| r2.push("two"));
    let session = detached();
    open(one.layer(inner()), &session).await;
    open(two.layer(inner()), &session).await;
    open(one.clone().layer(inner()), &session).await;
    assert_eq!(session.close_callback_count(), 2);
    // OnClose::new makes a key of its own.
    let mut direct = OnClose::new(inner(), {
        let r = runs.clone();
        move |_: &Session| r.push("direct")
    });
    open(&mut direct, &session).await;
    assert_eq!(session.close_callback_count(), 3);
    assert!(runs.events().is_empty(), "registering runs nothing");
}
