//! TLS on both legs, with ring as the one crypto provider of the whole tree.
//!
//! Client side: a configured certificate and key, ALPN `postgresql` (so libpq 17's direct TLS
//! negotiation works). Upstream side: libpq's sslmode semantics. `require` and `prefer` encrypt
//! without checking who answers (libpq does the same without a root certificate), `verify-ca`
//! checks the chain, `verify-full` the chain and the host name.

use std::path::Path;
use std::sync::Arc;

use pgfed_config::{SslMode, UpstreamUrl};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// ALPN protocol name Postgres 17 registered for direct TLS.
pub(crate) const ALPN_POSTGRESQL: &[u8] = b"postgresql";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} from {path}: {reason}")]
    Pem { what: &'static str, path: String, reason: String },
    #[error("TLS configuration rejected: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("no usable root certificates for upstream verification: {0}")]
    Roots(String),
    #[error("upstream host {0:?} is not a valid TLS server name")]
    ServerName(String),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The acceptor for client connections.
pub(crate) fn server_config(cert_file: &Path, key_file: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .map_err(pem_err("certificates", cert_file))?
        .collect::<Result<_, _>>()
        .map_err(pem_err("certificates", cert_file))?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what: "certificates",
            path: cert_file.display().to_string(),
            reason: "no certificate found".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(pem_err("private key", key_file))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
    Ok(Arc::new(config))
}

fn pem_err(what: &'static str, path: &Path) -> impl Fn(rustls::pki_types::pem::Error) -> TlsError {
    let path = path.display().to_string();
    move |e| TlsError::Pem { what, path: path.clone(), reason: e.to_string() }
}

/// The connector settings for the upstream, or `None` for `sslmode=disable`.
pub(crate) fn upstream_config(url: &UpstreamUrl) -> Result<Option<Arc<rustls::ClientConfig>>, TlsError> {
    let provider = provider();
    let builder =
        rustls::ClientConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
    let config = match url.sslmode {
        SslMode::Disable => return Ok(None),
        SslMode::Prefer | SslMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider.signature_verification_algorithms)))
            .with_no_client_auth(),
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let roots = Arc::new(root_store(url.sslrootcert.as_deref())?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| TlsError::Roots(e.to_string()))?;
            let verifier: Arc<dyn ServerCertVerifier> =
                if url.sslmode == SslMode::VerifyCa { Arc::new(ChainOnly(webpki)) } else { webpki };
            builder.dangerous().with_custom_certificate_verifier(verifier).with_no_client_auth()
        }
    };
    Ok(Some(Arc::new(config)))
}

/// The name presented in SNI and, for verify-full, checked against the certificate.
pub(crate) fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(host.to_string()).map_err(|_| TlsError::ServerName(host.into()))
}

fn root_store(sslrootcert: Option<&Path>) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    match sslrootcert {
        Some(path) => {
            for cert in CertificateDer::pem_file_iter(path).map_err(pem_err("root certificates", path))? {
                let cert = cert.map_err(|e| TlsError::Roots(e.to_string()))?;
                store.add(cert).map_err(|e| TlsError::Roots(e.to_string()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                // Skipping a malformed system certificate is what every TLS stack does.
                let _ = store.add(cert);
            }
        }
    }
    if store.is_empty() {
        return Err(TlsError::Roots("the root certificate store is empty; set sslrootcert".into()));
    }
    Ok(store)
}

/// sslmode=require/prefer: encrypt, but accept any certificate. Handshake signatures are still
/// checked, so the peer must hold the key of the certificate it shows.
#[derive(Debug)]
struct NoVerification(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// sslmode=verify-ca: the chain must verify; the host name need not match.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(m, c, d)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
