//! gtcp's asynchronous full-duplex example, client side
//! (`gtcp_common_client.go` in the gtcp docs), on `getty::pkg`.
//!
//! Connects, sends `heartbeat` every second and `hello` after 3 seconds
//! from their own tasks (gtcp's `gtimer`), and reads the server's messages
//! in a loop: it logs the answer to `hello`, and on `doexit` closes the
//! connection and exits with status 0. A package that is not a message
//! (empty, or not JSON) is logged and skipped. It exits with status 1 when
//! the server goes away without `doexit`.
//!
//! ```text
//! cargo run --example gtcp_server -- [--addr 127.0.0.1:8999] [--header-size 1..4] [--exit-after SECS]
//! cargo run --example gtcp_client -- [--addr 127.0.0.1:8999] [--header-size 1..4]
//! ```

#[path = "gtcp_common/msg.rs"]
mod msg;

use std::{io::IsTerminal, process::ExitCode, time::Duration};

use getty::pkg::{Conn, PkgError, PkgOption};
use tracing_subscriber::EnvFilter;

use msg::{recv_msg, send_msg};

const USAGE: &str = "usage: gtcp_client [--addr HOST:PORT] [--header-size 1..4]\n\
     \n\
     --addr HOST:PORT     the server (default 127.0.0.1:8999)\n\
     --header-size N      the package header's width in bytes, 1 to 4 (default 2)";

struct Args {
    addr: String,
    header_size: u8,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        addr: "127.0.0.1:8999".to_owned(),
        header_size: 2,
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
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
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
    let conn = match Conn::builder()
        .pkg_option(PkgOption::new().header_size(args.header_size))
        .connect(&args.addr)
        .await
    {
        Ok(conn) => conn,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let peer = conn.peer_addr().clone();
    let (mut reader, writer) = conn.into_split();

    // gtimer.SetInterval: a heartbeat every second.
    let heartbeat = {
        let writer = writer.clone();
        tokio::spawn(async move {
            let period = Duration::from_secs(1);
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            // Ends when sending fails (the connection closed).
            loop {
                ticks.tick().await;
                if let Err(e) = send_msg(&writer, "heartbeat", "").await {
                    tracing::debug!(error = %e, "heartbeat stopped");
                    break;
                }
            }
        })
    };
    // gtimer.SetTimeout: hello after 3 seconds.
    let hello = {
        let writer = writer.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            if let Err(e) = send_msg(&writer, "hello", "My name's John!").await {
                tracing::warn!(error = %e, "cannot send hello");
            }
        })
    };

    // Bounded by the server: ends on doexit or when it closes.
    let status = loop {
        match recv_msg(&mut reader).await {
            Ok(Some(msg)) => match msg.act.as_str() {
                "hello" => tracing::info!("hello response message from [{peer}]: {}", msg.data),
                "heartbeat" => tracing::info!("heartbeat from [{peer}]"),
                "doexit" => {
                    tracing::info!("exit command from [{peer}]");
                    if let Err(e) = writer.close().await {
                        tracing::warn!(error = %e, "closing");
                    }
                    break ExitCode::SUCCESS;
                }
                _ => tracing::error!("invalid message: {msg:?}"),
            },
            Ok(None) => {}
            Err(PkgError::Closed) => {
                tracing::info!("server closed");
                break ExitCode::FAILURE;
            }
            Err(e) => {
                tracing::error!(error = %e, "connection failed");
                break ExitCode::FAILURE;
            }
        }
    };
    heartbeat.abort();
    hello.abort();
    status
}
