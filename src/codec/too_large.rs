//! The error any codec returns for a packet above its limit.

use std::{fmt, io};

/// A packet larger than a codec allows. Any codec can return it, as its
/// own error type or inside an `io::Error` (the error type of most
/// `tokio_util` codecs): the driver reports it as
/// [`Error::PacketTooLarge`](crate::Error::PacketTooLarge) and closes the
/// session as it does for [`LengthCodec`](super::LengthCodec)'s own
/// (close code 1009 on WebSocket).
///
/// ```
/// use bytes::BytesMut;
/// use getty::codec::PacketTooLarge;
/// use tokio_util::codec::Decoder;
///
/// /// Lines of at most 8 bytes.
/// struct ShortLines;
///
/// impl Decoder for ShortLines {
///     type Item = BytesMut;
///     type Error = std::io::Error;
///
///     fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, std::io::Error> {
///         match src.iter().position(|b| *b == b'\n') {
///             Some(i) if i <= 8 => Ok(Some(src.split_to(i + 1))),
///             Some(i) => Err(PacketTooLarge::new(i as u64, 8).into()),
///             None if src.len() > 8 => Err(PacketTooLarge::new(src.len() as u64, 8).into()),
///             None => Ok(None),
///         }
///     }
/// }
///
/// let err = ShortLines.decode(&mut BytesMut::from(&b"far too long a line\n"[..])).unwrap_err();
/// assert_eq!(err.to_string(), "packet of 19 bytes exceeds the limit of 8");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketTooLarge {
    /// The size seen (declared by a header, or buffered).
    pub len: u64,
    /// The limit in force.
    pub max: usize,
}

impl PacketTooLarge {
    /// A packet of `len` bytes against a limit of `max`.
    pub fn new(len: u64, max: usize) -> Self {
        PacketTooLarge { len, max }
    }
}

impl fmt::Display for PacketTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "packet of {} bytes exceeds the limit of {}",
            self.len, self.max
        )
    }
}

impl std::error::Error for PacketTooLarge {}

impl From<PacketTooLarge> for io::Error {
    fn from(e: PacketTooLarge) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}
