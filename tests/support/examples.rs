//! The examples as the tests run them: built once per test binary for the
//! test's own profile and target directory (`cargo test` does not build
//! examples by itself; `cargo build` is a no-op when they are up to date),
//! and waited for with a bound. Included with `#[path]` by the test files
//! that run examples.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus},
    sync::OnceLock,
    time::{Duration, Instant},
};

/// The path of example `name`, building every example in `all` (which
/// names it) the first time this test binary asks.
pub fn example(all: &[&str], name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    // <target>/<profile>/deps/<this test>
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("<target>/<profile>");
    let target_dir = profile_dir.parent().expect("<target>");
    let built = BUILT.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
        let mut cmd = Command::new(cargo);
        // Cargo sets these for this test; inherited by the inner cargo they
        // would make build scripts that watch them (ring's) rerun, and the
        // next outer build rerun them back.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if key.starts_with("CARGO_PKG_")
                || key.starts_with("CARGO_MANIFEST_")
                || matches!(
                    &*key,
                    "CARGO_CRATE_NAME"
                        | "CARGO_PRIMARY_PACKAGE"
                        | "CARGO_BIN_NAME"
                        | "CARGO_TARGET_TMPDIR"
                        | "OUT_DIR"
                )
            {
                cmd.env_remove(&*key);
            }
        }
        cmd.args(["build", "--quiet"]);
        for example in all {
            cmd.args(["--example", example]);
        }
        cmd.arg("--manifest-path")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
            .arg("--target-dir")
            .arg(target_dir);
        match profile_dir.file_name().and_then(|p| p.to_str()) {
            Some("debug") | None => {}
            Some(profile) => {
                cmd.args(["--profile", profile]);
            }
        }
        let mut child = cmd.spawn().map_err(|e| format!("cargo: {e}"))?;
        match wait_bounded(&mut child, Duration::from_secs(600)) {
            Some(status) if status.success() => Ok(()),
            Some(status) => Err(format!("cargo build of examples {all:?}: {status}")),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!("cargo build of examples {all:?} ran for 600 s"))
            }
        }
    });
    if let Err(e) = built {
        panic!("{e}");
    }
    let path = profile_dir.join("examples").join(name);
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// Waits for `child` to exit, up to `limit`.
pub fn wait_bounded(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}
