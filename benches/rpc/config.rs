//! The bench's knobs: each is an environment variable `RPC_<NAME>` or a
//! flag `--<name> VALUE` after `cargo bench --bench rpc --` (a flag wins).
//!
//! The field names `conns`, `depth`, `payload`, `warmup_secs` and `secs`
//! are the ones the echo bench's generator (`../echo/load.rs`) reads from
//! `crate::Config`, so it loads the TCP echo server with this config.

use crate::knobs::{Knob, Spec};

/// Every knob: the flag's name, its default, what it sets.
const KNOBS: &[Knob] = &[
    ("secs", "4", "measured seconds per run, after the warm-up"),
    ("warmup-secs", "1", "seconds of load before measuring"),
    (
        "rounds",
        "5",
        "rounds; each runs getty and tarpc at 1 in flight, then at --depth (getty also under the \
         wire generator), then the TCP echo",
    ),
    ("threads", "1", "server worker threads (every server alike)"),
    ("conns", "100", "load connections"),
    (
        "depth",
        "16",
        "calls (packets) in flight per connection in the deep runs; the shallow ones have 1",
    ),
    ("payload", "581", "body (packet payload) bytes (at least 9)"),
    (
        "only",
        "",
        "getty, tarpc or tcp: load that server alone (e.g. under a profiler)",
    ),
    ("pin", "1", "0: do not pin the processes to cores"),
    ("server-cpu", "0", "the core the servers are pinned to"),
    ("load-cpu", "1", "the core the load generator is pinned to"),
];

/// Defaults when the binary runs without `--bench`, as `cargo test
/// --all-targets` runs it: one short round with few connections, to show
/// that every part echoes, not to measure.
const SMOKE: &[(&str, &str)] = &[
    ("secs", "0.3"),
    ("warmup-secs", "0.2"),
    ("rounds", "1"),
    ("conns", "4"),
];

static SPEC: Spec = Spec {
    prefix: "RPC",
    knobs: KNOBS,
    smoke: SMOKE,
};

#[derive(Clone, Debug)]
pub(crate) struct Config {
    /// Started without `--bench`: the `SMOKE` defaults apply.
    pub(crate) smoke: bool,
    pub(crate) secs: f64,
    pub(crate) warmup_secs: f64,
    pub(crate) rounds: usize,
    pub(crate) threads: usize,
    pub(crate) conns: usize,
    /// In flight per connection: the deep runs' for the parent, the run's
    /// own in the copy handed to the echo bench's generator.
    pub(crate) depth: usize,
    pub(crate) payload: usize,
    pub(crate) only: String,
    pub(crate) pin: bool,
    pub(crate) server_cpu: usize,
    pub(crate) load_cpu: usize,
}

/// The help text.
pub(crate) fn usage() -> String {
    SPEC.usage(
        "usage: cargo bench --bench rpc [-- --NAME VALUE ...]\n\
         every knob is also an environment variable RPC_NAME (upper case, _ for -).\n\
         Without --bench (as cargo test runs it) it makes a smoke run: 1 round of 0.3 s\n\
         per run over 4 connections unless set otherwise.\n",
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
            only: v.raw("only"),
            pin: v.get::<u8>("pin")? != 0,
            server_cpu: v.get("server-cpu")?,
            load_cpu: v.get("load-cpu")?,
        };
        if !["", "getty", "tarpc", "tcp"].contains(&c.only.as_str()) {
            return Err(format!("--only `{}`: getty, tarpc or tcp", c.only));
        }
        if c.secs <= 0.0 || c.warmup_secs < 0.0 || c.rounds == 0 || c.threads == 0 {
            return Err("secs, rounds and threads must be positive".into());
        }
        if c.conns == 0 || c.depth == 0 || c.payload < 9 {
            return Err("conns and depth must be positive, payload >= 9".into());
        }
        if c.pin && c.server_cpu == c.load_cpu {
            return Err("server-cpu and load-cpu must differ (or --pin 0)".into());
        }
        Ok(Some(c))
    }

    /// Whether `--only` leaves `server` in.
    pub(crate) fn runs(&self, server: &str) -> bool {
        self.only.is_empty() || self.only == server
    }
}
