//! A standalone echo server: every packet is written back unchanged.
//!
//! Over TCP, TLS or a Unix domain socket a packet is length-prefixed (4-byte
//! big-endian length, then the payload). Over WebSocket (`ws`, or `wss` on
//! TLS) a packet is one whole message, no prefix: each binary message is
//! echoed as one binary message. Text messages are accepted too (so a
//! browser can type at it) and echoed as a *binary* message holding the
//! same UTF-8 bytes. Empty messages carry no packet and get no echo.
//!
//! ```text
//! cargo run --release --example echo_server -- --addr 127.0.0.1:19001 [--threads N] [--max-in-flight N]
//! cargo run --release --example echo_server -- --read-timeout 30 --cron 5
//! cargo run --release --example echo_server -- --transport tls --cert server.pem --key server.key
//! cargo run --release --example echo_server -- --transport unix --addr /tmp/echo.sock
//! cargo run --release --example echo_server -- --transport ws --addr 127.0.0.1:19001 [--path /]
//! cargo run --release --example echo_server -- --transport wss --cert server.pem --key server.key [--path /]
//! cargo run --release --example echo_server -- --transport udp --addr 127.0.0.1:19001
//! ```
//!
//! To chat with it from a browser, start the WebSocket server and open
//! `examples/ws_chat.html` (a plain file, no web server needed):
//!
//! ```text
//! cargo run --example echo_server -- --transport ws --addr 127.0.0.1:19001
//! xdg-open examples/ws_chat.html     # or open it from the browser's File menu
//! ```
//!
//! The page connects to `ws://127.0.0.1:19001/` by default. Any origin is
//! admitted (a page opened from a file sends `Origin: null`). The server
//! only answers on `--path`; another path gets HTTP 404.
//!
//! UDP (`--transport udp`): one packet per datagram, each peer its own session.
//!
//! It prints `listening on <addr>` on stdout once bound and shuts down
//! gracefully on SIGINT or SIGTERM.
//!
//! Logs go to stderr through `tracing-subscriber`, at `info` and up by
//! default: the library's warnings (a refused handshake, an oversized
//! packet) and every session error (a read timeout, a reset), so an operator
//! sees why a peer was dropped. `RUST_LOG` overrides the filter
//! (`RUST_LOG=debug` adds sessions opening and closing, and cron ticks).

use std::{
    convert::Infallible, io::Write, net::SocketAddr, path::PathBuf, process::ExitCode,
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use getty::{
    codec::LengthCodec, new_session_fn, tls::ServerTlsConfig, Addr, Error, EventListener,
    ListenerService, Server, Session, SessionConfig,
};
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::codec::BytesCodec;

const USAGE: &str = "usage: echo_server [--transport tcp|tls|unix|ws|wss|udp] [--addr ADDR] [--path PATH] [--cert PEM --key PEM] [--threads N] [--max-in-flight N] [--read-timeout SECS] [--cron SECS]\n\
     \n\
     --transport T        tcp (default), tls, unix, ws, wss (WebSocket over TLS) or udp; tls and wss need --cert and --key\n\
     --addr ADDR          HOST:PORT to listen on (default 127.0.0.1:19001), or the socket file's path for unix\n\
     --path PATH          the WebSocket endpoint's path, starting with / (ws, wss; default /)\n\
     --cert PEM           the server's certificate chain, PEM (tls, wss)\n\
     --key PEM            the server's private key, PEM (tls, wss)\n\
     --threads N          tokio worker threads, at least 1 (default 1)\n\
     --max-in-flight N    packets a session may have in its handler at once (default 1)\n\
     --read-timeout SECS  close a session that sends nothing for SECS seconds (fractions allowed; default: never)\n\
     --cron SECS          each session's cron period: a tick every SECS seconds (WebSocket sessions ping on it; default: none)\n\
     --max-buffered-input BYTES  input all sessions together may hold before handing it on, or `off` (default 268435456)\n\
     \n\
     Logs go to stderr, info and up by default; RUST_LOG overrides (e.g. RUST_LOG=debug).";

/// How long sessions get to flush what they owe before being cut off.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);

struct Args {
    transport: Transport,
    addr: String,
    /// The WebSocket endpoint's path; `None` when not given.
    path: Option<String>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    threads: usize,
    max_in_flight: usize,
    read_timeout: Option<Duration>,
    cron: Option<Duration>,
    /// The server's input budget; `None` when turned off.
    max_buffered_input: Option<usize>,
}

#[derive(Clone, Copy, PartialEq)]
enum Transport {
    Tcp,
    Tls,
    Unix,
    Ws,
    Wss,
    Udp,
}

impl Transport {
    fn websocket(self) -> bool {
        matches!(self, Transport::Ws | Transport::Wss)
    }

    /// One packet per message or datagram, no length prefix.
    fn messages(self) -> bool {
        matches!(self, Transport::Ws | Transport::Wss | Transport::Udp)
    }

    fn tls(self) -> bool {
        matches!(self, Transport::Tls | Transport::Wss)
    }

    fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Unix => "unix",
            Transport::Ws => "ws",
            Transport::Wss => "wss",
            Transport::Udp => "udp",
        }
    }
}

