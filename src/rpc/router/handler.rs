//! Handlers: async functions of a context and a typed argument, made
//! into the routes the router holds.

use std::{
    convert::Infallible,
    fmt,
    future::Future,
    marker::PhantomData,
    panic::AssertUnwindSafe,
    pin::Pin,
    sync::Arc,
    task::{ready, Context, Poll},
};

use bytes::Bytes;
use futures_util::{future::CatchUnwind, FutureExt};
use pin_project::pin_project;

use super::{CallCtx, Handle, PushCtx, ReplyCheck, RouteFuture};
use crate::rpc::{
    codec::{CodecId, Codecs, FromBody, IntoBody},
    session::Conn,
    session::ACCEPT_BODY_CODEC,
    Message, MessageType, Meta, ServiceMethod, Session, Status, XferPipe,
};

/// A handler's successful answer with reply settings: metadata, a codec,
/// more transfer filters (teleport's `ctx.SetMeta`, `SetBodyCodec`,
/// `AddXferPipe`). A handler can return the bare value instead.
///
/// ```
/// use getty::rpc::{codec::CodecId, CallCtx, Reply, Status};
///
/// async fn hello(_: CallCtx, name: String) -> Result<Reply<String>, Status> {
///     Ok(Reply::new(format!("hello {name}")).meta("served-by", "a").codec(CodecId::PLAIN))
/// }
/// # let _ = getty::rpc::Router::new().call("/hello", hello);
/// ```
#[derive(Debug, Clone)]
pub struct Reply<T> {
    value: T,
    meta: Meta,
    codec: Option<CodecId>,
    xfer: XferPipe,
}

impl<T> Reply<T> {
    /// A reply carrying `value`.
    pub fn new(value: T) -> Reply<T> {
        Reply {
            value,
            meta: Meta::new(),
            codec: None,
            xfer: XferPipe::new(),
        }
    }

    /// Adds a metadata pair to the reply.
    pub fn meta(mut self, key: impl Into<String>, value: impl Into<String>) -> Reply<T> {
        self.meta.add(key, value);
        self
    }

    /// Encodes the reply with `codec`, whatever the caller asked for.
    pub fn codec(mut self, codec: CodecId) -> Reply<T> {
        self.codec = Some(codec);
        self
    }

    /// Sends the reply through one more transfer filter, inside its call's.
    pub fn xfer(mut self, id: u8) -> Reply<T> {
        self.xfer.push(id);
        self
    }
}

/// What a call handler answers with: any [`IntoBody`] value, or a
/// [`Reply`] of one.
pub trait IntoReply {
    /// The value's type.
    type Body: IntoBody;
    /// The value with its reply settings.
    fn into_reply(self) -> Reply<Self::Body>;
}

impl<T: IntoBody> IntoReply for T {
    type Body = T;
    fn into_reply(self) -> Reply<T> {
        Reply::new(self)
    }
}

impl<T: IntoBody> IntoReply for Reply<T> {
    type Body = T;
    fn into_reply(self) -> Reply<T> {
        self
    }
}

/// An async function that handles calls: `async fn(CallCtx, A) ->
/// Result<R, Status>` with `A` a [`FromBody`] argument and `R` an
/// [`IntoReply`] answer. Implemented for every such function or closure.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a call handler",
    note = "a call handler is an `async fn(CallCtx, A) -> Result<R, Status>` (or a closure returning such a future) \
            that is `Clone + Send + Sync + 'static`; `A` is any serde type, `Raw` or `Proto<T>`, `R` any of those or a `Reply<_>`"
)]
pub trait CallHandler<A, R>: Clone + Send + Sync + 'static {
    /// The handler's future.
    type Future: Future<Output = Result<R, Status>> + Send + 'static;
    /// Handles one call.
    fn handle(&self, ctx: CallCtx, arg: A) -> Self::Future;
}

impl<F, Fut, A, R> CallHandler<A, R> for F
where
    F: Fn(CallCtx, A) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<R, Status>> + Send + 'static,
{
    type Future = Fut;
    fn handle(&self, ctx: CallCtx, arg: A) -> Fut {
        self(ctx, arg)
    }
}

