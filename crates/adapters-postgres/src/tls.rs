//! TLS to PostgreSQL with rustls: the `sslmode` and `sslrootcert` of the
//! database URL, taken out of it before tokio-postgres parses the rest
//! (tokio-postgres knows only `disable`, `prefer` and `require`, and has no
//! TLS of its own).
//!
//! | `sslmode` | what happens |
//! |---|---|
//! | `disable` | plaintext |
//! | `allow`, `prefer`, `require` | TLS or no connection; the certificate is checked against `sslrootcert` when one is given (as libpq does for `require` with a root file), otherwise not checked |
//! | `verify-ca` | TLS, the certificate chains to `sslrootcert` (any host name) |
//! | `verify-full` | TLS, the certificate chains to `sslrootcert` and names the host |
//! | absent | plaintext to a loopback address or Unix socket, `require` to anything else |
//!
//! `prefer` never falls back to plaintext: a server that refuses TLS is an
//! error, so nobody on the path can strip it.

use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ClientConfig, WebPkiServerVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::Host;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

use crate::error::PgError;

/// How the connection is protected, from the URL's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TlsMode {
    /// Plaintext.
    Disable,
    /// Encrypted; the certificate is verified only against a given root file.
    Require,
    /// Encrypted; the certificate chains to the root file.
    VerifyCa,
    /// Encrypted; the certificate chains to the root file and names the host.
    VerifyFull,
}

/// The TLS parameters taken out of a URL, and the URL without them.
pub(crate) struct TlsParams {
    pub(crate) rest: String,
    mode: Option<String>,
    root_cert: Option<String>,
}

/// Removes `sslmode=` and `sslrootcert=` from a `postgres://` URL's query or
/// from a libpq `key=value` string.
pub(crate) fn take_tls_params(url: &str) -> TlsParams {
    let mut mode = None;
    let mut root_cert = None;
    let mut take = |part: &str, decode: bool| -> bool {
        let value = |raw: &str| {
            if decode {
                percent_encoding::percent_decode_str(raw)
                    .decode_utf8_lossy()
                    .into_owned()
            } else {
                raw.trim_matches('\'').to_owned()
            }
        };
        if let Some(raw) = part.strip_prefix("sslmode=") {
            mode = Some(value(raw));
            true
        } else if let Some(raw) = part.strip_prefix("sslrootcert=") {
            root_cert = Some(value(raw));
            true
        } else {
            false
        }
    };
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        match url.split_once('?') {
            Some((base, query)) => {
                let kept: Vec<&str> = query.split('&').filter(|part| !take(part, true)).collect();
                if kept.is_empty() {
                    base.to_owned()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
            None => url.to_owned(),
        }
    } else {
        let kept: Vec<&str> = key_value_tokens(url)
            .into_iter()
            .filter(|part| !take(part, false))
            .collect();
        kept.join(" ")
    };
    TlsParams {
        rest,
        mode,
        root_cert,
    }
}

/// The whitespace-separated `key=value` tokens of a libpq string, quoted
/// values (`'a b'`, `\'`) kept whole.
fn key_value_tokens(text: &str) -> Vec<&str> {
    let mut tokens = Vec::new();
    let mut start = None;
    let mut quoted = false;
    let mut escaped = false;
    for (index, ch) in text.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match ch {
            '\\' => escaped = true,
            '\'' => quoted = !quoted,
            ch if ch.is_whitespace() && !quoted => {
                if let Some(from) = start.take() {
                    tokens.push(&text[from..index]);
                }
                continue;
            }
            _ => {}
        }
        if start.is_none() {
            start = Some(index);
        }
    }
    if let Some(from) = start {
        tokens.push(&text[from..]);
    }
    tokens
}

