//! UDP: a server gives each peer a virtual session, so the same listener
//! code serves datagrams; a connected client speaks to it.
mod common;

use std::{convert::Infallible, time::Duration};

use bytes::{Bytes, BytesMut};
use common::{eventually, within, Log};
use getty::{
    new_session_fn, Client, EndpointKind, Event, Request, Server, ServerHandle, Session,
    SessionConfig,
};
use tokio::net::UdpSocket;
use tokio_util::codec::BytesCodec;

const LIMIT: Duration = Duration::from_secs(5);

/// Echoes each datagram; records errors and closes.
async fn udp_echo_server(config: SessionConfig, log: Log) -> ServerHandle {
    Server::builder()
        .session_config(config)
        .bind_udp("127.0.0.1:0")
        .await
        .expect("bind udp")
        .serve(
            BytesCodec::new(),
            new_session_fn(move |_: &Session| {
                let log = log.clone();
                Ok::<_, Infallible>(tower::service_fn(move |req: Request<BytesMut>| {
                    let log = log.clone();
                    async move {
                        Ok::<_, Infallible>(match req.event {
                            Event::Message(p) => Some(p.freeze()),
                            Event::Error(e) => {
                                log.push(format!("error:{}", e.kind()));
                                None
                            }
                            Event::Close => {
                                log.push("close");
                                None
                            }
                            _ => None,
                        })
                    }
                }))
            }),
        )
}

async fn recv(socket: &UdpSocket) -> Vec<u8> {
    let mut buf = vec![0u8; 65_536];
    let n = within(LIMIT, socket.recv(&mut buf)).await.expect("recv");
    buf.truncate(n);
    buf
}

#[tokio::test]
async fn each_peer_gets_a_session_and_replies_go_back_to_it() {
    let log = Log::default();
    let server = udp_echo_server(SessionConfig::default(), log.clone()).await;
    let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    a.connect(server.local_addr()).await.unwrap();
    b.connect(server.local_addr()).await.unwrap();
    a.send(b"from a").await.unwrap();
    b.send(b"from b").await.unwrap();
    assert_eq!(recv(&a).await, b"from a");
    assert_eq!(recv(&b).await, b"from b");
    a.send(b"again a").await.unwrap();
    assert_eq!(recv(&a).await, b"again a");
    eventually(LIMIT, "two sessions", || server.session_count() == 2).await;
    let sessions = server.sessions().sessions();
    assert!(sessions.iter().all(|s| s.kind() == EndpointKind::UdpServer));
    let peers: Vec<_> = sessions.iter().map(|s| s.peer_addr().clone()).collect();
    assert!(peers.contains(&a.local_addr().unwrap().into()));
    assert!(peers.contains(&b.local_addr().unwrap().into()));
    server.shutdown(LIMIT).await;
}

#[tokio::test]
async fn an_oversized_datagram_is_dropped_with_an_error_and_the_session_carries_on() {
    let log = Log::default();
    let server = udp_echo_server(SessionConfig::default().max_packet_len(100), log.clone()).await;
    let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    c.connect(server.local_addr()).await.unwrap();
    c.send(&[7u8; 500]).await.unwrap();
    eventually(LIMIT, "the error", || log.count("error:") == 1).await;
    c.send(b"small").await.unwrap();
    assert_eq!(recv(&c).await, b"small");
    assert_eq!(log.events(), ["error:packet_too_large"]);
    server.shutdown(LIMIT).await;
}

#[tokio::test]
async fn a_silent_peers_session_ends_after_its_read_timeout_and_a_new_datagram_starts_another() {
    let log = Log::default();
    let server = udp_echo_server(
        SessionConfig::default().read_timeout(Some(Duration::from_millis(200))),
        log.clone(),
    )
    .await;
    let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    c.connect(server.local_addr()).await.unwrap();
    c.send(b"hi").await.unwrap();
    assert_eq!(recv(&c).await, b"hi");
    eventually(LIMIT, "the idle session closed", || log.count("close") == 1).await;
    eventually(LIMIT, "deregistered", || server.session_count() == 0).await;
    assert_eq!(log.events(), ["error:read_timeout", "close"]);
    c.send(b"back").await.unwrap();
    assert_eq!(recv(&c).await, b"back");
    assert_eq!(server.session_count(), 1);
    server.shutdown(LIMIT).await;
}

