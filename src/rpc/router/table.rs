//! [`Table`]: the router's map from service method to route.

use std::{
    collections::HashMap,
    hash::{BuildHasherDefault, Hasher},
};

use super::Route;

/// Service methods to routes, hashed with [`MethodHasher`]. Keyed by the
/// method's bytes, so a call's method is looked up as it came off the
/// wire, without checking it is UTF-8 again (the decoder did).
#[derive(Clone, Default)]
pub(crate) struct Table {
    /// Each method's place in `routes`.
    index: HashMap<Box<[u8]>, usize, BuildHasherDefault<MethodHasher>>,
    /// The routes, at places that never change once the table is built,
    /// so a session can remember one (see `RouteCache`).
    routes: Vec<Route>,
}

impl Table {
    /// Routes `method` to `route`, replacing an earlier route.
    pub(crate) fn insert(&mut self, method: String, route: Route) {
        let key = method.into_bytes().into_boxed_slice();
        match self.index.get(&key) {
            Some(&at) => self.routes[at] = route,
            None => {
                self.index.insert(key, self.routes.len());
                self.routes.push(route);
            }
        }
    }

    /// Where `method`'s route is.
    pub(crate) fn position(&self, method: &[u8]) -> Option<usize> {
        self.index.get(method).copied()
    }

    /// `method`'s route.
    pub(crate) fn get(&self, method: &[u8]) -> Option<&Route> {
        self.position(method).and_then(|at| self.at(at))
    }

    /// The route at `at` (from `position`).
    pub(crate) fn at(&self, at: usize) -> Option<&Route> {
        self.routes.get(at)
    }

    pub(crate) fn contains(&self, method: &str) -> bool {
        self.index.contains_key(method.as_bytes())
    }

    /// The methods, sorted (for `Debug`).
    pub(crate) fn methods(&self) -> Vec<String> {
        let mut methods: Vec<String> = self
            .index
            .keys()
            .map(|m| String::from_utf8_lossy(m).into_owned())
            .collect();
        methods.sort();
        methods
    }

    /// The routes with their methods, taken out.
    pub(crate) fn into_routes(self) -> impl Iterator<Item = (String, Route)> {
        // The map holds each place in `routes` once: in place order, the
        // methods pair up with the routes.
        let mut methods: Vec<(usize, Box<[u8]>)> =
            self.index.into_iter().map(|(m, at)| (at, m)).collect();
        methods.sort_unstable_by_key(|(at, _)| *at);
        methods
            .into_iter()
            .zip(self.routes)
            .map(|((_, m), r)| (String::from_utf8_lossy(&m).into_owned(), r))
    }

    /// Every route replaced by what `wrap` makes of it.
    pub(crate) fn map(self, wrap: impl FnMut(Route) -> Route) -> Table {
        Table {
            index: self.index,
            routes: self.routes.into_iter().map(wrap).collect(),
        }
    }
}

/// A service method's hash: its length, then its bytes a word (8 bytes)
/// at a time, each mixed in with one rotate, xor and multiply (the mix of
/// `rustc-hash`'s FxHasher), then a finalizer that spreads every bit over
/// the low bits the table indexes by and the high bits it tags with.
/// SipHash cost as much per call as the rest of routing, and hashing a
/// byte at a time (FNV-1a) was still 18 multiplies for `/home/echo`. The
/// keys are the routes the application registered, fixed once the peer
/// runs; a peer's methods are only looked up, never inserted, so colliding
/// names sent on purpose cannot grow a chain. Written here rather than
/// taken from a crate: it is these few lines, and `rustc-hash` would be a
/// dependency for them alone.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct MethodHasher(u64);

impl MethodHasher {
    /// FxHasher's multiplier.
    const K: u64 = 0xf135_7aea_2e62_a9c5;

    fn mix(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::K);
    }
}

impl Hasher for MethodHasher {
    fn finish(&self) -> u64 {
        // MurmurHash3's 64-bit finalizer.
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            self.mix(u64::from_le_bytes(w));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            // Byte by byte: a copy of a length known only here is a call
            // to `memcpy`, dearer than these few shifts.
            let w = rest
                .iter()
                .rev()
                .fold(0u64, |w, &b| (w << 8) | u64::from(b));
            self.mix(w);
        }
    }

    /// The length a slice's `Hash` writes first: one mix, not eight bytes.
    fn write_usize(&mut self, n: usize) {
        self.mix(n as u64);
    }
}

#[cfg(test)]
mod tests {
    use std::hash::{BuildHasher, BuildHasherDefault};

    use super::{MethodHasher, Table};
    use crate::rpc::router::{Refuse, Route};

    fn hash(method: &[u8]) -> u64 {
        BuildHasherDefault::<MethodHasher>::default().hash_one(method)
    }

    #[test]
    fn methods_differing_in_a_byte_or_in_length_hash_apart() {
        let methods: [&[u8]; 8] = [
            b"",
            b"/",
            b"/home/echo",
            b"/home/echp",
            b"/home/fail",
            b"/home/echo\0",
            b"/home/echo/and/more/than/one/word",
            b"/home/echo/and/more/than/one/wore",
        ];
        for (i, a) in methods.iter().enumerate() {
            assert_eq!(hash(a), hash(a), "the same bytes hash the same");
            for b in &methods[i + 1..] {
                assert_ne!(hash(a), hash(b), "{a:?} and {b:?}");
            }
        }
    }

    #[test]
    fn the_table_finds_each_route_by_its_bytes_alone() {
        let mut table = Table::default();
        let names = ["/a", "/a/", "/home/echo", "/home/echo/", "/h"];
        for name in names {
            table.insert(name.to_owned(), Route::handler(Refuse));
        }
        for name in names {
            assert!(table.get(name.as_bytes()).is_some(), "{name}");
        }
        assert!(table.get(b"/home/ech").is_none());
        assert!(table.get(b"/home/echo//").is_none());
        assert!(table.get(b"").is_none());
    }
}
