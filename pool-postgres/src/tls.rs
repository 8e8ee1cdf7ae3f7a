//! A rustls client configuration from settings: the certificates of a PEM file as the roots.

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::ConfigError;

/// A client configuration trusting the certificates in the PEM file at `path`, with the
/// process's default crypto provider.
pub(crate) fn client_config(path: &Path) -> Result<rustls::ClientConfig, ConfigError> {
    let fail = |what: String| ConfigError::Tls(format!("{}: {what}", path.display()));
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| fail(e.to_string()))? {
        let cert = cert.map_err(|e| fail(e.to_string()))?;
        roots
            .add(cert)
            .map_err(|e| fail(format!("certificate rejected: {e}")))?;
    }
    if roots.is_empty() {
        return Err(fail("no certificate in the file".to_owned()));
    }
    let provider: Arc<CryptoProvider> =
        CryptoProvider::get_default().cloned().ok_or_else(|| {
            ConfigError::Tls(
                "no rustls CryptoProvider is installed: call e.g. \
             rustls::crypto::ring::default_provider().install_default() at startup"
                    .to_owned(),
            )
        })?;
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
