//! gtcp's simple package protocol as a tokio-util codec.
//!
//! ```text
//! +----------------------------+-------------------------+
//! | data length (1-4 B, BE)    | data (length bytes)     |
//! +----------------------------+-------------------------+
//!  the length counts the data only; 2 bytes by default; 0 is an empty package
//! ```

use std::cmp;

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::{PkgError, PkgOption, DEFAULT_HEADER_SIZE};

/// The most a decode reserves ahead of data that has not arrived: a peer
/// that declares a large (allowed) package and then trickles makes the
/// buffer grow with what actually arrives, not with what was declared.
pub(crate) const RESERVE_STEP: usize = 64 * 1024;

/// gtcp's simple package protocol: a big-endian length header of 1, 2, 3 or
/// 4 bytes counting only the data, then the data. Byte compatible with
/// gtcp's `SendPkg` / `RecvPkg`.
///
/// ```text
/// +----------------------------+-------------------------+
/// | data length (1-4 B, BE)    | data (length bytes)     |
/// +----------------------------+-------------------------+
/// ```
///
/// Decoding a literal byte string with the default 2-byte header (an empty
/// package is a package):
///
/// ```
/// use bytes::BytesMut;
/// use getty::pkg::PkgCodec;
/// use tokio_util::codec::Decoder;
///
/// let mut codec = PkgCodec::new();
/// let mut buf = BytesMut::from(&b"\x00\x03abc\x00\x00\x00\x01z"[..]);
/// assert_eq!(codec.decode(&mut buf).unwrap().unwrap(), &b"abc"[..]);
/// assert_eq!(codec.decode(&mut buf).unwrap().unwrap(), &b""[..]);
/// assert_eq!(codec.decode(&mut buf).unwrap().unwrap(), &b"z"[..]);
/// assert!(codec.decode(&mut buf).unwrap().is_none());
/// ```
///
/// A header above the maximum is an error before anything is reserved:
///
/// ```
/// use bytes::BytesMut;
/// use getty::pkg::{PkgCodec, PkgError, PkgOption};
/// use tokio_util::codec::Decoder;
///
/// let mut codec = PkgCodec::with_option(&PkgOption::new().header_size(4).max_data_size(1 << 20)).unwrap();
/// let mut buf = BytesMut::from(&0x8000_0000u32.to_be_bytes()[..]);
/// let err = codec.decode(&mut buf).unwrap_err();
/// assert!(matches!(err, PkgError::DeclaredTooLarge { len: 2_147_483_648, max: 1_048_576, header_size: 4 }));
/// assert_eq!(buf.capacity(), 4); // nothing was reserved for the data
/// ```
///
/// Encoding, with a 3-byte header:
///
/// ```
/// use bytes::BytesMut;
/// use getty::pkg::{PkgCodec, PkgOption};
/// use tokio_util::codec::Encoder;
///
/// let mut codec = PkgCodec::with_option(&PkgOption::new().header_size(3)).unwrap();
/// let mut wire = BytesMut::new();
/// codec.encode(&b"hi"[..], &mut wire).unwrap();
/// assert_eq!(&wire[..], b"\x00\x00\x02hi");
/// ```
///
/// It works wherever a tokio-util codec does: in a `Framed`, or given to the
/// core [`Server`](crate::Server) as its codec
/// (`server.serve(PkgCodec::new(), make)`: each session gets a copy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PkgCodec {
    header_size: u8,
    max: usize,
}

impl Default for PkgCodec {
    fn default() -> Self {
        PkgCodec {
            header_size: DEFAULT_HEADER_SIZE,
            max: 0xFFFF,
        }
    }
}

