//! TLS to the remote server, chosen by `sslmode` and `sslrootcert` as libpq reads them, with
//! rustls and the ring provider (as the rest of pgfed).
//!
//! - `disable`: plain TCP. `prefer`: TLS if the server offers it, otherwise plain, without
//!   checking the certificate (as libpq without a root certificate). `require`: TLS, certificate
//!   not checked, unless `sslrootcert` is given, which makes it `verify-ca` (libpq does the
//!   same). `verify-ca`: the chain must lead to `sslrootcert` (a PEM file; without it, or with
//!   `system`, the system's roots). `verify-full`: the chain and the host name.
//! - SCRAM channel binding is not offered (plain SCRAM-SHA-256 is used), so `channel_binding`
//!   is not an option.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use pgfed_connector_sdk::{ConnectorError, Options};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::task::JoinHandle;
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};
use tokio_postgres::{CancelToken, Client, Config, NoTls, Socket};

/// How a certificate is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Verify {
    None,
    Chain,
    ChainAndName,
}

/// The TLS settings of a server.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Tls {
    /// Plain TCP.
    Disable,
    Rustls {
        /// TLS is optional (`prefer`).
        optional: bool,
        verify: Verify,
        /// PEM file of trusted roots; `None`: the system's.
        rootcert: Option<String>,
    },
}

/// The TLS settings from the server options. Nothing is read from disk here (DDL time); a
/// missing or bad root file fails the connection (HV00N) instead.
pub(crate) fn parse(server: &Options) -> Result<Tls, ConnectorError> {
    let rootcert = server.get("sslrootcert").filter(|r| *r != "system").map(str::to_string);
    let has_root = server.get("sslrootcert").is_some();
    let (optional, verify) = match server.get("sslmode") {
        None | Some("disable") => return Ok(Tls::Disable),
        Some("prefer") => (true, Verify::None),
        Some("require") if has_root => (false, Verify::Chain),
        Some("require") => (false, Verify::None),
        Some("verify-ca") => (false, Verify::Chain),
        Some("verify-full") => (false, Verify::ChainAndName),
        Some(_) => {
            return Err(ConnectorError::InvalidOptionValue {
                name: "sslmode".into(),
                reason: "expected disable, prefer, require, verify-ca or verify-full".into(),
            });
        }
    };
    Ok(Tls::Rustls { optional, verify, rootcert })
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn client_config(verify: Verify, rootcert: Option<&str>) -> Result<ClientConfig, String> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let verifier: Arc<dyn ServerCertVerifier> = match verify {
        Verify::None => Arc::new(NoVerification(provider.signature_verification_algorithms)),
        Verify::Chain | Verify::ChainAndName => {
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(root_store(rootcert)?), provider)
                .build()
                .map_err(|e| e.to_string())?;
            if verify == Verify::Chain { Arc::new(ChainOnly(webpki)) } else { webpki }
        }
    };
    Ok(builder.dangerous().with_custom_certificate_verifier(verifier).with_no_client_auth())
}

fn root_store(rootcert: Option<&str>) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match rootcert {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path).map_err(|e| format!("sslrootcert: {e}"))?;
            for cert in certs {
                store.add(cert.map_err(|e| format!("sslrootcert: {e}"))?).map_err(|e| format!("sslrootcert: {e}"))?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                // Skipping a malformed system certificate is what every TLS stack does.
                let _ = store.add(cert);
            }
        }
    }
    if store.is_empty() {
        return Err("no trusted root certificate (set sslrootcert)".into());
    }
    Ok(store)
}

fn make(tls: &Tls) -> Result<Option<(MakeRustls, bool)>, String> {
    match tls {
        Tls::Disable => Ok(None),
        Tls::Rustls { optional, verify, rootcert } => {
            let config = client_config(*verify, rootcert.as_deref())?;
            Ok(Some((MakeRustls(Arc::new(config)), *optional)))
        }
    }
}

/// Why a connection could not be made: the server's or the socket's error, or our TLS setup's.
pub(crate) enum ConnectError {
    Postgres(tokio_postgres::Error),
    Setup(String),
}

/// Connects and spawns the task that drives the connection.
pub(crate) async fn connect(config: &Config, tls: &Tls) -> Result<(Client, JoinHandle<()>), ConnectError> {
    let mut config = config.clone();
    match make(tls).map_err(ConnectError::Setup)? {
        None => {
            config.ssl_mode(SslMode::Disable);
            let (client, connection) = config.connect(NoTls).await.map_err(ConnectError::Postgres)?;
            Ok((client, spawn(connection)))
        }
        Some((maker, optional)) => {
            config.ssl_mode(if optional { SslMode::Prefer } else { SslMode::Require });
            let (client, connection) = config.connect(maker).await.map_err(ConnectError::Postgres)?;
            Ok((client, spawn(connection)))
        }
    }
}

/// Sends a cancel request for the query running on the connection `token` belongs to, over TLS
/// when the connection uses it.
pub(crate) async fn cancel(token: &CancelToken, tls: &Tls) -> Result<(), tokio_postgres::Error> {
    match make(tls) {
        Ok(Some((maker, _))) => token.cancel_query(maker).await,
        _ => token.cancel_query(NoTls).await,
    }
}

fn spawn<F>(connection: F) -> JoinHandle<()>
where
    F: Future + Send + 'static,
{
    tokio::spawn(async move {
        let _ = connection.await;
    })
}

/// tokio-postgres's TLS hooks over tokio-rustls.
#[derive(Clone)]
struct MakeRustls(Arc<ClientConfig>);

impl MakeTlsConnect<Socket> for MakeRustls {
    type Stream = RustlsStream<Socket>;
    type TlsConnect = RustlsConnect;
    type Error = rustls::pki_types::InvalidDnsNameError;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnect, Self::Error> {
        Ok(RustlsConnect { config: self.0.clone(), name: ServerName::try_from(domain.to_string())? })
    }
}

struct RustlsConnect {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let stream = tokio_rustls::TlsConnector::from(self.config).connect(self.name, stream).await?;
            Ok(RustlsStream(stream))
        })
    }
}

struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// `prefer` and `require` without a root: encrypt, accept any certificate. Handshake signatures
/// are still checked, so the peer must hold the key of the certificate it shows.
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

/// `verify-ca`: the chain must verify; the host name need not match.
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
