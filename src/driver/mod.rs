//! The per-session driver: one task per session owns the socket, the codec
//! and the service stack, and turns reads, ticks and closing into events.

mod call;
mod conn;
mod pipeline;

use std::{
    future::{poll_fn, Future},
    panic::{catch_unwind, AssertUnwindSafe},
    pin::pin,
    time::Duration,
};

use futures_util::FutureExt;

use tokio_util::codec::{Decoder, Encoder};
use tower::Service;

use self::{conn::Conn, pipeline::Pipeline};
use crate::transport::Transport;
use crate::{codec::MakeCodec, error::panic_message, BoxError, Event, Request, Session};

/// Runs a session to its end: `Open`, the running loop, the drain, the
/// socket's close, `Close`, then the close callbacks.
pub(crate) async fn run<T, C, S, R, W>(io: T, codec: C, mut svc: S, session: Session<W>)
where
    T: Transport,
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

    let max_in_flight = session.max_in_flight();
    let mut calls = pin!(Pipeline::new(max_in_flight));
    // Armed by the loop only when a deadline exists.
    let mut timer = pin!(tokio::time::sleep(Duration::from_secs(86_400)));
    let mut conn = Conn::new(io, codec, session.clone(), max_in_flight);
    conn.respond(greeting);
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

/// Starts a session whose service the new-session callback is making:
/// waits for the service (abandoned if the session is forced closed
/// meanwhile), makes the codec, and runs the session. A refusal, or a panic
/// anywhere on the way, ends the session cleanly: it is finished (close
/// callbacks run) and, if a panic escaped the driver, the panic is logged.
pub(crate) async fn serve_session<T, MC, F, S, E, R, W>(
    io: T,
    session: Session<W>,
    making: Result<F, BoxError>,
    codec: &MC,
) where
    T: Transport,
    MC: MakeCodec<W>,
    MC::Codec: Decoder<Item = R>,
    F: Future<Output = Result<S, E>>,
    S: Service<Request<R, W>>,
    S::Response: IntoIterator<Item = W>,
    S::Error: Into<BoxError>,
    E: Into<BoxError>,
{
    let made: Result<S, BoxError> = match making {
        Err(e) => Err(e),
        Ok(making) => tokio::select! {
            made = AssertUnwindSafe(making).catch_unwind() => match made {
                Ok(made) => made.map_err(Into::into),
                Err(payload) => Err(panicked("new-session callback", &*payload)),
            },
            () = session.forced() => Err("forced closed while the new-session callback ran".into()),
        },
    };
    let svc = match made {
        Ok(svc) => svc,
        Err(error) => {
            tracing::info!(%error, "session refused by the new-session callback");
            session.finish();
            return;
        }
    };
    let codec = match catch_unwind(AssertUnwindSafe(|| codec.make_codec(&session))) {
        Ok(codec) => codec,
        Err(payload) => {
            tracing::error!(error = %panicked("make_codec", &*payload), "session refused");
            session.finish();
            return;
        }
    };
    if let Err(payload) = AssertUnwindSafe(run(io, codec, svc, session.clone()))
        .catch_unwind()
        .await
    {
        tracing::error!(error = %panicked("session driver", &*payload), "session ended");
        session.finish();
    }
}

/// Calls the new-session callback, a panic becoming a refusal.
pub(crate) fn call_make<M, W>(make: &mut M, session: &Session<W>) -> Result<M::Future, BoxError>
where
    M: Service<Session<W>>,
{
    catch_unwind(AssertUnwindSafe(|| make.call(session.clone())))
        .map_err(|payload| panicked("new-session callback", &*payload))
}

fn panicked(what: &str, payload: &(dyn std::any::Any + Send)) -> BoxError {
    format!("{what} panicked: {}", panic_message(payload)).into()
}
