mod common;

use std::time::Duration;

use common::*;
use getty::SessionConfig;
use tokio::net::TcpStream;

#[tokio::test]
async fn echo_listener_answers_each_packet_in_order() {
    let (server, log) = recording_server(SessionConfig::default()).await;
    let mut s = TcpStream::connect(server.local_addr()).await.unwrap();
    for p in ["a", "bb", "ccc"] {
        write_frame(&mut s, p.as_bytes()).await;
    }
    for p in ["a", "bb", "ccc"] {
        assert_eq!(read_frame(&mut s).await, p.as_bytes());
    }
    drop(s);
    eventually(Duration::from_secs(5), "close", || log.count("close") == 1).await;
    assert_eq!(
        log.events(),
        ["open", "message:a", "message:bb", "message:ccc", "close"]
    );
    server.shutdown(Duration::from_secs(1)).await;
}
