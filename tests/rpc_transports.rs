//! One RPC peer over every transport of the core: it listens on TCP, TLS,
//! WebSocket and a Unix socket at once, and peers dial each.

#[path = "support/tls.rs"]
mod tls_support;

use std::time::Duration;

use getty::{
    rpc::{CallCtx, Peer, Router, Status, Target},
    tls::{ClientTlsConfig, ServerTlsConfig},
    Client, Server,
};

async fn greet(ctx: CallCtx, name: String) -> Result<String, Status> {
    Ok(format!("hello {name} from {}", ctx.session().local_addr()))
}

fn tls_pair() -> (ServerTlsConfig, ClientTlsConfig) {
    tls_support::self_signed_tls(&["localhost", "127.0.0.1"])
}

#[tokio::test]
async fn one_peer_serves_tcp_tls_websocket_and_unix_at_once() {
    let (server_tls, client_tls) = tls_pair();
    let server = Peer::builder()
        .router(Router::new().call("/greet", greet))
        .build();
    let tcp = server.listen("127.0.0.1:0").await.unwrap();
    let tls = server.serve(
        Server::builder()
            .tls(server_tls)
            .bind("127.0.0.1:0")
            .await
            .unwrap(),
    );
    let ws = server.serve(
        Server::builder()
            .websocket("/rpc")
            .bind("127.0.0.1:0")
            .await
            .unwrap(),
    );
    let dir = std::env::temp_dir().join(format!("getty-rpc-unix-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("rpc.sock");
    let _unix = server.serve(Server::builder().bind_unix(&path).unwrap());

    let client = Peer::builder().build();
    let sessions = [
        ("tcp", client.dial(tcp.local_addr().to_string()).await),
        (
            "tls",
            client
                .dial_with(
                    Client::builder().tls(client_tls),
                    Target::Tcp(tls.local_addr().to_string()),
                )
                .await,
        ),
        (
            "ws",
            client
                .dial_with(
                    Client::builder(),
                    Target::Ws(format!("ws://{}/rpc", ws.local_addr())),
                )
                .await,
        ),
        (
            "unix",
            client
                .dial_with(Client::builder(), Target::Unix(path.clone()))
                .await,
        ),
    ];
    for (name, session) in sessions {
        let session = session.unwrap_or_else(|e| panic!("dial over {name}: {e}"));
        let reply: String = tokio::time::timeout(Duration::from_secs(5), async {
            session.call::<_, String>("/greet", name).await
        })
        .await
        .unwrap_or_else(|_| panic!("no reply over {name}"))
        .unwrap_or_else(|e| panic!("call over {name}: {e}"));
        assert!(reply.starts_with(&format!("hello {name} from ")), "{reply}");
    }
    assert_eq!(server.session_count(), 4);
    server.shutdown(Duration::from_secs(2)).await;
    let _ = std::fs::remove_dir_all(&dir);
}
