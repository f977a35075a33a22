//! [`TaskPoolLayer`]: puts a session's stack under a shared [`TaskPool`].

use tower_layer::Layer;

use super::{TaskPool, TaskPoolService};

/// Puts each session's stack under a shared [`TaskPool`] (getty's
/// `WithServerTaskPool`); apply it in the new-session callback with a clone
/// of one pool, so every session of the server shares its permits.
///
/// By default an event waits for a permit (the session stops reading
/// meanwhile: backpressure). With [`shed_when_full`](Self::shed_when_full)
/// a message that finds the pool full is not handled instead.
///
/// ```no_run
/// use bytes::Bytes;
/// use getty::{codec::LengthCodec, new_session_fn, BoxError, Request, Server, Session, SessionConfig};
/// use getty_layers::pool::{TaskPool, TaskPoolLayer};
/// use tower::ServiceBuilder;
///
/// # async fn demo() -> std::io::Result<()> {
/// let pool = TaskPool::new(8); // at most 8 handlers at once, all sessions together
/// let server = Server::builder()
///     // Pipelining: a session may have 4 events in the pool at once,
///     // answered in request order all the same.
///     .session_config(SessionConfig::default().max_in_flight(4))
///     .bind("127.0.0.1:0")
///     .await?;
/// let per_session = pool.clone();
/// let handle = server.serve(
///     LengthCodec::new(),
///     new_session_fn(move |_: &Session| {
///         Ok::<_, BoxError>(
///             ServiceBuilder::new()
///                 .layer(TaskPoolLayer::new(per_session.clone()))
///                 .service_fn(|req: Request<Bytes>| async move {
///                     Ok::<_, BoxError>(req.into_message())
///                 }),
///         )
///     }),
/// );
/// println!("{} of {} permits free", pool.available(), pool.capacity());
/// handle.shutdown(std::time::Duration::from_secs(5)).await;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct TaskPoolLayer {
    pool: TaskPool,
    shed: bool,
}

impl TaskPoolLayer {
    /// A layer whose services take their permits from `pool`.
    pub fn new(pool: TaskPool) -> Self {
        TaskPoolLayer { pool, shed: false }
    }

    /// Load shedding: `poll_ready` never waits for the pool. A message that
    /// finds no permit free is not handled: the session gets
    /// [`PoolFullError`](super::PoolFullError) through
    /// [`Session::report_error`](getty::Session::report_error) (an
    /// [`Event::Error`](getty::Event::Error) passes its stack, and it
    /// carries on), the packet is dropped and the response is empty
    /// (`S::Response::default()`). Other events (`Open`, `Tick`, `Error`,
    /// `Close`) are never shed: with no permit free they run without one.
    ///
    /// ```
    /// use getty_layers::pool::{TaskPool, TaskPoolLayer};
    ///
    /// let layer = TaskPoolLayer::new(TaskPool::new(16)).shed_when_full();
    /// assert!(layer.sheds());
    /// ```
    pub fn shed_when_full(mut self) -> Self {
        self.shed = true;
        self
    }

    /// Whether the layer sheds messages when the pool is full.
    pub fn sheds(&self) -> bool {
        self.shed
    }

    /// The pool the layer's services share.
    pub fn pool(&self) -> &TaskPool {
        &self.pool
    }
}

impl<S> Layer<S> for TaskPoolLayer {
    type Service = TaskPoolService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        let svc = TaskPoolService::new(inner, self.pool.clone());
        if self.shed {
            svc.shed_when_full()
        } else {
            svc
        }
    }
}
