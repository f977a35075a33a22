//! [`ServiceMethod`]: a message's route, short ones kept in place and
//! longer ones as shared bytes.

use std::{borrow::Borrow, cmp::Ordering, fmt, hash, ops::Deref};

use bytes::Bytes;

/// The longest method kept in place rather than in [`Bytes`]: what fits
/// beside the length without making the type larger than `Bytes` itself.
pub(crate) const INLINE: usize = 23;

/// A service method (`/home/echo`): UTF-8 text. A literal costs no
/// allocation (it points at the static text); one decoded from a frame
/// costs none either: up to 23 bytes, most methods, it is copied in place
/// (no reference count to take on the frame and drop later), a longer one
/// is a slice of the frame. It reads as a `str` everywhere one is expected.
///
/// ```
/// use getty::rpc::ServiceMethod;
///
/// let literal = ServiceMethod::from("/home/echo");
/// let owned = ServiceMethod::from(String::from("/home/echo"));
/// assert_eq!(literal, owned);
/// assert_eq!(literal, "/home/echo");
/// assert!(literal.starts_with("/home/"));
/// assert_eq!(ServiceMethod::try_from(bytes::Bytes::from_static(b"\xff")).ok(), None);
/// assert!(ServiceMethod::default().is_empty());
/// ```
#[derive(Clone)]
pub struct ServiceMethod(
    /// Always UTF-8: every constructor starts from text or checks it.
    Repr,
);

#[derive(Clone)]
enum Repr {
    /// Up to [`INLINE`] bytes, in place.
    Inline { len: u8, bytes: [u8; INLINE] },
    /// A literal, text given as a `String`, or a longer slice of a frame.
    Shared(Bytes),
}

/// A short service method's length and in-place bytes: two equal keys
/// are the same method (a method's padding is always zeros, and a
/// difference there would only make two equal methods compare unequal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InlineKey {
    len: u8,
    bytes: [u8; INLINE],
}

impl InlineKey {
    /// The whole in-place buffer: the method's bytes, then zeros.
    pub(crate) fn buffer(&self) -> &[u8; INLINE] {
        &self.bytes
    }
}

impl ServiceMethod {
    /// No service method (what replies carry).
    pub const fn new() -> ServiceMethod {
        ServiceMethod(Repr::Shared(Bytes::new()))
    }

    /// A service method pointing at static text.
    pub const fn from_static(text: &'static str) -> ServiceMethod {
        ServiceMethod(Repr::Shared(Bytes::from_static(text.as_bytes())))
    }

    /// The method at `range` of a frame: copied in place when short, else
    /// a slice of the frame; an error unless it is UTF-8.
    pub(crate) fn from_frame(
        frame: &Bytes,
        range: std::ops::Range<usize>,
    ) -> Result<ServiceMethod, std::str::Utf8Error> {
        let text = &frame[range.clone()];
        check_utf8(text)?;
        Ok(match u8::try_from(text.len()) {
            Ok(len) if text.len() <= INLINE => {
                let mut bytes = [0u8; INLINE];
                bytes[..text.len()].copy_from_slice(text);
                ServiceMethod(Repr::Inline { len, bytes })
            }
            _ => ServiceMethod(Repr::Shared(frame.slice(range))),
        })
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Every constructor keeps the bytes UTF-8; the check is a short
        // scan (a method is at most 255 bytes on the wire), and keeps this
        // module free of `unsafe`.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    /// A short method's in-place form, to remember, compare and copy at a
    /// fixed size (`==` on slices is a `memcmp` call, a copy of the
    /// method's own length a `memcpy` call); `None` for a long one.
    pub(crate) fn inline_key(&self) -> Option<InlineKey> {
        match &self.0 {
            Repr::Inline { len, bytes } => Some(InlineKey {
                len: *len,
                bytes: *bytes,
            }),
            Repr::Shared(_) => None,
        }
    }

    /// The text's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Repr::Shared(bytes) => bytes,
        }
    }

    /// Its length in bytes (without looking at the text, as the `str`
    /// this derefs to would).
    ///
    /// ```
    /// let method = getty::rpc::ServiceMethod::from("/home/echo");
    /// assert_eq!(method.len(), 10);
    /// assert!(!method.is_empty() && getty::rpc::ServiceMethod::new().is_empty());
    /// ```
    pub fn len(&self) -> usize {
        match &self.0 {
            Repr::Inline { len, .. } => usize::from(*len),
            Repr::Shared(bytes) => bytes.len(),
        }
    }

    /// Whether it is empty (as replies' are).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The text as [`Bytes`] (a copy for a short method decoded from a
    /// frame, which is kept in place).
    pub fn into_bytes(self) -> Bytes {
        match self.0 {
            Repr::Inline { .. } => Bytes::copy_from_slice(self.as_bytes()),
            Repr::Shared(bytes) => bytes,
        }
    }
}

/// Methods are ASCII paths: checked a word at a time, the full UTF-8
/// check only for the rest.
fn check_utf8(text: &[u8]) -> Result<(), std::str::Utf8Error> {
    if !text.is_ascii() {
        std::str::from_utf8(text)?;
    }
    Ok(())
}

impl Default for ServiceMethod {
    fn default() -> ServiceMethod {
        ServiceMethod::new()
    }
}