#[tokio::test]
async fn a_connected_udp_client_talks_to_a_udp_server() {
    let log = Log::default();
    let server = udp_echo_server(SessionConfig::default(), log.clone()).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let client = Client::builder()
        .connect_udp(
            server.local_addr().to_string(),
            BytesCodec::new(),
            new_session_fn(move |_: &Session| {
                let tx = tx.clone();
                Ok::<_, Infallible>(tower::service_fn(move |req: Request<BytesMut>| {
                    if let Some(p) = req.message() {
                        let _ = tx.send(p.clone());
                    }
                    async { Ok::<_, Infallible>(None::<Bytes>) }
                }))
            }),
        )
        .await
        .expect("connect");
    let session = client.sessions().sessions().pop().expect("a session");
    assert_eq!(session.kind(), EndpointKind::UdpClient);
    for text in ["one", "two"] {
        session.send(Bytes::from(text)).await.unwrap();
        let echo = within(LIMIT, rx.recv()).await.unwrap();
        assert_eq!(&echo[..], text.as_bytes());
    }
    client.shutdown(LIMIT).await;
    server.shutdown(LIMIT).await;
}

#[tokio::test]
async fn a_datagram_the_codec_rejects_is_dropped_with_an_error_and_the_session_carries_on() {
    let log = Log::default();
    let l = log.clone();
    // LengthCodec refuses a datagram whose length prefix exceeds the max.
    let server = Server::builder()
        .session_config(SessionConfig::default().max_packet_len(64))
        .bind_udp("127.0.0.1:0")
        .await
        .unwrap()
        .serve(
            getty::codec::LengthCodec::new(),
            new_session_fn(move |_: &Session| {
                let log = l.clone();
                Ok::<_, Infallible>(tower::service_fn(move |req: Request<Bytes>| {
                    let log = log.clone();
                    async move {
                        Ok::<_, Infallible>(match req.event {
                            Event::Message(p) => Some(p),
                            Event::Error(e) => {
                                log.push(format!("error:{}", e.kind()));
                                None
                            }
                            _ => None,
                        })
                    }
                }))
            }),
        );
    let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    c.connect(server.local_addr()).await.unwrap();
    c.send(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]).await.unwrap();
    eventually(LIMIT, "the error", || log.count("error:") == 1).await;
    c.send(&common::frame(b"fine")).await.unwrap();
    assert_eq!(recv(&c).await, common::frame(b"fine"));
    assert_eq!(log.events(), ["error:packet_too_large"]);
    assert_eq!(server.session_count(), 1, "the same session carried on");
    server.shutdown(LIMIT).await;
}

#[tokio::test]
async fn a_full_session_table_evicts_the_longest_idle_session_so_a_new_peer_is_served_at_once() {
    let log = Log::default();
    let server = Server::builder()
        .max_sessions(3)
        .bind_udp("127.0.0.1:0")
        .await
        .expect("bind udp");
    let addr = server.local_addr();
    let server = {
        let log = log.clone();
        server.serve(
            BytesCodec::new(),
            new_session_fn(move |_: &Session| {
                let log = log.clone();
                Ok::<_, Infallible>(tower::service_fn(move |req: Request<BytesMut>| {
                    let log = log.clone();
                    async move {
                        Ok::<_, Infallible>(match req.event {
                            Event::Message(p) => Some(p.freeze()),
                            Event::Error(e) => {
                                log.push(format!("error:{e}"));
                                None
                            }
                            Event::Close => {
                                log.push(format!("close:{}", req.session.peer_addr()));
                                None
                            }
                            _ => None,
                        })
                    }
                }))
            }),
        )
    };
    // Three peers fill the table; the first is the longest idle.
    let mut peers = Vec::new();
    for i in 0..3 {
        let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        peer.connect(addr).await.unwrap();
        peer.send(format!("peer-{i}").as_bytes()).await.unwrap();
        assert_eq!(recv(&peer).await, format!("peer-{i}").as_bytes());
        peers.push(peer);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Peer 1 speaks again: now peer 0 is the longest idle.
    peers[1].send(b"again").await.unwrap();
    assert_eq!(recv(&peers[1]).await, b"again");
    assert_eq!(server.session_count(), 3);

    let newcomer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    newcomer.connect(addr).await.unwrap();
    newcomer.send(b"let me in").await.unwrap();
    assert_eq!(recv(&newcomer).await, b"let me in", "served at once");

    let evicted = peers[0].local_addr().unwrap();
    eventually(
        LIMIT,
        "the longest idle session was evicted and closed",
        || log.count(&format!("close:{evicted}")) == 1,
    )
    .await;
    assert_eq!(
        log.count("error:UDP session table full"),
        1,
        "{:?}",
        log.events()
    );
    // The others are untouched.
    for (i, peer) in peers.iter().enumerate().skip(1) {
        peer.send(format!("still-{i}").as_bytes()).await.unwrap();
        assert_eq!(recv(peer).await, format!("still-{i}").as_bytes());
    }
    assert!(server.session_count() <= 3);
}