impl PkgCodec {
    /// gtcp's default: a 2-byte header, at most 65,535 bytes of data.
    ///
    /// ```
    /// use getty::pkg::PkgCodec;
    /// assert_eq!(PkgCodec::new().max_data_size(), 65_535);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// The codec a [`PkgOption`] describes.
    ///
    /// # Errors
    /// [`PkgError::InvalidOption`] when the option is invalid (see
    /// [`PkgOption::validate`]).
    ///
    /// ```
    /// use getty::pkg::{PkgCodec, PkgOption};
    /// let codec = PkgCodec::with_option(&PkgOption::new().header_size(1)).unwrap();
    /// assert_eq!((codec.header_size(), codec.max_data_size()), (1, 255));
    /// ```
    pub fn with_option(option: &PkgOption) -> Result<Self, PkgError> {
        option.validate()
    }

    /// Made by [`PkgOption::validate`], which checked both values.
    pub(crate) fn from_parts(header_size: u8, max: usize) -> Self {
        PkgCodec { header_size, max }
    }

    /// The header's width in bytes.
    ///
    /// ```
    /// use getty::pkg::PkgCodec;
    /// assert_eq!(PkgCodec::new().header_size(), 2);
    /// ```
    pub fn header_size(&self) -> u8 {
        self.header_size
    }

    /// The largest data size accepted and sent.
    ///
    /// ```
    /// use getty::pkg::PkgCodec;
    /// assert_eq!(PkgCodec::new().max_data_size(), 65_535);
    /// ```
    pub fn max_data_size(&self) -> usize {
        self.max
    }

    /// The header for `len` bytes of data: a 4-byte buffer and where the
    /// header starts in it (gtcp writes a `u32` and skips its high bytes).
    ///
    /// # Errors
    /// [`PkgError::TooLarge`] when `len` is above the maximum.
    pub(crate) fn header(&self, len: usize) -> Result<([u8; 4], usize), PkgError> {
        if len > self.max {
            return Err(PkgError::TooLarge { len, max: self.max });
        }
        // max <= i32::MAX (checked by validate), so len fits a u32.
        let len = u32::try_from(len).map_err(|_| PkgError::TooLarge { len, max: self.max })?;
        Ok((len.to_be_bytes(), 4 - usize::from(self.header_size)))
    }

    /// The error for a stream that ended with `buf` holding an unfinished
    /// package (`buf` not empty).
    pub(crate) fn eof_error(&self, buf: &[u8]) -> PkgError {
        let h = usize::from(self.header_size);
        if buf.len() < h {
            return PkgError::UnexpectedEof {
                what: "package header",
                received: buf.len(),
                expected: h,
            };
        }
        PkgError::UnexpectedEof {
            what: "package body",
            received: buf.len() - h,
            expected: declared(&buf[..h]) as usize,
        }
    }
}

/// The big-endian length in a 1 to 4-byte header.
fn declared(header: &[u8]) -> u64 {
    header
        .iter()
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
}

impl Decoder for PkgCodec {
    type Item = Bytes;
    type Error = PkgError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, PkgError> {
        let h = usize::from(self.header_size);
        if src.len() < h {
            return Ok(None);
        }
        let len = declared(&src[..h]);
        // Checked before anything is reserved: a hostile header costs nothing.
        if len > self.max as u64 {
            return Err(PkgError::DeclaredTooLarge {
                len,
                max: self.max,
                header_size: self.header_size,
            });
        }
        // len <= max, which is a usize.
        let total = h + len as usize;
        if src.len() < total {
            src.reserve(cmp::min(total - src.len(), RESERVE_STEP));
            return Ok(None);
        }
        src.advance(h);
        Ok(Some(src.split_to(total - h).freeze()))
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, PkgError> {
        match self.decode(buf)? {
            Some(pkg) => Ok(Some(pkg)),
            None if buf.is_empty() => Ok(None),
            None => Err(self.eof_error(buf)),
        }
    }
}

impl<T: AsRef<[u8]>> Encoder<T> for PkgCodec {
    type Error = PkgError;

    fn encode(&mut self, item: T, dst: &mut BytesMut) -> Result<(), PkgError> {
        let data = item.as_ref();
        let (header, start) = self.header(data.len())?;
        dst.reserve(header.len() - start + data.len());
        dst.extend_from_slice(&header[start..]);
        dst.extend_from_slice(data);
        Ok(())
    }
}
