//! The package protocol spoken with programs written without the library
//! (Python's `socket` module, each header size 1 to 4, both directions),
//! and the gtcp example pair (`examples/gtcp_server.rs`,
//! `examples/gtcp_client.rs`) run as real processes.

mod pkg_support;

use std::{
    path::{Path, PathBuf},
    process::{Output, Stdio},
    time::{Duration, SystemTime},
};

use getty::pkg::{Conn, PkgError, PkgOption, Server};
use pkg_support::*;
use serde_json::{json, Value};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, BufReader},
    process::{Child, Command},
};

// ----- Python ------------------------------------------------------------------------

/// A client that speaks gtcp's package protocol with nothing but `socket`:
/// it reads the server's greeting, sends packages (empty, small, the
/// largest for 1-byte headers, two in one write, one a byte at a time),
/// and checks each echo. Prints `OK <h>`.
const PY_CLIENT: &str = r#"
import socket, sys
port, h = int(sys.argv[1]), int(sys.argv[2])
def frame(data):
    return len(data).to_bytes(h, "big") + data
def read_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise SystemExit("EOF after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return buf
def recv_pkg(s):
    n = int.from_bytes(read_exact(s, h), "big")
    return read_exact(s, n)
s = socket.create_connection(("127.0.0.1", port), timeout=10)
assert recv_pkg(s) == b"welcome", "greeting"
biggest = 255 if h == 1 else 5000
for data in [b"", b"abc", bytes(i % 256 for i in range(biggest))]:
    s.sendall(frame(data))
    got = recv_pkg(s)
    assert got == data, "echo of %d bytes came back as %d" % (len(data), len(got))
s.sendall(frame(b"one") + frame(b"two"))
assert recv_pkg(s) == b"one" and recv_pkg(s) == b"two", "coalesced"
for b in frame(b"trickle"):
    s.sendall(bytes([b]))
assert recv_pkg(s) == b"trickle", "trickled"
s.close()
print("OK", h)
"#;

/// A server that speaks the protocol with nothing but `socket`: prints its
/// port, reads one package, answers with the data reversed and then an
/// empty package, and closes.
const PY_SERVER: &str = r#"
import socket, sys
h = int(sys.argv[1])
def read_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise SystemExit("EOF")
        buf += chunk
    return buf
l = socket.socket()
l.bind(("127.0.0.1", 0))
l.listen(1)
l.settimeout(10)
print(l.getsockname()[1], flush=True)
c, _ = l.accept()
c.settimeout(10)
n = int.from_bytes(read_exact(c, h), "big")
data = read_exact(c, n)
c.sendall(len(data).to_bytes(h, "big") + data[::-1] + (0).to_bytes(h, "big"))
c.close()
"#;

#[tokio::test]
async fn a_python_socket_client_speaks_the_package_protocol_with_each_header_size() {
    for h in 1..=4u8 {
        let server = Server::builder()
            .pkg_option(PkgOption::new().header_size(h))
            .bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = server.local_addr().as_socket_addr().expect("IP").port();
        let handle = server.serve(|conn: Conn| async move {
            conn.send_pkg(b"welcome").await?;
            echo(conn).await
        });
        let out = within(
            Duration::from_secs(30),
            Command::new("python3")
                .args(["-c", PY_CLIENT, &port.to_string(), &h.to_string()])
                .kill_on_drop(true)
                .output(),
        )
        .await
        .expect("run python3");
        assert!(out.status.success(), "header size {h}: {}", text(&out));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("OK {h}")
        );
        handle.shutdown(LIMIT).await;
    }
}

#[tokio::test]
async fn a_conn_speaks_the_package_protocol_with_a_python_socket_server_for_each_header_size() {
    for h in 1..=4u8 {
        let mut python = Command::new("python3")
            .args(["-c", PY_SERVER, &h.to_string()])
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start python3");
        let stdout = python.stdout.take().expect("stdout");
        let mut port = String::new();
        within(LIMIT, BufReader::new(stdout).read_line(&mut port))
            .await
            .expect("port");
        let option = PkgOption::new().header_size(h);
        let mut conn = Conn::builder()
            .pkg_option(option)
            .connect(format!("127.0.0.1:{}", port.trim()))
            .await
            .expect("connect");
        conn.send_pkg(b"getty").await.expect("send");
        assert_eq!(
            within(LIMIT, conn.recv_pkg()).await.expect("reply"),
            &b"ytteg"[..]
        );
        assert_eq!(
            within(LIMIT, conn.recv_pkg()).await.expect("empty"),
            &b""[..]
        );
        assert!(within(LIMIT, conn.recv_pkg())
            .await
            .unwrap_err()
            .is_closed());
        let status = within(LIMIT, python.wait()).await.expect("python exits");
        assert!(status.success(), "header size {h}");
    }
}

fn text(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

// ----- the examples --------------------------------------------------------------------

/// The newest modification time under `dir` (recursively), for `.rs` files.
fn newest_source(dir: &Path) -> SystemTime {
    let mut newest = SystemTime::UNIX_EPOCH;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return newest;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let time = if path.is_dir() {
            newest_source(&path)
        } else if path.extension().is_some_and(|e| e == "rs") {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(newest)
        } else {
            continue;
        };
        newest = newest.max(time);
    }
    newest
}