/// Whether every host the config names is a loopback address, `localhost`
/// or a Unix socket (traffic that never leaves the machine).
fn all_local(hosts: &[Host], addrs: &[IpAddr]) -> bool {
    let hosts_local = hosts.iter().all(|host| match host {
        Host::Tcp(name) => {
            name == "localhost"
                || name
                    .trim_matches(['[', ']'])
                    .parse::<IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        #[cfg(unix)]
        Host::Unix(_) => true,
    });
    hosts_local && addrs.iter().all(IpAddr::is_loopback)
}

/// The TLS mode and, unless it is `disable`, the connector to use.
///
/// # Errors
/// [`PgError::InvalidUrl`] for an unknown `sslmode` or a verifying mode
/// without `sslrootcert`, [`PgError::Tls`] when the root file cannot be
/// read or holds no certificate. No message quotes the URL.
pub(crate) fn connector(
    params: &TlsParams,
    config: &tokio_postgres::Config,
) -> Result<(TlsMode, Option<MakeRustls>), PgError> {
    let mode = match params.mode.as_deref() {
        Some("disable") => TlsMode::Disable,
        Some("allow" | "prefer" | "require") => TlsMode::Require,
        Some("verify-ca") => TlsMode::VerifyCa,
        Some("verify-full") => TlsMode::VerifyFull,
        Some(_) => {
            return Err(PgError::InvalidUrl(
                "unknown sslmode (expected disable, prefer, require, verify-ca or verify-full)",
            ));
        }
        None if all_local(config.get_hosts(), config.get_hostaddrs()) => TlsMode::Disable,
        None => TlsMode::Require,
    };
    let roots = match &params.root_cert {
        Some(path) if mode != TlsMode::Disable => Some(read_roots(&PathBuf::from(path))?),
        _ => None,
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = match (mode, roots) {
        (TlsMode::Disable, _) => return Ok((mode, None)),
        (TlsMode::Require, None) => {
            Arc::new(Unverified(provider.signature_verification_algorithms))
        }
        (TlsMode::VerifyCa | TlsMode::VerifyFull, None) => {
            return Err(PgError::InvalidUrl(
                "sslmode=verify-ca and verify-full need sslrootcert=<file of CA certificates>",
            ));
        }
        (TlsMode::Require | TlsMode::VerifyCa, Some(roots)) => {
            Arc::new(AnyName(web_pki(roots, &provider)?))
        }
        (TlsMode::VerifyFull, Some(roots)) => web_pki(roots, &provider)?,
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| PgError::Tls(error.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok((
        mode,
        Some(MakeRustls {
            config: Arc::new(config),
        }),
    ))
}

fn read_roots(path: &PathBuf) -> Result<RootCertStore, PgError> {
    let bytes = std::fs::read(path)
        .map_err(|error| PgError::Tls(format!("cannot read the sslrootcert file: {error}")))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        let cert = cert
            .map_err(|error| PgError::Tls(format!("the sslrootcert file is not PEM: {error}")))?;
        roots.add(cert).map_err(|error| {
            PgError::Tls(format!(
                "a certificate in the sslrootcert file is unusable: {error}"
            ))
        })?;
    }
    if roots.is_empty() {
        return Err(PgError::Tls(
            "the sslrootcert file holds no certificate".to_owned(),
        ));
    }
    Ok(roots)
}

fn web_pki(
    roots: RootCertStore,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, PgError> {
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider))
        .build()
        .map_err(|error| PgError::Tls(format!("the sslrootcert file is unusable: {error}")))
}

/// `verify-ca`: the chain to the roots is checked, the host name is not.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // The web PKI verifier checks the chain first and the name last,
        // so a name mismatch means the chain was good.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `require` without a root file (libpq's meaning): encrypted against a
/// passive listener, the certificate itself is not checked.
#[derive(Debug)]
struct Unverified(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// tokio-postgres' TLS hook, backed by rustls.
#[derive(Debug, Clone)]
pub(crate) struct MakeRustls {
    config: Arc<ClientConfig>,
}

impl<S> MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = rustls::pki_types::InvalidDnsNameError;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnect, Self::Error> {
        let name = ServerName::try_from(domain.trim_matches(['[', ']']).to_owned())?;
        Ok(RustlsConnect {
            config: Arc::clone(&self.config),
            name,
        })
    }
}

/// One connection's handshake.
#[derive(Debug)]
pub(crate) struct RustlsConnect {
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
            tokio_rustls::TlsConnector::from(self.config)
                .connect(self.name, stream)
                .await
                .map(RustlsStream)
        })
    }
}