impl PartialEq for ServiceMethod {
    fn eq(&self, other: &ServiceMethod) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for ServiceMethod {}

impl PartialOrd for ServiceMethod {
    fn partial_cmp(&self, other: &ServiceMethod) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ServiceMethod {
    fn cmp(&self, other: &ServiceMethod) -> Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl Deref for ServiceMethod {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for ServiceMethod {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for ServiceMethod {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl hash::Hash for ServiceMethod {
    /// As `str` hashes, as [`Borrow<str>`] requires.
    fn hash<H: hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl From<&'static str> for ServiceMethod {
    fn from(text: &'static str) -> ServiceMethod {
        ServiceMethod::from_static(text)
    }
}

impl From<String> for ServiceMethod {
    fn from(text: String) -> ServiceMethod {
        ServiceMethod(Repr::Shared(Bytes::from(text)))
    }
}

impl From<&String> for ServiceMethod {
    fn from(text: &String) -> ServiceMethod {
        ServiceMethod::from(text.clone())
    }
}

impl From<Box<str>> for ServiceMethod {
    fn from(text: Box<str>) -> ServiceMethod {
        ServiceMethod::from(String::from(text))
    }
}

impl From<std::borrow::Cow<'static, str>> for ServiceMethod {
    fn from(text: std::borrow::Cow<'static, str>) -> ServiceMethod {
        match text {
            std::borrow::Cow::Borrowed(text) => ServiceMethod::from_static(text),
            std::borrow::Cow::Owned(text) => ServiceMethod::from(text),
        }
    }
}

impl From<ServiceMethod> for String {
    fn from(method: ServiceMethod) -> String {
        method.as_str().to_owned()
    }
}

impl TryFrom<Bytes> for ServiceMethod {
    type Error = std::str::Utf8Error;

    /// The bytes as they are, once checked to be UTF-8.
    fn try_from(bytes: Bytes) -> Result<ServiceMethod, std::str::Utf8Error> {
        check_utf8(&bytes)?;
        Ok(ServiceMethod(Repr::Shared(bytes)))
    }
}

impl PartialEq<str> for ServiceMethod {
    fn eq(&self, other: &str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl PartialEq<&str> for ServiceMethod {
    fn eq(&self, other: &&str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl PartialEq<String> for ServiceMethod {
    fn eq(&self, other: &String) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl PartialEq<ServiceMethod> for str {
    fn eq(&self, other: &ServiceMethod) -> bool {
        other == self
    }
}

impl PartialEq<ServiceMethod> for &str {
    fn eq(&self, other: &ServiceMethod) -> bool {
        other == self
    }
}

impl PartialEq<ServiceMethod> for String {
    fn eq(&self, other: &ServiceMethod) -> bool {
        other == self
    }
}

impl fmt::Debug for ServiceMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for ServiceMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use std::hash::{BuildHasher, RandomState};

    use bytes::Bytes;

    use super::{Repr, ServiceMethod, INLINE};

    fn decoded(text: &[u8]) -> ServiceMethod {
        let mut frame = b"head".to_vec();
        frame.extend_from_slice(text);
        frame.extend_from_slice(b"tail");
        ServiceMethod::from_frame(&Bytes::from(frame), 4..4 + text.len()).expect("UTF-8")
    }

    #[test]
    fn short_decoded_methods_are_kept_in_place_and_long_ones_share_the_frame() {
        let short = "m".repeat(INLINE);
        let long = "m".repeat(INLINE + 1);
        assert!(matches!(decoded(short.as_bytes()).0, Repr::Inline { .. }));
        assert!(matches!(decoded(long.as_bytes()).0, Repr::Shared(_)));
        assert!(matches!(decoded(b"").0, Repr::Inline { len: 0, .. }));
        assert_eq!(
            std::mem::size_of::<ServiceMethod>(),
            std::mem::size_of::<Bytes>()
        );
    }

    #[test]
    fn either_form_is_the_same_text_to_every_reader() {
        let hasher = RandomState::new();
        for text in ["", "/home/echo", "/a/b/c/d/e/f/g/h/i/j/k/l/m/n", "/é/ü"] {
            let ours = decoded(text.as_bytes());
            let literal = ServiceMethod::from(text);
            let owned = ServiceMethod::from(text.to_owned());
            for m in [&ours, &literal, &owned] {
                assert_eq!(m, &literal);
                assert_eq!(m.as_str(), text);
                assert_eq!(m.len(), text.len());
                assert_eq!(m.is_empty(), text.is_empty());
                assert_eq!(m.cmp(&literal), std::cmp::Ordering::Equal);
                // `Borrow<str>` wants the hash of the text.
                assert_eq!(hasher.hash_one(m), hasher.hash_one(text));
                assert_eq!(&m.clone().into_bytes()[..], text.as_bytes());
            }
        }
        assert!(decoded(b"/a") < decoded(b"/b"));
        assert!(ServiceMethod::from_static("/b") > decoded(b"/a"));
    }

    #[test]
    fn a_method_that_is_not_utf8_is_refused_whatever_its_length() {
        let long = [&[b'/'; 39][..], b"\xff"].concat();
        for text in [&b"\xff"[..], &long] {
            let frame = Bytes::copy_from_slice(text);
            assert!(
                ServiceMethod::from_frame(&frame, 0..text.len()).is_err(),
                "{text:?}"
            );
        }
    }
}
