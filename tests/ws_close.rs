//! The WebSocket closing handshake (RFC 6455 §5.5.1, §7) over 127.0.0.1:
//! the server's Close waits for the peer's before the TCP connection ends
//! (bounded by the session's wait time), a peer's Close is echoed, a server
//! shutting down says 1001, and Python's `websockets` client sees clean
//! closes.

mod common;
mod ws_raw;

use std::time::Duration;

use common::{eventually, within, Log};
use getty::{Server, ServerHandle, Session, SessionConfig};
use tokio::{io::AsyncWriteExt, time::Instant};
use ws_raw::*;

const LIMIT: Duration = Duration::from_secs(5);

async fn echo_server(config: SessionConfig) -> (ServerHandle, Log) {
    recording_echo(Server::builder().session_config(config).websocket("/ws")).await
}

async fn the_session(server: &ServerHandle) -> Session {
    eventually(LIMIT, "the session", || server.session_count() == 1).await;
    server.sessions().sessions().pop().expect("one session")
}

#[tokio::test]
async fn a_server_close_waits_for_the_peers_close_then_ends_the_connection_with_a_fin() {
    let (server, log) =
        echo_server(SessionConfig::default().wait_time(Duration::from_secs(3))).await;
    let mut s = connect(server.local_addr(), "/ws").await;
    the_session(&server).await.close();
    let close = read_close(&mut s).await;
    assert_eq!(close.close_code(), Some(1000), "{close:?}");
    // The connection stays open for the peer's answer.
    assert_eq!(
        read_to_end(&mut s, Duration::from_millis(300)).await,
        End::Open,
        "the server ended the connection before the peer answered its Close"
    );
    let answered = Instant::now();
    s.write_all(&client_close(1000))
        .await
        .expect("answer the Close");
    // The answer is taken, not met by a reset; the end comes at once, not
    // after the wait time.
    assert_eq!(read_to_end(&mut s, LIMIT).await, End::Eof);
    eventually(LIMIT, "the session closed", || log.count("close") == 1).await;
    assert!(
        answered.elapsed() < Duration::from_secs(1),
        "closed {:?} after the answer",
        answered.elapsed()
    );
    assert_eq!(log.events(), ["open", "close"]);
    within(LIMIT, server.shutdown(LIMIT)).await;
}

#[tokio::test]
async fn a_peer_that_never_answers_the_close_is_disconnected_after_the_wait_time() {
    let wait = Duration::from_millis(600);
    let (server, log) = echo_server(SessionConfig::default().wait_time(wait)).await;
    let mut s = connect(server.local_addr(), "/ws").await;
    let session = the_session(&server).await;
    let start = Instant::now();
    session.close();
    let close = read_close(&mut s).await;
    assert_eq!(close.close_code(), Some(1000), "{close:?}");
    let end = read_to_end(&mut s, LIMIT).await;
    let took = start.elapsed();
    assert_ne!(end, End::Open, "still open after {LIMIT:?}");
    assert!(
        took >= wait - Duration::from_millis(100),
        "ended after {took:?}"
    );
    assert!(took < wait + Duration::from_secs(2), "ended after {took:?}");
    eventually(LIMIT, "the session closed", || log.count("close") == 1).await;
    within(LIMIT, server.shutdown(LIMIT)).await;
}

#[tokio::test]
async fn a_peers_close_is_echoed_with_its_code_and_the_connection_ends_with_a_fin() {
    let (server, log) = echo_server(SessionConfig::default()).await;
    let mut s = connect(server.local_addr(), "/ws").await;
    s.write_all(&client_frame(true, BINARY, b"last words"))
        .await
        .expect("write");
    assert_eq!(read_data(&mut s, 64).await.payload, b"last words");
    s.write_all(&client_close(4000)).await.expect("close");
    let reply = read_close(&mut s).await;
    assert_eq!(reply.close_code(), Some(4000), "{reply:?}");
    assert_eq!(read_to_end(&mut s, LIMIT).await, End::Eof);
    eventually(LIMIT, "the session closed", || log.count("close") == 1).await;
    assert_eq!(log.events(), ["open", "message:last words", "close"]);
    within(LIMIT, server.shutdown(LIMIT)).await;
}

#[tokio::test]
async fn a_server_shutting_down_sends_1001_going_away() {
    let (server, log) = echo_server(SessionConfig::default()).await;
    let mut s = connect(server.local_addr(), "/ws").await;
    the_session(&server).await;
    let shutdown = tokio::spawn({
        let server = server.clone();
        async move { server.shutdown(LIMIT).await }
    });
    let close = read_close(&mut s).await;
    assert_eq!(close.close_code(), Some(1001), "{close:?}");
    s.write_all(&client_close(1001)).await.expect("answer");
    assert_eq!(read_to_end(&mut s, LIMIT).await, End::Eof);
    within(LIMIT, shutdown).await.expect("shutdown task");
    assert_eq!(log.events(), ["open", "close"]);
}

/// Waits for the server to close, then prints how: "closed <code> clean"
/// when the closing handshake completed, "closed <code> error" otherwise.
const PYTHON_WAITS_FOR_CLOSE: &str = r#"
import asyncio, sys
import websockets

async def main(url):
    async with websockets.connect(url, compression=None) as ws:
        print("connected", flush=True)
        try:
            got = await asyncio.wait_for(ws.recv(), 10)
            print("unexpected message %r" % (got,))
            sys.exit(1)
        except websockets.exceptions.ConnectionClosedOK as e:
            print("closed", e.rcvd.code, "clean")
        except websockets.exceptions.ConnectionClosedError as e:
            print("closed", e.rcvd.code if e.rcvd else None, "error")

asyncio.run(asyncio.wait_for(main(sys.argv[1]), 15))
"#;

/// Runs the Python client, closes the server's session (or shuts the
/// server down), and returns what the client printed last.
async fn python_sees(server: &ServerHandle, shutdown: bool) -> String {
    let url = format!("ws://{}/ws", server.local_addr());
    let python = tokio::task::spawn_blocking(move || {
        run_python(PYTHON_WAITS_FOR_CLOSE, &[&url], Duration::from_secs(20))
    });
    let session = within(Duration::from_secs(15), async {
        loop {
            if let Some(s) = server.sessions().sessions().pop() {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let start = Instant::now();
    if shutdown {
        server.shutdown(LIMIT).await;
    } else {
        session.close();
    }
    let (ok, stdout, stderr) = python.await.expect("python runner");
    assert!(
        ok,
        "the Python client failed; stdout {stdout:?}, stderr {stderr:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "the Python client took {:?} to see the close",
        start.elapsed()
    );
    stdout.lines().last().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn pythons_websockets_client_sees_a_clean_1000_close_and_a_clean_1001_on_shutdown() {
    let (server, _log) = echo_server(SessionConfig::default()).await;
    assert_eq!(python_sees(&server, false).await, "closed 1000 clean");
    assert_eq!(python_sees(&server, true).await, "closed 1001 clean");
}
