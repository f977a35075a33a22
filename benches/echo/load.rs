//! The load generator: a child process of its own on a current-thread
//! runtime, `conns` connections each keeping `depth` packets in flight.
//! After the warm-up it samples, at the same instants, the packets echoed,
//! the server process's CPU time and its own, and reports them.
//!
//! Every echo is checked (length, sequence number, last byte), so a
//! reordered, duplicated or corrupted echo fails the run. The work per
//! packet is kept small so that the generator saturates as late as
//! possible: no timer per read (a watchdog notices a stall instead), and on
//! WebSocket hand-made frames (a fixed mask applied to the payload once,
//! only the sequence number masked per packet) rather than a WebSocket
//! library's client, which costs more per message than the servers do.
//!
//! Wire formats, `seq` the packet's 8-byte big-endian sequence number on
//! its connection, `fill` the rest of the payload:
//!
//! ```text
//! TCP, TLS   +-------------+-----+------+        LengthCodec's frame
//!            | len: u32 BE | seq | fill |
//!            +-------------+-----+------+
//! WebSocket  +------+-----------------+------+------------------+
//!  to server | 0x82 | 0x80|126, u16BE | mask | (seq|fill) ^ mask |   FIN, binary, masked
//!            +------+-----------------+------+------------------+
//!  echo      | 0x82 | 126, u16 BE     | seq | fill |                unmasked
//! ```

use std::{
    io::Write,
    net::SocketAddr,
    process::ExitCode,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use bytes::{Buf, BufMut, BytesMut};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
    task::JoinSet,
};

use crate::{
    child::{exit_when_stdin_closes, param, param_num, ChildProc},
    cpu::{process_cpu, CpuTime},
    part::Part,
    servers::WS_PATH,
    tls, Config,
};

/// The role of a load child.
pub(crate) const ROLE: &str = "load";
const PART_ENV: &str = "ECHO_BENCH_PART";
const ADDR_ENV: &str = "ECHO_BENCH_ADDR";
const SERVER_PID_ENV: &str = "ECHO_BENCH_SERVER_PID";
const CONNS_ENV: &str = "ECHO_BENCH_CONNS";
const DEPTH_ENV: &str = "ECHO_BENCH_DEPTH";
const PAYLOAD_ENV: &str = "ECHO_BENCH_PAYLOAD";
const WARMUP_ENV: &str = "ECHO_BENCH_WARMUP_SECS";
const SECS_ENV: &str = "ECHO_BENCH_SECS";

/// No packet echoed on any connection for this long means a broken
/// server; so does a connect or handshake taking this long.
pub(crate) const STALL: Duration = Duration::from_secs(10);
/// The mask of every client frame (RFC 6455 wants it unpredictable to
/// defeat proxy cache poisoning, which a benchmark on loopback need not).
const WS_MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// One measured run, as the generator saw it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Run {
    pub(crate) packets: u64,
    pub(crate) secs: f64,
    /// The server process's CPU over the window, as a share of one core.
    pub(crate) server: CpuTime,
    /// The generator's own.
    pub(crate) load: CpuTime,
}

impl Run {
    pub(crate) fn rate(&self) -> f64 {
        self.packets as f64 / self.secs
    }

    /// Packets per CPU-second of the server process.
    pub(crate) fn per_server_cpu(&self) -> f64 {
        self.rate() / self.server.total().max(1e-9)
    }
}

