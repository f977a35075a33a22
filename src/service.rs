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
