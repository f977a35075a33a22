//! Echo benchmark, run with `cargo bench --bench echo`.
//!
//! 1. TCP throughput: the library's echo server against a hand-written
//!    tokio echo loop (the "floor": the least work any length-prefixed echo
//!    server must do), both loaded by the same pipelined client, alternating
//!    runs; the headline is the median of the per-round ratios. Target:
//!    library >= 90% of the floor.
//! 2. TLS throughput: the same over TLS (a CA and a `localhost` leaf
//!    certificate made in memory at start with rcgen, the ring provider):
//!    the library's TLS server against a hand-written tokio-rustls echo loop
//!    of the same shape as the TCP floor, the client handshaking with
//!    tokio-rustls before the same pipelined load. Target: library >= 85%
//!    of the floor.
//! 3. WebSocket throughput: the library's WebSocket server (`websocket("/")`,
//!    one binary message per packet, `BytesCodec` as the whole-message codec,
//!    so no length prefix inside the messages) against a hand-written
//!    tokio-tungstenite echo loop (`accept_async` with the library's
//!    tungstenite settings; per wake-up it `feed`s back every message
//!    already available and flushes once), both loaded by the same
//!    pipelined tokio-tungstenite client (binary messages of the payload
//!    size, the same in-flight depth). Target: library >= 85% of the floor.
//! 4. Memory: heap bytes held per idle session with 10,000 idle TCP
//!    sessions on the library server. Target: <= 4 KiB.
//!
//! Environment knobs (defaults in brackets): `ECHO_SECS` measured seconds
//! per run [3], `ECHO_WARMUP_SECS` [1], `ECHO_ROUNDS` [9], `ECHO_THREADS`
//! server worker threads [1], `ECHO_CONNS` [100], `ECHO_DEPTH` packets in
//! flight per connection [16], `ECHO_PAYLOAD` bytes [581], `ECHO_MAX_IN_FLIGHT`
//! the library's `SessionConfig::max_in_flight` [library default],
//! `ECHO_IDLE_SESSIONS` [10000], `ECHO_SKIP` = a comma-separated list of
//! parts to skip: `tcp`, `tls`, `ws`, `throughput` (all three of those) or
//! `memory`, `ECHO_ONLY` = `library` or `floor` (one server alone in the
//! TCP, TLS and WebSocket parts, e.g. under a profiler;
//! `ECHO_SKIP=tcp,ws,memory ECHO_ONLY=library` runs the library's TLS
//! server alone, `ECHO_SKIP=tcp,tls,memory ECHO_ONLY=floor` the WebSocket
//! floor alone).

use std::{
    alloc::System,
    convert::Infallible,
    env,
    io::{BufRead, BufReader, Read, Write},
    net::SocketAddr,
    process::{Child, Command, ExitCode, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc, Arc,
    },
    time::{Duration, Instant},
};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::{FutureExt, SinkExt, StreamExt};
use getty::{
    codec::LengthCodec,
    new_session_fn,
    tls::{
        provider,
        rustls::{
            pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName},
            ClientConfig, RootCertStore, ServerConfig,
        },
        ServerTlsConfig,
    },
    EventListener, ListenerService, Server, ServerHandle, Session, SessionConfig,
};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    runtime::Runtime,
    task::JoinSet,
};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_tungstenite::{
    tungstenite::{protocol::WebSocketConfig, Message},
    WebSocketStream,
};
use tokio_util::codec::BytesCodec;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Set (to the server address) in the re-executed child that holds the idle
/// client sockets: the fd limit cannot hold both ends in one process.
const CHILD_ENV: &str = "ECHO_BENCH_CHILD";
const CHILD_COUNT_ENV: &str = "ECHO_BENCH_CHILD_COUNT";

/// Any single read or write stalling this long means a broken server.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
const HEAP_TARGET: usize = 4096;
const RATIO_TARGET: f64 = 0.90;
const TLS_RATIO_TARGET: f64 = 0.85;
const WS_RATIO_TARGET: f64 = 0.85;
/// The library's WebSocket endpoint; the client asks for it from both.
const WS_PATH: &str = "/";
/// The name in the server certificate, which the client verifies.
const TLS_SERVER_NAME: &str = "localhost";
const SERVER_THREADS: &str = "echo-server";
const CLIENT_THREADS: &str = "echo-client";

