//! The sending half: cloneable, one package at a time.

use std::{fmt, sync::Arc, time::Duration};

use bytes::Buf;
use tokio::{
    io::{AsyncWriteExt, WriteHalf as IoWriteHalf},
    sync::Mutex,
};

use super::{retry::retrying, stream::Stream, PkgError, PkgOption};
use crate::Addr;

/// The sending half of a [`Conn`](super::Conn): `send_pkg` and raw `send`.
///
/// Cheap to clone; every clone sends on the same connection, so any number
/// of tasks can send at once (the seed's full-duplex model: writers
/// anywhere, one reader loop). Sends never interleave: each package (header
/// and data) is written whole while holding the connection's write lock,
/// and the next waits its turn (first come, first served).
///
/// A send cut off in the middle of a package (its timeout ran out, or its
/// future was dropped, after part of the package was written) leaves the
/// stream out of step; from then on every send fails with
/// [`PkgError::SendBroken`] rather than write garbage. A send cut off
/// before its first byte leaves nothing behind.
///
/// ```no_run
/// use getty::pkg::Conn;
///
/// # async fn demo() -> Result<(), getty::pkg::PkgError> {
/// let conn = Conn::connect("127.0.0.1:8999").await?;
/// let (mut reader, writer) = conn.into_split();
/// for i in 0..4 {
///     let writer = writer.clone();
///     tokio::spawn(async move { writer.send_pkg(format!("from task {i}")).await });
/// }
/// while let Ok(pkg) = reader.recv_pkg().await {
///     println!("{pkg:?}");
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct WriteHalf {
    shared: Arc<Shared>,
    option: PkgOption,
}

struct Shared {
    state: Mutex<State>,
    id: u64,
    peer: Addr,
    local: Addr,
}

struct State {
    io: IoWriteHalf<Stream>,
    broken: Option<Broken>,
}

/// Why a connection can no longer send.
#[derive(Debug, Clone)]
enum Broken {
    Interrupted { written: usize, total: usize },
    Failed(String),
    Closed,
}

impl Broken {
    fn error(&self) -> PkgError {
        match self {
            Broken::Interrupted { written, total } => PkgError::SendBroken {
                reason: format!(
                    "an earlier send stopped after {written} of {total} bytes of a package \
                     (timed out or cancelled), so the stream is out of step"
                ),
            },
            Broken::Failed(why) => PkgError::SendBroken {
                reason: format!("an earlier send failed: {why}"),
            },
            Broken::Closed => PkgError::LocalClosed,
        }
    }
}

/// Marks the connection broken when dropped after part of a package was
/// written but not all of it (a timeout or a dropped future).
struct Progress<'a> {
    state: &'a mut State,
    written: usize,
    total: usize,
}

impl Drop for Progress<'_> {
    fn drop(&mut self) {
        if self.written > 0 && self.written < self.total && self.state.broken.is_none() {
            self.state.broken = Some(Broken::Interrupted {
                written: self.written,
                total: self.total,
            });
        }
    }
}

impl fmt::Debug for WriteHalf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteHalf")
            .field("peer", &self.shared.peer)
            .field("option", &self.option)
            .finish_non_exhaustive()
    }
}

impl WriteHalf {
    pub(crate) fn new(
        io: IoWriteHalf<Stream>,
        peer: Addr,
        local: Addr,
        option: PkgOption,
        id: u64,
    ) -> Self {
        WriteHalf {
            shared: Arc::new(Shared {
                id,
                state: Mutex::new(State { io, broken: None }),
                peer,
                local,
            }),
            option,
        }
    }

    /// The peer's address (gtcp's `RemoteAddr`).
    ///
    /// ```no_run
    /// # async fn demo(conn: getty::pkg::Conn) {
    /// let writer = conn.writer();
    /// println!("sending to {}", writer.peer_addr());
    /// # }
    /// ```
    pub fn peer_addr(&self) -> &Addr {
        &self.shared.peer
    }

    /// This end's address (gtcp's `LocalAddr`).
    ///
    /// ```no_run
    /// # async fn demo(conn: getty::pkg::Conn) {
    /// println!("sending from {}", conn.writer().local_addr());
    /// # }
    /// ```
    pub fn local_addr(&self) -> &Addr {
        &self.shared.local
    }

    /// The package option [`send_pkg`](Self::send_pkg) uses.
    ///
    /// ```no_run
    /// # async fn demo(conn: getty::pkg::Conn) {
    /// assert_eq!(conn.writer().pkg_option().get_header_size(), 2);
    /// # }
    /// ```
    pub fn pkg_option(&self) -> PkgOption {
        self.option
    }

