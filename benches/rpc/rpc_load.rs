//! The RPC load generator: a child process of its own on a current-thread
//! runtime (the echo bench's `load::run_child`), `conns` connections each
//! keeping `depth` calls in flight through its library's own client:
//!
//! - getty: one client [`Peer`], a dialed [`Session`] per connection,
//!   `session.call(ECHO_METHOD, Raw(body)).codec(CodecId::PLAIN)`;
//! - tarpc: an `EchoServiceClient` per connection over
//!   `tarpc::serde_transport::tcp::connect` with bincode.
//!
//! The measuring window (warm-up, then the samples of calls done and of
//! both processes' CPU) is the echo bench's `load::measure`.
//!
//! Every reply is checked (length, the call's sequence number in its first
//! 8 bytes, the last byte), so a reply to the wrong call fails the run.

use std::{
    future::Future,
    net::SocketAddr,
    process::ExitCode,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use futures_util::{stream::FuturesUnordered, StreamExt};
use getty::rpc::{codec::CodecId, codec::Raw, Peer, Session};
use tarpc::tokio_serde::formats::Bincode;
use tokio::task::JoinSet;

use crate::{
    child::{param, param_num, ChildProc},
    load::{measure, report_of, run_child, within, Run, STALL},
    rpc_server::{EchoServiceClient, Rpc, ECHO_METHOD},
};

/// The role of an RPC load child.
pub(crate) const ROLE: &str = "rpc-load";
const KIND_ENV: &str = "RPC_BENCH_KIND";
const ADDR_ENV: &str = "RPC_BENCH_ADDR";
const SERVER_PID_ENV: &str = "RPC_BENCH_SERVER_PID";
const CONNS_ENV: &str = "RPC_BENCH_CONNS";
const DEPTH_ENV: &str = "RPC_BENCH_DEPTH";
const PAYLOAD_ENV: &str = "RPC_BENCH_PAYLOAD";
const WARMUP_ENV: &str = "RPC_BENCH_WARMUP_SECS";
const SECS_ENV: &str = "RPC_BENCH_SECS";

/// What one RPC run loads.
pub(crate) struct Load {
    pub(crate) rpc: Rpc,
    pub(crate) addr: SocketAddr,
    pub(crate) server_pid: u32,
    pub(crate) conns: usize,
    pub(crate) depth: usize,
    pub(crate) payload: usize,
    pub(crate) warmup_secs: f64,
    pub(crate) secs: f64,
}

/// Runs one RPC load child (pinned to `cpu`) and returns what it measured.
pub(crate) fn run(load: &Load, cpu: Option<usize>) -> Result<Run, String> {
    run_as(ROLE, "RPC load generator", load, cpu)
}

/// Runs one generator child of `role` (`what` names it in errors) with
/// `load` in its environment.
pub(crate) fn run_as(
    role: &str,
    what: &str,
    load: &Load,
    cpu: Option<usize>,
) -> Result<Run, String> {
    let envs = [
        (KIND_ENV, load.rpc.name().to_owned()),
        (ADDR_ENV, load.addr.to_string()),
        (SERVER_PID_ENV, load.server_pid.to_string()),
        (CONNS_ENV, load.conns.to_string()),
        (DEPTH_ENV, load.depth.to_string()),
        (PAYLOAD_ENV, load.payload.to_string()),
        (WARMUP_ENV, load.warmup_secs.to_string()),
        (SECS_ENV, load.secs.to_string()),
    ];
    let proc = ChildProc::spawn(what, role, cpu, &envs)?;
    report_of(proc, load.warmup_secs + load.secs)
}

impl Load {
    /// The load a generator child was started with (see `run_as`).
    pub(crate) fn from_env() -> Result<Load, String> {
        Ok(Load {
            rpc: Rpc::parse(&param(KIND_ENV)?)?,
            addr: param_num(ADDR_ENV)?,
            server_pid: param_num(SERVER_PID_ENV)?,
            conns: param_num(CONNS_ENV)?,
            depth: param_num(DEPTH_ENV)?,
            payload: param_num(PAYLOAD_ENV)?,
            warmup_secs: param_num(WARMUP_ENV)?,
            secs: param_num(SECS_ENV)?,
        })
    }
}

/// The RPC load child: one run, reported as the echo bench's generator
/// reports.
pub(crate) fn child_main() -> ExitCode {
    run_child(|| Ok(generate(Load::from_env()?)))
}

async fn generate(load: Load) -> Result<Run, String> {
    let received = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let bodies = Arc::new(Bodies::new(load.payload));
    let mut tasks = JoinSet::new();
    // Kept until the run ends: the peer's sessions live with it.
    let peer = Peer::builder()
        // A failed server fails the run instead of being redialed.
        .redial_times(Some(0))
        .build();
    for _ in 0..load.conns {
        let conn = Conn {
            bodies: Arc::clone(&bodies),
            depth: load.depth,
            received: Arc::clone(&received),
            stop: Arc::clone(&stop),
        };
        match load.rpc {
            Rpc::Getty => {
                let session = within(STALL, "dial", peer.dial(load.addr.to_string())).await?;
                tasks.spawn(conn.drive(move |body| getty_call(session.clone(), body)));
            }
            Rpc::Tarpc => {
                let connect = tarpc::serde_transport::tcp::connect(load.addr, Bincode::default);
                let transport = within(STALL, "connect", connect).await?;
                let _ = transport.get_ref().set_nodelay(true);
                let client =
                    EchoServiceClient::new(tarpc::client::Config::default(), transport).spawn();
                tasks.spawn(conn.drive(move |body| tarpc_call(client.clone(), body)));
            }
        }
    }
    let window = (
        Duration::from_secs_f64(load.warmup_secs),
        Duration::from_secs_f64(load.secs),
    );
    let run = measure(
        tasks,
        &received,
        &stop,
        window,
        &load.server_pid.to_string(),
    )
    .await;
    // Closes the sessions now rather than with the process, so that a
    // session that fails to close shows here, not as a stray error.
    peer.shutdown(Duration::from_secs(1)).await;
    run
}

async fn getty_call(session: Session, body: Bytes) -> Result<Bytes, String> {
    let Raw(reply) = session
        .call(ECHO_METHOD, Raw(body))
        .codec(CodecId::PLAIN)
        .await
        .map_err(|status| format!("getty call: {status}"))?;
    Ok(reply)
}

async fn tarpc_call(client: EchoServiceClient, body: Bytes) -> Result<Bytes, String> {
    client
        .echo(tarpc::context::current(), body)
        .await
        .map_err(|e| format!("tarpc call: {e}"))
}

/// The bodies of the calls: `seq` (8 bytes big-endian), then a fixed fill.
struct Bodies {
    template: Vec<u8>,
}

impl Bodies {
    fn new(payload: usize) -> Bodies {
        Bodies {
            template: (0..payload).map(|i| (i * 7 + 3) as u8).collect(),
        }
    }

    fn make(&self, seq: u64) -> Bytes {
        let mut body = BytesMut::with_capacity(self.template.len());
        body.extend_from_slice(&seq.to_be_bytes());
        body.extend_from_slice(&self.template[8..]);
        body.freeze()
    }

    fn check(&self, reply: &[u8], seq: u64) -> Result<(), String> {
        let len = self.template.len();
        if reply.len() != len {
            return Err(format!(
                "reply to call #{seq}: {} bytes, sent {len}",
                reply.len()
            ));
        }
        if reply[..8] != seq.to_be_bytes() || reply[len - 1] != self.template[len - 1] {
            return Err(format!(
                "reply to call #{seq}: another call's, or corrupted"
            ));
        }
        Ok(())
    }
}

struct Conn {
    bodies: Arc<Bodies>,
    depth: usize,
    received: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Conn {
    /// Keeps `depth` calls in flight on one connection: each reply checked
    /// and counted is followed by a new call, until `stop`. At depth 1 the
    /// calls are simply awaited one after another.
    async fn drive<F, Fut>(self, call: F) -> Result<(), String>
    where
        F: Fn(Bytes) -> Fut,
        Fut: Future<Output = Result<Bytes, String>>,
    {
        let bodies = &*self.bodies;
        let checked = |seq: u64| {
            let reply = call(bodies.make(seq));
            async move { bodies.check(&reply.await?, seq) }
        };
        if self.depth == 1 {
            // Each call awaited in turn. A `FuturesUnordered` of one would
            // yield to the runtime after every poll of a new call (it yields
            // once it has polled as many futures as it holds), costing each
            // library's client a second poll of this task per call.
            let mut seq = 0;
            while !self.stop.load(Ordering::Relaxed) {
                checked(seq).await?;
                self.received.fetch_add(1, Ordering::Relaxed);
                seq += 1;
            }
            return Ok(());
        }
        let mut in_flight = FuturesUnordered::new();
        for seq in 0..self.depth as u64 {
            in_flight.push(checked(seq));
        }
        let mut next = self.depth as u64;
        while !self.stop.load(Ordering::Relaxed) {
            match in_flight.next().await {
                Some(done) => done?,
                None => return Err("no call in flight".into()),
            }
            self.received.fetch_add(1, Ordering::Relaxed);
            in_flight.push(checked(next));
            next += 1;
        }
        Ok(())
    }
}