struct Config {
    secs: f64,
    warmup_secs: f64,
    rounds: usize,
    threads: usize,
    conns: usize,
    depth: usize,
    payload: usize,
    max_in_flight: Option<usize>,
    idle_sessions: usize,
    skip: String,
    only: String,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
    match env::var(name) {
        Ok(v) => v
            .parse()
            .map_err(|_| format!("{name}=`{v}` is not a valid value")),
        Err(_) => Ok(default),
    }
}

impl Config {
    fn from_env() -> Result<Config, String> {
        let c = Config {
            secs: env_or("ECHO_SECS", 3.0)?,
            warmup_secs: env_or("ECHO_WARMUP_SECS", 1.0)?,
            rounds: env_or("ECHO_ROUNDS", 9)?,
            threads: env_or("ECHO_THREADS", 1)?,
            conns: env_or("ECHO_CONNS", 100)?,
            depth: env_or("ECHO_DEPTH", 16)?,
            payload: env_or("ECHO_PAYLOAD", 581)?,
            max_in_flight: match env::var("ECHO_MAX_IN_FLIGHT") {
                Ok(_) => Some(env_or("ECHO_MAX_IN_FLIGHT", 1)?),
                Err(_) => None,
            },
            idle_sessions: env_or("ECHO_IDLE_SESSIONS", 10_000)?,
            skip: env::var("ECHO_SKIP").unwrap_or_default(),
            only: env::var("ECHO_ONLY").unwrap_or_default(),
        };
        for part in c.skip.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if !["tcp", "tls", "ws", "throughput", "memory"].contains(&part) {
                return Err(format!(
                    "ECHO_SKIP: unknown part `{part}` (tcp, tls, ws, throughput, memory)"
                ));
            }
        }
        if !["", "library", "floor"].contains(&c.only.as_str()) {
            return Err(format!("ECHO_ONLY=`{}`: library or floor", c.only));
        }
        if c.secs <= 0.0 || c.warmup_secs < 0.0 || c.rounds == 0 || c.threads == 0 {
            return Err("ECHO_SECS, ECHO_ROUNDS and ECHO_THREADS must be positive".into());
        }
        if c.conns == 0 || c.depth == 0 || c.payload < 9 {
            return Err("ECHO_CONNS and ECHO_DEPTH must be positive, ECHO_PAYLOAD >= 9".into());
        }
        Ok(c)
    }

    /// Whether `ECHO_SKIP` names this part (`throughput` covers tcp, tls
    /// and ws).
    fn skips(&self, part: &str) -> bool {
        self.skip
            .split(',')
            .map(str::trim)
            .any(|p| p == part || (p == "throughput" && ["tcp", "tls", "ws"].contains(&part)))
    }
}

