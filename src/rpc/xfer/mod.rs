//! Transfer filters: what a frame goes through after it is encoded,
//! erpc's `xfer` package (its "XferPipe").
//!
//! A filter rewrites a frame's payload (everything after the filter ids:
//! the header and the body) on the way out and undoes it on the way in.
//! A frame names its filters by one-byte ids, outermost first: on send
//! they are applied from the last id to the first, on receive from the
//! first to the last. No filter is registered by default; erpc programs
//! conventionally use gzip as `g` and md5 as `m` ([`Gzip`], [`Md5`]).
//! A reply goes through its call's filters.

use std::{fmt, sync::Arc};

use bytes::Bytes;

use crate::BoxError;

mod gzip;
mod md5;

pub use self::{gzip::Gzip, md5::Md5};

/// The filter ids a message goes through, outermost first (at most 255).
///
/// ```
/// use getty::rpc::XferPipe;
/// let pipe: XferPipe = [b'm', b'g'].into_iter().collect();
/// assert_eq!(pipe.ids(), b"mg");
/// assert!(XferPipe::new().is_empty());
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct XferPipe {
    /// A boxed slice rather than a `Vec`: 16 bytes, not 24, in every
    /// [`Message`](super::Message), which a call moves several times (a
    /// pipe is built once, so growing it by reallocating costs nothing
    /// that matters).
    ids: Box<[u8]>,
}

impl XferPipe {
    /// No filter.
    pub fn new() -> XferPipe {
        XferPipe::default()
    }

    /// Appends a filter id (it runs inside the ones before it).
    pub fn push(&mut self, id: u8) -> &mut XferPipe {
        let mut ids = std::mem::take(&mut self.ids).into_vec();
        ids.push(id);
        self.ids = ids.into_boxed_slice();
        self
    }

    /// The ids, outermost first.
    pub fn ids(&self) -> &[u8] {
        &self.ids
    }

    /// The number of filters.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there is no filter.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

impl FromIterator<u8> for XferPipe {
    fn from_iter<I: IntoIterator<Item = u8>>(iter: I) -> XferPipe {
        XferPipe {
            ids: iter.into_iter().collect(),
        }
    }
}

impl fmt::Debug for XferPipe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.ids.iter().map(|b| *b as char))
            .finish()
    }
}

/// A transfer filter (erpc's `xfer.XferFilter`), registered in
/// [`XferFilters`] under its id.
///
/// ```
/// use bytes::Bytes;
/// use getty::rpc::xfer::{XferFilter, XferFilters};
/// use getty::rpc::XferPipe;
/// use getty::BoxError;
///
/// /// Flips every bit (an illustration, not a cipher), under id `x`.
/// struct Flip;
///
/// impl XferFilter for Flip {
///     fn id(&self) -> u8 { b'x' }
///     fn name(&self) -> &'static str { "flip" }
///     fn on_pack(&self, payload: Bytes) -> Result<Bytes, BoxError> {
///         Ok(payload.iter().map(|b| !b).collect::<Vec<u8>>().into())
///     }
///     fn on_unpack(&self, payload: Bytes, max_len: usize) -> Result<Bytes, BoxError> {
///         // Same length out as in: within the limit whenever the input is.
///         if payload.len() > max_len {
///             return Err("too long".into());
///         }
///         self.on_pack(payload)
///     }
/// }
///
/// let mut filters = XferFilters::new();
/// filters.register(Flip);
/// let pipe: XferPipe = [b'x'].into_iter().collect();
/// let packed = filters.pack(&pipe, Bytes::from_static(b"\x00\xff"))?;
/// assert_eq!(&packed[..], b"\xff\x00");
/// assert_eq!(&filters.unpack(&pipe, packed, 16)?[..], b"\x00\xff");
/// # Ok::<(), BoxError>(())
/// ```
pub trait XferFilter: Send + Sync + 'static {
    /// The id it travels under.
    fn id(&self) -> u8;
    /// Its name, for logs.
    fn name(&self) -> &'static str;
    /// Rewrites an outgoing payload.
    fn on_pack(&self, payload: Bytes) -> Result<Bytes, BoxError>;
    /// Undoes [`on_pack`](XferFilter::on_pack) on an incoming payload,
    /// producing at most `max_len` bytes (a larger result is an error, so a
    /// small hostile frame cannot inflate into a large allocation).
    fn on_unpack(&self, payload: Bytes, max_len: usize) -> Result<Bytes, BoxError>;
}

