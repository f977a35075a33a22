//! [`Gzip`]: erpc's `xfer/gzip` filter.

use std::io::{Read, Write};

use bytes::Bytes;
use flate2::{read::MultiGzDecoder, write::GzEncoder, Compression, GzBuilder};

use super::XferFilter;
use crate::BoxError;

/// Compresses the payload into a gzip stream (RFC 1952), erpc's
/// `gzip.Reg('g', name, level)`. Registered under `g` unless given another
/// id; both ends must agree on it.
///
/// An empty payload passes through unchanged both ways, as erpc's does.
/// Unpacking stops with an error as soon as the output passes the frame
/// limit, so a small "zip bomb" cannot make the receiver allocate more
/// than the limit.
///
/// ```
/// use getty::rpc::xfer::{Gzip, XferFilter};
///
/// let gzip = Gzip::new(5);
/// let packed = gzip.on_pack(bytes::Bytes::from(vec![0u8; 10_000])).unwrap();
/// assert!(packed.len() < 100);
/// assert_eq!(gzip.on_unpack(packed.clone(), 10_000).unwrap().len(), 10_000);
/// assert!(gzip.on_unpack(packed, 9_999).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gzip {
    id: u8,
    level: u32,
}

impl Gzip {
    /// Level 5 (erpc's examples use it), the default.
    pub const DEFAULT_LEVEL: u32 = 5;

    /// Gzip at `level` (0 stores, 9 compresses most; above 9 is 9), id `g`.
    pub fn new(level: u32) -> Gzip {
        Gzip {
            id: b'g',
            level: level.min(9),
        }
    }

    /// The same filter under another id.
    ///
    /// ```
    /// use getty::rpc::xfer::{Gzip, XferFilter};
    /// assert_eq!(Gzip::default().with_id(b'z').id(), b'z');
    /// ```
    pub fn with_id(mut self, id: u8) -> Gzip {
        self.id = id;
        self
    }

    /// The compression level.
    pub fn level(&self) -> u32 {
        self.level
    }
}

impl Default for Gzip {
    fn default() -> Gzip {
        Gzip::new(Gzip::DEFAULT_LEVEL)
    }
}

impl XferFilter for Gzip {
    fn id(&self) -> u8 {
        self.id
    }

    fn name(&self) -> &'static str {
        "gzip"
    }

    fn on_pack(&self, payload: Bytes) -> Result<Bytes, BoxError> {
        if payload.is_empty() {
            return Ok(payload);
        }
        // MTIME 0 and OS "unknown" (255), the header Go writes.
        let mut enc: GzEncoder<Vec<u8>> = GzBuilder::new().operating_system(255).write(
            Vec::with_capacity(payload.len() / 2 + 32),
            Compression::new(self.level),
        );
        enc.write_all(&payload)?;
        Ok(Bytes::from(enc.finish()?))
    }

    fn on_unpack(&self, payload: Bytes, max_len: usize) -> Result<Bytes, BoxError> {
        if payload.is_empty() {
            return Ok(payload);
        }
        // Go's gzip reader reads concatenated members too.
        let limit = u64::try_from(max_len).unwrap_or(u64::MAX).saturating_add(1);
        let mut out = Vec::new();
        MultiGzDecoder::new(&payload[..])
            .take(limit)
            .read_to_end(&mut out)?;
        if out.len() > max_len {
            return Err(format!("gunzipped payload exceeds the limit of {max_len} bytes").into());
        }
        Ok(Bytes::from(out))
    }
}
