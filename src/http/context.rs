//! The `RequestContext` of an API request: who sent it, from where, and which request it is.

use super::server::{ClientAddr, RequestId};
use super::{request, AppState};
use crate::registry::RequestContext;
use axum::extract::Request;

/// Built once the caller is known (`actor`: the authenticated user, if any). The request id is
/// the one the server gave the request (and the access log shows), or a new one for a router
/// used without that server.
pub fn of(state: &AppState, req: &Request, actor: Option<String>) -> RequestContext {
    let headers = req.headers();
    let text = |name: &str| request::header_str(headers, name).unwrap_or_default().to_string();
    RequestContext {
        actor,
        addr: client_addr(state, req),
        request_id: req
            .extensions()
            .get::<RequestId>()
            .map_or_else(|| uuid::Uuid::new_v4().to_string(), |id| id.0.clone()),
        user_agent: text("user-agent"),
        host: req.uri().authority().map(|a| a.to_string()).unwrap_or_else(|| text("host")),
        method: req.method().to_string(),
        api_base: state.urls.location(headers, "/v2/"),
    }
}

/// The TCP peer as `ip:port`, or the address a trusted proxy (`http.trustedproxies`) forwarded
/// for it; never what an untrusted client claims in `X-Forwarded-For`.
fn client_addr(state: &AppState, req: &Request) -> String {
    let Some(peer) = req.extensions().get::<ClientAddr>().map(|c| c.0) else {
        return String::new();
    };
    match state.auth.as_ref().and_then(|a| a.client(Some(peer.ip()), req.headers())) {
        Some(ip) if ip != peer.ip() => ip.to_string(),
        _ => peer.to_string(),
    }
}
