//! Codecs over real sockets: `LengthCodec` in every shape, its maximum both
//! ways, a getty-style `ReadWriter`, and a plain tokio-util codec.
mod common;

use std::{convert::Infallible, io, time::Duration};

use bytes::Bytes;
use common::*;
use getty::{
    codec::{per_session, LengthCodec, ReadWriter, ReadWriterCodec},
    new_session_fn, BoxError, Client, Error, Event, EventListener, ListenerService, Request,
    Server, ServerHandle, Session, SessionConfig,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_util::codec::{LengthDelimitedCodec, LinesCodec};
use tower::service_fn;

const LIMIT: Duration = Duration::from_secs(5);

async fn expect_closed(s: &mut TcpStream) {
    let mut buf = [0u8; 64];
    match within(LIMIT, s.read(&mut buf)).await {
        Ok(0) => {}
        Ok(n) => panic!("expected the connection closed, got {:?}", &buf[..n]),
        Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}"),
    }
}

async fn read_exactly(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    within(LIMIT, s.read_exact(&mut buf))
        .await
        .expect("read_exact");
    buf
}

/// A frame with a `width`-byte length in the given byte order, by hand.
fn frame_with(width: usize, big_endian: bool, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u64;
    let mut v = if big_endian {
        len.to_be_bytes()[8 - width..].to_vec()
    } else {
        len.to_le_bytes()[..width].to_vec()
    };
    v.extend_from_slice(payload);
    v
}

/// Records every event (with the error's `Debug`) and answers `"n"` with
/// n bytes of `x`.
fn sized_reply_server_make(
    log: &Log,
) -> impl tower::Service<
    Session,
    Response = impl tower::Service<
        Request<Bytes>,
        Response = Option<Bytes>,
        Error = Infallible,
        Future = impl Send + 'static,
    > + Send
                   + 'static,
    Error = Infallible,
    Future = impl Send + 'static,
> + Send
       + 'static {
    let log = log.clone();
    new_session_fn(move |_: &Session| {
        let log = log.clone();
        Ok::<_, Infallible>(service_fn(move |req: Request<Bytes>| {
            let log = log.clone();
            async move {
                match req.event {
                    Event::Message(pkg) => {
                        let n: usize = std::str::from_utf8(&pkg).unwrap().parse().unwrap();
                        log.push(format!("message:{n}"));
                        return Ok(Some(Bytes::from(vec![b'x'; n])));
                    }
                    Event::Error(e) => log.push(format!("error:{e:?}")),
                    other => log.push(other.name()),
                }
                Ok::<_, Infallible>(None)
            }
        }))
    })
}

#[tokio::test]
async fn length_codec_round_trips_with_1_2_4_and_8_byte_lengths_in_both_byte_orders() {
    for width in [1usize, 2, 4, 8] {
        for big_endian in [true, false] {
            let mut builder = LengthCodec::builder();
            builder.length_field_bytes(width);
            if big_endian {
                builder.big_endian();
            } else {
                builder.little_endian();
            }
            let codec = builder.new_codec();
            let log = Log::default();
            let l = log.clone();
            let server = Server::builder().bind("127.0.0.1:0").await.unwrap();
            let server = server.serve(
                codec,
                new_session_fn(move |_: &Session| {
                    Ok::<_, BoxError>(ListenerService::new(Recorder { log: l.clone() }))
                }),
            );
            let mut raw = TcpStream::connect(server.local_addr()).await.unwrap();
            // Lengths that need every byte of a 2-byte field, within a 1-byte one.
            let long = if width == 1 { 200 } else { 300 };
            let payloads = [
                format!("w{width}-be{big_endian}").into_bytes(),
                vec![b'z'; long],
                Vec::new(),
            ];
            let mut wire = Vec::new();
            for p in &payloads {
                wire.extend_from_slice(&frame_with(width, big_endian, p));
            }
            raw.write_all(&wire).await.unwrap();
            let echoed = read_exactly(&mut raw, wire.len()).await;
            assert_eq!(echoed, wire, "width {width}, big endian {big_endian}");
            assert_eq!(
                log.count("message:"),
                3,
                "width {width}, big endian {big_endian}: {:?}",
                log.events()
            );
            server.shutdown(LIMIT).await;
        }
    }
}

