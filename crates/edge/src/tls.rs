//! TLS client settings (rustls with the ring provider only, so no C build and no
//! ambiguity about the crypto provider): trust exactly the authorities in a PEM file, or
//! the system's trust store, optionally authenticate with a client certificate.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

/// A client configuration trusting the CAs in `ca_file` (the system's trust store when
/// `None`), with an optional client certificate chain and key. Errors name the file and
/// what is wrong with it.
pub fn client_config(
    ca_file: Option<&Path>,
    client: Option<(&Path, &Path)>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(ca_file) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca_file)
                .and_then(|i| i.collect::<Result<_, _>>())
                .map_err(|e| format!("{}: cannot read CA certificates: {e}", ca_file.display()))?;
            if certs.is_empty() {
                return Err(format!("{}: no PEM certificate in the file", ca_file.display()));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| format!("{}: not a usable CA certificate: {e}", ca_file.display()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err("the system trust store has no usable certificate; give a CA file".to_owned());
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((cert_file, key_file)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
                .and_then(|i| i.collect::<Result<_, _>>())
                .map_err(|e| format!("{}: cannot read the client certificate: {e}", cert_file.display()))?;
            let key = PrivateKeyDer::from_pem_file(key_file)
                .map_err(|e| format!("{}: cannot read the client key: {e}", key_file.display()))?;
            builder.with_client_auth_cert(chain, key).map_err(|e| format!("client certificate: {e}"))?
        }
    };
    Ok(Arc::new(config))
}
