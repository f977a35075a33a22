//! The RPC examples as a user runs them: `rpc_server` and `rpc_client` are
//! built (cargo rebuilds them only when stale, so the binaries under test
//! are the current source) and run as processes on 127.0.0.1, and so is an
//! independent Python client written from the erpc wire spec alone
//! (`tests/peers/erpc_client.py`).

use std::{
    io::{BufRead, BufReader, Read},
    net::TcpStream,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{mpsc, Arc, Mutex},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use getty::{
    rpc::{Peer, Status, Target},
    Client,
};

#[path = "support/examples.rs"]
mod support;
use support::{example, wait_bounded};

/// The examples these tests run, built together.
const RPC_EXAMPLES: [&str; 2] = ["rpc_server", "rpc_client"];

/// How long a server may take to start, or to exit once told to.
const LIMIT: Duration = Duration::from_secs(10);
/// How long one client run may take (100 calls, or a 1 s load run, in a
/// debug build; far below this).
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// A child process, killed (by its pid) when dropped if still running: no
/// path out of a test leaves it behind.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Reads a pipe to its end on a thread.
fn collect(pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = BufReader::new(pipe).read_to_string(&mut text);
        text
    })
}

/// A finished run: exit status, stdout, stderr.
struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs `cmd` to its end, within `RUN_LIMIT`.
fn run(mut cmd: Command) -> Run {
    let what = format!("{cmd:?}");
    let mut child = Guard(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove("RUST_LOG")
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {what}: {e}")),
    );
    let stdout = collect(child.0.stdout.take().expect("stdout"));
    let stderr = collect(child.0.stderr.take().expect("stderr"));
    let status = wait_bounded(&mut child.0, RUN_LIMIT)
        .unwrap_or_else(|| panic!("{what} ran for more than {RUN_LIMIT:?}"));
    Run {
        status,
        // The pipes close when the process exits.
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// A running `rpc_server`: its address and its stderr, line by line.
struct RpcServer {
    child: Guard,
    addr: String,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl RpcServer {
    fn start(args: &[&str]) -> RpcServer {
        let mut child = Guard(
            Command::new(example(&RPC_EXAMPLES, "rpc_server"))
                .args(["--addr", "127.0.0.1:0"])
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .env_remove("RUST_LOG")
                .spawn()
                .expect("spawn rpc_server"),
        );
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let lines = Arc::clone(&stderr);
        let err = child.0.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                lines.lock().unwrap().push(line);
            }
        });
        let out = child.0.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut first = String::new();
            let _ = BufReader::new(out).read_line(&mut first);
            let _ = tx.send(first);
        });
        let first = rx.recv_timeout(LIMIT).unwrap_or_default();
        let Some(addr) = first.trim().strip_prefix("listening on ") else {
            let status = wait_bounded(&mut child.0, Duration::from_secs(2));
            panic!(
                "rpc_server {args:?} did not start: stdout {first:?}, exit {status:?}, stderr {:?}",
                stderr.lock().unwrap()
            );
        };
        RpcServer {
            addr: addr.to_owned(),
            child,
            stderr,
        }
    }

    fn port(&self) -> String {
        self.addr.rsplit(':').next().expect("a port").to_owned()
    }

    fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// SIGINT by pid, then the exit status (bounded).
    fn interrupt(&mut self) -> ExitStatus {
        let sent = Command::new("kill")
            .args(["-INT", &self.child.0.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(sent, "could not send SIGINT to rpc_server");
        wait_bounded(&mut self.child.0, LIMIT).expect("rpc_server exits after SIGINT")
    }
}

fn client(server: &RpcServer, args: &[&str]) -> Run {
    let mut cmd = Command::new(example(&RPC_EXAMPLES, "rpc_client"));
    cmd.args(["--addr", &server.addr]).args(args);
    run(cmd)
}

#[test]
fn rpc_client_checks_pass_against_rpc_server_in_json_plain_and_gzip() {
    let server = RpcServer::start(&[]);
    for (args, says) in [
        (&[][..], "100 echoes (json)"),
        (&["--codec", "plain"][..], "100 echoes (plain)"),
        (&["--gzip"][..], "100 echoes (json, gzip)"),
    ] {
        let out = client(&server, args);
        assert!(
            out.status.success(),
            "rpc_client {args:?}: {}\nstdout {}\nstderr {}\nserver {:?}",
            out.status,
            out.stdout,
            out.stderr,
            server.stderr()
        );
        let summary = out.stdout.trim();
        assert!(summary.starts_with("ok: "), "{args:?}: {summary}");
        assert!(summary.contains(says), "{args:?}: {summary}");
        assert!(summary.contains("1234 home fail"), "{args:?}: {summary}");
        assert!(
            summary.contains(r#"/push/hello {"hello":"world"}"#),
            "{args:?}: {summary}"
        );
    }
}

#[test]
fn rpc_client_exits_1_saying_why_when_no_server_answers() {
    // A port that was free a moment ago, with nobody listening on it now.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap();
    let mut cmd = Command::new(example(&RPC_EXAMPLES, "rpc_client"));
    cmd.args(["--addr", &addr.to_string()]);
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("FAILED: cannot reach"),
        "{}",
        out.stderr
    );
}

#[test]
fn rpc_client_load_prints_a_result_line_with_positive_tps_and_no_errors() {
    let server = RpcServer::start(&[]);
    let out = client(
        &server,
        &["--load", "-c", "2", "-d", "4", "-s", "581", "--secs", "1"],
    );
    assert!(out.status.success(), "{}: {}", out.status, out.stderr);
    let last = out.stdout.lines().last().unwrap_or_default();
    let rest = last
        .strip_prefix("RESULT tps=")
        .unwrap_or_else(|| panic!("last line {last:?}"));
    let (tps, errors) = rest
        .split_once(" errors=")
        .unwrap_or_else(|| panic!("last line {last:?}"));
    let tps: u64 = tps.parse().unwrap_or_else(|_| panic!("tps in {last:?}"));
    assert!(tps > 0, "{last}");
    assert_eq!(errors, "0", "{last}\n{}", out.stderr);
}

#[test]
fn the_python_erpc_client_written_from_the_spec_passes_against_rpc_server() {
    let server = RpcServer::start(&[]);
    let mut cmd = Command::new("python3");
    cmd.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/peers/erpc_client.py"
    ))
    .arg(server.port());
    let out = run(cmd);
    assert!(
        out.status.success(),
        "erpc_client.py: {}\nstdout {}\nstderr {}\nserver {:?}",
        out.status,
        out.stdout,
        out.stderr,
        server.stderr()
    );
    assert_eq!(out.stdout.trim(), "ok");
}

