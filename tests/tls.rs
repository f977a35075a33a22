//! TLS over real sockets on 127.0.0.1: getty TLS servers and clients with
//! certificates made at test time (rcgen), mutual TLS, failed handshakes
//! (wrong CA, no client certificate, plain TCP, garbage, silence), custom
//! rustls configurations, configuration errors and graceful shutdown.

mod common;

use std::{
    io,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::Bytes;
use common::*;
use getty::{
    codec::LengthCodec,
    new_session_fn,
    tls::{
        rustls::{self, pki_types::PrivatePkcs8KeyDer, RootCertStore},
        ClientTlsConfig, ServerTlsConfig, TlsError,
    },
    Addr, BoxError, Client, ClientBuilder, EndpointKind, ListenerService, Server, ServerBuilder,
    ServerHandle, Session,
};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
    time::Instant,
};

const LIMIT: Duration = Duration::from_secs(5);

// ----- certificates and files ------------------------------------------------

/// A scratch directory under the system temp dir, unique to this process and
/// test, removed on drop (also when the test panics).
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "getty-tls-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }

    /// Writes `contents` to `name` in the directory and returns its path.
    fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).expect("write scratch file");
        path
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A certificate authority made for one test.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A certificate and its key.
struct Leaf {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("self-sign the CA");
        Ca { cert, key }
    }

    /// A leaf for `names` (DNS names or IP addresses) signed by this CA.
    fn issue(&self, names: &[&str], usage: ExtendedKeyUsagePurpose) -> Leaf {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("leaf params");
        params
            .distinguished_name
            .push(DnType::CommonName, names.first().copied().unwrap_or("leaf"));
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("leaf key");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("sign the leaf");
        Leaf { cert, key }
    }

    fn server_leaf(&self) -> Leaf {
        self.issue(&["localhost"], ExtendedKeyUsagePurpose::ServerAuth)
    }

    fn client_leaf(&self) -> Leaf {
        self.issue(&["client.test"], ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.cert.der().clone()).expect("add root");
        roots
    }

    fn write(&self, dir: &Scratch, name: &str) -> PathBuf {
        dir.write(name, self.cert.pem())
    }
}

impl Leaf {
    /// Writes `<name>.pem` and `<name>.key`; returns (cert, key).
    fn write(&self, dir: &Scratch, name: &str) -> (PathBuf, PathBuf) {
        (
            dir.write(&format!("{name}.pem"), self.cert.pem()),
            dir.write(&format!("{name}.key"), self.key.serialize_pem()),
        )
    }
}

/// The usual setup: a CA, a server certificate for "localhost" signed by it,
/// all written as PEM files.
struct Pki {
    dir: Scratch,
    ca: Ca,
    ca_pem: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
}

impl Pki {
    fn new() -> Self {
        let dir = Scratch::new();
        let ca = Ca::new("getty test CA");
        let ca_pem = ca.write(&dir, "ca.pem");
        let (server_cert, server_key) = ca.server_leaf().write(&dir, "server");
        Pki {
            dir,
            ca,
            ca_pem,
            server_cert,
            server_key,
        }
    }

    fn server_config(&self) -> ServerTlsConfig {
        ServerTlsConfig::from_pem_files(&self.server_cert, &self.server_key)
            .expect("server TLS config")
    }

    /// A client trusting this PKI's CA and verifying "localhost".
    fn client_config(&self) -> ClientTlsConfig {
        ClientTlsConfig::with_root_file(&self.ca_pem)
            .expect("roots")
            .server_name("localhost")
            .expect("server name")
    }
}

// ----- servers and clients ---------------------------------------------------

/// A length-prefixed echo server from `builder` on 127.0.0.1, recording.
async fn echo_server(builder: ServerBuilder) -> (ServerHandle, Log) {
    serve_recording(builder.bind("127.0.0.1:0").await.expect("bind"))
}

