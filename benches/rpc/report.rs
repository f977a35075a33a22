//! What the runs measured: a line per run, the medians per server and
//! depth, and the headline ratios.

use crate::{
    load::Run,
    stats::{median, thousands},
    Config,
};

/// The generator's share of its core from which a run measures the
/// generator rather than the server.
const LOAD_SATURATED: f64 = 0.95;
/// Below this share of its core, with the generator not saturated either,
/// the server was not the bottleneck: other processes took the cores.
const CONTENDED: f64 = 0.90;

/// getty ÷ tarpc calls per second, at 1 in flight and at `--depth`.
const VS_TARPC_SHALLOW: f64 = 1.3;
const VS_TARPC_DEEP: f64 = 2.0;
/// getty RPC calls ÷ TCP echo packets per second at `--depth`.
const VS_TCP_ECHO: f64 = 0.6;

/// Which server a run loaded.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Target {
    /// The getty server loaded through the library's own client.
    Getty,
    /// The getty server loaded by the wire generator (`wire_load.rs`).
    GettyWire,
    Tarpc,
    TcpEcho,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Getty => "getty",
            Target::GettyWire => "getty-wire",
            Target::Tarpc => "tarpc",
            Target::TcpEcho => "tcp-echo",
        }
    }

    /// What one echo is: a call, or a packet of the TCP echo.
    fn unit(self) -> &'static str {
        match self {
            Target::TcpEcho => "pkt",
            _ => "calls",
        }
    }
}

/// One measured run.
pub(crate) struct Measured {
    pub(crate) round: usize,
    pub(crate) target: Target,
    /// Calls (packets) in flight per connection.
    pub(crate) depth: usize,
    pub(crate) run: Run,
}

pub(crate) fn print_run(cfg: &Config, m: &Measured) {
    let run = &m.run;
    println!(
        "  round {}/{} {:<8} x{:<3} {:>10} {}/s | server cpu {:>3.0}% (usr {:>2.0} sys {:>2.0}) \
         | load cpu {:>3.0}% | {:>10} per server cpu-s{}",
        m.round,
        cfg.rounds,
        m.target.name(),
        m.depth,
        thousands(run.rate()),
        m.target.unit(),
        run.server.total() * 100.0,
        run.server.user * 100.0,
        run.server.sys * 100.0,
        run.load.total() * 100.0,
        thousands(run.per_server_cpu()),
        if contended(run) { " (contended)" } else { "" },
    );
    if run.load.total() >= LOAD_SATURATED {
        println!(
            "  !!! WARNING: the load generator used {:.0}% of its core: this run's {}/s \
             measures the generator, not the server (per server cpu-s still holds)",
            run.load.total() * 100.0,
            m.target.unit()
        );
    }
}

/// Neither side used its core fully: a ping-pong between two pinned
/// processes keeps one of them busy unless other work takes their cores.
fn contended(run: &Run) -> bool {
    run.server.total() < CONTENDED && run.load.total() < LOAD_SATURATED
}

/// Whether a target was met; a smoke run judges nothing.
fn verdict(cfg: &Config, met: bool) -> &'static str {
    match (cfg.smoke, met) {
        (true, _) => "not judged (smoke run)",
        (false, true) => "met",
        (false, false) => "MISSED",
    }
}

/// What limits a headline ratio's runs: for each side, how many runs
/// had the generator saturated (the rate is the client's) or contended.
fn caveats(sides: [(Target, &[&Run]); 2]) -> String {
    let mut notes = Vec::new();
    for (target, runs) in sides {
        let saturated = runs
            .iter()
            .filter(|r| r.load.total() >= LOAD_SATURATED)
            .count();
        let shared = runs.iter().filter(|r| contended(r)).count();
        if saturated > 0 {
            notes.push(format!(
                "{}'s generator saturated in {saturated}/{}",
                target.name(),
                runs.len()
            ));
        }
        if shared > 0 {
            notes.push(format!(
                "{} contended in {shared}/{}",
                target.name(),
                runs.len()
            ));
        }
    }
    if notes.is_empty() {
        String::new()
    } else {
        format!("\n    caveat: {}", notes.join(", "))
    }
}

fn listed(v: &[f64]) -> String {
    let v: Vec<String> = v.iter().map(|r| format!("{r:.3}")).collect();
    v.join(" ")
}