#[test]
fn rpc_server_exits_0_within_seconds_of_sigint_with_a_client_connected() {
    let mut server = RpcServer::start(&[]);
    // A connected client does not hold the shutdown up.
    let _idle = TcpStream::connect(&server.addr).unwrap();
    let started = Instant::now();
    let status = server.interrupt();
    assert!(status.success(), "exit after SIGINT: {status}");
    assert!(started.elapsed() < LIMIT);
    let log = server.stderr();
    assert!(
        log.iter().any(|l| l.contains("SIGINT: shutting down")),
        "{log:?}"
    );
}

#[tokio::test]
async fn rpc_server_over_websocket_answers_a_peer_dialing_ws_at_root() {
    let server = RpcServer::start(&["--transport", "ws"]);
    let url = format!("ws://{}/", server.addr);
    let peer = Peer::builder()
        .redial_times(Some(0))
        .call_timeout(Some(LIMIT))
        .build();
    let session = peer
        .dial_with(Client::builder(), Target::Ws(url.clone()))
        .await
        .unwrap_or_else(|e| panic!("dial {url}: {e}; server {:?}", server.stderr()));
    let reply: String = session.call("/home/echo", "over websocket").await.unwrap();
    assert_eq!(reply, "over websocket");
    let err = session.call::<_, ()>("/home/fail", ()).await.unwrap_err();
    assert_eq!((err.code(), err.msg()), (1234, "home fail"));
    let err = session.call::<_, ()>("/nope", ()).await.unwrap_err();
    assert_eq!(err.code(), Status::CODE_NOT_FOUND);
    peer.shutdown(Duration::from_secs(1)).await;
}

// Bugs in src/rpc found while writing the examples, each with its test.

/// `redial_times(Some(0))` means "never redial" (erpc's `RedialTimes` 0):
/// a dialed session whose connection the server closes stays down. Before
/// the fix, the core client reconnected after every session that had
/// started (it counts only failed connects), so it redialed forever.
#[tokio::test]
async fn a_session_dialed_with_redial_times_0_does_not_redial_after_the_server_closes_it() {
    async fn bye(ctx: getty::rpc::CallCtx, _: ()) -> Result<String, Status> {
        // Graceful: the reply goes out, then the session closes.
        ctx.session().close();
        Ok("bye".to_owned())
    }
    let server = Peer::builder()
        .router(getty::rpc::Router::new().call("/bye", bye))
        .build();
    let addr = server.listen("127.0.0.1:0").await.unwrap().local_addr();
    let client = Peer::builder()
        .redial_times(Some(0))
        .redial_interval(Duration::from_millis(20))
        .build();
    let session = client.dial(addr.to_string()).await.unwrap();
    let reply: String = session.call("/bye", ()).await.unwrap();
    assert_eq!(reply, "bye");
    // 50 redial intervals: a redial, if any, has long happened.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!session.is_healthy(), "the session redialed");
    assert_eq!(server.session_count(), 0, "the server accepted a redial");
    let err = session.call::<_, String>("/bye", ()).await.unwrap_err();
    assert_eq!(err.code(), Status::CODE_CONN_CLOSED, "{err}");
    client.shutdown(Duration::from_secs(1)).await;
    server.shutdown(Duration::from_secs(1)).await;
}

