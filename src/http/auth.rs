//! Authentication at the HTTP edge: reads the `Authorization` header, verifies the caller, and
//! decides whether the route's action is allowed. Two schemes, as in registry:2:
//!
//! - Basic (`auth.htpasswd`): the password is checked on every request; the access policy
//!   (`auth::policy`) decides. Refusals are 401 `UNAUTHORIZED` with `WWW-Authenticate: Basic`,
//!   403 `DENIED`, 429 `TOOMANYREQUESTS`.
//! - Token (`auth.token`): requests carry `Authorization: Bearer <JWT>`; the token's `access`
//!   claim decides. Refusals are 401 with `WWW-Authenticate: Bearer realm=…,service=…,scope=…`,
//!   plus `error="invalid_token"` for a bad token and `error="insufficient_scope"` for a good
//!   token that lacks the route's scope. The token endpoint itself is `http::token`.

use super::request::Route;
use super::Urls;
use crate::auth::token::{unix_now, Claims, Scope, TokenIssuer, TokenVerifier};
use crate::auth::{parse_authorization, Action, Credentials, Htpasswd, LoginLimiter, Policy};
use crate::oci::{ErrorCode, RegistryError, RepoName};
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// registry:2's defaults for failed logins are none; five tries a minute per client and user
/// stops password guessing without bothering someone who mistyped.
pub const MAX_FAILED_LOGINS: u32 = 5;
pub const FAILED_LOGIN_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

pub struct AuthState {
    pub policy: Policy,
    pub scheme: Scheme,
}

pub enum Scheme {
    Basic(Login),
    Token(Box<TokenAuth>),
}

/// Password checks against an htpasswd file, with failed attempts rate-limited per client and
/// user: Basic authentication and wharf's token endpoint share it.
pub struct Login {
    pub realm: String,
    pub htpasswd: Arc<Htpasswd>,
    pub limiter: LoginLimiter,
}

/// `auth.token`: what bearer tokens must be, and where clients get them.
pub struct TokenAuth {
    /// The token endpoint clients are sent to; empty: wharf's own `/auth/token` on the host the
    /// request was addressed to.
    pub realm: String,
    /// The `aud` tokens must carry, announced as `service` in challenges.
    pub service: String,
    /// The `iss` tokens must carry (and that wharf's own tokens carry).
    pub issuer: String,
    pub verifier: TokenVerifier,
    /// wharf's own token server (`auth.token.htpasswd`).
    pub server: Option<TokenServer>,
    /// How the default realm's URL is written.
    pub urls: Urls,
}

/// wharf as its own token server: logs users in and signs what the policy grants them.
pub struct TokenServer {
    pub signer: TokenIssuer,
    pub login: Login,
    pub ttl: Duration,
}

/// Who the request comes from once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Anonymous,
    User(String),
    /// The holder of a valid bearer token (its subject may be anonymous).
    Token(Box<Bearer>),
}

/// A verified token, as far as the request needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bearer {
    pub claims: Claims,
    /// The request lists the catalog with a token granting `registry:catalog:*` from an
    /// external token server: every repository name is shown, as registry:2 does.
    pub lists_catalog: bool,
}

impl Caller {
    pub fn user(&self) -> Option<&str> {
        match self {
            Caller::Anonymous => None,
            Caller::User(u) => Some(u),
            Caller::Token(b) => b.claims.subject.as_deref(),
        }
    }
}

/// What a route asks of the caller.
enum Need<'a> {
    /// Nothing (unknown paths answer 404 whoever asks).
    Nothing,
    /// Being someone the registry knows (`GET /v2/`, which clients use to learn the challenge).
    Login,
    /// The catalog: filtered per repository afterwards.
    Catalog,
    Repo(&'a RepoName, Action),
}

fn need<'a>(route: &'a Route, method: &Method) -> Need<'a> {
    let read = matches!(*method, Method::GET | Method::HEAD);
    match route {
        Route::NotFound => Need::Nothing,
        Route::Base => Need::Login,
        Route::Catalog => Need::Catalog,
        Route::Tags(n) | Route::Referrers(n, _) => Need::Repo(n, Action::Pull),
        Route::Blob(n, _) | Route::Manifest(n, _) if read => Need::Repo(n, Action::Pull),
        Route::Blob(n, _) | Route::Manifest(n, _) if *method == Method::DELETE => Need::Repo(n, Action::Delete),
        Route::Blob(n, _) | Route::Manifest(n, _) | Route::Upload(n, _) => Need::Repo(n, Action::Push),
    }
}

