//! The HTTP API: one module per area. `dispatch` reads the route from the path (names contain
//! slashes, so axum's per-segment routing does not fit) and hands over to the area's handler.

mod access;
pub mod auth;
mod base;
mod blobs;
mod body_drain;
pub mod body_timeout;
mod catalog;
mod context;
pub mod error;
pub mod forwarded;
mod gc;
mod idle;
mod manifests;
pub mod metrics;
mod referrers;
pub mod request;
mod retention;
pub mod server;
mod tags;
pub mod token;
mod uploads;
mod usage;

use crate::oci::{ErrorCode, RegistryError};
use crate::registry::Registry;
pub use access::{Observe, User};
use auth::Caller;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use request::Route;
use std::sync::Arc;

pub type HttpResult = Result<Response, RegistryError>;

/// Makes the trust script for a `host:port`; built by the CLI, which knows the installers.
pub type TrustScript = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// What every handler can reach.
pub struct AppState {
    pub registry: Arc<Registry>,
    pub urls: Urls,
    /// None: the registry is open, as registry:2 is without an `auth` section.
    pub auth: Option<Arc<auth::AuthState>>,
    /// The CA that signed the server certificate, served unauthenticated so clients can
    /// install it (`wharf trust`); only when wharf made the CA itself.
    pub ca_pem: Option<String>,
    /// With a CA to publish: the trust script for the `host:port` a client reached us by
    /// (`None` for a name no registry address can be).
    pub trust_script: Option<TrustScript>,
    /// `http.headers`: added to every API response, as registry:2 does.
    pub headers: Vec<(axum::http::HeaderName, HeaderValue)>,
    /// `http.secret`: upload Locations carry a signed `_state`, which requests must bring back.
    pub upload_states: Option<Arc<crate::registry::upload_state::UploadStateKey>>,
}

impl AppState {
    /// Whether the caller may pull from `repo` (always, when auth is off).
    pub fn may_pull(&self, caller: &Caller, repo: &str) -> bool {
        self.auth.as_ref().is_none_or(|a| a.may_pull(caller, repo))
    }
}

/// How `Location` headers are written: absolute URLs built from the request's host (registry:2's
/// default), or relative paths (`http.relativeurls`).
#[derive(Debug, Clone, Default)]
pub struct Urls {
    /// `http.host`: a fixed external base URL, e.g. `https://registry.example.com`.
    pub host: Option<String>,
    pub relative: bool,
    pub tls: bool,
    /// `http.prefix` without its trailing `/` (empty: none): the API lives under it.
    pub prefix: String,
}

impl Urls {
    pub fn location(&self, headers: &HeaderMap, path: &str) -> String {
        let prefixed;
        let path = if self.prefix.is_empty() {
            path
        } else {
            prefixed = format!("{}{path}", self.prefix);
            &prefixed
        };
        if self.relative {
            return path.to_string();
        }
        if let Some(host) = &self.host {
            return format!("{}{path}", host.trim_end_matches('/'));
        }
        // The Host header is the client's word: only a plain host[:port] may reach a URL the
        // server hands out (a realm, a Location). Anything else gets a relative path.
        let host = request::header_str(headers, "host").filter(|h| is_host_port(h));
        let forwarded = request::header_str(headers, "x-forwarded-proto").filter(|p| *p == "http" || *p == "https");
        match host {
            Some(host) => {
                let scheme = forwarded.unwrap_or(if self.tls { "https" } else { "http" });
                format!("{scheme}://{host}{path}")
            }
            None => path.to_string(),
        }
    }
}

/// `name`, `name:port`, `1.2.3.4:port` or `[v6]:port`: what a Host header may be for wharf to
/// build a URL from it. No `/`, `?`, `#`, `@`, spaces or anything else that would change where
/// the URL points.
pub fn is_host_port(h: &str) -> bool {
    let (host, port) = match h.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((v6, port)) if v6.parse::<std::net::Ipv6Addr>().is_ok() => (None, port),
            _ => return false,
        },
        None => match h.rsplit_once(':') {
            Some((host, _)) => (Some(host), &h[host.len()..]),
            None => (Some(h), ""),
        },
    };
    let port_ok = match port.strip_prefix(':') {
        Some(p) => !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok(),
        None => port.is_empty(),
    };
    let host_ok = host.is_none_or(|name| {
        !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|label| {
                !label.is_empty() && label.len() <= 63 && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
    });
    port_ok && host_ok
}

