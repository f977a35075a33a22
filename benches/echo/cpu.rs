//! CPU time of whole processes, read from /proc: what a server spent to
//! echo what it echoed, and whether the load generator ran out of core.

use std::{
    ops::Sub,
    time::{Duration, Instant},
};

/// USER_HZ, the unit of utime and stime in /proc: 100 on Linux, whatever
/// the kernel's tick rate.
const TICKS_PER_SEC: f64 = 100.0;

/// CPU seconds of a process, all its threads, living or ended.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct CpuTime {
    pub(crate) user: f64,
    pub(crate) sys: f64,
}

impl CpuTime {
    pub(crate) fn total(self) -> f64 {
        self.user + self.sys
    }

    /// As a share of one core over `secs`.
    pub(crate) fn per_sec(self, secs: f64) -> CpuTime {
        CpuTime {
            user: self.user / secs,
            sys: self.sys / secs,
        }
    }
}

impl Sub for CpuTime {
    type Output = CpuTime;

    fn sub(self, rhs: CpuTime) -> CpuTime {
        CpuTime {
            user: self.user - rhs.user,
            sys: self.sys - rhs.sys,
        }
    }
}

/// utime + stime of process `pid` ("self" for this one), from
/// /proc/PID/stat: they add up every thread of the process.
pub(crate) fn process_cpu(pid: &str) -> Result<CpuTime, String> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    // The command name is in parentheses and may hold spaces or ')'; the
    // fields follow the last ')'.
    let close = stat
        .rfind(')')
        .ok_or_else(|| format!("{path}: no ')' in `{stat}`"))?;
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat; `fields` starts at 3.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .ok_or_else(|| format!("{path}: field {} unreadable", i + 3))
    };
    Ok(CpuTime {
        user: ticks(11)? as f64 / TICKS_PER_SEC,
        sys: ticks(12)? as f64 / TICKS_PER_SEC,
    })
}

/// The 1, 5 and 15 minute load averages, as /proc/loadavg prints them.
pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

/// Waits until none of `pids` uses CPU over 200 ms (the previous run's
/// sessions closed), at most `limit`; returns whether they went quiet.
pub(crate) fn wait_quiet(pids: &[u32], limit: Duration) -> bool {
    let sum = || {
        pids.iter()
            .map(|p| process_cpu(&p.to_string()).map_or(0.0, CpuTime::total))
            .sum::<f64>()
    };
    let deadline = Instant::now() + limit;
    let mut before = sum();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        let now = sum();
        // One tick of slack: a timer wheel turning is not a busy server.
        if now - before <= 1.0 / TICKS_PER_SEC {
            return true;
        }
        before = now;
    }
    false
}
