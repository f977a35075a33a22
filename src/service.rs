//! Names for the bounds a session's service stack must meet, so servers,
//! clients and user code can write them once.

use tower::Service;

use crate::{BoxError, Request, Session};

/// A service that can run a session: it takes [`Request`]s and answers with
/// packets to write. Implemented for every fitting tower service; never
/// implement it by hand.
///
/// ```
/// use bytes::Bytes;
/// use getty::{Request, SessionService};
/// use std::convert::Infallible;
///
/// fn runs_a_session<S: SessionService<Bytes, Bytes>>(_: S) {}
/// runs_a_session(tower::service_fn(|req: Request<Bytes>| async move {
///     Ok::<_, Infallible>(req.into_message())
/// }));
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot run a session with incoming packets of type `{R}` and outgoing packets of type `{W}`",
    label = "not a session's service",
    note = "a session's service is a tower `Service<getty::Request<{R}, {W}>>` whose response is any \
            `IntoIterator<Item = {W}>` (`Option<{W}>`, `Vec<{W}>`), whose error converts into `BoxError`, \
            and which is `Send + 'static` with a `Send + 'static` future",
    note = "an `EventListener` is wrapped: `ListenerService::new(listener)`"
)]
pub trait SessionService<R, W>:
    Service<
        Request<R, W>,
        Response: IntoIterator<Item = W> + Send + 'static,
        Error: Into<BoxError>,
        Future: Send + 'static,
    > + Send
    + 'static
{
}

impl<S, R, W> SessionService<R, W> for S
where
    S: Service<Request<R, W>> + Send + 'static,
    S::Response: IntoIterator<Item = W> + Send + 'static,
    // Says the same as `Item = W`, with a message for the usual slip.
    <S::Response as IntoIterator>::Item: Packet<W>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
}

/// getty's `NewSessionCallback` as a tower `MakeService`: builds each new
/// session's [`SessionService`], or refuses the session with an error.
/// Implemented for every fitting tower service; see
/// [`new_session_fn`](crate::new_session_fn) for the short way to write one.
///
/// ```
/// use bytes::Bytes;
/// use getty::{new_session_fn, EventListener, ListenerService, MakeSessionService, Session};
///
/// struct Echo;
/// impl EventListener<Bytes> for Echo {
///     fn on_message(&mut self, _: &Session, pkg: Bytes) -> Option<Bytes> { Some(pkg) }
/// }
///
/// fn makes_sessions<M: MakeSessionService<Bytes, Bytes>>(_: M) {}
/// makes_sessions(new_session_fn(|_: &Session| Ok::<_, getty::BoxError>(ListenerService::new(Echo))));
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot make the services of sessions with incoming packets of type `{R}` and outgoing packets of type `{W}`",
    label = "not a new-session callback",
    note = "a new-session callback is a tower `Service<Session<{W}>>` (a `MakeService`) answering with a \
            `SessionService<{R}, {W}>`; a closure is wrapped: `getty::new_session_fn(|session| Ok(service))`"
)]
pub trait MakeSessionService<R, W>:
    Service<
        Session<W>,
        Response: SessionService<R, W>,
        Error: Into<BoxError>,
        Future: Send + 'static,
    > + Send
    + 'static
{
}

impl<M, R, W> MakeSessionService<R, W> for M
where
    M: Service<Session<W>> + Send + 'static,
    M::Response: SessionService<R, W>,
    M::Error: Into<BoxError>,
    M::Future: Send + 'static,
{
}

/// Says that a service's response items are the session's outgoing packets
/// (`W` itself): implemented only for `W`. It is part of the
/// [`SessionService`] bound so that the usual slip gets an error that
/// says what to do: a service answering with the bare packet (`Bytes`)
/// rather than `Some(packet)`. `Bytes` is itself an iterator, of `u8`, so
/// without this bound the compiler would only say it expected `Bytes` and
/// found `u8`.
///
/// ```
/// use getty::Packet;
///
/// fn is_the_packet<I: Packet<W>, W>() {}
/// is_the_packet::<bytes::Bytes, bytes::Bytes>();
/// ```
///
/// ```compile_fail,E0277
/// use bytes::Bytes;
/// use getty::{Request, SessionService};
/// use std::convert::Infallible;
///
/// fn runs_a_session<S: SessionService<Bytes, Bytes>>(_: S) {}
/// // error[E0277]: the service answers with items of type `u8` where the
/// //               session's outgoing packets are of type `Bytes`
/// //   = note: a response is any `IntoIterator` of packets: answer
/// //           `Some(packet)` (or `None`), not the bare packet ...
/// runs_a_session(tower::service_fn(|req: Request<Bytes>| async move {
///     Ok::<_, Infallible>(req.into_message().unwrap_or_default())
/// }));
/// ```
#[diagnostic::on_unimplemented(
    message = "the service answers with items of type `{Self}` where the session's outgoing packets are of type `{W}`",
    label = "answers `{Self}`, not `{W}`",
    note = "a response is any `IntoIterator` of packets: answer `Some(packet)` (or `None`), not the bare \
            packet; `Bytes` and `Vec<u8>` are themselves iterators of `u8`",
    note = "the codec's `Encoder` decides the outgoing packet type `{W}`"
)]
pub trait Packet<W> {}

impl<W> Packet<W> for W {}
