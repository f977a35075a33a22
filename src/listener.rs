//! getty's `EventListener`, adapted as the innermost tower service.

use std::{
    future::{ready, Ready},
    task::{Context, Poll},
};

use bytes::Bytes;
use tower::Service;

use crate::{BoxError, Error, Event, Request, Session};

/// getty's `EventListener`: callbacks for a session's life.
///
/// Each session gets its own listener (made by the new-session callback), so
/// methods take `&mut self` and per-session state needs no lock. The methods
/// run on the session's task: keep them short, and spawn or use a tower
/// service for slow work.
///
/// `on_open` and `on_message` answer by returning a packet, written back in
/// order; a listener can also [`send`](Session::send) at any time.
///
/// `P` and `W` are the codec's packet types (what it decodes, what it
/// encodes): a listener served with a codec whose packets differ is a
/// compile error that names both types ("`Lines` is not an
/// `EventListener` for sessions with incoming packets of type `Bytes` and
/// outgoing packets of type `Bytes`"):
///
/// ```compile_fail,E0277
/// use getty::{codec::LengthCodec, new_session_fn, BoxError, EventListener, ListenerService, Server, Session};
///
/// struct Lines;
/// impl EventListener<String, String> for Lines {
///     fn on_message(&mut self, _: &Session<String>, line: String) -> Option<String> { Some(line) }
/// }
///
/// fn serve(server: Server) {
///     // LengthCodec's packets are `Bytes`, the listener's `String`.
///     server.serve(
///         LengthCodec::new(),
///         new_session_fn(|_: &Session| Ok::<_, BoxError>(ListenerService::new(Lines))),
///     );
/// }
/// ```
///
/// ```
/// use getty::{BoxError, Bytes, EventListener, Session};
///
/// struct Echo;
///
/// impl EventListener<Bytes> for Echo {
///     fn on_open(&mut self, session: &Session) -> Result<Option<Bytes>, BoxError> {
///         println!("{session} opened");
///         Ok(Some(Bytes::from_static(b"welcome"))) // the peer's first packet
///     }
///     fn on_message(&mut self, _session: &Session, pkg: Bytes) -> Option<Bytes> {
///         Some(pkg)
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an `EventListener` for sessions with incoming packets of type `{P}` and outgoing packets of type `{W}`",
    label = "does not listen to `{P}` packets answered with `{W}`",
    note = "the codec decides both types: `{P}` is its `Decoder::Item` and `{W}` what its `Encoder` takes \
            (`LengthCodec`: `Bytes` and `Bytes`; `LinesCodec`: `String` and `String`; \
            `LengthDelimitedCodec`: `BytesMut` and `Bytes`)",
    note = "implement `EventListener<{P}, {W}>` for `{Self}`, or serve it with a codec whose packets are the listener's"
)]
pub trait EventListener<P, W = Bytes>: Send + 'static {
    /// The session opened (getty's `OnOpen`). Return `Ok(Some(pkg))` to
    /// greet the peer: `pkg` is written before any answer to the peer's
    /// packets, as a service's answer to [`Event::Open`] is. An error
    /// refuses the session: the connection is closed and no other event
    /// follows.
    fn on_open(&mut self, session: &Session<W>) -> Result<Option<W>, BoxError> {
        let _ = session;
        Ok(None)
    }

    /// A packet arrived (getty's `OnMessage`); return a packet to answer.
    fn on_message(&mut self, session: &Session<W>, pkg: P) -> Option<W>;

    /// The cron period elapsed (getty's `OnCron`): check
    /// [`Session::active`] here for getty-style heartbeats.
    fn on_cron(&mut self, session: &Session<W>) {
        let _ = session;
    }

    /// The session failed (getty's `OnError`); `on_close` follows.
    fn on_error(&mut self, session: &Session<W>, error: &Error) {
        let _ = (session, error);
    }

    /// The session closed (getty's `OnClose`); called exactly once for a
    /// session whose `on_open` succeeded.
    fn on_close(&mut self, session: &Session<W>) {
        let _ = session;
    }
}

