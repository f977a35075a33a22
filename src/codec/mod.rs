//! Codecs: bytes into packets and back.
//!
//! Any [`tokio_util::codec`] `Decoder` + `Encoder<W>` works; tokio-util's
//! own codecs and traits are re-exported here. A server or
//! client makes one codec per session through [`MakeCodec`]:
//!
//! - any codec value that is `Clone` (`LinesCodec::new()`,
//!   `LengthDelimitedCodec::new()`, `BytesCodec::new()`, yours): each
//!   session gets a clone;
//! - [`per_session`]`(|session| codec)`: a closure that reads the session
//!   (its `max_packet_len`, its attributes) and makes its codec;
//! - the two built-in codecs:
//!   - [`LengthCodec`]: a 1, 2, 4 or 8-byte length prefix, either byte
//!     order, the maximum checked before anything is allocated; each session
//!     gets a copy limited to its own `max_packet_len`;
//!   - [`ReadWriterCodec`]: getty-style package handlers ([`ReadWriter`]).
//!
//! ```no_run
//! use getty::{codec::per_session, new_session_fn, Request, Server, Session};
//! use std::convert::Infallible;
//! use tokio_util::codec::LinesCodec;
//!
//! # async fn demo() -> std::io::Result<()> {
//! let echo = || {
//!     new_session_fn(|_: &Session<String>| {
//!         Ok::<_, Infallible>(getty::service_fn(|req: Request<String, String>| async move {
//!             Ok::<_, Infallible>(req.into_message())
//!         }))
//!     })
//! };
//! // A codec value: every session gets a clone.
//! let a = Server::builder().bind("127.0.0.1:0").await?.serve(LinesCodec::new(), echo());
//! // A closure: every session gets a codec made from its settings.
//! let b = Server::builder().bind("127.0.0.1:0").await?.serve(
//!     per_session(|s: &Session<String>| LinesCodec::new_with_max_length(s.max_packet_len())),
//!     echo(),
//! );
//! # Ok(()) }
//! ```

mod length;
mod read_writer;
mod too_large;

pub use self::length::{LengthCodec, LengthCodecBuilder, LengthCodecError};
pub use self::read_writer::{ReadWriter, ReadWriterCodec, ReadWriterError, SessionCodec};
pub use self::too_large::PacketTooLarge;
// tokio-util's codecs, so that they need no dependency of their own.
#[doc(no_inline)]
pub use tokio_util::codec::{
    AnyDelimiterCodec, BytesCodec, Decoder, Encoder, LengthDelimitedCodec, LinesCodec,
    LinesCodecError,
};

use std::{any::Any, fmt};

use crate::{BoxError, Session};

/// Makes the codec of each new session. It runs after the new-session
/// callback, so settings made there (such as
/// [`Session::set_max_packet_len`]) are visible.
///
/// Implemented for every `Clone` codec (each session gets a clone), for
/// [`per_session`] closures, and for [`ReadWriterCodec`].
///
/// ```
/// use getty::{codec::{per_session, MakeCodec}, Session};
/// use tokio_util::codec::{LengthDelimitedCodec, LinesCodec};
///
/// fn takes<M: MakeCodec<W>, W>(_: M) {}
/// takes::<_, String>(LinesCodec::new());
/// takes::<_, bytes::Bytes>(LengthDelimitedCodec::new());
/// takes(per_session(|session: &Session<String>| {
///     LinesCodec::new_with_max_length(session.max_packet_len())
/// }));
/// ```
///
/// A value that is neither says so:
///
/// ```compile_fail,E0277
/// use getty::{codec::MakeCodec, Session};
/// use tokio_util::codec::LinesCodec;
///
/// fn takes<M: MakeCodec<String>>(_: M) {}
/// // error[E0277]: `{closure}` cannot make the codec of a session with outgoing packets of type `String`
/// //   = note: a closure `|session| codec` must be wrapped: `getty::codec::per_session(|session| codec)`
/// takes(|_: &Session<String>| LinesCodec::new());
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot make the codec of a session with outgoing packets of type `{W}`",
    label = "not a codec for packets of type `{W}`",
    note = "give a `tokio_util::codec` value that is `Decoder + Encoder<{W}> + Clone + Send + Sync` \
            (e.g. `LengthDelimitedCodec::new()`, `LinesCodec::new()`, `getty::codec::LengthCodec::new()`)",
    note = "a closure `|session| codec` must be wrapped: `getty::codec::per_session(|session| codec)`",
    note = "the outgoing packet type `{W}` is the one the session's service answers with; the codec's \
            `Encoder` must take it and its `Decoder::Item` must be what the service takes"
)]
pub trait MakeCodec<W>: Send + Sync + 'static {
    /// The codec a session gets.
    type Codec: Decoder<Error = Self::Error> + Encoder<W, Error = Self::Error> + Send + 'static;
    /// The codec's error.
    type Error: Into<BoxError> + From<std::io::Error> + 'static;

    /// Makes the codec for `session`.
    fn make_codec(&self, session: &Session<W>) -> Self::Codec;
}