/// Why the command line was refused; `Help` is not an error but ends the
/// program just as early.
enum ArgsError {
    Help,
    Bad(String),
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, ArgsError> {
    let mut parsed = Args {
        transport: Transport::Tcp,
        addr: "127.0.0.1:19001".to_owned(),
        path: None,
        cert: None,
        key: None,
        threads: 1,
        max_in_flight: 1,
        read_timeout: None,
        cron: None,
        max_buffered_input: Some(256 << 20),
    };
    while let Some(arg) = args.next() {
        // Both `--flag value` and `--flag=value` are accepted.
        let (flag, mut inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_owned(), Some(value.to_owned()))
            }
            _ => (arg, None),
        };
        // Every flag takes a value; it is read only for a known flag, so an
        // unknown one is reported as such. A new flag is one arm below.
        let mut value = || {
            inline
                .take()
                .or_else(|| args.next())
                .ok_or_else(|| ArgsError::Bad(format!("`{flag}` needs a value")))
        };
        match flag.as_str() {
            "-h" | "--help" => return Err(ArgsError::Help),
            "--addr" => parsed.addr = value()?,
            "--path" => parsed.path = Some(value()?),
            "--cert" => parsed.cert = Some(value()?.into()),
            "--key" => parsed.key = Some(value()?.into()),
            "--transport" => {
                parsed.transport = match value()?.as_str() {
                    "tcp" => Transport::Tcp,
                    "tls" => Transport::Tls,
                    "unix" => Transport::Unix,
                    "ws" => Transport::Ws,
                    "wss" => Transport::Wss,
                    "udp" => Transport::Udp,
                    other => {
                        return Err(ArgsError::Bad(format!(
                            "--transport: `{other}` is not one of tcp, tls, unix, ws, wss, udp"
                        )))
                    }
                }
            }
            "--threads" => parsed.threads = positive(&flag, &value()?)?,
            "--max-in-flight" => parsed.max_in_flight = positive(&flag, &value()?)?,
            "--read-timeout" => parsed.read_timeout = Some(seconds(&flag, &value()?)?),
            "--cron" => parsed.cron = Some(seconds(&flag, &value()?)?),
            "--max-buffered-input" => {
                parsed.max_buffered_input = match value()?.as_str() {
                    "off" => None,
                    bytes => Some(positive(&flag, bytes)?),
                }
            }
            _ => return Err(ArgsError::Bad(format!("unknown argument `{flag}`"))),
        }
    }
    if parsed.transport != Transport::Unix {
        parsed.addr.parse::<SocketAddr>().map_err(|e| {
            ArgsError::Bad(format!(
                "--addr: `{}` is not an IP:PORT address ({e})",
                parsed.addr
            ))
        })?;
    }
    if parsed.transport.tls() && (parsed.cert.is_none() || parsed.key.is_none()) {
        return Err(ArgsError::Bad(format!(
            "--transport {} needs --cert and --key",
            parsed.transport.name()
        )));
    }
    match &parsed.path {
        Some(_) if !parsed.transport.websocket() => {
            return Err(ArgsError::Bad(
                "--path applies to --transport ws or wss only".into(),
            ))
        }
        // The handshake compares the request's path with it exactly.
        Some(path) if !path.starts_with('/') => {
            return Err(ArgsError::Bad(format!(
                "--path: `{path}` does not start with `/`"
            )))
        }
        _ => {}
    }
    Ok(parsed)
}

fn positive(flag: &str, value: &str) -> Result<usize, ArgsError> {
    match value.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(ArgsError::Bad(format!(
            "{flag}: `{value}` is not a whole number of at least 1"
        ))),
    }
}

/// A positive number of seconds, fractions allowed (`1`, `0.5`).
fn seconds(flag: &str, value: &str) -> Result<Duration, ArgsError> {
    value
        .parse::<f64>()
        .ok()
        .filter(|secs| *secs > 0.0)
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .ok_or_else(|| {
            ArgsError::Bad(format!(
                "{flag}: `{value}` is not a positive number of seconds"
            ))
        })
}