    /// Sets the package option of this handle (clones made later inherit
    /// it; earlier clones keep theirs).
    ///
    /// ```no_run
    /// # async fn demo(conn: getty::pkg::Conn) {
    /// use getty::pkg::PkgOption;
    /// let mut writer = conn.writer();
    /// writer.set_pkg_option(PkgOption::new().header_size(4));
    /// # }
    /// ```
    pub fn set_pkg_option(&mut self, option: PkgOption) {
        self.option = option;
    }

    /// Sends one package with this handle's option (gtcp's `SendPkg`).
    ///
    /// # Errors
    /// [`PkgError::TooLarge`] (nothing written) when `data` is above the max
    /// data size; [`PkgError::InvalidOption`]; a socket error; or
    /// [`PkgError::SendBroken`] / [`PkgError::LocalClosed`] when the
    /// connection can no longer send.
    ///
    /// ```no_run
    /// # async fn demo(conn: getty::pkg::Conn) -> Result<(), getty::pkg::PkgError> {
    /// conn.writer().send_pkg(b"hello").await?;
    /// # Ok(()) }
    /// ```
    pub async fn send_pkg(&self, data: impl AsRef<[u8]>) -> Result<(), PkgError> {
        self.send_pkg_inner(data.as_ref(), None, &self.option).await
    }

