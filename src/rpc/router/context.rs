//! The contexts handlers get: [`CallCtx`] and [`PushCtx`] (teleport's).

use std::fmt;

use crate::{
    rpc::{
        codec::CodecId, codec::IntoBody, Message, Meta, PushBuilder, ServiceMethod, Session,
        XferPipe,
    },
    Addr,
};

/// The metadata key a proxy sets to the original client's address.
const REAL_IP: &str = "X-Real-IP";

/// What every handler context knows of its message.
#[derive(Clone)]
struct Input {
    session: Session,
    seq: i32,
    service_method: ServiceMethod,
    meta: Meta,
    body_codec: CodecId,
    xfer_pipe: XferPipe,
}

impl Input {
    fn take(session: Session, msg: &mut Message) -> Input {
        Input {
            session,
            seq: msg.seq,
            service_method: std::mem::take(&mut msg.service_method),
            meta: std::mem::take(&mut msg.meta),
            body_codec: msg.body_codec,
            xfer_pipe: std::mem::take(&mut msg.xfer_pipe),
        }
    }
}

macro_rules! input_accessors {
    () => {
        /// The session the message came on; push to it, or read its
        /// attributes through [`Session::inner`].
        pub fn session(&self) -> &Session {
            &self.input.session
        }

        /// The message's seq.
        pub fn seq(&self) -> i32 {
            self.input.seq
        }

        /// The service method the message named (`/home/echo`).
        pub fn service_method(&self) -> &str {
            &self.input.service_method
        }

        /// The message's metadata.
        pub fn meta(&self) -> &Meta {
            &self.input.meta
        }

        /// The first value of a metadata key (teleport's `PeekMeta`).
        pub fn peek_meta(&self, key: &str) -> Option<&str> {
            self.input.meta.get(key)
        }

        /// The codec the body came in.
        pub fn body_codec(&self) -> CodecId {
            self.input.body_codec
        }

        /// The transfer filters the message came through.
        pub fn xfer_pipe(&self) -> &XferPipe {
            &self.input.xfer_pipe
        }

        /// The peer's address (teleport's `IP`).
        pub fn peer_addr(&self) -> Addr {
            self.input.session.peer_addr()
        }

        /// The original client's address a proxy put in `X-Real-IP`, else
        /// the peer's address (teleport's `RealIP`).
        pub fn real_ip(&self) -> String {
            match self.input.meta.get(REAL_IP) {
                Some(ip) if !ip.is_empty() => ip.to_owned(),
                _ => self.peer_addr().to_string(),
            }
        }

        /// Pushes to the session the message came on.
        pub fn push<A: IntoBody>(
            &self,
            service_method: impl Into<ServiceMethod>,
            arg: A,
        ) -> PushBuilder<A> {
            self.input.session.push(service_method, arg)
        }
    };
}

/// What a call handler knows of its call (teleport's `CallCtx`).
///
/// ```
/// use getty::rpc::{CallCtx, Status};
///
/// async fn whoami(ctx: CallCtx, _: ()) -> Result<String, Status> {
///     Ok(format!("{} from {} (seq {})", ctx.service_method(), ctx.real_ip(), ctx.seq()))
/// }
/// let router = getty::rpc::Router::new().call("/whoami", whoami);
/// # let _ = router;
/// ```
#[derive(Clone)]
pub struct CallCtx {
    input: Input,
}

impl CallCtx {
    pub(crate) fn take(session: Session, msg: &mut Message) -> CallCtx {
        CallCtx {
            input: Input::take(session, msg),
        }
    }

    input_accessors!();
}

/// What a push handler knows of its push (teleport's `PushCtx`).
///
/// ```
/// use getty::rpc::{PushCtx, Status};
///
/// async fn note(ctx: PushCtx, text: String) -> Result<(), Status> {
///     tracing::info!(from = %ctx.peer_addr(), "{} says {text}", ctx.service_method());
///     Ok(())
/// }
/// let router = getty::rpc::Router::new().push("/note", note);
/// # let _ = router;
/// ```
#[derive(Clone)]
pub struct PushCtx {
    input: Input,
}

impl PushCtx {
    pub(crate) fn take(session: Session, msg: &mut Message) -> PushCtx {
        PushCtx {
            input: Input::take(session, msg),
        }
    }

    input_accessors!();
}

impl fmt::Debug for CallCtx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallCtx")
            .field("seq", &self.input.seq)
            .field("service_method", &self.input.service_method)
            .field("meta", &self.input.meta)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for PushCtx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PushCtx")
            .field("seq", &self.input.seq)
            .field("service_method", &self.input.service_method)
            .field("meta", &self.input.meta)
            .finish_non_exhaustive()
    }
}
