//! An RPC server speaking erpc v6's (teleport's) raw wire format, built on
//! [`getty::rpc::Peer`]: a Go erpc client, `rpc_client`, or a client of your
//! own written from the wire spec can call it.
//!
//! ```text
//! cargo run --release --example rpc_server -- --addr 127.0.0.1:9090 [--transport tcp|ws] [--threads N]
//! ```
//!
//! - `--addr ADDR`: the `IP:PORT` to listen on (default `127.0.0.1:9090`;
//!   port 0 picks a free one).
//! - `--transport tcp` (default): raw frames over TCP, as erpc's
//!   `ListenAndServe` serves them.
//! - `--transport ws`: the same frames over WebSocket, one frame per binary
//!   message, at path `/` (`ws://ADDR/`). erpc's websocket mixer
//!   (`mixer/websocket`, `NewServer(rootPath, ..)` / `NewClient(rootPath,
//!   ..)`) has no built-in path: the root path is an argument, normalised so
//!   that an empty one is `/`, and the mixer's own tests and README serve it
//!   at `/`. A Go client therefore dials with `ws.NewClient("/", cfg)` and,
//!   because the mixer wraps JSON frames unless told otherwise,
//!   `Dial(addr, rawproto.NewRawProtoFunc())` (erpc's `proto/rawproto`);
//!   this pairing follows from the mixer's source and has not been run
//!   against Go here.
//! - `--threads N`: tokio worker threads (default: one per core).
//!
//! Routes:
//!
//! | route | kind | answer |
//! |---|---|---|
//! | `/home/echo` | call | its argument's bytes unchanged, under the call's codec byte (or the one its `X-Accept-Body-Codec` asks for) |
//! | `/home/fail` | call | status code 1234, msg `home fail` |
//! | `/home/push_me` | call | pushes `/push/hello` json `{"hello":"world"}` to the caller, then replies `"pushed"` |
//! | `/heartbeat` | call | OK with json `null` (erpc's heartbeat pong, [`getty::rpc::plugin::heartbeat`]) |
//! | `/heartbeat` | push | accepted; a session that announced a rate in `hb_` and then sent nothing for twice that is closed |
//!
//! Any other call is answered 404 Not Found, as erpc does. The transfer
//! filters gzip (id `g`, level 5) and md5 (id `m`) are registered; a reply
//! goes back through its call's filters.
//!
//! It prints `listening on <addr>` on stdout once listening. SIGINT (or
//! SIGTERM) shuts it down gracefully: it stops accepting, calls already
//! read finish and their replies go out (within 5 s), then it exits 0.
//!
//! Logs go to stderr through `tracing-subscriber`, `info` and up by
//! default; `RUST_LOG` overrides (`RUST_LOG=debug`).

use std::{io::Write, net::SocketAddr, process::ExitCode, time::Duration};

use getty::rpc::{
    codec::Raw,
    plugin::heartbeat::{self, HeartbeatPong},
    xfer::{Gzip, Md5},
    CallCtx, Peer, Router, Status,
};
use tokio::signal::unix::{signal, SignalKind};

const USAGE: &str = "usage: rpc_server [--addr IP:PORT] [--transport tcp|ws] [--threads N]\n\
     \n\
     --addr IP:PORT     where to listen (default 127.0.0.1:9090; port 0 picks one)\n\
     --transport T      tcp (default) or ws (WebSocket at path /)\n\
     --threads N        tokio worker threads, at least 1 (default: one per core)\n\
     \n\
     Routes: call /home/echo, /home/fail, /home/push_me, /heartbeat; push /heartbeat.\n\
     Logs go to stderr, info and up by default; RUST_LOG overrides (e.g. RUST_LOG=debug).";

/// The WebSocket endpoint's path: erpc's websocket mixer takes its root
/// path as an argument and normalises an empty one to `/`; its tests and
/// README serve at `/`, so a Go `ws.NewClient("/", ..)` finds us.
const WS_PATH: &str = "/";

/// How long calls in flight get to finish when shutting down.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);

struct Args {
    addr: SocketAddr,
    websocket: bool,
    threads: Option<usize>,
}

