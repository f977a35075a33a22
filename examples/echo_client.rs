//! A client for `echo_server`: sends packets, checks the echoes and prints
//! round-trip times. Same wire format: over tcp, tls and unix a 4-byte
//! big-endian length + payload; over ws and wss one binary message per
//! packet (no length prefix), to `ws://ADDR/PATH` or `wss://ADDR/PATH`.
//!
//! ```text
//! cargo run --example echo_client -- --addr 127.0.0.1:19001 [--count 10] [--size 64]
//! cargo run --example echo_client -- --transport tls --ca ca.pem [--server-name localhost] --addr 127.0.0.1:19443
//! cargo run --example echo_client -- --transport unix --addr /tmp/echo.sock
//! cargo run --example echo_client -- --transport ws --addr 127.0.0.1:19001 [--path /]
//! cargo run --example echo_client -- --transport wss --ca ca.pem [--server-name localhost] --addr 127.0.0.1:19443 [--path /]
//! ```
//!
//! For TLS the server's certificate must be an end-entity certificate (not
//! a CA) for the name given, e.g. `openssl req -x509 -newkey rsa:2048 -nodes
//! -keyout server.key -out server.pem -subj /CN=localhost -addext
//! subjectAltName=DNS:localhost -addext basicConstraints=critical,CA:FALSE`;
//! trust it with `--ca server.pem`. For wss the server is verified as the
//! host in ADDR (an IP address needs an IP subjectAltName) unless
//! `--server-name` names another.

use std::{convert::Infallible, process::ExitCode, time::Duration};

use bytes::{Bytes, BytesMut};
use getty::{
    codec::LengthCodec, new_session_fn, tls::ClientTlsConfig, BoxError, Client, MakeSessionService,
    Request, Session,
};
use tokio::{sync::mpsc, time::Instant};
use tokio_util::codec::BytesCodec;

const USAGE: &str = "usage: echo_client [--transport tcp|tls|unix|ws|wss|udp] [--addr ADDR] [--path PATH] [--ca PEM] [--server-name NAME] [--count N] [--size BYTES]";

struct Args {
    transport: String,
    addr: String,
    /// The WebSocket endpoint's path (ws, wss); `None` when not given.
    path: Option<String>,
    ca: Option<String>,
    server_name: Option<String>,
    count: usize,
    size: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        transport: "tcp".into(),
        addr: "127.0.0.1:19001".into(),
        path: None,
        ca: None,
        server_name: None,
        count: 10,
        size: 64,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("`{flag}` needs a value"));
        match flag.as_str() {
            "--transport" => a.transport = value()?,
            "--addr" => a.addr = value()?,
            "--path" => a.path = Some(value()?),
            "--ca" => a.ca = Some(value()?),
            "--server-name" => a.server_name = Some(value()?),
            "--count" => a.count = value()?.parse().map_err(|e| format!("--count: {e}"))?,
            "--size" => a.size = value()?.parse().map_err(|e| format!("--size: {e}"))?,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    let websocket = matches!(a.transport.as_str(), "ws" | "wss");
    match &a.path {
        Some(_) if !websocket => return Err("--path applies to --transport ws or wss only".into()),
        Some(path) if !path.starts_with('/') => {
            return Err(format!("--path: `{path}` does not start with `/`"))
        }
        _ => {}
    }
    if websocket && a.size == 0 {
        // An empty message carries no packet, so it would get no echo.
        return Err("--size: ws and wss need at least 1 byte per packet".into());
    }
    Ok(a)
}

/// Each session forwards the packets it receives to `echoes` and answers
/// nothing. `R` is what the codec decodes: `Bytes` from `LengthCodec`,
/// `BytesMut` from `BytesCodec` (ws, wss).
fn forward_to<R>(echoes: mpsc::UnboundedSender<Bytes>) -> impl MakeSessionService<R, Bytes> + Clone
where
    R: Clone + Into<Bytes> + Send + 'static,
{
    new_session_fn(move |_: &Session| {
        let tx = echoes.clone();
        Ok::<_, Infallible>(tower::service_fn(move |req: Request<R>| {
            if let Some(p) = req.message() {
                let _ = tx.send(p.clone().into());
            }
            async { Ok::<_, Infallible>(None::<Bytes>) }
        }))
    })
}

