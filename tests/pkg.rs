//! The package API (gtcp's SendPkg / RecvPkg) over real sockets on
//! 127.0.0.1: the wire format for each header size, the connection's calls
//! and their timeouts and retries, and the halves. Limits and misbehaving
//! peers are in `pkg_faults.rs`.

mod pkg_support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use getty::pkg::{Conn, PkgError, PkgOption, Retry};
use pkg_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// ----- the wire format ---------------------------------------------------------

#[tokio::test]
async fn each_header_size_round_trips_empty_small_and_large_packages() {
    for h in 1..=4u8 {
        let option = PkgOption::new().header_size(h);
        let (server, addr) = echo_server(option).await;
        let mut conn = Conn::builder()
            .pkg_option(option)
            .connect(&addr)
            .await
            .expect("connect");
        // The largest a 1- or 2-byte header allows; past 64 KiB for 3 and 4.
        let biggest = option.get_max_data_size().min(70_000);
        for len in [0usize, 1, 100, biggest] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let reply = within(LIMIT, conn.send_recv_pkg(&data))
                .await
                .expect("echo");
            assert_eq!(reply.len(), len, "header size {h}");
            assert_eq!(&reply[..], &data[..], "header size {h}");
        }
        drop(conn);
        server.shutdown(LIMIT).await;
    }
}

#[tokio::test]
async fn send_pkg_writes_a_big_endian_header_counting_only_the_data() {
    let (listener, addr) = raw_listener().await;
    let conn = Conn::connect(&addr).await.expect("connect");
    let (mut raw, _) = listener.accept().await.expect("accept");
    for h in 1..=4u8 {
        let option = PkgOption::new().header_size(h);
        conn.send_pkg_with(b"abc", &option).await.expect("send");
        conn.send_pkg_with(b"", &option).await.expect("send empty");
        let mut got = vec![0u8; 2 * usize::from(h) + 3];
        within(LIMIT, raw.read_exact(&mut got)).await.expect("read");
        let mut want = frame(usize::from(h), b"abc");
        want.extend(frame(usize::from(h), b""));
        assert_eq!(got, want, "header size {h}");
    }
    // The default is gtcp's: two bytes.
    conn.send_pkg(vec![7u8; 258]).await.expect("send");
    let mut header = [0u8; 2];
    raw.read_exact(&mut header).await.expect("read");
    assert_eq!(header, [0x01, 0x02]);
}

#[tokio::test]
async fn recv_pkg_reads_packages_framed_by_hand_with_each_header_size() {
    let (listener, addr) = raw_listener().await;
    let mut conn = Conn::connect(&addr).await.expect("connect");
    let (mut raw, _) = listener.accept().await.expect("accept");
    for h in 1..=4usize {
        let mut wire = frame(h, b"hello");
        wire.extend(frame(h, b""));
        raw.write_all(&wire).await.expect("write");
        let option = PkgOption::new().header_size(h as u8);
        assert_eq!(
            within(LIMIT, conn.recv_pkg_with(&option))
                .await
                .expect("recv"),
            &b"hello"[..]
        );
        assert_eq!(
            within(LIMIT, conn.recv_pkg_with(&option))
                .await
                .expect("recv"),
            &b""[..]
        );
    }
}

// ----- calls, timeouts, retries ------------------------------------------------

#[tokio::test]
async fn send_recv_pkg_and_its_timeout_and_with_forms_get_the_reply() {
    let (server, addr) = echo_server(PkgOption::new().header_size(4)).await;
    let opt = PkgOption::new().header_size(4);
    let mut conn = Conn::builder()
        .pkg_option(opt)
        .connect(&addr)
        .await
        .expect("connect");
    assert_eq!(conn.send_recv_pkg(b"a").await.expect("a"), &b"a"[..]);
    assert_eq!(
        conn.send_recv_pkg_timeout(b"b", LIMIT).await.expect("b"),
        &b"b"[..]
    );
    assert_eq!(
        conn.send_recv_pkg_with(b"c", &opt).await.expect("c"),
        &b"c"[..]
    );
    assert_eq!(
        conn.send_recv_pkg_timeout_with(b"d", LIMIT, &opt)
            .await
            .expect("d"),
        &b"d"[..]
    );
    conn.send_pkg_timeout(b"e", LIMIT).await.expect("send e");
    conn.send_pkg_timeout_with(b"f", LIMIT, &opt)
        .await
        .expect("send f");
    assert_eq!(conn.recv_pkg_timeout(LIMIT).await.expect("e"), &b"e"[..]);
    assert_eq!(
        conn.recv_pkg_timeout_with(LIMIT, &opt).await.expect("f"),
        &b"f"[..]
    );
    drop(conn);
    server.shutdown(LIMIT).await;
}