    /// [`send_pkg`](Self::send_pkg) with options for this call only.
    ///
    /// # Errors
    /// As `send_pkg`.
    ///
    /// ```no_run
    /// # async fn demo(conn: getty::pkg::Conn) -> Result<(), getty::pkg::PkgError> {
    /// use getty::pkg::PkgOption;
    /// conn.writer().send_pkg_with(b"hello", &PkgOption::new().header_size(4)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn send_pkg_with(
        &self,
        data: impl AsRef<[u8]>,
        option: &PkgOption,
    ) -> Result<(), PkgError> {
        self.send_pkg_inner(data.as_ref(), None, option).await
    }

    /// [`send_pkg`](Self::send_pkg) within `timeout` (gtcp's
    /// `SendPkgWithTimeout`): waiting for the write lock counts. With a
    /// [`Retry`](super::Retry) each attempt gets `timeout`.
    ///
    /// # Errors
    /// As `send_pkg`, and [`PkgError::Timeout`]. A timeout after part of the
    /// package was written breaks the connection for sending (see the type
    /// docs).
    ///
    /// ```no_run
    /// # async fn demo(conn: getty::pkg::Conn) -> Result<(), getty::pkg::PkgError> {
    /// use std::time::Duration;
    /// conn.writer().send_pkg_timeout(b"hello", Duration::from_secs(1)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn send_pkg_timeout(
        &self,
        data: impl AsRef<[u8]>,
        timeout: Duration,
    ) -> Result<(), PkgError> {
        self.send_pkg_inner(data.as_ref(), Some(timeout), &self.option)
            .await
    }

    /// [`send_pkg_timeout`](Self::send_pkg_timeout) with options for this
    /// call only.
    ///
    /// # Errors
    /// As `send_pkg_timeout`.
    ///
    /// ```no_run
    /// # async fn demo(conn: getty::pkg::Conn) -> Result<(), getty::pkg::PkgError> {
    /// use getty::pkg::{PkgOption, Retry};
    /// use std::time::Duration;
    /// let opt = PkgOption::new().retry(Retry::new(2, Duration::from_millis(100)));
    /// conn.writer().send_pkg_timeout_with(b"hello", Duration::from_secs(1), &opt).await?;
    /// # Ok(()) }
    /// ```
    pub async fn send_pkg_timeout_with(
        &self,
        data: impl AsRef<[u8]>,
        timeout: Duration,
        option: &PkgOption,
    ) -> Result<(), PkgError> {
        self.send_pkg_inner(data.as_ref(), Some(timeout), option)
            .await
    }

    async fn send_pkg_inner(
        &self,
        data: &[u8],
        timeout: Option<Duration>,
        option: &PkgOption,
    ) -> Result<(), PkgError> {
        let codec = option.validate()?;
        let (header, start) = codec.header(data.len())?;
        let header = &header[start..];
        retrying!(
            "send_pkg",
            option.get_retry(),
            timeout,
            self.write_whole(header, data)
        )
    }

    /// Sends raw bytes, no header (gtcp's `Send`). Written whole under the
    /// write lock, like a package; retried as the handle's option's
    /// [`Retry`](super::Retry) says.
    ///
    /// # Errors
    /// A socket error, or the connection can no longer send.
    ///
    /// ```no_run
    /// # async fn demo(conn: getty::pkg::Conn) -> Result<(), getty::pkg::PkgError> {
    /// conn.writer().send(b"PING\n").await?;
    /// # Ok(()) }
    /// ```
    pub async fn send(&self, data: impl AsRef<[u8]>) -> Result<(), PkgError> {
        let data = data.as_ref();
        retrying!(
            "send",
            self.option.get_retry(),
            None,
            self.write_whole(&[], data)
        )
    }

    /// [`send`](Self::send) within `timeout` (gtcp's `SendWithTimeout`).
    ///
    /// # Errors
    /// As `send`, and [`PkgError::Timeout`].
    ///
    /// ```no_run
    /// # async fn demo(conn: getty::pkg::Conn) -> Result<(), getty::pkg::PkgError> {
    /// use std::time::Duration;
    /// conn.writer().send_timeout(b"PING\n", Duration::from_secs(1)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn send_timeout(
        &self,
        data: impl AsRef<[u8]>,
        timeout: Duration,
    ) -> Result<(), PkgError> {
        let data = data.as_ref();
        retrying!(
            "send",
            self.option.get_retry(),
            Some(timeout),
            self.write_whole(&[], data)
        )
    }

    /// Closes the connection for sending, for every clone: flushes, then
    /// shuts the write side down (a TCP FIN, a TLS `close_notify`), so the
    /// peer's reads see the end. Later sends fail with
    /// [`PkgError::LocalClosed`]. Idempotent. The reading half still
    /// receives what the peer sends.
    ///
    /// # Errors
    /// A socket error while shutting down (the half counts as closed anyway).
    ///
    /// ```no_run
    /// # async fn demo(conn: getty::pkg::Conn) -> Result<(), getty::pkg::PkgError> {
    /// let writer = conn.writer();
    /// writer.close().await?;
    /// assert!(writer.send_pkg(b"late").await.is_err());
    /// # Ok(()) }
    /// ```
    pub async fn close(&self) -> Result<(), PkgError> {
        let mut state = self.shared.state.lock().await;
        if matches!(state.broken, Some(Broken::Closed)) {
            return Ok(());
        }
        state.broken = Some(Broken::Closed);
        state.io.shutdown().await.map_err(PkgError::Io)
    }

    /// Whether the connection can still send and no other handle shares
    /// this one: what the pool asks before taking a connection back.
    pub(crate) fn is_reusable(&self) -> bool {
        Arc::strong_count(&self.shared) == 1
            && self
                .shared
                .state
                .try_lock()
                .is_ok_and(|state| state.broken.is_none())
    }

    /// The connection's identity, shared with its reader.
    pub(crate) fn id(&self) -> u64 {
        self.shared.id
    }

    /// Writes `header` then `data` while holding the write lock, then
    /// flushes (TLS keeps bytes until flushed).
    async fn write_whole(&self, header: &[u8], data: &[u8]) -> Result<(), PkgError> {
        let mut state = self.shared.state.lock().await;
        if let Some(broken) = &state.broken {
            return Err(broken.error());
        }
        let mut buf = header.chain(data);
        let mut progress = Progress {
            total: buf.remaining(),
            state: &mut state,
            written: 0,
        };
        // Bounded: every pass writes at least one byte or returns.
        while buf.has_remaining() {
            match progress.state.io.write_buf(&mut buf).await {
                Ok(0) => {
                    let e = std::io::Error::from(std::io::ErrorKind::WriteZero);
                    progress.state.broken = Some(Broken::Failed(e.to_string()));
                    return Err(PkgError::Io(e));
                }
                Ok(n) => progress.written += n,
                Err(e) => {
                    // A transient error before the first byte leaves the
                    // stream in step, so a retry may go on.
                    let transient = matches!(
                        e.kind(),
                        std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock
                    );
                    if progress.written > 0 || !transient {
                        progress.state.broken = Some(Broken::Failed(e.to_string()));
                    }
                    return Err(PkgError::Io(e));
                }
            }
        }
        if let Err(e) = progress.state.io.flush().await {
            progress.state.broken = Some(Broken::Failed(e.to_string()));
            return Err(PkgError::Io(e));
        }
        Ok(())
    }
}
