//! A self-signed TLS pair for the tests that run a TLS server. Included
//! with `#[path]` (not part of `common`, which the layers crate's tests
//! share without `rcgen`).

use std::sync::Arc;

use getty::tls::{rustls, ClientTlsConfig, ServerTlsConfig};

/// A self-signed certificate for `names` as a server's TLS settings, and a
/// client's that trusts it (and nothing else).
pub fn self_signed_tls(names: &[&str]) -> (ServerTlsConfig, ClientTlsConfig) {
    let names = names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
    let rcgen::CertifiedKey { cert, key_pair } =
        rcgen::generate_simple_self_signed(names).expect("self-signed certificate");
    let server = rustls::ServerConfig::builder_with_provider(getty::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivatePkcs8KeyDer::from(key_pair.serialize_der()).into(),
        )
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    (
        ServerTlsConfig::from_rustls(Arc::new(server)),
        ClientTlsConfig::with_roots(roots),
    )
}
