//! TLS client settings (rustls with the ring provider only, so no C build and no
//! ambiguity about the crypto provider): trust exactly the authorities in a PEM file, or
//! the system's trust store, optionally authenticate with a client certificate.

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why TLS settings could not be made; names the file and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{}: cannot read CA certificates: {error}", path.display())]
    ReadCa { path: PathBuf, error: pem::Error },
    #[error("{}: no PEM certificate in the file", path.display())]
    NoCa { path: PathBuf },
    #[error("{}: not a usable CA certificate: {error}", path.display())]
    BadCa { path: PathBuf, error: rustls::Error },
    #[error("the system trust store has no usable certificate; give a CA file")]
    NoSystemRoots,
    #[error("{0}")]
    Protocols(rustls::Error),
    #[error("{}: cannot read the client certificate: {error}", path.display())]
    ReadClientCert { path: PathBuf, error: pem::Error },
    #[error("{}: cannot read the client key: {error}", path.display())]
    ReadClientKey { path: PathBuf, error: pem::Error },
    #[error("client certificate: {0}")]
    ClientCert(rustls::Error),
}

/// A client configuration trusting the CAs in `ca_file` (the system's trust store when
/// `None`), with an optional client certificate chain and key. Errors name the file and
/// what is wrong with it.
pub fn client_config(
    ca_file: Option<&Path>,
    client: Option<(&Path, &Path)>,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(ca_file) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca_file)
                .and_then(|i| i.collect::<Result<_, _>>())
                .map_err(|error| TlsError::ReadCa { path: ca_file.to_owned(), error })?;
            if certs.is_empty() {
                return Err(TlsError::NoCa { path: ca_file.to_owned() });
            }
            for cert in certs {
                roots.add(cert).map_err(|error| TlsError::BadCa { path: ca_file.to_owned(), error })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(TlsError::NoSystemRoots);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Protocols)?
        .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((cert_file, key_file)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
                .and_then(|i| i.collect::<Result<_, _>>())
                .map_err(|error| TlsError::ReadClientCert { path: cert_file.to_owned(), error })?;
            let key = PrivateKeyDer::from_pem_file(key_file)
                .map_err(|error| TlsError::ReadClientKey { path: key_file.to_owned(), error })?;
            builder.with_client_auth_cert(chain, key).map_err(TlsError::ClientCert)?
        }
    };
    Ok(Arc::new(config))
}