/// An [`EventListener`] as a tower [`Service`]: the innermost service of a
/// session's stack.
///
/// ```
/// use bytes::Bytes;
/// use getty::{EventListener, ListenerService, Session};
/// use std::time::Duration;
///
/// struct Echo;
/// impl EventListener<Bytes> for Echo {
///     fn on_message(&mut self, _: &Session, pkg: Bytes) -> Option<Bytes> { Some(pkg) }
/// }
///
/// let stack = tower::ServiceBuilder::new()
///     .timeout(Duration::from_secs(5))
///     .service(ListenerService::new(Echo));
/// # let _ = stack;
/// ```
#[derive(Debug, Clone)]
pub struct ListenerService<L> {
    listener: L,
}

impl<L> ListenerService<L> {
    /// Wraps a listener.
    pub fn new(listener: L) -> Self {
        ListenerService { listener }
    }

    /// The listener.
    pub fn get_ref(&self) -> &L {
        &self.listener
    }

    /// The listener, mutably.
    pub fn get_mut(&mut self) -> &mut L {
        &mut self.listener
    }

    /// Unwraps the listener.
    pub fn into_inner(self) -> L {
        self.listener
    }
}

impl<L, P, W> Service<Request<P, W>> for ListenerService<L>
where
    L: EventListener<P, W>,
{
    type Response = Option<W>;
    type Error = BoxError;
    type Future = Ready<Result<Option<W>, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<P, W>) -> Self::Future {
        let session = &req.session;
        let l = &mut self.listener;
        ready(match req.event {
            Event::Open => l.on_open(session),
            Event::Message(pkg) => Ok(l.on_message(session, pkg)),
            Event::Tick => {
                l.on_cron(session);
                Ok(None)
            }
            Event::Error(e) => {
                l.on_error(session, &e);
                Ok(None)
            }
            Event::Close => {
                l.on_close(session);
                Ok(None)
            }
        })
    }
}

/// A new-session callback from a closure (getty's `NewSessionCallback`).
///
/// The closure gets each new session before it runs: it can name and
/// configure it, and returns the session's service, or an error to refuse
/// the session. Servers and clients take any tower `MakeService`; this is the
/// short way to write one.
///
/// ```
/// use bytes::Bytes;
/// use getty::{new_session_fn, EventListener, ListenerService, Session};
///
/// struct Echo;
/// impl EventListener<Bytes> for Echo {
///     fn on_message(&mut self, _: &Session, pkg: Bytes) -> Option<Bytes> { Some(pkg) }
/// }
///
/// let make = new_session_fn(|session: &Session| {
///     session.set_name("echo");
///     Ok::<_, getty::BoxError>(ListenerService::new(Echo))
/// });
/// # let _ = make;
/// ```
pub fn new_session_fn<F>(f: F) -> NewSessionFn<F> {
    NewSessionFn { f }
}

/// The make-service returned by [`new_session_fn`]: a tower `Service` from
/// a [`Session`] to that session's service stack.
///
/// ```
/// use getty::{new_session_fn, Addr, EndpointKind, Session, SessionConfig};
/// use tower::{Service, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let mut make = new_session_fn(|s: &Session| {
///     if s.peer_addr() == &Addr::Unknown { Err("no peer") } else { Ok(()) }
/// });
/// let s = Session::new(EndpointKind::Detached, Addr::Unknown, Addr::Unknown, SessionConfig::default());
/// assert!(make.ready().await.unwrap().call(s).await.is_err());
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct NewSessionFn<F> {
    f: F,
}

impl<F, S, E, W> Service<Session<W>> for NewSessionFn<F>
where
    F: FnMut(&Session<W>) -> Result<S, E>,
{
    type Response = S;
    type Error = E;
    type Future = Ready<Result<S, E>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, session: Session<W>) -> Self::Future {
        ready((self.f)(&session))
    }
}
