//! wharf's own token server (`auth.token.htpasswd`): `GET /auth/token` as the Docker Registry
//! token specification describes it, and `POST /auth/token` with a form body as its OAuth2
//! part does.
//!
//! - `GET /auth/token?service=…&scope=…[&scope=…]&account=…&client_id=…&offline_token=…` with
//!   optional Basic credentials (what `docker login` and `docker push` send);
//! - `POST /auth/token` with `grant_type=password&username=…&password=…&service=…&scope=…`.
//!
//! Without credentials the token carries what the access policy grants anonymous users (and
//! `GET /v2/` accepts it, as registry:2 accepts any valid token there). Wrong credentials get
//! 401 with the Basic challenge; repeated failures get 429. The answer is
//! `{"token","access_token","expires_in","issued_at"}`; refresh tokens are not issued, so
//! clients keep using the password (Docker stores it either way when none is returned).

use super::auth::{AuthState, Login, LoginFailure, TokenAuth, TokenServer};
use super::{request, AppState};
use crate::auth::token::{grant, unix_now, Access, Scope};
use crate::auth::{parse_authorization, Credentials};
use crate::oci::{ErrorCode, RegistryError};
use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use std::net::IpAddr;

/// Where the token endpoint lives; challenges point here when `auth.token.realm` is empty.
pub const PATH: &str = "/auth/token";
/// Form bodies are a few hundred bytes; anything much larger is not a token request.
const MAX_FORM_LEN: usize = 64 * 1024;

/// A token request, whichever way it came.
struct TokenRequest {
    params: Vec<(String, String)>,
    /// `None`: anonymous.
    credentials: Option<(String, String)>,
    oauth: bool,
}

pub async fn handle(state: &AppState, req: Request) -> Response {
    let Some(auth) = state.auth.as_ref() else {
        return not_found();
    };
    let Some((token_auth, server)) = auth.token_server() else {
        return not_found();
    };
    let peer = req.extensions().get::<super::server::ClientAddr>().map(|c| c.0.ip());
    let client = auth.client(peer, req.headers());
    let parsed = match *req.method() {
        Method::GET => from_query(req).map_err(|message| server.login.challenge(&message)),
        Method::POST => from_form(req).await,
        _ => Err(RegistryError::new(ErrorCode::Unsupported, "the token endpoint answers GET and POST").into_response()),
    };
    let request = match parsed {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    issue(auth, token_auth, server, request, client).await
}

fn not_found() -> Response {
    super::error::json_error(StatusCode::NOT_FOUND, "UNSUPPORTED", "no such API endpoint")
}

/// GET: parameters in the query, credentials (if any) in a Basic `Authorization` header.
/// `Err` says why the header cannot be used.
fn from_query(req: Request) -> Result<TokenRequest, String> {
    let params = request::query(req.uri().query());
    let header = req.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes());
    let credentials = match parse_authorization(header) {
        Ok(Credentials::None) => None,
        Ok(Credentials::Basic { user, password }) => Some((user, password)),
        Ok(Credentials::Bearer(_)) => return Err("the token endpoint takes Basic credentials".into()),
        Err(e) => return Err(format!("invalid Authorization header: {e}")),
    };
    Ok(TokenRequest {
        params,
        credentials,
        oauth: false,
    })
}

/// POST: an `application/x-www-form-urlencoded` body with `grant_type=password`.
async fn from_form(req: Request) -> Result<TokenRequest, Response> {
    let body = axum::body::to_bytes(req.into_body(), MAX_FORM_LEN)
        .await
        .map_err(|_| oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "the form body is missing or too large"))?;
    let text =
        std::str::from_utf8(&body).map_err(|_| oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "the form body is not UTF-8"))?;
    let params = request::query(Some(text));
    match request::param(&params, "grant_type") {
        Some("password") => {}
        Some("refresh_token") => {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "this token server issues no refresh tokens; use grant_type=password",
            ))
        }
        _ => {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "grant_type must be password",
            ))
        }
    }
    let (Some(user), Some(password)) = (request::param(&params, "username"), request::param(&params, "password")) else {
        return Err(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "username and password are required",
        ));
    };
    // Same rule as for Basic credentials: the name reaches logs and the rate limiter.
    if user.chars().any(char::is_control) {
        return Err(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the user name contains a control character",
        ));
    }
    let credentials = Some((user.to_string(), password.to_string()));
    Ok(TokenRequest {
        params,
        credentials,
        oauth: true,
    })
}

