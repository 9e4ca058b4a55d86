//! What is recorded of every request once its answer has been sent: registry:2's access log line
//! ("response completed", at info, with its field names) and the request metrics. Both are
//! taken when the response body ends or is dropped, so the byte count and duration cover the
//! whole answer, as registry:2's do. With both off nothing is wrapped.

use super::metrics::{self, Metrics};
use super::server::RequestId;
use axum::http::{HeaderMap, Method, Uri};
use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

/// The authenticated user, put on a response by the API so the access log can name it.
#[derive(Debug, Clone)]
pub struct User(pub String);

/// What to record of each request (`log.accesslog.disabled`, `http.debug.prometheus`).
#[derive(Clone, Default)]
pub struct Observe {
    pub access_log: bool,
    pub metrics: Option<Arc<Metrics>>,
    /// `http.prefix`, left out of the path when naming the route for the metrics.
    pub prefix: String,
}

impl Observe {
    pub fn is_off(&self) -> bool {
        !self.access_log && self.metrics.is_none()
    }

    /// Starts observing a request; `None` when nothing is recorded.
    pub fn begin(&self, id: &RequestId, method: &Method, uri: &Uri, headers: &HeaderMap, peer: SocketAddr) -> Option<Pending> {
        if self.is_off() {
            return None;
        }
        let request_bytes = headers
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .unwrap_or(0);
        let log = self.access_log.then(|| LogFields {
            id: id.0.clone(),
            method: method.clone(),
            uri: uri
                .path_and_query()
                .map_or_else(|| uri.path().to_string(), |pq| pq.as_str().to_string()),
            user_agent: super::request::header_str(headers, "user-agent").unwrap_or_default().to_string(),
            remote: peer,
        });
        Some(Pending {
            started: Instant::now(),
            log,
            metrics: self.metrics.as_ref().map(|m| {
                let path = uri.path();
                m.begin(path.strip_prefix(self.prefix.as_str()).unwrap_or(path), method, request_bytes)
            }),
        })
    }
}

struct LogFields {
    id: String,
    method: Method,
    uri: String,
    user_agent: String,
    remote: SocketAddr,
}

/// A request whose answer is not sent yet.
pub struct Pending {
    started: Instant,
    log: Option<LogFields>,
    metrics: Option<metrics::Request>,
}

impl Pending {
    /// Wraps the response body so the record is made when it has been sent.
    pub fn wrap(self, resp: axum::response::Response) -> axum::response::Response {
        let status = resp.status().as_u16();
        let user = resp.extensions().get::<User>().map(|u| u.0.clone());
        resp.map(|body| {
            axum::body::Body::new(ObservedBody {
                inner: body,
                bytes: 0,
                record: Some(Record {
                    pending: self,
                    status,
                    user,
                }),
            })
        })
    }
}

struct Record {
    pending: Pending,
    status: u16,
    user: Option<String>,
}

impl Record {
    fn emit(self, bytes: u64) {
        let Record { pending, status, user } = self;
        if let Some(m) = pending.metrics {
            m.finish(status, bytes);
        }
        if let Some(f) = pending.log {
            let duration = pending.started.elapsed();
            tracing::info!(
                http.request.id = %f.id,
                http.request.method = %f.method,
                http.request.uri = %f.uri,
                http.request.remoteaddr = %f.remote,
                http.request.useragent = %f.user_agent,
                http.response.status = status,
                http.response.written = bytes,
                http.response.duration = ?duration,
                auth.user.name = user.as_deref().unwrap_or(""),
                "response completed"
            );
        }
    }
}

struct ObservedBody<B> {
    inner: B,
    bytes: u64,
    record: Option<Record>,
}

impl<B> Drop for ObservedBody<B> {
    fn drop(&mut self) {
        if let Some(r) = self.record.take() {
            r.emit(self.bytes);
        }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for ObservedBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.bytes += data.len() as u64;
                }
            }
            Poll::Ready(None) => {
                if let Some(r) = self.record.take() {
                    r.emit(self.bytes);
                }
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