#[tokio::test]
async fn length_codec_works_on_both_ends_of_a_getty_client_and_server() {
    struct Got {
        log: Log,
    }
    impl EventListener<Bytes> for Got {
        fn on_message(&mut self, _: &Session, pkg: Bytes) -> Option<Bytes> {
            self.log
                .push(format!("got:{}", String::from_utf8_lossy(&pkg)));
            None
        }
    }
    let mut builder = LengthCodec::builder();
    builder.length_field_bytes(2).little_endian();
    let codec = builder.new_codec();

    let server_log = Log::default();
    let l = server_log.clone();
    let server = Server::builder().bind("127.0.0.1:0").await.unwrap();
    let server = server.serve(
        codec,
        new_session_fn(move |_: &Session| {
            Ok::<_, BoxError>(ListenerService::new(Recorder { log: l.clone() }))
        }),
    );
    let log = Log::default();
    let l = log.clone();
    let client = Client::builder()
        .connect(
            server.local_addr().to_string(),
            codec,
            new_session_fn(move |_: &Session| {
                Ok::<_, BoxError>(ListenerService::new(Got { log: l.clone() }))
            }),
        )
        .await
        .expect("connect");
    eventually(LIMIT, "connected", || client.session_count() == 1).await;
    let s = client.sessions().sessions().pop().unwrap();
    s.send(Bytes::from_static(b"there and back")).await.unwrap();
    eventually(LIMIT, "echo", || log.count("got:") == 1).await;
    assert_eq!(log.events(), ["got:there and back"]);
    assert_eq!(server_log.count("message:there and back"), 1);
    client.close();
    within(LIMIT, client.closed()).await;
    server.shutdown(LIMIT).await;
}

#[tokio::test]
async fn length_codec_max_is_enforced_when_decoding() {
    let (server, log) = recording_server(SessionConfig::default().max_packet_len(16)).await;
    let mut raw = TcpStream::connect(server.local_addr()).await.unwrap();
    let sixteen = [b'a'; 16];
    write_frame(&mut raw, &sixteen).await;
    assert_eq!(read_frame(&mut raw).await, sixteen);

    // A header declaring 17 bytes is refused before any payload arrives.
    raw.write_all(&17u32.to_be_bytes()).await.unwrap();
    expect_closed(&mut raw).await;
    eventually(LIMIT, "close", || log.count("close") == 1).await;
    let events = log.events();
    assert_eq!(events.len(), 4, "{events:?}");
    assert!(
        events[2].starts_with("error:packet of 17 bytes exceeds max_packet_len 16"),
        "{events:?}"
    );
    server.shutdown(LIMIT).await;
}

#[tokio::test]
async fn a_max_packet_len_set_in_the_new_session_callback_reaches_the_length_codec() {
    let log = Log::default();
    let l = log.clone();
    let server = Server::builder().bind("127.0.0.1:0").await.unwrap();
    let server = server.serve(
        LengthCodec::new(),
        new_session_fn(move |s: &Session| {
            s.set_max_packet_len(16);
            Ok::<_, BoxError>(ListenerService::new(Recorder { log: l.clone() }))
        }),
    );
    let mut raw = TcpStream::connect(server.local_addr()).await.unwrap();
    raw.write_all(&17u32.to_be_bytes()).await.unwrap();
    expect_closed(&mut raw).await;
    eventually(LIMIT, "close", || log.count("close") == 1).await;
    assert_eq!(
        log.count("error:packet of 17 bytes exceeds max_packet_len 16"),
        1,
        "{:?}",
        log.events()
    );
    server.shutdown(LIMIT).await;
}