async fn issue(auth: &AuthState, t: &TokenAuth, server: &TokenServer, req: TokenRequest, client: Option<IpAddr>) -> Response {
    if let Some(service) = request::param(&req.params, "service").filter(|s| *s != t.service) {
        let msg = format!(
            "this token server issues tokens for service {:?}, not {:?}",
            t.service,
            truncate(service)
        );
        return error_response(
            StatusCode::BAD_REQUEST,
            ErrorCode::Unsupported,
            &msg,
            req.oauth.then_some("invalid_request"),
        );
    }
    let user = match req.credentials {
        None => None,
        Some((user, password)) => match server.login.check(&user, password, client).await {
            Ok(()) => Some(user),
            Err(failure) => return login_refused(&server.login, &user, failure, req.oauth),
        },
    };
    let scopes = Scope::parse_all(req.params.iter().filter(|(k, _)| k == "scope").map(|(_, v)| v.as_str()));
    let access = grant(&scopes, user.as_deref(), &auth.policy);
    let now = unix_now();
    let token = match server
        .signer
        .issue_at(user.as_deref(), &t.service, &t.issuer, &access, server.ttl, now)
    {
        Ok(token) => token,
        Err(e) => {
            tracing::error!(error = %e, "cannot sign a token");
            return RegistryError::new(ErrorCode::Internal, "cannot sign a token").into_response();
        }
    };
    tracing::info!(user = user.as_deref().unwrap_or("<anonymous>"), granted = %describe(&access), "token issued");
    token_response(&token, &access, server.ttl.as_secs(), now, req.oauth)
}

fn token_response(token: &str, access: &[Access], ttl: u64, now: i64, oauth: bool) -> Response {
    let issued_at = time::OffsetDateTime::from_unix_timestamp(now)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default();
    let mut body = serde_json::json!({
        "token": token,
        "access_token": token,
        "expires_in": ttl,
        "issued_at": issued_at,
    });
    if oauth {
        body["scope"] = describe(access).into();
    }
    let mut resp = (StatusCode::OK, body.to_string()).into_response();
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    // A token is a credential: no cache may keep it (RFC 6749 section 5.1).
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

/// The granted access as scope strings (`repository:app:pull,push registry:catalog:*`), for
/// logs and the OAuth `scope` answer. Repositories granted nothing are left out.
fn describe(access: &[Access]) -> String {
    access
        .iter()
        .filter(|a| !a.actions.is_empty())
        .map(|a| format!("{}:{}:{}", a.kind, a.name, a.actions.join(",")))
        .collect::<Vec<_>>()
        .join(" ")
}

fn login_refused(login: &Login, user: &str, failure: LoginFailure, oauth: bool) -> Response {
    let mut resp = login.refusal(user, failure);
    if oauth && resp.status() == StatusCode::UNAUTHORIZED {
        // Keep the challenge header, give OAuth clients their error code as well.
        let with_oauth = error_response(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "invalid username or password",
            Some("invalid_grant"),
        );
        *resp.body_mut() = with_oauth.into_body();
        resp.headers_mut().remove(header::CONTENT_LENGTH);
    }
    resp
}

fn oauth_error(status: StatusCode, code: &str, description: &str) -> Response {
    error_response(status, ErrorCode::Unsupported, description, Some(code))
}

/// An error in the registry's JSON form `{"errors":[{"code","message"}]}`; for OAuth requests
/// the body also carries RFC 6749's `error` and `error_description`, so either kind of client
/// understands it.
fn error_response(status: StatusCode, code: ErrorCode, message: &str, oauth: Option<&str>) -> Response {
    let mut body = serde_json::json!({ "errors": [{ "code": code.as_str(), "message": message }] });
    if let Some(oauth) = oauth {
        body["error"] = oauth.into();
        body["error_description"] = message.into();
    }
    let mut resp = (status, body.to_string()).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn truncate(s: &str) -> String {
    s.chars().take(100).collect()
}
