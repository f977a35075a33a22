//! Command-line knobs, shared by the echo and RPC benches: each knob is a
//! flag `--name VALUE` (or `--name=VALUE`) after `cargo bench --bench X --`,
//! else an environment variable `<PREFIX>_<NAME>` (upper case, `_` for
//! `-`), else its default, or its smoke default when the binary runs
//! without `--bench` (as `cargo test --all-targets` runs it).

use std::{collections::HashMap, env, process::ExitCode};

/// A knob: its flag's name, its default, what it sets.
pub(crate) type Knob = (&'static str, &'static str, &'static str);

/// A bench's knobs.
pub(crate) struct Spec {
    /// The environment variables' prefix (`ECHO`, `RPC`).
    pub(crate) prefix: &'static str,
    pub(crate) knobs: &'static [Knob],
    /// Defaults that replace the knobs' own in a smoke run.
    pub(crate) smoke: &'static [(&'static str, &'static str)],
}

/// The values a command line gave, with their fallbacks.
pub(crate) struct Values {
    spec: &'static Spec,
    flags: HashMap<String, String>,
    /// Started without `--bench`: the smoke defaults apply.
    pub(crate) smoke: bool,
}

impl Spec {
    /// The flags of `args`; `None` when they ask for `--help`.
    pub(crate) fn parse(
        &'static self,
        args: impl Iterator<Item = String>,
    ) -> Result<Option<Values>, String> {
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
                return Ok(None);
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
            if !self.knobs.iter().any(|(n, ..)| *n == name) {
                return Err(format!("unknown flag `--{name}`"));
            }
            flags.insert(name, value);
        }
        Ok(Some(Values {
            spec: self,
            flags,
            smoke,
        }))
    }

    fn env_name(&self, flag: &str) -> String {
        format!("{}_{}", self.prefix, flag.to_uppercase().replace('-', "_"))
    }

    /// The help text: `head`, then one line per knob.
    pub(crate) fn usage(&self, head: &str) -> String {
        let mut s = String::from(head);
        for (name, default, what) in self.knobs {
            let default = if default.is_empty() { "-" } else { default };
            s.push_str(&format!("  --{name:<14} [{default:>5}]  {what}\n"));
        }
        s
    }
}

impl Values {
    /// The knob's text: the flag, else the environment, else the default.
    pub(crate) fn raw(&self, name: &str) -> String {
        if let Some(v) = self.flags.get(name) {
            return v.clone();
        }
        env::var(self.spec.env_name(name)).unwrap_or_else(|_| {
            let smoke = self.spec.smoke.iter().filter(|_| self.smoke);
            smoke
                .map(|(n, d)| (n, d))
                .chain(self.spec.knobs.iter().map(|(n, d, _)| (n, d)))
                .find(|(n, _)| **n == name)
                .map(|(_, d)| d.to_string())
                .unwrap_or_default()
        })
    }

    /// The knob's value, parsed.
    pub(crate) fn get<T: std::str::FromStr>(&self, name: &str) -> Result<T, String> {
        let v = self.raw(name);
        v.parse().map_err(|_| {
            format!(
                "--{name} / {}: `{v}` is not valid",
                self.spec.env_name(name)
            )
        })
    }
}

/// A bench's parent process once its command line is `parsed` (`None`:
/// it asked for help): runs it, or prints the usage or the error.
pub(crate) fn parent_main<C>(
    bench: &str,
    parsed: Result<Option<C>, String>,
    usage: fn() -> String,
    run: fn(&C) -> Result<(), String>,
) -> ExitCode {
    let cfg = match parsed {
        Ok(Some(cfg)) => cfg,
        Ok(None) => {
            print!("{}", usage());
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{bench} bench: {e}\n{}", usage());
            return ExitCode::from(2);
        }
    };
    match run(&cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{bench} bench failed: {e}");
            ExitCode::FAILURE
        }
    }
}