/// An async function that handles pushes: `async fn(PushCtx, A) ->
/// Result<(), Status>`; an error is logged (a push has no reply).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a push handler",
    note = "a push handler is an `async fn(PushCtx, A) -> Result<(), Status>` that is `Clone + Send + Sync + 'static`"
)]
pub trait PushHandler<A>: Clone + Send + Sync + 'static {
    /// The handler's future.
    type Future: Future<Output = Result<(), Status>> + Send + 'static;
    /// Handles one push.
    fn handle(&self, ctx: PushCtx, arg: A) -> Self::Future;
}

impl<F, Fut, A> PushHandler<A> for F
where
    F: Fn(PushCtx, A) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), Status>> + Send + 'static,
{
    type Future = Fut;
    fn handle(&self, ctx: PushCtx, arg: A) -> Fut {
        self(ctx, arg)
    }
}

/// A call handler as a tower service of the router.
pub(crate) struct CallService<H, A, R> {
    handler: H,
    types: PhantomData<fn(A) -> R>,
}

impl<H: Clone, A, R> Clone for CallService<H, A, R> {
    fn clone(&self) -> Self {
        CallService {
            handler: self.handler.clone(),
            types: PhantomData,
        }
    }
}

impl<H, A, R> CallService<H, A, R> {
    pub(crate) fn new(handler: H) -> Self {
        CallService {
            handler,
            types: PhantomData,
        }
    }
}

impl<H, A, R> Handle for CallService<H, A, R>
where
    H: CallHandler<A, R>,
    A: FromBody + Send + 'static,
    R: IntoReply + Send + 'static,
{
    fn handle_message(
        &self,
        session: Session,
        conn: &Arc<Conn>,
        msg: &mut Message,
        check: ReplyCheck,
    ) -> RouteFuture {
        // What needs no waiting is done here, before the future is made:
        // the boxed future then holds only the handler's own and the
        // reply's shape, and a bad body is answered without one.
        let shape = ReplyShape::of(msg);
        let body = std::mem::take(&mut msg.body);
        let arg = match A::from_body(msg.body_codec, body, &conn.peer.codecs) {
            Ok(arg) => arg,
            Err(status) => {
                let pipe = shape.xfer.clone();
                let mut reply = shape.failed(status);
                check.apply(conn, &mut reply, pipe);
                return Box::pin(std::future::ready(Ok(Some(reply))));
            }
        };
        let ctx = CallCtx::take(session, msg);
        // Kept whole rather than cloning the codecs out of it: one
        // reference count per call instead of two.
        let conn = Arc::clone(conn);
        Box::pin(Answering {
            outcome: AssertUnwindSafe(self.handler.handle(ctx, arg)).catch_unwind(),
            shape: Some(shape),
            conn,
            check,
        })
    }
}

/// A call handler's future and what its reply needs: the reply's shape
/// and the connection whose codecs encode it. Written out rather than as
/// an `async` block, which would hold the handler's future twice (as
/// captured, and as awaited): it is boxed per call.
#[pin_project]
struct Answering<F> {
    #[pin]
    outcome: CatchUnwind<AssertUnwindSafe<F>>,
    /// Taken when the reply is made.
    shape: Option<ReplyShape>,
    conn: Arc<Conn>,
    check: ReplyCheck,
}

impl<F, R> Future for Answering<F>
where
    F: Future<Output = Result<R, Status>>,
    R: IntoReply,
{
    type Output = Result<Option<Message>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let outcome = ready!(this.outcome.poll(cx));
        // Polled again after its reply: nothing more to answer.
        let Some(shape) = this.shape.take() else {
            return Poll::Ready(Ok(None));
        };
        let call_pipe = shape.xfer.clone();
        let mut reply = match outcome {
            Ok(Ok(value)) => {
                let peer = &this.conn.peer;
                shape.answer(value.into_reply(), &peer.codecs, peer.default_codec)
            }
            Ok(Err(status)) => shape.failed(status),
            Err(panic) => shape.failed(panicked(&*panic)),
        };
        // Checked here, where the connection is at hand, so that the
        // session's dispatch need not hold it for every call (unless
        // layers around the handler may still change the reply).
        this.check.apply(this.conn, &mut reply, call_pipe);
        Poll::Ready(Ok(Some(reply)))
    }
}

pub(crate) struct PushService<H, A> {
    handler: H,
    types: PhantomData<fn(A)>,
}

