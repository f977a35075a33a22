//! gtcp's asynchronous full-duplex example, server side
//! (`gtcp_common_server.go` in the gtcp docs), on `getty::pkg`.
//!
//! Every package is a JSON message `{"Act": ..., "Data": ...}`. The server
//! answers `hello` with `Nice to meet you!`, logs each `heartbeat`, and
//! `--exit-after` seconds after a client connects (10 by default, as in
//! gtcp) sends it `doexit`, on which the client closes. A package that is
//! not a message (empty, or not JSON) is logged and skipped; the
//! connection goes on.
//!
//! ```text
//! cargo run --example gtcp_server -- [--addr 127.0.0.1:8999] [--header-size 1..4] [--exit-after SECS]
//! cargo run --example gtcp_client -- [--addr 127.0.0.1:8999] [--header-size 1..4]
//! ```
//!
//! It prints `listening on <addr>` on stdout once bound, logs through
//! `tracing` (`RUST_LOG` filters, `info` by default), and shuts down
//! gracefully on SIGINT or SIGTERM.

#[path = "gtcp_common/msg.rs"]
mod msg;

use std::{
    io::{IsTerminal, Write},
    process::ExitCode,
    time::Duration,
};

use getty::pkg::{Conn, PkgError, PkgOption, Server};
use tokio::signal::unix::{signal, SignalKind};
use tracing_subscriber::EnvFilter;

use msg::{recv_msg, send_msg};

const USAGE: &str =
    "usage: gtcp_server [--addr HOST:PORT] [--header-size 1..4] [--exit-after SECS]\n\
     \n\
     --addr HOST:PORT     where to listen (default 127.0.0.1:8999; port 0 picks one)\n\
     --header-size N      the package header's width in bytes, 1 to 4 (default 2)\n\
     --exit-after SECS    send each client doexit this long after it connects (default 10)";

struct Args {
    addr: String,
    header_size: u8,
    exit_after: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        addr: "127.0.0.1:8999".to_owned(),
        header_size: 2,
        exit_after: Duration::from_secs(10),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => args.addr = value()?,
            "--header-size" => {
                let v = value()?;
                args.header_size = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=4).contains(n))
                    .ok_or_else(|| format!("--header-size must be 1 to 4, not {v:?}"))?;
            }
            "--exit-after" => {
                let v = value()?;
                let secs: f64 = v
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s >= 0.0)
                    .ok_or_else(|| format!("--exit-after must be seconds, not {v:?}"))?;
                args.exit_after = Duration::from_secs_f64(secs);
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

/// One client's conversation (the handler given to gtcp's `NewServer`).
async fn serve_client(conn: Conn, exit_after: Duration) {
    let peer = conn.peer_addr().clone();
    let (mut reader, writer) = conn.into_split();
    // gtimer.SetTimeout: ask the client to leave later.
    let doexit = {
        let writer = writer.clone();
        tokio::spawn(async move {
            tokio::time::sleep(exit_after).await;
            if let Err(e) = send_msg(&writer, "doexit", "").await {
                tracing::warn!(error = %e, "cannot send doexit");
            }
        })
    };
    // Bounded by the client: ends when it closes.
    loop {
        match recv_msg(&mut reader).await {
            Ok(Some(msg)) => match msg.act.as_str() {
                "hello" => {
                    tracing::info!("hello message from [{peer}]: {}", msg.data);
                    if let Err(e) = send_msg(&writer, "hello", "Nice to meet you!").await {
                        tracing::warn!(error = %e, "cannot answer hello");
                    }
                }
                "heartbeat" => tracing::info!("heartbeat from [{peer}]"),
                _ => tracing::error!("invalid message: {msg:?}"),
            },
            Ok(None) => {}
            Err(PkgError::Closed) => {
                tracing::info!("client closed");
                break;
            }
            Err(e) => {
                tracing::warn!(error = %e, "connection ended");
                break;
            }
        }
    }
    doexit.abort();
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_ansi(std::io::stdout().is_terminal())
        .init();
    let args = match parse_args() {
        Ok(args) => args,
        Err(why) => {
            if !why.is_empty() {
                eprintln!("{why}\n");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let server = match Server::builder()
        .pkg_option(PkgOption::new().header_size(args.header_size))
        .bind(&args.addr)
        .await
    {
        Ok(server) => server,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    println!("listening on {}", server.local_addr());
    let _ = std::io::stdout().flush();
    let exit_after = args.exit_after;
    let handle = server.serve(move |conn| serve_client(conn, exit_after));

    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            eprintln!("cannot listen for SIGTERM: {e}");
            return ExitCode::FAILURE;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    let report = handle.shutdown(Duration::from_secs(5)).await;
    tracing::info!(
        drained = report.drained,
        aborted = report.aborted,
        "server stopped"
    );
    ExitCode::SUCCESS
}
