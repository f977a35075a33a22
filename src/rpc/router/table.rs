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
    routes: HashMap<Box<[u8]>, Route, BuildHasherDefault<MethodHasher>>,
}

impl Table {
    /// Routes `method` to `route`, replacing an earlier route.
    pub(crate) fn insert(&mut self, method: String, route: Route) {
        self.routes
            .insert(method.into_bytes().into_boxed_slice(), route);
    }

    pub(crate) fn get(&self, method: &[u8]) -> Option<&Route> {
        self.routes.get(method)
    }

    pub(crate) fn contains(&self, method: &str) -> bool {
        self.routes.contains_key(method.as_bytes())
    }

    /// The methods, sorted (for `Debug`).
    pub(crate) fn methods(&self) -> Vec<String> {
        let mut methods: Vec<String> = self
            .routes
            .keys()
            .map(|m| String::from_utf8_lossy(m).into_owned())
            .collect();
        methods.sort();
        methods
    }

    /// The routes with their methods, taken out.
    pub(crate) fn into_routes(self) -> impl Iterator<Item = (String, Route)> {
        self.routes
            .into_iter()
            .map(|(m, r)| (String::from_utf8_lossy(&m).into_owned(), r))
    }

    /// Every route replaced by what `wrap` makes of it.
    pub(crate) fn map(self, mut wrap: impl FnMut(Route) -> Route) -> Table {
        Table {
            routes: self.routes.into_iter().map(|(m, r)| (m, wrap(r))).collect(),
        }
    }
}

/// FNV-1a over a service method's bytes: one multiply per byte, where the
/// standard library's SipHash cost as much per call as the rest of
/// routing (a method is a few dozen bytes, looked up once per call). The
/// keys are the routes the application registered, fixed once the peer
/// runs; a peer's methods are only looked up, never inserted, so colliding
/// names sent on purpose cannot grow a chain. Written here rather than
/// taken from a crate: it is these few lines, and the crates that offer it
/// (`fnv`, `rustc-hash`) would be a dependency for them alone.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MethodHasher(u64);

impl Default for MethodHasher {
    fn default() -> MethodHasher {
        MethodHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for MethodHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::hash::{BuildHasher, BuildHasherDefault};

    use super::MethodHasher;

    #[test]
    fn fnv1a_matches_the_published_vectors() {
        let hash = |s: &[u8]| {
            let mut h = MethodHasher::default();
            std::hash::Hasher::write(&mut h, s);
            std::hash::Hasher::finish(&h)
        };
        // From the FNV reference test suite.
        assert_eq!(hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(hash(b"foobar"), 0x8594_4171_f739_67e8);
        // Distinct methods land apart.
        let b = BuildHasherDefault::<MethodHasher>::default();
        assert_ne!(b.hash_one("/home/echo"), b.hash_one("/home/fail"));
    }
}