fn main() -> ExitCode {
    if let Ok(addr) = env::var(CHILD_ENV) {
        return child_main(&addr);
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("echo bench failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let cfg = Config::from_env()?;
    raise_fd_limit();
    let server_rt = runtime(cfg.threads, SERVER_THREADS)?;
    // Its own runtime, so client and server each get a core instead of
    // competing inside one scheduler.
    let client_rt = runtime(1, CLIENT_THREADS)?;
    println!(
        "echo bench: server {} worker thread(s), client 1, {} connections x {} in flight, \
         {}-byte payloads, {}s warm-up + {}s measured, {} round(s)",
        cfg.threads, cfg.conns, cfg.depth, cfg.payload, cfg.warmup_secs, cfg.secs, cfg.rounds
    );
    if !cfg.skips("tcp") {
        throughput(&cfg, &server_rt, &client_rt, Part::Tcp)?;
    }
    if !cfg.skips("tls") {
        let tls = bench_tls()?;
        throughput(&cfg, &server_rt, &client_rt, Part::Tls(&tls))?;
    }
    if !cfg.skips("ws") {
        throughput(&cfg, &server_rt, &client_rt, Part::Ws)?;
    }
    if !cfg.skips("memory") {
        idle_memory(&cfg, &server_rt)?;
    }
    Ok(())
}

fn runtime(workers: usize, name: &str) -> Result<Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name(name)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot build the {name} runtime: {e}"))
}

fn raise_fd_limit() {
    match rlimit::Resource::NOFILE.get() {
        Ok((soft, hard)) if soft < hard => {
            if let Err(e) = rlimit::Resource::NOFILE.set(hard, hard) {
                eprintln!("warning: cannot raise the fd limit from {soft} to {hard}: {e}");
            }
        }
        Ok(_) => {}
        Err(e) => eprintln!("warning: cannot read the fd limit: {e}"),
    }
}

// ----- the servers -----------------------------------------------------------

/// Which throughput part: what the servers speak and the client loads.
#[derive(Clone, Copy)]
enum Part<'a> {
    Tcp,
    Tls(&'a BenchTls),
    Ws,
}

impl Part<'_> {
    fn name(self) -> &'static str {
        match self {
            Part::Tcp => "tcp",
            Part::Tls(_) => "tls",
            Part::Ws => "ws",
        }
    }

    fn target(self) -> f64 {
        match self {
            Part::Tcp => RATIO_TARGET,
            Part::Tls(_) => TLS_RATIO_TARGET,
            Part::Ws => WS_RATIO_TARGET,
        }
    }
}

/// Echoes each packet: `Bytes` from `LengthCodec`, `BytesMut` (one whole
/// WebSocket message) from `BytesCodec`.
struct Echo;

impl<P: Into<Bytes> + Send + 'static> EventListener<P> for Echo {
    fn on_message(&mut self, _session: &Session, pkg: P) -> Option<Bytes> {
        Some(pkg.into())
    }
}

/// The library's echo server for `part`: length-prefixed packets over TCP
/// or TLS, whole binary messages over WebSocket.
async fn start_library(
    max_in_flight: Option<usize>,
    part: Part<'_>,
) -> Result<ServerHandle, String> {
    let mut config = SessionConfig::default();
    if let Some(n) = max_in_flight {
        config = config.max_in_flight(n);
    }
    let mut builder = Server::builder().session_config(config);
    match part {
        Part::Tcp => {}
        Part::Tls(tls) => {
            builder = builder.tls(ServerTlsConfig::from_rustls(Arc::clone(&tls.server)));
        }
        Part::Ws => builder = builder.websocket(WS_PATH),
    }
    let server = builder
        .bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("library server bind: {e}"))?;
    Ok(match part {
        Part::Tcp | Part::Tls(_) => server.serve(
            LengthCodec::new(),
            new_session_fn(|_: &Session| Ok::<_, Infallible>(ListenerService::new(Echo))),
        ),
        Part::Ws => server.serve(
            BytesCodec::new(),
            new_session_fn(|_: &Session| Ok::<_, Infallible>(ListenerService::new(Echo))),
        ),
    })
}

