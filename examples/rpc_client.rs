//! A client of `rpc_server` (or of a Go erpc v6 server with the same
//! routes) over erpc's raw wire format, built on [`getty::rpc::Peer`].
//!
//! ```text
//! cargo run --release --example rpc_client -- --addr 127.0.0.1:9090 [--n N] [--codec json|plain] [--gzip]
//! cargo run --release --example rpc_client -- --addr 127.0.0.1:9090 --load [-c C] [-d D] [-s BYTES] [--secs S] [--gzip]
//! ```
//!
//! Check mode (the default) runs these checks and exits 0 only if all pass:
//!
//! 1. `N` calls to `/home/echo` (default 100), each with a distinct
//!    argument in the chosen codec (json: an object; plain: a string), and
//!    each reply must equal its argument;
//! 2. a call to `/home/fail` must fail with status code 1234, msg
//!    `home fail`;
//! 3. a call to `/home/push_me` must reply `"pushed"`, and the server's
//!    push `/push/hello` (json `{"hello":"world"}`) must reach this
//!    client's router within 5 s.
//!
//! It prints one summary line; on a failure it says which check failed
//! and exits 1. `--gzip` sends every call through transfer filter `g`
//! (gzip, level 5; the server must register it under `g` too, as
//! `rpc_server` does).
//!
//! Load mode (`--load`) dials `C` sessions (default 1), keeps `D` calls in
//! flight on each (default 1: one loop per slot, each waiting for its
//! reply before the next call), sends `/home/echo` plain-codec bodies of
//! `BYTES` bytes (default 581) for `S` seconds (default 5) and prints,
//! last, exactly `RESULT tps=<completed OK calls per second> errors=<count>`.
//! A reply of the wrong length counts as an error. It exits 0 when there
//! was no error.
//!
//! Exit codes: 0 all passed, 1 a check failed (or the server could not be
//! reached), 2 a bad command line.

use std::{
    io::Write,
    process::ExitCode,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use getty::rpc::{
    codec::{CodecId, FromBody, IntoBody, Raw},
    xfer::{Gzip, Md5},
    CallBuilder, Peer, PushCtx, Router, Session, Status,
};
use serde_json::{json, Value};
use tokio::sync::mpsc;

const USAGE: &str = "usage: rpc_client [--addr IP:PORT] [--n N] [--codec json|plain] [--gzip]\n\
     \x20      rpc_client [--addr IP:PORT] --load [-c C] [-d D] [-s BYTES] [--secs S] [--gzip]\n\
     \n\
     --addr IP:PORT   the server (default 127.0.0.1:9090)\n\
     --n N            echo calls to check (default 100)\n\
     --codec C        json (default) or plain: the codec of the echo calls\n\
     --gzip           send every call through transfer filter g (gzip)\n\
     --load           measure throughput instead of checking:\n\
     -c C             sessions, each its own connection (default 1)\n\
     -d D             calls in flight per session (default 1)\n\
     -s BYTES         plain body size of each call (default 581)\n\
     --secs S         how long to call, in seconds (default 5)\n\
     \n\
     The last line of --load is `RESULT tps=<int> errors=<int>`.";

/// How long the pushed `/push/hello` may take to arrive.
const PUSH_WAIT: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, PartialEq)]
enum Codec {
    Json,
    Plain,
}

struct Args {
    addr: String,
    n: usize,
    codec: Codec,
    gzip: bool,
    load: Option<Load>,
}

#[derive(Clone, Copy)]
struct Load {
    sessions: usize,
    depth: usize,
    size: usize,
    secs: Duration,
}

enum ArgsError {
    Help,
    Bad(String),
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, ArgsError> {
    let mut parsed = Args {
        addr: "127.0.0.1:9090".to_owned(),
        n: 100,
        codec: Codec::Json,
        gzip: false,
        load: None,
    };
    let mut load = Load {
        sessions: 1,
        depth: 1,
        size: 581,
        secs: Duration::from_secs(5),
    };
    let mut load_only = None;
    let mut want_load = false;
    while let Some(arg) = args.next() {
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
            "--addr" => parsed.addr = value()?,
            "--n" => parsed.n = number(&flag, &value()?, 1)?,
            "--codec" => {
                parsed.codec = match value()?.as_str() {
                    "json" => Codec::Json,
                    "plain" => Codec::Plain,
                    other => {
                        return Err(ArgsError::Bad(format!(
                            "--codec: `{other}` is not json or plain"
                        )))
                    }
                }
            }
            "--gzip" => parsed.gzip = true,
            "--load" => want_load = true,
            "-c" => load.sessions = number(&flag, &value()?, 1)?,
            "-d" => load.depth = number(&flag, &value()?, 1)?,
            "-s" => load.size = number(&flag, &value()?, 0)?,
            "--secs" => {
                let v = value()?;
                load.secs = v
                    .parse::<f64>()
                    .ok()
                    .filter(|s| *s > 0.0)
                    .and_then(|s| Duration::try_from_secs_f64(s).ok())
                    .ok_or_else(|| {
                        ArgsError::Bad(format!("--secs: `{v}` is not a positive number"))
                    })?;
            }
            _ => return Err(ArgsError::Bad(format!("unknown argument `{flag}`"))),
        }
        if matches!(flag.as_str(), "-c" | "-d" | "-s" | "--secs") {
            load_only = Some(flag);
        }
    }
    match (want_load, load_only) {
        (true, _) => parsed.load = Some(load),
        (false, Some(flag)) => {
            return Err(ArgsError::Bad(format!("`{flag}` applies to --load only")))
        }
        (false, None) => {}
    }
    Ok(parsed)
}

