//! The RPC servers under load, each in a server child of its own on the
//! echo bench's server runtime (multi-thread, `--threads` workers):
//!
//! - getty: a [`Peer`] routing `/home/echo` to a handler that takes and
//!   returns [`Raw`], as a user of `getty::rpc` writes it;
//! - tarpc: the `EchoService` below over tarpc's bincode TCP transport,
//!   served as tarpc's own `spawn_incoming` serves (a task per connection,
//!   a task per request).
//!
//! Both sides of both set `TCP_NODELAY`, as the library does on its own:
//! with Nagle on, tarpc would wait for ACKs, not for its server.

use std::{io::Write, net::SocketAddr, process::ExitCode, time::Duration};

use bytes::Bytes;
use futures_util::{future, StreamExt};
use getty::rpc::{codec::Raw, CallCtx, Peer, Router, Status};
use tarpc::{
    server::{
        incoming::{spawn_incoming, Incoming},
        BaseChannel,
    },
    tokio_serde::formats::Bincode,
};

use crate::{
    child::{param, param_num, ChildProc},
    servers::runtime,
};

/// The role of an RPC server child.
pub(crate) const ROLE: &str = "rpc-server";
const KIND_ENV: &str = "RPC_BENCH_SERVER";
const THREADS_ENV: &str = "RPC_BENCH_THREADS";

/// The service method the getty server routes and its generator calls.
pub(crate) const ECHO_METHOD: &str = "/home/echo";

/// The tarpc service: one call echoing its bytes. `Bytes` (the `bytes`
/// crate's serde feature) goes through bincode as one byte string, not
/// as a sequence of 581 `u8`s as `Vec<u8>` would.
#[tarpc::service]
pub(crate) trait EchoService {
    async fn echo(body: Bytes) -> Bytes;
}

#[derive(Clone)]
struct TarpcEcho;

impl EchoService for TarpcEcho {
    async fn echo(self, _: tarpc::context::Context, body: Bytes) -> Bytes {
        body
    }
}

async fn getty_echo(_: CallCtx, body: Raw) -> Result<Raw, Status> {
    Ok(body)
}

/// Which RPC library a server child or a generator runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Rpc {
    Getty,
    Tarpc,
}

impl Rpc {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Rpc::Getty => "getty",
            Rpc::Tarpc => "tarpc",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Rpc, String> {
        match s {
            "getty" => Ok(Rpc::Getty),
            "tarpc" => Ok(Rpc::Tarpc),
            other => Err(format!("unknown RPC library `{other}`")),
        }
    }
}

/// An RPC server child, seen from the parent.
pub(crate) struct RpcServerProc {
    pub(crate) rpc: Rpc,
    pub(crate) addr: SocketAddr,
    proc: ChildProc,
}

impl RpcServerProc {
    pub(crate) fn start(rpc: Rpc, threads: usize, cpu: Option<usize>) -> Result<Self, String> {
        let envs = [
            (KIND_ENV, rpc.name().to_owned()),
            (THREADS_ENV, threads.to_string()),
        ];
        let name = format!("{} server", rpc.name());
        let proc = ChildProc::spawn(&name, ROLE, cpu, &envs)?;
        let addr = proc.listening_addr()?;
        Ok(RpcServerProc { rpc, addr, proc })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Asks the server to shut down and waits for it.
    pub(crate) fn stop(self) -> Result<(), String> {
        self.proc.finish(Duration::from_secs(15))
    }
}

/// The RPC server child: serves until its stdin closes.
pub(crate) fn child_main() -> ExitCode {
    match serve_until_stdin_closes() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rpc bench {ROLE} child: {e}");
            ExitCode::FAILURE
        }
    }
}

enum Running {
    Getty(Peer),
    Tarpc(tokio::task::JoinHandle<()>),
}

fn serve_until_stdin_closes() -> Result<(), String> {
    let rpc = Rpc::parse(&param(KIND_ENV)?)?;
    let rt = runtime(param_num(THREADS_ENV)?)?;
    // Started on the runtime's workers, which serve on while this thread
    // waits for stdin.
    let (addr, running) = rt.block_on(async {
        match rpc {
            Rpc::Getty => {
                let peer = Peer::builder()
                    .router(Router::new().call(ECHO_METHOD, getty_echo))
                    .build();
                let handle = peer
                    .listen("127.0.0.1:0")
                    .await
                    .map_err(|e| format!("getty bind: {e}"))?;
                Ok::<_, String>((handle.local_addr(), Running::Getty(peer)))
            }
            Rpc::Tarpc => {
                let listener = tarpc::serde_transport::tcp::listen("127.0.0.1:0", Bincode::default)
                    .await
                    .map_err(|e| format!("tarpc bind: {e}"))?;
                let addr = listener.local_addr();
                let channels = listener
                    .filter_map(|accepted| future::ready(accepted.ok()))
                    .map(|transport| {
                        let _ = transport.get_ref().set_nodelay(true);
                        BaseChannel::with_defaults(transport)
                    })
                    .execute(TarpcEcho.serve());
                let task = tokio::spawn(spawn_incoming(channels));
                Ok((addr, Running::Tarpc(task)))
            }
        }
    })?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {addr}")
            .and_then(|()| out.flush())
            .map_err(|e| format!("stdout: {e}"))?;
    }
    let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
    match running {
        Running::Getty(peer) => rt.block_on(peer.shutdown(Duration::from_secs(5))),
        Running::Tarpc(task) => task.abort(),
    }
    Ok(())
}
