//! What a client tells its caller about connecting: the outcome of the
//! first attempts ([`ConnectError`]), waiting for sessions
//! ([`WaitConnectedError`]), and the hook run on every (re)connect
//! ([`ConnectHook`]).

use std::{
    error::Error as StdError,
    fmt,
    panic::{catch_unwind, AssertUnwindSafe},
    time::Duration,
};

use crate::{error::panic_message, BoxError, Client, Session};

/// Runs each time one of a client's sessions has started: connected, its
/// new-session callback and `Open` accepted it (so a greeting
/// `on_open` returned is already queued). Set with
/// [`ClientBuilder::on_connect`](crate::ClientBuilder::on_connect);
/// implemented for every `Fn(&Session<W>)` closure and for `()` (no hook).
///
/// ```
/// use getty::{ConnectHook, Session};
///
/// fn takes<H: ConnectHook<bytes::Bytes>>(_: H) {}
/// takes(|session: &Session| println!("connected: {session}"));
/// takes(());
/// ```
pub trait ConnectHook<W>: Send + Sync + 'static {
    /// The session has started.
    fn connected(&self, session: &Session<W>);
}

impl<W> ConnectHook<W> for () {
    fn connected(&self, _: &Session<W>) {}
}

impl<W, F> ConnectHook<W> for F
where
    F: Fn(&Session<W>) + Send + Sync + 'static,
{
    fn connected(&self, session: &Session<W>) {
        self(session)
    }
}

/// Runs the hook, a panic logged and contained: the session carries on.
pub(super) fn run_hook<W, H: ConnectHook<W>>(hook: &H, session: &Session<W>) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(|| hook.connected(session))) {
        tracing::error!(
            panic = %panic_message(&*payload),
            "the on_connect hook panicked; the session carries on"
        );
    }
}

/// Why [`ClientBuilder::connect`](crate::ClientBuilder::connect) (or
/// `connect_unix`, `connect_ws`, `connect_udp`) gave no client: the target
/// was malformed, or no connection slot started a session on its first
/// attempt.
///
/// In the second case the client still exists and keeps reconnecting as
/// configured (`reconnect_interval`, backoff, `max_reconnect_attempts`):
/// [`into_client`](Self::into_client) keeps it, for a program that starts
/// before its server. Dropping the error closes it.
///
/// ```no_run
/// use getty::{codec::LengthCodec, new_session_fn, BoxError, Client, ListenerService, Session};
/// # use getty::{Bytes, EventListener};
/// # struct Quiet;
/// # impl EventListener<Bytes> for Quiet {
/// #     fn on_message(&mut self, _: &Session, _: Bytes) -> Option<Bytes> { None }
/// # }
///
/// # async fn demo() {
/// let make = new_session_fn(|_: &Session| Ok::<_, BoxError>(ListenerService::new(Quiet)));
/// let client = match Client::builder().connect("127.0.0.1:19001", LengthCodec::new(), make).await {
///     Ok(client) => client,
///     Err(e) => {
///         eprintln!("{e}; retrying in the background");
///         e.into_client().expect("the target was well-formed")
///     }
/// };
/// # let _ = client;
/// # }
/// ```
pub struct ConnectError<W = bytes::Bytes> {
    target: String,
    /// How many connection slots tried; 0 when the target was refused
    /// before any attempt.
    slots: usize,
    source: BoxError,
    client: Option<Client<W>>,
}

impl<W> ConnectError<W> {
    /// The target was refused before any attempt.
    pub(super) fn invalid_target(target: &str, source: BoxError) -> Self {
        ConnectError {
            target: target.to_owned(),
            slots: 0,
            source,
            client: None,
        }
    }

    /// No slot started a session; `first` is slot 0's error.
    pub(super) fn not_connected(
        target: String,
        slots: usize,
        first: BoxError,
        client: Client<W>,
    ) -> Self {
        ConnectError {
            target,
            slots,
            source: first,
            client: Some(client),
        }
    }

    /// Where the client was to connect.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Whether the target itself was refused (a malformed WebSocket URL, a
    /// `wss://` URL without TLS), before any attempt: there is no client.
    ///
    /// ```no_run
    /// use getty::{codec::LengthCodec, new_session_fn, BoxError, Client, ListenerService, Session};
    /// # use getty::{Bytes, EventListener};
    /// # struct Quiet;
    /// # impl EventListener<Bytes> for Quiet {
    /// #     fn on_message(&mut self, _: &Session, _: Bytes) -> Option<Bytes> { None }
    /// # }
    ///
    /// # async fn demo() {
    /// let make = new_session_fn(|_: &Session| Ok::<_, BoxError>(ListenerService::new(Quiet)));
    /// let err = Client::builder()
    ///     .connect_ws("http://example.com/", LengthCodec::new(), make)
    ///     .await
    ///     .unwrap_err();
    /// assert!(err.is_invalid_target());
    /// assert_eq!(err.target(), "http://example.com/");
    /// assert!(err.into_client().is_none());
    /// # }
    /// ```
    pub fn is_invalid_target(&self) -> bool {
        self.slots == 0
    }

    /// The client, still reconnecting in the background; `None` when the
    /// target was refused.
    pub fn into_client(mut self) -> Option<Client<W>> {
        self.client.take()
    }
}

impl<W> Drop for ConnectError<W> {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            client.close();
        }
    }
}

impl<W> fmt::Display for ConnectError<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.slots {
            0 => write!(f, "cannot connect to {}: {}", self.target, self.source),
            1 => write!(f, "could not connect to {}: {}", self.target, self.source),
            n => write!(
                f,
                "could not connect to {}: none of {n} connections started; the first: {}",
                self.target, self.source
            ),
        }
    }
}

impl<W> fmt::Debug for ConnectError<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectError")
            .field("target", &self.target)
            .field("slots", &self.slots)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl<W> StdError for ConnectError<W> {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&*self.source)
    }
}

/// Why [`Client::wait_connected`] gave up.
///
/// ```
/// use getty::WaitConnectedError;
/// use std::time::Duration;
///
/// let e = WaitConnectedError::TimedOut { connected: 1, wanted: 2, timeout: Duration::from_secs(1) };
/// assert_eq!(e.to_string(), "1 of 2 sessions connected after 1s");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WaitConnectedError {
    /// `timeout` passed with fewer than `wanted` sessions connected.
    TimedOut {
        /// Sessions connected when it gave up.
        connected: usize,
        /// Sessions waited for.
        wanted: usize,
        /// How long it waited.
        timeout: Duration,
    },
    /// The client stopped (closed, or every connection slot gave up
    /// reconnecting) with fewer than `wanted` sessions connected.
    Closed {
        /// Sessions connected when it stopped.
        connected: usize,
        /// Sessions waited for.
        wanted: usize,
    },
}

impl fmt::Display for WaitConnectedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitConnectedError::TimedOut {
                connected,
                wanted,
                timeout,
            } => write!(
                f,
                "{connected} of {wanted} sessions connected after {timeout:?}"
            ),
            WaitConnectedError::Closed { connected, wanted } => write!(
                f,
                "the client stopped with {connected} of {wanted} sessions connected"
            ),
        }
    }
}

impl StdError for WaitConnectedError {}
