//! The escaping erpc uses for its status and meta fields (Go's
//! `url.QueryEscape` with `%20` for a space): the bytes `A-Z a-z 0-9 * - . _`
//! stay, every other byte becomes `%XX` in upper-case hex. Parsing is
//! `application/x-www-form-urlencoded` (`+` is a space, an invalid escape
//! is kept as it is), which `form_urlencoded` does.

use bytes::BytesMut;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};

/// Every byte but the unreserved ones Go leaves alone.
const ERPC: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'*')
    .remove(b'-')
    .remove(b'.')
    .remove(b'_');

/// Appends `s` escaped.
pub(crate) fn put_escaped(dst: &mut BytesMut, s: &str) {
    for part in percent_encoding::utf8_percent_encode(s, ERPC) {
        dst.extend_from_slice(part.as_bytes());
    }
}

/// The pairs of an urlencoded field, in order, empty pairs skipped.
pub(crate) fn pairs(src: &[u8]) -> form_urlencoded::Parse<'_> {
    form_urlencoded::parse(src)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_as_go_query_escape_with_percent_20() {
        let mut dst = BytesMut::new();
        put_escaped(&mut dst, "a b&=/é*-._~");
        assert_eq!(&dst[..], b"a%20b%26%3D%2F%C3%A9*-._%7E");
    }

    #[test]
    fn parses_plus_as_space_and_keeps_invalid_escapes() {
        let got: Vec<_> = pairs(b"k+1=v%2&&x").collect();
        assert_eq!(got.len(), 2);
        assert_eq!((&*got[0].0, &*got[0].1), ("k 1", "v%2"));
        assert_eq!((&*got[1].0, &*got[1].1), ("x", ""));
    }
}
