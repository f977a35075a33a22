//! The WebSocket frame layer against raw peers on 127.0.0.1 (RFC 6455 §5):
//! fragmentation with control frames between the fragments, ping and pong,
//! every protocol violation closed with its close code, the message size
//! limit exactly at `max_packet_len`, pings and pongs resetting the read
//! timeout, and Python's `websockets` client sending a fragmented message,
//! a ping and a close.

mod common;
mod ws_raw;

use std::time::Duration;

use common::{eventually, within, Log};
use getty::{
    new_session_fn, BoxError, Client, ListenerService, Server, ServerBuilder, ServerHandle,
    Session, SessionConfig,
};
use tokio::{io::AsyncWriteExt, net::TcpStream};
use tokio_util::codec::BytesCodec;
use ws_raw::*;

const LIMIT: Duration = Duration::from_secs(5);

async fn echo_server(builder: ServerBuilder) -> (ServerHandle, Log) {
    recording_echo(builder.websocket("/ws")).await
}

async fn send(s: &mut TcpStream, bytes: &[u8]) {
    s.write_all(bytes).await.expect("write");
}

// ----- fragmentation, ping, pong ---------------------------------------------------

#[tokio::test]
async fn a_fragmented_message_with_a_ping_between_its_fragments_is_one_packet_and_the_ping_is_answered(
) {
    let (server, log) = echo_server(Server::builder()).await;
    let mut s = connect(server.local_addr(), "/ws").await;
    send(&mut s, &client_frame(false, BINARY, b"hel")).await;
    send(&mut s, &client_frame(true, PING, b"between")).await;
    send(&mut s, &client_frame(false, CONTINUATION, b"lo ")).await;
    send(&mut s, &client_frame(true, PONG, b"unsolicited")).await;
    send(&mut s, &client_frame(true, CONTINUATION, b"world")).await;

    let pong = read_frame(&mut s, 125).await.expect("a pong");
    assert_eq!(
        (pong.opcode, pong.payload.as_slice()),
        (PONG, &b"between"[..])
    );
    let echo = read_data(&mut s, 64).await;
    assert_eq!(
        (echo.fin, echo.opcode, echo.payload.as_slice()),
        (true, BINARY, &b"hello world"[..])
    );
    assert_eq!(log.events(), ["open", "message:hello world"]);
    drop(s);
    within(LIMIT, server.shutdown(LIMIT)).await;
}

#[tokio::test]
async fn a_text_message_split_inside_a_utf8_character_is_accepted_when_text_is() {
    let (server, log) = echo_server(Server::builder().accept_text_messages(true)).await;
    let mut s = connect(server.local_addr(), "/ws").await;
    let word = "héllo".as_bytes();
    // 'é' is two bytes: the first fragment ends in the middle of it.
    send(&mut s, &client_frame(false, TEXT, &word[..2])).await;
    send(&mut s, &client_frame(true, CONTINUATION, &word[2..])).await;
    let echo = read_data(&mut s, 64).await;
    assert_eq!(echo.payload, word);
    assert_eq!(log.events(), ["open", "message:héllo"]);
    drop(s);
    within(LIMIT, server.shutdown(LIMIT)).await;
}

// ----- violations, each with its close code ---------------------------------------------

/// Sends `frames` on a fresh connection (after one good message, so the
/// session is known to work), expects a Close frame with `code`, answers it,
/// and expects an orderly end of the connection and an error event.
async fn expect_close_code(builder: ServerBuilder, what: &str, frames: &[Vec<u8>], code: u16) {
    let (server, log) = echo_server(builder).await;
    let mut s = connect(server.local_addr(), "/ws").await;
    send(&mut s, &client_frame(true, BINARY, b"fine")).await;
    assert_eq!(read_data(&mut s, 64).await.payload, b"fine", "{what}");
    for f in frames {
        send(&mut s, f).await;
    }
    let close = read_close(&mut s).await;
    assert_eq!(close.close_code(), Some(code), "{what}: {close:?}");
    send(&mut s, &client_close(code)).await;
    assert_eq!(read_to_end(&mut s, LIMIT).await, End::Eof, "{what}");
    eventually(LIMIT, "the session closed", || log.count("close") == 1).await;
    let events = log.events();
    assert_eq!(events.len(), 4, "{what}: {events:?}");
    assert!(events[2].starts_with("error:"), "{what}: {events:?}");
    within(LIMIT, server.shutdown(LIMIT)).await;
}