/// An encrypted connection to the server.
#[derive(Debug)]
pub(crate) struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_params_are_taken_out_of_both_url_forms() {
        let url = take_tls_params(
            "postgres://u:p@db/otp?application_name=x&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem",
        );
        assert_eq!(url.rest, "postgres://u:p@db/otp?application_name=x");
        assert_eq!(url.mode.as_deref(), Some("verify-full"));
        assert_eq!(url.root_cert.as_deref(), Some("/etc/ca.pem"));
        let url = take_tls_params("postgres://u@db/otp?sslmode=require");
        assert_eq!(url.rest, "postgres://u@db/otp");
        let kv = take_tls_params("host=db password='a  b' sslmode=verify-ca sslrootcert=/ca.pem");
        assert_eq!(kv.rest, "host=db password='a  b'");
        assert_eq!(kv.mode.as_deref(), Some("verify-ca"));
        assert_eq!(kv.root_cert.as_deref(), Some("/ca.pem"));
    }

    /// Against the local PostgreSQL (`ssl = on`, Debian's self-signed
    /// snakeoil certificate for `localhost`, which is its own CA).
    mod server {
        use diesel::QueryableByName;
        use diesel::sql_types::Bool;
        use diesel_async::RunQueryDsl;
        use secrecy::SecretString;

        use crate::connect::{establish, parse_target, parse_url};
        use crate::error::PgError;

        const UNRELATED_CA: &str =
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/unrelated-ca.pem");

        #[derive(QueryableByName)]
        struct Ssl {
            #[diesel(sql_type = Bool)]
            ssl: bool,
        }

        /// `(port, user, server certificate file)` of the test server, or
        /// `None` (outside CI) when it is not reachable.
        async fn server() -> Option<(u16, String, String)> {
            let url = std::env::var("DATABASE_URL")
                .ok()
                .filter(|url| !url.is_empty())
                .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
            let config = parse_url(&SecretString::from(url)).unwrap();
            let port = config.get_ports().first().copied().unwrap_or(5432);
            let user = config.get_user().unwrap_or("postgres").to_owned();
            let (client, connection) = match config.connect(tokio_postgres::NoTls).await {
                Ok(pair) => pair,
                Err(error) if std::env::var_os("CI").is_none() => {
                    eprintln!("SKIPPED: PostgreSQL not reachable ({error})");
                    return None;
                }
                Err(error) => panic!("PostgreSQL not reachable: {error}"),
            };
            tokio::spawn(connection);
            let row = client.query_one("SHOW ssl_cert_file", &[]).await.unwrap();
            Some((port, user, row.get::<_, String>(0)))
        }

        async fn encrypted(url: &str) -> Result<bool, String> {
            let target =
                parse_target(&SecretString::from(url.to_owned())).map_err(|e| e.to_string())?;
            let mut connection = establish(&target).await.map_err(|e| e.to_string())?;
            let row: Ssl =
                diesel::sql_query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                    .get_result(&mut connection)
                    .await
                    .map_err(|e| e.to_string())?;
            Ok(row.ssl)
        }

        #[tokio::test]
        async fn require_and_prefer_connect_encrypted() {
            let Some((port, user, _)) = server().await else {
                return;
            };
            for mode in ["require", "prefer", "allow"] {
                let url = format!("postgres://{user}@127.0.0.1:{port}/postgres?sslmode={mode}");
                assert_eq!(encrypted(&url).await, Ok(true), "{mode}");
            }
            // No sslmode, loopback: plaintext, as before.
            let url = format!("postgres://{user}@127.0.0.1:{port}/postgres");
            assert_eq!(encrypted(&url).await, Ok(false));
            let url = format!("postgres://{user}@127.0.0.1:{port}/postgres?sslmode=disable");
            assert_eq!(encrypted(&url).await, Ok(false));
        }

        #[tokio::test]
        async fn verify_full_and_verify_ca_with_the_server_ca_connect() {
            let Some((port, user, ca)) = server().await else {
                return;
            };
            let ca = percent_encoding::utf8_percent_encode(&ca, percent_encoding::NON_ALPHANUMERIC);
            let url = format!(
                "postgres://{user}@localhost:{port}/postgres?hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={ca}"
            );
            assert_eq!(encrypted(&url).await, Ok(true));
            // verify-ca does not need the name; verify-full does.
            let url = format!(
                "postgres://{user}@127.0.0.1:{port}/postgres?sslmode=verify-ca&sslrootcert={ca}"
            );
            assert_eq!(encrypted(&url).await, Ok(true));
            let url = format!(
                "postgres://{user}@127.0.0.1:{port}/postgres?sslmode=verify-full&sslrootcert={ca}"
            );
            let error = encrypted(&url).await.unwrap_err();
            assert!(error.contains("certificate not valid for name"), "{error}");
        }

        #[tokio::test]
        async fn a_wrong_ca_is_refused_without_quoting_the_url() {
            let Some((port, user, _)) = server().await else {
                return;
            };
            for mode in ["verify-full", "verify-ca", "require"] {
                let url = format!(
                    "host=localhost hostaddr=127.0.0.1 port={port} user={user} password=hunter2 dbname=postgres sslmode={mode} sslrootcert={UNRELATED_CA}"
                );
                let error = encrypted(&url).await.unwrap_err();
                assert!(
                    error.contains("invalid peer certificate"),
                    "{mode}: {error}"
                );
                assert!(
                    !error.contains("hunter2") && !error.contains("hostaddr"),
                    "{error}"
                );
            }
        }

        #[tokio::test]
        async fn prefer_does_not_fall_back_to_plaintext() {
            // A server that answers the SSLRequest with 'N' (no TLS).
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                while let Ok((mut socket, _)) = listener.accept().await {
                    let mut request = [0u8; 8];
                    if socket.read_exact(&mut request).await.is_ok() {
                        let _ = socket.write_all(b"N").await;
                    }
                }
            });
            for mode in ["prefer", "require"] {
                let url = format!("postgres://u:hunter2@127.0.0.1:{port}/postgres?sslmode={mode}");
                let error = encrypted(&url).await.unwrap_err();
                assert!(
                    error.contains("server does not support TLS"),
                    "{mode}: {error}"
                );
            }
        }

        #[test]
        fn bad_tls_settings_are_clear_errors() {
            let cases = [
                (
                    "postgres://u:hunter2@db/otp?sslmode=verify-everything",
                    "unknown sslmode",
                ),
                (
                    "postgres://u:hunter2@db/otp?sslmode=verify-full",
                    "need sslrootcert",
                ),
                (
                    "postgres://u:hunter2@db/otp?sslmode=verify-ca&sslrootcert=/nonexistent/hunter2",
                    "cannot read the sslrootcert file",
                ),
                (
                    "postgres://u:hunter2@db/otp?sslmode=verify-ca&sslrootcert=%2Fdev%2Fnull",
                    "holds no certificate",
                ),
            ];
            for (url, want) in cases {
                let error = parse_target(&SecretString::from(url)).unwrap_err();
                assert!(
                    matches!(error, PgError::InvalidUrl(_) | PgError::Tls(_)),
                    "{error:?}"
                );
                let text = error.to_string();
                assert!(text.contains(want), "{url}: {text}");
                assert!(!text.contains("hunter2"), "{text}");
            }
        }
    }
}