/// A getty client from `builder` to `addr`, recording into `log`.
async fn client(builder: ClientBuilder, addr: SocketAddr, log: &Log) -> Client {
    let log = log.clone();
    builder
        .connect(
            addr.to_string(),
            LengthCodec::new(),
            new_session_fn(move |_: &Session| {
                Ok::<_, BoxError>(ListenerService::new(ClientSide { log: log.clone() }))
            }),
        )
        .await
        .unwrap_or_else(|e| e.into_client().expect("a well-formed target"))
}

/// Connects a getty TLS client with `config`, checks one echo over it, and
/// closes it.
async fn check_echo(server: &ServerHandle, server_log: &Log, config: ClientTlsConfig, word: &str) {
    let log = Log::default();
    let c = client(Client::builder().tls(config), server.local_addr(), &log).await;
    eventually(LIMIT, "the client's session", || c.session_count() == 1).await;
    let session = c.sessions().sessions().pop().unwrap();
    assert_eq!(session.kind(), EndpointKind::TlsClient);
    session.send(Bytes::from(word.to_owned())).await.unwrap();
    let expected = format!("message:{word}");
    eventually(LIMIT, "the echo", || log.count(&expected) == 1).await;
    assert_eq!(server_log.count(&expected), 1);
    c.close();
    within(LIMIT, c.closed()).await;
}

/// Reads until the peer closes: Ok(bytes read before EOF), or the error that
/// ended reading (a reset). Bounded by `limit`.
async fn read_until_closed(s: &mut TcpStream, limit: Duration) -> (Vec<u8>, Option<io::Error>) {
    within(limit, async {
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            match s.read(&mut buf).await {
                Ok(0) => return (got, None),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => return (got, Some(e)),
            }
        }
    })
    .await
}