#[tokio::test]
async fn protocol_violations_close_with_1002() {
    let cases: Vec<(&str, Vec<Vec<u8>>)> = vec![
        (
            "an unmasked client frame",
            vec![frame_with(true, 0, BINARY, None, b"bare")],
        ),
        (
            "a reserved bit set",
            vec![frame_with(true, 0x40, BINARY, Some(MASK), b"rsv1")],
        ),
        (
            "all reserved bits set",
            vec![frame_with(true, 0x70, BINARY, Some(MASK), b"rsv")],
        ),
        (
            "a reserved data opcode",
            vec![client_frame(true, 0x3, b"op3")],
        ),
        (
            "a reserved control opcode",
            vec![client_frame(true, 0xB, b"opB")],
        ),
        (
            "a ping of 126 bytes",
            vec![client_frame(true, PING, &[0u8; 126])],
        ),
        (
            "a fragmented ping",
            vec![client_frame(false, PING, b"half")],
        ),
        (
            "a continuation with no message started",
            vec![client_frame(true, CONTINUATION, b"orphan")],
        ),
        (
            "a new message inside a fragmented one",
            vec![
                client_frame(false, BINARY, b"first"),
                client_frame(true, BINARY, b"second"),
            ],
        ),
        (
            "a close frame with a one-byte body",
            vec![client_frame(true, CLOSE, &[3])],
        ),
        (
            "a close frame with a reserved code",
            vec![client_close(1005)],
        ),
    ];
    for (what, frames) in cases {
        expect_close_code(Server::builder(), what, &frames, 1002).await;
    }
}

#[tokio::test]
async fn invalid_utf8_in_an_accepted_text_message_closes_with_1007() {
    expect_close_code(
        Server::builder().accept_text_messages(true),
        "invalid UTF-8",
        &[client_frame(true, TEXT, &[b'a', 0xff, 0xfe])],
        1007,
    )
    .await;
    expect_close_code(
        Server::builder().accept_text_messages(true),
        "a text message ending inside a character",
        &[
            client_frame(false, TEXT, b"ok "),
            client_frame(true, CONTINUATION, &"é".as_bytes()[..1]),
        ],
        1007,
    )
    .await;
}

#[tokio::test]
async fn a_text_message_is_refused_with_1003_when_text_is_not_accepted() {
    expect_close_code(
        Server::builder(),
        "a text message",
        &[client_frame(true, TEXT, b"words")],
        1003,
    )
    .await;
}

// ----- the size limit -----------------------------------------------------------------

/// The rule: a WebSocket message (all its fragments together) of at most
/// `max_packet_len` bytes is a packet; one byte more is refused with 1009.
#[tokio::test]
async fn a_message_of_max_packet_len_is_a_packet_and_one_byte_more_closes_with_1009() {
    const MAX: usize = 1024;
    let builder = || Server::builder().session_config(SessionConfig::default().max_packet_len(MAX));
    let (server, log) = echo_server(builder()).await;
    let mut s = connect(server.local_addr(), "/ws").await;
    send(&mut s, &client_frame(true, BINARY, &[b'a'; MAX])).await;
    assert_eq!(read_data(&mut s, MAX).await.payload.len(), MAX);
    send(&mut s, &client_frame(false, BINARY, &[b'b'; MAX - 24])).await;
    send(&mut s, &client_frame(true, CONTINUATION, &[b'b'; 24])).await;
    assert_eq!(read_data(&mut s, MAX).await.payload.len(), MAX);
    assert_eq!(log.count("message:"), 2);
    drop(s);
    within(LIMIT, server.shutdown(LIMIT)).await;

    expect_close_code(
        builder(),
        "one byte over in one frame",
        &[client_frame(true, BINARY, &[b'c'; MAX + 1])],
        1009,
    )
    .await;
    expect_close_code(
        builder(),
        "one byte over across fragments",
        &[
            client_frame(false, BINARY, &[b'd'; MAX]),
            client_frame(true, CONTINUATION, b"e"),
        ],
        1009,
    )
    .await;
}

/// The limit is checked on the frame header, before any of the payload is
/// buffered: a header claiming 1 GiB is answered with 1009 at once.
#[tokio::test]
async fn a_frame_header_claiming_more_than_the_limit_is_refused_before_its_payload() {
    let (server, log) = echo_server(
        Server::builder().session_config(SessionConfig::default().max_packet_len(1024)),
    )
    .await;
    let mut s = connect(server.local_addr(), "/ws").await;
    send(&mut s, &client_header(true, BINARY, 1 << 30)).await;
    let close = read_close(&mut s).await;
    assert_eq!(close.close_code(), Some(1009), "{close:?}");
    send(&mut s, &client_close(1009)).await;
    eventually(LIMIT, "the session closed", || log.count("close") == 1).await;
    assert!(
        log.events()[1].starts_with("error:packet_too_large:"),
        "{:?}",
        log.events()
    );
    within(LIMIT, server.shutdown(LIMIT)).await;
}