/// Runs one load child against the server at `addr` (process `server_pid`)
/// and returns what it measured.
pub(crate) fn run(
    cfg: &Config,
    part: Part,
    addr: SocketAddr,
    server_pid: u32,
    cpu: Option<usize>,
    tls: Option<&tls::Material>,
) -> Result<Run, String> {
    let mut envs = vec![
        (PART_ENV, part.name().to_owned()),
        (ADDR_ENV, addr.to_string()),
        (SERVER_PID_ENV, server_pid.to_string()),
        (CONNS_ENV, cfg.conns.to_string()),
        (DEPTH_ENV, cfg.depth.to_string()),
        (PAYLOAD_ENV, cfg.payload.to_string()),
        (WARMUP_ENV, cfg.warmup_secs.to_string()),
        (SECS_ENV, cfg.secs.to_string()),
    ];
    if let Some(m) = tls {
        envs.push((tls::CA_ENV, m.ca.clone()));
    }
    let proc = ChildProc::spawn("load generator", ROLE, cpu, &envs)?;
    report_of(proc, cfg.warmup_secs + cfg.secs)
}

/// What a generator child (this one or the RPC bench's) reports after
/// `secs` of warm-up and measuring; the child is then finished.
pub(crate) fn report_of(proc: ChildProc, secs: f64) -> Result<Run, String> {
    let limit = Duration::from_secs_f64(secs) + STALL * 4;
    let line = proc.line(limit)?;
    let run = parse_report(&line).ok_or_else(|| format!("load generator said `{line}`"))?;
    proc.finish(Duration::from_secs(10))?;
    Ok(run)
}

fn parse_report(line: &str) -> Option<Run> {
    let mut f = line.strip_prefix("result ")?.split_whitespace();
    let mut next = || f.next()?.parse::<f64>().ok();
    let packets = next()? as u64;
    let secs = next()?;
    let server = CpuTime {
        user: next()?,
        sys: next()?,
    };
    let load = CpuTime {
        user: next()?,
        sys: next()?,
    };
    Some(Run {
        packets,
        secs,
        server: server.per_sec(secs),
        load: load.per_sec(secs),
    })
}

// ----- the child --------------------------------------------------------------

struct Spec {
    part: Part,
    addr: SocketAddr,
    server_pid: String,
    conns: usize,
    depth: usize,
    frames: Arc<Frames>,
    warmup: Duration,
    measure: Duration,
    tls_ca: Option<String>,
}

impl Spec {
    fn from_env() -> Result<Spec, String> {
        let part = Part::parse(&param(PART_ENV)?)?;
        let payload: usize = param_num(PAYLOAD_ENV)?;
        Ok(Spec {
            part,
            addr: param_num(ADDR_ENV)?,
            server_pid: param(SERVER_PID_ENV)?,
            conns: param_num(CONNS_ENV)?,
            depth: param_num(DEPTH_ENV)?,
            frames: Arc::new(Frames::new(part, payload)),
            warmup: Duration::from_secs_f64(param_num(WARMUP_ENV)?),
            measure: Duration::from_secs_f64(param_num(SECS_ENV)?),
            tls_ca: match part {
                Part::Tls => Some(param(tls::CA_ENV)?),
                _ => None,
            },
        })
    }
}

/// The load child: one run, its report on stdout.
pub(crate) fn child_main() -> ExitCode {
    run_child(|| Spec::from_env().map(generate))
}