/// A TCP relay in front of a server that counts the connections it carried
/// and how many of them have ended (both directions closed).
struct Relay {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    ended: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Relay {
    async fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let ended = Arc::new(AtomicUsize::new(0));
        let (a, e) = (Arc::clone(&accepted), Arc::clone(&ended));
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                a.fetch_add(1, Ordering::SeqCst);
                let e = Arc::clone(&e);
                conns.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                    e.fetch_add(1, Ordering::SeqCst);
                });
                while conns.try_join_next().is_some() {}
            }
        });
        Relay {
            addr,
            accepted,
            ended,
            task,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn ended(&self) -> usize {
        self.ended.load(Ordering::SeqCst)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ----- 1. echo -----------------------------------------------------------------

#[tokio::test]
async fn tls_client_and_server_from_pem_files_echo_with_tls_kinds_and_byte_counts() {
    let pki = Pki::new();
    let (server, server_log) = echo_server(Server::builder().tls(pki.server_config())).await;
    assert!(matches!(server.addr(), Addr::Inet(a) if a.ip().is_loopback()));

    let log = Log::default();
    let c = client(
        Client::builder().tls(pki.client_config()),
        server.local_addr(),
        &log,
    )
    .await;
    eventually(LIMIT, "a session on each side", || {
        c.session_count() == 1 && server.session_count() == 1
    })
    .await;
    let mine = c.sessions().sessions().pop().unwrap();
    let theirs = server.sessions().sessions().pop().unwrap();
    assert_eq!(mine.kind(), EndpointKind::TlsClient);
    assert_eq!(theirs.kind(), EndpointKind::TlsServer);
    assert_eq!(mine.local_addr(), theirs.peer_addr());
    assert_eq!(mine.peer_addr(), &Addr::from(server.local_addr()));

    mine.send(Bytes::from_static(b"hello")).await.unwrap();
    mine.send(Bytes::from_static(b"world")).await.unwrap();
    eventually(LIMIT, "both echoes", || log.count("message:") == 2).await;
    assert_eq!(
        log.events(),
        ["open", "message:hello", "message:world"],
        "client events"
    );
    assert_eq!(
        server_log.events(),
        ["open", "message:hello", "message:world"],
        "server events"
    );

    // Counters see the plaintext stream: two 4-byte headers and 10 bytes.
    let wire = (frame(b"hello").len() + frame(b"world").len()) as u64;
    let s = theirs.stats();
    assert_eq!((s.packets_in, s.packets_out), (2, 2), "server {s}");
    assert_eq!((s.bytes_in, s.bytes_out), (wire, wire), "server {s}");
    let m = mine.stats();
    assert_eq!((m.packets_in, m.packets_out), (2, 2), "client {m}");
    assert_eq!((m.bytes_in, m.bytes_out), (wire, wire), "client {m}");

    c.close();
    within(LIMIT, c.closed()).await;
    eventually(LIMIT, "the server session closed", || {
        server.session_count() == 0
    })
    .await;
    assert_eq!(server_log.count("close"), 1);
    assert_eq!(log.count("close"), 1);
    assert_eq!(log.count("error:"), 0, "client: {:?}", log.events());
    within(LIMIT, server.shutdown(LIMIT)).await;
}

// ----- 2. mutual TLS -------------------------------------------------------------

#[tokio::test]
async fn mutual_tls_admits_a_client_with_a_cert_from_the_client_ca_and_refuses_one_without() {
    let pki = Pki::new();
    let client_ca = Ca::new("getty client CA");
    let client_ca_pem = client_ca.write(&pki.dir, "client-ca.pem");
    let (client_cert, client_key) = client_ca.client_leaf().write(&pki.dir, "client");
    let config =
        ServerTlsConfig::with_client_auth(&pki.server_cert, &pki.server_key, &client_ca_pem)
            .expect("mutual TLS config");
    let (server, server_log) = echo_server(Server::builder().tls(config)).await;

    // Without a certificate: the server refuses the handshake. Through a
    // relay, so the end of the refused connection can be awaited whatever
    // the client itself makes of it (over TLS 1.3 the client's handshake
    // completes before the server checks its certificate, so the client
    // opens a session that the server's "certificate required" alert then
    // ends; over TLS 1.2 its connect fails).
    let relay = Relay::start(server.local_addr()).await;
    let bad_log = Log::default();
    let bad = client(
        Client::builder()
            .tls(pki.client_config())
            .reconnect_interval(Duration::from_secs(10)),
        relay.addr,
        &bad_log,
    )
    .await;
    eventually(LIMIT, "the refused connection ended", || relay.ended() >= 1).await;
    assert_eq!(server.session_count(), 0);
    assert_eq!(server_log.count("open"), 0, "{:?}", server_log.events());
    // The client never exchanged a packet.
    assert_eq!(bad_log.count("message:"), 0);
    bad.close();
    within(LIMIT, bad.closed()).await;
    assert_eq!(bad.session_count(), 0);

    // With one: it works, and the server keeps serving.
    let good =
        ClientTlsConfig::with_roots_and_client_cert(pki.ca.roots(), &client_cert, &client_key)
            .expect("client config with cert")
            .server_name("localhost")
            .unwrap();
    check_echo(&server, &server_log, good, "mutual").await;
    assert_eq!(server_log.count("open"), 1);
    eventually(LIMIT, "the good session closed", || {
        server.session_count() == 0
    })
    .await;
    assert_eq!(server_log.count("close"), 1);
    within(LIMIT, server.shutdown(LIMIT)).await;
}

#[tokio::test]
async fn mutual_tls_refuses_a_client_cert_from_another_ca() {
    let pki = Pki::new();
    let client_ca = Ca::new("getty client CA");
    let client_ca_pem = client_ca.write(&pki.dir, "client-ca.pem");
    let rogue_ca = Ca::new("rogue CA");
    let (rogue_cert, rogue_key) = rogue_ca.client_leaf().write(&pki.dir, "rogue");
    let config =
        ServerTlsConfig::with_client_auth(&pki.server_cert, &pki.server_key, &client_ca_pem)
            .expect("mutual TLS config");
    let (server, server_log) = echo_server(Server::builder().tls(config)).await;

    let relay = Relay::start(server.local_addr()).await;
    let rogue =
        ClientTlsConfig::with_roots_and_client_cert(pki.ca.roots(), &rogue_cert, &rogue_key)
            .unwrap()
            .server_name("localhost")
            .unwrap();
    let log = Log::default();
    let c = client(
        Client::builder()
            .tls(rogue)
            .reconnect_interval(Duration::from_secs(10)),
        relay.addr,
        &log,
    )
    .await;
    eventually(LIMIT, "the refused connection ended", || relay.ended() >= 1).await;
    assert_eq!(server.session_count(), 0);
    assert_eq!(server_log.count("open"), 0, "{:?}", server_log.events());
    c.close();
    within(LIMIT, c.closed()).await;

    // A legitimate client still gets in.
    let (cert, key) = client_ca.client_leaf().write(&pki.dir, "client");
    let good = ClientTlsConfig::with_roots_and_client_cert(pki.ca.roots(), &cert, &key)
        .unwrap()
        .server_name("localhost")
        .unwrap();
    check_echo(&server, &server_log, good, "legit").await;
    within(LIMIT, server.shutdown(LIMIT)).await;
}

// ----- 3. wrong CA -------------------------------------------------------------------

#[tokio::test]
async fn a_client_trusting_the_wrong_ca_gets_no_session_retries_and_gives_up() {
    let pki = Pki::new();
    let (server, server_log) = echo_server(Server::builder().tls(pki.server_config())).await;
    let relay = Relay::start(server.local_addr()).await;

    let other = Ca::new("some other CA");
    let other_pem = other.write(&pki.dir, "other-ca.pem");
    let log = Log::default();
    let c = client(
        Client::builder()
            .tls(
                ClientTlsConfig::with_root_file(&other_pem)
                    .unwrap()
                    .server_name("localhost")
                    .unwrap(),
            )
            .reconnect_interval(Duration::from_millis(50))
            .max_reconnect_attempts(Some(2)),
        relay.addr,
        &log,
    )
    .await;
    // Two failed attempts, then the slot gives up.
    within(LIMIT, c.closed()).await;
    assert!(c.is_closed());
    assert_eq!(relay.accepted(), 2, "connection attempts");
    assert_eq!(c.session_count(), 0);
    assert!(log.events().is_empty(), "client events: {:?}", log.events());

    // Both refused handshakes end on the server without a session.
    eventually(LIMIT, "both connections ended", || relay.ended() == 2).await;
    assert_eq!(server.session_count(), 0);
    assert_eq!(server_log.count("open"), 0, "{:?}", server_log.events());

    // And the server is fine.
    check_echo(&server, &server_log, pki.client_config(), "after").await;
    assert_eq!(server_log.count("open"), 1);
    within(LIMIT, server.shutdown(LIMIT)).await;
}

#[tokio::test]
async fn a_client_verifying_the_wrong_server_name_gets_no_session() {
    let pki = Pki::new();
    let (server, server_log) = echo_server(Server::builder().tls(pki.server_config())).await;
    let log = Log::default();
    let c = client(
        Client::builder()
            .tls(
                ClientTlsConfig::with_root_file(&pki.ca_pem)
                    .unwrap()
                    .server_name("elsewhere.test")
                    .unwrap(),
            )
            .max_reconnect_attempts(Some(1)),
        server.local_addr(),
        &log,
    )
    .await;
    within(LIMIT, c.closed()).await;
    assert_eq!(c.session_count(), 0);
    assert!(log.events().is_empty(), "client events: {:?}", log.events());
    check_echo(&server, &server_log, pki.client_config(), "named").await;
    assert_eq!(server_log.count("open"), 1);
    within(LIMIT, server.shutdown(LIMIT)).await;
}

/// Over TLS 1.3 a client's handshake completes before the server checks its
/// certificate: the server's refusal arrives as an alert on the first read.
/// That attempt failed (the session never really started), so a client
/// allowed one attempt gives up instead of reconnecting forever.
#[tokio::test]
async fn a_handshake_refused_after_the_client_finished_counts_as_a_failed_attempt() {
    let pki = Pki::new();
    let client_ca = Ca::new("getty client CA");
    let client_ca_pem = client_ca.write(&pki.dir, "client-ca.pem");
    let config =
        ServerTlsConfig::with_client_auth(&pki.server_cert, &pki.server_key, &client_ca_pem)
            .expect("mutual TLS config");
    let (server, server_log) = echo_server(Server::builder().tls(config)).await;
    let relay = Relay::start(server.local_addr()).await;
    let log = Log::default();
    // No client certificate.
    let c = client(
        Client::builder()
            .tls(pki.client_config())
            .reconnect_interval(Duration::from_millis(20))
            .max_reconnect_attempts(Some(1)),
        relay.addr,
        &log,
    )
    .await;
    let gave_up = tokio::time::timeout(Duration::from_secs(2), c.closed()).await;
    let attempts = relay.accepted();
    c.close();
    within(LIMIT, c.closed()).await;
    assert!(
        gave_up.is_ok(),
        "still reconnecting after 2 s: {attempts} attempts"
    );
    assert_eq!(attempts, 1, "connection attempts");
    assert_eq!(log.count("message:"), 0);
    assert_eq!(server_log.count("open"), 0);
    within(LIMIT, server.shutdown(LIMIT)).await;
}

// ----- 4. plain TCP and garbage on the TLS port ----------------------------------

/// Asserts the server closed `s` without answering anything but (possibly) a
/// TLS alert record.
async fn expect_refused(s: &mut TcpStream) {
    let (got, error) = read_until_closed(s, LIMIT).await;
    if let Some(e) = &error {
        assert!(
            matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
            ),
            "unexpected error {e}"
        );
    }
    // 0x15: a TLS alert record; anything else would be an answer.
    assert!(
        got.is_empty() || got[0] == 0x15,
        "the server answered {got:?}"
    );
}

#[tokio::test]
async fn plain_tcp_and_garbage_on_the_tls_port_are_closed_without_a_session() {
    let pki = Pki::new();
    let (server, server_log) = echo_server(Server::builder().tls(pki.server_config())).await;

    // A plain getty-framed packet.
    let mut plain = TcpStream::connect(server.local_addr()).await.unwrap();
    plain.write_all(&frame(b"hello")).await.unwrap();
    expect_refused(&mut plain).await;

    // Garbage.
    let mut garbage = TcpStream::connect(server.local_addr()).await.unwrap();
    let mut x: u32 = 0x1234_5678;
    let noise: Vec<u8> = (0..512)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 24) as u8 | 0x80
        })
        .collect();
    garbage.write_all(&noise).await.unwrap();
    expect_refused(&mut garbage).await;

    // An HTTP request, for good measure.
    let mut http = TcpStream::connect(server.local_addr()).await.unwrap();
    http.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    expect_refused(&mut http).await;

    assert_eq!(server.session_count(), 0);
    assert_eq!(server_log.count("open"), 0, "{:?}", server_log.events());

    check_echo(&server, &server_log, pki.client_config(), "real").await;
    assert_eq!(server_log.count("open"), 1);
    within(LIMIT, server.shutdown(LIMIT)).await;
}

