//! Tracing for a session's stack: a span per event, warnings about slow
//! handlers (teleport's slow-comet threshold) and optional packet logging.
//!
//! # Spans
//!
//! getty's server and client already run each session inside a span
//! `session{id, peer, transport}` (info level). [`Trace`] adds a span per
//! event inside it, `event{name}` at debug level, and runs the inner
//! service's `call` and polls its future inside that span, so whatever the
//! handler logs reads `session{id=7 ...}:event{name="message"}: ...`.
//!
//! A session made another way (such as [`Session::new`](getty::Session::new)
//! in tests, or a custom transport) has no such span. When the current span
//! at `call` is not a getty `session` span (named `session`, with an `id`
//! field), [`Trace`] opens one itself on the session's first event (usually
//! `Open`), with the same fields (`transport` is `"detached"` for a
//! [detached](getty::EndpointKind::Detached) session), keeps it for the
//! session's later events and lets it go after `Close`.
//!
//! # Slow handlers
//!
//! With [`TraceLayer::slow_threshold`], an event whose handling took longer
//! logs one `warn` line when it completes: `slow handler`, with fields
//! `event` (its [name](getty::Event::name)), `elapsed`, `threshold` and, for
//! a message, `packet` (a summary). The time runs from `call` (so work done
//! synchronously inside `call`, as [`ListenerService`](getty::ListenerService)
//! does, counts) to the completion of the response future, and includes any
//! time the inner future waits. A handling that never completes, or is
//! cancelled, logs nothing: bound it with a timeout layer. Time is read with
//! [`tokio::time::Instant`], so a paused test clock applies.
//!
//! # Packet summaries
//!
//! Packets are summarised by their `Debug` rendering, so the service needs
//! `P: Debug` (bytes, strings and derived types all qualify), cut to a byte
//! budget on a character boundary and marked `...` when cut. Formatting
//! stops at the budget, so a 1 MiB packet costs no more than a small one.
//! This was chosen over a summary closure for a simpler type (`Trace<S>`
//! stays one type parameter) and because a derived `Debug` is what a log
//! reader wants; for a packet whose `Debug` is unhelpful or sensitive,
//! implement `Debug` by hand on a newtype. A summary is made for every
//! message while a slow threshold is set and warnings are enabled (the
//! packet is gone into the handler by the time it is known to be slow), so
//! keep [`TraceLayer::summary_bytes`] small.
//!
//! [`TraceLayer::log_packets`] logs each received packet at debug level
//! (`packet received`, field `packet`) inside its event span, cut to its
//! own budget. Responses are not logged.
//!
//! Every line and span uses the target `getty_layers::trace`, e.g.
//! `RUST_LOG=getty_layers::trace=debug`.
//!
//! ```
//! use bytes::Bytes;
//! use getty::{BoxError, Event, Request};
//! use getty_layers::trace::TraceLayer;
//! use std::time::Duration;
//! use tower::ServiceBuilder;
//!
//! let stack = ServiceBuilder::new()
//!     .layer(TraceLayer::new().slow_threshold(Duration::from_millis(500)))
//!     .service_fn(|req: Request<Bytes>| async move {
//!         if let Event::Message(pkg) = &req.event {
//!             // Logged as `session{id=.. peer=.. transport=..}:event{name="message"}: ...`
//!             tracing::info!(len = pkg.len(), "handling");
//!         }
//!         Ok::<_, BoxError>(req.into_message())
//!     });
//! # let _ = stack;
//! ```

mod future;
mod layer;
mod summary;

use std::{
    fmt,
    task::{Context, Poll},
};

use getty::{EndpointKind, Event, Request, Session};
use tokio::time::Instant;
use tower::Service;
use tracing::Span;

pub use self::{future::ResponseFuture, layer::TraceLayer};
use self::{future::Slow, summary::summarize};

/// The target of every span and line this layer makes.
const TARGET: &str = "getty_layers::trace";

