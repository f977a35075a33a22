//! [`Md5`]: erpc's `xfer/md5` filter.

use bytes::{Bytes, BytesMut};
use md5::{Digest, Md5 as Hasher};

use super::XferFilter;
use crate::BoxError;

/// The length of an MD5 digest.
const DIGEST_LEN: usize = 16;

/// Appends the 16-byte MD5 digest of the payload and, on receive, checks
/// and strips it, erpc's `md5.Reg('m', name)` (an integrity check, not an
/// authentication: anyone can recompute it). Registered under `m` unless
/// given another id.
///
/// ```
/// use getty::rpc::xfer::{Md5, XferFilter};
///
/// let md5 = Md5::new();
/// let packed = md5.on_pack(bytes::Bytes::from_static(b"abc")).unwrap();
/// assert_eq!(packed.len(), 3 + 16);
/// assert_eq!(md5.on_unpack(packed.clone(), 1024).unwrap(), &b"abc"[..]);
///
/// let mut tampered = packed.to_vec();
/// tampered[0] ^= 1;
/// let err = md5.on_unpack(tampered.into(), 1024).unwrap_err();
/// assert_eq!(err.to_string(), "md5 check failed");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Md5 {
    id: u8,
}

impl Md5 {
    /// The filter under id `m`.
    pub fn new() -> Md5 {
        Md5 { id: b'm' }
    }

    /// The same filter under another id.
    pub fn with_id(mut self, id: u8) -> Md5 {
        self.id = id;
        self
    }
}

impl Default for Md5 {
    fn default() -> Md5 {
        Md5::new()
    }
}

impl XferFilter for Md5 {
    fn id(&self) -> u8 {
        self.id
    }

    fn name(&self) -> &'static str {
        "md5"
    }

    fn on_pack(&self, payload: Bytes) -> Result<Bytes, BoxError> {
        let mut out = BytesMut::with_capacity(payload.len() + DIGEST_LEN);
        out.extend_from_slice(&payload);
        out.extend_from_slice(&Hasher::digest(&payload));
        Ok(out.freeze())
    }

    fn on_unpack(&self, mut payload: Bytes, max_len: usize) -> Result<Bytes, BoxError> {
        let Some(data_len) = payload.len().checked_sub(DIGEST_LEN) else {
            return Err("md5 check failed".into());
        };
        let digest = payload.split_off(data_len);
        if Hasher::digest(&payload)[..] != digest[..] {
            return Err("md5 check failed".into());
        }
        // Stripping only shrinks the payload; the check is for the
        // trait's promise.
        if payload.len() > max_len {
            return Err(format!("payload exceeds the limit of {max_len} bytes").into());
        }
        Ok(payload)
    }
}