#[tokio::test]
async fn length_codec_max_is_enforced_when_encoding() {
    let log = Log::default();
    let server = Server::builder()
        .session_config(SessionConfig::default().max_packet_len(16))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let server = server.serve(LengthCodec::new(), sized_reply_server_make(&log));
    let mut raw = TcpStream::connect(server.local_addr()).await.unwrap();

    write_frame(&mut raw, b"16").await;
    assert_eq!(read_frame(&mut raw).await, [b'x'; 16]);

    // The answer to this one is too large to encode: nothing of it is
    // written, the session fails and closes.
    write_frame(&mut raw, b"17").await;
    expect_closed(&mut raw).await;
    eventually(LIMIT, "close", || log.count("close") == 1).await;
    let events = log.events();
    assert_eq!(events.len(), 5, "{events:?}");
    assert_eq!(events[..3], ["open", "message:16", "message:17"]);
    assert!(
        events[3].starts_with("error:PacketTooLarge") && events[3].contains("len: 17, max: 16"),
        "{events:?}"
    );
    assert_eq!(events[4], "close");
    server.shutdown(LIMIT).await;
}

#[tokio::test]
async fn length_codec_refuses_a_packet_its_length_field_cannot_express() {
    let log = Log::default();
    let mut builder = LengthCodec::builder();
    builder.length_field_bytes(1);
    let server = Server::builder().bind("127.0.0.1:0").await.unwrap();
    let server = server.serve(builder.new_codec(), sized_reply_server_make(&log));
    let mut raw = TcpStream::connect(server.local_addr()).await.unwrap();

    raw.write_all(&frame_with(1, true, b"255")).await.unwrap();
    let got = read_exactly(&mut raw, 256).await;
    assert_eq!(got[0], 255);
    assert!(got[1..].iter().all(|&b| b == b'x'));

    raw.write_all(&frame_with(1, true, b"256")).await.unwrap();
    expect_closed(&mut raw).await;
    eventually(LIMIT, "close", || log.count("close") == 1).await;
    let errors: Vec<String> = log
        .events()
        .into_iter()
        .filter(|e| e.starts_with("error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{:?}", log.events());
    assert!(errors[0].contains("LengthOverflow"), "{errors:?}");
    server.shutdown(LIMIT).await;
}

/// getty's package handler for '\n'-terminated lines; a line longer than the
/// session's `max_packet_len` is an error.
struct Lines;

impl ReadWriter<String> for Lines {
    type Packet = String;

    fn read(&self, s: &Session<String>, data: &[u8]) -> Result<Option<(String, usize)>, BoxError> {
        match data.iter().position(|&b| b == b'\n') {
            Some(i) if i > s.max_packet_len() => Err("line too long".into()),
            Some(i) => Ok(Some((std::str::from_utf8(&data[..i])?.to_owned(), i + 1))),
            None if data.len() > s.max_packet_len() => Err("line too long".into()),
            None => Ok(None),
        }
    }

    fn write(&self, _: &Session<String>, pkg: String) -> Result<Bytes, BoxError> {
        Ok(Bytes::from(pkg + "\n"))
    }
}

/// Answers each line in upper case; records errors.
struct Upper {
    log: Log,
}

impl EventListener<String, String> for Upper {
    fn on_message(&mut self, _: &Session<String>, line: String) -> Option<String> {
        self.log.push(format!("message:{line}"));
        Some(line.to_uppercase())
    }
    fn on_error(&mut self, _: &Session<String>, e: &Error) {
        self.log.push(format!("error:{e}"));
    }
    fn on_close(&mut self, _: &Session<String>) {
        self.log.push("close");
    }
}

async fn upper_server(config: SessionConfig, log: &Log) -> ServerHandle<String> {
    let l = log.clone();
    Server::builder()
        .session_config(config)
        .bind("127.0.0.1:0")
        .await
        .unwrap()
        .serve(
            ReadWriterCodec::new(Lines),
            new_session_fn(move |_: &Session<String>| {
                Ok::<_, BoxError>(ListenerService::new(Upper { log: l.clone() }))
            }),
        )
}

#[tokio::test]
async fn a_getty_style_read_writer_serves_a_line_protocol_end_to_end() {
    let log = Log::default();
    let server = upper_server(SessionConfig::default(), &log).await;
    let mut raw = TcpStream::connect(server.local_addr()).await.unwrap();
    // A line split across writes, and two lines in one write.
    raw.write_all(b"hello\nwor").await.unwrap();
    assert_eq!(read_exactly(&mut raw, 6).await, b"HELLO\n");
    raw.write_all(b"ld\nfoo\nbar\n").await.unwrap();
    assert_eq!(read_exactly(&mut raw, 14).await, b"WORLD\nFOO\nBAR\n");
    assert_eq!(
        log.events(),
        [
            "message:hello",
            "message:world",
            "message:foo",
            "message:bar"
        ]
    );

    // The same handler on a getty client.
    struct Heard {
        log: Log,
    }
    impl EventListener<String, String> for Heard {
        fn on_message(&mut self, _: &Session<String>, line: String) -> Option<String> {
            self.log.push(line);
            None
        }
    }
    let heard = Log::default();
    let h = heard.clone();
    let client = Client::builder()
        .connect(
            server.local_addr().to_string(),
            ReadWriterCodec::new(Lines),
            new_session_fn(move |_: &Session<String>| {
                Ok::<_, BoxError>(ListenerService::new(Heard { log: h.clone() }))
            }),
        )
        .await
        .expect("connect");
    eventually(LIMIT, "connected", || client.session_count() == 1).await;
    let s = client.sessions().sessions().pop().unwrap();
    s.send("ping".to_owned()).await.unwrap();
    eventually(LIMIT, "answer", || heard.count("PING") == 1).await;
    client.close();
    within(LIMIT, client.closed()).await;
    server.shutdown(LIMIT).await;
}

#[tokio::test]
async fn a_read_writer_error_fails_and_closes_the_session() {
    let log = Log::default();
    let server = upper_server(SessionConfig::default().max_packet_len(8), &log).await;
    let mut raw = TcpStream::connect(server.local_addr()).await.unwrap();
    raw.write_all(b"short\n").await.unwrap();
    assert_eq!(read_exactly(&mut raw, 6).await, b"SHORT\n");
    raw.write_all(b"much too long\n").await.unwrap();
    expect_closed(&mut raw).await;
    eventually(LIMIT, "close", || log.count("close") == 1).await;
    let events = log.events();
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(events[0], "message:short");
    assert!(events[1].contains("line too long"), "{events:?}");
    assert_eq!(events[2], "close");
    server.shutdown(LIMIT).await;
}

/// Echoes each line with a prefix.
struct Prefix {
    log: Log,
}

impl EventListener<String, String> for Prefix {
    fn on_message(&mut self, _: &Session<String>, line: String) -> Option<String> {
        Some(format!("echo: {line}"))
    }
    fn on_error(&mut self, _: &Session<String>, e: &Error) {
        self.log.push(format!("error:{e}"));
    }
    fn on_close(&mut self, _: &Session<String>) {
        self.log.push("close");
    }
}

#[tokio::test]
async fn a_lines_codec_value_is_a_per_session_codec() {
    let log = Log::default();
    let l = log.clone();
    let server = Server::builder().bind("127.0.0.1:0").await.unwrap().serve(
        LinesCodec::new(),
        new_session_fn(move |_: &Session<String>| {
            Ok::<_, BoxError>(ListenerService::new(Prefix { log: l.clone() }))
        }),
    );
    let mut raw = TcpStream::connect(server.local_addr()).await.unwrap();
    raw.write_all(b"a\nbc\r\n").await.unwrap();
    let want = b"echo: a\necho: bc\n";
    assert_eq!(read_exactly(&mut raw, want.len()).await, want);
    drop(raw);
    eventually(LIMIT, "close", || log.count("close") == 1).await;
    assert_eq!(log.events(), ["close"]);
    server.shutdown(LIMIT).await;
}

#[tokio::test]
async fn a_per_session_codec_can_read_the_session_settings() {
    let log = Log::default();
    let l = log.clone();
    let server = Server::builder()
        .session_config(SessionConfig::default().max_packet_len(8))
        .bind("127.0.0.1:0")
        .await
        .unwrap()
        .serve(
            // No type on `s`: the closure's argument is inferred.
            per_session(|s| LinesCodec::new_with_max_length(s.max_packet_len())),
            new_session_fn(move |_: &Session<String>| {
                Ok::<_, BoxError>(ListenerService::new(Prefix { log: l.clone() }))
            }),
        );
    let mut raw = TcpStream::connect(server.local_addr()).await.unwrap();
    raw.write_all(b"12345678\n").await.unwrap();
    let want = b"echo: 12345678\n";
    assert_eq!(read_exactly(&mut raw, want.len()).await, want);
    raw.write_all(b"123456789\n").await.unwrap();
    expect_closed(&mut raw).await;
    eventually(LIMIT, "close", || log.count("close") == 1).await;
    let events = log.events();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(events[0].contains("max line length exceeded"), "{events:?}");
    server.shutdown(LIMIT).await;
}

#[tokio::test]
async fn an_explicit_length_codec_max_below_the_session_max_still_holds() {
    let log = Log::default();
    let l = log.clone();
    // The session allows 1 MiB (the default); the codec was built for 8 bytes.
    let server = Server::builder().bind("127.0.0.1:0").await.unwrap().serve(
        LengthCodec::builder().max_packet_len(8).new_codec(),
        new_session_fn(move |_: &Session| {
            Ok::<_, Infallible>(getty::ListenerService::new(Recorder { log: l.clone() }))
        }),
    );
    let mut raw = TcpStream::connect(server.local_addr()).await.unwrap();
    write_frame(&mut raw, b"12345678").await;
    assert_eq!(read_frame(&mut raw).await, b"12345678");
    raw.write_all(&9u32.to_be_bytes()).await.unwrap();
    expect_closed(&mut raw).await;
    eventually(LIMIT, "close", || log.count("close") == 1).await;
    assert!(
        log.events()
            .iter()
            .any(|e| e.starts_with("error:packet of 9 bytes exceeds max_packet_len 8")),
        "{:?}",
        log.events()
    );
    server.shutdown(LIMIT).await;
}

#[tokio::test]
async fn a_length_delimited_codec_value_is_a_per_session_codec() {
    // Decodes into `BytesMut`, encodes `Bytes`: the echo freezes each packet.
    let server = Server::builder().bind("127.0.0.1:0").await.unwrap().serve(
        LengthDelimitedCodec::new(),
        new_session_fn(|_: &Session| {
            Ok::<_, Infallible>(service_fn(|req: Request<bytes::BytesMut>| async move {
                Ok::<_, Infallible>(req.into_message().map(bytes::BytesMut::freeze))
            }))
        }),
    );
    // Two sessions: each gets its own clone of the codec.
    let mut a = TcpStream::connect(server.local_addr()).await.unwrap();
    let mut b = TcpStream::connect(server.local_addr()).await.unwrap();
    // Half a frame on `a`: a codec shared between sessions would mix it
    // with `b`'s frame.
    a.write_all(&frame(b"hello")[..6]).await.unwrap();
    write_frame(&mut b, b"other").await;
    assert_eq!(read_frame(&mut b).await, b"other");
    a.write_all(&frame(b"hello")[6..]).await.unwrap();
    assert_eq!(read_frame(&mut a).await, b"hello");
    server.shutdown(LIMIT).await;
}
