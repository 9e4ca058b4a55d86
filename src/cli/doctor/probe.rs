//! What the port speaks: a TLS handshake that records the certificate chain (trust is judged
//! later, per client), and a plain HTTP request for servers that do not speak TLS.

use super::target::Target;
use crate::tls;
use crate::tls::client::RecordingVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::client::ResolvesClientCert;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::sign::CertifiedKey;
use rustls::{AlertDescription, ClientConfig, SignatureScheme};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Offers the client certificate Docker would (certs.d's `*.cert` / `*.key`), and notes
/// whether the server asked for one at all.
#[derive(Debug)]
struct ClientIdentity {
    offered: Option<Arc<CertifiedKey>>,
    requested: AtomicBool,
}

impl ResolvesClientCert for ClientIdentity {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.requested.store(true, Ordering::Relaxed);
        self.offered.clone()
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// A TLS client for one server: its configuration, the name it checks, and what it observed.
pub struct TlsClient {
    pub config: Arc<ClientConfig>,
    pub server_name: ServerName<'static>,
    recorder: Option<Arc<RecordingVerifier>>,
    identity: Arc<ClientIdentity>,
}

impl TlsClient {
    /// Accepts any certificate and records the chain (for diagnosis).
    pub fn recording(t: &Target, identity: Option<Arc<CertifiedKey>>) -> Result<TlsClient, String> {
        // Accepts any chain and keeps it, so the diagnosis can go on past an untrusted
        // certificate and judge it per client afterwards.
        let recorder = RecordingVerifier::new();
        let mut c = Self::with_verifier(t, recorder.clone(), identity)?;
        c.recorder = Some(recorder);
        Ok(c)
    }

    /// Verifies the server with `verifier` (for requests that carry credentials elsewhere).
    pub fn with_verifier(
        t: &Target,
        verifier: Arc<dyn ServerCertVerifier>,
        identity: Option<Arc<CertifiedKey>>,
    ) -> Result<TlsClient, String> {
        let identity = Arc::new(ClientIdentity {
            offered: identity,
            requested: AtomicBool::new(false),
        });
        let mut config = ClientConfig::builder_with_provider(tls::provider())
            .with_protocol_versions(rustls::ALL_VERSIONS)
            .map_err(|e| format!("TLS client configuration: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_cert_resolver(identity.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsClient {
            config: Arc::new(config),
            server_name: server_name(t)?,
            recorder: None,
            identity,
        })
    }

    /// The chain the server presented in the last handshake, server certificate first.
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        self.recorder.as_ref().map(|r| r.chain()).unwrap_or_default()
    }

    pub fn client_cert_requested(&self) -> bool {
        self.identity.requested.load(Ordering::Relaxed)
    }

    pub fn client_cert_offered(&self) -> bool {
        self.identity.offered.is_some()
    }
}

/// The name a client checks the certificate against (an IP address sends no SNI).
pub fn server_name(t: &Target) -> Result<ServerName<'static>, String> {
    match t.ip {
        Some(ip) => Ok(ServerName::IpAddress(ip.into())),
        None => ServerName::try_from(t.host.clone()).map_err(|e| format!("{:?} cannot be used as a TLS server name: {e}", t.host)),
    }
}

/// How the TLS handshake went.
#[derive(Debug)]
pub enum Handshake {
    Tls {
        version: String,
        cipher: String,
        alpn: Option<String>,
    },
    /// The server answered the ClientHello with an HTTP response: Go's "server gave HTTP
    /// response to HTTPS client".
    PlainHttp {
        first_line: String,
    },
    /// The server sent bytes that are neither TLS nor HTTP.
    NotTls {
        preview: String,
    },
    /// The server sent a TLS alert.
    Alert {
        alert: AlertDescription,
        error: String,
    },
    /// The server closed the connection without a byte.
    Closed {
        error: String,
    },
    Failed {
        error: String,
    },
    Timeout,
}

pub async fn handshake(addr: SocketAddr, client: &TlsClient, timeout: Duration) -> Handshake {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let attempt = async {
        let tcp = TcpStream::connect(addr).await?;
        let sniff = Sniff {
            inner: tcp,
            seen: seen.clone(),
        };
        TlsConnector::from(client.config.clone())
            .connect(client.server_name.clone(), sniff)
            .await
    };
    let result = tokio::time::timeout(timeout, attempt).await;
    let seen = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    match result {
        Err(_) => match classify_bytes(&seen) {
            Some(h) => h,
            None => Handshake::Timeout,
        },
        Ok(Ok(stream)) => {
            let (_, conn) = stream.get_ref();
            Handshake::Tls {
                version: conn.protocol_version().map(version_name).unwrap_or_else(|| "TLS".into()),
                cipher: conn
                    .negotiated_cipher_suite()
                    .map(|s| format!("{:?}", s.suite()))
                    .unwrap_or_default(),
                alpn: conn.alpn_protocol().map(|p| String::from_utf8_lossy(p).into_owned()),
            }
        }
        Ok(Err(e)) => {
            if let Some(h) = classify_bytes(&seen) {
                return h;
            }
            let alert = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()).and_then(|r| match r {
                rustls::Error::AlertReceived(a) => Some(*a),
                _ => None,
            });
            match alert {
                Some(alert) => Handshake::Alert {
                    alert,
                    error: e.to_string(),
                },
                None if seen.is_empty() => Handshake::Closed { error: e.to_string() },
                None => Handshake::Failed { error: e.to_string() },
            }
        }
    }
}

