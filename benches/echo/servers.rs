//! The servers under load: the library's echo server, built as
//! `examples/echo_server.rs` builds it, and the hand-written floors (the
//! least work any echo server of that protocol must do). Each runs in a
//! server child of its own, on the runtime `examples/echo_server.rs` uses:
//! multi-thread with `--threads` workers (1 by default).

use std::{
    convert::Infallible, io::Write, net::SocketAddr, process::ExitCode, sync::Arc, time::Duration,
};

use bytes::{Bytes, BytesMut};
use futures_util::{FutureExt, SinkExt, StreamExt};
use getty::{
    codec::LengthCodec, new_session_fn, tls::ServerTlsConfig, EventListener, ListenerService,
    Server, ServerHandle, Session, SessionConfig,
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    runtime::Runtime,
    task::JoinSet,
};
use tokio_rustls::{rustls::ServerConfig, TlsAcceptor};
use tokio_tungstenite::{
    tungstenite::{protocol::WebSocketConfig, Message},
    WebSocketStream,
};
use tokio_util::codec::BytesCodec;

use crate::{
    child::{param, param_num, ChildProc},
    part::Part,
    tls,
};

/// The role of a server child.
pub(crate) const ROLE: &str = "server";
const KIND_ENV: &str = "ECHO_BENCH_SERVER";
const PART_ENV: &str = "ECHO_BENCH_PART";
const THREADS_ENV: &str = "ECHO_BENCH_THREADS";
const MAX_IN_FLIGHT_ENV: &str = "ECHO_BENCH_MAX_IN_FLIGHT";

/// A handshake stalling this long means a broken client.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The library's WebSocket endpoint; the load asks for it from both.
pub(crate) const WS_PATH: &str = "/";

/// Which implementation a server child runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Kind {
    Library,
    Floor,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Library => "library",
            Kind::Floor => "floor",
        }
    }
}

/// A server child, seen from the parent.
pub(crate) struct ServerProc {
    pub(crate) kind: Kind,
    pub(crate) addr: SocketAddr,
    proc: ChildProc,
}

/// The settings both server children share.
pub(crate) struct ServerSpec<'a> {
    pub(crate) part: Part,
    pub(crate) threads: usize,
    pub(crate) max_in_flight: Option<usize>,
    pub(crate) cpu: Option<usize>,
    pub(crate) tls: Option<&'a tls::Material>,
}

impl ServerProc {
    pub(crate) fn start(kind: Kind, spec: &ServerSpec<'_>) -> Result<ServerProc, String> {
        let mut envs = vec![
            (KIND_ENV, kind.name().to_owned()),
            (PART_ENV, spec.part.name().to_owned()),
            (THREADS_ENV, spec.threads.to_string()),
        ];
        if let Some(n) = spec.max_in_flight {
            envs.push((MAX_IN_FLIGHT_ENV, n.to_string()));
        }
        if let Some(m) = spec.tls {
            envs.push((tls::CERT_ENV, m.cert.clone()));
            envs.push((tls::KEY_ENV, m.key.clone()));
        }
        let name = format!("{} {} server", spec.part.name(), kind.name());
        let proc = ChildProc::spawn(&name, ROLE, spec.cpu, &envs)?;
        let addr = proc.listening_addr()?;
        Ok(ServerProc { kind, addr, proc })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Asks the server to shut down and waits for it.
    pub(crate) fn stop(self) -> Result<(), String> {
        self.proc.finish(Duration::from_secs(15))
    }
}

/// The server child: serves until its stdin closes.
pub(crate) fn child_main() -> ExitCode {
    match serve_until_stdin_closes() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("echo bench {ROLE} child: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve_until_stdin_closes() -> Result<(), String> {
    let kind = match param(KIND_ENV)?.as_str() {
        "library" => Kind::Library,
        "floor" => Kind::Floor,
        other => return Err(format!("{KIND_ENV}=`{other}`")),
    };
    let part = Part::parse(&param(PART_ENV)?)?;
    let threads: usize = param_num(THREADS_ENV)?;
    let max_in_flight = match std::env::var(MAX_IN_FLIGHT_ENV) {
        Ok(_) => Some(param_num(MAX_IN_FLIGHT_ENV)?),
        Err(_) => None,
    };
    let tls = match part {
        Part::Tls => Some(tls::server_config(
            &param(tls::CERT_ENV)?,
            &param(tls::KEY_ENV)?,
        )?),
        _ => None,
    };
    // As examples/echo_server.rs builds it.
    let rt = runtime(threads)?;
    // Started on the runtime's workers, which serve on while this thread
    // waits for stdin.
    let running = rt.block_on(async {
        match kind {
            Kind::Library => start_library(max_in_flight, part, tls)
                .await
                .map(Running::Library),
            Kind::Floor => {
                let floor = match part {
                    Part::Ws => start_ws_floor().await,
                    _ => start_floor(tls.map(TlsAcceptor::from)).await,
                };
                floor.map(|(addr, task)| Running::Floor(addr, task))
            }
        }
    })?;
    let addr = match &running {
        Running::Library(h) => h.local_addr(),
        Running::Floor(addr, _) => *addr,
    };
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {addr}")
            .and_then(|()| out.flush())
            .map_err(|e| format!("stdout: {e}"))?;
    }
    let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
    match running {
        Running::Library(h) => rt.block_on(h.shutdown(Duration::from_secs(5))),
        Running::Floor(_, task) => task.abort(),
    }
    Ok(())
}

enum Running {
    Library(ServerHandle),
    Floor(SocketAddr, tokio::task::JoinHandle<()>),
}

/// The runtime both servers run on: the flavor and worker count of
/// `examples/echo_server.rs` (multi-thread, `--threads`, default 1).
pub(crate) fn runtime(threads: usize) -> Result<Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot build the server runtime: {e}"))
}

