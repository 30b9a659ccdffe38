//! TLS configuration: certificate and key from PEM files, optional client certificates (mTLS).
//!
//! rustls with the ring provider is the only TLS stack. Only TLS 1.2 and 1.3 with rustls's safe
//! default cipher suites are offered; ALPN offers HTTP/2 and HTTP/1.1.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Where the listener's TLS material lives.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// CA bundle that client certificates must chain to. When set, clients may present a
    /// certificate and an invalid one is refused.
    pub client_ca_file: Option<PathBuf>,
    /// Refuse clients that present no certificate (needs `client_ca_file`).
    pub require_client_cert: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} from {path}: {message}")]
    Read {
        what: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("{0}")]
    Invalid(String),
}

fn read_certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let read_error = |message: String| TlsError::Read {
        what,
        path: path.to_owned(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|error| read_error(error.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| read_error(error.to_string()))?;
    if certs.is_empty() {
        return Err(read_error("no PEM certificate found".into()));
    }
    Ok(certs)
}

/// Builds the rustls server configuration from the files.
pub fn server_tls_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs = read_certs(&files.cert_file, "TLS certificate")?;
    let key = PrivateKeyDer::from_pem_file(&files.key_file).map_err(|error| TlsError::Read {
        what: "TLS private key",
        path: files.key_file.clone(),
        message: error.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|error| TlsError::Invalid(error.to_string()))?;
    let builder = match &files.client_ca_file {
        Some(ca_file) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs(ca_file, "client CA bundle")? {
                roots
                    .add(cert)
                    .map_err(|error| TlsError::Invalid(format!("client CA bundle: {error}")))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if files.require_client_cert {
                verifier.build()
            } else {
                verifier.allow_unauthenticated().build()
            }
            .map_err(|error| TlsError::Invalid(format!("client verifier: {error}")))?;
            builder.with_client_cert_verifier(verifier)
        }
        None if files.require_client_cert => {
            return Err(TlsError::Invalid(
                "requiring client certificates needs a client CA file".into(),
            ));
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|error| TlsError::Invalid(format!("certificate and key: {error}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