/// A generator child's life, this bench's or the RPC bench's: the future
/// `start` makes runs on a current-thread runtime, then the run is
/// reported on stdout as
/// `result PACKETS SECS SERVER_USER SERVER_SYS LOAD_USER LOAD_SYS`
/// (CPU in seconds over the window).
pub(crate) fn run_child<F>(start: impl FnOnce() -> Result<F, String>) -> ExitCode
where
    F: std::future::Future<Output = Result<Run, String>>,
{
    exit_when_stdin_closes();
    crate::child::raise_fd_limit();
    let result = start().and_then(|generate| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot build the runtime: {e}"))?
            .block_on(generate)
    });
    match result {
        Ok(r) => {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(
                out,
                "result {} {} {} {} {} {}",
                r.packets, r.secs, r.server.user, r.server.sys, r.load.user, r.load.sys
            );
            let _ = out.flush();
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench load generator: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The counters at one instant.
struct Sample {
    packets: u64,
    at: Instant,
    server: CpuTime,
    load: CpuTime,
}

async fn generate(spec: Spec) -> Result<Run, String> {
    let received = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let connector = match &spec.tls_ca {
        Some(ca) => Some(tls::connector(ca)?),
        None => None,
    };
    let addr = spec.addr;
    let mut tasks = JoinSet::new();
    for _ in 0..spec.conns {
        let stream = within(STALL, "connect", TcpStream::connect(addr)).await?;
        let _ = stream.set_nodelay(true);
        let conn = Conn {
            frames: Arc::clone(&spec.frames),
            depth: spec.depth,
            received: Arc::clone(&received),
            stop: Arc::clone(&stop),
        };
        match (spec.part, &connector) {
            (Part::Tls, Some((connector, name))) => {
                let stream = within(
                    STALL,
                    "TLS handshake",
                    connector.connect(name.clone(), stream),
                )
                .await?;
                tasks.spawn(conn.drive(stream, BytesMut::new()));
            }
            (Part::Ws, _) => {
                let (stream, early) =
                    within(STALL, "WebSocket handshake", ws_handshake(stream, addr)).await?;
                tasks.spawn(conn.drive(stream, early));
            }
            _ => {
                tasks.spawn(conn.drive(stream, BytesMut::new()));
            }
        };
    }
    let window = (spec.warmup, spec.measure);
    measure(tasks, &received, &stop, window, &spec.server_pid).await
}

/// The warm-up, then the measured window, over connections already running
/// in `tasks`, which count what comes back in `received` and end once they
/// see `stop`; `window` is (warm-up, measured). Fails when a connection
/// fails or ends early, or nothing comes back for `STALL`. The RPC bench's
/// generator measures with it too.
pub(crate) async fn measure(
    mut tasks: JoinSet<Result<(), String>>,
    received: &AtomicU64,
    stop: &AtomicBool,
    (warmup, measured): (Duration, Duration),
    server_pid: &str,
) -> Result<Run, String> {
    let sample = |packets: &AtomicU64| -> Result<Sample, String> {
        Ok(Sample {
            packets: packets.load(Ordering::Relaxed),
            at: Instant::now(),
            server: process_cpu(server_pid)?,
            load: process_cpu("self")?,
        })
    };
    let window = async {
        tokio::time::sleep(warmup).await;
        let start = sample(received)?;
        tokio::time::sleep(measured).await;
        Ok::<_, String>((start, sample(received)?))
    };
    let (start, end) = tokio::select! {
        w = window => w?,
        Some(ended) = tasks.join_next() => {
            return Err(match ended {
                Ok(Err(e)) => e,
                Ok(Ok(())) => "a connection ended early".into(),
                Err(e) => format!("connection task: {e}"),
            })
        }
        e = watchdog(received) => return Err(e),
    };
    stop.store(true, Ordering::Relaxed);
    let stopping = async {
        while let Some(ended) = tasks.join_next().await {
            match ended {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(e) => return Err(format!("connection task: {e}")),
            }
        }
        Ok(())
    };
    within(STALL, "stopping the connections", stopping).await?;

    let packets = end.packets - start.packets;
    if packets == 0 {
        return Err("nothing echoed in the measured window".into());
    }
    Ok(Run {
        packets,
        secs: (end.at - start.at).as_secs_f64(),
        server: end.server - start.server,
        load: end.load - start.load,
    })
}

/// `fut`'s output, or an error naming `what` after `limit`.
pub(crate) async fn within<T, E: std::fmt::Display>(
    limit: Duration,
    what: &str,
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| format!("{what} took over {limit:?}"))?
        .map_err(|e| format!("{what}: {e}"))
}

/// Fails once no packet at all has been echoed for `STALL`.
async fn watchdog(received: &AtomicU64) -> String {
    let mut last = (received.load(Ordering::Relaxed), Instant::now());
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = received.load(Ordering::Relaxed);
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() >= STALL {
            return format!("no packet echoed for {STALL:?}");
        }
    }
}

