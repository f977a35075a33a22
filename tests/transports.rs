//! getty's promise: one model over every transport. The same
//! `EventListener`, the same codec and the same layer stack run unchanged
//! over TCP, TLS, WebSocket, WebSocket over TLS, UDP and Unix sockets.
mod common;
#[path = "support/tls.rs"]
mod tls_support;

use std::{convert::Infallible, time::Duration};

use bytes::Bytes;
use common::within;
use getty::{
    codec::LengthCodec,
    new_session_fn,
    tls::{ClientTlsConfig, ServerTlsConfig},
    BoxError, Client, ClientBuilder, EndpointKind, EventListener, ListenerService,
    MakeSessionService, Request, Server, ServerBuilder, ServerHandle, Session,
};
use getty_layers::{stats::Stats, ServiceBuilderExt};
use tokio::sync::mpsc;

const LIMIT: Duration = Duration::from_secs(5);

/// The one listener every transport runs.
struct Echo;

impl EventListener<Bytes> for Echo {
    fn on_message(&mut self, _: &Session, pkg: Bytes) -> Option<Bytes> {
        Some(pkg)
    }
}

/// The one stack every transport runs: getty's stats and tower's timeout
/// around the listener.
fn stack(stats: &Stats) -> impl MakeSessionService<Bytes, Bytes> {
    let stats = stats.clone();
    new_session_fn(move |_: &Session| {
        Ok::<_, BoxError>(
            tower::ServiceBuilder::new()
                .stats(&stats)
                .timeout(Duration::from_secs(5))
                .service(ListenerService::new(Echo)),
        )
    })
}

/// A certificate for "localhost", and a client config that trusts it.
fn tls() -> (ServerTlsConfig, ClientTlsConfig) {
    let (server, client) = tls_support::self_signed_tls(&["localhost"]);
    (server, client.server_name("localhost").unwrap())
}

#[derive(Debug, Clone, Copy)]
enum Transport {
    Tcp,
    Tls,
    Ws,
    Wss,
    Udp,
    Unix,
}

/// Runs the echo over `transport`: returns the kinds of the two ends.
async fn converse(transport: Transport) -> (EndpointKind, EndpointKind) {
    let stats = Stats::new();
    let (server_tls, client_tls) = tls();
    let socket = std::env::temp_dir().join(format!(
        "getty-transports-{}-{transport:?}.sock",
        std::process::id()
    ));
    let builder = match transport {
        Transport::Tls => Server::builder().tls(server_tls),
        Transport::Ws => Server::builder().websocket("/echo"),
        Transport::Wss => Server::builder().tls(server_tls).websocket("/echo"),
        _ => ServerBuilder::default(),
    };
    let bound = match transport {
        Transport::Udp => builder.bind_udp("127.0.0.1:0").await,
        Transport::Unix => builder.bind_unix(&socket),
        _ => builder.bind("127.0.0.1:0").await,
    };
    let server: ServerHandle = bound
        .expect("bind")
        .serve(LengthCodec::new(), stack(&stats));

    let (tx, mut echoes) = mpsc::unbounded_channel();
    let make = new_session_fn(move |_: &Session| {
        let tx = tx.clone();
        Ok::<_, Infallible>(tower::service_fn(move |req: Request<Bytes>| {
            if let Some(p) = req.message() {
                let _ = tx.send(p.clone());
            }
            async { Ok::<_, Infallible>(None::<Bytes>) }
        }))
    });
    let client_builder: ClientBuilder = Client::builder().max_reconnect_attempts(Some(1));
    let addr = || server.local_addr().to_string();
    let client: Client = match transport {
        Transport::Tcp => client_builder
            .connect(addr(), LengthCodec::new(), make)
            .await
            .expect("connect"),
        Transport::Tls => client_builder
            .tls(client_tls)
            .connect(addr(), LengthCodec::new(), make)
            .await
            .expect("connect"),
        Transport::Ws => client_builder
            .connect_ws(&format!("ws://{}/echo", addr()), LengthCodec::new(), make)
            .await
            .unwrap(),
        Transport::Wss => client_builder
            .tls(client_tls)
            .connect_ws(&format!("wss://{}/echo", addr()), LengthCodec::new(), make)
            .await
            .unwrap(),
        Transport::Udp => client_builder
            .connect_udp(addr(), LengthCodec::new(), make)
            .await
            .expect("connect"),
        Transport::Unix => client_builder
            .connect_unix(&socket, LengthCodec::new(), make)
            .await
            .expect("connect"),
    };
    let session = client
        .sessions()
        .sessions()
        .pop()
        .unwrap_or_else(|| panic!("{transport:?}: the client did not connect"));
    let sent = ["first", "second", "third"];
    for text in sent {
        session.send(Bytes::from(text)).await.unwrap();
    }
    for text in sent {
        let echo = within(LIMIT, echoes.recv()).await.expect("an echo");
        assert_eq!(&echo[..], text.as_bytes(), "{transport:?}");
    }
    let server_kind = server.sessions().sessions()[0].kind();
    let client_kind = session.kind();
    client.shutdown(LIMIT).await;
    server.shutdown(LIMIT).await;

    let snap = stats.snapshot();
    assert_eq!(snap.packets_in, 3, "{transport:?}: {snap}");
    assert_eq!(snap.packets_out, 3, "{transport:?}: {snap}");
    assert_eq!((snap.opened, snap.closed), (1, 1), "{transport:?}: {snap}");
    (server_kind, client_kind)
}

#[tokio::test]
async fn the_same_listener_codec_and_stack_run_over_all_six_transports() {
    use EndpointKind as K;
    let expected = [
        (Transport::Tcp, K::TcpServer, K::TcpClient),
        (Transport::Tls, K::TlsServer, K::TlsClient),
        (Transport::Ws, K::WsServer, K::WsClient),
        (Transport::Wss, K::WssServer, K::WssClient),
        (Transport::Udp, K::UdpServer, K::UdpClient),
        (Transport::Unix, K::UnixServer, K::UnixClient),
    ];
    for (transport, server, client) in expected {
        assert_eq!(converse(transport).await, (server, client), "{transport:?}");
    }
}
