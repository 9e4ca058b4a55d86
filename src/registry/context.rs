//! Who asked for a registry operation and how: what events (and later an audit log) report. The
//! HTTP layer builds one per request; the domain only reads it.

/// The request behind an operation, with registry:2's notification fields in mind
/// (`actor.name`, `request.{id,addr,host,method,useragent}`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestContext {
    /// The authenticated user name (a token's subject); `None` for anonymous requests.
    pub actor: Option<String>,
    /// The client's address: the TCP peer (`ip:port`), or the address a trusted proxy forwarded.
    pub addr: String,
    /// Unique per request, so the events of one request can be told apart from another's.
    pub request_id: String,
    pub user_agent: String,
    /// The Host the client addressed.
    pub host: String,
    /// The HTTP method: registry:2 reports it, and a HEAD pull differs from a GET pull.
    pub method: String,
    /// Where the API is reached from the client's side (e.g. `https://host:5000/v2/`, or just
    /// `/v2/` with `http.relativeurls` or a Host header no URL may be built from), so events carry
    /// a URL to their target; empty for operations no client asked for: then events have none.
    pub api_base: String,
}

impl RequestContext {
    /// An operation no client asked for (maintenance, tests).
    pub fn internal() -> RequestContext {
        RequestContext {
            request_id: uuid::Uuid::new_v4().to_string(),
            ..RequestContext::default()
        }
    }
}
