//! Echo benchmark, run with `cargo bench --bench echo`: the library's echo
//! server against hand-written floors, loaded from another process.
//!
//! ```text
//! this process: starts the others, reads /proc, prints; idle while measuring
//!  ├─ server child: library echo server ─┐  taskset -c 0 (--server-cpu);
//!  ├─ server child: hand-written floor  ─┘  one is loaded at a time
//!  └─ load child, one per run               taskset -c 1 (--load-cpu)
//! ```
//!
//! Every child is this binary re-executed with `ECHO_BENCH_ROLE` set, so
//! `cargo bench --bench echo` builds all there is. Both servers run on the
//! runtime `examples/echo_server.rs` uses: multi-thread, one worker
//! (`--threads`). The load generator runs on a current-thread runtime.
//!
//! 1. Throughput, TCP, TLS and WebSocket: `--rounds` rounds, each loading
//!    the library's server, then the floor, with `--conns` connections ×
//!    `--depth` packets in flight of `--payload` bytes, `--warmup-secs`
//!    then `--secs` measured. Per run it prints the packets per second,
//!    the CPU of the server process and of the generator (utime + stime
//!    from /proc over the same window, sampled by the generator), and
//!    warns when the generator used 95% of its core or more: then it, not
//!    the server, set the pace. The headline is packets per server
//!    CPU-second, library ÷ floor, the median of the rounds' ratios; the
//!    pkt/s ratio follows. Targets: TCP ≥ 0.90, TLS and WebSocket ≥ 0.85.
//!    - TCP: `LengthCodec` frames (4-byte big-endian length, payload).
//!      Floor: a tokio echo that reads, parses every frame and writes the
//!      batch back in one write.
//!    - TLS: the same frames over rustls (ring; a CA and a `localhost`
//!      leaf made in memory). Floor: the same loop over tokio-rustls.
//!    - WebSocket: one binary message per packet, no length prefix.
//!      Floor: a tokio-tungstenite echo with the library's tungstenite
//!      settings that `feed`s every message already read and flushes once.
//! 2. Memory: heap bytes per idle TCP session over `--idle-sessions`
//!    sessions, the clients in a child process. Target ≤ 2,560 bytes.
//!
//! Knobs: `cargo bench --bench echo -- --help`, each also an environment
//! variable (`--rounds 9` or `ECHO_ROUNDS=9`). Without `--bench`, which
//! `cargo bench` passes and `cargo test --all-targets` does not, it makes a
//! smoke run: one short round per part. `--only library` with
//! `--skip tls,ws,memory` loads the library's TCP server alone, e.g. to
//! attach `perf record -p PID` to the pid it prints.
//!
//! The RPC bench (`benches/rpc`) includes this bench's `child`, `cpu`,
//! `load`, `part`, `servers`, `stats` and `tls` modules by path, to load
//! the library's TCP echo as this bench does: keep them free of this
//! bench's `main` (its `Config` aside, which the RPC bench's mirrors).
//!
//! It exits non-zero only on a broken run (an error, no packet echoed), not
//! on a missed target. The machine's load average is printed at start and
//! end: other work on either core skews the numbers, the pkt/s ones most.

mod child;
mod config;
mod cpu;
mod knobs;
mod load;
mod memory;
mod part;
mod servers;
mod stats;
mod tls;

use std::{env, process::ExitCode, time::Duration};

use crate::{
    child::{raise_fd_limit, Pinning, ROLE_ENV},
    config::Config,
    load::Run,
    part::Part,
    servers::{Kind, ServerProc, ServerSpec},
    stats::{median, thousands},
};

#[global_allocator]
static GLOBAL: memory::ProbeAlloc = memory::ProbeAlloc;

/// The generator's share of its core from which a run measures the
/// generator rather than the server.
const LOAD_SATURATED: f64 = 0.95;
/// Below this share of its core, with the generator not saturated either,
/// the server was not the bottleneck: other processes took the cores.
const CONTENDED: f64 = 0.90;

impl Part {
    /// Packets per server CPU-second, library ÷ floor.
    fn target(self) -> f64 {
        match self {
            Part::Tcp => 0.90,
            Part::Tls | Part::Ws => 0.85,
        }
    }
}

