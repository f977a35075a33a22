//! The per-session driver: one task per session owns the socket, the codec
//! and the service stack, and turns reads, ticks and closing into events.

mod call;
mod conn;
mod pipeline;

use std::{future::poll_fn, pin::pin, time::Duration};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::{Decoder, Encoder};
use tower::Service;

use self::{conn::Conn, pipeline::Pipeline};
use crate::{BoxError, Event, Request, Session};

/// Runs a session to its end: `Open`, the running loop, the drain, the
/// socket's close, `Close`, then the close callbacks.
pub(crate) async fn run<T, C, S, R, W>(io: T, codec: C, mut svc: S, session: Session<W>)
where
    T: AsyncRead + AsyncWrite + Unpin,
    C: Decoder<Item = R> + Encoder<W, Error = <C as Decoder>::Error>,
    <C as Decoder>::Error: Into<BoxError>,
    S: Service<Request<R, W>>,
    S::Response: IntoIterator<Item = W>,
    S::Error: Into<BoxError>,
{
    let open = call::call_one(&mut svc, Request::new(session.clone(), Event::Open));
    let opened = tokio::select! {
        opened = open => opened,
        () = session.forced() => {
            tracing::warn!("forced closed while its open event was still being handled");
            drop(io);
            session.finish();
            return;
        }
    };
    let greeting = match opened {
        Ok(response) => response,
        Err(error) => {
            tracing::info!(%error, "session refused on open");
            drop(io);
            session.finish();
            return;
        }
    };
    tracing::debug!("session open");

    let mut calls = pin!(Pipeline::new(session.max_in_flight()));
    // Armed by the loop only when a deadline exists.
    let mut timer = pin!(tokio::time::sleep(Duration::from_secs(86_400)));
    let mut conn = Conn::new(io, codec, session.clone());
    conn.encode_all(greeting);
    poll_fn(|cx| conn.poll_run(cx, &mut svc, calls.as_mut(), timer.as_mut())).await;

    // Calls still in flight here overran the wait time (or the session was
    // forced): they are cancelled.
    calls.as_mut().clear();
    if !session.is_forced() {
        conn.shutdown().await;
    }
    let service_alive = !conn.service_dead;
    drop(conn);

    if service_alive {
        let close = call::call_one(&mut svc, Request::new(session.clone(), Event::Close));
        tokio::select! {
            closed = close => if let Err(error) = closed {
                tracing::warn!(%error, "service failed handling close");
            },
            () = session.killed() => {
                tracing::warn!("close event abandoned: its handling outlasted the shutdown");
            }
        }
    }
    tracing::debug!(stats = %session.stats(), "session closed");
    session.finish();
}
