//! [`ServiceMethod`]: a message's route as shared bytes.

use std::{borrow::Borrow, fmt, hash, ops::Deref};

use bytes::Bytes;

/// A service method (`/home/echo`): UTF-8 text kept in [`Bytes`], so that a
/// literal costs no allocation (it points at the static text) and a decoded
/// one none either (it is a slice of the frame it came in). It reads as a
/// `str` everywhere one is expected.
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
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServiceMethod(
    /// Always UTF-8: every constructor starts from text or checks it.
    Bytes,
);

impl ServiceMethod {
    /// No service method (what replies carry).
    pub const fn new() -> ServiceMethod {
        ServiceMethod(Bytes::new())
    }

    /// A service method pointing at static text.
    pub const fn from_static(text: &'static str) -> ServiceMethod {
        ServiceMethod(Bytes::from_static(text.as_bytes()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Every constructor keeps the bytes UTF-8; the check is a short
        // scan (a method is at most 255 bytes on the wire), and keeps this
        // module free of `unsafe`.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The text's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
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
        self.0.len()
    }

    /// Whether it is empty (as replies' are).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The bytes it is kept in.
    pub fn into_bytes(self) -> Bytes {
        self.0
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
        ServiceMethod(Bytes::from(text))
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
        // Methods are ASCII paths: checked a word at a time, the full
        // UTF-8 check only for the rest.
        if !bytes.is_ascii() {
            std::str::from_utf8(&bytes)?;
        }
        Ok(ServiceMethod(bytes))
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
