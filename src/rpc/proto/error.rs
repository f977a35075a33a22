//! [`ProtoError`]: what is wrong with a frame.

use std::{fmt, io};

use crate::{rpc::xfer::IdText, BoxError};

/// A frame [`RawProto`](super::RawProto) cannot decode, or a message it
/// refuses to encode. It reaches the caller inside an [`io::Error`]
/// (`InvalidData` when decoding, `InvalidInput` when encoding), the error
/// type of tokio-util's codecs; a frame over the size limit is a
/// [`PacketTooLarge`](crate::codec::PacketTooLarge) instead.
///
/// ```
/// use getty::rpc::ProtoError;
/// assert_eq!(
///     ProtoError::UnknownMessageType(9).to_string(),
///     "raw proto: unknown message type 9"
/// );
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum ProtoError {
    /// The declared size is below the smallest frame the filter count
    /// allows (erpc's "bad package").
    BadSize {
        /// The declared size.
        size: usize,
        /// Four bytes of size, the filter count and the filter ids.
        min: usize,
    },
    /// The frame ends before a fixed-size field.
    Truncated {
        /// The field, such as `"mtype"` or `"status_len"`.
        field: &'static str,
    },
    /// A length field reaches past the end of the frame.
    Overrun {
        /// The length field, such as `"seq_len"`.
        field: &'static str,
        /// Its value.
        len: usize,
    },
    /// The seq is not an `i32` in base-36 text.
    BadSeq {
        /// The text, read lossily.
        text: String,
    },
    /// An `mtype` outside 1..=5.
    UnknownMessageType(u8),
    /// A filter id with no filter registered.
    UnknownXferFilter(u8),
    /// A filter failed (a corrupt gzip stream, an md5 mismatch, output
    /// over the limit).
    XferFilter(BoxError),
    /// The service method is not UTF-8.
    ServiceMethodNotUtf8,
    /// A service method over 255 bytes (encoding).
    ServiceMethodTooLong(usize),
    /// A status over 65,535 bytes once encoded (encoding; erpc would
    /// silently corrupt the frame).
    StatusTooLong(usize),
    /// Metadata over 65,535 bytes once encoded (encoding; erpc would
    /// silently corrupt the frame).
    MetaTooLong(usize),
    /// More than 255 transfer filters (encoding).
    TooManyXferFilters(usize),
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("raw proto: ")?;
        match self {
            ProtoError::BadSize { size, min } => {
                write!(f, "bad package: size {size} is below the minimum {min}")
            }
            ProtoError::Truncated { field } => write!(f, "the frame ends before its {field}"),
            ProtoError::Overrun { field, len } => write!(f, "{field} {len} overruns the frame"),
            ProtoError::BadSeq { text } => write!(f, "bad seq text {text:?}"),
            ProtoError::UnknownMessageType(t) => write!(f, "unknown message type {t}"),
            ProtoError::UnknownXferFilter(id) => {
                write!(f, "unknown transfer filter id {}", IdText(*id))
            }
            ProtoError::XferFilter(e) => write!(f, "{e}"),
            ProtoError::ServiceMethodNotUtf8 => f.write_str("service method is not UTF-8"),
            ProtoError::ServiceMethodTooLong(n) => {
                write!(f, "service method of {n} bytes is longer than 255")
            }
            ProtoError::StatusTooLong(n) => {
                write!(f, "status of {n} bytes is longer than 65535")
            }
            ProtoError::MetaTooLong(n) => write!(f, "meta of {n} bytes is longer than 65535"),
            ProtoError::TooManyXferFilters(n) => {
                write!(f, "{n} transfer filters are more than 255")
            }
        }
    }
}

impl std::error::Error for ProtoError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ProtoError::XferFilter(e) => Some(&**e),
            _ => None,
        }
    }
}

impl ProtoError {
    /// The error as a decoder returns it.
    pub(super) fn invalid_data(self) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, self)
    }

    /// The error as an encoder returns it.
    pub(super) fn invalid_input(self) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidInput, self)
    }
}
