//! Idle memory: heap bytes the library holds per idle TCP session, with
//! `--idle-sessions` sessions open (their clients in a child process: one
//! process's fd limit cannot hold both ends) and the server in this
//! process, whose heap a counting allocator watches.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    io::{Read, Write},
    net::SocketAddr,
    process::ExitCode,
    sync::atomic::{AtomicBool, AtomicIsize, Ordering},
    time::{Duration, Instant},
};

use getty::ServerHandle;
use tokio::runtime::Runtime;

use crate::{
    child::{param_num, ChildProc},
    part::Part,
    servers::{runtime, start_library},
    Config,
};

/// The role of the idle-clients child.
pub(crate) const ROLE: &str = "idle-clients";
const ADDR_ENV: &str = "ECHO_BENCH_ADDR";
const COUNT_ENV: &str = "ECHO_BENCH_COUNT";

/// Target heap per idle TCP session, bytes.
const HEAP_TARGET: i64 = 2560;
/// What a hand-written echo that reads into a stack buffer while idle
/// holds per session (tokio's `TcpStream` and the task), for scale.
const HAND_WRITTEN: i64 = 1280;

// ----- the counting allocator -------------------------------------------------

/// `System`, counting live bytes and allocations once `start_counting`
/// has been called. The throughput children never call it: their servers
/// pay one relaxed load per allocation, not a locked add, so the probe
/// does not tax the library (which allocates more) more than the floor.
pub(crate) struct ProbeAlloc;

static COUNTING: AtomicBool = AtomicBool::new(false);
static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);
static LIVE_ALLOCS: AtomicIsize = AtomicIsize::new(0);

fn count(allocs: isize, bytes: isize) {
    if COUNTING.load(Ordering::Relaxed) {
        LIVE_ALLOCS.fetch_add(allocs, Ordering::Relaxed);
        LIVE_BYTES.fetch_add(bytes, Ordering::Relaxed);
    }
}

// SAFETY: every call goes unchanged to `System`, which upholds the
// contract; the counters are bookkeeping beside it.
unsafe impl GlobalAlloc for ProbeAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            count(1, layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            count(1, layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        count(-1, -(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            count(0, new_size as isize - layout.size() as isize);
        }
        p
    }
}

/// Counts from now on. Called first thing in the parent, so that what it
/// frees was (nearly all) counted when allocated; only differences are
/// reported anyway.
pub(crate) fn start_counting() {
    COUNTING.store(true, Ordering::Relaxed);
}

/// Live heap bytes and live allocations, process-wide.
fn heap_in_use() -> (isize, isize) {
    (
        LIVE_BYTES.load(Ordering::Relaxed),
        LIVE_ALLOCS.load(Ordering::Relaxed),
    )
}

/// Resident set size in bytes, from /proc/self/statm (4 KiB pages).
fn rss_bytes() -> Option<i64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: i64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

// ----- the measurement --------------------------------------------------------

pub(crate) fn idle_memory(cfg: &Config) -> Result<(), String> {
    let n = cfg.idle_sessions;
    let rt = runtime(cfg.threads)?;
    let server = rt.block_on(start_library(cfg.max_in_flight, Part::Tcp, None))?;
    let result = measure(cfg, &rt, &server);
    rt.block_on(server.shutdown(Duration::from_secs(5)));
    result.map_err(|e| format!("idle memory, {n} sessions: {e}"))
}

fn measure(cfg: &Config, rt: &Runtime, server: &ServerHandle) -> Result<(), String> {
    let n = cfg.idle_sessions;
    // Let the accept loop reach its first await so its own setup is not
    // billed to the sessions.
    std::thread::sleep(Duration::from_millis(100));
    let (heap_before, rss_before) = (heap_in_use(), rss_bytes());
    let clients = ChildProc::spawn(
        "idle clients",
        ROLE,
        None,
        &[
            (ADDR_ENV, server.local_addr().to_string()),
            (COUNT_ENV, n.to_string()),
        ],
    )?;
    let line = clients.line(Duration::from_secs(120))?;
    if line.trim() != format!("connected {n}") {
        return Err(format!("the idle clients said `{}`", line.trim()));
    }
    wait_sessions(rt, server, n, Duration::from_secs(60))?;
    // Each session's driver must have run once and gone idle (giving back
    // its buffers) before the count means anything.
    std::thread::sleep(Duration::from_secs(1));
    let (heap_after, rss_after) = (heap_in_use(), rss_bytes());
    let per_session = (heap_after.0 - heap_before.0) as i64 / n as i64;
    println!(
        "idle memory: {n} TCP sessions, heap {per_session} bytes per session -- target <= \
         {HEAP_TARGET}: {} (a hand-written echo holds about {HAND_WRITTEN})",
        crate::verdict(cfg, per_session <= HEAP_TARGET)
    );
    println!(
        "  live allocations per session: {:.1}",
        (heap_after.1 - heap_before.1) as f64 / n as f64
    );
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        println!(
            "  rss delta: {} KiB, {} bytes per session (for information: includes allocator \
             slack and tokio's I/O slab)",
            (after - before) / 1024,
            (after - before) / n as i64
        );
    }
    clients.finish(Duration::from_secs(10))?;
    wait_sessions(rt, server, 0, Duration::from_secs(30))
}

fn wait_sessions(
    rt: &Runtime,
    server: &ServerHandle,
    want: usize,
    limit: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    rt.block_on(async {
        while server.session_count() != want {
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} sessions after {limit:?}, expected {want}",
                    server.session_count()
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    })
}

// ----- the idle-clients child -------------------------------------------------

/// Opens the idle connections, reports, and holds them until stdin closes.
pub(crate) fn child_main() -> ExitCode {
    crate::child::raise_fd_limit();
    let parsed = param_num::<SocketAddr>(ADDR_ENV)
        .and_then(|addr| Ok((addr, param_num::<usize>(COUNT_ENV)?)));
    let (addr, n) = match parsed {
        Ok(p) => p,
        Err(e) => {
            eprintln!("echo bench idle clients: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut conns = Vec::with_capacity(n);
    let mut out = std::io::stdout();
    for i in 0..n {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10)) {
            Ok(s) => conns.push(s),
            Err(e) => {
                let _ = writeln!(out, "connection {i} of {n} failed: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let _ = writeln!(out, "connected {n}");
    let _ = out.flush();
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop(conns);
    ExitCode::SUCCESS
}
