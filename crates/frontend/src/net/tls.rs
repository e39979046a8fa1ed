//! TLS for the listeners: a rustls server config from a PEM certificate chain and key.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The rustls acceptor for `cert` and `key` (PEM files), with `alpn` protocols offered.
/// Errors name the file and what is wrong with it.
pub fn acceptor(
    cert: &str,
    key: &str,
    alpn: &[&[u8]],
) -> Result<tokio_rustls::TlsAcceptor, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("TLS certificate {cert}: {e}"))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("TLS certificate {cert}: {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "TLS certificate {cert}: no CERTIFICATE block found"
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("TLS key {key}: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("TLS certificate {cert} and key: {e}"))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
