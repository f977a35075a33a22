//! getty's layers and tower's own on one server, in one `ServiceBuilder`.
//!
//! ```text
//! cargo run --example layered_server
//! ```
//!
//! The stack, outermost first (a request passes the layers top to bottom,
//! its response bottom to top):
//!
//! | layer                    | from         | why here                                                        |
//! |--------------------------|--------------|-----------------------------------------------------------------|
//! | `trace_events`           | getty-layers | outermost: its timing covers everything below, waits included   |
//! | `stats`                  | getty-layers | sees every event, even those a layer below drops or sheds       |
//! | `heartbeat`              | getty-layers | acts on `Tick` before a rate limit or a full pool can delay it  |
//! | `on_close`               | getty-layers | registers when `Open` made it through everything below          |
//! | `session_rate_limit`     | getty-layers | one session's flood is slowed before it reaches shared capacity |
//! | `load_shed`              | tower        | turns "pool full" into an immediate error instead of waiting    |
//! | `task_pool`              | getty-layers | the bound shared by all sessions (getty's `WithServerTaskPool`) |
//! | `event_timeout`          | getty-layers | the deadline counts handler time, not time waiting for the pool |
//! | `timeout`                | tower        | a hard backstop: an error that closes the session               |
//! | `concurrency_limit`      | tower        | at most this many of this session's events in the handler       |
//! | `buffer`                 | tower        | hands events to a worker task (a stand-in for a shared backend) |
//! | `ListenerService(Echo)`  | getty        | the `EventListener`, innermost                                  |

use std::{convert::Infallible, time::Duration};

use bytes::Bytes;
use getty::{
    codec::LengthCodec, new_session_fn, BoxError, Client, EventListener, ListenerService, Request,
    Server, Session, SessionConfig,
};
use getty_layers::{
    heartbeat::HeartbeatLayer,
    pool::{TaskPool, TaskPoolLayer},
    rate_limit::{Rate, RateLimitLayer},
    stats::Stats,
    timeout::EventTimeoutLayer,
    trace::TraceLayer,
    ServiceBuilderExt,
};
use tower::ServiceBuilder;

struct Echo;

impl EventListener<Bytes> for Echo {
    fn on_message(&mut self, _: &Session, pkg: Bytes) -> Option<Bytes> {
        Some(pkg)
    }
}

/// Logs to stderr through `tracing-subscriber`: `info` and up by default, so
/// the library's warnings (a refused handshake, an oversized packet, a
/// timeout) are seen; `RUST_LOG` adds or overrides directives
/// (`RUST_LOG=debug`, `RUST_LOG=getty=trace`).
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::builder()
        .with_default_directive(tracing_subscriber::filter::LevelFilter::INFO.into())
        .from_env_lossy();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours for a terminal only, not in a log file or a pipe.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    init_tracing();
    let stats = Stats::new();
    let pool = TaskPool::new(64);

    let s = stats.clone();
    let server = Server::builder()
        .session_config(SessionConfig::default().max_in_flight(4))
        .bind("127.0.0.1:0")
        .await?
        .serve(
            LengthCodec::new(),
            new_session_fn(move |_: &Session| {
                let stack = ServiceBuilder::new()
                    .trace_events(TraceLayer::new().slow_threshold(Duration::from_millis(200)))
                    .stats(&s)
                    .heartbeat(
                        HeartbeatLayer::new().close_when_reader_idle(Duration::from_secs(30)),
                    )
                    .on_close(|s: &Session| println!("[server] session {} ended", s.id()))
                    .session_rate_limit(RateLimitLayer::new(Rate::per_second(10_000)))
                    .load_shed()
                    .task_pool(TaskPoolLayer::new(pool.clone()))
                    .event_timeout(EventTimeoutLayer::new(Duration::from_secs(1)))
                    .timeout(Duration::from_secs(5))
                    .concurrency_limit(4)
                    .buffer(16)
                    .service(ListenerService::new(Echo));
                Ok::<_, Infallible>(stack)
            }),
        );
    println!("listening on {}", server.local_addr());

    // A client pipelining a few packets and reading the echoes.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let client = Client::builder()
        .connect(
            server.local_addr().to_string(),
            LengthCodec::new(),
            new_session_fn(move |_: &Session| {
                let tx = tx.clone();
                Ok::<_, Infallible>(tower::service_fn(move |req: Request<Bytes>| {
                    if let Some(p) = req.message() {
                        let _ = tx.send(p.clone());
                    }
                    async { Ok::<_, Infallible>(None::<Bytes>) }
                }))
            }),
        )
        .await?;
    let session = client.sessions().sessions().pop().ok_or("not connected")?;
    for i in 0..10 {
        session.send(Bytes::from(format!("packet {i}"))).await?;
    }
    for _ in 0..10 {
        let echo = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await?
            .ok_or("client ended")?;
        println!("[client] {}", String::from_utf8_lossy(&echo));
    }

    client.shutdown(Duration::from_secs(5)).await;
    server.shutdown(Duration::from_secs(5)).await;
    println!("[stats] {}", stats.snapshot());
    Ok(())
}
