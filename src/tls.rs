//! TLS over TCP with rustls, always on the `ring` provider (never the
//! process-wide default, so linking another provider changes nothing here).
//!
//! A server takes a [`ServerTlsConfig`] (from PEM files, optionally
//! verifying client certificates, or from your own `rustls::ServerConfig`,
//! getty's `TlsConfigBuilder`); a client takes a [`ClientTlsConfig`] with the
//! roots it trusts. There is no "skip verification" switch: a test trusts
//! its own CA instead.
//!
//! ```no_run
//! use getty::tls::{ClientTlsConfig, ServerTlsConfig};
//!
//! # fn demo() -> Result<(), getty::tls::TlsError> {
//! let server = ServerTlsConfig::from_pem_files("server.pem", "server.key")?;
//! let client = ClientTlsConfig::with_root_file("ca.pem")?.server_name("example.com")?;
//! # Ok(()) }
//! ```

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
};

use rustls_pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName};
pub use tokio_rustls::rustls;
use tokio_rustls::{
    rustls::{
        crypto::{ring, CryptoProvider},
        server::WebPkiClientVerifier,
        ClientConfig, RootCertStore, ServerConfig,
    },
    TlsAcceptor, TlsConnector,
};

use crate::BoxError;

/// Why a TLS configuration could not be made.
///
/// ```
/// use getty::tls::ServerTlsConfig;
///
/// let err = ServerTlsConfig::from_pem_files("/nonexistent/cert.pem", "/nonexistent/key.pem").unwrap_err();
/// assert!(err.to_string().contains("/nonexistent/cert.pem"));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    Pem {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: rustls_pki_types::pem::Error,
    },
    /// A PEM file holds no certificate.
    NoCertificates {
        /// The file.
        path: PathBuf,
    },
    /// rustls refused the configuration (a key that does not match the
    /// certificate, an unusable root, ...).
    Rustls(rustls::Error),
    /// A client-certificate verifier could not be built from the roots.
    Verifier(BoxError),
    /// The name to verify the server against is not a valid DNS name or IP.
    InvalidServerName(String),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Pem { path, source } => {
                write!(f, "cannot read PEM file {}: {source}", path.display())
            }
            TlsError::NoCertificates { path } => write!(f, "no certificate in {}", path.display()),
            TlsError::Rustls(e) => write!(f, "TLS configuration refused: {e}"),
            TlsError::Verifier(e) => write!(f, "cannot verify client certificates: {e}"),
            TlsError::InvalidServerName(name) => write!(f, "invalid TLS server name {name:?}"),
        }
    }
}

impl std::error::Error for TlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TlsError::Pem { source, .. } => Some(source),
            TlsError::Rustls(e) => Some(e),
            TlsError::Verifier(e) => Some(&**e),
            _ => None,
        }
    }
}

impl From<rustls::Error> for TlsError {
    fn from(e: rustls::Error) -> Self {
        TlsError::Rustls(e)
    }
}

/// The `ring` crypto provider every configuration here is built with; use it
/// with `ServerConfig::builder_with_provider` for a configuration of your own.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Pem {
            path: path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificates {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|source| TlsError::Pem {
        path: path.to_owned(),
        source,
    })
}

fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certs(path)? {
        roots.add(cert)?;
    }
    Ok(roots)
}

/// A TLS server's configuration (getty's `WithServerTlsConfigBuilder`).
#[derive(Clone)]
pub struct ServerTlsConfig {
    pub(crate) acceptor: TlsAcceptor,
}

impl fmt::Debug for ServerTlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTlsConfig").finish_non_exhaustive()
    }
}

impl ServerTlsConfig {
    /// A certificate chain and its private key, from PEM files; clients are
    /// not asked for certificates.
    ///
    /// # Errors
    /// When a file cannot be read, holds nothing usable, or the key does not
    /// fit the certificate.
    pub fn from_pem_files(
        cert_chain: impl AsRef<Path>,
        key_file: impl AsRef<Path>,
    ) -> Result<Self, TlsError> {
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs(cert_chain.as_ref())?, key(key_file.as_ref())?)?;
        Ok(Self::from_rustls(Arc::new(config)))
    }

    /// Like [`from_pem_files`](Self::from_pem_files), and every client must
    /// present a certificate signed by a root in `client_roots` (mutual TLS).
    ///
    /// # Errors
    /// As `from_pem_files`, and when the roots cannot make a verifier.
    pub fn with_client_auth(
        cert_chain: impl AsRef<Path>,
        key_file: impl AsRef<Path>,
        client_roots: impl AsRef<Path>,
    ) -> Result<Self, TlsError> {
        let verifier = WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots(client_roots.as_ref())?),
            provider(),
        )
        .build()
        .map_err(|e| TlsError::Verifier(Box::new(e)))?;
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs(cert_chain.as_ref())?, key(key_file.as_ref())?)?;
        Ok(Self::from_rustls(Arc::new(config)))
    }

    /// Your own rustls configuration (build it with [`provider`]).
    pub fn from_rustls(config: Arc<ServerConfig>) -> Self {
        ServerTlsConfig {
            acceptor: TlsAcceptor::from(config),
        }
    }
}

/// A TLS client's configuration: the roots it trusts and the name it
/// verifies the server against.
#[derive(Clone)]
pub struct ClientTlsConfig {
    pub(crate) connector: TlsConnector,
    pub(crate) server_name: Option<ServerName<'static>>,
}

impl fmt::Debug for ClientTlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTlsConfig")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl ClientTlsConfig {
    /// Trusts the certificates in a PEM file (getty's
    /// `WithRootCertificateFile`).
    ///
    /// # Errors
    /// When the file cannot be read or holds no usable certificate.
    pub fn with_root_file(path: impl AsRef<Path>) -> Result<Self, TlsError> {
        Ok(Self::with_roots(roots(path.as_ref())?))
    }

    /// Trusts the given roots.
    pub fn with_roots(roots: RootCertStore) -> Self {
        // Without a client certificate the only fallible step is the protocol
        // versions, which the ring provider always supports.
        Self::build(roots, None).expect("the ring provider supports TLS 1.2 and 1.3")
    }

    /// Presents a client certificate (for servers that ask, mutual TLS).
    ///
    /// # Errors
    /// When the files cannot be read or the key does not fit.
    pub fn with_roots_and_client_cert(
        roots: RootCertStore,
        cert_chain: impl AsRef<Path>,
        key_file: impl AsRef<Path>,
    ) -> Result<Self, TlsError> {
        Self::build(
            roots,
            Some((certs(cert_chain.as_ref())?, key(key_file.as_ref())?)),
        )
    }

    fn build(
        roots: RootCertStore,
        client_cert: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    ) -> Result<Self, TlsError> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let config = match client_cert {
            None => builder.with_no_client_auth(),
            Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
        };
        Ok(Self::from_rustls(Arc::new(config)))
    }

    /// Your own rustls configuration (build it with [`provider`]).
    pub fn from_rustls(config: Arc<ClientConfig>) -> Self {
        ClientTlsConfig {
            connector: TlsConnector::from(config),
            server_name: None,
        }
    }

    /// The name to verify the server's certificate against. Without one,
    /// the host of the address connected to is used.
    ///
    /// # Errors
    /// When `name` is neither a DNS name nor an IP address.
    pub fn server_name(mut self, name: &str) -> Result<Self, TlsError> {
        self.server_name = Some(parse_server_name(name)?);
        Ok(self)
    }
}

pub(crate) fn parse_server_name(name: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(name.to_owned()).map_err(|_| TlsError::InvalidServerName(name.to_owned()))
}
