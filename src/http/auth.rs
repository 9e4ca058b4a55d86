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

use super::forwarded::TrustedProxies;
use super::request::Route;
use super::Urls;
use crate::auth::bcrypt_pool::BcryptPool;
use crate::auth::ratelimit::{Limits, Refusal};
use crate::auth::token::{unix_now, Claims, Scope, TokenIssuer, TokenVerifier};
use crate::auth::{parse_authorization, Action, Credentials, Htpasswd, LoginLimiter, Policy};
use crate::oci::{ErrorCode, RegistryError, RepoName};
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

pub struct AuthState {
    pub policy: Policy,
    pub scheme: Scheme,
    /// Whose `X-Forwarded-For` names the client the login limits count.
    pub proxies: TrustedProxies,
}

pub enum Scheme {
    Basic(Login),
    Token(Box<TokenAuth>),
}

/// Password checks against an htpasswd file, with failed attempts rate-limited per client and
/// user: Basic authentication and wharf's token endpoint share it. The limiter and the bcrypt
/// pool outlive a configuration reload, so a SIGHUP wipes neither a lockout nor the bound.
pub struct Login {
    pub realm: String,
    pub htpasswd: Arc<Htpasswd>,
    pub limiter: Arc<LoginLimiter>,
    /// The limits this configuration asks for: a reload applies them to the kept limiter
    /// once the whole new configuration is in place.
    pub limits: Limits,
    pub bcrypt: Arc<BcryptPool>,
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
    /// Registry-wide maintenance (a real retention run): the delete right on every repository,
    /// that is a rule for `*`.
    Admin,
    /// The right in every repository (registry-wide operations: garbage collection).
    Everywhere(Action),
}

fn need<'a>(route: &'a Route, method: &Method) -> Need<'a> {
    let read = matches!(*method, Method::GET | Method::HEAD);
    match route {
        Route::NotFound => Need::Nothing,
        Route::Gc => Need::Everywhere(Action::Delete),
        Route::Base => Need::Login,
        // Usage and the retention report are filtered per repository, as the catalog is.
        Route::Catalog | Route::Usage => Need::Catalog,
        Route::Retention if read => Need::Catalog,
        Route::Retention => Need::Admin,
        Route::RepoUsage(n) => Need::Repo(n, Action::Pull),
        Route::Repository(n) => Need::Repo(n, Action::Delete),
        Route::Tags(n) | Route::Referrers(n, _) => Need::Repo(n, Action::Pull),
        Route::Blob(n, _) | Route::Manifest(n, _) | Route::ManifestNotATag(n, _) if read => Need::Repo(n, Action::Pull),
        Route::Blob(n, _) | Route::Manifest(n, _) | Route::ManifestNotATag(n, _) if *method == Method::DELETE => {
            Need::Repo(n, Action::Delete)
        }
        Route::Blob(n, _) | Route::Manifest(n, _) | Route::ManifestNotATag(n, _) | Route::Upload(n, _) => Need::Repo(n, Action::Push),
    }
}

impl Need<'_> {
    /// The scope a token needs for this route, as registry:2 announces it: pushes ask for
    /// `pull,push` (clients request both), the catalog for `registry:catalog:*`.
    fn scope(&self) -> Option<Scope> {
        match self {
            Need::Nothing | Need::Login => None,
            Need::Catalog => Some(Scope::Catalog),
            Need::Admin => Some(Scope::repository("*", &["delete"])),
            Need::Repo(n, Action::Push) => Some(Scope::repository(n.as_str(), &["pull", "push"])),
            Need::Repo(n, a) => Some(Scope::repository(n.as_str(), &[a.as_str()])),
            Need::Everywhere(a) => Some(Scope::repository("*", &[a.as_str()])),
        }
    }

    /// registry:2's `detail` for 401 answers: the access the request needed.
    fn detail(&self) -> Option<serde_json::Value> {
        let (kind, name, action) = match self {
            Need::Nothing | Need::Login => return None,
            Need::Catalog => ("registry", "catalog", "*"),
            Need::Admin => ("repository", "*", "delete"),
            Need::Repo(n, a) => ("repository", n.as_str(), a.as_str()),
            Need::Everywhere(a) => ("repository", "*", a.as_str()),
        };
        Some(serde_json::json!([{ "Type": kind, "Class": "", "Name": name, "Action": action }]))
    }
}

