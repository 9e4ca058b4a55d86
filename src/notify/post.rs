//! One POST of an event envelope to an endpoint, over plain HTTP or HTTPS (verified against
//! the system's CA bundle, as Go's default transport does), on a fresh connection each time
//! (registry:2 closes idle connections after every event too).

use axum::http::{HeaderName, HeaderValue, Request, Uri};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

pub const EVENTS_MEDIA_TYPE: &str = "application/vnd.docker.distribution.events.v2+json";

/// Where the system's CA bundle is unless `SSL_CERT_FILE` says otherwise (Debian's path).
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// An endpoint's fixed request parts, checked once at start.
pub struct Target {
    pub uri: Uri,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub timeout: Duration,
    tls: Option<tokio_rustls::TlsConnector>,
}

impl Target {
    pub fn new(url: &str, headers: &std::collections::BTreeMap<String, Vec<String>>, timeout: Duration) -> anyhow::Result<Target> {
        let uri: Uri = url.parse().map_err(|e| anyhow::anyhow!("url {url:?}: {e}"))?;
        let tls = match uri.scheme_str() {
            Some("http") => None,
            Some("https") => Some(tls_connector()?),
            _ => anyhow::bail!("url {url:?}: only http and https endpoints are supported"),
        };
        if uri.host().is_none() {
            anyhow::bail!("url {url:?}: no host");
        }
        let mut fixed = Vec::new();
        for (name, values) in headers {
            let header = HeaderName::try_from(name.as_str()).map_err(|_| anyhow::anyhow!("headers: {name:?} is not a header name"))?;
            for value in values {
                // The value is never shown: headers hold tokens.
                let value = HeaderValue::try_from(value.as_str())
                    .map_err(|_| anyhow::anyhow!("headers.{name}: a value is not a valid header value"))?;
                fixed.push((header.clone(), value));
            }
        }
        Ok(Target {
            uri,
            headers: fixed,
            timeout,
            tls,
        })
    }

    /// POSTs `body` with the fixed headers and `extra`; the answer's status, or why none came
    /// within the timeout.
    pub async fn post(&self, body: Bytes, extra: &[(HeaderName, HeaderValue)]) -> anyhow::Result<u16> {
        tokio::time::timeout(self.timeout, self.exchange(body, extra))
            .await
            .map_err(|_| anyhow::anyhow!("no answer within {:?}", self.timeout))?
    }

    async fn exchange(&self, body: Bytes, extra: &[(HeaderName, HeaderValue)]) -> anyhow::Result<u16> {
        let host = self
            .uri
            .host()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let default_port = if self.tls.is_some() { 443 } else { 80 };
        let port = self.uri.port_u16().unwrap_or(default_port);
        let tcp = TcpStream::connect((host.as_str(), port)).await?;
        tcp.set_nodelay(true)?;
        let mut request = Request::post(self.uri.path_and_query().map_or("/", |p| p.as_str()))
            .header(axum::http::header::HOST, self.uri.authority().map_or("", |a| a.as_str()))
            .header(axum::http::header::CONTENT_TYPE, EVENTS_MEDIA_TYPE)
            .header(axum::http::header::USER_AGENT, concat!("wharf/", env!("CARGO_PKG_VERSION")))
            .body(Full::new(body))?;
        for (name, value) in self.headers.iter().chain(extra) {
            request.headers_mut().append(name.clone(), value.clone());
        }
        match &self.tls {
            None => send(hyper_util::rt::TokioIo::new(tcp), request).await,
            Some(connector) => {
                let name = rustls::pki_types::ServerName::try_from(host)?;
                let stream = connector.connect(name, tcp).await?;
                send(hyper_util::rt::TokioIo::new(stream), request).await
            }
        }
    }
}

async fn send<IO>(io: IO, request: Request<Full<Bytes>>) -> anyhow::Result<u16>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    let driver = tokio::spawn(connection);
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    // Read the (small) answer so the receiver sees a clean exchange; its content is not used.
    let _ = response.into_body().collect().await;
    drop(sender);
    driver.abort();
    Ok(status)
}

fn tls_connector() -> anyhow::Result<tokio_rustls::TlsConnector> {
    use rustls::pki_types::pem::PemObject;
    let bundle = std::env::var_os("SSL_CERT_FILE").map_or_else(|| SYSTEM_CA_BUNDLE.into(), std::path::PathBuf::from);
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(&bundle).map_err(|e| anyhow::anyhow!("{}: {e}", bundle.display()))? {
        let _ = roots.add(cert.map_err(|e| anyhow::anyhow!("{}: {e}", bundle.display()))?);
    }
    let config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}
