use std::{fmt, net::SocketAddr, path::PathBuf};

/// The address of one end of a session.
///
/// An enum rather than [`SocketAddr`] because not every transport has an IP
/// address (a Unix socket's peer is usually unnamed).
///
/// ```
/// use getty::Addr;
/// use std::net::SocketAddr;
///
/// let sa: SocketAddr = "127.0.0.1:8080".parse().unwrap();
/// let addr = Addr::from(sa);
/// assert_eq!(addr.to_string(), "127.0.0.1:8080");
/// assert_eq!(addr.as_socket_addr(), Some(sa));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Addr {
    /// An IPv4 or IPv6 socket address.
    Inet(SocketAddr),
    /// A Unix domain socket: its path, or `None` for an unnamed one (a
    /// connecting client's end usually is).
    Unix(Option<PathBuf>),
    /// No address is known.
    Unknown,
}

impl Addr {
    /// The IP socket address, when there is one.
    pub fn as_socket_addr(&self) -> Option<SocketAddr> {
        match self {
            Addr::Inet(a) => Some(*a),
            Addr::Unix(_) | Addr::Unknown => None,
        }
    }
}

impl From<SocketAddr> for Addr {
    fn from(a: SocketAddr) -> Self {
        Addr::Inet(a)
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Inet(a) => a.fmt(f),
            Addr::Unix(Some(path)) => write!(f, "unix:{}", path.display()),
            Addr::Unix(None) => f.write_str("unix:<unnamed>"),
            Addr::Unknown => f.write_str("<unknown>"),
        }
    }
}
