//! What enters the service stack: an [`Event`] of a [`Session`], as a [`Request`].

use bytes::Bytes;

use crate::{Error, Session};

/// A moment in a session's life, as it passes the service stack.
///
/// Every lifecycle moment passes the stack, so a layer can see it: a
/// heartbeat layer acts on `Tick`, close callbacks run after `Close`, stats
/// count everything.
///
/// | event        | when                                             | getty       |
/// |--------------|--------------------------------------------------|-------------|
/// | `Open`       | first, once; an error refuses the session        | `OnOpen`    |
/// | `Message(p)` | the codec decoded a packet                       | `OnMessage` |
/// | `Tick`       | the session's cron period elapsed                | `OnCron`    |
/// | `Error(e)`   | the session failed (`Close` follows), or an error was reported with [`Session::report_error`](crate::Session::report_error) (it carries on) | `OnError` |
/// | `Close`      | last, exactly once for an opened session         | `OnClose`   |
///
/// A service matches on it:
///
/// ```
/// use bytes::Bytes;
/// use getty::{Event, Request};
/// use std::convert::Infallible;
///
/// let svc = tower::service_fn(|req: Request<Bytes>| async move {
///     let reply = match req.event {
///         Event::Open => Some(Bytes::from_static(b"welcome")),
///         Event::Message(pkg) => Some(pkg),
///         Event::Tick => {
///             if req.session.active().elapsed().as_secs() > 60 {
///                 req.session.close();
///             }
///             None
///         }
///         _ => None,
///     };
///     Ok::<_, Infallible>(reply)
/// });
/// # let _ = svc;
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<P> {
    /// The session was opened.
    Open,
    /// A packet arrived.
    Message(P),
    /// The cron period elapsed.
    Tick,
    /// The session failed and is closing, or an error was reported with
    /// [`Session::report_error`](crate::Session::report_error) and it
    /// carries on; [`Session::is_closed`](crate::Session::is_closed) tells
    /// which.
    Error(Error),
    /// The session is closed; the socket already is.
    ///
    /// One exception to "exactly once": a service whose `poll_ready` fails
    /// or panics can take no more events, so its session ends without
    /// `Error` and `Close` (logged at error level); close callbacks still run.
    Close,
}

impl<P> Event<P> {
    /// The event's name, for logs and metrics: `"open"`, `"message"`, `"tick"`,
    /// `"error"` or `"close"`.
    ///
    /// ```
    /// assert_eq!(getty::Event::<()>::Tick.name(), "tick");
    /// ```
    pub fn name(&self) -> &'static str {
        match self {
            Event::Open => "open",
            Event::Message(_) => "message",
            Event::Tick => "tick",
            Event::Error(_) => "error",
            Event::Close => "close",
        }
    }
}

/// What a session's service is called with: the event and the session it
/// belongs to. `P` is the decoded packet type, `W` the type the session writes.
///
/// The service's response is any `IntoIterator<Item = W>` (`Option<W>`,
/// `Vec<W>`, ...): the packets to write back, in request order. An echo
/// server is a plain `service_fn`:
///
/// ```
/// use bytes::Bytes;
/// use getty::{Event, Request};
/// use std::convert::Infallible;
///
/// let echo = tower::service_fn(|req: Request<Bytes>| async move {
///     Ok::<_, Infallible>(req.into_message())
/// });
/// # let _ = echo;
/// ```
#[derive(Debug)]
pub struct Request<P, W = Bytes> {
    /// The session the event belongs to.
    pub session: Session<W>,
    /// What happened.
    pub event: Event<P>,
}

impl<P, W> Request<P, W> {
    /// Pairs an event with its session.
    pub fn new(session: Session<W>, event: Event<P>) -> Self {
        Request { session, event }
    }

    /// The packet, when the event is a message.
    pub fn message(&self) -> Option<&P> {
        match &self.event {
            Event::Message(p) => Some(p),
            _ => None,
        }
    }

    /// Takes the packet out, when the event is a message.
    pub fn into_message(self) -> Option<P> {
        match self.event {
            Event::Message(p) => Some(p),
            _ => None,
        }
    }
}