/// The layers around a handler see its reply as it made it: one too large
/// for the encoder is checked (and answered 500) only after them, so a
/// layer can still shrink it.
#[tokio::test]
async fn a_routes_layer_sees_and_can_shrink_a_reply_too_large_to_write() {
    use getty::rpc::{codec::Raw, CallCtx, Message};
    async fn big(_: CallCtx, _: ()) -> Result<Raw, Status> {
        // Over the default frame limit of 1 MiB.
        Ok(Raw(vec![b'x'; 2 << 20].into()))
    }
    let shrink = tower::util::MapResponseLayer::new(|reply: Option<Message>| {
        reply.map(|reply| {
            let len = reply.body.len();
            let codec = reply.body_codec;
            reply.with_body(codec, format!("{len} bytes"))
        })
    });
    let server = Peer::builder()
        .router(getty::rpc::Router::new().call("/big", big).layer(shrink))
        .build();
    let addr = server.listen("127.0.0.1:0").await.unwrap().local_addr();
    let client = Peer::builder().redial_times(Some(0)).build();
    let session = client.dial(addr.to_string()).await.unwrap();
    let Raw(reply) = session.call("/big", ()).await.unwrap();
    assert_eq!(&reply[..], format!("{} bytes", 2 << 20).as_bytes());
    client.shutdown(Duration::from_secs(1)).await;
    server.shutdown(Duration::from_secs(1)).await;
}

/// A message the encoder would refuse (a service method over 255 bytes, an
/// unregistered filter, a frame over the limit) fails alone, as in erpc: a
/// call gets 104 Write Failed, a reply is replaced by a 500. Before the
/// fix, the encoder's error ended the whole session and every call
/// waiting on it.
#[tokio::test]
async fn an_unwritable_message_fails_alone_and_the_session_carries_on() {
    use getty::rpc::{codec::Raw, CallCtx};
    async fn echo(_: CallCtx, arg: Raw) -> Result<Raw, Status> {
        Ok(arg)
    }
    async fn big(_: CallCtx, _: ()) -> Result<Raw, Status> {
        // Over the default frame limit of 1 MiB.
        Ok(Raw(vec![b'x'; 2 << 20].into()))
    }
    let server = Peer::builder()
        .router(
            getty::rpc::Router::new()
                .call("/echo", echo)
                .call("/big", big),
        )
        .build();
    let addr = server.listen("127.0.0.1:0").await.unwrap().local_addr();
    let client = Peer::builder().redial_times(Some(0)).build();
    let session = client.dial(addr.to_string()).await.unwrap();

    let long = format!("/{}", "x".repeat(300));
    let err = session.call::<_, String>(long, "a").await.unwrap_err();
    assert_eq!(err.code(), Status::CODE_WRITE_FAILED, "{err}");
    let err = session
        .call::<_, String>("/echo", "a")
        .xfer(b'z')
        .await
        .unwrap_err();
    assert_eq!(err.code(), Status::CODE_WRITE_FAILED, "{err}");
    let body = Raw(vec![b'y'; 2 << 20].into());
    let err = session.call::<_, Raw>("/echo", body).await.unwrap_err();
    assert_eq!(err.code(), Status::CODE_WRITE_FAILED, "{err}");
    let err = session.push("/echo", "a").xfer(b'z').await.unwrap_err();
    assert_eq!(err.code(), Status::CODE_WRITE_FAILED, "{err}");

    let err = session.call::<_, Raw>("/big", ()).await.unwrap_err();
    assert_eq!(err.code(), Status::CODE_INTERNAL_SERVER_ERROR, "{err}");
    assert!(
        err.cause().is_some_and(|c| c.contains("cannot be written")),
        "{err}"
    );

    let reply: String = session.call("/echo", "still here").await.unwrap();
    assert_eq!(reply, "still here");
    assert!(session.is_healthy());
    client.shutdown(Duration::from_secs(1)).await;
    server.shutdown(Duration::from_secs(1)).await;
}
