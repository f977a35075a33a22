//! Serving: the accept loop, each connection's handshakes and session,
//! and the UDP endpoint's virtual sessions.

use std::{
    collections::HashMap,
    future::Future,
    io,
    marker::PhantomData,
    net::SocketAddr,
    sync::atomic::{AtomicUsize, Ordering},
    sync::Arc,
    time::Duration,
};

use bytes::Bytes;
use tokio::{net::UdpSocket, sync::mpsc};
use tokio_util::codec::Decoder;
use tower::ServiceExt;
use tracing::Instrument;

use super::{Accepted, Listener, ServerBuilder, Shared};
use crate::{
    codec::MakeCodec,
    driver,
    transport::{
        udp_peer_session, ws_accept, Io, StreamIo, Transport, WsHandshakeError, WsSettings,
    },
    Addr, BoxError, EndpointKind, MakeSessionService, Session, SessionConfig, WeakSession,
};

/// Whether an accept error concerns one connection only (retry at once)
/// rather than the process (back off).
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// The transport's name in a session's span.
pub(crate) fn transport_name(kind: EndpointKind) -> &'static str {
    match kind {
        EndpointKind::TlsServer | EndpointKind::TlsClient => "tls",
        EndpointKind::UnixServer | EndpointKind::UnixClient => "unix",
        EndpointKind::WsServer | EndpointKind::WsClient => "ws",
        EndpointKind::WssServer | EndpointKind::WssClient => "wss",
        EndpointKind::UdpServer | EndpointKind::UdpClient => "udp",
        _ => "tcp",
    }
}

/// What a UDP endpoint keeps of each peer's virtual session.
struct Peer<W> {
    datagrams: mpsc::Sender<Bytes>,
    session: WeakSession<W>,
    /// The peer's place in the table, given back when the entry goes.
    _slot: Slot,
}

/// Closes the live session idle the longest, with an error saying why, and
/// forgets it, freeing its slot. False when there is none or the table is
/// not full (room was freed by sessions that ended).
fn evict_longest_idle<W>(peers: &mut HashMap<SocketAddr, Peer<W>>, cap: usize) -> bool {
    if peers.len() < cap {
        return true;
    }
    let oldest = peers
        .iter()
        .filter_map(|(addr, p)| p.session.upgrade().map(|s| (*addr, s)))
        .min_by_key(|(_, s)| s.active());
    let Some((addr, session)) = oldest else {
        return false;
    };
    tracing::info!(peer = %addr, "UDP session table full: evicting the longest idle session");
    session.close_with_error(format!(
        "UDP session table full: evicted as the longest idle of {} sessions for a new peer",
        peers.len()
    ));
    peers.remove(&addr);
    true
}

/// The cap on a UDP endpoint's virtual sessions when the builder sets none.
pub(super) const DEFAULT_UDP_SESSIONS: usize = 4096;

/// Holds one of the server's session slots until dropped: from admission
/// (before any handshake) to the end of the session's task, so the cap
/// counts sessions still shaking hands too.
pub(super) struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What every task of one server shares.
pub(super) struct Serving<MC, M, R, W> {
    pub(super) builder: ServerBuilder,
    pub(super) budget: Option<Arc<crate::budget::InputBudget>>,
    pub(super) codec: MC,
    /// Sessions start in their own tasks (a handshake must not hold up
    /// accepting), and they take turns with the new-session callback.
    pub(super) make: tokio::sync::Mutex<M>,
    pub(super) shared: Arc<Shared<W>>,
    pub(super) packet: PhantomData<fn() -> R>,
}

