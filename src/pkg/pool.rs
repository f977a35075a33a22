//! Reusable client connections to one address: gtcp's `PoolConn`.

use std::{
    collections::VecDeque,
    fmt,
    ops::{Deref, DerefMut},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, MutexGuard,
    },
    time::Duration,
};

use tokio::time::Instant;

use super::{Conn, ConnBuilder, PkgError};

/// gtcp's default idle lifetime of a pooled connection: 10 s.
///
/// ```
/// assert_eq!(getty::pkg::DEFAULT_IDLE_TIMEOUT, std::time::Duration::from_secs(10));
/// ```
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// The default number of idle connections a [`Pool`] keeps: 8.
///
/// ```
/// assert_eq!(getty::pkg::DEFAULT_MAX_IDLE, 8);
/// ```
pub const DEFAULT_MAX_IDLE: usize = 8;

/// Settings for a [`Pool`].
///
/// ```
/// use getty::pkg::{ConnBuilder, PkgOption, PoolBuilder};
/// use std::time::Duration;
///
/// let pool = PoolBuilder::new()
///     .conn_builder(ConnBuilder::new().pkg_option(PkgOption::new().header_size(4)))
///     .max_idle(4)
///     .idle_timeout(Duration::from_secs(30))
///     .build("127.0.0.1:8999");
/// ```
#[derive(Debug, Clone)]
pub struct PoolBuilder {
    conn: ConnBuilder,
    max_idle: usize,
    idle_timeout: Duration,
}

