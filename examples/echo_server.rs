//! A standalone TCP echo server: every length-prefixed packet (4-byte
//! big-endian length, then the payload) is written back unchanged.
//!
//! ```text
//! cargo run --release --example echo_server -- --addr 127.0.0.1:19001 [--threads N] [--max-in-flight N]
//! ```
//!
//! It prints `listening on <addr>` once bound and shuts down gracefully on
//! SIGINT or SIGTERM.

use std::{convert::Infallible, io::Write, net::SocketAddr, process::ExitCode, time::Duration};

use bytes::Bytes;
use getty::{
    codec::LengthCodec, new_session_fn, EventListener, ListenerService, Server, Session,
    SessionConfig,
};
use tokio::signal::unix::{signal, SignalKind};

const USAGE: &str = "usage: echo_server [--addr HOST:PORT] [--threads N] [--max-in-flight N]\n\
     \n\
     --addr HOST:PORT     address to listen on (default 127.0.0.1:19001)\n\
     --threads N          tokio worker threads, at least 1 (default 1)\n\
     --max-in-flight N    packets a session may have in its handler at once (default 1)";

/// How long sessions get to flush what they owe before being cut off.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);

struct Args {
    addr: SocketAddr,
    threads: usize,
    max_in_flight: usize,
}

/// Why the command line was refused; `Help` is not an error but ends the
/// program just as early.
enum ArgsError {
    Help,
    Bad(String),
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, ArgsError> {
    let mut parsed = Args {
        addr: SocketAddr::from(([127, 0, 0, 1], 19001)),
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
        if !matches!(flag.as_str(), "--addr" | "--threads" | "--max-in-flight") {
            return Err(ArgsError::Bad(format!("unknown argument `{flag}`")));
        }
        let value = match inline.or_else(|| args.next()) {
            Some(value) => value,
            None => return Err(ArgsError::Bad(format!("`{flag}` needs a value"))),
        };
        match flag.as_str() {
            "--addr" => {
                parsed.addr = value.parse().map_err(|e| {
                    ArgsError::Bad(format!("--addr: `{value}` is not an IP:PORT address ({e})"))
                })?;
            }
            "--threads" => parsed.threads = positive(&flag, &value)?,
            _ => parsed.max_in_flight = positive(&flag, &value)?,
        }
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

impl EventListener<Bytes> for Echo {
    fn on_message(&mut self, _session: &Session, pkg: Bytes) -> Option<Bytes> {
        Some(pkg)
    }
}

async fn serve(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    // Installed before binding so a signal sent as soon as the address is
    // printed is not lost to the default (killing) disposition.
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;

    let server = Server::builder()
        .session_config(SessionConfig::default().max_in_flight(args.max_in_flight))
        .bind(args.addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.addr))?;
    {
        // Scripts wait for this line, and a pipe would otherwise hold it in
        // the buffer.
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {}", server.local_addr())?;
        out.flush()?;
    }
    let handle = server.serve(
        LengthCodec::new(),
        new_session_fn(|_: &Session| Ok::<_, Infallible>(ListenerService::new(Echo))),
    );

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
