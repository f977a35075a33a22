//! getty-style package handlers as a codec.

use std::{fmt, io, marker::PhantomData, sync::Arc};

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::MakeCodec;
use crate::{BoxError, Session};

/// getty's `ReadWriter` (package handler): turns bytes into packets and
/// packets into bytes, seeing the session.
///
/// `read` gets everything buffered so far and returns `Ok(None)` when a
/// whole packet is not there yet, or the packet and how many bytes it used.
/// One handler serves every session of a server, as in getty.
///
/// ```
/// use bytes::Bytes;
/// use getty::{codec::ReadWriter, BoxError, Session};
///
/// /// Lines ending in '\n'.
/// struct Lines;
///
/// impl ReadWriter<String> for Lines {
///     type Packet = String;
///
///     fn read(&self, _: &Session<String>, data: &[u8]) -> Result<Option<(String, usize)>, BoxError> {
///         match data.iter().position(|&b| b == b'\n') {
///             Some(i) => Ok(Some((std::str::from_utf8(&data[..i])?.to_owned(), i + 1))),
///             None => Ok(None),
///         }
///     }
///
///     fn write(&self, _: &Session<String>, pkg: String) -> Result<Bytes, BoxError> {
///         Ok(Bytes::from(pkg + "\n"))
///     }
/// }
/// ```
pub trait ReadWriter<W = Bytes>: Send + Sync + 'static {
    /// The decoded packet.
    type Packet;

    /// Decodes one packet from the front of `data` (getty's `Read`).
    ///
    /// # Errors
    /// Any error closes the session with an `Error` event naming it.
    fn read(
        &self,
        session: &Session<W>,
        data: &[u8],
    ) -> Result<Option<(Self::Packet, usize)>, BoxError>;

    /// Encodes one packet (getty's `Write`).
    ///
    /// # Errors
    /// Any error closes the session with an `Error` event naming it.
    fn write(&self, session: &Session<W>, pkg: W) -> Result<Bytes, BoxError>;
}

/// The error of a [`SessionCodec`].
///
/// ```
/// use getty::codec::ReadWriterError;
///
/// let e = ReadWriterError::BadLength { used: 0, available: 10 };
/// assert_eq!(e.to_string(), "package handler used 0 of 10 bytes for one packet");
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum ReadWriterError {
    /// The handler's `read` failed.
    Read(BoxError),
    /// The handler's `write` failed.
    Write(BoxError),
    /// The handler claimed to use `used` bytes of `available` (zero, or
    /// more than it was given): a bug in the handler.
    BadLength {
        /// What `read` returned.
        used: usize,
        /// What `read` was given.
        available: usize,
    },
    /// The underlying transport failed.
    Io(io::Error),
}

impl fmt::Display for ReadWriterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadWriterError::Read(e) => write!(f, "package handler could not read: {e}"),
            ReadWriterError::Write(e) => write!(f, "package handler could not write: {e}"),
            ReadWriterError::BadLength { used, available } => write!(
                f,
                "package handler used {used} of {available} bytes for one packet"
            ),
            ReadWriterError::Io(e) => write!(f, "i/o error: {e}"),
        }
    }
}

impl std::error::Error for ReadWriterError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReadWriterError::Read(e) | ReadWriterError::Write(e) => Some(&**e),
            ReadWriterError::Io(e) => Some(e),
            ReadWriterError::BadLength { .. } => None,
        }
    }
}

impl From<io::Error> for ReadWriterError {
    fn from(e: io::Error) -> Self {
        ReadWriterError::Io(e)
    }
}

/// A [`ReadWriter`] made into a [`MakeCodec`]: give it to a server or client.
///
/// ```
/// # use bytes::Bytes;
/// # use getty::{codec::{ReadWriter, ReadWriterCodec}, BoxError, Session};
/// # struct Raw;
/// # impl ReadWriter for Raw {
/// #     type Packet = Bytes;
/// #     fn read(&self, _: &Session, d: &[u8]) -> Result<Option<(Bytes, usize)>, BoxError> {
/// #         Ok((!d.is_empty()).then(|| (Bytes::copy_from_slice(d), d.len())))
/// #     }
/// #     fn write(&self, _: &Session, p: Bytes) -> Result<Bytes, BoxError> { Ok(p) }
/// # }
/// let codec = ReadWriterCodec::new(Raw);
/// # let _ = codec;
/// ```
pub struct ReadWriterCodec<H> {
    handler: Arc<H>,
}