// ----- keep-alive and the read timeout ---------------------------------------------------

/// A peer that sends no data but pings every 200 ms stays connected through
/// a 700 ms read timeout: pings (and pongs) count as input, as in getty.
#[tokio::test]
async fn pings_every_200_ms_keep_a_700_ms_read_timeout_from_closing_the_session() {
    let (server, log) =
        echo_server(Server::builder().session_config(
            SessionConfig::default().read_timeout(Some(Duration::from_millis(700))),
        ))
        .await;
    let mut s = connect(server.local_addr(), "/ws").await;
    eventually(LIMIT, "the session", || server.session_count() == 1).await;
    for i in 0..10u8 {
        send(&mut s, &client_frame(true, PING, &[i])).await;
        let pong = read_frame(&mut s, 125).await.expect("a pong");
        assert_eq!((pong.opcode, pong.payload), (PONG, vec![i]));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(server.session_count(), 1, "{:?}", log.events());
    assert_eq!(log.events(), ["open"]);

    // The contrast: silence is closed by the same read timeout.
    let close = read_close(&mut s).await;
    assert_eq!(close.close_code(), Some(1008), "{close:?}");
    send(&mut s, &client_close(1008)).await;
    eventually(LIMIT, "the session closed", || log.count("close") == 1).await;
    assert!(
        log.events()[1].starts_with("error:read_timeout:"),
        "{:?}",
        log.events()
    );
    within(LIMIT, server.shutdown(LIMIT)).await;
}

/// A getty client and server, both pinging on a 100 ms cron with a 500 ms
/// read timeout and no data at all: each answers the other's pings (the
/// client's frames masked, as the server requires), so both sessions live on.
#[tokio::test]
async fn a_getty_client_and_server_keep_each_other_alive_with_pings_alone() {
    let config = SessionConfig::default()
        .cron_period(Some(Duration::from_millis(100)))
        .read_timeout(Some(Duration::from_millis(500)));
    let (server, log) = echo_server(Server::builder().session_config(config.clone())).await;
    let client_log = Log::default();
    let l = client_log.clone();
    let client = Client::builder()
        .session_config(config)
        .connect_ws(
            &format!("ws://{}/ws", server.local_addr()),
            BytesCodec::new(),
            new_session_fn(move |_: &Session| {
                Ok::<_, BoxError>(ListenerService::new(Echo { log: l.clone() }))
            }),
        )
        .await
        .expect("a ws URL");
    eventually(LIMIT, "both sessions", || {
        server.session_count() == 1 && client.session_count() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(log.events(), ["open"], "server");
    assert_eq!(client_log.events(), ["open"], "client");
    within(LIMIT, client.shutdown(LIMIT)).await;
    eventually(LIMIT, "the server session closed", || {
        log.count("close") == 1
    })
    .await;
    assert_eq!(log.events(), ["open", "close"], "server");
    within(LIMIT, server.shutdown(LIMIT)).await;
}

// ----- a real client -------------------------------------------------------------------

/// Sends a message in three fragments, pings and awaits the pong, closes
/// with 1000 and prints the close code the server answered with.
const PYTHON_FRAGMENTS: &str = r#"
import asyncio, sys
import websockets

async def main(url):
    async with websockets.connect(url, compression=None) as ws:
        await ws.send([b"frag", b"men", b"ted"])
        got = await asyncio.wait_for(ws.recv(), 5)
        if got != b"fragmented":
            sys.stderr.write("expected b'fragmented', got %r\n" % (got,))
            sys.exit(1)
        pong = await ws.ping(b"are you there")
        await asyncio.wait_for(pong, 5)
        await ws.close(1000, "done")
        print("closed", ws.close_code, ws.close_reason == "" or ws.close_reason)

asyncio.run(asyncio.wait_for(main(sys.argv[1]), 15))
"#;

#[tokio::test]
async fn pythons_websockets_client_sends_fragments_pings_and_closes_cleanly() {
    let (server, log) = echo_server(Server::builder()).await;
    let url = format!("ws://{}/ws", server.local_addr());
    let (ok, stdout, stderr) = tokio::task::spawn_blocking(move || {
        run_python(PYTHON_FRAGMENTS, &[&url], Duration::from_secs(20))
    })
    .await
    .expect("python runner");
    assert!(
        ok,
        "the Python client failed; stdout {stdout:?}, stderr {stderr:?}"
    );
    assert!(
        stdout.trim().starts_with("closed 1000"),
        "stdout {stdout:?}, stderr {stderr:?}"
    );
    eventually(LIMIT, "the session closed", || log.count("close") == 1).await;
    assert_eq!(log.events(), ["open", "message:fragmented", "close"]);
    within(LIMIT, server.shutdown(LIMIT)).await;
}
