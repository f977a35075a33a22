//! The accepting side of a package server: the accept loop, one task per
//! connection (TLS handshake, then the handler with its panic contained),
//! and the graceful shutdown's drain-then-abort.

use std::{
    any::Any,
    future::Future,
    io,
    panic::AssertUnwindSafe,
    path::PathBuf,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use futures_util::FutureExt;
use tokio::{net::TcpListener, sync::oneshot, task::JoinSet, time::Instant};
use tracing::Instrument;

use super::{
    server::{HandlerResult, Server, ServerBuilder, ShutdownReport},
    stream::Stream,
    Conn,
};
use crate::Addr;

/// How long a failed accept (EMFILE, say) waits before the next one.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

pub(super) enum Listener {
    Tcp(TcpListener),
    #[cfg(unix)]
    Unix(tokio::net::UnixListener, PathBuf),
}

impl Listener {
    async fn accept(&self) -> io::Result<(Stream, Addr)> {
        match self {
            Listener::Tcp(l) => {
                let (tcp, peer) = l.accept().await?;
                let _ = tcp.set_nodelay(true);
                Ok((Stream::Tcp(tcp), Addr::from(peer)))
            }
            #[cfg(unix)]
            Listener::Unix(l, _) => {
                let (unix, peer) = l.accept().await?;
                let peer = Addr::Unix(peer.as_pathname().map(ToOwned::to_owned));
                Ok((Stream::Unix(unix), peer))
            }
        }
    }

    /// The socket file to remove at shutdown.
    fn unix_path(&self) -> Option<PathBuf> {
        match self {
            Listener::Tcp(_) => None,
            #[cfg(unix)]
            Listener::Unix(_, path) => Some(path.clone()),
        }
    }
}

/// Counts a connection as active from accept to the end of its task
/// (aborted or not).
pub(super) struct Active(Arc<AtomicUsize>);

impl Active {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Active(Arc::clone(count))
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

pub(super) async fn accept_loop<H, Fut>(
    server: Server,
    handler: Arc<H>,
    stop: oneshot::Receiver<Instant>,
    active: Arc<AtomicUsize>,
) -> ShutdownReport
where
    H: Fn(Conn) -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: HandlerResult,
{
    let Server {
        listener,
        local,
        settings,
        token,
    } = server;
    // A dropped handle leaves the server running.
    let stop = async {
        match stop.await {
            Ok(deadline) => deadline,
            Err(_) => std::future::pending().await,
        }
    };
    tokio::pin!(stop);
    let mut tasks = JoinSet::new();
    // The server's lifetime: ends when shutdown is asked for.
    let deadline = loop {
        tokio::select! {
            biased;
            deadline = &mut stop => break deadline,
            Some(done) = tasks.join_next(), if !tasks.is_empty() => reap(done),
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let task = connection(
                        stream,
                        peer.clone(),
                        local.clone(),
                        settings.clone(),
                        Arc::clone(&handler),
                        Active::new(&active),
                    );
                    let span = crate::driver::task_span(tracing::info_span!("pkg_conn", %peer));
                    tasks.spawn(task.instrument(span));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed; retrying after {ACCEPT_BACKOFF:?}");
                    tokio::select! {
                        deadline = &mut stop => break deadline,
                        _ = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                    }
                }
            },
        }
    };
    token.cancel();
    let unix_path = listener.unix_path();
    drop(listener);
    if let Some(path) = unix_path {
        let _ = std::fs::remove_file(path);
    }
    let running = tasks.len();
    tracing::info!(running, "shutting down: no longer accepting");
    let mut report = ShutdownReport::default();
    // Bounded by the deadline.
    let _ = tokio::time::timeout_at(deadline, async {
        while let Some(done) = tasks.join_next().await {
            reap(done);
            report.drained += 1;
        }
    })
    .await;
    report.aborted = tasks.len();
    if report.aborted > 0 {
        tracing::warn!(
            aborted = report.aborted,
            "shutdown deadline passed; aborting the remaining handlers"
        );
    }
    tasks.abort_all();
    // Bounded: every task left was aborted and ends at its next poll.
    while tasks.join_next().await.is_some() {}
    report
}

/// Logs a connection task that did not end normally (panics are caught
/// inside the task, so this is a safety net).
fn reap(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        if !e.is_cancelled() {
            tracing::error!(error = %e, "connection task failed");
        }
    }
}

/// One connection: the TLS handshake when there is one, then the handler,
/// with its panic contained.
async fn connection<H, Fut>(
    stream: Stream,
    peer: Addr,
    local: Addr,
    settings: ServerBuilder,
    handler: Arc<H>,
    _active: Active,
) where
    H: Fn(Conn) -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: HandlerResult,
{
    let stream = match (stream, &settings.tls) {
        (Stream::Tcp(tcp), Some(tls)) => {
            match tokio::time::timeout(settings.handshake_timeout, tls.acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => Stream::TlsServer(Box::new(tls)),
                Ok(Err(e)) => {
                    tracing::info!(error = %e, "TLS handshake failed; connection closed");
                    return;
                }
                Err(_) => {
                    tracing::info!(
                        timeout = ?settings.handshake_timeout,
                        "TLS handshake timed out; connection closed"
                    );
                    return;
                }
            }
        }
        (stream, _) => stream,
    };
    let conn = Conn::from_stream(stream, peer, local, settings.option, settings.max_line_len);
    let run = AssertUnwindSafe(async move { handler(conn).await.into_result() });
    match run.catch_unwind().await {
        Ok(Ok(())) => tracing::debug!("connection handler finished"),
        Ok(Err(e)) => tracing::warn!(error = %e, "connection handler ended with an error"),
        Err(panic) => tracing::error!(
            panic = panic_message(&panic),
            "connection handler panicked; its connection is closed, the server goes on"
        ),
    }
}

fn panic_message(panic: &Box<dyn Any + Send>) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(not a string)")
}
