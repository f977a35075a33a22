//! The examples as an operator runs them: `echo_server` is built (cargo
//! rebuilds it only when stale, so the binary under test is the current
//! source) and run as a process on 127.0.0.1; what it logs is read from its
//! stderr.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{mpsc, Arc, Mutex},
    time::{Duration, Instant},
};

#[path = "support/examples.rs"]
mod support;
use support::{example, wait_bounded};

const LIMIT: Duration = Duration::from_secs(10);

/// A running `echo_server`: its address, and its stderr collected line by
/// line. Killed (by its pid) when dropped, if still running.
struct EchoServer {
    child: Child,
    addr: String,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl EchoServer {
    fn start(args: &[&str], rust_log: Option<&str>) -> EchoServer {
        let mut cmd = Command::new(example(&["echo_server"], "echo_server"));
        cmd.args(["--addr", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove("RUST_LOG");
        if let Some(filter) = rust_log {
            cmd.env("RUST_LOG", filter);
        }
        let mut child = cmd.spawn().expect("spawn echo_server");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let lines = Arc::clone(&stderr);
        let err = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            // Ends at EOF, when the process exits.
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                lines.lock().unwrap().push(line);
            }
        });
        let out = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut first = String::new();
            let _ = BufReader::new(out).read_line(&mut first);
            let _ = tx.send(first);
        });
        let mut server = EchoServer {
            child,
            addr: String::new(),
            stderr,
        };
        let first = rx.recv_timeout(LIMIT).unwrap_or_default();
        match first.trim().strip_prefix("listening on ") {
            Some(addr) => server.addr = addr.to_owned(),
            None => {
                let status = wait_bounded(&mut server.child, Duration::from_secs(2));
                panic!(
                    "echo_server {args:?} did not start: stdout {first:?}, exit {status:?}, stderr {:?}",
                    server.stderr()
                );
            }
        }
        server
    }

    fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits (bounded) until a stderr line satisfies `pred`; returns it.
    fn until_logged(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(line) = self.stderr().into_iter().find(|l| pred(l)) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} on stderr: {:?}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGINT by pid, then the exit status (bounded).
    fn interrupt(&mut self) -> ExitStatus {
        let sent = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(sent, "could not send SIGINT to echo_server");
        wait_bounded(&mut self.child, LIMIT).expect("echo_server exits after SIGINT")
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut v = u32::try_from(payload.len()).unwrap().to_be_bytes().to_vec();
    v.extend_from_slice(payload);
    v
}

#[test]
fn echo_server_with_read_timeout_drops_a_silent_client_after_it_and_logs_why() {
    let mut server = EchoServer::start(&["--read-timeout", "1"], None);

    // An active client is echoed.
    let mut active = TcpStream::connect(&server.addr).unwrap();
    active.set_read_timeout(Some(LIMIT)).unwrap();
    active.write_all(&frame(b"hello")).unwrap();
    let mut echo = [0u8; 9];
    active.read_exact(&mut echo).unwrap();
    assert_eq!(&echo[4..], b"hello");

    // A silent one is dropped after about a second.
    let mut silent = TcpStream::connect(&server.addr).unwrap();
    silent.set_read_timeout(Some(LIMIT)).unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 16];
    match silent.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("the echo server sent {n} bytes to a silent client"),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("no close within {LIMIT:?}: {e}"),
    }
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "silent client dropped after {took:?}, read timeout 1 s"
    );

    // And the operator is told why, at the default level (info).
    let line = server.until_logged("read-timeout line", |l| l.contains("read timeout"));
    assert!(
        line.contains("INFO") || line.contains("WARN"),
        "logged below info: {line}"
    );
    assert!(line.contains("session error"), "{line}");
    // Debug lines stay off without RUST_LOG.
    assert!(
        !server.stderr().iter().any(|l| l.contains("DEBUG")),
        "{:?}",
        server.stderr()
    );

    drop(active);
    let status = server.interrupt();
    assert!(status.success(), "exit after SIGINT: {status}");
    server.until_logged("shutdown lines", |l| l.contains("stopped"));
    server.until_logged("the SIGINT line", |l| l.contains("SIGINT: shutting down"));
}

/// The library's own warnings reach the operator by default: an oversized
/// packet's is printed (before, no subscriber was installed and stderr
/// stayed empty).
#[test]
fn echo_server_prints_the_librarys_warning_for_an_oversized_packet() {
    let server = EchoServer::start(&[], None);
    let mut peer = TcpStream::connect(&server.addr).unwrap();
    peer.set_read_timeout(Some(LIMIT)).unwrap();
    // A 16 MiB header, over the default 1 MiB max_packet_len.
    peer.write_all(&(16u32 << 20).to_be_bytes()).unwrap();
    let mut buf = [0u8; 16];
    let _ = peer.read(&mut buf); // the close (EOF or reset), bounded
    let line = server.until_logged("the oversized-packet warning", |l| {
        l.contains("WARN") && l.contains("exceeds max_packet_len")
    });
    assert!(line.contains("16777216"), "{line}");
}

#[test]
fn echo_server_cron_ticks_each_session_and_rust_log_overrides_the_level() {
    let server = EchoServer::start(&["--cron", "0.2"], Some("echo_server=debug"));
    let client = TcpStream::connect(&server.addr).unwrap();
    let ticks = |server: &EchoServer| {
        server
            .stderr()
            .iter()
            .filter(|l| l.contains("DEBUG") && l.contains("cron tick"))
            .count()
    };
    let deadline = Instant::now() + LIMIT;
    while ticks(&server) < 3 {
        assert!(
            Instant::now() < deadline,
            "3 ticks of 0.2 s not seen in {LIMIT:?}: {:?}",
            server.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(client);
}

#[test]
fn echo_server_refuses_bad_durations_with_usage() {
    for args in [
        ["--read-timeout", "0"],
        ["--read-timeout", "soon"],
        ["--cron", "-1"],
    ] {
        let mut child = Command::new(example(&["echo_server"], "echo_server"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let status = wait_bounded(&mut child, LIMIT).expect("exits at once");
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert_eq!(status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("is not a positive number of seconds"),
            "{args:?}: {err}"
        );
    }
}

/// `--max-buffered-input` sets the server's input budget: a peer stalling
/// mid-packet holds it until a newcomer needs room, then gives way, and the
/// operator reads why.
#[test]
fn echo_server_max_buffered_input_makes_a_staller_give_way_to_a_newcomer() {
    let server = EchoServer::start(&["--max-buffered-input", "65536"], None);
    let mut staller = TcpStream::connect(&server.addr).unwrap();
    staller.set_read_timeout(Some(LIMIT)).unwrap();
    // A 100,000-byte packet, of which 70,000 bytes come: more than the budget.
    staller.write_all(&100_000u32.to_be_bytes()).unwrap();
    staller.write_all(&[7u8; 70_000]).unwrap();
    std::thread::sleep(Duration::from_millis(200));

    let mut newcomer = TcpStream::connect(&server.addr).unwrap();
    newcomer.set_read_timeout(Some(LIMIT)).unwrap();
    newcomer.write_all(&frame(b"room please")).unwrap();
    let mut echo = [0u8; 15];
    newcomer.read_exact(&mut echo).unwrap();
    assert_eq!(&echo[4..], b"room please");
    let line = server.until_logged("the budget line", |l| {
        l.contains("input budget of 65536 bytes spent")
    });
    assert!(line.contains("WARN") || line.contains("INFO"), "{line}");
}
