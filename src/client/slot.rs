//! One connection slot of a client: connect, run the session, pause,
//! again, until the client closes or the slot gives up; and how its first
//! attempt went, for `connect`.

use std::{
    io,
    sync::{Arc, Mutex},
};

use tokio::sync::oneshot;
use tokio_util::codec::Decoder;
use tower::ServiceExt;
use tracing::Instrument;

use super::{
    connected::{run_hook, ConnectHook},
    reconnect::{backoff, Attempt, Jitter, Watched},
    target::{open, ClientIo, Connected, Target},
    Client, ClientBuilder,
};
use crate::{codec::MakeCodec, driver, transport::StreamIo, BoxError, MakeSessionService, Session};

/// Where a slot reports how its first attempt went, once.
type FirstAttempt = Arc<Mutex<Option<oneshot::Sender<Result<(), BoxError>>>>>;

fn report(first_attempt: &FirstAttempt, outcome: impl FnOnce() -> Result<(), BoxError>) {
    let tx = first_attempt
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    if let Some(tx) = tx {
        let _ = tx.send(outcome());
    }
}

pub(super) async fn run_slot<MC, M, H, R, W>(
    target: Arc<Target>,
    settings: Arc<ClientBuilder<H>>,
    codec: Arc<MC>,
    mut make: M,
    client: Client<W>,
    first_attempt: oneshot::Sender<Result<(), BoxError>>,
    mut jitter: Jitter,
) where
    MC: MakeCodec<W>,
    MC::Codec: Decoder<Item = R>,
    M: MakeSessionService<R, W>,
    H: ConnectHook<W>,
    R: Send + 'static,
    W: Send + 'static,
{
    let first_attempt: FirstAttempt = Arc::new(Mutex::new(Some(first_attempt)));
    let mut failures: u32 = 0;
    loop {
        let attempt = tokio::select! {
            _ = client.stages.close.cancelled() => break,
            r = tokio::time::timeout(settings.connect_timeout, open(&target, &settings, &client.stages.close)) => {
                r.unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")))
            }
        };
        // Ok once a session started and ended; Err for a failed attempt.
        let outcome: Result<(), BoxError> = match attempt {
            Ok(Connected {
                io,
                peer,
                local,
                kind,
            }) => {
                let session = Session::with_stages(
                    kind,
                    local,
                    peer.clone(),
                    settings.config.clone(),
                    &client.stages,
                );
                let _registered = client.registry.register(&session);
                let ready: Result<&mut M, BoxError> = tokio::select! {
                    _ = client.stages.close.cancelled() => Err("client closed".into()),
                    ready = make.ready() => ready.map_err(Into::into),
                };
                let watch = Arc::new(Attempt::calling({
                    let (session, settings) = (session.clone(), Arc::clone(&settings));
                    let (connected, first_attempt) =
                        (Arc::clone(&client.connected), Arc::clone(&first_attempt));
                    move || {
                        connected.send_modify(|live| *live += 1);
                        run_hook(&settings.on_connect, &session);
                        report(&first_attempt, || Ok(()));
                    }
                }));
                let making = ready
                    .and_then(|make| driver::call_make(make, &session))
                    .map(|making| {
                        let watch = Arc::clone(&watch);
                        async move { making.await.map(|svc| Watched::new(svc, watch)) }
                    });
                let span = crate::driver::task_span(tracing::info_span!(
                    "session",
                    id = session.id(),
                    %peer,
                    transport = crate::server::transport_name(kind)
                ));
                let budget = client.budget.clone();
                match io {
                    ClientIo::Stream(io) => {
                        driver::serve_session(StreamIo(io), session, making, &*codec, budget)
                            .instrument(span)
                            .await
                    }
                    // Boxed, as on the server: each kind of session future
                    // would otherwise be laid out in every slot's task.
                    ClientIo::Ws(ws) => {
                        Box::pin(
                            driver::serve_session(*ws, session, making, &*codec, budget)
                                .instrument(span),
                        )
                        .await
                    }
                    ClientIo::Udp(udp) => {
                        Box::pin(
                            driver::serve_session(*udp, session, making, &*codec, budget)
                                .instrument(span),
                        )
                        .await
                    }
                }
                if watch.opened() {
                    client.connected.send_modify(|live| *live -= 1);
                }
                report(&first_attempt, || {
                    Err("connected, but the session did not start (refused by the \
                         new-session callback or Open, or closed first)"
                        .into())
                });
                if client.stages.close.is_cancelled() {
                    break;
                }
                if watch.started() {
                    Ok(())
                } else {
                    Err(
                        "connected, but the session did not start (refused by the server's \
                         TLS handshake, the new-session callback or Open)"
                            .into(),
                    )
                }
            }
            Err(e) => {
                report(&first_attempt, || {
                    Err(io::Error::new(e.kind(), e.to_string()).into())
                });
                Err(e.into())
            }
        };
        let pause = match outcome {
            Ok(()) => {
                failures = 0;
                jitter.pause(settings.reconnect_interval)
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                if settings
                    .max_reconnect_attempts
                    .is_some_and(|max| failures >= max)
                {
                    tracing::error!(%error, failures, "connect failed; giving up");
                    break;
                }
                let pause = jitter.pause(backoff(
                    settings.reconnect_interval,
                    settings.max_backoff,
                    failures,
                ));
                tracing::warn!(%error, failures, retry_in = ?pause, "connect failed");
                pause
            }
        };
        tokio::select! {
            _ = client.stages.close.cancelled() => break,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}
