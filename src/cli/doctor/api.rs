//! HTTP/1.1 requests to the registry (or its token server) over plain TCP or TLS, one
//! connection per request, and the parsing of `WWW-Authenticate` challenges.

use super::probe::TlsClient;
use super::target::{Scheme, Target};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::header::{HeaderMap, AUTHORIZATION, HOST, USER_AGENT};
use hyper::Request;
use hyper_util::rt::TokioIo;
use rustls::AlertDescription;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Bodies beyond this are cut: a /v2/ answer or a token is small.
const MAX_BODY: usize = 256 * 1024;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Where requests go and how.
#[derive(Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub target: Target,
    pub tls: Option<Arc<TlsClient>>,
    pub timeout: Duration,
}

#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
    }

    /// The first registry error message in the body (`{"errors":[{"code","message"}]}`).
    pub fn registry_error(&self) -> Option<String> {
        let doc: serde_json::Value = serde_json::from_slice(&self.body).ok()?;
        let e = doc["errors"].get(0)?;
        Some(format!(
            "{}: {}",
            e["code"].as_str().unwrap_or("?"),
            e["message"].as_str().unwrap_or("")
        ))
    }
}

#[derive(Debug)]
pub struct RequestError {
    pub message: String,
    /// A TLS alert the server sent (e.g. `CertificateRequired` for mutual TLS).
    pub alert: Option<AlertDescription>,
}

impl Endpoint {
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.target.host_port())
    }

    pub async fn get(&self, path: &str, authorization: Option<&str>) -> Result<Answer, RequestError> {
        match tokio::time::timeout(self.timeout, self.get_inner(path, authorization)).await {
            Ok(r) => r,
            Err(_) => Err(RequestError {
                message: format!("no answer to GET {} within {}s", self.url(path), self.timeout.as_secs()),
                alert: None,
            }),
        }
    }

    async fn get_inner(&self, path: &str, authorization: Option<&str>) -> Result<Answer, RequestError> {
        let tcp = TcpStream::connect(self.addr).await.map_err(|e| request_error(&e))?;
        let io: Box<dyn Io> = match &self.tls {
            Some(tls) => Box::new(
                TlsConnector::from(tls.config.clone())
                    .connect(tls.server_name.clone(), tcp)
                    .await
                    .map_err(|e| request_error(&e))?,
            ),
            None => Box::new(tcp),
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| request_error(&e))?;
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = Request::get(path)
            .header(HOST, self.target.host_port())
            .header(USER_AGENT, concat!("wharf-doctor/", env!("CARGO_PKG_VERSION")));
        if let Some(a) = authorization {
            req = req.header(AUTHORIZATION, a);
        }
        let req = req.body(Empty::<Bytes>::new()).map_err(|e| RequestError {
            message: e.to_string(),
            alert: None,
        })?;
        let result = sender.send_request(req).await.map_err(|e| request_error(&e));
        let answer = match result {
            Ok(resp) => {
                let (parts, body) = resp.into_parts();
                let body = Limited::new(body, MAX_BODY)
                    .collect()
                    .await
                    .map(|c| c.to_bytes())
                    .unwrap_or_default();
                Ok(Answer {
                    status: parts.status.as_u16(),
                    headers: parts.headers,
                    body,
                })
            }
            Err(e) => Err(e),
        };
        driver.abort();
        answer
    }
}

fn request_error(e: &(dyn std::error::Error + 'static)) -> RequestError {
    let mut message = e.to_string();
    let mut alert = None;
    let mut cur: Option<&(dyn std::error::Error + 'static)> = e.source();
    let mut chain = vec![e];
    while let Some(err) = cur {
        chain.push(err);
        cur = err.source();
    }
    for (i, err) in chain.into_iter().enumerate() {
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            alert = alert.or(alert_of(r));
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if let Some(r) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                alert = alert.or(alert_of(r));
            }
        }
        if i > 0 {
            message = format!("{message}: {err}");
        }
    }
    RequestError { message, alert }
}

fn alert_of(e: &rustls::Error) -> Option<AlertDescription> {
    match e {
        rustls::Error::AlertReceived(a) => Some(*a),
        _ => None,
    }
}

/// One `WWW-Authenticate` challenge: `Basic realm="Registry Realm"`,
/// `Bearer realm="https://auth/token",service="registry"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub params: Vec<(String, String)>,
}

impl Challenge {
    pub fn parse(header: &str) -> Option<Challenge> {
        let header = header.trim();
        let (scheme, rest) = header.split_once(char::is_whitespace).unwrap_or((header, ""));
        if scheme.is_empty() {
            return None;
        }
        Some(Challenge {
            scheme: scheme.to_string(),
            params: parse_params(rest),
        })
    }

    pub fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    pub fn is(&self, scheme: &str) -> bool {
        self.scheme.eq_ignore_ascii_case(scheme)
    }
}

impl std::fmt::Display for Challenge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let params: Vec<String> = self.params.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        write!(f, "{} {}", self.scheme, params.join(","))
    }
}

fn parse_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect::<String>().trim().to_string();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = chars.by_ref().take_while(|c| *c != ',').collect::<String>().trim().to_string();
        }
        out.push((key, value));
    }
    out
}

/// An absolute http(s) URL, split for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub tls: bool,
    pub target: Target,
    pub path_and_query: String,
}

pub fn parse_url(s: &str) -> Option<Url> {
    let target = Target::parse(s).ok()?;
    let tls = match target.scheme? {
        Scheme::Https => true,
        Scheme::Http => false,
    };
    let after_scheme = s.split_once("://")?.1;
    let path = after_scheme.find('/').map_or("/", |i| &after_scheme[i..]);
    Some(Url {
        tls,
        target,
        path_and_query: path.to_string(),
    })
}

/// Percent-encodes a query parameter value.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let c = Challenge::parse("Basic realm=\"Registry Realm\"").unwrap();
        assert!(c.is("basic"));
        assert_eq!(c.param("realm"), Some("Registry Realm"));
        let c =
            Challenge::parse(r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull""#)
                .unwrap();
        assert!(c.is("Bearer"));
        assert_eq!(c.param("realm"), Some("https://auth.example.com/token"));
        assert_eq!(c.param("service"), Some("registry.example.com"));
        assert_eq!(c.param("scope"), Some("repository:a/b:pull"));
        assert_eq!(
            Challenge::parse("Basic realm=\"a\\\"b\", x=y").unwrap().params,
            vec![("realm".to_string(), "a\"b".to_string()), ("x".to_string(), "y".to_string())]
        );
        assert!(Challenge::parse("").is_none());
    }

    #[test]
    fn urls() {
        let u = parse_url("https://auth.lan:5001/token?x=1").unwrap();
        assert!(u.tls);
        assert_eq!(u.target.host_port(), "auth.lan:5001");
        assert_eq!(u.path_and_query, "/token?x=1");
        let u = parse_url("http://auth.lan").unwrap();
        assert_eq!((u.tls, u.target.port, u.path_and_query.as_str()), (false, 80, "/"));
        assert!(parse_url("auth.lan/token").is_none());
        assert_eq!(encode("repository:a/b:pull"), "repository%3Aa%2Fb%3Apull");
    }
}