impl<H> ReadWriterCodec<H> {
    /// Wraps a handler shared by every session.
    pub fn new(handler: H) -> Self {
        ReadWriterCodec {
            handler: Arc::new(handler),
        }
    }
}

impl<H> Clone for ReadWriterCodec<H> {
    fn clone(&self) -> Self {
        ReadWriterCodec {
            handler: Arc::clone(&self.handler),
        }
    }
}

impl<H> fmt::Debug for ReadWriterCodec<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadWriterCodec").finish_non_exhaustive()
    }
}

impl<H, W> MakeCodec<W> for ReadWriterCodec<H>
where
    H: ReadWriter<W>,
    H::Packet: 'static,
    W: Send + 'static,
{
    type Codec = SessionCodec<H, W>;
    type Error = ReadWriterError;

    fn make_codec(&self, session: &Session<W>) -> SessionCodec<H, W> {
        SessionCodec {
            handler: Arc::clone(&self.handler),
            session: session.clone(),
            _packet: PhantomData,
        }
    }
}

/// The codec one session gets from a [`ReadWriterCodec`]: it hands the
/// session to the handler's `read` and `write`.
///
/// ```
/// use bytes::{Bytes, BytesMut};
/// use getty::{codec::{MakeCodec, ReadWriter, ReadWriterCodec}, Addr, BoxError, EndpointKind, Session, SessionConfig};
/// use tokio_util::codec::Decoder;
///
/// struct Bytewise;
/// impl ReadWriter for Bytewise {
///     type Packet = u8;
///     fn read(&self, _: &Session, d: &[u8]) -> Result<Option<(u8, usize)>, BoxError> {
///         Ok(d.first().map(|&b| (b, 1)))
///     }
///     fn write(&self, _: &Session, p: Bytes) -> Result<Bytes, BoxError> { Ok(p) }
/// }
///
/// let session = Session::new(EndpointKind::Detached, Addr::Unknown, Addr::Unknown, SessionConfig::default());
/// let mut codec = ReadWriterCodec::new(Bytewise).make_codec(&session);
/// let mut buf = BytesMut::from(&b"ab"[..]);
/// assert_eq!(codec.decode(&mut buf).unwrap(), Some(b'a'));
/// ```
pub struct SessionCodec<H, W> {
    handler: Arc<H>,
    session: Session<W>,
    _packet: PhantomData<fn(W)>,
}

impl<H, W> fmt::Debug for SessionCodec<H, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionCodec")
            .field("session", &self.session.id())
            .finish_non_exhaustive()
    }
}

impl<H: ReadWriter<W>, W> Decoder for SessionCodec<H, W> {
    type Item = H::Packet;
    type Error = ReadWriterError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<H::Packet>, ReadWriterError> {
        if src.is_empty() {
            return Ok(None);
        }
        match self.handler.read(&self.session, src) {
            Ok(Some((pkg, used))) if used > 0 && used <= src.len() => {
                src.advance(used);
                Ok(Some(pkg))
            }
            Ok(Some((_, used))) => Err(ReadWriterError::BadLength {
                used,
                available: src.len(),
            }),
            Ok(None) => Ok(None),
            Err(e) => Err(ReadWriterError::Read(e)),
        }
    }
}

impl<H: ReadWriter<W>, W> Encoder<W> for SessionCodec<H, W> {
    type Error = ReadWriterError;

    fn encode(&mut self, item: W, dst: &mut BytesMut) -> Result<(), ReadWriterError> {
        let bytes = self
            .handler
            .write(&self.session, item)
            .map_err(ReadWriterError::Write)?;
        dst.extend_from_slice(&bytes);
        Ok(())
    }
}
