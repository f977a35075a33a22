//! The per-session driver: one task per session owns the socket, the codec
//! and the service stack, and turns reads, ticks and closing into events.

mod call;
mod close;
mod conn;
mod dispatch;
mod pipeline;
mod read;
mod spare;
mod timer;
mod write;

use std::{
    future::{poll_fn, Future},
    panic::{catch_unwind, AssertUnwindSafe},
    pin::pin,
    sync::Arc,
    task::Poll,
};

use futures_util::FutureExt;

use tokio_util::codec::{Decoder, Encoder};
use tower::Service;

use self::{
    conn::{Conn, Open},
    pipeline::Pipeline,
};
use crate::budget::InputBudget;
use crate::transport::Transport;
use crate::{codec::MakeCodec, error::panic_message, BoxError, Event, Request, Session};

/// The span a session's (or a connection's) task runs in: `span`, or no
/// span at all when no subscriber wants it. A disabled span is not free
/// when some crate in the build turns on `tracing`'s `log` feature (tarpc
/// does, in this crate's benches and examples): entering and leaving it
/// then checks the `log` level on every poll of the task, about 150
/// instructions per wakeup. Spans that are on are kept as they are.
pub(crate) fn task_span(span: tracing::Span) -> tracing::Span {
    if span.is_disabled() {
        tracing::Span::none()
    } else {
        span
    }
}

/// Runs a session to its end: `Open` (writes, timers and `close()` already
/// work while it is handled), the running loop, the drain, the socket's
/// close, `Close` (for a session that was opened), then the close callbacks.
pub(crate) async fn run<T, C, S, R, W>(
    io: T,
    codec: C,
    mut svc: S,
    session: Session<W>,
    budget: Option<Arc<InputBudget>>,
) where
    T: Transport,
    C: Decoder<Item = R> + Encoder<W, Error = <C as Decoder>::Error>,
    <C as Decoder>::Error: Into<BoxError>,
    S: Service<Request<R, W>>,
    S::Response: IntoIterator<Item = W>,
    S::Error: Into<BoxError>,
{
    let mut calls = pin!(Pipeline::new(session.max_in_flight()));
    // The driver learns of closing from the queue, which `Session::close`
    // closes with the close token. An owner's close reaches its registered
    // sessions as `close()`; one that came between the session's birth and
    // its registration cancelled only the token: it is caught here.
    if session.is_closed() {
        session.close();
    }
    // Armed by the loop only when a deadline exists.
    let mut conn = Conn::new(io, codec, session.clone(), budget);
    poll_fn(|cx| conn.poll_run(cx, &mut svc, calls.as_mut())).await;

    // Calls still in flight here overran the wait time (or the session was
    // forced): they are cancelled.
    calls.as_mut().clear();
    if conn.open != Open::Accepted && session.is_forced() {
        tracing::warn!("forced closed while its open event was still being handled");
    }
    let mut linger = false;
    if !session.is_forced() {
        tokio::select! {
            open = conn.shutdown() => linger = open,
            () = session.forced() => {}
        }
    }
    let opened = conn.open == Open::Accepted && !conn.service_dead;
    // What it held of the input is not the session's any more.
    conn.release_input();

    if opened {
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
    // The socket stays with the session's task until the lingering close
    // is over, but the session's end does not wait for it. (One `conn` for
    // the whole function: moving it into another binding or future would
    // store it twice in this future, which every idle session pays for.)
    if linger {
        tokio::select! {
            () = conn.linger() => {}
            () = session.forced() => {}
        }
    }
}

/// Starts a session whose service the new-session callback is making:
/// [`prepare`], then [`run_contained`]. A refusal, or a panic anywhere on
/// the way, ends the session cleanly.
pub(crate) async fn serve_session<T, MC, F, S, E, R, W>(
    io: T,
    session: Session<W>,
    making: Result<F, BoxError>,
    codec: &MC,
    budget: Option<Arc<InputBudget>>,
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
    if let Some((codec, svc)) = prepare(&session, making, codec).await {
        run_contained(io, codec, svc, session, budget, ()).await;
    }
}

/// Waits for the service the new-session callback is making (abandoned if
/// the session is forced closed meanwhile) and makes the codec. `None`
/// when the session was refused or a callback panicked: the session is
/// then finished (close callbacks run).
pub(crate) async fn prepare<MC, F, S, E, R, W>(
    session: &Session<W>,
    making: Result<F, BoxError>,
    codec: &MC,
) -> Option<(MC::Codec, S)>
where
    MC: MakeCodec<W>,
    MC::Codec: Decoder<Item = R>,
    F: Future<Output = Result<S, E>>,
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
            return None;
        }
    };
    match catch_unwind(AssertUnwindSafe(|| codec.make_codec(session))) {
        Ok(codec) => Some((codec, svc)),
        Err(payload) => {
            tracing::error!(error = %panicked("make_codec", &*payload), "session refused");
            session.finish();
            None
        }
    }
}

/// Runs a made session to its end with a panic escaping the driver
/// contained (logged, the session finished). `hold` is kept until the end
/// (a server's session slot and registration), as an argument: an async
/// block that captured it and awaited this future would hold the future
/// twice.
pub(crate) async fn run_contained<T, C, S, R, W, H>(
    io: T,
    codec: C,
    svc: S,
    session: Session<W>,
    budget: Option<Arc<InputBudget>>,
    hold: H,
) where
    T: Transport,
    C: Decoder<Item = R> + Encoder<W, Error = <C as Decoder>::Error>,
    <C as Decoder>::Error: Into<BoxError>,
    S: Service<Request<R, W>>,
    S::Response: IntoIterator<Item = W>,
    S::Error: Into<BoxError>,
{
    let _hold = hold;
    // Pinned in place and polled through a closure rather than wrapped in
    // `catch_unwind()`: moving the session's future into a wrapper made
    // this future hold it twice.
    let mut running = pin!(run(io, codec, svc, session.clone(), budget));
    let contained =
        poll_fn(
            |cx| match catch_unwind(AssertUnwindSafe(|| running.as_mut().poll(cx))) {
                Ok(Poll::Ready(())) => Poll::Ready(Ok(())),
                Ok(Poll::Pending) => Poll::Pending,
                Err(payload) => Poll::Ready(Err(payload)),
            },
        );
    if let Err(payload) = contained.await {
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

#[cfg(test)]
mod tests {
    use super::task_span;

    #[test]
    fn a_task_span_nobody_listens_to_is_no_span_and_one_listened_to_is_kept() {
        // No subscriber on this thread: the span would only cost.
        let quiet = task_span(tracing::info_span!("session", id = 1));
        assert!(quiet.is_none());
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_writer(std::io::sink)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let heard = task_span(tracing::info_span!("session", id = 2));
            assert!(!heard.is_none() && !heard.is_disabled());
            assert_eq!(heard.metadata().map(|m| m.name()), Some("session"));
        });
    }
}
