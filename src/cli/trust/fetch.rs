//! Talking to the registry before its CA is trusted.
//!
//! The TLS handshake records the server's chain without judging it (handshake signatures are
//! still checked, so the server proves it holds the key of the certificate it shows). The
//! chain is then verified against the CA being installed, for the registry's host name or
//! address, before anything but the public CA request is sent.

use super::target::Target;
use crate::tls::client::RecordingVerifier;
use crate::tls::{inspect, provider};
use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::{CertificateError, RootCertStore};
use rustls_pki_types::{CertificateDer, UnixTime};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(20);
/// A CA certificate is a few KiB; anything much larger is not one.
const MAX_BODY: usize = 256 * 1024;

/// An open TLS connection and the chain the server presented on it.
pub struct Connection {
    pub stream: TlsStream<TcpStream>,
    pub chain: Vec<CertificateDer<'static>>,
}

/// Connects and completes the TLS handshake, recording the server's chain.
pub async fn connect(target: &Target) -> anyhow::Result<Connection> {
    let where_ = target.name();
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((target.host.as_str(), target.port)))
        .await
        .map_err(|_| anyhow!("cannot connect to {where_}: no answer within {}s", CONNECT_TIMEOUT.as_secs()))?
        .map_err(|e| connect_error(&where_, e))?;
    let recorder = RecordingVerifier::new();
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let stream = tokio::time::timeout(EXCHANGE_TIMEOUT, connector.connect(target.server_name(), tcp))
        .await
        .map_err(|_| anyhow!("{where_}: the TLS handshake did not finish within {}s", EXCHANGE_TIMEOUT.as_secs()))?
        .map_err(|e| handshake_error(&where_, e))?;
    let chain = recorder.chain();
    if chain.is_empty() {
        bail!("{where_}: the server presented no certificate");
    }
    Ok(Connection { stream, chain })
}

fn connect_error(where_: &str, e: std::io::Error) -> anyhow::Error {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => anyhow!(
            "cannot connect to {where_}: connection refused (is the registry running, and is the port right? \
             wharf trust assumes port 5000 when none is given)"
        ),
        _ => anyhow!("cannot connect to {where_}: {e}"),
    }
}

fn handshake_error(where_: &str, e: std::io::Error) -> anyhow::Error {
    let tls = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match tls {
        Some(rustls::Error::InvalidMessage(_)) => anyhow!(
            "{where_} does not speak TLS (it answered like a plain-HTTP server): there is no certificate to trust. \
             Configure TLS on the registry (wharf serve sets it up by itself on a non-loopback address)"
        ),
        Some(rustls::Error::AlertReceived(alert)) => {
            anyhow!("{where_} refused the TLS handshake ({alert:?}); if it requires client certificates (http.tls.clientcas), it cannot be checked this way")
        }
        _ => anyhow!("{where_}: TLS handshake failed: {e}"),
    }
}

/// A GET over an established connection; returns the status and at most [`MAX_BODY`] bytes.
pub async fn get(conn: Connection, target: &Target, path: &str, authorization: Option<&str>) -> anyhow::Result<(u16, Bytes)> {
    let exchange = async {
        let io = hyper_util::rt::TokioIo::new(conn.stream);
        let (mut sender, driver) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(io).await?;
        let driver = tokio::spawn(driver);
        let mut req = hyper::Request::get(path)
            .header(hyper::header::HOST, target.name())
            .header(hyper::header::USER_AGENT, concat!("wharf-trust/", env!("CARGO_PKG_VERSION")));
        if let Some(value) = authorization {
            req = req.header(hyper::header::AUTHORIZATION, value);
        }
        let resp = sender.send_request(req.body(Empty::new())?).await?;
        let status = resp.status().as_u16();
        let body = Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| anyhow!("reading the answer: {e}"))?
            .to_bytes();
        driver.abort();
        anyhow::Ok((status, body))
    };
    tokio::time::timeout(EXCHANGE_TIMEOUT, exchange)
        .await
        .map_err(|_| anyhow!("{}: no answer to GET {path} within {}s", target.name(), EXCHANGE_TIMEOUT.as_secs()))?
        .with_context(|| format!("GET {}{path}", target.url()))
}

/// How the server's certificate was found to be covered by the CA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// The chain leads to the CA and the certificate is valid for the host.
    Chain,
    /// The server's certificate is the (self-signed) CA file itself, as in registry guides that
    /// make one certificate with openssl and copy it to every client as ca.crt.
    SelfSigned,
}

/// Verifies the recorded chain against `ca` alone, for the target's host: what every client
/// will do once the CA is installed.
pub fn verify_chain(chain: &[CertificateDer<'static>], ca: &CertificateDer<'static>, target: &Target) -> anyhow::Result<Verified> {
    let (leaf, intermediates) = chain.split_first().ok_or_else(|| anyhow!("the server presented no certificate"))?;
    let mut roots = RootCertStore::empty();
    roots
        .add(ca.clone())
        .map_err(|e| anyhow!("the CA certificate cannot be used as a trust anchor: {e}"))?;
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| anyhow!("building the certificate verifier: {e}"))?;
    let err = match verifier.verify_server_cert(leaf, intermediates, &target.server_name(), &[], UnixTime::now()) {
        Ok(_) => return Ok(Verified::Chain),
        Err(e) => e,
    };
    // webpki never accepts a trust anchor as the server certificate; clients using a
    // self-signed certificate as ca.crt do, as long as it names the host and is current.
    if leaf.as_ref() == ca.as_ref() {
        let report = inspect::inspect(&super::ca::pem_encode(leaf), Some(&target.host))?;
        match report.findings.iter().find(|f| f.severity == inspect::Severity::Error) {
            None => return Ok(Verified::SelfSigned),
            Some(f) => bail!("the registry's self-signed certificate is not usable: {} ({})", f.problem, f.fix),
        }
    }
    Err(explain(err, leaf, target))
}

/// Turns a rustls verdict into a sentence naming the certificate and the fix.
fn explain(err: rustls::Error, leaf: &CertificateDer<'_>, target: &Target) -> anyhow::Error {
    let info = inspect::inspect(&super::ca::pem_encode(leaf), None)
        .ok()
        .and_then(|r| r.certificates.into_iter().next());
    let issuer = info.as_ref().map_or_else(|| "an unknown issuer".to_string(), |i| i.issuer.clone());
    let names = info.as_ref().map_or_else(String::new, |i| {
        let all: Vec<String> = i
            .ip_addresses
            .iter()
            .map(|ip| ip.to_string())
            .chain(i.dns_names.iter().cloned())
            .collect();
        if all.is_empty() {
            "no names at all (no subjectAltName)".into()
        } else {
            all.join(", ")
        }
    });
    match err {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer | CertificateError::BadSignature) => {
            anyhow!("the registry's certificate (issued by {issuer}) was not issued by this CA")
        }
        rustls::Error::InvalidCertificate(CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }) => anyhow!(
            "the registry's certificate is not valid for {}: it covers {names}; clients connecting to {} would reject it \
             (reissue it with that name: wharf cert issue --ip/--dns)",
            target.host,
            target.name()
        ),
        rustls::Error::InvalidCertificate(
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. },
        ) => anyhow!("the registry's certificate is outside its validity period (check the clocks, or renew it)"),
        other => anyhow!("the registry's certificate does not verify against this CA: {other}"),
    }
}