pub(crate) fn summarize(cfg: &Config, runs: &[Measured]) {
    let of = |target: Target, depth: usize| -> Vec<&Run> {
        runs.iter()
            .filter(|m| m.target == target && m.depth == depth)
            .map(|m| &m.run)
            .collect()
    };
    let mut depths = vec![1, cfg.depth];
    depths.dedup();
    for target in [
        Target::Getty,
        Target::GettyWire,
        Target::Tarpc,
        Target::TcpEcho,
    ] {
        for &depth in &depths {
            let side = of(target, depth);
            if side.is_empty() {
                continue;
            }
            println!(
                "  {:<8} x{:<3} medians: {:>10} {}/s, {:>10} per server cpu-s, server cpu \
                 {:.0}%, load cpu {:.0}%",
                target.name(),
                depth,
                thousands(median(side.iter().map(|r| r.rate()))),
                target.unit(),
                thousands(median(side.iter().map(|r| r.per_server_cpu()))),
                median(side.iter().map(|r| r.server.total())) * 100.0,
                median(side.iter().map(|r| r.load.total())) * 100.0,
            );
        }
    }
    let saturated = runs
        .iter()
        .filter(|m| m.run.load.total() >= LOAD_SATURATED)
        .count();
    if saturated > 0 {
        println!(
            "  !!! WARNING: the load generator was saturated in {saturated} of {} runs: their \
             rate is the generator's limit; compare per server cpu-second",
            runs.len()
        );
    }
    let shared = runs.iter().filter(|m| contended(&m.run)).count();
    if shared > 0 {
        println!(
            "  note: in {shared} of {} runs neither side used its core fully: other work shared \
             the cores (load average now {}); their rates are not comparable, their per \
             server cpu-s is",
            runs.len(),
            crate::cpu::loadavg()
        );
    }

    // The ratio of two servers' runs in each round that has both.
    let ratios = |a: (Target, usize), b: (Target, usize), f: fn(&Run) -> f64| -> Vec<f64> {
        let find = |round: usize, (target, depth): (Target, usize)| {
            runs.iter()
                .find(|m| m.round == round && m.target == target && m.depth == depth)
        };
        (1..=cfg.rounds)
            .filter_map(|round| Some(f(&find(round, a)?.run) / f(&find(round, b)?.run)))
            .collect()
    };
    for (depth, target) in [(1, VS_TARPC_SHALLOW), (cfg.depth, VS_TARPC_DEEP)] {
        let (getty, tarpc) = ((Target::Getty, depth), (Target::Tarpc, depth));
        let rate = ratios(getty, tarpc, Run::rate);
        if rate.is_empty() {
            continue;
        }
        let headline = median(rate.iter().copied());
        println!(
            "rpc x{depth}: calls/s, getty / tarpc = {headline:.3} -- target >= {target:.2}: {}  \
             (rounds: {}){}",
            verdict(cfg, headline >= target),
            listed(&rate),
            caveats([
                (getty.0, &of(getty.0, depth)),
                (tarpc.0, &of(tarpc.0, depth))
            ]),
        );
        let per_cpu = ratios(getty, tarpc, Run::per_server_cpu);
        println!(
            "rpc x{depth}: calls per server cpu-s, getty {} / tarpc {} = {:.3}  (rounds: {})",
            thousands(median(
                of(getty.0, depth).iter().map(|r| r.per_server_cpu())
            )),
            thousands(median(
                of(tarpc.0, depth).iter().map(|r| r.per_server_cpu())
            )),
            median(per_cpu.iter().copied()),
            listed(&per_cpu)
        );
    }
    // The RPC server against the TCP echo server: the headline with both
    // under hand-written wire generators (the server's cost, as the echo
    // bench measures it), then with the RPC side loaded through the
    // library's own client (which saturates first).
    for (rpc, how) in [
        (Target::GettyWire, "both under wire generators"),
        (Target::Getty, "RPC through getty's client"),
    ] {
        let (getty, tcp) = ((rpc, cfg.depth), (Target::TcpEcho, cfg.depth));
        let rate = ratios(getty, tcp, Run::rate);
        if rate.is_empty() {
            continue;
        }
        let headline = median(rate.iter().copied());
        let per_cpu = ratios(getty, tcp, Run::per_server_cpu);
        let judged = if rpc == Target::GettyWire {
            format!(
                " -- target >= {VS_TCP_ECHO:.2}: {}",
                verdict(cfg, headline >= VS_TCP_ECHO)
            )
        } else {
            String::new()
        };
        println!(
            "rpc x{}: getty RPC calls/s / TCP echo pkt/s, {how} = {headline:.3}{judged}  \
             (rounds: {}; per server cpu-s: {:.3}){}",
            cfg.depth,
            listed(&rate),
            median(per_cpu.iter().copied()),
            caveats([
                (getty.0, &of(getty.0, cfg.depth)),
                (tcp.0, &of(tcp.0, cfg.depth))
            ]),
        );
    }
}