// ----- 5. handshake timeout ----------------------------------------------------------

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_handshake_timeout_without_a_session() {
    let pki = Pki::new();
    let timeout = Duration::from_millis(200);
    let (server, server_log) = echo_server(
        Server::builder()
            .tls(pki.server_config())
            .handshake_timeout(timeout),
    )
    .await;

    let start = Instant::now();
    let mut silent = TcpStream::connect(server.local_addr()).await.unwrap();
    let mut buf = [0u8; 16];
    let read = within(Duration::from_secs(2), silent.read(&mut buf)).await;
    let waited = start.elapsed();
    match read {
        Ok(0) => {}
        Ok(n) => panic!("expected EOF, got {:?}", &buf[..n]),
        Err(e) => panic!("expected EOF, got error {e}"),
    }
    assert!(
        waited >= timeout - Duration::from_millis(20),
        "closed after {waited:?}, before the handshake timeout"
    );
    assert_eq!(server.session_count(), 0);
    assert_eq!(server_log.count("open"), 0, "{:?}", server_log.events());

    // A real client shakes hands well within the timeout.
    check_echo(&server, &server_log, pki.client_config(), "quick").await;
    within(LIMIT, server.shutdown(LIMIT)).await;
}

#[tokio::test]
async fn a_stalled_handshake_does_not_hold_up_other_connections() {
    let pki = Pki::new();
    let (server, server_log) = echo_server(Server::builder().tls(pki.server_config())).await;
    // Half a ClientHello record header, then nothing (default timeout 10 s).
    let mut stalled = TcpStream::connect(server.local_addr()).await.unwrap();
    stalled.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    check_echo(&server, &server_log, pki.client_config(), "meanwhile").await;
    // Shutdown does not wait for the stalled handshake.
    within(LIMIT, server.shutdown(LIMIT)).await;
    let (_, error) = read_until_closed(&mut stalled, LIMIT).await;
    assert!(
        error.is_none_or(|e| e.kind() == io::ErrorKind::ConnectionReset),
        "stalled connection not closed cleanly"
    );
    assert_eq!(server_log.count("open"), 1);
}