/// The floor: what a minimal hand-written echo server does per read batch,
/// over plain TCP or, with an acceptor, over TLS (the handshake in the
/// connection's task, as the library does it).
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
                        if let Ok(Ok(stream)) = tokio::time::timeout(IO_TIMEOUT, accept).await {
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
/// default `max_packet_len` of 1 MiB, so the WebSocket floor parses and
/// buffers as the library does.
fn ws_config() -> WebSocketConfig {
    let max = SessionConfig::default().max_packet_len;
    WebSocketConfig::default()
        .read_buffer_size(16 * 1024)
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
}

/// The WebSocket floor: the handshake in the connection's task (as the
/// library does it), then `ws_floor_conn`.
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
                if let Ok(Ok(ws)) = tokio::time::timeout(IO_TIMEOUT, accept).await {
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

// ----- TLS material ----------------------------------------------------------

/// The TLS configurations both TLS servers and the client share.
struct BenchTls {
    server: Arc<ServerConfig>,
    connector: TlsConnector,
    server_name: ServerName<'static>,
}

/// A CA and a leaf certificate for `localhost` signed by it, made in
/// memory (webpki refuses a CA certificate as the end entity), with the
/// server configuration (leaf and key) and a client trusting the CA.
fn bench_tls() -> Result<BenchTls, String> {
    let rc = |what: &str| {
        let what = what.to_owned();
        move |e: rcgen::Error| format!("rcgen, {what}: {e}")
    };
    let ca_key = KeyPair::generate().map_err(rc("CA key"))?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(rc("CA"))?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "getty echo bench CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca_params.self_signed(&ca_key).map_err(rc("CA"))?;

    let leaf_key = KeyPair::generate().map_err(rc("leaf key"))?;
    let mut leaf_params =
        CertificateParams::new(vec![TLS_SERVER_NAME.to_owned()]).map_err(rc("leaf"))?;
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, TLS_SERVER_NAME);
    leaf_params.is_ca = IsCa::ExplicitNoCa;
    leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf = leaf_params
        .signed_by(&leaf_key, &ca, &ca_key)
        .map_err(rc("leaf"))?;

    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let server = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .and_then(|b| {
            b.with_no_client_auth()
                .with_single_cert(vec![leaf.der().clone()], key)
        })
        .map_err(|e| format!("TLS server configuration: {e}"))?;
    let mut roots = RootCertStore::empty();
    roots
        .add(ca.der().clone())
        .map_err(|e| format!("TLS root: {e}"))?;
    let client = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS client configuration: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let server_name = ServerName::try_from(TLS_SERVER_NAME)
        .map_err(|e| format!("TLS server name: {e}"))?
        .to_owned();
    Ok(BenchTls {
        server: Arc::new(server),
        connector: TlsConnector::from(Arc::new(client)),
        server_name,
    })
}

// ----- the load client -------------------------------------------------------

/// Drives `conns` pipelined connections against `addr` (over TLS or
/// WebSocket as `part` says, each handshake done before the load starts):
/// after `warmup`, counts echoed packets for `measure`; returns packets per
/// second.
async fn load(addr: SocketAddr, cfg: &Config, part: Part<'_>) -> Result<Run, String> {
    let received = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = JoinSet::new();
    for _ in 0..cfg.conns {
        let stream = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| format!("connect to {addr} timed out"))?
            .map_err(|e| format!("connect to {addr}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (received, stop) = (Arc::clone(&received), Arc::clone(&stop));
        match part {
            Part::Tcp => tasks.spawn(drive(stream, cfg.depth, cfg.payload, received, stop)),
            Part::Tls(tls) => {
                let handshake = tls.connector.connect(tls.server_name.clone(), stream);
                let stream = tokio::time::timeout(IO_TIMEOUT, handshake)
                    .await
                    .map_err(|_| format!("TLS handshake with {addr} timed out"))?
                    .map_err(|e| format!("TLS handshake with {addr}: {e}"))?;
                tasks.spawn(drive(stream, cfg.depth, cfg.payload, received, stop))
            }
            Part::Ws => {
                let handshake =
                    tokio_tungstenite::client_async(format!("ws://{addr}{WS_PATH}"), stream);
                let (ws, _response) = tokio::time::timeout(IO_TIMEOUT, handshake)
                    .await
                    .map_err(|_| format!("WebSocket handshake with {addr} timed out"))?
                    .map_err(|e| format!("WebSocket handshake with {addr}: {e}"))?;
                tasks.spawn(drive_ws(ws, cfg.depth, cfg.payload, received, stop))
            }
        };
    }
    tokio::time::sleep(Duration::from_secs_f64(cfg.warmup_secs)).await;
    let (start_count, start) = (received.load(Ordering::Relaxed), Instant::now());
    let cpu_start = (
        thread_cpu_secs(SERVER_THREADS),
        thread_cpu_secs(CLIENT_THREADS),
    );
    tokio::time::sleep(Duration::from_secs_f64(cfg.secs)).await;
    let (end_count, elapsed) = (received.load(Ordering::Relaxed), start.elapsed());
    let cpu_end = (
        thread_cpu_secs(SERVER_THREADS),
        thread_cpu_secs(CLIENT_THREADS),
    );
    stop.store(true, Ordering::Relaxed);

    let mut failure = None;
    let deadline = tokio::time::Instant::now() + IO_TIMEOUT * 2;
    while !tasks.is_empty() {
        match tokio::time::timeout_at(deadline, tasks.join_next()).await {
            Ok(Some(Ok(Ok(())))) | Ok(None) => {}
            Ok(Some(Ok(Err(e)))) => failure = failure.or(Some(e)),
            Ok(Some(Err(e))) => failure = failure.or(Some(format!("client task: {e}"))),
            Err(_) => {
                tasks.abort_all();
                failure = failure.or(Some("client connections did not stop".into()));
                break;
            }
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    let packets = end_count - start_count;
    if packets == 0 {
        return Err(format!("no packet echoed by {addr} in {elapsed:?}"));
    }
    let secs = elapsed.as_secs_f64();
    Ok(Run {
        rate: packets as f64 / secs,
        server_cpu: (cpu_end.0 - cpu_start.0) / secs,
        client_cpu: (cpu_end.1 - cpu_start.1) / secs,
    })
}

/// Appends one frame: length, then a payload whose first 8 bytes are the
/// packet's sequence number on this connection, so a reordered, duplicated
/// or corrupted echo is caught cheaply.
fn push_frame(out: &mut BytesMut, template: &[u8], seq: u64) {
    out.put_u32(template.len() as u32);
    out.put_u64(seq);
    out.extend_from_slice(&template[8..]);
}

async fn drive<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    depth: usize,
    payload: usize,
    received: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> Result<(), String> {
    let template: Vec<u8> = (0..payload).map(|i| (i * 7 + 3) as u8).collect();
    let frame_len = 4 + payload;
    let mut out = BytesMut::with_capacity(depth * frame_len);
    let mut inbuf = BytesMut::with_capacity(64 * 1024);
    let (mut sent, mut expected) = (0u64, 0u64);
    for _ in 0..depth {
        push_frame(&mut out, &template, sent);
        sent += 1;
    }
    while !stop.load(Ordering::Relaxed) {
        if !out.is_empty() {
            // The flush is a no-op on TCP; on TLS it sends what the TLS
            // layer kept when the socket was full.
            tokio::time::timeout(IO_TIMEOUT, async {
                stream.write_all(&out).await?;
                stream.flush().await
            })
            .await
            .map_err(|_| "write to the server stalled".to_string())?
            .map_err(|e| format!("write: {e}"))?;
            out.clear();
        }
        if inbuf.capacity() - inbuf.len() < frame_len {
            inbuf.reserve(64 * 1024);
        }
        let n = tokio::time::timeout(IO_TIMEOUT, stream.read_buf(&mut inbuf))
            .await
            .map_err(|_| format!("no echo for {IO_TIMEOUT:?}"))?
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("the server closed the connection".into());
        }
        let mut got = 0;
        while inbuf.len() >= frame_len {
            let len = u32::from_be_bytes([inbuf[0], inbuf[1], inbuf[2], inbuf[3]]) as usize;
            if len != payload {
                return Err(format!("echoed length {len}, sent {payload}"));
            }
            let seq = u64::from_be_bytes(inbuf[4..12].try_into().expect("8 bytes"));
            if seq != expected || inbuf[frame_len - 1] != template[payload - 1] {
                return Err(format!("echo #{expected} came back as #{seq} or corrupted"));
            }
            inbuf.advance(frame_len);
            expected += 1;
            got += 1;
            push_frame(&mut out, &template, sent);
            sent += 1;
        }
        if got > 0 {
            received.fetch_add(got, Ordering::Relaxed);
        }
    }
    Ok(())
}

/// One WebSocket packet: a binary message of the payload size (no length
/// prefix: the message is the frame) whose first 8 bytes are the sequence
/// number, as in `push_frame`.
fn ws_message(template: &[u8], seq: u64) -> Message {
    let mut b = BytesMut::with_capacity(template.len());
    b.put_u64(seq);
    b.extend_from_slice(&template[8..]);
    Message::Binary(b.freeze())
}

/// The WebSocket client of one connection: `depth` messages in flight; per
/// wake-up it checks every echo already readable, queues one new message
/// for each, and flushes them in one write.
async fn drive_ws(
    mut ws: WebSocketStream<TcpStream>,
    depth: usize,
    payload: usize,
    received: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> Result<(), String> {
    let template: Vec<u8> = (0..payload).map(|i| (i * 7 + 3) as u8).collect();
    let (mut sent, mut expected) = (0u64, 0u64);
    let mut out = Vec::with_capacity(depth);
    for _ in 0..depth {
        out.push(ws_message(&template, sent));
        sent += 1;
    }
    while !stop.load(Ordering::Relaxed) {
        tokio::time::timeout(IO_TIMEOUT, async {
            for msg in out.drain(..) {
                ws.feed(msg).await?;
            }
            ws.flush().await
        })
        .await
        .map_err(|_| "write to the server stalled".to_string())?
        .map_err(|e| format!("write: {e}"))?;
        let mut next = tokio::time::timeout(IO_TIMEOUT, ws.next())
            .await
            .map_err(|_| format!("no echo for {IO_TIMEOUT:?}"))?;
        let mut got = 0;
        loop {
            match next {
                Some(Ok(Message::Binary(echo))) => {
                    if echo.len() != payload {
                        return Err(format!("echoed length {}, sent {payload}", echo.len()));
                    }
                    let seq = u64::from_be_bytes(echo[..8].try_into().expect("8 bytes"));
                    if seq != expected || echo[payload - 1] != template[payload - 1] {
                        return Err(format!("echo #{expected} came back as #{seq} or corrupted"));
                    }
                    expected += 1;
                    got += 1;
                    out.push(ws_message(&template, sent));
                    sent += 1;
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(other)) => return Err(format!("unexpected message: {other:?}")),
                Some(Err(e)) => return Err(format!("read: {e}")),
                None => return Err("the server closed the connection".into()),
            }
            match ws.next().now_or_never() {
                Some(more) => next = more,
                None => break,
            }
        }
        if got > 0 {
            received.fetch_add(got, Ordering::Relaxed);
        }
    }
    // A clean close, so the server sees a close frame, not a reset.
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
    Ok(())
}

// ----- throughput ------------------------------------------------------------

/// CPU seconds used so far by this process's threads named `name` (tokio
/// names every worker of a runtime alike), from /proc: it tells whether the
/// server or the client was the bottleneck of a run.
fn thread_cpu_secs(name: &str) -> f64 {
    // USER_HZ, the unit of utime and stime, is 100 on Linux.
    const TICKS_PER_SEC: f64 = 100.0;
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    let mut ticks = 0u64;
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        // The name is in parentheses and may hold spaces; fields follow it.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if &stat[open + 1..close] != name {
            continue;
        }
        let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        // utime and stime are fields 14 and 15 of stat; `fields` starts at 3.
        for i in [11, 12] {
            ticks += fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    ticks as f64 / TICKS_PER_SEC
}

struct Run {
    rate: f64,
    server_cpu: f64,
    client_cpu: f64,
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// One throughput part: over plain TCP, TLS or WebSocket.
fn throughput(
    cfg: &Config,
    server_rt: &Runtime,
    client_rt: &Runtime,
    part: Part<'_>,
) -> Result<(), String> {
    let (label, target) = (part.name(), part.target());
    let library = server_rt.block_on(start_library(cfg.max_in_flight, part))?;
    let floor = server_rt.block_on(async {
        match part {
            Part::Tcp => start_floor(None).await,
            Part::Tls(tls) => start_floor(Some(TlsAcceptor::from(Arc::clone(&tls.server)))).await,
            Part::Ws => start_ws_floor().await,
        }
    });
    let (floor_addr, floor_task) = match floor {
        Ok(floor) => floor,
        Err(e) => {
            server_rt.block_on(library.shutdown(Duration::from_secs(5)));
            return Err(e);
        }
    };
    let (mut lib_runs, mut floor_runs) = (Vec::<Run>::new(), Vec::<Run>::new());
    let result = (|| {
        for round in 0..cfg.rounds {
            // Alternating which goes first cancels out slow drifts of the
            // machine (other load, thermal) across a round.
            let order: [bool; 2] = if round % 2 == 0 {
                [true, false]
            } else {
                [false, true]
            };
            for is_library in order {
                let (name, addr) = if is_library {
                    ("library", library.local_addr())
                } else {
                    ("floor", floor_addr)
                };
                if !cfg.only.is_empty() && cfg.only != name {
                    continue;
                }
                let run = client_rt
                    .block_on(load(addr, cfg, part))
                    .map_err(|e| format!("{label} {name} run: {e}"))?;
                println!(
                    "  {label} round {}/{}: {name:<7} {:>9.0} pkt/s, cpu: server {:>3.0}% \
                     client {:>3.0}%, {:>7.0} pkt per server cpu-second",
                    round + 1,
                    cfg.rounds,
                    run.rate,
                    run.server_cpu * 100.0,
                    run.client_cpu * 100.0,
                    run.rate / run.server_cpu.max(1e-9),
                );
                if is_library {
                    lib_runs.push(run);
                    // The next run must not share the core with this run's
                    // sessions still closing.
                    wait_sessions(server_rt, &library, 0, Duration::from_secs(10))?;
                } else {
                    floor_runs.push(run);
                }
            }
        }
        Ok::<_, String>(())
    })();
    server_rt.block_on(library.shutdown(Duration::from_secs(5)));
    floor_task.abort();
    result?;
    if lib_runs.is_empty() || floor_runs.is_empty() {
        return Ok(());
    }

    let rates = |runs: &[Run]| runs.iter().map(|r| r.rate).collect::<Vec<_>>();
    // When the client, not the server, saturates its core, pkt/s hides
    // server cost; packets per server CPU-second does not.
    let efficiency = |runs: &[Run]| {
        runs.iter()
            .map(|r| r.rate / r.server_cpu.max(1e-9))
            .collect::<Vec<_>>()
    };
    let (lib, floor) = (median(&rates(&lib_runs)), median(&rates(&floor_runs)));
    // Each round runs the library and the floor back to back, so a round's
    // ratio compares like with like; the headline is the median of those,
    // which shrugs off a round disturbed by other load on the machine.
    let round_ratios: Vec<f64> = lib_runs
        .iter()
        .zip(&floor_runs)
        .map(|(l, f)| l.rate / f.rate)
        .collect();
    let ratio = median(&round_ratios);
    let per_round: Vec<String> = round_ratios.iter().map(|r| format!("{r:.3}")).collect();
    println!(
        "echo {label}: library {lib:.0} pkt/s, floor {floor:.0} pkt/s (medians); \
         ratio {ratio:.3} (median of rounds: {}) -- target >= {target:.2}: {}",
        per_round.join(", "),
        if ratio >= target { "met" } else { "MISSED" }
    );
    let round_efficiency: Vec<f64> = efficiency(&lib_runs)
        .iter()
        .zip(efficiency(&floor_runs))
        .map(|(l, f)| l / f)
        .collect();
    println!(
        "  per server cpu-second: library {:.0}, floor {:.0}, ratio {:.3} (median of rounds)",
        median(&efficiency(&lib_runs)),
        median(&efficiency(&floor_runs)),
        median(&round_efficiency),
    );
    Ok(())
}

fn wait_sessions(
    rt: &Runtime,
    handle: &ServerHandle,
    want: usize,
    limit: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    rt.block_on(async {
        while handle.session_count() != want {
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} sessions after {limit:?}, expected {want}",
                    handle.session_count()
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    })
}

// ----- idle memory -----------------------------------------------------------

/// Live heap bytes and live allocations, process-wide.
fn heap_in_use() -> (i64, i64) {
    let s = GLOBAL.stats();
    (
        s.bytes_allocated as i64 - s.bytes_deallocated as i64,
        s.allocations as i64 - s.deallocations as i64,
    )
}

/// Resident set size in bytes, from /proc/self/statm (x86-64 4 KiB pages).
fn rss_bytes() -> Option<i64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: i64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Kills and reaps the child whatever happens, so no client sockets outlive
/// the bench.
struct ChildGuard(Option<Child>);

impl ChildGuard {
    /// Closes the child's stdin (its signal to exit) and waits, bounded.
    fn finish(&mut self) -> Result<(), String> {
        let Some(mut child) = self.0.take() else {
            return Ok(());
        };
        drop(child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => return Err(format!("client child exited with {status}")),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err("client child did not exit; killed".into());
                }
            }
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn idle_memory(cfg: &Config, server_rt: &Runtime) -> Result<(), String> {
    let n = cfg.idle_sessions;
    let server = server_rt.block_on(start_library(cfg.max_in_flight, Part::Tcp))?;
    let addr = server.local_addr();
    // Let the accept loop reach its first await so its own setup is not
    // billed to the sessions.
    std::thread::sleep(Duration::from_millis(100));
    let (heap_before, rss_before) = (heap_in_use(), rss_bytes());

    let exe = env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut child = ChildGuard(Some(
        Command::new(exe)
            .env(CHILD_ENV, addr.to_string())
            .env(CHILD_COUNT_ENV, n.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start the client child: {e}"))?,
    ));
    let result = (|| {
        let stdout = child.0.as_mut().and_then(|c| c.stdout.take());
        let (tx, rx) = mpsc::channel();
        // A thread, so that waiting for the child's report can time out.
        std::thread::spawn(move || {
            let mut line = String::new();
            if let Some(stdout) = stdout {
                let _ = BufReader::new(stdout).read_line(&mut line);
            }
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(120))
            .map_err(|_| "the client child did not report in 120 s".to_string())?;
        if line.trim() != format!("connected {n}") {
            return Err(format!("client child: `{}`", line.trim()));
        }
        wait_sessions(server_rt, &server, n, Duration::from_secs(60))?;
        // Each session's driver must have run once and gone idle (dropping
        // its buffers) before the count means anything.
        std::thread::sleep(Duration::from_secs(1));
        let (heap_after, rss_after) = (heap_in_use(), rss_bytes());
        let per_session = (heap_after.0 - heap_before.0) / n as i64;
        println!(
            "idle sessions: {n}, heap per session: {per_session} bytes (target <= {HEAP_TARGET}: {})",
            if per_session <= HEAP_TARGET as i64 { "met" } else { "MISSED" }
        );
        println!(
            "  live allocations per session: {:.1}",
            (heap_after.1 - heap_before.1) as f64 / n as f64
        );
        if let (Some(before), Some(after)) = (rss_before, rss_after) {
            println!(
                "  rss delta: {} KiB total, {} bytes per session (for information: includes \
                 allocator slack and tokio's I/O slab)",
                (after - before) / 1024,
                (after - before) / n as i64
            );
        }
        child.finish()?;
        wait_sessions(server_rt, &server, 0, Duration::from_secs(30))
    })();
    drop(child);
    server_rt.block_on(server.shutdown(Duration::from_secs(5)));
    result
}

/// The child: opens the idle connections, reports, and holds them until its
/// stdin closes.
fn child_main(addr: &str) -> ExitCode {
    // If the parent dies without closing our stdin, do not linger forever.
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(600));
        std::process::exit(3);
    });
    raise_fd_limit();
    let n: usize = env::var(CHILD_COUNT_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let mut conns = Vec::with_capacity(n);
    let mut out = std::io::stdout();
    for i in 0..n {
        match std::net::TcpStream::connect_timeout(
            &addr.parse().expect("the parent passes an address"),
            IO_TIMEOUT,
        ) {
            Ok(s) => conns.push(s),
            Err(e) => {
                let _ = writeln!(out, "connection {i} of {n} failed: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let _ = writeln!(out, "connected {n}");
    let _ = out.flush();
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop(conns);
    ExitCode::SUCCESS
}
