//! The web UI at `/ui/`: server-rendered pages on the API's origin, behind the API's login and
//! access rules. A viewer sees only repositories they may pull, and delete buttons only where
//! they may delete; the delete handler checks the right again, whatever the page showed.
//!
//! Pages are HTML strings built here (`html` escapes every value); the stylesheet and the small
//! script (copy buttons, delete confirmation) are compiled in. The Content-Security-Policy
//! allows only those same-origin files: no inline script, no other origin.

mod assets;
mod delete;
mod html;
mod manifest;
mod repo;
mod repos;
mod status;

use super::auth::Caller;
use super::{request, server, AppState};
use crate::auth::Action;
use crate::oci::{ErrorCode, RegistryError};
use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::Instant;

/// The paths the UI answers: `/` sends browsers to it.
pub fn is_ui_path(path: &str) -> bool {
    path == "/" || path == "/ui" || path.starts_with("/ui/")
}

/// Who is looking, and what they may do.
pub struct Viewer {
    pub user: Option<String>,
    state: Arc<AppState>,
}

impl Viewer {
    /// The API's access rules; with no auth configured, everything (as the API allows).
    pub fn may(&self, action: Action, repo: &str) -> bool {
        self.state
            .auth
            .as_ref()
            .is_none_or(|a| a.ui_allows(self.user.as_deref(), repo, action))
    }

    /// Whether a delete button for `repo` can work: the right, and deletes enabled.
    pub fn may_delete(&self, repo: &str) -> bool {
        self.state.registry.deletes_enabled() && self.may(Action::Delete, repo)
    }

    fn header(&self) -> html::Header<'_> {
        html::Header {
            user: self.user.as_deref(),
            auth: self.state.auth.is_some(),
        }
    }

    /// A whole page with the viewer's header.
    pub fn page(&self, title: &str, body: &str) -> Response {
        html_response(StatusCode::OK, html::page(title, &self.header(), body))
    }

    /// The caller as the rest of the server names it (for the access log and events).
    fn caller(&self) -> Caller {
        self.user.clone().map_or(Caller::Anonymous, Caller::User)
    }
}

/// What a page failed with: a status and a message for people.
pub struct UiError {
    pub status: StatusCode,
    pub message: String,
}

impl UiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> UiError {
        UiError {
            status,
            message: message.into(),
        }
    }
}

