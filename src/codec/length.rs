//! The length-prefixed codec.

use std::{fmt, io};

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// The most a decode reserves ahead of data that has not arrived.
const RESERVE_STEP: usize = 64 * 1024;

/// The error of [`LengthCodec`].
///
/// ```
/// use bytes::{Bytes, BytesMut};
/// use getty::codec::{LengthCodec, LengthCodecError};
/// use tokio_util::codec::Encoder;
///
/// let mut codec = LengthCodec::builder().length_field_bytes(1).new_codec();
/// let err = codec.encode(Bytes::from(vec![0u8; 300]), &mut BytesMut::new()).unwrap_err();
/// assert!(matches!(err, LengthCodecError::LengthOverflow { len: 300, field_bytes: 1 }));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum LengthCodecError {
    /// A packet's length is above the maximum.
    TooLarge {
        /// The declared (decoding) or given (encoding) length.
        len: u64,
        /// The maximum in force.
        max: usize,
    },
    /// The length does not fit the length field (e.g. 300 in one byte).
    LengthOverflow {
        /// The payload's length.
        len: usize,
        /// The width of the length field.
        field_bytes: usize,
    },
    /// The underlying transport failed.
    Io(io::Error),
}

impl fmt::Display for LengthCodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LengthCodecError::TooLarge { len, max } => {
                write!(f, "packet of {len} bytes exceeds max_packet_len {max}")
            }
            LengthCodecError::LengthOverflow { len, field_bytes } => write!(
                f,
                "packet of {len} bytes does not fit a {field_bytes}-byte length field"
            ),
            LengthCodecError::Io(e) => write!(f, "i/o error: {e}"),
        }
    }
}

impl std::error::Error for LengthCodecError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LengthCodecError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for LengthCodecError {
    fn from(e: io::Error) -> Self {
        LengthCodecError::Io(e)
    }
}

/// A length-prefixed codec.
///
/// ```text
/// +---------------+--------------------------+
/// | length (N B)  | payload (length bytes)   |
/// +---------------+--------------------------+
///  N = 1, 2, 4 or 8; big endian by default; the length counts the payload only
/// ```
///
/// Decoding a literal byte string:
///
/// ```
/// use bytes::BytesMut;
/// use getty::codec::LengthCodec;
/// use tokio_util::codec::Decoder;
///
/// let mut codec = LengthCodec::builder().length_field_bytes(2).new_codec();
/// let mut buf = BytesMut::from(&b"\x00\x03abc\x00\x01z"[..]);
/// assert_eq!(codec.decode(&mut buf).unwrap().unwrap(), &b"abc"[..]);
/// assert_eq!(codec.decode(&mut buf).unwrap().unwrap(), &b"z"[..]);
/// assert!(codec.decode(&mut buf).unwrap().is_none());
/// ```
///
/// A declared length above the maximum is an error before any byte of the
/// payload is buffered or allocated:
///
/// ```
/// use bytes::BytesMut;
/// use getty::codec::{LengthCodec, LengthCodecError};
/// use tokio_util::codec::Decoder;
///
/// let mut codec = LengthCodec::builder().max_packet_len(4096).new_codec();
/// let mut buf = BytesMut::from(&9_000_000u32.to_be_bytes()[..]);
/// let err = codec.decode(&mut buf).unwrap_err();
/// assert!(matches!(err, LengthCodecError::TooLarge { len: 9_000_000, max: 4096 }));
/// assert_eq!(buf.capacity(), 4); // nothing was reserved for the payload
/// ```
///
/// ```
/// use bytes::{Bytes, BytesMut};
/// use getty::codec::LengthCodec;
/// use tokio_util::codec::{Decoder, Encoder};
///
/// let mut codec = LengthCodec::new();
/// let mut wire = BytesMut::new();
/// codec.encode(Bytes::from_static(b"hello"), &mut wire).unwrap();
/// assert_eq!(&wire[..], b"\x00\x00\x00\x05hello");
/// assert_eq!(codec.decode(&mut wire).unwrap(), Some(Bytes::from_static(b"hello")));
/// ```
///
/// Decodes into [`Bytes`] (a slice of the read buffer, no copy) and encodes
/// anything that is `AsRef<[u8]>`-like: `Bytes`, `BytesMut`, `Vec<u8>`,
/// `&'static [u8]`, `String`.
///
/// Given to a server or client as a [`MakeCodec`](super::MakeCodec), each session gets a copy
/// whose maximum is the session's
/// [`max_packet_len`](crate::Session::max_packet_len), or the smaller of the two
/// when the builder set one explicitly: both limits hold.
#[derive(Debug, Clone, Copy)]
pub struct LengthCodec {
    field_bytes: usize,
    big_endian: bool,
    max: usize,
    /// `max` was set by the builder, not defaulted.
    explicit_max: bool,
}

/// Builds a [`LengthCodec`], in the manner of tokio-util's
/// `LengthDelimitedCodec::builder()`.
///
/// ```
/// use getty::codec::LengthCodec;
///
/// let codec = LengthCodec::builder()
///     .length_field_bytes(2)
///     .little_endian()
///     .max_packet_len(1024)
///     .new_codec();
/// assert_eq!(codec.max_packet_len(), 1024);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct LengthCodecBuilder {
    codec: LengthCodec,
}

impl Default for LengthCodec {
    fn default() -> Self {
        LengthCodec {
            field_bytes: 4,
            big_endian: true,
            max: 1024 * 1024,
            explicit_max: false,
        }
    }
}

impl LengthCodec {
    /// A 4-byte big-endian length prefix, max 1 MiB.
    pub fn new() -> Self {
        Self::default()
    }

