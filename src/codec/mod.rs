//! Codecs: bytes into packets and back.
//!
//! Any [`tokio_util::codec`] `Decoder` + `Encoder<W>` works. A server or
//! client makes one codec per session through [`MakeCodec`], so a codec can
//! read the session (its `max_packet_len`, its attributes). A closure
//! `|session| codec` is a `MakeCodec`, and so are the two built-in codecs:
//!
//! - [`LengthCodec`]: a 1, 2, 4 or 8-byte length prefix, either byte order,
//!   the maximum checked before anything is allocated.
//! - [`ReadWriterCodec`]: getty-style package handlers ([`ReadWriter`]).

mod length;
mod read_writer;
mod too_large;

pub use self::length::{LengthCodec, LengthCodecBuilder, LengthCodecError};
pub use self::read_writer::{ReadWriter, ReadWriterCodec, ReadWriterError, SessionCodec};
pub use self::too_large::PacketTooLarge;

use tokio_util::codec::{Decoder, Encoder};

use crate::{BoxError, Session};

/// Makes the codec of each new session. It runs after the new-session
/// callback, so settings made there (such as
/// [`Session::set_max_packet_len`]) are visible.
///
/// ```
/// use getty::{codec::MakeCodec, Session};
/// use tokio_util::codec::LinesCodec;
///
/// fn takes<M: MakeCodec<String>>(_: M) {}
/// takes(|session: &Session<String>| LinesCodec::new_with_max_length(session.max_packet_len()));
/// ```
pub trait MakeCodec<W>: Send + Sync + 'static {
    /// The codec a session gets.
    type Codec: Decoder<Error = Self::Error> + Encoder<W, Error = Self::Error> + Send + 'static;
    /// The codec's error.
    type Error: Into<BoxError> + From<std::io::Error> + 'static;

    /// Makes the codec for `session`.
    fn make_codec(&self, session: &Session<W>) -> Self::Codec;
}

impl<W, F, C> MakeCodec<W> for F
where
    F: Fn(&Session<W>) -> C + Send + Sync + 'static,
    C: Decoder + Encoder<W, Error = <C as Decoder>::Error> + Send + 'static,
    <C as Decoder>::Error: Into<BoxError> + 'static,
{
    type Codec = C;
    type Error = <C as Decoder>::Error;

    fn make_codec(&self, session: &Session<W>) -> C {
        self(session)
    }
}