/// The transfer filters a peer knows, by id.
///
/// Cloning is cheap (the filters sit behind an `Arc`), so a peer and all
/// its sessions share one set.
///
/// ```
/// use getty::rpc::xfer::{Gzip, Md5, XferFilters};
/// use getty::rpc::XferPipe;
///
/// let mut filters = XferFilters::new();
/// filters.register(Gzip::new(5)).register(Md5::new());
/// let pipe: XferPipe = [b'm', b'g'].into_iter().collect();
///
/// let payload = bytes::Bytes::from_static(b"hello hello hello hello");
/// let packed = filters.pack(&pipe, payload.clone()).unwrap();
/// assert_eq!(filters.unpack(&pipe, packed, 1024).unwrap(), payload);
/// ```
#[derive(Clone, Default)]
pub struct XferFilters {
    filters: Arc<Vec<Arc<dyn XferFilter>>>,
}

impl XferFilters {
    /// No filter (erpc registers none by default).
    pub fn new() -> XferFilters {
        XferFilters::default()
    }

    /// Registers a filter, replacing any registered under the same id.
    pub fn register(&mut self, filter: impl XferFilter) -> &mut XferFilters {
        let id = filter.id();
        // Copy-on-write: clones already handed out keep the old set.
        let filters = Arc::make_mut(&mut self.filters);
        filters.retain(|f| f.id() != id);
        filters.push(Arc::new(filter));
        self
    }

    /// Whether a filter is registered under `id`.
    ///
    /// ```
    /// use getty::rpc::xfer::{Gzip, XferFilters};
    /// let mut filters = XferFilters::new();
    /// filters.register(Gzip::default());
    /// assert!(filters.contains(b'g'));
    /// assert!(!filters.contains(b'm'));
    /// ```
    pub fn contains(&self, id: u8) -> bool {
        self.get(id).is_some()
    }

    /// The filter registered under `id`.
    pub fn get(&self, id: u8) -> Option<&dyn XferFilter> {
        self.filters.iter().find(|f| f.id() == id).map(|f| &**f)
    }

    /// Runs an outgoing payload through the pipe's filters, from the last
    /// id to the first (the first is outermost).
    pub fn pack(&self, pipe: &XferPipe, mut payload: Bytes) -> Result<Bytes, BoxError> {
        for &id in pipe.ids().iter().rev() {
            let filter = self.known(id)?;
            payload = filter
                .on_pack(payload)
                .map_err(|e| failed(filter, "pack", e))?;
        }
        Ok(payload)
    }

    /// Undoes the pipe's filters on an incoming payload, from the first id
    /// to the last; no filter may produce more than `max_len` bytes.
    pub fn unpack(
        &self,
        pipe: &XferPipe,
        mut payload: Bytes,
        max_len: usize,
    ) -> Result<Bytes, BoxError> {
        for &id in pipe.ids() {
            let filter = self.known(id)?;
            payload = filter
                .on_unpack(payload, max_len)
                .map_err(|e| failed(filter, "unpack", e))?;
        }
        Ok(payload)
    }

    fn known(&self, id: u8) -> Result<&dyn XferFilter, BoxError> {
        self.get(id)
            .ok_or_else(|| format!("unknown transfer filter id {}", IdText(id)).into())
    }
}