#[tokio::test]
async fn recv_pkg_timeout_times_out_with_a_clear_error_when_the_peer_never_sends() {
    let (listener, addr) = raw_listener().await;
    let mut conn = Conn::connect(&addr).await.expect("connect");
    let (_raw, _) = listener.accept().await.expect("accept");
    let started = Instant::now();
    let err = within(LIMIT, conn.recv_pkg_timeout(Duration::from_millis(200)))
        .await
        .unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(err.to_string(), "recv_pkg timed out after 200ms");
    let err = within(LIMIT, conn.recv_timeout(3, Duration::from_millis(50)))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "recv timed out after 50ms");
    let err = within(LIMIT, conn.recv_line_timeout(Duration::from_millis(50)))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "recv_line timed out after 50ms");
    let err = within(
        LIMIT,
        conn.send_recv_pkg_timeout(b"?", Duration::from_millis(50)),
    )
    .await
    .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
}

#[tokio::test]
async fn a_timed_out_recv_keeps_the_partial_package_for_the_next_call() {
    let (listener, addr) = raw_listener().await;
    let mut conn = Conn::connect(&addr).await.expect("connect");
    let (mut raw, _) = listener.accept().await.expect("accept");
    let wire = frame(2, b"hello world");
    raw.write_all(&wire[..5]).await.expect("write part");
    let err = within(LIMIT, conn.recv_pkg_timeout(Duration::from_millis(100)))
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    raw.write_all(&wire[5..]).await.expect("write rest");
    let pkg = within(LIMIT, conn.recv_pkg_timeout(LIMIT))
        .await
        .expect("whole package");
    assert_eq!(pkg, &b"hello world"[..]);
}

#[tokio::test]
async fn retry_gives_a_timed_out_recv_more_attempts() {
    let (listener, addr) = raw_listener().await;
    let mut conn = Conn::connect(&addr).await.expect("connect");
    let (mut raw, _) = listener.accept().await.expect("accept");

    // Silent peer: 1 + 2 attempts of 60 ms, 10 ms apart, then the error.
    let retry = PkgOption::new().retry(Retry::new(2, Duration::from_millis(10)));
    let started = Instant::now();
    let err = within(
        LIMIT,
        conn.recv_pkg_timeout_with(Duration::from_millis(60), &retry),
    )
    .await
    .unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(3 * 60 + 2 * 10));
    assert!(
        matches!(
            err,
            PkgError::Timeout {
                op: "recv_pkg",
                attempts: 3,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "recv_pkg timed out after 60ms on each of 3 attempts"
    );

    // A package arriving during the third attempt is received.
    let late = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(150)).await;
        raw.write_all(&frame(2, b"late")).await.expect("write");
        raw
    });
    let retry = PkgOption::new().retry(Retry::new(20, Duration::from_millis(10)));
    let pkg = within(
        LIMIT,
        conn.recv_pkg_timeout_with(Duration::from_millis(60), &retry),
    )
    .await
    .expect("received on a later attempt");
    assert_eq!(pkg, &b"late"[..]);
    late.await.expect("writer");
}