fn version_name(v: rustls::ProtocolVersion) -> String {
    match v {
        rustls::ProtocolVersion::TLSv1_3 => "TLS 1.3".into(),
        rustls::ProtocolVersion::TLSv1_2 => "TLS 1.2".into(),
        other => format!("{other:?}"),
    }
}

/// Recognises an HTTP answer or a non-TLS protocol from the first bytes the server sent.
fn classify_bytes(seen: &[u8]) -> Option<Handshake> {
    if seen.starts_with(b"HTTP/") {
        let line = String::from_utf8_lossy(seen).lines().next().unwrap_or_default().to_string();
        return Some(Handshake::PlainHttp { first_line: line });
    }
    // TLS records start with content type 20..=23 and major version 3.
    match seen {
        [] => None,
        [20..=23, 3, ..] | [20..=23] => None,
        _ => Some(Handshake::NotTls { preview: preview(seen) }),
    }
}

/// Printable form of the first bytes a server sent.
pub fn preview(bytes: &[u8]) -> String {
    bytes
        .iter()
        .take(40)
        .map(|&b| {
            if (0x20..0x7f).contains(&b) {
                (b as char).to_string()
            } else {
                format!("\\x{b:02x}")
            }
        })
        .collect()
}

/// Copies the first bytes read from the server, to tell what it speaks when TLS fails.
struct Sniff<S> {
    inner: S,
    seen: Arc<Mutex<Vec<u8>>>,
}

const SNIFF_BYTES: usize = 64;

impl<S: AsyncRead + Unpin> AsyncRead for Sniff<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &result {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            let room = SNIFF_BYTES.saturating_sub(seen.len());
            let new = &buf.filled()[before..];
            seen.extend_from_slice(&new[..new.len().min(room)]);
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Sniff<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// What a server says to a plain-text `GET /v2/`.
#[derive(Debug)]
pub enum PlainAnswer {
    Http {
        status_line: String,
        text: String,
    },
    /// A TLS alert record (`\x15\x03...`): the port speaks TLS.
    TlsAlert,
    Closed,
    Other {
        preview: String,
    },
    Timeout,
    Error(String),
}

const PLAIN_READ_LIMIT: u64 = 4096;

pub async fn plain_probe(addr: SocketAddr, host_header: &str, timeout: Duration) -> PlainAnswer {
    let attempt = async {
        let mut tcp = TcpStream::connect(addr).await?;
        let request = format!("GET /v2/ HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: wharf-doctor\r\nConnection: close\r\n\r\n");
        tcp.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        // A reset after some bytes still leaves those bytes to judge by.
        let _ = (&mut tcp).take(PLAIN_READ_LIMIT).read_to_end(&mut answer).await;
        Ok::<_, std::io::Error>(answer)
    };
    match tokio::time::timeout(timeout, attempt).await {
        Err(_) => PlainAnswer::Timeout,
        Ok(Err(e)) => PlainAnswer::Error(e.to_string()),
        Ok(Ok(bytes)) if bytes.is_empty() => PlainAnswer::Closed,
        Ok(Ok(bytes)) if bytes.starts_with(b"HTTP/") => {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            PlainAnswer::Http {
                status_line: text.lines().next().unwrap_or_default().to_string(),
                text,
            }
        }
        Ok(Ok(bytes)) if bytes.starts_with(&[0x15, 0x03]) => PlainAnswer::TlsAlert,
        Ok(Ok(bytes)) => PlainAnswer::Other { preview: preview(&bytes) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_first_bytes() {
        assert!(
            matches!(classify_bytes(b"HTTP/1.1 400 Bad Request\r\n"), Some(Handshake::PlainHttp { first_line }) if first_line == "HTTP/1.1 400 Bad Request")
        );
        assert!(classify_bytes(&[0x16, 0x03, 0x03, 0x00]).is_none());
        assert!(classify_bytes(&[0x15, 0x03, 0x01]).is_none());
        assert!(classify_bytes(&[]).is_none());
        assert!(
            matches!(classify_bytes(b"SSH-2.0-OpenSSH_9.6\r\n"), Some(Handshake::NotTls { preview }) if preview.starts_with("SSH-2.0"))
        );
        assert_eq!(preview(&[0x15, b'a']), "\\x15a");
    }
}
