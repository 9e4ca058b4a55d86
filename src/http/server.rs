//! The connection loop: accept TCP, do the TLS handshake when configured, and serve HTTP/1.1 or
//! HTTP/2 with limits a hostile client cannot stretch. On shutdown, stop accepting and let
//! in-flight requests finish, up to a deadline.

use super::body_drain::DrainOnDrop;
use super::body_timeout::IdleTimeoutBody;
use super::idle;
use axum::extract::Request;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tower::ServiceExt;

/// Bounds the TLS handshake, so slow clients cannot hold connections open for free.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// Request heads larger than this are refused with 431.
const MAX_HEADER_BYTES: usize = 64 * 1024;
/// hyper's HTTP/1 read buffer, which caps both a request head and each read of a body. Heads
/// are held to MAX_HEADER_BYTES by `head_too_large`. Bodies are read in pieces this large: about
/// nine thousand reads (and hashing and write hand-offs) per GiB pushed rather than sixteen
/// thousand, and each piece stays just under malloc's mmap threshold (`crate::alloc`), so its
/// memory is reused from piece to piece instead of mapped and faulted in afresh.
const HTTP1_READ_BUFFER: usize = 120 * 1024;

/// The peer's address, available to handlers and middleware as a request extension.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// A request's id, made when it arrives: the access log (`http.request.id`, as registry:2
/// logs it) and the events the request causes carry the same one.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

pub struct ServeOptions {
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// How long in-flight requests get to finish after shutdown begins.
    pub drain_deadline: Duration,
    /// A client that has not sent its request headers by then is dropped, as is a connection
    /// idle that long between requests (zero: no limit).
    pub header_timeout: Duration,
    /// A request body that sends nothing for this long fails, and a client that reads none of
    /// its response for this long is dropped (zero: no limit).
    pub body_timeout: Duration,
    /// The access log and request metrics.
    pub observe: super::access::Observe,
}

pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let acceptor = opts.tls.map(tokio_rustls::TlsAcceptor::from);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let app = app.clone();
                let watcher = graceful.watcher();
                let acceptor = acceptor.clone();
                let limits = Limits { header: opts.header_timeout, body: opts.body_timeout };
                let observe = opts.observe.clone();
                tokio::spawn(async move {
                    match acceptor {
                        None => serve_connection(stream, peer, app, watcher, limits, observe).await,
                        Some(acceptor) => match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                            Ok(Ok(tls)) => serve_connection(tls, peer, app, watcher, limits, observe).await,
                            Ok(Err(e)) => tracing::debug!(client = %peer, error = %e, "TLS handshake failed"),
                            Err(_) => tracing::debug!(client = %peer, "TLS handshake timed out"),
                        },
                    }
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections finished"),
        _ = tokio::time::sleep(opts.drain_deadline) => tracing::warn!("shutdown deadline reached with requests still in flight"),
    }
    Ok(())
}

/// Marks a request that came over the control socket (`crate::cli::control`): a local
/// administrator, served without authentication.
#[derive(Debug, Clone, Copy)]
pub struct ControlChannel;

/// Serves `app` on the control socket until `shutdown`: HTTP/1.1, every request marked as
/// [`ControlChannel`] and attributed to a loopback address. Connections in flight at shutdown
/// end with the runtime.
pub async fn serve_control(listener: tokio::net::UnixListener, app: axum::Router, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    let local = SocketAddr::from(([127, 0, 0, 1], 0));
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "control socket accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => return,
        };
        let app = app.clone();
        tokio::spawn(async move {
            let svc = tower::service_fn(move |req: Request<hyper::body::Incoming>| {
                let mut req = req.map(axum::body::Body::new);
                req.extensions_mut().insert(ClientAddr(local));
                req.extensions_mut().insert(RequestId(uuid::Uuid::new_v4().to_string()));
                req.extensions_mut().insert(ControlChannel);
                app.clone().oneshot(req)
            });
            let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc));
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "control connection ended with an error");
            }
        });
    }
}

#[derive(Clone, Copy)]
struct Limits {
    header: Duration,
    body: Duration,
}

/// The body a handler reads: one that fails when the client stalls (unless that limit is off)
/// and, on HTTP/1, one that is read out after the answer if the handler left some of it (HTTP/2
/// streams end on their own without touching the connection).
fn request_body(body: hyper::body::Incoming, stall_limit: Duration, http1: bool) -> axum::body::Body {
    use axum::body::Body;
    match (stall_limit.is_zero(), http1) {
        (true, false) => Body::new(body),
        (true, true) => Body::new(DrainOnDrop::new(body)),
        (false, false) => Body::new(IdleTimeoutBody::new(body, stall_limit)),
        (false, true) => Body::new(DrainOnDrop::new(IdleTimeoutBody::new(body, stall_limit))),
    }
}

/// Whether a request's target and headers together exceed MAX_HEADER_BYTES, counted as they
/// appear on the wire.
fn head_too_large<B>(req: &Request<B>) -> bool {
    let target = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    let headers: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    target + headers > MAX_HEADER_BYTES
}

fn head_too_large_response() -> axum::response::Response {
    let mut resp = super::error::json_error(
        axum::http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "SIZE_INVALID",
        &format!("the request line and headers are larger than {} KiB", MAX_HEADER_BYTES / 1024),
    );
    // The body, if any, is read out and dropped (`body_drain`); the connection is not reused.
    resp.headers_mut()
        .insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
    resp
}

async fn serve_connection<IO>(
    io: IO,
    peer: SocketAddr,
    app: axum::Router,
    watcher: hyper_util::server::graceful::Watcher,
    limits: Limits,
    observe: super::access::Observe,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = idle::Activity::new();
    let tracked = activity.clone();
    let svc = tower::service_fn(move |req: Request<hyper::body::Incoming>| {
        let in_flight = tracked.begin();
        let id = RequestId(uuid::Uuid::new_v4().to_string());
        let observed = observe.begin(&id, req.method(), req.uri(), req.headers(), peer);
        let oversized = head_too_large(&req);
        let http1 = req.version() < axum::http::Version::HTTP_2;
        let mut req = req.map(|b| request_body(b, limits.body, http1));
        req.extensions_mut().insert(ClientAddr(peer));
        req.extensions_mut().insert(id);
        let app = app.clone();
        async move {
            let resp = match oversized {
                true => head_too_large_response(),
                false => app.oneshot(req).await?,
            };
            let resp = match observed {
                Some(o) => o.wrap(resp),
                None => resp,
            };
            Ok::<_, std::convert::Infallible>(resp.map(|b| axum::body::Body::new(idle::TrackedBody::new(b, in_flight))))
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout((!limits.header.is_zero()).then_some(limits.header))
        .max_buf_size(HTTP1_READ_BUFFER);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEADER_BYTES as u32);
    let io = idle::Watched::new(io, activity.clone());
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(svc));
    tokio::select! {
        ended = watcher.watch(conn.into_owned()) => {
            if let Err(e) = ended {
                tracing::debug!(client = %peer, error = %e, "connection ended with an error");
            }
        }
        // Dropping the connection closes the socket.
        _ = idle::watchdog(activity, limits.header, limits.body) => {
            tracing::debug!(client = %peer, "closing a connection that sent or read nothing for too long");
        }
    }
}