/// The upgrade request, by hand; returns the stream and any bytes read
/// past the response's head.
async fn ws_handshake(
    mut stream: TcpStream,
    addr: SocketAddr,
) -> Result<(TcpStream, BytesMut), String> {
    let request = format!(
        "GET {WS_PATH} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = buf.split_to(end + 4);
            if !head.starts_with(b"HTTP/1.1 101") {
                let line = head[..].split(|&b| b == b'\r').next().unwrap_or_default();
                return Err(format!("answered `{}`", String::from_utf8_lossy(line)));
            }
            return Ok((stream, buf));
        }
        if buf.len() > 16 * 1024 {
            return Err("response head over 16 KiB".into());
        }
        if stream.read_buf(&mut buf).await.map_err(|e| e.to_string())? == 0 {
            return Err("closed during the handshake".into());
        }
    }
}

// ----- one connection -------------------------------------------------------

/// How packets go out and come back on one kind of connection.
struct Frames {
    ws: bool,
    payload: usize,
    /// The payload, `fill` from byte 8 on; what an echo must hold.
    template: Vec<u8>,
    /// The WebSocket frame's head and the payload masked, from byte 8 on.
    ws_head: Vec<u8>,
    masked: Vec<u8>,
}

/// What the front of the read buffer holds.
enum Parsed {
    Incomplete,
    /// A packet echoed: its frame's length.
    Packet(usize),
    /// A ping or pong: its frame's length.
    Control(usize),
}

impl Frames {
    fn new(part: Part, payload: usize) -> Frames {
        let template: Vec<u8> = (0..payload).map(|i| (i * 7 + 3) as u8).collect();
        let masked = template
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ WS_MASK[i % 4])
            .collect();
        let mut ws_head = vec![0x82];
        match payload {
            0..=125 => ws_head.push(0x80 | payload as u8),
            126..=65535 => {
                ws_head.push(0x80 | 126);
                ws_head.extend_from_slice(&(payload as u16).to_be_bytes());
            }
            _ => {
                ws_head.push(0x80 | 127);
                ws_head.extend_from_slice(&(payload as u64).to_be_bytes());
            }
        }
        ws_head.extend_from_slice(&WS_MASK);
        Frames {
            ws: part == Part::Ws,
            payload,
            template,
            ws_head,
            masked,
        }
    }

    /// An echo's frame length at most.
    fn max_len(&self) -> usize {
        self.payload + 10
    }

    fn push(&self, out: &mut BytesMut, seq: u64) {
        let seq = seq.to_be_bytes();
        if self.ws {
            out.extend_from_slice(&self.ws_head);
            for (i, b) in seq.iter().enumerate() {
                out.put_u8(b ^ WS_MASK[i % 4]);
            }
            out.extend_from_slice(&self.masked[8..]);
        } else {
            out.put_u32(self.payload as u32);
            out.extend_from_slice(&seq);
            out.extend_from_slice(&self.template[8..]);
        }
    }

    /// Checks the frame at the front of `buf`, which must be packet
    /// `expected` if it is a packet.
    fn parse(&self, buf: &[u8], expected: u64) -> Result<Parsed, String> {
        let (head, len, control) = if self.ws {
            if buf.len() < 2 {
                return Ok(Parsed::Incomplete);
            }
            if buf[1] & 0x80 != 0 {
                return Err("a masked frame from the server".into());
            }
            let (head, len) = match buf[1] & 0x7f {
                126 if buf.len() < 4 => return Ok(Parsed::Incomplete),
                126 => (4, u16::from_be_bytes([buf[2], buf[3]]) as usize),
                127 if buf.len() < 10 => return Ok(Parsed::Incomplete),
                127 => (
                    10,
                    u64::from_be_bytes(buf[2..10].try_into().expect("8")) as usize,
                ),
                n => (2, n as usize),
            };
            let control = match buf[0] {
                0x82 => false,
                0x89 | 0x8a => true,
                0x88 => return Err("the server closed the WebSocket".into()),
                b => return Err(format!("unexpected frame head {b:#04x}")),
            };
            (head, len, control)
        } else {
            if buf.len() < 4 {
                return Ok(Parsed::Incomplete);
            }
            (
                4,
                u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize,
                false,
            )
        };
        if buf.len() < head + len {
            return Ok(Parsed::Incomplete);
        }
        if control {
            return Ok(Parsed::Control(head + len));
        }
        if len != self.payload {
            return Err(format!("echoed length {len}, sent {}", self.payload));
        }
        let body = &buf[head..head + len];
        let seq = u64::from_be_bytes(body[..8].try_into().expect("8 bytes"));
        if seq != expected || body[len - 1] != self.template[len - 1] {
            return Err(format!("echo #{expected} came back as #{seq} or corrupted"));
        }
        Ok(Parsed::Packet(head + len))
    }
}

