//! TLS material made in memory at start (rcgen, the ring provider) and
//! handed to the children as PEM in their environment: a CA, and a
//! `localhost` leaf signed by it (webpki refuses a CA certificate as the
//! end entity).

use std::sync::Arc;

use getty::tls::{
    provider,
    rustls::{
        pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName},
        ClientConfig, RootCertStore, ServerConfig,
    },
};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use tokio_rustls::TlsConnector;

/// The environment variables that carry the material to the children.
pub(crate) const CA_ENV: &str = "ECHO_BENCH_TLS_CA";
pub(crate) const CERT_ENV: &str = "ECHO_BENCH_TLS_CERT";
pub(crate) const KEY_ENV: &str = "ECHO_BENCH_TLS_KEY";

/// The name in the server certificate, which the client verifies.
const SERVER_NAME: &str = "localhost";

/// PEM texts: the CA the client trusts, the server's leaf and key.
pub(crate) struct Material {
    pub(crate) ca: String,
    pub(crate) cert: String,
    pub(crate) key: String,
}

pub(crate) fn generate() -> Result<Material, String> {
    let rc = |what: &'static str| move |e: rcgen::Error| format!("rcgen, {what}: {e}");
    let ca_key = KeyPair::generate().map_err(rc("CA key"))?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(rc("CA"))?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "getty echo bench CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca_params.self_signed(&ca_key).map_err(rc("CA"))?;

    let leaf_key = KeyPair::generate().map_err(rc("leaf key"))?;
    let mut leaf_params =
        CertificateParams::new(vec![SERVER_NAME.to_owned()]).map_err(rc("leaf"))?;
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, SERVER_NAME);
    leaf_params.is_ca = IsCa::ExplicitNoCa;
    leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf = leaf_params
        .signed_by(&leaf_key, &ca, &ca_key)
        .map_err(rc("leaf"))?;
    Ok(Material {
        ca: ca.pem(),
        cert: leaf.pem(),
        key: leaf_key.serialize_pem(),
    })
}

/// The configuration both TLS servers share, from the PEM in a server
/// child's environment.
pub(crate) fn server_config(cert: &str, key: &str) -> Result<Arc<ServerConfig>, String> {
    let cert = CertificateDer::from_pem_slice(cert.as_bytes())
        .map_err(|e| format!("TLS certificate: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|e| format!("TLS key: {e}"))?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(vec![cert], key))
        .map_err(|e| format!("TLS server configuration: {e}"))?;
    Ok(Arc::new(config))
}

/// The load generator's client, trusting the CA.
pub(crate) fn connector(ca: &str) -> Result<(TlsConnector, ServerName<'static>), String> {
    let ca = CertificateDer::from_pem_slice(ca.as_bytes()).map_err(|e| format!("TLS CA: {e}"))?;
    let mut roots = RootCertStore::empty();
    roots.add(ca).map_err(|e| format!("TLS root: {e}"))?;
    let client = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS client configuration: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(SERVER_NAME)
        .map_err(|e| format!("TLS server name: {e}"))?
        .to_owned();
    Ok((TlsConnector::from(Arc::new(client)), name))
}