#[tokio::test]
async fn raw_send_recv_and_recv_line_mix_with_packages_on_one_buffer() {
    let (listener, addr) = raw_listener().await;
    let mut conn = Conn::connect(&addr).await.expect("connect");
    let (mut raw, _) = listener.accept().await.expect("accept");

    let mut wire = b"MAGIC".to_vec();
    wire.extend(b"first line\nsecond\r\n\n");
    wire.extend(frame(2, b"pkg"));
    wire.extend(b"tail");
    raw.write_all(&wire).await.expect("write");
    assert_eq!(
        within(LIMIT, conn.recv(5)).await.expect("recv"),
        &b"MAGIC"[..]
    );
    assert_eq!(
        within(LIMIT, conn.recv_line()).await.expect("line"),
        &b"first line"[..]
    );
    assert_eq!(
        within(LIMIT, conn.recv_line()).await.expect("line"),
        &b"second"[..]
    );
    assert_eq!(
        within(LIMIT, conn.recv_line()).await.expect("line"),
        &b""[..]
    );
    assert_eq!(
        within(LIMIT, conn.recv_pkg()).await.expect("pkg"),
        &b"pkg"[..]
    );
    assert_eq!(conn.recv(0).await.expect("recv 0"), Bytes::new());
    assert_eq!(
        within(LIMIT, conn.recv_timeout(4, LIMIT))
            .await
            .expect("tail"),
        &b"tail"[..]
    );

    conn.send(b"raw bytes").await.expect("send");
    conn.send_timeout(b"!", LIMIT).await.expect("send");
    let mut got = [0u8; 10];
    raw.read_exact(&mut got).await.expect("read");
    assert_eq!(&got, b"raw bytes!");

    raw.write_all(b"PONG").await.expect("write");
    let reply = within(LIMIT, conn.send_recv(b"PING", 4))
        .await
        .expect("send_recv");
    assert_eq!(reply, &b"PONG"[..]);
    raw.write_all(b"PONG").await.expect("write");
    let reply = within(LIMIT, conn.send_recv_timeout(b"PING", 4, LIMIT))
        .await
        .expect("send_recv");
    assert_eq!(reply, &b"PONG"[..]);
    let mut pings = [0u8; 8];
    raw.read_exact(&mut pings).await.expect("read");
    assert_eq!(&pings, b"PINGPING");
}

#[tokio::test]
async fn a_line_longer_than_max_line_len_is_an_error_with_bounded_buffering() {
    let (listener, addr) = raw_listener().await;
    let mut conn = Conn::builder()
        .max_line_len(1024)
        .connect(&addr)
        .await
        .expect("connect");
    let (mut raw, _) = listener.accept().await.expect("accept");
    let flood = tokio::spawn(async move {
        // 1 MiB without a newline; the reader stops long before.
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..16 {
            if raw.write_all(&chunk).await.is_err() {
                break;
            }
        }
        raw
    });
    let err = within(LIMIT, conn.recv_line()).await.unwrap_err();
    assert!(
        matches!(err, PkgError::LineTooLong { max: 1024 }),
        "{err:?}"
    );
    assert!(err.to_string().contains("max_line_len 1024"), "{err}");
    let (reader, _) = conn.split();
    assert!(
        reader.buffered() <= 1024 + 2 + 8 * 1024,
        "buffered {}",
        reader.buffered()
    );
    drop(conn);
    within(LIMIT, flood).await.expect("flooder ends");
}