enum ArgsError {
    Help,
    Bad(String),
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, ArgsError> {
    let mut addr = "127.0.0.1:9090".to_owned();
    let mut websocket = false;
    let mut threads = None;
    while let Some(arg) = args.next() {
        // Both `--flag value` and `--flag=value` are accepted.
        let (flag, mut inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_owned(), Some(value.to_owned()))
            }
            _ => (arg, None),
        };
        let mut value = || {
            inline
                .take()
                .or_else(|| args.next())
                .ok_or_else(|| ArgsError::Bad(format!("`{flag}` needs a value")))
        };
        match flag.as_str() {
            "-h" | "--help" => return Err(ArgsError::Help),
            "--addr" => addr = value()?,
            "--transport" => {
                websocket = match value()?.as_str() {
                    "tcp" => false,
                    "ws" => true,
                    other => {
                        return Err(ArgsError::Bad(format!(
                            "--transport: `{other}` is not tcp or ws"
                        )))
                    }
                }
            }
            "--threads" => {
                let v = value()?;
                threads = match v.parse::<usize>() {
                    Ok(n) if n >= 1 => Some(n),
                    _ => {
                        return Err(ArgsError::Bad(format!(
                            "--threads: `{v}` is not a whole number of at least 1"
                        )))
                    }
                }
            }
            _ => return Err(ArgsError::Bad(format!("unknown argument `{flag}`"))),
        }
    }
    let addr = addr
        .parse()
        .map_err(|e| ArgsError::Bad(format!("--addr: `{addr}` is not an IP:PORT address ({e})")))?;
    Ok(Args {
        addr,
        websocket,
        threads,
    })
}

/// Replies with the argument's bytes as they came, in the call's codec.
async fn echo(_: CallCtx, arg: Raw) -> Result<Raw, Status> {
    Ok(arg)
}

/// Always fails, with a status of the application's own (erpc recommends
/// codes above 1000 for those).
async fn fail(_: CallCtx, _: Raw) -> Result<(), Status> {
    Err(Status::new(1234, "home fail"))
}

/// Pushes to the caller before replying: the push is queued on the
/// session ahead of the reply.
async fn push_me(ctx: CallCtx, _: Raw) -> Result<String, Status> {
    ctx.push("/push/hello", serde_json::json!({ "hello": "world" }))
        .await?;
    Ok("pushed".to_owned())
}

fn router() -> Router {
    let home = Router::new()
        .call("/echo", echo)
        .call("/fail", fail)
        .call("/push_me", push_me);
    // erpc's heartbeat pong: CALL `/heartbeat` answered OK with json `null`.
    heartbeat::pong(Router::new().nest("/home", home))
}

/// Logs to stderr: `info` and up by default, `RUST_LOG` overrides.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::builder()
        .with_default_directive(tracing_subscriber::filter::LevelFilter::INFO.into())
        .from_env_lossy();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

async fn serve(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    // Installed before listening, so a signal sent as soon as the address
    // is printed is not lost to the default (killing) disposition.
    // (`tokio::signal::ctrl_c()` would register its handler only when
    // first polled.)
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;

    let peer = Peer::builder()
        .router(router())
        // A session that announced a heartbeat rate and then fell silent
        // for twice that is closed.
        .session_layer(HeartbeatPong::new())
        .xfer_filter(Gzip::new(5))
        .xfer_filter(Md5::new())
        .build();
    let handle = if args.websocket {
        let server = getty::Server::builder()
            .websocket(WS_PATH)
            .bind(args.addr)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", args.addr))?;
        peer.serve(server)
    } else {
        peer.listen(args.addr)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", args.addr))?
    };
    let addr = handle.local_addr();
    {
        // Scripts wait for this line; a pipe would otherwise keep it buffered.
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {addr}")?;
        out.flush()?;
    }
    if args.websocket {
        tracing::info!("serving erpc raw frames over WebSocket at ws://{addr}{WS_PATH}");
    } else {
        tracing::info!("serving erpc raw frames over TCP on {addr}");
    }

    let name = tokio::select! {
        _ = sigint.recv() => "SIGINT",
        _ = sigterm.recv() => "SIGTERM",
    };
    tracing::info!(
        "{name}: shutting down ({} sessions, deadline {SHUTDOWN_DEADLINE:?})",
        peer.session_count()
    );
    peer.shutdown(SHUTDOWN_DEADLINE).await;
    tracing::info!("stopped");
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(ArgsError::Help) => {
            let _ = writeln!(std::io::stdout(), "{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(ArgsError::Bad(msg)) => {
            eprintln!("rpc_server: {msg}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    init_tracing();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.threads {
        builder.worker_threads(threads);
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rpc_server: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rpc_server: {e}");
            ExitCode::FAILURE
        }
    }
}