impl Default for PoolBuilder {
    fn default() -> Self {
        PoolBuilder {
            conn: ConnBuilder::new(),
            max_idle: DEFAULT_MAX_IDLE,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

impl PoolBuilder {
    /// At most [`DEFAULT_MAX_IDLE`] idle connections, each kept
    /// [`DEFAULT_IDLE_TIMEOUT`], made with a default [`ConnBuilder`].
    ///
    /// ```
    /// let builder = getty::pkg::PoolBuilder::new();
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// How new connections are made (package option, TLS, timeouts).
    ///
    /// ```
    /// use getty::pkg::{ConnBuilder, PoolBuilder};
    /// let builder = PoolBuilder::new().conn_builder(ConnBuilder::new().max_line_len(512));
    /// ```
    pub fn conn_builder(mut self, conn: ConnBuilder) -> Self {
        self.conn = conn;
        self
    }

    /// The most idle connections kept; one given back beyond that is
    /// closed. 0 keeps none (every `get` connects).
    ///
    /// ```
    /// let builder = getty::pkg::PoolBuilder::new().max_idle(2);
    /// ```
    pub fn max_idle(mut self, max: usize) -> Self {
        self.max_idle = max;
        self
    }

    /// How long a connection may sit idle before the pool closes it
    /// instead of handing it out (gtcp's pool expiry).
    ///
    /// ```
    /// use std::time::Duration;
    /// let builder = getty::pkg::PoolBuilder::new().idle_timeout(Duration::from_secs(60));
    /// ```
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// A pool of connections to `addr` (`host:port`). Nothing connects
    /// until the first [`Pool::get`].
    ///
    /// ```
    /// let pool = getty::pkg::PoolBuilder::new().build("127.0.0.1:8999");
    /// ```
    pub fn build(self, addr: impl Into<String>) -> Pool {
        self.make(Target::Tcp(addr.into()))
    }

    /// A pool of connections to the Unix domain socket at `path`.
    ///
    /// ```
    /// let pool = getty::pkg::PoolBuilder::new().build_unix("/tmp/pkg.sock");
    /// ```
    #[cfg(unix)]
    pub fn build_unix(self, path: impl Into<std::path::PathBuf>) -> Pool {
        self.make(Target::Unix(path.into()))
    }

    fn make(self, target: Target) -> Pool {
        Pool {
            inner: Arc::new(Inner {
                target,
                conn: self.conn,
                max_idle: self.max_idle,
                idle_timeout: self.idle_timeout,
                idle: Mutex::new(VecDeque::new()),
                closed: AtomicBool::new(false),
            }),
        }
    }
}

#[derive(Debug)]
enum Target {
    Tcp(String),
    #[cfg(unix)]
    Unix(std::path::PathBuf),
}

struct Idle {
    conn: Conn,
    since: Instant,
}

struct Inner {
    target: Target,
    conn: ConnBuilder,
    max_idle: usize,
    idle_timeout: Duration,
    idle: Mutex<VecDeque<Idle>>,
    closed: AtomicBool,
}

impl Inner {
    fn idle(&self) -> MutexGuard<'_, VecDeque<Idle>> {
        // A panic while holding this lock cannot leave the queue invalid.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Removes the expired connections; the caller drops them outside the
    /// lock.
    fn take_expired(&self, idle: &mut VecDeque<Idle>) -> VecDeque<Idle> {
        let now = Instant::now();
        let (keep, expired): (VecDeque<Idle>, VecDeque<Idle>) = idle
            .drain(..)
            .partition(|i| now.duration_since(i.since) < self.idle_timeout);
        *idle = keep;
        expired
    }

    fn put_back(&self, mut conn: Conn) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        if !conn.is_reusable() {
            tracing::debug!(peer = %conn.peer_addr(), "pooled connection not reusable; closed");
            return;
        }
        let mut idle = self.idle();
        let expired = self.take_expired(&mut idle);
        let refused = if idle.len() < self.max_idle {
            idle.push_back(Idle {
                conn,
                since: Instant::now(),
            });
            None
        } else {
            Some(conn)
        };
        drop(idle);
        drop(expired);
        drop(refused);
    }
}

/// Reusable client connections to one address, so short request/reply
/// exchanges do not pay a connect each (gtcp's `PoolConn` / `NewPoolConn`).
///
/// [`get`](Pool::get) hands out an idle connection, or connects a new one;
/// dropping the [`PooledConn`] gives it back (gtcp's `PoolConn.Close`). A
/// connection goes back into the pool only when it is sound: no call on it
/// failed or timed out (a late reply could reach the next user), nothing
/// unread is buffered, no clone of its writer is left, and it has not been
/// closed. At most [`max_idle`](PoolBuilder::max_idle) are kept, each for
/// at most [`idle_timeout`](PoolBuilder::idle_timeout); an expired or
/// broken one is closed when the pool next looks at it (in `get`, a give
/// back or [`idle_count`](Pool::idle_count)); no background task runs.
/// Before handing out an idle connection, `get` checks without waiting
/// that the peer has not closed it or sent something unasked.
///
/// Cloning a `Pool` shares it.
///
/// ```no_run
/// use getty::pkg::Pool;
/// use std::time::Duration;
///
/// # async fn demo() -> Result<(), getty::pkg::PkgError> {
/// let pool = Pool::new("127.0.0.1:8999");
/// for _ in 0..3 {
///     let mut conn = pool.get().await?; // the same connection each time
///     let reply = conn.send_recv_pkg_timeout(b"ping", Duration::from_secs(1)).await?;
/// } // dropped: back into the pool
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("target", &self.inner.target)
            .field("max_idle", &self.inner.max_idle)
            .field("idle_timeout", &self.inner.idle_timeout)
            .finish_non_exhaustive()
    }
}

impl Pool {
    /// A pool of connections to `addr` with default settings.
    ///
    /// ```
    /// let pool = getty::pkg::Pool::new("127.0.0.1:8999");
    /// ```
    pub fn new(addr: impl Into<String>) -> Pool {
        PoolBuilder::new().build(addr)
    }

    /// A [`PoolBuilder`].
    ///
    /// ```
    /// let pool = getty::pkg::Pool::builder().max_idle(1).build("127.0.0.1:8999");
    /// ```
    pub fn builder() -> PoolBuilder {
        PoolBuilder::new()
    }

