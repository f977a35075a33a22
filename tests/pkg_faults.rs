//! The package API's limits and misbehaving peers, over real sockets on
//! 127.0.0.1: data above the max (sending and declared), invalid options,
//! a peer that sends a header and vanishes, one that closes between
//! packages, one that declares 2 GiB. Each gets a clear error, never a
//! panic or an unbounded allocation (counted in `pkg_alloc.rs`).

mod pkg_support;

use std::time::{Duration, Instant};

use getty::pkg::{Conn, PkgError, PkgOption};
use pkg_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// ----- limits ------------------------------------------------------------------

#[tokio::test]
async fn sending_above_max_data_size_fails_before_anything_is_written() {
    let (listener, addr) = raw_listener().await;
    let conn = Conn::connect(&addr).await.expect("connect");
    let (mut raw, _) = listener.accept().await.expect("accept");

    let err = conn.send_pkg(vec![0u8; 70_000]).await.unwrap_err();
    assert!(
        matches!(
            err,
            PkgError::TooLarge {
                len: 70_000,
                max: 65_535
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("package of 70000 bytes exceeds max_data_size 65535"),
        "{err}"
    );
    let lowered = PkgOption::new().max_data_size(10);
    let err = conn
        .send_pkg_with(b"eleven byte", &lowered)
        .await
        .unwrap_err();
    assert!(
        matches!(err, PkgError::TooLarge { len: 11, max: 10 }),
        "{err:?}"
    );
    let err = conn
        .send_pkg_with(vec![1u8; 256], &PkgOption::new().header_size(1))
        .await
        .unwrap_err();
    assert!(
        matches!(err, PkgError::TooLarge { len: 256, max: 255 }),
        "{err:?}"
    );

    // The connection is untouched: the next package is the first bytes out.
    conn.send_pkg(b"ok").await.expect("send");
    let mut got = [0u8; 4];
    within(LIMIT, raw.read_exact(&mut got)).await.expect("read");
    assert_eq!(&got, b"\x00\x02ok");
}

#[tokio::test]
async fn lowered_max_data_size_is_enforced_on_receive() {
    let (listener, addr) = raw_listener().await;
    let mut conn = Conn::builder()
        .pkg_option(PkgOption::new().max_data_size(4))
        .connect(&addr)
        .await
        .expect("connect");
    let (mut raw, _) = listener.accept().await.expect("accept");
    raw.write_all(&frame(2, b"four")).await.expect("write");
    raw.write_all(&frame(2, b"five!")).await.expect("write");
    assert_eq!(
        within(LIMIT, conn.recv_pkg()).await.expect("recv"),
        &b"four"[..]
    );
    let err = within(LIMIT, conn.recv_pkg()).await.unwrap_err();
    assert!(
        matches!(
            err,
            PkgError::DeclaredTooLarge {
                len: 5,
                max: 4,
                header_size: 2
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn invalid_options_are_errors_and_write_nothing() {
    let (listener, addr) = raw_listener().await;
    let mut conn = Conn::connect(&addr).await.expect("connect");
    let (mut raw, _) = listener.accept().await.expect("accept");

    let five = PkgOption::new().header_size(5);
    let err = conn.send_pkg_with(b"x", &five).await.unwrap_err();
    assert!(matches!(err, PkgError::InvalidOption(_)), "{err:?}");
    assert!(
        err.to_string()
            .contains("header_size 5 is not 1, 2, 3 or 4"),
        "{err}"
    );
    let err = conn.recv_pkg_with(&five).await.unwrap_err();
    assert!(matches!(err, PkgError::InvalidOption(_)), "{err:?}");
    let too_big = PkgOption::new().header_size(1).max_data_size(256);
    let err = conn.send_pkg_with(b"x", &too_big).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("max_data_size 256 does not fit a 1-byte header"),
        "{err}"
    );

    conn.send_pkg(b"z").await.expect("send");
    let mut got = [0u8; 3];
    within(LIMIT, raw.read_exact(&mut got)).await.expect("read");
    assert_eq!(&got, b"\x00\x01z");
}

// ----- peers that misbehave ----------------------------------------------------

#[tokio::test]
async fn a_peer_that_sends_a_header_and_vanishes_gives_unexpected_eof() {
    let (listener, addr) = raw_listener().await;
    let mut conn = Conn::connect(&addr).await.expect("connect");
    let (mut raw, _) = listener.accept().await.expect("accept");
    raw.write_all(b"\x00\x0aabc").await.expect("write");
    drop(raw);
    let err = within(LIMIT, conn.recv_pkg()).await.unwrap_err();
    assert!(
        matches!(
            err,
            PkgError::UnexpectedEof {
                what: "package body",
                received: 3,
                expected: 10
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "connection closed by the peer in the middle of a package body: received 3 of 10 bytes"
    );

    // Half a header.
    let mut conn = Conn::builder()
        .pkg_option(PkgOption::new().header_size(4))
        .connect(&addr)
        .await
        .expect("connect");
    let (mut raw, _) = listener.accept().await.expect("accept");
    raw.write_all(b"\x00\x00").await.expect("write");
    drop(raw);
    let err = within(LIMIT, conn.recv_pkg()).await.unwrap_err();
    assert!(
        matches!(
            err,
            PkgError::UnexpectedEof {
                what: "package header",
                received: 2,
                expected: 4
            }
        ),
        "{err:?}"
    );

    // recv(n) and recv_line cut short.
    let mut conn = Conn::connect(&addr).await.expect("connect");
    let (mut raw, _) = listener.accept().await.expect("accept");
    raw.write_all(b"abcdef").await.expect("write");
    drop(raw);
    assert_eq!(conn.recv(2).await.expect("two"), &b"ab"[..]);
    let err = within(LIMIT, conn.recv(10)).await.unwrap_err();
    assert!(
        matches!(
            err,
            PkgError::UnexpectedEof {
                what: "recv(n)",
                received: 4,
                expected: 10
            }
        ),
        "{err:?}"
    );
    let mut conn = Conn::connect(&addr).await.expect("connect");
    let (mut raw, _) = listener.accept().await.expect("accept");
    raw.write_all(b"no newline").await.expect("write");
    drop(raw);
    let err = within(LIMIT, conn.recv_line()).await.unwrap_err();
    assert!(matches!(err, PkgError::LineEof { received: 10 }), "{err:?}");
}

#[tokio::test]
async fn a_peer_closing_between_packages_gives_closed() {
    let (listener, addr) = raw_listener().await;
    let mut conn = Conn::connect(&addr).await.expect("connect");
    let (mut raw, _) = listener.accept().await.expect("accept");
    raw.write_all(&frame(2, b"last")).await.expect("write");
    drop(raw);
    assert_eq!(
        within(LIMIT, conn.recv_pkg()).await.expect("last"),
        &b"last"[..]
    );
    let err = within(LIMIT, conn.recv_pkg()).await.unwrap_err();
    assert!(err.is_closed(), "{err:?}");
    assert_eq!(err.to_string(), "connection closed by the peer (EOF)");
    // Again: still Closed, never a panic.
    assert!(conn.recv_pkg().await.unwrap_err().is_closed());
    assert!(conn.recv_line().await.unwrap_err().is_closed());
}

#[tokio::test]
async fn a_declared_length_above_max_is_refused_at_once_and_says_the_sizes() {
    let (listener, addr) = raw_listener().await;
    let option = PkgOption::new().header_size(4).max_data_size(1 << 20);
    let mut conn = Conn::builder()
        .pkg_option(option)
        .connect(&addr)
        .await
        .expect("connect");
    let (mut raw, _) = listener.accept().await.expect("accept");
    // 2 GiB declared; the peer then stays silent and keeps the socket open.
    raw.write_all(&0x8000_0000u32.to_be_bytes())
        .await
        .expect("write");
    let started = Instant::now();
    let err = within(LIMIT, conn.recv_pkg()).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "waited {:?}",
        started.elapsed()
    );
    assert!(
        matches!(
            err,
            PkgError::DeclaredTooLarge {
                len: 2_147_483_648,
                max: 1_048_576,
                header_size: 4
            }
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("2147483648") && text.contains("max_data_size 1048576"),
        "{text}"
    );
    let (reader, _) = conn.split();
    assert_eq!(reader.buffered(), 4, "only the header was read");
    drop(raw);
}