impl Need<'_> {
    /// The scope a token needs for this route, as registry:2 announces it: pushes ask for
    /// `pull,push` (clients request both), the catalog for `registry:catalog:*`.
    fn scope(&self) -> Option<Scope> {
        match self {
            Need::Nothing | Need::Login => None,
            Need::Catalog => Some(Scope::Catalog),
            Need::Repo(n, Action::Push) => Some(Scope::repository(n.as_str(), &["pull", "push"])),
            Need::Repo(n, a) => Some(Scope::repository(n.as_str(), &[a.as_str()])),
        }
    }

    /// registry:2's `detail` for 401 answers: the access the request needed.
    fn detail(&self) -> Option<serde_json::Value> {
        let (kind, name, action) = match self {
            Need::Nothing | Need::Login => return None,
            Need::Catalog => ("registry", "catalog", "*"),
            Need::Repo(n, a) => ("repository", n.as_str(), a.as_str()),
        };
        Some(serde_json::json!([{ "Type": kind, "Class": "", "Name": name, "Action": action }]))
    }
}

impl AuthState {
    /// Decides whether the request may go on; `Err` is the response to send instead.
    pub async fn authorize(&self, route: &Route, method: &Method, headers: &HeaderMap, client: Option<IpAddr>) -> Result<Caller, Response> {
        let need = need(route, method);
        let caller = match &self.scheme {
            Scheme::Basic(login) => login.authenticate(headers, client).await?,
            Scheme::Token(t) => t
                .authenticate(headers, &need)
                .map_err(|(error, message)| t.challenge(headers, &need, Some(error), &message))?,
        };
        if self.allowed(&need, &caller) {
            return Ok(caller);
        }
        Err(match (&self.scheme, &caller) {
            (Scheme::Basic(login), Caller::Anonymous) => login.challenge("authentication required"),
            (Scheme::Token(t), Caller::Token(_)) => t.challenge(
                headers,
                &need,
                Some("insufficient_scope"),
                "the token does not grant access to this resource",
            ),
            (Scheme::Token(t), _) => t.challenge(headers, &need, None, "authentication required: get a token from the realm"),
            (Scheme::Basic(_), c) => {
                let who = c.user().unwrap_or("anonymous");
                RegistryError::new(ErrorCode::Denied, format!("user {who} may not do this here")).into_response()
            }
        })
    }

    /// The one access decision: the token's claims for bearer callers, the policy otherwise.
    fn allowed(&self, need: &Need, caller: &Caller) -> bool {
        match (need, caller) {
            (Need::Nothing, _) => true,
            // With tokens, as in registry:2, every request carries one: anonymous access is
            // what the token endpoint grants anonymous users.
            (_, Caller::Anonymous) if matches!(self.scheme, Scheme::Token(_)) => false,
            (Need::Login, c) => *c != Caller::Anonymous,
            (Need::Catalog, Caller::Token(b)) => b.claims.allows_catalog(),
            (Need::Catalog, c) => self.policy.may_pull_anything(c.user()),
            (Need::Repo(repo, action), Caller::Token(b)) => b.claims.allows(repo.as_str(), *action),
            (Need::Repo(repo, action), c) => self.policy.allows(c.user(), repo.as_str(), *action),
        }
    }

    /// Whether the caller may read `repo` besides the route's own repository (catalog entries,
    /// the source of a cross-repository mount). wharf's own tokens were granted by the policy,
    /// so the policy answers for them too; an external token answers for itself.
    pub fn may_pull(&self, caller: &Caller, repo: &str) -> bool {
        match caller {
            Caller::Token(b) if !b.claims.issued_here => b.lists_catalog || b.claims.allows(repo, Action::Pull),
            c => self.policy.allows(c.user(), repo, Action::Pull),
        }
    }

    /// wharf's own token server, when it runs one.
    pub fn token_server(&self) -> Option<(&TokenAuth, &TokenServer)> {
        match &self.scheme {
            Scheme::Token(t) => t.server.as_ref().map(|s| (&**t, s)),
            Scheme::Basic(_) => None,
        }
    }
}

/// Why a login did not succeed.
pub enum LoginFailure {
    /// Too many recent failures for this client and user; retry after this long.
    TooMany(Duration),
    Invalid,
}