fn main() -> ExitCode {
    let role = env::var(ROLE_ENV);
    match role.as_deref() {
        Ok(servers::ROLE) => servers::child_main(),
        Ok(load::ROLE) => load::child_main(),
        Ok(memory::ROLE) => memory::child_main(),
        Ok(other) => {
            eprintln!("echo bench: {ROLE_ENV}=`{other}` is no role");
            ExitCode::FAILURE
        }
        Err(_) => {
            memory::start_counting();
            knobs::parent_main(
                "echo",
                Config::parse(env::args().skip(1)),
                config::usage,
                run,
            )
        }
    }
}

fn run(cfg: &Config) -> Result<(), String> {
    raise_fd_limit();
    let pin = Pinning::detect(cfg.pin, cfg.server_cpu, cfg.load_cpu);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "echo bench: load average {} at start, {cores} cores",
        cpu::loadavg()
    );
    if cfg.smoke {
        println!(
            "  smoke run: started without --bench (by cargo test?): short runs that show every \
             part works; the numbers measure nothing"
        );
    }
    println!(
        "  servers: own processes, {}, tokio multi-thread runtime with {} worker(s) \
         (as examples/echo_server.rs)",
        match pin.server {
            Some(c) => format!("pinned to cpu {c}"),
            None => "unpinned".into(),
        },
        cfg.threads
    );
    println!(
        "  load generator: own process, {}, current-thread runtime; {} connections x {} in \
         flight, {}-byte payloads, {}s warm-up + {}s measured, {} round(s)",
        match pin.load {
            Some(c) => format!("pinned to cpu {c}"),
            None => "unpinned".into(),
        },
        cfg.conns,
        cfg.depth,
        cfg.payload,
        cfg.warmup_secs,
        cfg.secs,
        cfg.rounds
    );
    let mut material = None;
    for part in [Part::Tcp, Part::Tls, Part::Ws] {
        if cfg.skips(part.name()) {
            continue;
        }
        if part == Part::Tls && material.is_none() {
            material = Some(tls::generate()?);
        }
        let tls = material.as_ref().filter(|_| part == Part::Tls);
        throughput(cfg, pin, part, tls)?;
    }
    if !cfg.skips("memory") {
        memory::idle_memory(cfg)?;
    }
    println!("echo bench: load average {} at end", cpu::loadavg());
    Ok(())
}

// ----- throughput ---------------------------------------------------------------

/// One throughput part: start both servers, run the rounds, summarize.
fn throughput(
    cfg: &Config,
    pin: Pinning,
    part: Part,
    tls: Option<&tls::Material>,
) -> Result<(), String> {
    let spec = ServerSpec {
        part,
        threads: cfg.threads,
        max_in_flight: cfg.max_in_flight,
        cpu: pin.server,
        tls,
    };
    let mut servers = Vec::new();
    for kind in [Kind::Library, Kind::Floor] {
        if cfg.only.is_empty() || cfg.only == kind.name() {
            let server = ServerProc::start(kind, &spec)?;
            println!(
                "{} {} server: pid {}, {}",
                part.name(),
                kind.name(),
                server.pid(),
                server.addr
            );
            servers.push(server);
        }
    }
    println!("  load average {}", cpu::loadavg());
    let pids: Vec<u32> = servers.iter().map(ServerProc::pid).collect();
    let mut runs: Vec<(Kind, Run)> = Vec::new();
    let mut result = Ok(());
    'rounds: for round in 1..=cfg.rounds {
        for server in &servers {
            // The previous run's sessions must be closed, not sharing the
            // server core with this run.
            if !cpu::wait_quiet(&pids, Duration::from_secs(10)) {
                println!("  warning: a server still used CPU 10 s after its run; going on");
            }
            let run = load::run(cfg, part, server.addr, server.pid(), pin.load, tls);
            match run {
                Ok(run) => {
                    print_run(part, round, cfg.rounds, server.kind, &run);
                    runs.push((server.kind, run));
                }
                Err(e) => {
                    result = Err(format!("{} {} run: {e}", part.name(), server.kind.name()));
                    break 'rounds;
                }
            }
        }
    }
    for server in servers {
        if let Err(e) = server.stop() {
            eprintln!("warning: {e}");
        }
    }
    result?;
    summarize(cfg, part, &runs);
    Ok(())
}

