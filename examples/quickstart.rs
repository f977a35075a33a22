//! One process: a TCP echo server with an `EventListener`, a client that
//! exchanges a few packets with it, the stats, and a graceful shutdown.
//!
//! ```text
//! cargo run --example quickstart
//! ```

use std::{convert::Infallible, time::Duration};

use bytes::Bytes;
use getty::{
    codec::LengthCodec, new_session_fn, BoxError, Client, Error, EventListener, ListenerService,
    Request, Server, Session,
};
use tokio::sync::mpsc;

/// The server side: getty's EventListener, echoing every packet.
struct Echo;

impl EventListener<Bytes> for Echo {
    fn on_open(&mut self, session: &Session) -> Result<Option<Bytes>, BoxError> {
        println!("[server] open  {session}");
        Ok(None)
    }

    fn on_message(&mut self, session: &Session, pkg: Bytes) -> Option<Bytes> {
        println!(
            "[server] {} echoes {:?}",
            session.id(),
            String::from_utf8_lossy(&pkg)
        );
        Some(pkg)
    }

    fn on_error(&mut self, session: &Session, error: &Error) {
        println!("[server] error {}: {error}", session.id());
    }

    fn on_close(&mut self, session: &Session) {
        println!("[server] close {} ({})", session.id(), session.stats());
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
    // 1. A server on a free port, one Echo listener per session.
    let server = Server::builder().bind("127.0.0.1:0").await?;
    let addr = server.local_addr();
    println!("listening on {addr}");
    let server = server.serve(
        LengthCodec::new(),
        new_session_fn(|session: &Session| {
            session.set_name("echo");
            Ok::<_, Infallible>(ListenerService::new(Echo))
        }),
    );

    // 2. A client whose service is a plain tower::service_fn that forwards
    //    replies to this task.
    let (replies_tx, mut replies) = mpsc::unbounded_channel();
    let client = Client::builder()
        .connect(
            addr.to_string(),
            LengthCodec::new(),
            new_session_fn(move |_: &Session| {
                let replies_tx = replies_tx.clone();
                Ok::<_, Infallible>(tower::service_fn(move |req: Request<Bytes>| {
                    if let Some(reply) = req.message() {
                        let _ = replies_tx.send(reply.clone());
                    }
                    async { Ok::<_, Infallible>(None::<Bytes>) }
                }))
            }),
        )
        .await?;
    let session = client
        .sessions()
        .sessions()
        .pop()
        .ok_or("the client did not connect")?;

    // 3. A few packets there and back.
    for text in ["hello", "getty", "for rust"] {
        session.send(Bytes::from(text)).await?;
        let reply = tokio::time::timeout(Duration::from_secs(5), replies.recv())
            .await?
            .ok_or("client session ended")?;
        println!("[client] got back {:?}", String::from_utf8_lossy(&reply));
    }
    println!("[client] stats: {}", session.stats());

    // 4. Close the client, then shut the server down gracefully.
    client.close();
    client.closed().await;
    server.shutdown(Duration::from_secs(5)).await;
    println!("server sessions left: {}", server.session_count());
    Ok(())
}