impl From<RegistryError> for UiError {
    fn from(e: RegistryError) -> UiError {
        UiError::new(
            StatusCode::from_u16(e.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            e.message,
        )
    }
}

pub type PageResult = Result<Response, UiError>;

/// What a page reads of its request (the request itself cannot be held across awaits: its
/// body is not `Sync`).
pub struct Ask {
    pub params: Vec<(String, String)>,
    /// The host the browser used (`client_host`).
    pub host: String,
}

pub async fn handle(state: Arc<AppState>, req: Request) -> Response {
    let started = Instant::now();
    let path = req.uri().path().to_string();
    let mut resp = match path.as_str() {
        "/" | "/ui" => redirect("/ui/"),
        p if p.starts_with("/ui/assets/") => assets::serve(&p["/ui/assets/".len()..]),
        _ => answer(state, req, &path).await,
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    // How long the server took, for people and for the browser test (first page < 200 ms).
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    if let Ok(v) = HeaderValue::from_str(&format!("app;desc=\"render\";dur={ms:.1}")) {
        h.insert("server-timing", v);
    }
    resp
}

/// Logs the viewer in, then serves the page.
async fn answer(state: Arc<AppState>, req: Request, path: &str) -> Response {
    let user = match &state.auth {
        None => None,
        Some(auth) => {
            let peer = req.extensions().get::<server::ClientAddr>().map(|c| c.0.ip());
            match auth.ui_login(req.headers(), peer).await {
                Ok(user) => {
                    // Anonymous viewers get the login prompt unless they may see something
                    // (`access.anonymous`), and always on the explicit login link.
                    if user.is_none() && (path == "/ui/login" || !auth.policy.may_pull_anything(None)) {
                        return refusal_page(auth.ui_challenge());
                    }
                    user
                }
                Err(refusal) => return refusal_page(refusal),
            }
        }
    };
    let viewer = Viewer {
        user,
        state: state.clone(),
    };
    let method = req.method().clone();
    let ask = Ask {
        params: params(&req),
        host: client_host(&state, &req),
    };
    let result = match (&method, path) {
        (&Method::GET, "/ui/") => repos::page(&state, &viewer, &ask).await,
        (&Method::GET, "/ui/repo") => repo::page(&state, &viewer, &ask).await,
        (&Method::GET, "/ui/manifest") => manifest::page(&state, &viewer, &ask).await,
        (&Method::GET, "/ui/status") => status::page(&state, &viewer, &ask).await,
        (&Method::GET, "/ui/login") => Ok(redirect("/ui/")),
        (&Method::POST, "/ui/delete") => delete::post(&state, &viewer, req).await,
        (_, "/ui/" | "/ui/repo" | "/ui/manifest" | "/ui/status" | "/ui/login" | "/ui/delete") => Err(UiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not allowed here"),
        )),
        _ => Err(UiError::new(StatusCode::NOT_FOUND, "no such page")),
    };
    let mut resp = result.unwrap_or_else(|e| {
        let body = format!(
            "<p class=\"error\">{}</p><p><a href=\"/ui/\">Back to the repositories</a></p>",
            html::esc(&e.message)
        );
        let mut resp = viewer.page("Error", &body);
        *resp.status_mut() = e.status;
        resp
    });
    if let Some(user) = viewer.caller().user() {
        resp.extensions_mut().insert(super::User(user.to_string()));
    }
    resp
}

/// A refusal of the login (401 with its challenge, 429 with Retry-After) as a page: the same
/// status and headers, so the browser prompts again, with a message for people.
fn refusal_page(refusal: Response) -> Response {
    let (mut parts, _) = refusal.into_parts();
    let message = match parts.status {
        StatusCode::UNAUTHORIZED => "Log in with your registry user name and password.",
        StatusCode::TOO_MANY_REQUESTS => "Too many failed logins: wait a moment and try again.",
        _ => "The web UI cannot log you in with this registry's authentication.",
    };
    let body = html::page("Log in", &html::Header { user: None, auth: false }, &format!("<p>{message}</p>"));
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, body.into())
}

pub fn html_response(status: StatusCode, body: String) -> Response {
    let mut resp = (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response();
    // Pages show what one user may see: never kept by a shared cache.
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

pub fn redirect(to: &str) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// The query parameters of a request.
pub fn params(req: &Request) -> Vec<(String, String)> {
    request::query(req.uri().query())
}

/// The repository named by the `name` parameter, visible to the viewer. One the viewer may not
/// pull answers as one that does not exist, as the catalog hides it.
pub fn visible_repo(viewer: &Viewer, params: &[(String, String)]) -> Result<crate::oci::RepoName, UiError> {
    let raw = request::param(params, "name").unwrap_or_default();
    let unknown = || {
        UiError::from(RegistryError::new(
            ErrorCode::NameUnknown,
            format!("repository {:?} is not known to this registry", request::truncate(raw)),
        ))
    };
    let name = crate::oci::RepoName::parse(raw).ok_or_else(unknown)?;
    if !viewer.may(Action::Pull, name.as_str()) {
        return Err(unknown());
    }
    Ok(name)
}

/// The host the browser used, for the commands clients run (`docker pull HOST/NAME:TAG`):
/// `http.host`'s when configured, else the request's Host header when it is a plain host[:port].
pub fn client_host(state: &AppState, req: &Request) -> String {
    if let Some(host) = &state.urls.host {
        let host = host.split_once("://").map_or(host.as_str(), |(_, h)| h);
        return host.trim_end_matches('/').to_string();
    }
    req.uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| request::header_str(req.headers(), "host"))
        .filter(|h| super::is_host_port(h))
        .unwrap_or("REGISTRY")
        .to_string()
}
