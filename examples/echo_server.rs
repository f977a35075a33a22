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
//! It prints `listening on <addr>` once bound and shuts down gracefully on
//! SIGINT or SIGTERM.

use std::{
    convert::Infallible, io::Write, net::SocketAddr, path::PathBuf, process::ExitCode,
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use getty::{
    codec::LengthCodec, new_session_fn, tls::ServerTlsConfig, Addr, EventListener, ListenerService,
    Server, Session, SessionConfig,
};
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::codec::BytesCodec;

const USAGE: &str = "usage: echo_server [--transport tcp|tls|unix|ws|wss|udp] [--addr ADDR] [--path PATH] [--cert PEM --key PEM] [--threads N] [--max-in-flight N]\n\
     \n\
     --transport T        tcp (default), tls, unix, ws, wss (WebSocket over TLS) or udp; tls and wss need --cert and --key\n\
     --addr ADDR          HOST:PORT to listen on (default 127.0.0.1:19001), or the socket file's path for unix\n\
     --path PATH          the WebSocket endpoint's path, starting with / (ws, wss; default /)\n\
     --cert PEM           the server's certificate chain, PEM (tls, wss)\n\
     --key PEM            the server's private key, PEM (tls, wss)\n\
     --threads N          tokio worker threads, at least 1 (default 1)\n\
     --max-in-flight N    packets a session may have in its handler at once (default 1)";

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
    };
    while let Some(arg) = args.next() {
        // Both `--flag value` and `--flag=value` are accepted.
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_owned(), Some(value.to_owned()))
            }
            _ => (arg, None),
        };
        if flag == "-h" || flag == "--help" {
            return Err(ArgsError::Help);
        }
        if !matches!(
            flag.as_str(),
            "--addr"
                | "--path"
                | "--threads"
                | "--max-in-flight"
                | "--transport"
                | "--cert"
                | "--key"
        ) {
            return Err(ArgsError::Bad(format!("unknown argument `{flag}`")));
        }
        let value = match inline.or_else(|| args.next()) {
            Some(value) => value,
            None => return Err(ArgsError::Bad(format!("`{flag}` needs a value"))),
        };
        match flag.as_str() {
            "--addr" => parsed.addr = value,
            "--path" => parsed.path = Some(value),
            "--cert" => parsed.cert = Some(value.into()),
            "--key" => parsed.key = Some(value.into()),
            "--transport" => {
                parsed.transport = match value.as_str() {
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
            "--threads" => parsed.threads = positive(&flag, &value)?,
            _ => parsed.max_in_flight = positive(&flag, &value)?,
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

struct Echo;

/// Length-prefixed packets (tcp, tls, unix).
impl EventListener<Bytes> for Echo {
    fn on_message(&mut self, _session: &Session, pkg: Bytes) -> Option<Bytes> {
        Some(pkg)
    }
}

/// Whole WebSocket messages and datagrams (ws, wss, udp): `BytesCodec` hands over each
/// message's bytes as they came and writes each reply as one message.
impl EventListener<BytesMut> for Echo {
    fn on_message(&mut self, _session: &Session, pkg: BytesMut) -> Option<Bytes> {
        Some(pkg.freeze())
    }
}

async fn serve(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    // Installed before binding so a signal sent as soon as the address is
    // printed is not lost to the default (killing) disposition.
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;

    let mut builder = Server::builder()
        .session_config(SessionConfig::default().max_in_flight(args.max_in_flight));
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
        eprintln!(
            "WebSocket endpoint: {}://{}{}",
            args.transport.name(),
            server.addr(),
            args.path.as_deref().unwrap_or("/")
        );
    }
    let make = new_session_fn(|_: &Session| Ok::<_, Infallible>(ListenerService::new(Echo)));
    let handle = if args.transport.messages() {
        // One message or datagram is one packet: no length prefix inside it.
        server.serve(|_: &Session| BytesCodec::new(), make)
    } else {
        server.serve(LengthCodec::new(), make)
    };

    let name = tokio::select! {
        _ = sigint.recv() => "SIGINT",
        _ = sigterm.recv() => "SIGTERM",
    };
    eprintln!(
        "{name}: shutting down ({} sessions, deadline {SHUTDOWN_DEADLINE:?})",
        handle.session_count()
    );
    handle.shutdown(SHUTDOWN_DEADLINE).await;
    eprintln!("stopped");
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