/// One turn of a generator's connection (this bench's or the RPC bench's
/// wire generator): writes what `out` holds and empties it, then reads
/// what has come into `inbuf`, with room for at least `room` bytes.
/// The flush is a no-op on TCP; on TLS it sends what the TLS layer kept
/// when the socket was full.
pub(crate) async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    out: &mut BytesMut,
    inbuf: &mut BytesMut,
    room: usize,
) -> Result<(), String> {
    if !out.is_empty() {
        stream
            .write_all(out)
            .await
            .map_err(|e| format!("write: {e}"))?;
        stream.flush().await.map_err(|e| format!("write: {e}"))?;
        out.clear();
    }
    if inbuf.capacity() - inbuf.len() < room {
        inbuf.reserve(64 * 1024);
    }
    let n = stream
        .read_buf(inbuf)
        .await
        .map_err(|e| format!("read: {e}"))?;
    if n == 0 {
        return Err("the server closed the connection".into());
    }
    Ok(())
}

/// One generator connection: how its frames are made and checked (`F`,
/// this bench's or the RPC bench's wire generator's), how many are kept in
/// flight, the shared count of those that came back, the stop flag.
pub(crate) struct Conn<F> {
    pub(crate) frames: Arc<F>,
    pub(crate) depth: usize,
    pub(crate) received: Arc<AtomicU64>,
    pub(crate) stop: Arc<AtomicBool>,
}

impl Conn<Frames> {
    /// Keeps `depth` packets in flight: per wake-up, checks every echo
    /// read, sends one new packet for each in one write.
    async fn drive<S: AsyncRead + AsyncWrite + Unpin>(
        self,
        mut stream: S,
        mut inbuf: BytesMut,
    ) -> Result<(), String> {
        let frames = &*self.frames;
        let mut out = BytesMut::with_capacity(self.depth * frames.max_len());
        let (mut sent, mut expected) = (0u64, 0u64);
        for _ in 0..self.depth {
            frames.push(&mut out, sent);
            sent += 1;
        }
        while !self.stop.load(Ordering::Relaxed) {
            exchange(&mut stream, &mut out, &mut inbuf, frames.max_len()).await?;
            let mut got = 0;
            loop {
                match frames.parse(&inbuf, expected)? {
                    Parsed::Incomplete => break,
                    Parsed::Control(n) => inbuf.advance(n),
                    Parsed::Packet(n) => {
                        inbuf.advance(n);
                        expected += 1;
                        got += 1;
                        frames.push(&mut out, sent);
                        sent += 1;
                    }
                }
            }
            if got > 0 {
                self.received.fetch_add(got, Ordering::Relaxed);
            }
        }
        if frames.ws {
            // A close frame (masked, empty), so the server's session ends
            // the way WebSocket sessions end; its answer is not awaited.
            let mut close = vec![0x88, 0x80];
            close.extend_from_slice(&WS_MASK);
            let _ = stream.write_all(&close).await;
        }
        Ok(())
    }
}
