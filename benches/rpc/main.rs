//! RPC benchmark, run with `cargo bench --bench rpc`: the library's RPC
//! peer (`getty::rpc`) against tarpc, and against the library's own TCP
//! echo, each loaded from another process.
//!
//! ```text
//! this process: starts the others, reads /proc, prints; idle while measuring
//!  ├─ server child: getty Peer, /home/echo  ─┐
//!  ├─ server child: tarpc EchoService       ─┤ taskset -c 0 (--server-cpu);
//!  ├─ server child: getty TCP echo          ─┘ one is loaded at a time
//!  └─ load child, one per run                  taskset -c 1 (--load-cpu)
//! ```
//!
//! Every child is this binary re-executed with `ECHO_BENCH_ROLE` set; the
//! TCP echo server, its generator, the pinning, the child handling and the
//! CPU sampling are the echo bench's own modules (`../echo/*.rs`, included
//! by path). Every server runs on the echo bench's server runtime:
//! multi-thread, one worker (`--threads`). Every generator runs on a
//! current-thread runtime.
//!
//! - getty: a `Peer` with the call `/home/echo` taking and returning `Raw`,
//!   called with the plain codec through `Session::call(..).codec(PLAIN)`
//!   from one client `Peer`, a session per connection.
//! - getty-wire: the same server loaded by `wire_load.rs`, which writes
//!   erpc frames made by hand and checks the replies byte by byte, as the
//!   TCP echo's generator does for its packets: the two servers compared
//!   under generators of the same kind, neither of them a library's client.
//! - tarpc: `EchoService::echo(Bytes) -> Bytes` over tarpc's bincode TCP
//!   transport, served by `spawn_incoming`, called through the generated
//!   `EchoServiceClient`, a client per connection.
//! - TCP echo: the echo bench's library server (`LengthCodec`) loaded by
//!   its generator, at `--depth` packets in flight.
//!
//! Each of `--rounds` rounds runs getty, then tarpc at 1 call in flight per
//! connection, the same at `--depth` (16) with getty also under the wire
//! generator, then the TCP echo at `--depth`, all with `--conns`
//! connections and `--payload`-byte bodies, `--warmup-secs` then `--secs`
//! measured. Per run it prints calls per second, the CPU of the server
//! process and of the generator (utime + stime from /proc over the same
//! window, sampled by the generator), and warns when the generator used
//! 95% of its core or more: then it, not the server, set the pace.
//!
//! The headline, each the median of the rounds' ratios (a round's runs
//! are back to back, so a ratio compares like with like):
//! - getty ÷ tarpc calls per second at 1 in flight (target ≥ 1.3) and at
//!   `--depth` (target ≥ 2), each through its own library's client;
//! - calls per server CPU-second of both, and their ratio;
//! - getty RPC calls ÷ TCP echo packets per second at `--depth` (target
//!   ≥ 0.6), both servers under their hand-written generators: what the
//!   RPC layer costs over the transport it runs on; and the same with the
//!   RPC server loaded through getty's own client, which saturates first.
//!
//! Knobs: `cargo bench --bench rpc -- --help`, each also an environment
//! variable (`--rounds 3` or `RPC_ROUNDS=3`). Without `--bench`, which
//! `cargo bench` passes and `cargo test --all-targets` does not, it makes a
//! smoke run: one short round over 4 connections. `--only getty` loads the
//! getty server alone (under both generators), e.g. to attach
//! `perf record -g -p PID` to the pid it prints.
//!
//! It exits non-zero only on a broken run (an error, nothing echoed), not
//! on a missed target. The machine's load average is printed at start and
//! end: other work on either core skews the numbers, the calls/s ones most.

// The echo bench's modules, shared as they are. Two have items this bench
// does not use (a server's kind, the TLS material's generator), hence the
// allows.
#[path = "../echo/child.rs"]
mod child;
#[path = "../echo/cpu.rs"]
mod cpu;
#[path = "../echo/knobs.rs"]
mod knobs;
#[path = "../echo/load.rs"]
mod load;
#[path = "../echo/part.rs"]
mod part;
#[allow(dead_code)]
#[path = "../echo/servers.rs"]
mod servers;
#[path = "../echo/stats.rs"]
mod stats;
#[allow(dead_code)]
#[path = "../echo/tls.rs"]
mod tls;

mod config;
mod report;
mod rpc_load;
mod rpc_server;
mod wire_load;

use std::{env, process::ExitCode, time::Duration};

pub(crate) use crate::config::Config;
use crate::{
    child::{raise_fd_limit, Pinning, ROLE_ENV},
    part::Part,
    report::{Measured, Target},
    rpc_load::Load,
    rpc_server::{Rpc, RpcServerProc},
    servers::{Kind, ServerProc, ServerSpec},
};

fn main() -> ExitCode {
    let role = env::var(ROLE_ENV);
    match role.as_deref() {
        Ok(rpc_server::ROLE) => rpc_server::child_main(),
        Ok(rpc_load::ROLE) => rpc_load::child_main(),
        Ok(wire_load::ROLE) => wire_load::child_main(),
        Ok(servers::ROLE) => servers::child_main(),
        Ok(load::ROLE) => load::child_main(),
        Ok(other) => {
            eprintln!("rpc bench: {ROLE_ENV}=`{other}` is no role");
            ExitCode::FAILURE
        }
        Err(_) => knobs::parent_main(
            "rpc",
            Config::parse(env::args().skip(1)),
            config::usage,
            run,
        ),
    }
}

/// The servers of the run, started once and loaded in turn.
struct Servers {
    rpc: Vec<RpcServerProc>,
    tcp: Option<ServerProc>,
}