/// A filter's error, saying which filter failed and doing what.
fn failed(filter: &dyn XferFilter, what: &str, e: BoxError) -> BoxError {
    format!(
        "transfer filter {} ({}) failed to {what}: {e}",
        IdText(filter.id()),
        filter.name()
    )
    .into()
}

/// A filter id for messages: `'g'` when printable, else its number.
pub(crate) struct IdText(pub(crate) u8);

impl fmt::Display for IdText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_ascii_graphic() {
            write!(f, "'{}'", self.0 as char)
        } else {
            write!(f, "{}", self.0)
        }
    }
}

impl fmt::Debug for XferFilters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.filters.iter().map(|x| (x.id() as char, x.name())))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Appends its id: shows the order filters run in.
    struct Tag(u8);

    impl XferFilter for Tag {
        fn id(&self) -> u8 {
            self.0
        }
        fn name(&self) -> &'static str {
            "tag"
        }
        fn on_pack(&self, payload: Bytes) -> Result<Bytes, BoxError> {
            let mut out = payload.to_vec();
            out.push(self.0);
            Ok(out.into())
        }
        fn on_unpack(&self, payload: Bytes, _max_len: usize) -> Result<Bytes, BoxError> {
            match payload.split_last() {
                Some((&last, rest)) if last == self.0 => Ok(Bytes::copy_from_slice(rest)),
                _ => Err(format!("expected tag {}", self.0 as char).into()),
            }
        }
    }

    fn tags() -> XferFilters {
        let mut filters = XferFilters::new();
        filters.register(Tag(b'a')).register(Tag(b'b'));
        filters
    }

    #[test]
    fn pack_runs_the_last_id_first_and_unpack_the_first() {
        let pipe: XferPipe = [b'a', b'b'].into_iter().collect();
        let packed = tags().pack(&pipe, Bytes::from_static(b"x")).unwrap();
        // b ran first, a outermost.
        assert_eq!(&packed[..], b"xba");
        assert_eq!(&tags().unpack(&pipe, packed, 10).unwrap()[..], b"x");
    }

    #[test]
    fn an_unknown_id_is_an_error_naming_it() {
        let pipe: XferPipe = [b'z'].into_iter().collect();
        let err = tags().pack(&pipe, Bytes::new()).unwrap_err();
        assert_eq!(err.to_string(), "unknown transfer filter id 'z'");
        let err = tags().unpack(&pipe, Bytes::new(), 10).unwrap_err();
        assert_eq!(err.to_string(), "unknown transfer filter id 'z'");
    }

    #[test]
    fn a_failing_filter_is_named_in_the_error() {
        let pipe: XferPipe = [b'a'].into_iter().collect();
        let err = tags()
            .unpack(&pipe, Bytes::from_static(b"x"), 10)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "transfer filter 'a' (tag) failed to unpack: expected tag a"
        );
    }

    #[test]
    fn gzip_passes_an_empty_payload_through_both_ways() {
        let gzip = Gzip::default();
        assert!(gzip.on_pack(Bytes::new()).unwrap().is_empty());
        assert!(gzip.on_unpack(Bytes::new(), 0).unwrap().is_empty());
    }

    #[test]
    fn gzip_writes_a_go_like_header() {
        let packed = Gzip::default().on_pack(Bytes::from_static(b"x")).unwrap();
        // Magic, deflate, no flags, MTIME 0, ..., OS 255.
        assert_eq!(&packed[..8], b"\x1f\x8b\x08\x00\x00\x00\x00\x00");
        assert_eq!(packed[9], 0xff);
    }

    #[test]
    fn gunzip_of_garbage_is_an_error() {
        assert!(Gzip::default()
            .on_unpack(Bytes::from_static(b"not gzip"), 100)
            .is_err());
    }

    #[test]
    fn md5_of_a_payload_shorter_than_a_digest_fails_the_check() {
        let err = Md5::new()
            .on_unpack(Bytes::from_static(b"short"), 100)
            .unwrap_err();
        assert_eq!(err.to_string(), "md5 check failed");
    }
}
