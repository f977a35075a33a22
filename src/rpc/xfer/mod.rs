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
    ids: Vec<u8>,
}

impl XferPipe {
    /// No filter.
    pub fn new() -> XferPipe {
        XferPipe::default()
    }

    /// Appends a filter id (it runs inside the ones before it).
    pub fn push(&mut self, id: u8) -> &mut XferPipe {
        self.ids.push(id);
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

/// A transfer filter (erpc's `xfer.XferFilter`).
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
#[derive(Clone, Default)]
pub struct XferFilters {
    filters: Vec<Arc<dyn XferFilter>>,
}

impl fmt::Debug for XferFilters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.filters.iter().map(|x| (x.id() as char, x.name())))
            .finish()
    }
}