/// A [`MakeCodec`] whose codec decodes packets of type `R`: the bound
/// [`Server::serve`](crate::Server::serve) and
/// [`ClientBuilder::connect`](crate::ClientBuilder::connect) put on their
/// codec. Implemented for every `MakeCodec`; never implement it by hand.
///
/// ```
/// use getty::codec::{LengthCodec, MakeCodecFor};
/// use tokio_util::codec::{LengthDelimitedCodec, LinesCodec};
///
/// fn takes<M: MakeCodecFor<R, W>, R, W>(_: M) {}
/// takes::<_, bytes::Bytes, bytes::Bytes>(LengthCodec::new());
/// takes::<_, bytes::BytesMut, bytes::Bytes>(LengthDelimitedCodec::new());
/// takes::<_, String, String>(LinesCodec::new());
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot make the codec of a session with incoming packets of type `{R}` and outgoing packets of type `{W}`",
    label = "not a codec for these packets",
    note = "give a `tokio_util::codec` value that is `Decoder + Encoder<{W}> + Clone + Send + Sync` \
            (e.g. `LengthDelimitedCodec::new()`, `LinesCodec::new()`, `getty::codec::LengthCodec::new()`)",
    note = "a closure `|session| codec` must be wrapped: `getty::codec::per_session(|session| codec)`",
    note = "the codec decides the packet types: `{R}` is its `Decoder::Item`, `{W}` what its `Encoder` takes; \
            the session's service (or `EventListener<{R}, {W}>`) must take and answer those"
)]
pub trait MakeCodecFor<R, W>: MakeCodec<W, Codec: Decoder<Item = R>> {}

impl<M, R, W> MakeCodecFor<R, W> for M
where
    M: MakeCodec<W>,
    M::Codec: Decoder<Item = R>,
{
}

/// Every `Clone` codec: each session gets a clone. A [`LengthCodec`] clone
/// also takes the session's `max_packet_len` (the smaller of the two when
/// the codec's builder set one), so there is one limit to set.
impl<W, C> MakeCodec<W> for C
where
    C: Decoder + Encoder<W, Error = <C as Decoder>::Error> + Clone + Send + Sync + 'static,
    <C as Decoder>::Error: Into<BoxError> + 'static,
{
    type Codec = C;
    type Error = <C as Decoder>::Error;

    fn make_codec(&self, session: &Session<W>) -> C {
        let mut codec = self.clone();
        // Resolved at compile time: a no-op for every other codec.
        if let Some(length) = (&mut codec as &mut dyn Any).downcast_mut::<LengthCodec>() {
            length.limit_to(session.max_packet_len());
        }
        codec
    }
}

/// A codec made per session by a closure: see [`per_session`].
///
/// ```
/// use getty::{codec::{per_session, MakeCodec, PerSession}, Session};
/// use tokio_util::codec::LinesCodec;
///
/// let make: PerSession<_> = per_session(|_: &Session<String>| LinesCodec::new());
/// fn takes<M: MakeCodec<String>>(_: M) {}
/// takes(make);
/// ```
#[derive(Clone, Copy)]
pub struct PerSession<F> {
    make: F,
}

impl<F> fmt::Debug for PerSession<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PerSession").finish_non_exhaustive()
    }
}

/// Makes each session's codec with `make`, which can read the session
/// (its [`max_packet_len`](Session::max_packet_len), its attributes, its
/// peer address).
///
/// A codec that needs nothing from the session is simpler given as a
/// value: every `Clone` codec is a [`MakeCodec`].
///
/// ```
/// use getty::{codec::{per_session, MakeCodec}, Addr, EndpointKind, Session, SessionConfig};
/// use tokio_util::codec::LinesCodec;
///
/// let make = per_session(|s: &Session<String>| LinesCodec::new_with_max_length(s.max_packet_len()));
/// let session = Session::new(
///     EndpointKind::Detached,
///     Addr::Unknown,
///     Addr::Unknown,
///     SessionConfig::default().max_packet_len(80),
/// );
/// assert_eq!(make.make_codec(&session).max_length(), 80);
/// ```
pub fn per_session<W, F, C>(make: F) -> PerSession<F>
where
    F: Fn(&Session<W>) -> C,
{
    PerSession { make }
}

impl<W, F, C> MakeCodec<W> for PerSession<F>
where
    F: Fn(&Session<W>) -> C + Send + Sync + 'static,
    C: Decoder + Encoder<W, Error = <C as Decoder>::Error> + Send + 'static,
    <C as Decoder>::Error: Into<BoxError> + 'static,
{
    type Codec = C;
    type Error = <C as Decoder>::Error;

    fn make_codec(&self, session: &Session<W>) -> C {
        (self.make)(session)
    }
}
