//! The stats layer: an echo server whose sessions all count into one
//! `Stats` handle, four client connections sending traffic for about three
//! seconds, the aggregate printed every second, then a graceful shutdown
//! and the final figures.
//!
//! ```text
//! cargo run --example stats
//! ```

use std::{convert::Infallible, time::Duration};

use bytes::Bytes;
use getty::{
    codec::LengthCodec, new_session_fn, BoxError, Client, EventListener, ListenerService, Request,
    Server, Session, SessionConfig,
};
use getty_layers::stats::Stats;
use tokio::{io::AsyncWriteExt, net::TcpStream, time::Instant};

/// The server side: echoes every packet.
struct Echo;

impl EventListener<Bytes> for Echo {
    fn on_message(&mut self, _session: &Session, pkg: Bytes) -> Option<Bytes> {
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
    // 1. A server whose every session stack has the stats layer outermost.
    //    The cron period makes each session pass a Tick every 250 ms, which
    //    brings its traffic into the aggregate even while it is idle.
    let stats = Stats::new();
    let config = SessionConfig::default()
        .max_packet_len(16 * 1024)
        .cron_period(Some(Duration::from_millis(250)));
    let server = Server::builder()
        .session_config(config)
        .bind("127.0.0.1:0")
        .await?;
    let addr = server.local_addr();
    println!("listening on {addr}");
    let layer = stats.layer();
    let server = server.serve(
        LengthCodec::new(),
        new_session_fn(move |session: &Session| {
            session.set_name("echo");
            Ok::<_, Infallible>(
                tower::ServiceBuilder::new()
                    .layer(layer.clone())
                    .service(ListenerService::new(Echo)),
            )
        }),
    );

    // 2. Four client connections that ignore the echoes.
    let client = Client::builder()
        .connection_number(4)
        .connect(
            addr.to_string(),
            LengthCodec::new(),
            new_session_fn(|_: &Session| {
                Ok::<_, Infallible>(tower::service_fn(|_: Request<Bytes>| async {
                    Ok::<_, Infallible>(None::<Bytes>)
                }))
            }),
        )
        .await?;

    // 3. Each sends a packet of 16 to 1,000 bytes every 2 ms for 3 seconds.
    let until = Instant::now() + Duration::from_secs(3);
    let senders: Vec<_> = client
        .sessions()
        .sessions()
        .into_iter()
        .enumerate()
        .map(|(c, session)| {
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(2));
                let mut n = 0usize;
                while Instant::now() < until {
                    tick.tick().await;
                    let len = 16 + (n * 37 + c * 101) % 985;
                    if session.send(Bytes::from(vec![b'x'; len])).await.is_err() {
                        break;
                    }
                    n += 1;
                }
            })
        })
        .collect();

    // 4. A misbehaving peer: a length prefix above max_packet_len, counted
    //    under errors as packet_too_large.
    let mut rogue = TcpStream::connect(addr).await?;
    rogue.write_all(&(1u32 << 20).to_be_bytes()).await?;

    // 5. The aggregate, every second.
    for second in 1..=3 {
        tokio::time::sleep_until(until - Duration::from_secs(3 - second)).await;
        println!("[{second}s] {}", stats.snapshot());
    }
    for sender in senders {
        sender.await?;
    }

    // 6. Shut everything down; with every session ended the figures are
    //    exact and no session is live.
    client.shutdown(Duration::from_secs(5)).await;
    drop(rogue);
    server.shutdown(Duration::from_secs(5)).await;
    let last = stats.snapshot();
    println!("[final] {last}");
    println!("{}", serde_json::to_string_pretty(&last)?);
    assert_eq!(last.live, 0);
    assert_eq!(last.opened, last.closed);
    Ok(())
}