/// Logs to stderr through `tracing-subscriber`: `info` and up by default,
/// `RUST_LOG` adds or overrides directives.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::builder()
        .with_default_directive(tracing_subscriber::filter::LevelFilter::INFO.into())
        .from_env_lossy();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours for a terminal only, not in a log file or a pipe.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

struct Echo;

/// What every transport's echo logs. The library logs a read timeout or a
/// reset only at debug (they are the peer's doing, and common); an echo
/// server's operator wants to see why a peer was dropped, so the listener
/// logs every session error at info. It runs in the session's span, which
/// names the session and its peer.
fn log_error(error: &Error) {
    tracing::info!(%error, "session error");
}

fn log_tick(session: &Session) {
    tracing::debug!(session = %session, "cron tick");
}

/// Length-prefixed packets (tcp, tls, unix).
impl EventListener<Bytes> for Echo {
    fn on_message(&mut self, _session: &Session, pkg: Bytes) -> Option<Bytes> {
        Some(pkg)
    }
    fn on_error(&mut self, _session: &Session, error: &Error) {
        log_error(error);
    }
    fn on_cron(&mut self, session: &Session) {
        log_tick(session);
    }
}

/// Whole WebSocket messages and datagrams (ws, wss, udp): `BytesCodec` hands over each
/// message's bytes as they came and writes each reply as one message.
impl EventListener<BytesMut> for Echo {
    fn on_message(&mut self, _session: &Session, pkg: BytesMut) -> Option<Bytes> {
        Some(pkg.freeze())
    }
    fn on_error(&mut self, _session: &Session, error: &Error) {
        log_error(error);
    }
    fn on_cron(&mut self, session: &Session) {
        log_tick(session);
    }
}

async fn serve(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    // Installed before binding so a signal sent as soon as the address is
    // printed is not lost to the default (killing) disposition.
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;

    let config = SessionConfig::default()
        .max_in_flight(args.max_in_flight)
        .read_timeout(args.read_timeout)
        .cron_period(args.cron);
    let mut builder = Server::builder()
        .session_config(config)
        .max_buffered_input(args.max_buffered_input);
    if let (true, Some(cert), Some(key)) = (args.transport.tls(), &args.cert, &args.key) {
        builder = builder.tls(ServerTlsConfig::from_pem_files(cert, key)?);
    }
    if args.transport.websocket() {
        builder = builder
            .websocket(args.path.as_deref().unwrap_or("/"))
            .accept_text_messages(true);
    }
    let bound = match args.transport {
        Transport::Unix => builder.bind_unix(&args.addr),
        Transport::Udp => builder.bind_udp(args.addr.as_str()).await,
        Transport::Tcp | Transport::Tls | Transport::Ws | Transport::Wss => {
            builder.bind(args.addr.as_str()).await
        }
    };
    let server = bound.map_err(|e| format!("cannot listen on {}: {e}", args.addr))?;
    {
        // Scripts wait for this line, and a pipe would otherwise hold it in
        // the buffer.
        let mut out = std::io::stdout().lock();
        match server.addr() {
            Addr::Unix(Some(path)) => writeln!(out, "listening on {}", path.display())?,
            addr => writeln!(out, "listening on {addr}")?,
        }
        out.flush()?;
    }
    if args.transport.websocket() {
        tracing::info!(
            "WebSocket endpoint: {}://{}{}",
            args.transport.name(),
            server.addr(),
            args.path.as_deref().unwrap_or("/")
        );
    }
    tracing::info!(
        transport = args.transport.name(),
        read_timeout = ?args.read_timeout,
        cron = ?args.cron,
        max_buffered_input = ?args.max_buffered_input,
        max_in_flight = args.max_in_flight,
        "serving"
    );
    let make = new_session_fn(|_: &Session| Ok::<_, Infallible>(ListenerService::new(Echo)));
    let handle = if args.transport.messages() {
        // One message or datagram is one packet: no length prefix inside it.
        server.serve(BytesCodec::new(), make)
    } else {
        server.serve(LengthCodec::new(), make)
    };

    let name = tokio::select! {
        _ = sigint.recv() => "SIGINT",
        _ = sigterm.recv() => "SIGTERM",
    };
    tracing::info!(
        "{name}: shutting down ({} sessions, deadline {SHUTDOWN_DEADLINE:?})",
        handle.session_count()
    );
    handle.shutdown(SHUTDOWN_DEADLINE).await;
    tracing::info!("stopped");
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(ArgsError::Help) => {
            // `--help | head` closing the pipe early is not worth a panic.
            let _ = writeln!(std::io::stdout(), "{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(ArgsError::Bad(msg)) => {
            eprintln!("echo_server: {msg}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("echo_server: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("echo_server: {e}");
            ExitCode::FAILURE
        }
    }
}