/// A whole number of at least `min`.
fn number(flag: &str, value: &str, min: usize) -> Result<usize, ArgsError> {
    match value.parse::<usize>() {
        Ok(n) if n >= min => Ok(n),
        _ => Err(ArgsError::Bad(format!(
            "{flag}: `{value}` is not a whole number of at least {min}"
        ))),
    }
}

/// A client peer: gzip as `g` and md5 as `m` (as the server has them), and
/// a router taking the server's `/push/hello` into `pushes`.
fn peer(pushes: Option<mpsc::UnboundedSender<Value>>) -> Peer {
    let mut router = Router::new();
    if let Some(tx) = pushes {
        router = router.push("/push/hello", move |_: PushCtx, body: Value| {
            let tx = tx.clone();
            async move {
                // The check may have given up already; nothing to do then.
                let _ = tx.send(body);
                Ok(())
            }
        });
    }
    Peer::builder()
        .router(router)
        .xfer_filter(Gzip::new(5))
        .xfer_filter(Md5::new())
        // Stop at the first lost connection instead of redialing: a
        // check or a measurement across a reconnect would mislead.
        .redial_times(Some(0))
        .build()
}

/// The call with the command line's codec and filter.
fn with_options<A: IntoBody, R: FromBody>(
    call: CallBuilder<A, R>,
    codec: CodecId,
    gzip: bool,
) -> CallBuilder<A, R> {
    let call = call.codec(codec);
    if gzip {
        call.xfer(b'g')
    } else {
        call
    }
}

/// Check mode: the summary line, or what failed.
async fn check(args: &Args) -> Result<String, String> {
    let (tx, mut pushes) = mpsc::unbounded_channel();
    let peer = peer(Some(tx));
    let session = peer
        .dial(args.addr.clone())
        .await
        .map_err(|e| format!("cannot reach {}: {e}", args.addr))?;
    let result = run_checks(args, &session, &mut pushes).await;
    peer.shutdown(Duration::from_secs(1)).await;
    result
}

async fn run_checks(
    args: &Args,
    session: &Session,
    pushes: &mut mpsc::UnboundedReceiver<Value>,
) -> Result<String, String> {
    let (codec, codec_name) = match args.codec {
        Codec::Json => (CodecId::JSON, "json"),
        Codec::Plain => (CodecId::PLAIN, "plain"),
    };
    for i in 0..args.n {
        match args.codec {
            Codec::Json => {
                let arg = json!({ "i": i, "text": format!("hello #{i}") });
                let call = session.call::<_, Value>("/home/echo", &arg);
                let reply = with_options(call, codec, args.gzip)
                    .await
                    .map_err(|e| format!("echo #{i}: {e}"))?;
                if reply != arg {
                    return Err(format!("echo #{i}: sent {arg}, got back {reply}"));
                }
            }
            Codec::Plain => {
                let arg = format!("hello #{i}");
                let call = session.call::<_, String>("/home/echo", arg.as_str());
                let reply = with_options(call, codec, args.gzip)
                    .await
                    .map_err(|e| format!("echo #{i}: {e}"))?;
                if reply != arg {
                    return Err(format!("echo #{i}: sent {arg:?}, got back {reply:?}"));
                }
            }
        }
    }

    let call = session.call::<_, Raw>("/home/fail", ());
    match with_options(call, codec, args.gzip).await {
        Err(status) if status.code() == 1234 && status.msg() == "home fail" => {}
        Err(status) => {
            return Err(format!(
                "/home/fail: expected status 1234 `home fail`, got {status}"
            ))
        }
        Ok(Raw(body)) => return Err(format!("/home/fail succeeded with body {body:?}")),
    }

    let call = session.call::<_, String>("/home/push_me", ());
    let reply = with_options(call, codec, args.gzip)
        .await
        .map_err(|e: Status| format!("/home/push_me: {e}"))?;
    if reply != "pushed" {
        return Err(format!("/home/push_me replied {reply:?}, not \"pushed\""));
    }
    let pushed = match tokio::time::timeout(PUSH_WAIT, pushes.recv()).await {
        Ok(Some(body)) => body,
        Ok(None) => return Err("/push/hello: the client's router went away".into()),
        Err(_) => return Err(format!("/push/hello did not arrive within {PUSH_WAIT:?}")),
    };
    let expected = json!({ "hello": "world" });
    if pushed != expected {
        return Err(format!("/push/hello carried {pushed}, not {expected}"));
    }

    Ok(format!(
        "ok: {n} echoes ({codec_name}{gzip}), /home/fail -> 1234 home fail, \
         /home/push_me -> \"pushed\" with push /push/hello {pushed}",
        n = args.n,
        gzip = if args.gzip { ", gzip" } else { "" },
    ))
}

