//! Where a client connects, and one attempt at connecting there: TCP (and
//! TLS), WebSocket, UDP or a Unix socket.

use std::{fmt, io, path::PathBuf, sync::Arc};

use tokio::net::{TcpStream, UnixStream};
use tokio_util::sync::CancellationToken;

use super::ClientBuilder;
use crate::{
    tls::{parse_server_name, ClientTlsConfig},
    transport::{ws_connect, Io, UdpIo, WsIo, WsSettings},
    Addr, EndpointKind,
};

/// Where a client connects.
pub(super) enum Target {
    Tcp(Arc<str>),
    Udp(String),
    Unix(PathBuf),
    Ws {
        url: String,
        /// `host:port` to connect the TCP stream to.
        addr: String,
        host: String,
        secure: bool,
    },
}

/// Splits a `ws://` or `wss://` URL into what connecting needs.
pub(super) fn parse_ws_url(url: &str) -> Result<Target, crate::BoxError> {
    let (secure, rest) = if let Some(rest) = url.strip_prefix("ws://") {
        (false, rest)
    } else if let Some(rest) = url.strip_prefix("wss://") {
        (true, rest)
    } else {
        return Err(format!("{url:?} is not a ws:// or wss:// URL").into());
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    // Credentials (`user:password@`) are not part of where to connect.
    let authority = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if authority.is_empty() {
        return Err(format!("{url:?} has no host").into());
    }
    // `[v6]:port`, or `host:port`: a colon after any bracketed address.
    let has_port = match authority.strip_prefix('[') {
        Some(v6) => v6.contains("]:"),
        None => authority.contains(':'),
    };
    let addr = if has_port {
        authority.to_owned()
    } else {
        format!("{authority}:{}", if secure { 443 } else { 80 })
    };
    Ok(Target::Ws {
        url: url.to_owned(),
        host: host_of(&addr).to_owned(),
        addr,
        secure,
    })
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Tcp(addr) => f.write_str(addr),
            Target::Unix(path) => write!(f, "unix:{}", path.display()),
            Target::Ws { url, .. } => f.write_str(url),
            Target::Udp(addr) => write!(f, "udp:{addr}"),
        }
    }
}

/// A client session's connection; each kind runs its own instance of the
/// driver (whether it carries messages is a property of its type).
pub(super) enum ClientIo {
    Stream(Io),
    Ws(Box<WsIo>),
    Udp(Box<UdpIo>),
}

pub(super) struct Connected {
    pub(super) io: ClientIo,
    pub(super) peer: Addr,
    pub(super) local: Addr,
    pub(super) kind: EndpointKind,
}

/// Connects (and shakes hands, for TLS and WebSocket) once. A WebSocket
/// session closed once `going_away` is cancelled says 1001.
pub(super) async fn open<H>(
    target: &Target,
    settings: &ClientBuilder<H>,
    going_away: &CancellationToken,
) -> io::Result<Connected> {
    match target {
        Target::Tcp(addr) => {
            let (stream, peer, local) = connect_tcp(addr).await?;
            let (io, kind) = match &settings.tls {
                None => (Io::Tcp(stream), EndpointKind::TcpClient),
                Some(tls) => (
                    tls_connect(tls, host_of(addr), stream).await?,
                    EndpointKind::TlsClient,
                ),
            };
            Ok(Connected {
                io: ClientIo::Stream(io),
                peer,
                local,
                kind,
            })
        }
        Target::Ws {
            url,
            addr,
            host,
            secure,
        } => {
            let (stream, peer, local) = connect_tcp(addr).await?;
            let (io, kind) = if *secure {
                let tls = settings.tls.as_ref().ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "a wss:// URL needs ClientBuilder::tls",
                    )
                })?;
                (
                    tls_connect(tls, host, stream).await?,
                    EndpointKind::WssClient,
                )
            } else {
                (Io::Tcp(stream), EndpointKind::WsClient)
            };
            let ws_settings = WsSettings {
                max: settings.config.max_packet_len,
                write_timeout: settings.config.write_timeout,
                going_away: Some(going_away.clone()),
            };
            let ws = Box::pin(ws_connect(io, url, ws_settings))
                .await
                .map_err(io::Error::other)?;
            Ok(Connected {
                io: ClientIo::Ws(Box::new(ws)),
                peer,
                local,
                kind,
            })
        }
        Target::Udp(addr) => {
            let peer = tokio::net::lookup_host(addr.as_str())
                .await?
                .next()
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("{addr} resolves to nothing"),
                    )
                })?;
            let unspecified: std::net::SocketAddr = if peer.is_ipv4() {
                ([0, 0, 0, 0], 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let socket = tokio::net::UdpSocket::bind(unspecified).await?;
            socket.connect(peer).await?;
            let local = socket.local_addr().map_or(Addr::Unknown, Addr::from);
            Ok(Connected {
                io: ClientIo::Udp(Box::new(UdpIo::Connected {
                    socket,
                    max: settings.config.max_packet_len,
                })),
                peer: Addr::from(peer),
                local,
                kind: EndpointKind::UdpClient,
            })
        }
        Target::Unix(path) => {
            let stream = UnixStream::connect(path).await?;
            Ok(Connected {
                io: ClientIo::Stream(Io::Unix(stream)),
                peer: Addr::Unix(Some(path.clone())),
                local: Addr::Unix(None),
                kind: EndpointKind::UnixClient,
            })
        }
    }
}

/// A TCP connection to `addr`, with its peer and local addresses.
async fn connect_tcp(addr: &str) -> io::Result<(TcpStream, Addr, Addr)> {
    let stream = TcpStream::connect(addr).await?;
    // Small packets must not wait for Nagle; batching is done above.
    let _ = stream.set_nodelay(true);
    let peer = Addr::from(stream.peer_addr()?);
    let local = stream.local_addr().map_or(Addr::Unknown, Addr::from);
    Ok((stream, peer, local))
}

/// TLS over `stream`, verifying the server as the configured name or else
/// as `host`.
async fn tls_connect(tls: &ClientTlsConfig, host: &str, stream: TcpStream) -> io::Result<Io> {
    let name = match &tls.server_name {
        Some(name) => name.clone(),
        None => {
            parse_server_name(host).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?
        }
    };
    let stream = tls.connector.connect(name, stream).await?;
    Ok(Io::TlsClient(Box::new(stream)))
}

/// The host part of `host:port` (`[v6]:port` included).
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}