pub fn router(state: Arc<AppState>) -> axum::Router {
    axum::Router::new()
        .fallback(dispatch)
        .with_state(state)
        .layer(axum::middleware::map_response(api_version_header))
}

/// Every response, errors included, says which API it speaks.
async fn api_version_header(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert("docker-distribution-api-version", HeaderValue::from_static("registry/2.0"));
    resp
}

async fn dispatch(State(state): State<Arc<AppState>>, mut req: Request) -> Response {
    if !state.urls.prefix.is_empty() && !is_well_known(req.uri().path()) {
        match without_prefix(req.uri(), &state.urls.prefix) {
            Some(uri) => *req.uri_mut() = uri,
            None => return with_configured_headers(&state, not_found()),
        }
    }
    let sent_body = req.version() < axum::http::Version::HTTP_2
        && (req.headers().contains_key(axum::http::header::TRANSFER_ENCODING)
            || req.headers().get(axum::http::header::CONTENT_LENGTH).is_some_and(|v| v != "0"));
    let mut resp = route_request(state.clone(), req).await;
    if sent_body && (resp.status().is_client_error() || resp.status().is_server_error()) {
        // An error may be answered before the body was read (a refused chunk, a full disk, a
        // failed login). The rest is read out after the answer (`body_drain`), but only up to a
        // limit, past which hyper closes the connection. Saying so up front keeps the client
        // from sending its next request into a connection that may be going away.
        resp.headers_mut()
            .insert(axum::http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    with_configured_headers(&state, resp)
}

/// The unauthenticated trust paths, served outside `http.prefix` (clients look for them there).
fn is_well_known(path: &str) -> bool {
    path == crate::autosecure::CA_PATH || path == crate::autosecure::TRUST_SCRIPT_PATH
}

fn with_configured_headers(state: &AppState, mut resp: Response) -> Response {
    for (name, value) in &state.headers {
        resp.headers_mut().append(name.clone(), value.clone());
    }
    resp
}

/// The request's URI with `http.prefix` taken off its path; `None` when the path is not under it.
fn without_prefix(uri: &axum::http::Uri, prefix: &str) -> Option<axum::http::Uri> {
    let rest = uri.path().strip_prefix(prefix)?;
    if !rest.starts_with('/') {
        return None;
    }
    let target = match uri.query() {
        Some(q) => format!("{rest}?{q}"),
        None => rest.to_string(),
    };
    target.parse().ok()
}

fn not_found() -> Response {
    error::json_error(StatusCode::NOT_FOUND, "UNSUPPORTED", "no such API endpoint")
}

async fn route_request(state: Arc<AppState>, req: Request) -> Response {
    if req.uri().path() == crate::autosecure::CA_PATH {
        if let Some(ca) = &state.ca_pem {
            return ([(axum::http::header::CONTENT_TYPE, "application/x-pem-file")], ca.clone()).into_response();
        }
    }
    if req.uri().path() == crate::autosecure::TRUST_SCRIPT_PATH {
        if let Some(make) = &state.trust_script {
            return trust_script(make, &req);
        }
    }
    if req.uri().path() == token::PATH && state.auth.as_ref().is_some_and(|a| a.token_server().is_some()) {
        return token::handle(&state, req).await;
    }
    let route = match request::route(req.uri().path()) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let method = req.method().clone();
    let caller = match &state.auth {
        None => Caller::Anonymous,
        Some(a) => {
            let client = req.extensions().get::<server::ClientAddr>().map(|c| c.0.ip());
            match a.authorize(&route, &method, req.headers(), client).await {
                Ok(c) => c,
                Err(resp) => return without_body_for_head(resp, &method),
            }
        }
    };
    let user = match &caller {
        Caller::User(name) => Some(User(name.clone())),
        Caller::Token(bearer) => bearer.claims.subject.clone().map(User),
        _ => None,
    };
    let ctx = context::of(&state, &req, user.as_ref().map(|u| u.0.clone()));
    let ctx = &ctx;
    let result = match (&route, &method) {
        (Route::Base, &Method::GET | &Method::HEAD) => Ok(base::get()),
        (Route::Catalog, &Method::GET) => catalog::get(&state, &caller, req).await,
        (Route::Tags(name), &Method::GET) => tags::get(&state, name, req).await,
        (Route::Blob(name, d), &Method::GET | &Method::HEAD) => blobs::get(&state, ctx, name, d, req).await,
        (Route::Blob(name, d), &Method::DELETE) => blobs::delete(&state, ctx, name, d).await,
        (Route::Upload(name, None), &Method::POST) => uploads::start(&state, ctx, &caller, name, req).await,
        (Route::Upload(name, Some(id)), &Method::GET) => uploads::status(&state, name, id, req).await,
        (Route::Upload(name, Some(id)), &Method::PATCH) => uploads::patch(&state, name, id, req).await,
        (Route::Upload(name, Some(id)), &Method::PUT) => uploads::put(&state, ctx, name, id, req).await,
        (Route::Upload(name, Some(id)), &Method::DELETE) => uploads::cancel(&state, name, id, req).await,
        (Route::Manifest(name, r), &Method::GET | &Method::HEAD) => manifests::get(&state, ctx, name, r, req).await,
        (Route::Manifest(name, r), &Method::PUT) => manifests::put(&state, ctx, name, r, req).await,
        (Route::Manifest(name, r), &Method::DELETE) => manifests::delete(&state, ctx, name, r).await,
        (Route::ManifestNotATag(_, name), &Method::GET | &Method::HEAD | &Method::DELETE) => Err(manifests::not_a_tag_unknown(name)),
        (Route::ManifestNotATag(_, name), &Method::PUT) => Err(manifests::not_a_tag_refused(name)),
        (Route::Referrers(name, d), &Method::GET) => referrers::get(&state, name, d, req).await,
        (Route::Usage, &Method::GET) => usage::page(&state, &caller, req).await,
        (Route::RepoUsage(name), &Method::GET) => usage::repo(&state, name).await,
        (Route::Repository(name), &Method::DELETE) => retention::delete_repository(&state, ctx, name).await,
        (Route::Retention, &Method::GET | &Method::POST) => retention::report(&state, &caller, req).await,
        (Route::Gc, &Method::GET) => Ok(gc::status(&state)),
        (Route::Gc, &Method::POST) => gc::run(&state, ctx, req).await,
        (Route::NotFound, _) => Ok(not_found()),
        _ => Err(RegistryError::new(
            ErrorCode::Unsupported,
            format!("method {method} is not allowed here"),
        )),
    };
    let mut resp = without_body_for_head(result.unwrap_or_else(IntoResponse::into_response), &method);
    if let Some(user) = user {
        resp.extensions_mut().insert(user);
    }
    resp
}

/// The script for the address the client used: the URI's authority (HTTP/2) or the Host header.
fn trust_script(make: &TrustScript, req: &Request) -> Response {
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| request::header_str(req.headers(), "host"))
        .filter(|h| is_host_port(h));
    match host.and_then(|h| make(h)) {
        Some(script) => ([(axum::http::header::CONTENT_TYPE, "text/x-shellscript; charset=utf-8")], script).into_response(),
        None => error::json_error(
            StatusCode::BAD_REQUEST,
            "UNSUPPORTED",
            "the trust script needs the registry's address in the Host header",
        ),
    }
}

/// HEAD answers carry GET's headers (Content-Length included) but never a body.
fn without_body_for_head(mut resp: Response, method: &Method) -> Response {
    if method == Method::HEAD {
        *resp.body_mut() = Body::empty();
    }
    resp
}

/// The request body as a byte stream for the store.
fn body_stream(req: Request) -> crate::store::ByteStream {
    use futures::StreamExt;
    req.into_body().into_data_stream().map(|r| r.map_err(std::io::Error::other)).boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_host_ports_build_urls() {
        for ok in [
            "registry.example.com",
            "registry.example.com:5000",
            "localhost",
            "127.0.0.1:5000",
            "[::1]:5000",
            "[2001:db8::1]",
            "my_host:80",
        ] {
            assert!(is_host_port(ok), "{ok}");
        }
        for bad in [
            "",
            "evil.example/x?",
            "evil.example/x",
            "a?b",
            "a#b",
            "user@evil.example",
            "evil.example:5000/x",
            "a b",
            "a:",
            "a:99999",
            "a:80:80",
            "[::1",
            "[evil]:80",
            "[::1]x",
            "a..b",
            ".a",
            "%2F",
        ] {
            assert!(!is_host_port(bad), "{bad}");
        }
    }

    #[test]
    fn a_bad_host_never_reaches_a_location() {
        let urls = Urls::default();
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("evil.example/x?"));
        assert_eq!(urls.location(&h, "/auth/token"), "/auth/token");
        h.insert("host", HeaderValue::from_static("registry.example.com:5000"));
        assert_eq!(urls.location(&h, "/auth/token"), "http://registry.example.com:5000/auth/token");
    }
}