/// The built example `name`. `cargo test` builds examples next to the test
/// binary (`target/<profile>/examples/`); when it is missing or older than
/// the sources (say, `cargo test --test pkg_interop` after an edit), it is
/// built once with `cargo build --example`.
fn example(name: &str) -> PathBuf {
    static BUILT: std::sync::Once = std::sync::Once::new();
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test> -> target/<profile>/examples/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .join("examples");
    let path = dir.join(name);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sources = newest_source(&root.join("src")).max(newest_source(&root.join("examples")));
    let fresh = |p: &Path| {
        p.metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|built| built >= sources)
    };
    if !fresh(&path) {
        BUILT.call_once(|| {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
            let mut cmd = std::process::Command::new(cargo);
            cmd.args([
                "build",
                "--example",
                "gtcp_server",
                "--example",
                "gtcp_client",
            ])
            .current_dir(root);
            if dir
                .parent()
                .and_then(Path::file_name)
                .is_some_and(|p| p == "release")
            {
                cmd.arg("--release");
            }
            let status = cmd.status().expect("run cargo build");
            assert!(status.success(), "cargo build --example failed");
        });
    }
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// Starts the example server and returns it with the address it printed.
async fn start_server(args: &[&str]) -> (Child, String, tokio::task::JoinHandle<String>) {
    let mut server = Command::new(example("gtcp_server"))
        .args(["--addr", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start gtcp_server");
    let mut lines = BufReader::new(server.stdout.take().expect("stdout")).lines();
    let first = within(LIMIT, lines.next_line())
        .await
        .expect("read stdout")
        .expect("a first line");
    let addr = first
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first line is {first:?}"))
        .to_owned();
    // The rest of its output, collected until it exits.
    let rest = tokio::spawn(async move {
        let mut all = String::new();
        // Bounded by the process: ends at its EOF.
        while let Ok(Some(line)) = lines.next_line().await {
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    (server, addr, rest)
}

/// Stops `server` and returns everything it printed after its first line.
async fn stop_server(mut server: Child, rest: tokio::task::JoinHandle<String>) -> String {
    server.start_kill().expect("kill gtcp_server");
    let _ = within(LIMIT, server.wait()).await;
    let mut stderr = String::new();
    if let Some(mut err) = server.stderr.take() {
        let _ = err.read_to_string(&mut stderr).await;
    }
    let stdout = within(LIMIT, rest).await.expect("collector");
    stdout + &stderr
}

async fn replay_the_seed_example(header_size: &str) {
    let hs = ["--header-size", header_size];
    let (server, addr, rest) = start_server(&["--exit-after", "4", hs[0], hs[1]]).await;
    let client = within(
        Duration::from_secs(30),
        Command::new(example("gtcp_client"))
            .args(["--addr", &addr, hs[0], hs[1]])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("run gtcp_client");
    let client_log = text(&client);
    // Give the server a moment to log the client's close, then stop it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let server_log = stop_server(server, rest).await;
    assert!(
        client.status.success(),
        "client did not exit on doexit:\n{client_log}"
    );
    assert!(
        client_log.contains(&format!(
            "hello response message from [{addr}]: Nice to meet you!"
        )),
        "{client_log}"
    );
    assert!(
        client_log.contains(&format!("exit command from [{addr}]")),
        "{client_log}"
    );
    assert!(server_log.contains("hello message from ["), "{server_log}");
    assert!(server_log.contains("My name's John!"), "{server_log}");
    assert!(
        server_log.matches("heartbeat from [").count() >= 2,
        "{server_log}"
    );
    assert!(server_log.contains("client closed"), "{server_log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gtcp_examples_replay_the_seeds_conversation_and_the_client_exits_on_doexit() {
    replay_the_seed_example("2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gtcp_examples_agree_on_a_one_byte_header() {
    replay_the_seed_example("1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_server_skips_packages_that_are_not_messages_and_keeps_the_connection() {
    let (server, addr, rest) = start_server(&["--exit-after", "30"]).await;
    let mut conn = Conn::connect(&addr).await.expect("connect");
    conn.send_pkg(b"").await.expect("empty");
    conn.send_pkg(b"not json at all").await.expect("garbage");
    conn.send_pkg(br#"{"no":"act"}"#).await.expect("no Act");
    let hello = json!({"Act": "hello", "Data": "still here"}).to_string();
    let reply = within(LIMIT, conn.send_recv_pkg(hello))
        .await
        .expect("answer to hello");
    let reply: Value = serde_json::from_slice(&reply).expect("JSON reply");
    assert_eq!(reply, json!({"Act": "hello", "Data": "Nice to meet you!"}));
    conn.close().await.expect("close");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = stop_server(server, rest).await;
    assert!(log.contains("skipping an empty package"), "{log}");
    assert!(log.contains("skipping a package that is not JSON"), "{log}");
    assert!(log.contains("not a message"), "{log}");
    assert!(log.contains("still here"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_client_skips_packages_that_are_not_messages_and_exits_on_doexit() {
    let server = Server::bind("127.0.0.1:0").await.expect("bind");
    let addr = server.local_addr().to_string();
    let handle = server.serve(|mut conn: Conn| async move {
        conn.send_pkg(b"").await?;
        conn.send_pkg(b"\xff\xfe garbage").await?;
        conn.send_pkg(json!({"Act": "doexit", "Data": ""}).to_string())
            .await?;
        // The client closes on doexit (a heartbeat or two may come first).
        for _ in 0..30 {
            match conn.recv_pkg_timeout(Duration::from_secs(20)).await {
                Ok(_) => continue,
                Err(PkgError::Closed) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Err(PkgError::Io(std::io::Error::other(
            "the client never closed",
        )))
    });
    let client = within(
        Duration::from_secs(30),
        Command::new(example("gtcp_client"))
            .args(["--addr", &addr])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("run gtcp_client");
    let log = text(&client);
    assert!(client.status.success(), "{log}");
    assert!(log.contains("skipping an empty package"), "{log}");
    assert!(log.contains("skipping a package that is not JSON"), "{log}");
    assert!(log.contains("exit command from"), "{log}");
    let report = handle.shutdown(LIMIT).await;
    assert_eq!(report.aborted, 0);
}