    /// An idle connection, or a new one.
    ///
    /// # Errors
    /// [`PkgError::Connect`] when a new connection cannot be made;
    /// [`PkgError::PoolClosed`] after [`close`](Self::close).
    ///
    /// ```no_run
    /// # async fn demo(pool: getty::pkg::Pool) -> Result<(), getty::pkg::PkgError> {
    /// let mut conn = pool.get().await?;
    /// conn.send_pkg(b"hello").await?;
    /// # Ok(()) }
    /// ```
    pub async fn get(&self) -> Result<PooledConn, PkgError> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(PkgError::PoolClosed);
        }
        // The most recently used first: the likeliest to be alive. Each
        // pass removes one idle connection, so this ends within max_idle
        // passes (plus any given back meanwhile).
        loop {
            let (candidate, expired) = {
                let mut idle = self.inner.idle();
                let expired = self.inner.take_expired(&mut idle);
                (idle.pop_back(), expired)
            };
            drop(expired);
            let Some(Idle { mut conn, since }) = candidate else {
                break;
            };
            if conn.is_reusable() {
                tracing::trace!(idle_for = ?since.elapsed(), "reusing a pooled connection");
                return Ok(self.wrap(conn));
            }
            tracing::debug!(peer = %conn.peer_addr(), "idle connection closed or spoken to by its peer; dropped");
        }
        let conn = match &self.inner.target {
            Target::Tcp(addr) => self.inner.conn.connect(addr).await?,
            #[cfg(unix)]
            Target::Unix(path) => self.inner.conn.connect_unix(path).await?,
        };
        Ok(self.wrap(conn))
    }

    fn wrap(&self, conn: Conn) -> PooledConn {
        PooledConn {
            conn: Some(conn),
            pool: Arc::clone(&self.inner),
        }
    }

    /// The idle connections now, after closing the expired ones.
    ///
    /// ```
    /// let pool = getty::pkg::Pool::new("127.0.0.1:8999");
    /// assert_eq!(pool.idle_count(), 0);
    /// ```
    pub fn idle_count(&self) -> usize {
        let mut idle = self.inner.idle();
        let expired = self.inner.take_expired(&mut idle);
        let count = idle.len();
        drop(idle);
        drop(expired);
        count
    }

    /// Closes every idle connection and refuses further `get`s; connections
    /// handed out are closed when dropped instead of coming back.
    ///
    /// ```
    /// let pool = getty::pkg::Pool::new("127.0.0.1:8999");
    /// pool.close();
    /// ```
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
        let drained = std::mem::take(&mut *self.inner.idle());
        drop(drained);
    }
}

/// A connection from a [`Pool`]; it derefs to [`Conn`], and dropping it
/// gives it back to the pool when it is sound (gtcp's `PoolConn.Close`).
///
/// ```no_run
/// # async fn demo(pool: getty::pkg::Pool) -> Result<(), getty::pkg::PkgError> {
/// let mut conn = pool.get().await?;
/// let reply = conn.send_recv_pkg(b"ping").await?;
/// drop(conn); // back into the pool
/// # Ok(()) }
/// ```
pub struct PooledConn {
    conn: Option<Conn>,
    pool: Arc<Inner>,
}

impl fmt::Debug for PooledConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledConn")
            .field("conn", &self.conn)
            .finish_non_exhaustive()
    }
}

impl PooledConn {
    /// Takes the connection out of the pool for good.
    ///
    /// ```no_run
    /// # async fn demo(pool: getty::pkg::Pool) -> Result<(), getty::pkg::PkgError> {
    /// let conn: getty::pkg::Conn = pool.get().await?.detach();
    /// # Ok(()) }
    /// ```
    pub fn detach(mut self) -> Conn {
        match self.conn.take() {
            Some(conn) => conn,
            // Only Drop takes the connection, and it runs last.
            None => unreachable!("a PooledConn holds its connection until dropped"),
        }
    }

    /// Closes the connection instead of giving it back (say, after the
    /// conversation went wrong in a way the pool cannot see).
    ///
    /// ```no_run
    /// # async fn demo(pool: getty::pkg::Pool) -> Result<(), getty::pkg::PkgError> {
    /// pool.get().await?.discard();
    /// # Ok(()) }
    /// ```
    pub fn discard(mut self) {
        self.conn = None;
    }
}

impl Deref for PooledConn {
    type Target = Conn;

    fn deref(&self) -> &Conn {
        match &self.conn {
            Some(conn) => conn,
            None => unreachable!("a PooledConn holds its connection until dropped"),
        }
    }
}

impl DerefMut for PooledConn {
    fn deref_mut(&mut self) -> &mut Conn {
        match &mut self.conn {
            Some(conn) => conn,
            None => unreachable!("a PooledConn holds its connection until dropped"),
        }
    }
}

impl Drop for PooledConn {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.put_back(conn);
        }
    }
}
