//! [`Meta`]: a message's metadata, erpc's ordered key/value list.

use std::fmt;

use bytes::BytesMut;

use super::escape;

/// A message's metadata: an ordered list of key/value pairs in which a key
/// may repeat (erpc's `utils.Args`). Lookups return the first value.
///
/// On the wire it is `k=v&k2=v2`, each key and value escaped, `=value` left
/// out when the value is empty. Text that is not UTF-8 after unescaping is
/// read lossily (U+FFFD).
///
/// ```
/// use getty::rpc::Meta;
///
/// let mut meta = Meta::new();
/// meta.add("k", "1");
/// meta.add("k", "2");
/// meta.set("X-Accept-Body-Codec", "115");
/// assert_eq!(meta.get("k"), Some("1"));
/// assert_eq!(meta.get_all("k").collect::<Vec<_>>(), ["1", "2"]);
/// assert_eq!(meta.to_query(), "k=1&k=2&X-Accept-Body-Codec=115");
/// assert_eq!(Meta::parse(meta.to_query().as_bytes()), meta);
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Meta {
    pairs: Vec<(String, String)>,
}

impl Meta {
    /// An empty list.
    pub fn new() -> Meta {
        Meta::default()
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, in order.
    pub fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Appends a pair, keeping any earlier values of `key` (erpc's `AddMeta`).
    pub fn add(&mut self, key: impl Into<String>, value: impl Into<String>) -> &mut Meta {
        self.pairs.push((key.into(), value.into()));
        self
    }

    /// Sets `key` to `value`: the first pair of `key` takes the value, later
    /// ones are removed; appended when absent (erpc's `SetMeta`).
    ///
    /// ```
    /// let mut meta = getty::rpc::Meta::new();
    /// meta.add("a", "1").add("b", "2").add("a", "3");
    /// meta.set("a", "9");
    /// assert_eq!(meta.to_query(), "a=9&b=2");
    /// ```
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) -> &mut Meta {
        let key = key.into();
        let value = value.into();
        match self.pairs.iter().position(|(k, _)| *k == key) {
            Some(first) => {
                self.pairs[first].1 = value;
                let mut i = 0;
                self.pairs.retain(|(k, _)| {
                    i += 1;
                    i - 1 == first || *k != key
                });
            }
            None => self.pairs.push((key, value)),
        }
        self
    }

    /// Removes every pair of `key` (erpc's `DelMeta`).
    pub fn remove(&mut self, key: &str) -> &mut Meta {
        self.pairs.retain(|(k, _)| k != key);
        self
    }

    /// The pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The number of pairs.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether there is no pair.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The list as erpc's query text.
    pub fn to_query(&self) -> String {
        let mut dst = BytesMut::new();
        self.encode(&mut dst);
        String::from_utf8_lossy(&dst).into_owned()
    }

    /// Appends the list's query text to `dst`.
    pub(crate) fn encode(&self, dst: &mut BytesMut) {
        for (i, (k, v)) in self.pairs.iter().enumerate() {
            if i > 0 {
                dst.extend_from_slice(b"&");
            }
            escape::put_escaped(dst, k);
            if !v.is_empty() {
                dst.extend_from_slice(b"=");
                escape::put_escaped(dst, v);
            }
        }
    }

    /// Parses erpc's query text; it never fails (empty pairs are skipped).
    ///
    /// ```
    /// let meta = getty::rpc::Meta::parse(b"k%201=v%26%3D%2F%C3%A9&&k=1");
    /// assert_eq!(meta.get("k 1"), Some("v&=/é"));
    /// assert_eq!(meta.len(), 2);
    /// ```
    pub fn parse(src: &[u8]) -> Meta {
        if src.is_empty() {
            return Meta::new();
        }
        Meta {
            pairs: escape::pairs(src)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        }
    }
}

impl fmt::Debug for Meta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Meta {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Meta {
        Meta {
            pairs: iter
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_the_golden_escapes_byte_for_byte() {
        let mut meta = Meta::new();
        meta.add("k 1", "v&=/é").add("k", "1").add("k", "2");
        meta.add("X-Accept-Body-Codec", "115");
        assert_eq!(
            meta.to_query(),
            "k%201=v%26%3D%2F%C3%A9&k=1&k=2&X-Accept-Body-Codec=115"
        );
    }

    #[test]
    fn an_empty_value_is_written_without_its_equals_sign() {
        let meta: Meta = [("flag", ""), ("a", "b")].into_iter().collect();
        assert_eq!(meta.to_query(), "flag&a=b");
        assert_eq!(Meta::parse(b"flag&a=b"), meta);
    }
}
