//! The bench's knobs: each is an environment variable `ECHO_<NAME>` or a
//! flag `--<name> VALUE` after `cargo bench --bench echo --` (a flag wins).

use crate::knobs::{Knob, Spec};

/// Every knob: the flag's name, its default, what it sets.
const KNOBS: &[Knob] = &[
    ("secs", "4", "measured seconds per run, after the warm-up"),
    ("warmup-secs", "1", "seconds of load before measuring"),
    (
        "rounds",
        "5",
        "rounds; each runs the library, then the floor",
    ),
    ("threads", "1", "server worker threads (both servers alike)"),
    ("conns", "100", "load connections"),
    ("depth", "16", "packets in flight per connection"),
    ("payload", "581", "payload bytes per packet (at least 9)"),
    (
        "max-in-flight",
        "",
        "the library's SessionConfig::max_in_flight [library default]",
    ),
    (
        "idle-sessions",
        "10000",
        "idle TCP sessions for the memory part",
    ),
    (
        "skip",
        "",
        "comma-separated parts to skip: tcp, tls, ws, throughput (all three), memory",
    ),
    (
        "only",
        "",
        "library or floor: run one server alone (e.g. under a profiler)",
    ),
    ("pin", "1", "0: do not pin the processes to cores"),
    ("server-cpu", "0", "the core the servers are pinned to"),
    ("load-cpu", "1", "the core the load generator is pinned to"),
];

/// Defaults when the binary runs without `--bench`, as `cargo test
/// --all-targets` runs it: one short round per part, to show that every
/// part works, not to measure.
const SMOKE: &[(&str, &str)] = &[
    ("secs", "0.3"),
    ("warmup-secs", "0.2"),
    ("rounds", "1"),
    ("idle-sessions", "1000"),
];

static SPEC: Spec = Spec {
    prefix: "ECHO",
    knobs: KNOBS,
    smoke: SMOKE,
};

pub(crate) struct Config {
    /// Started without `--bench`: the `SMOKE` defaults apply.
    pub(crate) smoke: bool,
    pub(crate) secs: f64,
    pub(crate) warmup_secs: f64,
    pub(crate) rounds: usize,
    pub(crate) threads: usize,
    pub(crate) conns: usize,
    pub(crate) depth: usize,
    pub(crate) payload: usize,
    pub(crate) max_in_flight: Option<usize>,
    pub(crate) idle_sessions: usize,
    skip: String,
    pub(crate) only: String,
    pub(crate) pin: bool,
    pub(crate) server_cpu: usize,
    pub(crate) load_cpu: usize,
}

/// The help text.
pub(crate) fn usage() -> String {
    SPEC.usage(
        "usage: cargo bench --bench echo [-- --NAME VALUE ...]\n\
         every knob is also an environment variable ECHO_NAME (upper case, _ for -).\n\
         Without --bench (as cargo test runs it) it makes a smoke run: 1 round of 0.3 s\n\
         per part and 1000 idle sessions unless set otherwise.\n",
    )
}

impl Config {
    /// The run the command line asks for; `None` when it asks for help.
    pub(crate) fn parse(args: impl Iterator<Item = String>) -> Result<Option<Config>, String> {
        let Some(v) = SPEC.parse(args)? else {
            return Ok(None);
        };
        let smoke = v.smoke;
        let c = Config {
            smoke,
            secs: v.get("secs")?,
            warmup_secs: v.get("warmup-secs")?,
            rounds: v.get("rounds")?,
            threads: v.get("threads")?,
            conns: v.get("conns")?,
            depth: v.get("depth")?,
            payload: v.get("payload")?,
            max_in_flight: match v.raw("max-in-flight").as_str() {
                "" => None,
                _ => Some(v.get("max-in-flight")?),
            },
            idle_sessions: v.get("idle-sessions")?,
            skip: v.raw("skip"),
            only: v.raw("only"),
            pin: v.get::<u8>("pin")? != 0,
            server_cpu: v.get("server-cpu")?,
            load_cpu: v.get("load-cpu")?,
        };
        for part in c.skip.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if !["tcp", "tls", "ws", "throughput", "memory"].contains(&part) {
                return Err(format!(
                    "--skip: unknown part `{part}` (tcp, tls, ws, throughput, memory)"
                ));
            }
        }
        if !["", "library", "floor"].contains(&c.only.as_str()) {
            return Err(format!("--only `{}`: library or floor", c.only));
        }
        if c.secs <= 0.0 || c.warmup_secs < 0.0 || c.rounds == 0 || c.threads == 0 {
            return Err("secs, rounds and threads must be positive".into());
        }
        if c.conns == 0 || c.depth == 0 || c.payload < 9 || c.idle_sessions == 0 {
            return Err("conns, depth and idle-sessions must be positive, payload >= 9".into());
        }
        if c.max_in_flight == Some(0) {
            return Err("max-in-flight must be positive".into());
        }
        if c.pin && c.server_cpu == c.load_cpu {
            return Err("server-cpu and load-cpu must differ (or --pin 0)".into());
        }
        Ok(Some(c))
    }

    /// Whether `--skip` names this part (`throughput` covers tcp, tls and
    /// ws).
    pub(crate) fn skips(&self, part: &str) -> bool {
        self.skip
            .split(',')
            .map(str::trim)
            .any(|p| p == part || (p == "throughput" && ["tcp", "tls", "ws"].contains(&part)))
    }
}