impl Login {
    async fn authenticate(&self, headers: &HeaderMap, client: Option<IpAddr>) -> Result<Caller, Response> {
        let creds = parse_authorization(headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()))
            .map_err(|e| self.challenge(&format!("invalid Authorization header: {e}")))?;
        let (user, password) = match creds {
            Credentials::None => return Ok(Caller::Anonymous),
            Credentials::Basic { user, password } => (user, password),
            Credentials::Bearer(_) => return Err(self.challenge("this registry uses Basic authentication")),
        };
        match self.check(&user, password, client).await {
            Ok(()) => Ok(Caller::User(user)),
            Err(failure) => Err(self.refusal(&user, failure)),
        }
    }

    /// Checks a password, counting failures against the client and user.
    pub async fn check(&self, user: &str, password: String, client: Option<IpAddr>) -> Result<(), LoginFailure> {
        let client = client.unwrap_or(IpAddr::from([0, 0, 0, 0]));
        self.limiter.check(client, user).map_err(LoginFailure::TooMany)?;
        // A recent success is in the cache: no bcrypt and no hop to a blocking thread.
        let ok = self.htpasswd.verify_cached(user, &password) || {
            let htpasswd = self.htpasswd.clone();
            let check_user = user.to_string();
            // bcrypt takes tens of milliseconds: keep it off the async threads.
            tokio::task::spawn_blocking(move || htpasswd.verify(&check_user, &password))
                .await
                .unwrap_or(false)
        };
        if ok {
            self.limiter.succeeded(client, user);
            Ok(())
        } else {
            self.limiter.failed(client, user);
            tracing::warn!(user = %user, client = %client, "failed login");
            Err(LoginFailure::Invalid)
        }
    }

    /// 429 or 401, as registry:2 answers a failed login.
    pub fn refusal(&self, user: &str, failure: LoginFailure) -> Response {
        match failure {
            LoginFailure::TooMany(retry) => {
                let msg = format!("too many failed logins for {user}; try again in {} seconds", retry.as_secs().max(1));
                RegistryError::new(ErrorCode::TooManyRequests, msg).into_response()
            }
            LoginFailure::Invalid => self.challenge("invalid username or password"),
        }
    }

    /// 401 with the Basic challenge, as registry:2 sends it.
    pub fn challenge(&self, message: &str) -> Response {
        let mut resp = RegistryError::new(ErrorCode::Unauthorized, message).into_response();
        let value = format!("Basic realm=\"{}\"", self.realm.replace('"', ""));
        if let Ok(v) = HeaderValue::from_str(&value) {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        resp
    }
}

impl TokenAuth {
    /// The caller a request's token shows; `Err` is the RFC 6750 error code and a message.
    fn authenticate(&self, headers: &HeaderMap, need: &Need) -> Result<Caller, (&'static str, String)> {
        let creds = parse_authorization(headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()))
            .map_err(|e| ("invalid_token", format!("invalid Authorization header: {e}")))?;
        let token = match creds {
            Credentials::Bearer(token) => token,
            // Not a token: the request is anonymous, so it gets the challenge (or its 404).
            Credentials::None | Credentials::Basic { .. } => return Ok(Caller::Anonymous),
        };
        match self.verifier.verify(&token, unix_now()) {
            Ok(claims) => Ok(Caller::Token(Box::new(Bearer {
                lists_catalog: matches!(need, Need::Catalog) && !claims.issued_here && claims.allows_catalog(),
                claims,
            }))),
            Err(e) => {
                tracing::info!(error = %e, "bearer token refused");
                Err(("invalid_token", e.to_string()))
            }
        }
    }

    /// The token endpoint clients are sent to for this request.
    pub fn realm_for(&self, headers: &HeaderMap) -> String {
        if !self.realm.is_empty() {
            return self.realm.clone();
        }
        self.urls.location(headers, super::token::PATH)
    }

    /// 401 with the Bearer challenge: realm, service, the route's scope, and the RFC 6750 error
    /// code when a token was sent.
    fn challenge(&self, headers: &HeaderMap, need: &Need, error: Option<&str>, message: &str) -> Response {
        let mut body = RegistryError::new(ErrorCode::Unauthorized, message);
        if let Some(detail) = need.detail() {
            body = body.with_detail(detail);
        }
        let mut resp = body.into_response();
        let quoted = |s: &str| s.replace(['"', '\\'], "");
        let mut value = format!(
            "Bearer realm=\"{}\",service=\"{}\"",
            quoted(&self.realm_for(headers)),
            quoted(&self.service)
        );
        if let Some(scope) = need.scope() {
            value.push_str(&format!(",scope=\"{scope}\""));
        }
        if let Some(error) = error {
            value.push_str(&format!(",error=\"{error}\""));
        }
        if let Ok(v) = HeaderValue::from_str(&value) {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        resp
    }
}