impl AuthState {
    /// Decides whether the request may go on; `Err` is the response to send instead.
    /// `peer` is the TCP peer; behind a trusted proxy the client is read from its headers.
    pub async fn authorize(&self, route: &Route, method: &Method, headers: &HeaderMap, peer: Option<IpAddr>) -> Result<Caller, Response> {
        let need = need(route, method);
        let client = self.client(peer, headers);
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
            (Need::Admin, Caller::Token(b)) => b.claims.allows("*", Action::Delete),
            (Need::Admin, c) => self.policy.allows(c.user(), "*", Action::Delete),
            (Need::Repo(repo, action), Caller::Token(b)) => b.claims.allows(repo.as_str(), *action),
            (Need::Repo(repo, action), c) => self.policy.allows(c.user(), repo.as_str(), *action),
            // wharf's own tokens were granted by the policy, which answers for their subject;
            // an external token must grant the action on `*` itself.
            (Need::Everywhere(action), Caller::Token(b)) if b.claims.issued_here => {
                self.policy.allows_everywhere(b.claims.subject.as_deref(), *action)
            }
            (Need::Everywhere(action), Caller::Token(b)) => b.claims.allows("*", *action),
            (Need::Everywhere(action), c) => self.policy.allows_everywhere(c.user(), *action),
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

    /// The address the login limits count a request against.
    pub fn client(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        peer.map(|p| self.proxies.client(p, headers))
    }

    /// The login state a reload keeps: the limiter and bcrypt pool of each password check.
    pub fn login(&self) -> Option<&Login> {
        match &self.scheme {
            Scheme::Basic(login) => Some(login),
            Scheme::Token(t) => t.server.as_ref().map(|s| &s.login),
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
    /// Too many recent failures (or attempts still being checked) for this client or user;
    /// retry after this long.
    TooMany(Duration),
    /// Every bcrypt slot stayed taken by other logins; retry in a moment.
    Busy,
    Invalid,
}

/// How long a login waits for the same user's attempts in flight before it is refused, and
/// how often it looks again: a few bcrypt runs, and a fraction of one.
const IN_FLIGHT_WAIT: Duration = Duration::from_secs(3);
const IN_FLIGHT_POLL: Duration = Duration::from_millis(20);

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

    /// Checks a password. The attempt is counted against the client and user before bcrypt
    /// runs, and its outcome is reported from the blocking thread that ran it, so it is counted
    /// even when the client hangs up first.
    pub async fn check(&self, user: &str, password: String, client: Option<IpAddr>) -> Result<(), LoginFailure> {
        let client = client.unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let give_up = std::time::Instant::now() + IN_FLIGHT_WAIT;
        let attempt = loop {
            // A recent success is in the cache: no bcrypt, no hop to a blocking thread, and
            // nothing to count, since only a password that already passed bcrypt hits.
            if self.htpasswd.verify_cached(user, &password) {
                return Ok(());
            }
            match self.limiter.begin(client, user) {
                Ok(attempt) => break attempt,
                // Only attempts still being checked fill the limit: a burst of one user's
                // requests (parallel layer pulls, CI jobs starting together) before the first
                // success is cached. Wait for them rather than refuse; when one succeeds the
                // cache answers, and failures turn this into a refusal within a bcrypt run.
                Err(Refusal::InFlight) if std::time::Instant::now() < give_up => {
                    tokio::time::sleep(IN_FLIGHT_POLL).await;
                }
                Err(refusal) => return Err(LoginFailure::TooMany(refusal.retry_after())),
            }
        };
        let htpasswd = self.htpasswd.clone();
        let check_user = user.to_string();
        let outcome = self
            .bcrypt
            .run(move || {
                let ok = htpasswd.verify(&check_user, &password);
                if ok {
                    attempt.succeeded();
                } else {
                    attempt.failed();
                }
                ok
            })
            .await;
        match outcome {
            Some(true) => Ok(()),
            Some(false) => {
                tracing::warn!(user = %user, client = %client, "failed login");
                Err(LoginFailure::Invalid)
            }
            None => {
                tracing::warn!(user = %user, client = %client, "login refused: every password check slot is busy");
                Err(LoginFailure::Busy)
            }
        }
    }

    /// 429 or 401, as registry:2 answers a failed login.
    pub fn refusal(&self, user: &str, failure: LoginFailure) -> Response {
        let (msg, retry) = match failure {
            LoginFailure::TooMany(retry) => {
                let secs = whole_seconds(retry);
                (format!("too many failed logins for {user}; try again in {secs} seconds"), secs)
            }
            LoginFailure::Busy => ("too many logins are being checked right now; try again in 1 second".into(), 1),
            LoginFailure::Invalid => return self.challenge("invalid username or password"),
        };
        let mut resp = RegistryError::new(ErrorCode::TooManyRequests, msg).into_response();
        // The header says what the message says: clients that honour it retry when it is over.
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry));
        resp
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

/// A wait in whole seconds, rounded up, at least one: a client told "0" retries at once.
fn whole_seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
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
