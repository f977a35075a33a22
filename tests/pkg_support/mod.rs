//! Helpers shared by the tests of the package API (`tests/pkg*.rs`).

#![allow(dead_code)]

use std::{future::Future, time::Duration};

use getty::pkg::{Conn, PkgError, PkgOption, Server, ServerHandle};
use tokio::net::TcpListener;

/// Generous for a loaded 2-core machine; nothing healthy comes near it.
pub const LIMIT: Duration = Duration::from_secs(10);

/// Awaits `fut`, failing the test if it takes longer than `limit`.
pub async fn within<T>(limit: Duration, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or_else(|_| panic!("did not finish within {limit:?}"))
}

/// Echoes every package back until the peer closes.
pub async fn echo(mut conn: Conn) -> Result<(), PkgError> {
    // Bounded by the peer: ends when it closes.
    loop {
        match conn.recv_pkg().await {
            Ok(pkg) => conn.send_pkg(&pkg).await?,
            Err(PkgError::Closed) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

/// A package echo server on 127.0.0.1 with `option`; returns its handle
/// and its address as `host:port`.
pub async fn echo_server(option: PkgOption) -> (ServerHandle, String) {
    let server = Server::builder()
        .pkg_option(option)
        .bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = server.local_addr().to_string();
    (server.serve(echo), addr)
}

/// A raw TCP listener on 127.0.0.1 (a peer written without the library).
pub async fn raw_listener() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr").to_string();
    (listener, addr)
}

/// gtcp's framing written by hand: a big-endian header of `h` bytes.
pub fn frame(h: usize, data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u32).to_be_bytes();
    let mut out = len[4 - h..].to_vec();
    out.extend_from_slice(data);
    out
}
