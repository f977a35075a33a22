//! The bench's other processes: this same binary re-executed with
//! `ECHO_BENCH_ROLE` set, optionally pinned to a core with `taskset`.
//!
//! A child reports on stdout, one line at a time, and ends when its stdin
//! closes (so none outlives the bench, even when the bench is killed).

use std::{
    env,
    process::{Child, Command, Stdio},
    sync::mpsc::{self, Receiver, RecvTimeoutError},
    time::{Duration, Instant},
};

/// Which role the re-executed binary plays.
pub(crate) const ROLE_ENV: &str = "ECHO_BENCH_ROLE";

/// Where the servers and the load generator run.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pinning {
    pub(crate) server: Option<usize>,
    pub(crate) load: Option<usize>,
}

impl Pinning {
    /// Pins to the two given cores when the machine has two and `taskset`
    /// works; otherwise says why not and runs unpinned.
    pub(crate) fn detect(wanted: bool, server: usize, load: usize) -> Pinning {
        let none = Pinning {
            server: None,
            load: None,
        };
        if !wanted {
            return none;
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        if cores < 2 {
            eprintln!(
                "WARNING: {cores} core(s) available: server and load generator share them, \
                 unpinned; the pkt/s figures mean little, the per-cpu-second ones still hold"
            );
            return none;
        }
        for cpu in [server, load] {
            let ok = Command::new("taskset")
                .args(["-c", &cpu.to_string(), "true"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                eprintln!(
                    "WARNING: `taskset -c {cpu} true` failed (util-linux missing, or cpu {cpu} \
                     not allowed): running unpinned; set --server-cpu / --load-cpu, or --pin 0"
                );
                return none;
            }
        }
        Pinning {
            server: Some(server),
            load: Some(load),
        }
    }
}

/// A running child. Dropping it kills and reaps it.
pub(crate) struct ChildProc {
    name: String,
    child: Option<Child>,
    lines: Receiver<String>,
}

impl ChildProc {
    /// Starts this binary as `role` with `envs`, under `taskset -c CPU`
    /// when `cpu` is given (taskset execs, so the pid is the bench's).
    pub(crate) fn spawn(
        name: &str,
        role: &str,
        cpu: Option<usize>,
        envs: &[(&str, String)],
    ) -> Result<ChildProc, String> {
        let exe = env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let mut cmd = match cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpu.to_string()).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        cmd.env(ROLE_ENV, role)
            .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start the {name}: {e}"))?;
        let stdout = child.stdout.take();
        let (tx, lines) = mpsc::channel();
        // A thread, so that waiting for a report can time out.
        std::thread::spawn(move || {
            use std::io::BufRead;
            let Some(stdout) = stdout else { return };
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Ok(ChildProc {
            name: name.to_owned(),
            child: Some(child),
            lines,
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The address a server child reports once listening: its first line,
    /// `listening on ADDR`, waited for at most 30 s.
    pub(crate) fn listening_addr(&self) -> Result<std::net::SocketAddr, String> {
        let line = self.line(Duration::from_secs(30))?;
        line.strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| format!("the {} said `{line}`", self.name))
    }

    /// The child's next line on stdout, waiting at most `limit`.
    pub(crate) fn line(&self, limit: Duration) -> Result<String, String> {
        match self.lines.recv_timeout(limit) {
            Ok(line) => Ok(line),
            Err(RecvTimeoutError::Timeout) => {
                Err(format!("the {} did not report in {limit:?}", self.name))
            }
            Err(RecvTimeoutError::Disconnected) => {
                Err(format!("the {} ended without reporting", self.name))
            }
        }
    }

    /// Closes the child's stdin (its signal to end) and waits at most
    /// `limit` for a successful exit.
    pub(crate) fn finish(mut self, limit: Duration) -> Result<(), String> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        drop(child.stdin.take());
        let deadline = Instant::now() + limit;
        loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => return Err(format!("the {} exited with {status}", self.name)),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "the {} did not exit in {limit:?}; killed",
                        self.name
                    ));
                }
            }
        }
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A child's parameter, from the environment its parent set.
pub(crate) fn param(name: &str) -> Result<String, String> {
    env::var(name).map_err(|_| format!("{name} is not set (the parent sets it)"))
}

/// A child's numeric parameter.
pub(crate) fn param_num<T: std::str::FromStr>(name: &str) -> Result<T, String> {
    let v = param(name)?;
    v.parse().map_err(|_| format!("{name}=`{v}` is not valid"))
}

/// Ends the child when its stdin closes: the parent finished with it, or
/// died. Runs on a thread of its own.
pub(crate) fn exit_when_stdin_closes() {
    std::thread::spawn(|| {
        use std::io::Read;
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        std::process::exit(0);
    });
}

/// Raises the soft limit of open files to the hard one: a process with
/// hundreds of connections, or thousands of idle ones, needs more than
/// the usual soft 1024.
pub(crate) fn raise_fd_limit() {
    match rlimit::Resource::NOFILE.get() {
        Ok((soft, hard)) if soft < hard => {
            if let Err(e) = rlimit::Resource::NOFILE.set(hard, hard) {
                eprintln!("warning: cannot raise the fd limit from {soft} to {hard}: {e}");
            }
        }
        Ok(_) => {}
        Err(e) => eprintln!("warning: cannot read the fd limit: {e}"),
    }
}