/// A session's stack with tracing: made by [`TraceLayer`], or by
/// [`Trace::new`] with the defaults (spans only).
///
/// ```
/// use getty::{Addr, EndpointKind, Event, Request, Session, SessionConfig};
/// use getty_layers::trace::Trace;
/// use tower::{service_fn, Service, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), getty::BoxError> {
/// let mut svc = Trace::new(service_fn(|req: Request<u32, u32>| async move {
///     tracing::info!("inside event{{name=\"message\"}}, inside session{{id=..}}");
///     Ok::<_, getty::BoxError>(req.into_message())
/// }));
/// let session = Session::new(EndpointKind::Detached, Addr::Unknown, Addr::Unknown, SessionConfig::default());
/// let answer = svc.ready().await?.call(Request::new(session, Event::Message(7))).await?;
/// assert_eq!(answer, Some(7));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Trace<S> {
    inner: S,
    settings: TraceLayer,
    /// The session span this layer opened, for a session that had none.
    own: Option<(u64, Span)>,
}

impl<S> Trace<S> {
    /// Wraps `inner` with spans per event and nothing else; configure
    /// warnings and packet logging on [`TraceLayer`].
    pub fn new(inner: S) -> Self {
        Trace::with_settings(inner, TraceLayer::new())
    }

    pub(super) fn with_settings(inner: S, settings: TraceLayer) -> Self {
        Trace {
            inner,
            settings,
            own: None,
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The span to open event spans in: `None` when the current span is
    /// getty's session span already, else the one this layer opened.
    fn session_span<W>(&mut self, session: &Session<W>) -> Option<&Span> {
        let in_session = Span::current()
            .metadata()
            .is_some_and(|m| m.name() == "session" && m.fields().field("id").is_some());
        if in_session {
            return None;
        }
        if !matches!(&self.own, Some((id, _)) if *id == session.id()) {
            let span = tracing::info_span!(
                target: TARGET,
                "session",
                id = session.id(),
                peer = %session.peer_addr(),
                transport = transport(session.kind()),
            );
            self.own = Some((session.id(), span));
        }
        self.own.as_ref().map(|(_, span)| span)
    }
}

/// The `transport` field of a session span, as getty's server and client
/// write it.
fn transport(kind: EndpointKind) -> &'static str {
    match kind {
        EndpointKind::TcpServer | EndpointKind::TcpClient => "tcp",
        EndpointKind::Detached => "detached",
        _ => "other",
    }
}

impl<S: fmt::Debug> fmt::Debug for Trace<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Trace")
            .field("inner", &self.inner)
            .field("settings", &self.settings)
            .finish()
    }
}

impl<S, P, W> Service<Request<P, W>> for Trace<S>
where
    S: Service<Request<P, W>>,
    P: fmt::Debug,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<P, W>) -> Self::Future {
        let settings = self.settings;
        let event = req.event.name();
        let closing = matches!(req.event, Event::Close);
        let span = match self.session_span(&req.session) {
            Some(parent) => {
                tracing::debug_span!(target: TARGET, parent: parent, "event", name = event)
            }
            None => tracing::debug_span!(target: TARGET, "event", name = event),
        };
        let mut packet = None;
        if let Event::Message(pkg) = &req.event {
            if let Some(max) = settings.log_packets {
                span.in_scope(|| {
                    // The summary is only made when the line is enabled.
                    tracing::debug!(target: TARGET, packet = %summarize(pkg, max), "packet received")
                });
            }
            // Summarising costs a formatting pass per message (and an
            // allocation); `summary_bytes(0)` turns it off.
            if settings.slow_threshold.is_some()
                && settings.summary_bytes > 0
                && tracing::enabled!(target: TARGET, tracing::Level::WARN)
            {
                packet = Some(summarize(pkg, settings.summary_bytes));
            }
        }
        let slow = settings.slow_threshold.map(|threshold| Slow {
            threshold,
            event,
            packet,
        });
        let started = Instant::now();
        let inner = span.in_scope(|| self.inner.call(req));
        if closing {
            // The event span keeps it open until the close is handled.
            self.own = None;
        }
        ResponseFuture::new(inner, span, started, slow)
    }
}