impl<MC, M, R, W> Serving<MC, M, R, W>
where
    MC: MakeCodec<W>,
    MC::Codec: Decoder<Item = R>,
    M: MakeSessionService<R, W>,
    R: Send + 'static,
    W: Send + 'static,
{
    /// Takes a session slot, unless `max` are taken.
    fn admit(&self, max: Option<usize>) -> Option<Slot> {
        let slots = &self.shared.slots;
        let taken = slots.fetch_add(1, Ordering::AcqRel);
        let slot = Slot(Arc::clone(slots));
        (max.is_none_or(|max| taken < max)).then_some(slot)
    }

    pub(super) async fn accept_loop(self: Arc<Self>, listener: Listener) {
        const MIN_BACKOFF: Duration = Duration::from_millis(5);
        const MAX_BACKOFF: Duration = Duration::from_secs(1);
        if let Listener::Udp(socket) = &listener {
            Arc::clone(&self).udp_endpoint(Arc::clone(socket)).await;
            return;
        }
        let mut backoff = MIN_BACKOFF;
        loop {
            let accepted = tokio::select! {
                _ = self.shared.stages.close.cancelled() => break,
                r = listener.accept() => r,
            };
            let (conn, peer, local) = match accepted {
                Ok(conn) => {
                    backoff = MIN_BACKOFF;
                    conn
                }
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "accept failed; backing off");
                    tokio::select! {
                        _ = self.shared.stages.close.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            let Some(slot) = self.admit(self.builder.max_sessions) else {
                tracing::warn!(%peer, "session limit reached; connection refused");
                drop(conn);
                continue;
            };
            let transport = match (&conn, &self.builder.tls, &self.builder.ws.path) {
                (Accepted::Tcp(_), None, None) => "tcp",
                (Accepted::Tcp(_), Some(_), None) => "tls",
                (Accepted::Tcp(_), None, Some(_)) => "ws",
                (Accepted::Tcp(_), Some(_), Some(_)) => "wss",
                (Accepted::Unix(_), ..) => "unix",
            };
            // The handshake runs in a connection span; the session gets its own
            // span once it exists.
            let span = driver::task_span(tracing::info_span!("connection", %peer, transport));
            // The slot goes in as an argument: an async block that captured
            // the session's future and awaited it would hold that future
            // twice (2 KiB more per idle session, measured).
            self.shared.tracker.spawn(
                Arc::clone(&self)
                    .start_session(conn, peer, local, slot)
                    .instrument(span),
            );
        }
        if let Listener::Unix { file, .. } = &listener {
            file.remove_if_ours();
        }
    }

    /// One accepted connection: the TLS handshake if any, the WebSocket
    /// upgrade if any, then the session. The handshakes share one deadline.
    async fn start_session(self: Arc<Self>, conn: Accepted, peer: Addr, local: Addr, slot: Slot) {
        let timeout = self.builder.handshake_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let (io, kind) = match (conn, &self.builder.tls) {
            (Accepted::Tcp(stream), None) => (Io::Tcp(stream), EndpointKind::TcpServer),
            (Accepted::Unix(stream), _) => (Io::Unix(stream), EndpointKind::UnixServer),
            (Accepted::Tcp(stream), Some(tls)) => {
                let handshake = tokio::time::timeout_at(
                    deadline,
                    // Boxed: the handshake's state is large and lives only
                    // until it is done; inline, every idle session's task
                    // would keep room for it.
                    Box::pin(tls.acceptor.accept(stream)),
                );
                let done = tokio::select! {
                    _ = self.shared.stages.close.cancelled() => return,
                    done = handshake => done,
                };
                match done {
                    Ok(Ok(stream)) => (Io::TlsServer(Box::new(stream)), EndpointKind::TlsServer),
                    Ok(Err(error)) => {
                        tracing::warn!(%error, "TLS handshake failed; connection closed");
                        return;
                    }
                    Err(_) => {
                        tracing::warn!(?timeout, "TLS handshake timed out; connection closed");
                        return;
                    }
                }
            }
        };
        let config = self.builder.config.clone();
        let (ws, kind) = match (&self.builder.ws.path, kind) {
            (None, _) | (_, EndpointKind::UnixServer) => {
                self.run_session(StreamIo(io), kind, local, peer, config, slot)
                    .await;
                return;
            }
            (Some(_), kind) => {
                let settings = WsSettings {
                    max: self.builder.config.max_packet_len,
                    write_timeout: self.builder.config.write_timeout,
                    going_away: Some(self.shared.stages.close.clone()),
                };
                // Boxed: the upgrade's state lives only while it runs, not in
                // every session task's future.
                let handshake = tokio::time::timeout_at(
                    deadline,
                    Box::pin(ws_accept(io, &self.builder.ws, settings)),
                );
                let done = tokio::select! {
                    _ = self.shared.stages.close.cancelled() => return,
                    done = handshake => done,
                };
                match done {
                    Ok(Ok(ws)) => {
                        let kind = if kind == EndpointKind::TlsServer {
                            EndpointKind::WssServer
                        } else {
                            EndpointKind::WsServer
                        };
                        (ws, kind)
                    }
                    Ok(Err(WsHandshakeError::Refused { status, reason })) => {
                        tracing::info!(
                            status,
                            reason,
                            "WebSocket handshake refused with an HTTP error; connection closed"
                        );
                        return;
                    }
                    Ok(Err(WsHandshakeError::Closed)) => {
                        tracing::debug!("connection closed before a WebSocket upgrade request");
                        return;
                    }
                    Ok(Err(error)) => {
                        tracing::warn!(%error, "WebSocket handshake failed; connection closed");
                        return;
                    }
                    Err(_) => {
                        tracing::warn!(
                            ?timeout,
                            "WebSocket handshake timed out; connection closed"
                        );
                        return;
                    }
                }
            }
        };
        // Boxed: the two kinds of session future would otherwise both be
        // laid out in every connection's task (rustc does not overlap
        // them), doubling what an idle TCP session holds.
        Box::pin(self.run_session(ws, kind, local, peer, config, slot)).await;
    }

    /// Runs one session over an established link: registers it, asks the
    /// new-session callback for its stack, and drives it to its end.
    fn run_session<T: Transport + Send + 'static>(
        self: Arc<Self>,
        link: T,
        kind: EndpointKind,
        local: Addr,
        peer: Addr,
        config: SessionConfig,
        slot: Slot,
    ) -> impl Future<Output = ()> {
        // Not an async fn: one that awaited `run_made_session` would hold
        // its arguments beside that future, in every idle session's task.
        let session = Session::with_stages(kind, local, peer, config, &self.shared.stages);
        self.run_made_session(link, session, Some(slot))
    }

    /// Runs a session already made (a UDP peer's, which the endpoint keeps
    /// a handle to).
    async fn run_made_session<T: Transport + Send + 'static>(
        self: Arc<Self>,
        link: T,
        session: Session<W>,
        slot: Option<Slot>,
    ) {
        let kind = session.kind();
        let span = driver::task_span(tracing::info_span!(
            parent: None,
            "session",
            id = session.id(),
            peer = %session.peer_addr(),
            transport = transport_name(kind),
        ));
        let registered = self.shared.registry.register(&session);
        let making = {
            let mut make = self.make.lock().await;
            let ready: Result<&mut M, BoxError> = tokio::select! {
                _ = self.shared.stages.close.cancelled() => Err("server shutting down".into()),
                ready = make.ready() => ready.map_err(Into::into),
            };
            ready.and_then(|make| driver::call_make(make, &session))
        };
        let prepared = driver::prepare(&session, making, &self.codec)
            .instrument(span.clone())
            .await;
        let Some((codec, svc)) = prepared else {
            return;
        };
        // The running session gets a task of its own, holding its slot and
        // registration: this one, with the handshakes' and the callback's
        // state laid out in it, ends here instead of idling beside it.
        let running = driver::run_contained(
            link,
            codec,
            svc,
            session,
            self.budget.clone(),
            (slot, registered),
        );
        self.shared.tracker.spawn(running.instrument(span));
    }

    /// A UDP server's loop: each peer gets a virtual session, fed the
    /// datagrams that peer sends; a reply goes back to it (getty's
    /// `UDPContext`). A virtual session ends after its read timeout (60 s
    /// unless the session config sets one), and the peer's next datagram
    /// starts a new one.
    async fn udp_endpoint(self: Arc<Self>, socket: Arc<UdpSocket>) {
        let local = socket.local_addr().map_or(Addr::Unknown, Addr::from);
        let mut config = self.builder.config.clone();
        if config.read_timeout.is_none() {
            config.read_timeout = Some(Duration::from_secs(60));
        }
        let mut peers: HashMap<SocketAddr, Peer<W>> = HashMap::new();
        let mut buf = vec![0u8; 65_536];
        let mut received: u64 = 0;
        let cap = self.builder.max_sessions.unwrap_or(DEFAULT_UDP_SESSIONS);
        loop {
            let (n, from) = tokio::select! {
                _ = self.shared.stages.close.cancelled() => break,
                r = socket.recv_from(&mut buf) => match r {
                    Ok(r) => r,
                    // An ICMP error for an earlier reply; nothing to do here.
                    Err(e) if is_connection_error(&e) => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, "UDP receive failed; retrying");
                        tokio::select! {
                            _ = self.shared.stages.close.cancelled() => break,
                            _ = tokio::time::sleep(Duration::from_millis(5)) => continue,
                        }
                    }
                },
            };
            received += 1;
            if received % 1024 == 0 {
                // Forget peers whose sessions ended.
                peers.retain(|_, p| !p.datagrams.is_closed());
            }
            let mut datagram = Bytes::copy_from_slice(&buf[..n]);
            if let Some(p) = peers.get(&from) {
                match p.datagrams.try_send(datagram) {
                    Ok(()) => continue,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        tracing::debug!(peer = %from, "peer's session is behind; datagram dropped");
                        continue;
                    }
                    // Its session ended: this datagram starts a new one.
                    Err(mpsc::error::TrySendError::Closed(d)) => {
                        peers.remove(&from);
                        datagram = d;
                    }
                }
            }
            // Every new source address makes a session: without a cap a
            // flood of spoofed sources would make them without end.
            // The table holds each peer's slot: an evicted peer's is free at
            // once, while its session drains.
            let slot = match self.admit(Some(cap)) {
                Some(slot) => slot,
                None => {
                    // A full table must not lock new peers out until the
                    // idle ones time out: the longest idle makes way.
                    peers.retain(|_, p| !p.datagrams.is_closed());
                    if !evict_longest_idle(&mut peers, cap) {
                        tracing::warn!(peer = %from, "session limit reached; datagram dropped");
                        continue;
                    }
                    match self.admit(Some(cap)) {
                        Some(slot) => slot,
                        None => {
                            tracing::warn!(peer = %from, "session limit reached; datagram dropped");
                            continue;
                        }
                    }
                }
            };
            let (io, tx) = udp_peer_session(Arc::clone(&socket), from, config.max_packet_len);
            let _ = tx.try_send(datagram);
            let session = Session::with_stages(
                EndpointKind::UdpServer,
                local.clone(),
                Addr::from(from),
                config.clone(),
                &self.shared.stages,
            );
            peers.insert(
                from,
                Peer {
                    datagrams: tx,
                    session: session.downgrade(),
                    _slot: slot,
                },
            );
            let session = Arc::clone(&self).run_made_session(io, session, None);
            self.shared.tracker.spawn(session);
        }
    }
}