/// What the loops of load mode counted.
#[derive(Default)]
struct Tally {
    ok: u64,
    errors: u64,
    first_error: Option<String>,
}

/// Load mode: C sessions, D loops each, plain echoes of one shared body.
async fn load(args: &Args, load: Load) -> Result<Tally, String> {
    let peer = peer(None);
    let mut sessions = Vec::with_capacity(load.sessions);
    for _ in 0..load.sessions {
        let session = peer
            .dial(args.addr.clone())
            .await
            .map_err(|e| format!("cannot reach {}: {e}", args.addr))?;
        sessions.push(session);
    }
    // One body for every call: cloning a `Raw` clones a `Bytes` handle.
    let body = Arc::new(Raw(Bytes::from(vec![b'x'; load.size])));
    let started = Instant::now();
    let deadline = started + load.secs;
    let mut loops = tokio::task::JoinSet::new();
    for session in &sessions {
        for _ in 0..load.depth {
            let (session, body, gzip) = (session.clone(), Arc::clone(&body), args.gzip);
            loops.spawn(async move {
                let mut tally = Tally::default();
                while Instant::now() < deadline {
                    let call = session
                        .call::<_, Raw>("/home/echo", &*body)
                        .codec(CodecId::PLAIN);
                    let call = if gzip { call.xfer(b'g') } else { call };
                    let failure = match call.await {
                        Ok(reply) if reply.0.len() == body.0.len() => None,
                        Ok(reply) => Some(format!(
                            "echo of {} bytes came back with {}",
                            body.0.len(),
                            reply.0.len()
                        )),
                        Err(status) => Some(status.to_string()),
                    };
                    match failure {
                        None => tally.ok += 1,
                        Some(e) => {
                            tally.errors += 1;
                            tally.first_error.get_or_insert(e);
                            // A lost connection fails calls at once; do not spin.
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
                tally
            });
        }
    }
    let mut total = Tally::default();
    while let Some(done) = loops.join_next().await {
        let tally = done.map_err(|e| format!("a load loop failed: {e}"))?;
        total.ok += tally.ok;
        total.errors += tally.errors;
        if total.first_error.is_none() {
            total.first_error = tally.first_error;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    peer.shutdown(Duration::from_secs(1)).await;
    let tps = total.ok as f64 / elapsed;
    println!(
        "load: {} sessions x {} in flight, {}-byte plain bodies{}: {} calls OK in {elapsed:.2} s",
        load.sessions,
        load.depth,
        load.size,
        if args.gzip { ", gzip" } else { "" },
        total.ok
    );
    if let Some(e) = &total.first_error {
        eprintln!("rpc_client: first error: {e}");
    }
    println!("RESULT tps={} errors={}", tps.round() as u64, total.errors);
    Ok(total)
}

async fn run(args: Args) -> ExitCode {
    match args.load {
        None => match check(&args).await {
            Ok(summary) => {
                println!("{summary}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("rpc_client: FAILED: {e}");
                ExitCode::FAILURE
            }
        },
        Some(spec) => match load(&args, spec).await {
            Ok(tally) if tally.errors == 0 && tally.ok > 0 => ExitCode::SUCCESS,
            Ok(tally) if tally.ok == 0 => {
                eprintln!("rpc_client: FAILED: no call completed");
                ExitCode::FAILURE
            }
            Ok(tally) => {
                eprintln!("rpc_client: FAILED: {} calls failed", tally.errors);
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("rpc_client: FAILED: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(ArgsError::Help) => {
            let _ = writeln!(std::io::stdout(), "{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(ArgsError::Bad(msg)) => {
            eprintln!("rpc_client: {msg}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    // Warnings of the library (a session error, say) go to stderr; RUST_LOG
    // overrides the level.
    let filter = tracing_subscriber::EnvFilter::builder()
        .with_default_directive(tracing_subscriber::filter::LevelFilter::WARN.into())
        .from_env_lossy();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rpc_client: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(args))
}
