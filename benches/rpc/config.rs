//! The bench's knobs: each is an environment variable `RPC_<NAME>` or a
//! flag `--<name> VALUE` after `cargo bench --bench rpc --` (a flag wins).
//!
//! The field names `conns`, `depth`, `payload`, `warmup_secs` and `secs`
//! are the ones the echo bench's generator (`../echo/load.rs`) reads from
//! `crate::Config`, so it loads the TCP echo server with this config.

use std::{collections::HashMap, env};

/// Every knob: the flag's name, its default, what it sets.
pub(crate) const KNOBS: &[(&str, &str, &str)] = &[
    ("secs", "4", "measured seconds per run, after the warm-up"),
    ("warmup-secs", "1", "seconds of load before measuring"),
    (
        "rounds",
        "3",
        "rounds; each runs getty and tarpc at 1 in flight, then at --depth, then the TCP echo",
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

/// What the command line asked for.
pub(crate) enum Parsed {
    Run(Config),
    Help,
}

/// The knob's value: the flag, else `RPC_<NAME>`, else the default.
struct Values {
    flags: HashMap<String, String>,
    smoke: bool,
}

impl Values {
    fn raw(&self, name: &str) -> String {
        if let Some(v) = self.flags.get(name) {
            return v.clone();
        }
        env::var(env_name(name)).unwrap_or_else(|_| {
            let smoke = SMOKE.iter().filter(|_| self.smoke);
            smoke
                .map(|(n, d)| (n, d))
                .chain(KNOBS.iter().map(|(n, d, _)| (n, d)))
                .find(|(n, _)| **n == name)
                .map(|(_, d)| d.to_string())
                .unwrap_or_default()
        })
    }

    fn get<T: std::str::FromStr>(&self, name: &str) -> Result<T, String> {
        let v = self.raw(name);
        v.parse()
            .map_err(|_| format!("--{name} / {}: `{v}` is not valid", env_name(name)))
    }
}

fn env_name(flag: &str) -> String {
    format!("RPC_{}", flag.to_uppercase().replace('-', "_"))
}

pub(crate) fn usage() -> String {
    let mut s = String::from(
        "usage: cargo bench --bench rpc [-- --NAME VALUE ...]\n\
         every knob is also an environment variable RPC_NAME (upper case, _ for -).\n\
         Without --bench (as cargo test runs it) it makes a smoke run: 1 round of 0.3 s\n\
         per run over 4 connections unless set otherwise.\n",
    );
    for (name, default, what) in KNOBS {
        let default = if default.is_empty() { "-" } else { default };
        s.push_str(&format!("  --{name:<12} [{default:>4}]  {what}\n"));
    }
    s
}

impl Config {
    pub(crate) fn parse(args: impl Iterator<Item = String>) -> Result<Parsed, String> {
        let mut flags = HashMap::new();
        let mut smoke = true;
        let mut args = args.peekable();
        while let Some(arg) = args.next() {
            // `cargo bench` passes `--bench` to every bench binary; `cargo
            // test` passes nothing.
            if arg == "--bench" {
                smoke = false;
                continue;
            }
            if arg == "-h" || arg == "--help" {
                return Ok(Parsed::Help);
            }
            let Some(flag) = arg.strip_prefix("--") else {
                return Err(format!("unexpected argument `{arg}`"));
            };
            let (name, value) = match flag.split_once('=') {
                Some((n, v)) => (n.to_owned(), v.to_owned()),
                None => {
                    let value = args
                        .next()
                        .ok_or_else(|| format!("`--{flag}` needs a value"))?;
                    (flag.to_owned(), value)
                }
            };
            if !KNOBS.iter().any(|(n, ..)| *n == name) {
                return Err(format!("unknown flag `--{name}`"));
            }
            flags.insert(name, value);
        }
        let v = Values { flags, smoke };
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
        Ok(Parsed::Run(c))
    }

    /// Whether `--only` leaves `server` in.
    pub(crate) fn runs(&self, server: &str) -> bool {
        self.only.is_empty() || self.only == server
    }
}