fn print_run(part: Part, round: usize, rounds: usize, kind: Kind, run: &Run) {
    println!(
        "  {} {round}/{rounds} {:<7} {:>10} pkt/s | server cpu {:>3.0}% (usr {:>2.0} sys {:>2.0}) \
         | load cpu {:>3.0}% | {:>10} pkt per server cpu-s{}",
        part.name(),
        kind.name(),
        thousands(run.rate()),
        run.server.total() * 100.0,
        run.server.user * 100.0,
        run.server.sys * 100.0,
        run.load.total() * 100.0,
        thousands(run.per_server_cpu()),
        if contended(run) { " (contended)" } else { "" },
    );
    if run.load.total() >= LOAD_SATURATED {
        println!(
            "  !!! WARNING: the load generator used {:.0}% of its core: this run's pkt/s \
             measures the generator, not the server (pkt per server cpu-s still holds)",
            run.load.total() * 100.0
        );
    }
}

/// Neither side used its core fully: a ping-pong between two pinned
/// processes keeps one of them busy unless other work takes their cores.
fn contended(run: &Run) -> bool {
    run.server.total() < CONTENDED && run.load.total() < LOAD_SATURATED
}

fn summarize(cfg: &Config, part: Part, runs: &[(Kind, Run)]) {
    let of = |kind: Kind| -> Vec<&Run> {
        runs.iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, r)| r)
            .collect()
    };
    let (lib, floor) = (of(Kind::Library), of(Kind::Floor));
    for (kind, side) in [(Kind::Library, &lib), (Kind::Floor, &floor)] {
        if side.is_empty() {
            continue;
        }
        println!(
            "  {} {:<7} medians: {:>10} pkt/s, {:>10} pkt per server cpu-s, server cpu {:.0}%, \
             load cpu {:.0}%",
            part.name(),
            kind.name(),
            thousands(median(side.iter().map(|r| r.rate()))),
            thousands(median(side.iter().map(|r| r.per_server_cpu()))),
            median(side.iter().map(|r| r.server.total())) * 100.0,
            median(side.iter().map(|r| r.load.total())) * 100.0,
        );
    }
    let saturated = runs
        .iter()
        .filter(|(_, r)| r.load.total() >= LOAD_SATURATED)
        .count();
    if saturated > 0 {
        println!(
            "  !!! WARNING: the load generator was saturated in {saturated} of {} {} runs: \
             their pkt/s is the generator's limit; compare per server cpu-second",
            runs.len(),
            part.name()
        );
    }
    let shared = runs.iter().filter(|(_, r)| contended(r)).count();
    if shared > 0 {
        println!(
            "  note: in {shared} of {} {} runs neither side used its core fully: other work \
             shared the cores (load average now {}); their pkt/s is not comparable, their pkt \
             per server cpu-s is",
            runs.len(),
            part.name(),
            cpu::loadavg()
        );
    }
    if lib.is_empty() || floor.is_empty() {
        return;
    }
    // Each round loads the library, then the floor, back to back: a
    // round's ratio compares like with like, and the median shrugs off a
    // round disturbed by other work on the machine.
    let ratios = |f: fn(&Run) -> f64| -> Vec<f64> {
        lib.iter().zip(&floor).map(|(l, fl)| f(l) / f(fl)).collect()
    };
    let listed = |v: &[f64]| {
        v.iter()
            .map(|r| format!("{r:.3}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let per_cpu = ratios(Run::per_server_cpu);
    let rate = ratios(Run::rate);
    let (headline, target) = (median(per_cpu.iter().copied()), part.target());
    println!(
        "echo {}: packets per server cpu-second, library / floor = {headline:.3} -- target >= \
         {target:.2}: {}  (rounds: {})",
        part.name(),
        verdict(cfg, headline >= target),
        listed(&per_cpu),
    );
    println!(
        "echo {}: packets per second, library / floor = {:.3}  (rounds: {})",
        part.name(),
        median(rate.iter().copied()),
        listed(&rate),
    );
}

/// Whether a target was met; a smoke run judges nothing.
pub(crate) fn verdict(cfg: &Config, met: bool) -> &'static str {
    match (cfg.smoke, met) {
        (true, _) => "not judged (smoke run)",
        (false, true) => "met",
        (false, false) => "MISSED",
    }
}
