use std::{convert::Infallible, time::Duration};

use bytes::{Bytes, BytesMut};
use getty::{new_session_fn, Client, EndpointKind, Request, Server, Session};
use tokio_util::codec::BytesCodec;

#[tokio::test]
async fn a_websocket_client_and_server_echo_one_packet_per_message() {
    let server = Server::builder()
        .websocket("/echo")
        .bind("127.0.0.1:0")
        .await
        .unwrap()
        .serve(
            |_: &Session| BytesCodec::new(),
            new_session_fn(|_: &Session| {
                Ok::<_, Infallible>(tower::service_fn(|req: Request<BytesMut>| async move {
                    Ok::<_, Infallible>(req.into_message().map(BytesMut::freeze))
                }))
            }),
        );
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let client = Client::builder()
        .connect_ws(
            &format!("ws://{}/echo", server.local_addr()),
            |_: &Session| BytesCodec::new(),
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
        .unwrap();
    let session = client.sessions().sessions().pop().expect("connected");
    assert_eq!(session.kind(), EndpointKind::WsClient);
    for text in ["one", "two", "three"] {
        session.send(Bytes::from(text)).await.unwrap();
    }
    for text in ["one", "two", "three"] {
        let echo = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&echo[..], text.as_bytes());
    }
    let server_session = server.sessions().sessions().pop().unwrap();
    assert_eq!(server_session.kind(), EndpointKind::WsServer);
    assert_eq!(server_session.stats().packets_in, 3);
    client.shutdown(Duration::from_secs(2)).await;
    server.shutdown(Duration::from_secs(2)).await;
}