// ----- the library ----------------------------------------------------------

/// Echoes each packet: `Bytes` from `LengthCodec`, `BytesMut` (one whole
/// WebSocket message) from `BytesCodec`, as `examples/echo_server.rs`.
struct Echo;

impl<P: Into<Bytes> + Send + 'static> EventListener<P> for Echo {
    fn on_message(&mut self, _session: &Session, pkg: P) -> Option<Bytes> {
        Some(pkg.into())
    }
}

/// The library's echo server for `part`: length-prefixed packets over TCP
/// or TLS, whole binary messages over WebSocket.
pub(crate) async fn start_library(
    max_in_flight: Option<usize>,
    part: Part,
    tls: Option<Arc<ServerConfig>>,
) -> Result<ServerHandle, String> {
    let mut config = SessionConfig::default();
    if let Some(n) = max_in_flight {
        config = config.max_in_flight(n);
    }
    let mut builder = Server::builder().session_config(config);
    if let Some(tls) = tls {
        builder = builder.tls(ServerTlsConfig::from_rustls(tls));
    }
    if part == Part::Ws {
        builder = builder.websocket(WS_PATH);
    }
    let server = builder
        .bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("library server bind: {e}"))?;
    let make = new_session_fn(|_: &Session| Ok::<_, Infallible>(ListenerService::new(Echo)));
    Ok(match part {
        Part::Tcp | Part::Tls => server.serve(LengthCodec::new(), make),
        Part::Ws => server.serve(BytesCodec::new(), make),
    })
}

// ----- the floors -----------------------------------------------------------

/// The TCP and TLS floor: what a minimal hand-written echo server does per
/// read batch, the TLS handshake in the connection's task as the library
/// does it.
async fn start_floor(
    tls: Option<TlsAcceptor>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("floor server bind: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let task = tokio::spawn(async move {
        let mut conns = JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            // Same socket option as the library, so neither waits for Nagle.
            let _ = stream.set_nodelay(true);
            match &tls {
                None => conns.spawn(floor_conn(stream)),
                Some(acceptor) => {
                    let accept = acceptor.accept(stream);
                    conns.spawn(async move {
                        if let Ok(Ok(stream)) =
                            tokio::time::timeout(HANDSHAKE_TIMEOUT, accept).await
                        {
                            floor_conn(stream).await;
                        }
                    })
                }
            };
            while conns.try_join_next().is_some() {}
        }
    });
    Ok((addr, task))
}

/// One floor connection: read a batch, echo every complete frame in it with
/// one write and one flush (a no-op on TCP; on TLS it pushes out what the
/// TLS layer still holds).
async fn floor_conn<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
    let mut rbuf = BytesMut::with_capacity(16 * 1024);
    let mut wbuf = BytesMut::with_capacity(16 * 1024);
    loop {
        if rbuf.capacity() - rbuf.len() < 1024 {
            rbuf.reserve(16 * 1024);
        }
        match stream.read_buf(&mut rbuf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        while rbuf.len() >= 4 {
            let len = u32::from_be_bytes([rbuf[0], rbuf[1], rbuf[2], rbuf[3]]) as usize;
            if rbuf.len() < 4 + len {
                break;
            }
            let frame = rbuf.split_to(4 + len);
            wbuf.extend_from_slice(&frame);
        }
        if !wbuf.is_empty() {
            if stream.write_all(&wbuf).await.is_err() || stream.flush().await.is_err() {
                return;
            }
            wbuf.clear();
        }
    }
}

/// The library's tungstenite settings (`transport/ws.rs`, `config`) at the
/// default `max_packet_len`, so the WebSocket floor parses and buffers as
/// the library does.
fn ws_config() -> WebSocketConfig {
    let max = SessionConfig::default().max_packet_len;
    WebSocketConfig::default()
        .read_buffer_size(16 * 1024)
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
}

/// The WebSocket floor: a hand-written tokio-tungstenite echo, the
/// handshake in the connection's task (as the library does it), then
/// `ws_floor_conn`.
async fn start_ws_floor() -> Result<(SocketAddr, tokio::task::JoinHandle<()>), String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("ws floor server bind: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let task = tokio::spawn(async move {
        let mut conns = JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            conns.spawn(async move {
                let accept = tokio_tungstenite::accept_async_with_config(stream, Some(ws_config()));
                if let Ok(Ok(ws)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, accept).await {
                    ws_floor_conn(ws).await;
                }
            });
            while conns.try_join_next().is_some() {}
        }
    });
    Ok((addr, task))
}

/// One WebSocket floor connection: wait for a message, then queue (`feed`)
/// an echo of it and of every further message already readable, and flush
/// once when none is: one socket write per batch, as the library's driver
/// flushes once per batch.
async fn ws_floor_conn(mut ws: WebSocketStream<TcpStream>) {
    while let Some(Ok(mut msg)) = ws.next().await {
        loop {
            let fed = match msg {
                Message::Binary(_) => ws.feed(msg).await,
                // tungstenite queued the reply: send it and stop.
                Message::Close(_) => {
                    let _ = ws.flush().await;
                    return;
                }
                // Pongs to pings are tungstenite's business.
                _ => Ok(()),
            };
            if fed.is_err() {
                return;
            }
            match ws.next().now_or_never() {
                Some(Some(Ok(next))) => msg = next,
                Some(_) => return,
                None => break,
            }
        }
        if ws.flush().await.is_err() {
            return;
        }
    }
}