    /// A builder starting from [`LengthCodec::new`]'s settings.
    pub fn builder() -> LengthCodecBuilder {
        LengthCodecBuilder {
            codec: Self::default(),
        }
    }

    /// The largest payload accepted.
    pub fn max_packet_len(&self) -> usize {
        self.max
    }

    /// Takes a session's `max_packet_len`: the smaller of the two when the
    /// builder set a maximum explicitly, the session's otherwise.
    pub(super) fn limit_to(&mut self, session_max: usize) {
        self.max = if self.explicit_max {
            self.max.min(session_max)
        } else {
            session_max
        };
    }

    /// The largest length the field can express.
    #[inline]
    fn field_max(&self) -> u64 {
        match self.field_bytes {
            8 => u64::MAX,
            n => (1u64 << (n * 8)) - 1,
        }
    }

    #[inline]
    fn put_len(&self, len: usize, dst: &mut BytesMut) {
        let n = self.field_bytes;
        if (n, self.big_endian) == (4, true) {
            // The default header as one fixed-size store: the general
            // slice below costs a `memcpy` call per packet.
            dst.extend_from_slice(&(len as u32).to_be_bytes());
            return;
        }
        let bytes = if self.big_endian {
            (len as u64).to_be_bytes()
        } else {
            (len as u64).to_le_bytes()
        };
        if self.big_endian {
            dst.extend_from_slice(&bytes[8 - n..]);
        } else {
            dst.extend_from_slice(&bytes[..n]);
        }
    }

    // Forced into the driver, as `decode` below (the hint was not taken):
    // a call returning its result through memory stalls the load that
    // reads it back, and the packet's frame is one `memcpy` either way.
    #[inline(always)]
    fn encode_slice(&mut self, payload: &[u8], dst: &mut BytesMut) -> Result<(), LengthCodecError> {
        let len = payload.len();
        if len > self.max {
            return Err(LengthCodecError::TooLarge {
                len: len as u64,
                max: self.max,
            });
        }
        if len as u64 > self.field_max() {
            return Err(LengthCodecError::LengthOverflow {
                len,
                field_bytes: self.field_bytes,
            });
        }
        // `extend_from_slice` rather than `BufMut::put_*`: the trait's
        // methods on `BytesMut` are not inlined across crates, and cost a
        // call and a `memcpy` call each, per packet.
        dst.reserve(self.field_bytes + len);
        self.put_len(len, dst);
        dst.extend_from_slice(payload);
        Ok(())
    }
}

impl LengthCodecBuilder {
    /// Width of the length field: 1, 2, 4 (default) or 8 bytes.
    ///
    /// # Panics
    /// On any other width: that is a programming error, not input.
    pub fn length_field_bytes(&mut self, n: usize) -> &mut Self {
        assert!(
            matches!(n, 1 | 2 | 4 | 8),
            "length field must be 1, 2, 4 or 8 bytes, not {n}"
        );
        self.codec.field_bytes = n;
        self
    }

    /// The length is big endian (the default).
    pub fn big_endian(&mut self) -> &mut Self {
        self.codec.big_endian = true;
        self
    }

    /// The length is little endian.
    pub fn little_endian(&mut self) -> &mut Self {
        self.codec.big_endian = false;
        self
    }

    /// The largest payload accepted, checked before allocating (default 1 MiB).
    ///
    /// When the codec is given to a server or client, each session's limit
    /// is the smaller of this and the session's `max_packet_len`.
    pub fn max_packet_len(&mut self, max: usize) -> &mut Self {
        self.codec.max = max;
        self.codec.explicit_max = true;
        self
    }

    /// The codec.
    pub fn new_codec(&self) -> LengthCodec {
        self.codec
    }
}

impl Decoder for LengthCodec {
    type Item = Bytes;
    type Error = LengthCodecError;

    #[inline(always)]
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, LengthCodecError> {
        // The header stays in `src` until the whole packet is there, so a
        // partial packet is always visible as buffered bytes (the driver
        // tells a peer that vanished mid-packet from a clean close by that).
        let n = self.field_bytes;
        if src.len() < n {
            return Ok(None);
        }
        let mut header = &src[..n];
        let len = match (n, self.big_endian) {
            // The default header, read without the general loop.
            (4, true) => u64::from(header.get_u32()),
            (_, true) => header.get_uint(n),
            (_, false) => header.get_uint_le(n),
        };
        if len > self.max as u64 {
            return Err(LengthCodecError::TooLarge { len, max: self.max });
        }
        // In range of `max`, so it fits in usize.
        let len = len as usize;
        let buffered = src.len() - n;
        if buffered < len {
            // Room for what is still to come, in steps: even within `max`, a
            // header alone must not make us allocate a large buffer up front.
            src.reserve((len - buffered).min(RESERVE_STEP));
            return Ok(None);
        }
        // Header and payload leave the buffer in one split; the header is
        // then skipped on the `Bytes`, a pointer bump (skipping it on the
        // `BytesMut` first cost a second adjustment of the shared buffer).
        let mut packet = src.split_to(n + len).freeze();
        packet.advance(n);
        Ok(Some(packet))
    }
}

macro_rules! encode_as_slice {
    ($($ty:ty),*) => {$(
        impl Encoder<$ty> for LengthCodec {
            type Error = LengthCodecError;

            #[inline(always)]
            fn encode(&mut self, item: $ty, dst: &mut BytesMut) -> Result<(), LengthCodecError> {
                self.encode_slice(item.as_ref(), dst)
            }
        }
    )*};
}

encode_as_slice!(Bytes, BytesMut, Vec<u8>, &'static [u8], String);