// ----- 6. own rustls configuration ---------------------------------------------------

#[tokio::test]
async fn a_server_from_an_own_rustls_config_on_getty_provider_works() {
    // A self-signed certificate, for the name and the IP the client uses.
    let rcgen::CertifiedKey { cert, key_pair } =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("self-signed cert");
    let server_config = rustls::ServerConfig::builder_with_provider(getty::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivatePkcs8KeyDer::from(key_pair.serialize_der()).into(),
        )
        .expect("rustls server config");
    let (server, server_log) =
        echo_server(Server::builder().tls(ServerTlsConfig::from_rustls(Arc::new(server_config))))
            .await;

    // A client from its own rustls configuration too, without a server
    // name: the address's host, 127.0.0.1, is verified.
    let mut roots = RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    let client_config = rustls::ClientConfig::builder_with_provider(getty::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
    check_echo(
        &server,
        &server_log,
        ClientTlsConfig::from_rustls(Arc::new(client_config)),
        "own",
    )
    .await;

    // And with getty's own client configuration from the same roots.
    check_echo(
        &server,
        &server_log,
        ClientTlsConfig::with_roots(roots)
            .server_name("localhost")
            .unwrap(),
        "roots",
    )
    .await;
    assert_eq!(server_log.count("open"), 2);
    within(LIMIT, server.shutdown(LIMIT)).await;
}

#[tokio::test]
async fn without_a_server_name_the_address_host_is_verified() {
    // The certificate names "localhost" only; the client connects to
    // 127.0.0.1 and sets no name, so verification must fail.
    let pki = Pki::new();
    let (server, server_log) = echo_server(Server::builder().tls(pki.server_config())).await;
    let log = Log::default();
    let c = client(
        Client::builder()
            .tls(ClientTlsConfig::with_root_file(&pki.ca_pem).unwrap())
            .max_reconnect_attempts(Some(1)),
        server.local_addr(),
        &log,
    )
    .await;
    within(LIMIT, c.closed()).await;
    assert!(log.events().is_empty(), "client events: {:?}", log.events());

    assert_eq!(server.session_count(), 0);
    // 127.0.0.1 as the name works once the certificate holds it: see
    // a_server_from_an_own_rustls_config_on_getty_provider_works.
    check_echo(&server, &server_log, pki.client_config(), "named").await;
    assert_eq!(server_log.count("open"), 1);
    within(LIMIT, server.shutdown(LIMIT)).await;
}

// ----- 7. configuration errors ---------------------------------------------------------

#[test]
fn a_missing_pem_file_is_a_pem_error_naming_the_path() {
    let pki = Pki::new();
    let missing = pki.dir.path("missing.pem");

    let err = ServerTlsConfig::from_pem_files(&missing, &pki.server_key).unwrap_err();
    match &err {
        TlsError::Pem { path, .. } => assert_eq!(path, &missing),
        other => panic!("expected TlsError::Pem, got {other:?}"),
    }
    assert!(
        err.to_string().contains(&*missing.to_string_lossy()),
        "{err}"
    );
    assert!(std::error::Error::source(&err).is_some());

    // A missing key file names the key file.
    let err = ServerTlsConfig::from_pem_files(&pki.server_cert, &missing).unwrap_err();
    assert!(
        matches!(&err, TlsError::Pem { path, .. } if path == &missing),
        "{err:?}"
    );

    // The same for mutual TLS's client roots and a client's roots.
    let err =
        ServerTlsConfig::with_client_auth(&pki.server_cert, &pki.server_key, &missing).unwrap_err();
    assert!(
        matches!(&err, TlsError::Pem { path, .. } if path == &missing),
        "{err:?}"
    );
    let err = ClientTlsConfig::with_root_file(&missing).unwrap_err();
    assert!(
        matches!(&err, TlsError::Pem { path, .. } if path == &missing),
        "{err:?}"
    );
    let err = ClientTlsConfig::with_roots_and_client_cert(pki.ca.roots(), &missing, &missing)
        .unwrap_err();
    assert!(
        matches!(&err, TlsError::Pem { path, .. } if path == &missing),
        "{err:?}"
    );
}

#[test]
fn pem_files_without_the_expected_items_are_refused() {
    let pki = Pki::new();
    // A key where the certificate chain belongs: no certificate in it.
    let err = ServerTlsConfig::from_pem_files(&pki.server_key, &pki.server_key).unwrap_err();
    assert!(
        matches!(&err, TlsError::NoCertificates { path } if path == &pki.server_key),
        "{err:?}"
    );
    assert!(err.to_string().contains(&*pki.server_key.to_string_lossy()));
    // A certificate where the key belongs: no key in it.
    let err = ServerTlsConfig::from_pem_files(&pki.server_cert, &pki.server_cert).unwrap_err();
    assert!(
        matches!(&err, TlsError::Pem { path, .. } if path == &pki.server_cert),
        "{err:?}"
    );
    // Not PEM at all.
    let junk = pki.dir.write("junk.pem", b"this is not PEM\n");
    let err = ClientTlsConfig::with_root_file(&junk).unwrap_err();
    assert!(
        matches!(
            &err,
            TlsError::NoCertificates { path } | TlsError::Pem { path, .. } if path == &junk
        ),
        "{err:?}"
    );
}

#[test]
fn a_key_that_does_not_match_the_certificate_is_a_rustls_error() {
    let pki = Pki::new();
    let (_, other_key) = pki.ca.server_leaf().write(&pki.dir, "other");

    let err = ServerTlsConfig::from_pem_files(&pki.server_cert, &other_key).unwrap_err();
    assert!(matches!(err, TlsError::Rustls(_)), "{err:?}");
    assert!(std::error::Error::source(&err).is_some());

    let err =
        ServerTlsConfig::with_client_auth(&pki.server_cert, &other_key, &pki.ca_pem).unwrap_err();
    assert!(matches!(err, TlsError::Rustls(_)), "{err:?}");

    let (client_cert, _) = pki.ca.client_leaf().write(&pki.dir, "client");
    let err = ClientTlsConfig::with_roots_and_client_cert(pki.ca.roots(), &client_cert, &other_key)
        .unwrap_err();
    assert!(matches!(err, TlsError::Rustls(_)), "{err:?}");
}

#[test]
fn an_invalid_server_name_is_refused() {
    let pki = Pki::new();
    let err = ClientTlsConfig::with_root_file(&pki.ca_pem)
        .unwrap()
        .server_name("not a name!")
        .unwrap_err();
    match &err {
        TlsError::InvalidServerName(name) => assert_eq!(name, "not a name!"),
        other => panic!("expected InvalidServerName, got {other:?}"),
    }
    assert!(err.to_string().contains("not a name!"), "{err}");

    // DNS names and IP addresses are fine.
    for ok in ["localhost", "example.com", "127.0.0.1", "::1"] {
        assert!(
            ClientTlsConfig::with_roots(pki.ca.roots())
                .server_name(ok)
                .is_ok(),
            "{ok}"
        );
    }
}

#[test]
fn tls_configs_are_debug_and_clone_without_secrets() {
    let pki = Pki::new();
    let server = pki.server_config();
    let _ = server.clone();
    assert!(format!("{server:?}").starts_with("ServerTlsConfig"));
    let client = pki.client_config();
    let shown = format!("{:?}", client.clone());
    assert!(shown.contains("localhost"), "{shown}");
    let key = std::fs::read_to_string(&pki.server_key).unwrap();
    assert!(!format!("{server:?}{shown}").contains(key.lines().nth(1).unwrap()));
}

// ----- 8. graceful shutdown ---------------------------------------------------------------

#[tokio::test]
async fn graceful_shutdown_of_a_tls_server_closes_sessions_cleanly() {
    let pki = Pki::new();
    let (server, server_log) = echo_server(Server::builder().tls(pki.server_config())).await;
    let log = Log::default();
    let c = client(
        Client::builder()
            .tls(pki.client_config())
            .reconnect_interval(Duration::from_millis(50))
            .max_reconnect_attempts(Some(1)),
        server.local_addr(),
        &log,
    )
    .await;
    eventually(LIMIT, "the session", || {
        c.session_count() == 1 && server.session_count() == 1
    })
    .await;
    let s = c.sessions().sessions().pop().unwrap();
    s.send(Bytes::from_static(b"bye")).await.unwrap();
    eventually(LIMIT, "the echo", || log.count("message:bye") == 1).await;

    within(Duration::from_secs(10), server.shutdown(LIMIT)).await;
    assert_eq!(server.session_count(), 0);
    assert_eq!(server_log.count("close"), 1, "{:?}", server_log.events());
    assert_eq!(server_log.count("error:"), 0, "{:?}", server_log.events());

    // The client saw a clean end of stream (close_notify, then EOF): a
    // close and no error.
    eventually(LIMIT, "the client session closed", || {
        log.count("close") == 1
    })
    .await;
    assert_eq!(log.count("error:"), 0, "client: {:?}", log.events());
    // Reconnecting fails (nothing listens), and the slot gives up.
    within(LIMIT, c.closed()).await;
    assert_eq!(log.count("close"), 1);
    assert_eq!(server_log.count("close"), 1);
}

#[tokio::test]
async fn graceful_shutdown_sends_close_notify_to_a_raw_rustls_peer() {
    // A rustls client of our own over a plain socket, to see exactly what
    // the server sends when it shuts down: a close_notify, then EOF.
    let pki = Pki::new();
    let (server, server_log) = echo_server(Server::builder().tls(pki.server_config())).await;
    let addr = server.local_addr();
    let roots = pki.ca.roots();

    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let peer = tokio::task::spawn_blocking(move || -> Result<(Vec<u8>, bool), String> {
        use std::io::{Read, Write};
        let config = rustls::ClientConfig::builder_with_provider(getty::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let tcp = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(LIMIT)).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        tls.write_all(&frame(b"raw")).map_err(|e| e.to_string())?;
        let mut echoed = vec![0u8; frame(b"raw").len()];
        tls.read_exact(&mut echoed).map_err(|e| e.to_string())?;
        let _ = ready_tx.send(());
        go_rx.recv_timeout(LIMIT).map_err(|e| e.to_string())?;
        // Now the server is shutting down: the next read is a clean EOF.
        let mut rest = Vec::new();
        let clean = match tls.read_to_end(&mut rest) {
            Ok(_) => true,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => false,
            Err(e) => return Err(format!("read after shutdown: {e}")),
        };
        Ok((echoed, clean))
    });
    if within(LIMIT, ready_rx).await.is_err() {
        panic!("the raw peer failed: {:?}", peer.await);
    }
    assert_eq!(server.session_count(), 1);
    let shutdown = {
        let server = server.clone();
        tokio::spawn(async move { server.shutdown(LIMIT).await })
    };
    go_tx.send(()).unwrap();
    let (echoed, clean) = within(Duration::from_secs(10), peer)
        .await
        .unwrap()
        .expect("raw rustls peer");
    assert_eq!(echoed, frame(b"raw"));
    assert!(clean, "EOF without close_notify");
    within(Duration::from_secs(10), shutdown).await.unwrap();
    assert_eq!(server_log.events(), ["open", "message:raw", "close"]);
}

/// The scratch directory is really removed.
#[test]
fn scratch_directories_are_cleaned_up() {
    let dir;
    {
        let pki = Pki::new();
        dir = pki.dir.0.clone();
        assert!(Path::new(&dir).join("ca.pem").exists());
    }
    assert!(!dir.exists());
}