impl Servers {
    fn start(cfg: &Config, pin: Pinning) -> Result<Servers, String> {
        let mut servers = Servers {
            rpc: Vec::new(),
            tcp: None,
        };
        for rpc in [Rpc::Getty, Rpc::Tarpc] {
            if cfg.runs(rpc.name()) {
                let server = RpcServerProc::start(rpc, cfg.threads, pin.server)?;
                println!(
                    "{} RPC server: pid {}, {}",
                    rpc.name(),
                    server.pid(),
                    server.addr
                );
                servers.rpc.push(server);
            }
        }
        if cfg.runs("tcp") {
            let spec = ServerSpec {
                part: Part::Tcp,
                threads: cfg.threads,
                max_in_flight: None,
                cpu: pin.server,
                tls: None,
            };
            let server = ServerProc::start(Kind::Library, &spec)?;
            println!(
                "getty TCP echo server: pid {}, {}",
                server.pid(),
                server.addr
            );
            servers.tcp = Some(server);
        }
        Ok(servers)
    }

    fn pids(&self) -> Vec<u32> {
        let rpc = self.rpc.iter().map(RpcServerProc::pid);
        rpc.chain(self.tcp.iter().map(ServerProc::pid)).collect()
    }

    fn stop(self) {
        let rpc = self.rpc.into_iter().map(RpcServerProc::stop);
        for stopped in rpc.chain(self.tcp.map(ServerProc::stop)) {
            if let Err(e) = stopped {
                eprintln!("warning: {e}");
            }
        }
    }
}

fn run(cfg: &Config) -> Result<(), String> {
    raise_fd_limit();
    let pin = Pinning::detect(cfg.pin, cfg.server_cpu, cfg.load_cpu);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "rpc bench: load average {} at start, {cores} cores",
        cpu::loadavg()
    );
    if cfg.smoke {
        println!(
            "  smoke run: started without --bench (by cargo test?): short runs that show every \
             part echoes; the numbers measure nothing"
        );
    }
    let pinned = |cpu: Option<usize>| match cpu {
        Some(c) => format!("pinned to cpu {c}"),
        None => "unpinned".into(),
    };
    println!(
        "  servers: own processes, {}, tokio multi-thread runtime with {} worker(s) \
         (as the echo bench's)",
        pinned(pin.server),
        cfg.threads
    );
    println!(
        "  load generator: own process, {}, current-thread runtime; {} connections x 1 and x {} \
         in flight, {}-byte bodies, {}s warm-up + {}s measured, {} round(s)",
        pinned(pin.load),
        cfg.conns,
        cfg.depth,
        cfg.payload,
        cfg.warmup_secs,
        cfg.secs,
        cfg.rounds
    );
    let servers = Servers::start(cfg, pin)?;
    println!("  load average {}", cpu::loadavg());
    let mut runs = Vec::new();
    let result = rounds(cfg, pin, &servers, &mut runs);
    servers.stop();
    result?;
    report::summarize(cfg, &runs);
    println!("rpc bench: load average {} at end", cpu::loadavg());
    Ok(())
}

/// Runs the rounds, collecting every measured run in `runs`; stops at the
/// first broken run.
fn rounds(
    cfg: &Config,
    pin: Pinning,
    servers: &Servers,
    runs: &mut Vec<Measured>,
) -> Result<(), String> {
    let pids = servers.pids();
    let mut depths = vec![1, cfg.depth];
    depths.dedup();
    for round in 1..=cfg.rounds {
        let mut record = |target, depth, run| {
            let measured = Measured {
                round,
                target,
                depth,
                run,
            };
            report::print_run(cfg, &measured);
            runs.push(measured);
        };
        for &depth in &depths {
            for server in &servers.rpc {
                let load = Load {
                    rpc: server.rpc,
                    addr: server.addr,
                    server_pid: server.pid(),
                    conns: cfg.conns,
                    depth,
                    payload: cfg.payload,
                    warmup_secs: cfg.warmup_secs,
                    secs: cfg.secs,
                };
                let target = match server.rpc {
                    Rpc::Getty => Target::Getty,
                    Rpc::Tarpc => Target::Tarpc,
                };
                quiet(&pids);
                let run = rpc_load::run(&load, pin.load)
                    .map_err(|e| format!("{} at {depth} in flight: {e}", server.rpc.name()))?;
                record(target, depth, run);
                if server.rpc == Rpc::Getty && depth == cfg.depth {
                    // The same server under the wire generator, for the
                    // comparison with the TCP echo under its own.
                    quiet(&pids);
                    let run = wire_load::run(&load, pin.load)
                        .map_err(|e| format!("getty (wire) at {depth} in flight: {e}"))?;
                    record(Target::GettyWire, depth, run);
                }
            }
        }
        if let Some(tcp) = &servers.tcp {
            quiet(&pids);
            // The echo bench's generator reads its load from a `Config`.
            let tcp_cfg = Config {
                depth: cfg.depth,
                ..cfg.clone()
            };
            let run = load::run(&tcp_cfg, Part::Tcp, tcp.addr, tcp.pid(), pin.load, None)
                .map_err(|e| format!("tcp echo at {} in flight: {e}", cfg.depth))?;
            record(Target::TcpEcho, cfg.depth, run);
        }
    }
    Ok(())
}

/// Waits until the previous run's sessions closed and no server uses the
/// server core any more.
fn quiet(pids: &[u32]) {
    if !cpu::wait_quiet(pids, Duration::from_secs(10)) {
        println!("  warning: a server still used CPU 10 s after its run; going on");
    }
}
