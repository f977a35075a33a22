//! EMFILE on accept. Alone in its own test binary: it lowers the process's
//! open-file limit, which would break any test running beside it.

mod common;

use std::{
    fmt,
    fs::File,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use common::*;
use getty::SessionConfig;
use tokio::net::{TcpSocket, TcpStream};
use tracing::{
    field::{Field, Visit},
    Level, Subscriber,
};
use tracing_subscriber::{layer::Context, prelude::*, Layer};

const LIMIT: Duration = Duration::from_secs(5);

/// Records when the server logs a failed accept, and the error it logged.
#[derive(Clone, Default)]
struct AcceptFailures(Arc<Mutex<Vec<(Instant, String)>>>);

impl AcceptFailures {
    fn seen(&self) -> Vec<(Instant, String)> {
        self.0.lock().unwrap().clone()
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    error: String,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "error" => self.error = format!("{value:?}"),
            _ => {}
        }
    }
}

impl<S: Subscriber> Layer<S> for AcceptFailures {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if *event.metadata().level() > Level::WARN {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        if fields.message.contains("accept failed") {
            self.0.lock().unwrap().push((Instant::now(), fields.error));
        }
    }
}

#[tokio::test]
async fn accept_failing_with_emfile_is_logged_and_backed_off_and_the_server_recovers() {
    let failures = AcceptFailures::default();
    tracing_subscriber::registry().with(failures.clone()).init();

    let (server, log) = recording_server(SessionConfig::default()).await;
    let addr = server.local_addr();
    {
        let mut c = TcpStream::connect(addr).await.unwrap();
        write_frame(&mut c, b"warm-up").await;
        assert_eq!(read_frame(&mut c).await, b"warm-up");
    }
    eventually(LIMIT, "the warm-up session ends", || {
        server.session_count() == 0
    })
    .await;

    // Client sockets made while descriptors are still available; connecting
    // them later needs no new descriptor.
    let sockets: Vec<TcpSocket> = (0..3).map(|_| TcpSocket::new_v4().unwrap()).collect();

    // Lower the soft limit to a little above the lowest free descriptor and
    // take every descriptor left below it.
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    let lowest_free = {
        use std::os::fd::AsRawFd;
        File::open("/dev/null").unwrap().as_raw_fd() as u64
    };
    rlimit::setrlimit(rlimit::Resource::NOFILE, lowest_free + 32, hard).unwrap();
    let mut hogs = Vec::new();
    loop {
        match File::open("/dev/null") {
            Ok(f) => hogs.push(f),
            Err(e) if e.raw_os_error() == Some(24) => break, // EMFILE
            Err(e) => panic!("unexpected error opening a hog: {e}"),
        }
        assert!(hogs.len() < 10_000, "the lowered limit is not enforced");
    }

    // The kernel completes these connections; the server cannot accept them.
    let mut clients = Vec::new();
    for s in sockets {
        clients.push(within(LIMIT, s.connect(addr)).await.unwrap());
    }
    eventually(LIMIT, "four failed accepts logged", || {
        failures.seen().len() >= 4
    })
    .await;
    let seen = failures.seen();
    assert!(
        seen.iter()
            .all(|(_, e)| e.contains("Too many open files") || e.contains("os error 24")),
        "accept failures logged: {:?}",
        seen.iter().map(|(_, e)| e).collect::<Vec<_>>()
    );
    // Backing off: 5 + 10 + 20 ms at least between the first and the fourth
    // attempt (a busy retry loop would log thousands in that time).
    let spread = seen[3].0 - seen[0].0;
    assert!(
        spread >= Duration::from_millis(35),
        "four failed accepts within {spread:?}: no back-off"
    );
    assert_eq!(server.session_count(), 0);
    assert_eq!(log.count("open"), 1);

    // Descriptors come back: the server accepts the waiting connections and
    // a new one.
    drop(hogs);
    rlimit::setrlimit(rlimit::Resource::NOFILE, soft, hard).unwrap();
    for (i, c) in clients.iter_mut().enumerate() {
        let payload = format!("waited-{i}");
        write_frame(c, payload.as_bytes()).await;
        assert_eq!(read_frame(c).await, payload.as_bytes());
    }
    let mut fresh = TcpStream::connect(addr).await.unwrap();
    write_frame(&mut fresh, b"fresh").await;
    assert_eq!(read_frame(&mut fresh).await, b"fresh");
    assert_eq!(log.count("open"), 5);
    assert_eq!(server.session_count(), 4);

    drop(clients);
    drop(fresh);
    within(LIMIT, server.shutdown(Duration::from_secs(1))).await;
    assert_eq!(log.count("close"), 5);
}
