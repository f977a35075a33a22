//! The compiler's messages for the slips a newcomer makes first: each
//! fixture below is compiled by `rustc` against the getty library this test
//! was built with, and the test checks that the error says what to do.
//!
//! No `trybuild`: the fixtures are type-checked only (`--emit metadata`),
//! against the rlib cargo built in this test's own `deps` directory, and a
//! fixture that must compile proves the harness before any message is
//! checked.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::SystemTime,
};

/// The `deps` directory this test binary was linked from.
fn deps_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.parent().expect("the deps directory").to_path_buf()
}

/// The newest getty rlib in `deps` (cargo keeps one per feature set; the
/// newest is the one just built from this source).
fn getty_rlib(deps: &Path) -> PathBuf {
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    for entry in std::fs::read_dir(deps).expect("read the deps directory") {
        let path = entry.expect("a deps entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !(name.starts_with("libgetty-") && name.ends_with(".rlib")) {
            continue;
        }
        let modified = path
            .metadata()
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        if newest.as_ref().is_none_or(|(t, _)| modified > *t) {
            newest = Some((modified, path));
        }
    }
    newest.expect("a libgetty rlib next to the test binary").1
}

/// The `rustc` of the toolchain whose cargo built this test.
fn rustc() -> PathBuf {
    let beside_cargo = Path::new(env!("CARGO")).with_file_name("rustc");
    if beside_cargo.exists() {
        beside_cargo
    } else {
        PathBuf::from("rustc")
    }
}

/// Type-checks `source` as a library using getty; returns whether it
/// compiled, and the compiler's output.
fn check(name: &str, source: &str) -> (bool, String) {
    let deps = deps_dir();
    let dir = std::env::temp_dir().join(format!("getty-diagnostics-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    let file = dir.join(format!("{name}.rs"));
    std::fs::write(&file, source).expect("write the fixture");
    let mut extern_getty = std::ffi::OsString::from("getty=");
    extern_getty.push(getty_rlib(&deps));
    let mut dependency = std::ffi::OsString::from("dependency=");
    dependency.push(&deps);
    let out = Command::new(rustc())
        .args([
            "--edition",
            "2021",
            "--crate-type",
            "lib",
            "--emit",
            "metadata",
        ])
        .args(["--color", "never", "--crate-name", name])
        .arg("--out-dir")
        .arg(&dir)
        .arg("-L")
        .arg(dependency)
        .arg("--extern")
        .arg(extern_getty)
        .arg(&file)
        .output()
        .expect("run rustc");
    let _ = std::fs::remove_dir_all(&dir);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Asserts that `source` fails to compile with every one of `expected` in
/// the compiler's output.
fn assert_error(name: &str, source: &str, expected: &[&str]) {
    let (ok, stderr) = check(name, source);
    assert!(!ok, "{name} compiled, but should not have");
    for want in expected {
        assert!(
            stderr.contains(want),
            "{name}: the compiler's output lacks {want:?}:\n{stderr}"
        );
    }
}

const PRELUDE: &str = r#"
#![allow(unused)]
use getty::{codec::{LengthCodec, LinesCodec}, new_session_fn, service_fn, BoxError, Bytes,
    EventListener, ListenerService, Request, Server, Session};
use std::convert::Infallible;

pub struct Echo;
impl EventListener<Bytes> for Echo {
    fn on_message(&mut self, _: &Session, pkg: Bytes) -> Option<Bytes> { Some(pkg) }
}

pub struct Lines;
impl EventListener<String, String> for Lines {
    fn on_message(&mut self, _: &Session<String>, line: String) -> Option<String> { Some(line) }
}
"#;

fn fixture(body: &str) -> String {
    format!("{PRELUDE}\npub async fn serve(server: Server) {{\n{body}\n}}\n")
}

#[test]
fn the_fixtures_compile_when_nothing_is_wrong() {
    let (ok, stderr) = check(
        "fine",
        &fixture(
            r#"
            let a = server.serve(LengthCodec::new(), new_session_fn(|_: &Session| {
                Ok::<_, BoxError>(ListenerService::new(Echo))
            }));
            let server = Server::builder().bind("127.0.0.1:0").await.unwrap();
            let b = server.serve(LinesCodec::new(), new_session_fn(|_: &Session<String>| {
                Ok::<_, Infallible>(service_fn(|req: Request<String, String>| async move {
                    Ok::<_, Infallible>(req.into_message())
                }))
            }));
            "#,
        ),
    );
    assert!(
        ok,
        "the harness cannot compile a correct fixture:\n{stderr}"
    );
}

#[test]
fn a_listener_whose_packets_do_not_match_the_codec_is_named_with_both_types() {
    assert_error(
        "listener_mismatch",
        &fixture(
            r#"
            // LengthCodec speaks Bytes; Lines listens to String.
            server.serve(LengthCodec::new(), new_session_fn(|_: &Session| {
                Ok::<_, BoxError>(ListenerService::new(Lines))
            }));
            "#,
        ),
        &[
            "`Lines` is not an `EventListener` for sessions with incoming packets of type",
            "the codec decides both types",
        ],
    );
}

#[test]
fn a_service_answering_the_bare_packet_is_told_to_answer_some_packet() {
    assert_error(
        "bare_packet",
        &fixture(
            r#"
            server.serve(LengthCodec::new(), new_session_fn(|_: &Session| {
                Ok::<_, Infallible>(service_fn(|req: Request<Bytes>| async move {
                    Ok::<_, Infallible>(req.into_message().unwrap_or_default())
                }))
            }));
            "#,
        ),
        &[
            "the service answers with items of type `u8` where the session's outgoing packets are of type",
            "answer `Some(packet)` (or `None`), not the bare packet",
        ],
    );
}

#[test]
fn a_bare_closure_given_as_codec_is_told_to_use_per_session() {
    assert_error(
        "closure_codec",
        &fixture(
            r#"
            server.serve(|_: &Session| LengthCodec::new(), new_session_fn(|_: &Session| {
                Ok::<_, BoxError>(ListenerService::new(Echo))
            }));
            "#,
        ),
        &[
            "cannot make the codec of a session",
            "getty::codec::per_session(|session| codec)",
        ],
    );
}

#[test]
fn a_bare_closure_given_as_new_session_callback_is_told_to_use_new_session_fn() {
    assert_error(
        "closure_make",
        &fixture(
            r#"
            server.serve(LengthCodec::new(), |_: &Session| {
                Ok::<_, BoxError>(ListenerService::new(Echo))
            });
            "#,
        ),
        &[
            "cannot make the services of sessions",
            "getty::new_session_fn(|session| Ok(service))",
        ],
    );
}