/// The TLS settings for tls and wss.
fn client_tls(a: &Args) -> Result<ClientTlsConfig, BoxError> {
    let ca =
        a.ca.as_deref()
            .ok_or_else(|| format!("--transport {} needs --ca", a.transport))?;
    let mut tls = ClientTlsConfig::with_root_file(ca)?;
    if let Some(name) = &a.server_name {
        tls = tls.server_name(name)?;
    }
    Ok(tls)
}

async fn run(a: Args) -> Result<(), BoxError> {
    let (tx, mut echoes) = mpsc::unbounded_channel();
    let mut builder = Client::builder().max_reconnect_attempts(Some(1));
    // What we connect to, for the error message.
    let mut target = a.addr.clone();
    let client = match a.transport.as_str() {
        "unix" => {
            builder
                .connect_unix(&a.addr, LengthCodec::new(), forward_to::<Bytes>(tx))
                .await?
        }
        "tcp" | "tls" => {
            if a.transport == "tls" {
                builder = builder.tls(client_tls(&a)?);
            }
            builder
                .connect(a.addr.as_str(), LengthCodec::new(), forward_to::<Bytes>(tx))
                .await?
        }
        "ws" | "wss" => {
            if a.transport == "wss" {
                builder = builder.tls(client_tls(&a)?);
            }
            target = format!(
                "{}://{}{}",
                a.transport,
                a.addr,
                a.path.as_deref().unwrap_or("/")
            );
            // One binary message is one packet: no length prefix inside it.
            builder
                .connect_ws(&target, BytesCodec::new(), forward_to::<BytesMut>(tx))
                .await?
        }
        "udp" => {
            // One datagram is one packet, as for WebSocket messages.
            builder
                .connect_udp(
                    a.addr.as_str(),
                    BytesCodec::new(),
                    forward_to::<BytesMut>(tx),
                )
                .await?
        }
        other => {
            return Err(
                format!("--transport `{other}` is not one of tcp, tls, unix, ws, wss, udp").into(),
            )
        }
    };
    let session = client
        .sessions()
        .sessions()
        .pop()
        .ok_or_else(|| format!("cannot connect to {target}"))?;
    println!("connected: {session}");
    let mut rtts = Vec::with_capacity(a.count);
    for i in 0..a.count {
        let payload = Bytes::from(vec![b'a' + (i % 26) as u8; a.size]);
        let start = Instant::now();
        session.send(payload.clone()).await?;
        let echo = tokio::time::timeout(Duration::from_secs(5), echoes.recv())
            .await
            .map_err(|_| "no echo within 5 s")?
            .ok_or("the session ended")?;
        let rtt = start.elapsed();
        if echo != payload {
            return Err(format!("packet {i}: the echo differs from what was sent").into());
        }
        println!("packet {i}: {} bytes, rtt {rtt:?}", a.size);
        rtts.push(rtt);
    }
    rtts.sort();
    if let (Some(min), Some(max)) = (rtts.first(), rtts.last()) {
        println!(
            "rtt min {min:?}, median {:?}, max {max:?}",
            rtts[rtts.len() / 2]
        );
    }
    client.shutdown(Duration::from_secs(5)).await;
    Ok(())
}

/// Logs to stderr through `tracing-subscriber`: `info` and up by default, so
/// the library's warnings (a refused handshake, an oversized packet, a
/// timeout) are seen; `RUST_LOG` adds or overrides directives
/// (`RUST_LOG=debug`, `RUST_LOG=getty=trace`).
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

#[tokio::main]
async fn main() -> ExitCode {
    // RUST_LOG=debug shows connection attempts and handshakes.
    init_tracing();
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            if !msg.is_empty() {
                eprintln!("echo_client: {msg}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("echo_client: {e}");
            ExitCode::FAILURE
        }
    }
}