// ----- halves ------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sends_from_many_tasks_never_interleave_a_package() {
    let (listener, addr) = raw_listener().await;
    let conn = Conn::builder()
        .pkg_option(PkgOption::new().header_size(4))
        .connect(&addr)
        .await
        .expect("connect");
    let (mut raw, _) = listener.accept().await.expect("accept");
    let (_reader, writer) = conn.into_split();
    const TASKS: usize = 8;
    const EACH: usize = 40;
    let mut senders = Vec::new();
    for t in 0..TASKS {
        let writer = writer.clone();
        senders.push(tokio::spawn(async move {
            for i in 0..EACH {
                // Big enough that a package takes several writes.
                let len = 1000 + (t * 7919 + i * 104_729) % 150_000;
                writer.send_pkg(vec![t as u8; len]).await.expect("send");
            }
        }));
    }
    // The raw peer checks every package: one sender's byte throughout.
    let mut seen = [0usize; TASKS];
    within(Duration::from_secs(30), async {
        for _ in 0..TASKS * EACH {
            let mut header = [0u8; 4];
            raw.read_exact(&mut header).await.expect("header");
            let len = u32::from_be_bytes(header) as usize;
            assert!(len <= 151_000, "torn stream: declared {len}");
            let mut data = vec![0u8; len];
            raw.read_exact(&mut data).await.expect("data");
            let who = data[0] as usize;
            assert!(who < TASKS, "torn stream: sender {who}");
            assert!(
                data.iter().all(|b| usize::from(*b) == who),
                "interleaved package"
            );
            seen[who] += 1;
        }
    })
    .await;
    assert_eq!(seen, [EACH; TASKS]);
    for s in senders {
        s.await.expect("sender");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_halves_are_full_duplex() {
    // Both sides send 4 MiB before reading anything: only works if reading
    // and sending go on at once on each side.
    let (server, addr) = {
        let server = getty::pkg::Server::builder()
            .pkg_option(PkgOption::new().header_size(3))
            .bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = server.local_addr().to_string();
        let handle = server.serve(|conn: Conn| async move {
            let (mut reader, writer) = conn.into_split();
            let sending = tokio::spawn(async move {
                for _ in 0..64 {
                    writer.send_pkg(vec![1u8; 64 * 1024]).await?;
                }
                Ok::<_, PkgError>(writer)
            });
            let mut got = 0;
            while got < 64 {
                reader.recv_pkg().await?;
                got += 1;
            }
            let writer = sending.await.expect("server sender")?;
            writer.send_pkg(b"done").await
        });
        (handle, addr)
    };
    let conn = Conn::builder()
        .pkg_option(PkgOption::new().header_size(3))
        .connect(&addr)
        .await
        .expect("connect");
    let (mut reader, writer) = conn.into_split();
    let sending = tokio::spawn(async move {
        for _ in 0..64 {
            writer
                .send_pkg(vec![2u8; 64 * 1024])
                .await
                .expect("client send");
        }
        writer
    });
    within(Duration::from_secs(30), async {
        for _ in 0..64 {
            let pkg = reader.recv_pkg().await.expect("client recv");
            assert_eq!(pkg.len(), 64 * 1024);
        }
        assert_eq!(reader.recv_pkg().await.expect("done"), &b"done"[..]);
    })
    .await;
    let writer = sending.await.expect("client sender");
    let conn = Conn::reunite(reader, writer).expect("same connection");
    drop(conn);
    server.shutdown(LIMIT).await;
}

#[tokio::test]
async fn reunite_accepts_halves_of_one_connection_only() {
    let (server, addr) = echo_server(PkgOption::new()).await;
    let (r1, w1) = Conn::connect(&addr).await.expect("connect").into_split();
    let (r2, w2) = Conn::connect(&addr).await.expect("connect").into_split();
    let (r1, w2) = Conn::reunite(r1, w2).expect_err("different connections");
    let mut one = Conn::reunite(r1, w1).expect("same connection");
    let _two = Conn::reunite(r2, w2).expect("same connection");
    assert_eq!(one.send_recv_pkg(b"x").await.expect("echo"), &b"x"[..]);
    drop((one, _two));
    server.shutdown(LIMIT).await;
}

#[tokio::test]
async fn close_ends_the_peers_reads_and_refuses_later_sends_from_every_clone() {
    let (listener, addr) = raw_listener().await;
    let conn = Conn::connect(&addr).await.expect("connect");
    let (mut raw, _) = listener.accept().await.expect("accept");
    let writer = conn.writer();
    conn.send_pkg(b"bye").await.expect("send");
    conn.close().await.expect("close");
    let mut all = Vec::new();
    within(LIMIT, raw.read_to_end(&mut all))
        .await
        .expect("read to EOF");
    assert_eq!(all, b"\x00\x03bye");
    let err = writer.send_pkg(b"late").await.unwrap_err();
    assert!(matches!(err, PkgError::LocalClosed), "{err:?}");
    writer.close().await.expect("close again is fine");
}

#[tokio::test]
async fn a_send_timed_out_mid_package_never_lets_another_package_follow_the_torn_one() {
    let (listener, addr) = raw_listener().await;
    let conn = Conn::builder()
        .pkg_option(PkgOption::new().header_size(4))
        .connect(&addr)
        .await
        .expect("connect");
    let (mut raw, _) = listener.accept().await.expect("accept");
    const BIG: usize = 256 * 1024;
    // The peer reads nothing yet, so the socket buffers fill up.
    let mut sent = 0usize;
    let mut timed_out = false;
    for _ in 0..400 {
        match conn
            .send_pkg_timeout(vec![9u8; BIG], Duration::from_millis(50))
            .await
        {
            Ok(()) => sent += 1,
            Err(e) => {
                assert!(e.is_timeout(), "{e:?}");
                timed_out = true;
                break;
            }
        }
    }
    assert!(timed_out, "the socket buffers never filled");
    // Now the peer reads everything; the marker goes out only if the stream
    // is still in step.
    let reading = tokio::spawn(async move {
        let mut all = Vec::new();
        raw.read_to_end(&mut all).await.expect("read");
        all
    });
    let marker = conn.send_pkg_timeout(b"marker", LIMIT).await;
    conn.close().await.ok();
    let all = within(Duration::from_secs(30), reading)
        .await
        .expect("reader");
    let whole = 4 + BIG;
    match marker {
        Ok(()) => {
            // In step: whole packages, then the marker.
            assert_eq!(all.len(), sent * whole + 4 + 6);
            assert_eq!(&all[sent * whole..], b"\x00\x00\x00\x06marker");
        }
        Err(e) => {
            // Torn: the writer refused to send after it.
            assert!(matches!(e, PkgError::SendBroken { .. }), "{e:?}");
            assert!(e.to_string().contains("out of step"), "{e}");
            assert!(all.len() > sent * whole && all.len() < (sent + 1) * whole);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_that_times_out_waiting_its_turn_writes_nothing_and_retry_sends_it_later() {
    let (listener, addr) = raw_listener().await;
    let conn = Conn::builder()
        .pkg_option(PkgOption::new().header_size(4))
        .connect(&addr)
        .await
        .expect("connect");
    let (mut raw, _) = listener.accept().await.expect("accept");
    let writer = conn.writer();
    // 32 MiB cannot fit the socket buffers while the peer reads nothing:
    // this send holds the write lock until the peer starts reading.
    const BIG: usize = 32 * 1024 * 1024;
    let big = tokio::spawn({
        let writer = writer.clone();
        async move { writer.send_pkg(vec![1u8; BIG]).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Without retry: a timeout while waiting its turn, nothing written,
    // and the connection can still send.
    let err = writer
        .send_pkg_timeout(b"impatient", Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");

    // With retry: attempts of 50 ms, 20 ms apart, outlast the big send once
    // the peer starts reading (after 300 ms).
    let reading = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut header = [0u8; 4];
        let mut packages = Vec::new();
        for _ in 0..2 {
            raw.read_exact(&mut header).await.expect("header");
            let mut data = vec![0u8; u32::from_be_bytes(header) as usize];
            raw.read_exact(&mut data).await.expect("data");
            packages.push(data);
        }
        packages
    });
    let retry = PkgOption::new()
        .header_size(4)
        .retry(Retry::new(200, Duration::from_millis(20)));
    let started = Instant::now();
    within(
        Duration::from_secs(30),
        writer.send_pkg_timeout_with(b"patient", Duration::from_millis(50), &retry),
    )
    .await
    .expect("sent on a later attempt");
    assert!(started.elapsed() >= Duration::from_millis(150));
    within(LIMIT, big).await.expect("task").expect("big send");
    let packages = within(Duration::from_secs(30), reading)
        .await
        .expect("reader");
    assert_eq!(packages[0].len(), BIG);
    assert!(packages[0].iter().all(|b| *b == 1), "big package intact");
    assert_eq!(packages[1], b"patient", "the timed-out send wrote nothing");
}