impl<H: Clone, A> Clone for PushService<H, A> {
    fn clone(&self) -> Self {
        PushService {
            handler: self.handler.clone(),
            types: PhantomData,
        }
    }
}

impl<H, A> PushService<H, A> {
    pub(crate) fn new(handler: H) -> Self {
        PushService {
            handler,
            types: PhantomData,
        }
    }
}

impl<H, A> Handle for PushService<H, A>
where
    H: PushHandler<A>,
    A: FromBody + Send + 'static,
{
    fn handle_message(
        &self,
        session: Session,
        conn: &Arc<Conn>,
        msg: &mut Message,
        _: ReplyCheck,
    ) -> RouteFuture {
        let handler = self.handler.clone();
        // A cheap clone (it shares the frame), kept for the log.
        let method = msg.service_method.clone();
        let body = std::mem::take(&mut msg.body);
        let arg = A::from_body(msg.body_codec, body, &conn.peer.codecs);
        let ctx = PushCtx::take(session, msg);
        Box::pin(async move {
            let outcome = match arg {
                Ok(arg) => AssertUnwindSafe(handler.handle(ctx, arg))
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|panic| Err(panicked(&*panic))),
                Err(status) => Err(status),
            };
            if let Err(status) = outcome {
                tracing::warn!(service_method = %method, %status, "push handler failed");
            }
            Ok(None)
        })
    }
}

/// The status of a handler that panicked: 500, naming the panic.
fn panicked(panic: &(dyn std::any::Any + Send)) -> Status {
    Status::framework_with(
        Status::CODE_INTERNAL_SERVER_ERROR,
        format!("handler panicked: {}", crate::error::panic_message(panic)),
    )
}

/// What a reply to a call keeps of the call: its seq, its filters, the
/// codec to answer in.
pub(crate) struct ReplyShape {
    seq: i32,
    xfer: XferPipe,
    /// The call's codec.
    codec: CodecId,
    /// What its `X-Accept-Body-Codec` asked for (1–3 digits, not 0);
    /// honoured when the codec is known.
    accept: Option<CodecId>,
}

impl fmt::Debug for ReplyShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplyShape")
            .field("seq", &self.seq)
            .field("codec", &self.codec)
            .finish()
    }
}

impl ReplyShape {
    /// The shape of the reply to `call`.
    pub(crate) fn of(call: &Message) -> ReplyShape {
        let accept = call
            .meta
            .get(ACCEPT_BODY_CODEC)
            .filter(|v| (1..=3).contains(&v.len()))
            .and_then(|v| v.parse::<u8>().ok())
            .map(CodecId)
            .filter(|c| *c != CodecId::NONE);
        ReplyShape {
            seq: call.seq,
            xfer: call.xfer_pipe.clone(),
            codec: call.body_codec,
            accept,
        }
    }

    /// A failed reply: the status, codec 0, no body.
    pub(crate) fn failed(self, status: Status) -> Message {
        self.reply(status, Meta::new(), CodecId::NONE, Bytes::new())
    }

    /// The reply, made in one go (each `Message::with_*` moves the whole
    /// message and drops the field it replaces).
    fn reply(self, status: Status, meta: Meta, body_codec: CodecId, body: Bytes) -> Message {
        Message {
            seq: self.seq,
            mtype: MessageType::Reply,
            service_method: ServiceMethod::new(),
            status,
            meta,
            body_codec,
            body,
            xfer_pipe: self.xfer,
        }
    }

    /// A successful reply, or a 500 when the value does not encode. Its
    /// codec: the handler's, else a known accepted one, else the call's,
    /// else `default_codec` (a call without a body).
    pub(crate) fn answer<T: IntoBody>(
        mut self,
        reply: Reply<T>,
        codecs: &Codecs,
        default_codec: CodecId,
    ) -> Message {
        let accepted = self.accept.filter(|c| codecs.contains(*c));
        let codec = match reply.codec.or(accepted) {
            Some(codec) => codec,
            None if self.codec == CodecId::NONE => default_codec,
            None => self.codec,
        };
        for id in reply.xfer.ids() {
            self.xfer.push(*id);
        }
        match reply.value.into_body(codec, codecs) {
            Ok((codec, body)) => self.reply(Status::OK, reply.meta, codec, body),
            Err(status) => self.failed(status),
        }
    }
}
