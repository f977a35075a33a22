//! Counting allocations: a peer's header can make the package API allocate
//! what has arrived, never what it declares. Alone in its own test binary
//! (one test) because the counting allocator is process-wide.

mod pkg_support;

use std::{alloc::System, time::Duration};

use getty::pkg::{Conn, PkgError, PkgOption};
use pkg_support::*;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use tokio::io::AsyncWriteExt;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes a region allocated, growth by reallocation included.
fn grown(region: &Region<'_, System>) -> usize {
    let change = region.change();
    change.bytes_allocated + change.bytes_reallocated.max(0) as usize
}

#[tokio::test(flavor = "current_thread")]
async fn hostile_headers_allocate_only_what_arrived_never_what_they_declare() {
    // 1. 2 GiB declared in a 4-byte header, max 1 MiB: refused with
    //    nothing allocated for it.
    let (listener, addr) = raw_listener().await;
    let option = PkgOption::new().header_size(4).max_data_size(1 << 20);
    let mut conn = Conn::builder()
        .pkg_option(option)
        .connect(&addr)
        .await
        .expect("connect");
    let (mut raw, _) = listener.accept().await.expect("accept");
    raw.write_all(&0x8000_0000u32.to_be_bytes())
        .await
        .expect("write");
    raw.write_all(&[0u8; 100]).await.expect("write");
    let region = Region::new(GLOBAL);
    let err = within(LIMIT, conn.recv_pkg()).await.unwrap_err();
    let bytes = grown(&region);
    assert!(
        matches!(
            err,
            PkgError::DeclaredTooLarge {
                len: 2_147_483_648,
                max: 1_048_576,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("2147483648") && err.to_string().contains("1048576"));
    assert!(
        bytes < 16 * 1024,
        "refusing the header allocated {bytes} bytes"
    );
    drop((conn, raw));

    // 2. 2 GiB - 1 declared, which a 4-byte header's default max allows,
    //    then 200 KB and silence: the buffer holds what came, not 2 GiB.
    let mut conn = Conn::builder()
        .pkg_option(PkgOption::new().header_size(4))
        .connect(&addr)
        .await
        .expect("connect");
    let (mut raw, _) = listener.accept().await.expect("accept");
    let region = Region::new(GLOBAL);
    let writer = tokio::spawn(async move {
        raw.write_all(&0x7FFF_FFFFu32.to_be_bytes())
            .await
            .expect("write");
        for _ in 0..50 {
            raw.write_all(&[7u8; 4000]).await.expect("write");
        }
        raw
    });
    let err = within(LIMIT, conn.recv_pkg_timeout(Duration::from_secs(1)))
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    let (reader, _) = conn.split();
    assert_eq!(reader.buffered(), 4 + 200_000, "everything sent was read");
    let bytes = grown(&region);
    assert!(
        bytes < 2 * 1024 * 1024,
        "a trickled 2 GiB package allocated {bytes} bytes for 200 KB received"
    );
    drop(writer.await.expect("writer"));
}
