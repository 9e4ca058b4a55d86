//! Steps 6 and 7: the registry API at /v2/, and logging in with the user's credentials.

use super::api::{self, Answer, Challenge, Endpoint, RequestError};
use super::clients::{self, Stored};
use super::go_verifier::{GoRulesVerifier, UNKNOWN_AUTHORITY};
use super::probe::TlsClient;
use super::report::Step;
use super::target::Target;
use super::tls_steps::client_cert_fix;
use super::Doctor;
use base64::Engine;
use rustls::AlertDescription;
use std::sync::Arc;

/// What GET /v2/ said.
pub enum Api {
    Open,
    Login(Challenge),
    Broken,
}

impl Doctor {
    /// Step 6.
    pub(super) async fn api(&mut self, ep: &Endpoint, client: &TlsClient) -> Api {
        let url = ep.url("/v2/");
        let answer = match ep.get("/v2/", None).await {
            Ok(a) => a,
            Err(e) => {
                self.push(request_failed(&url, &e, client, &self.t().registry_name()));
                return Api::Broken;
            }
        };
        let version_note = match answer.header("docker-distribution-api-version") {
            Some(v) => format!("Docker-Distribution-API-Version: {v}"),
            None => "no Docker-Distribution-API-Version header (registry:2 and wharf send registry/2.0)".to_string(),
        };
        match answer.status {
            200 => {
                let mut step = Step::ok("api", format!("GET {url} → 200: a registry that asks for no login")).detail(version_note);
                if !self.t().is_loopback_name() {
                    step = step.detail("anyone who can reach this address can push and pull; configure auth.htpasswd to require a login");
                }
                self.push(step);
                Api::Open
            }
            401 => match answer.header("www-authenticate").as_deref().and_then(Challenge::parse) {
                Some(ch) => {
                    let kind = if ch.is("bearer") { "token authentication" } else { "a login" };
                    self.push(Step::ok("api", format!("GET {url} → 401: the registry requires {kind}")).details([
                        format!("WWW-Authenticate: {ch}"),
                        format!("scheme: {}, realm: {}", ch.scheme, ch.param("realm").unwrap_or("(none)")),
                        version_note,
                    ]));
                    Api::Login(ch)
                }
                None => {
                    self.push(
                        Step::fail(
                            "api",
                            format!("GET {url} → 401 without a WWW-Authenticate challenge: clients cannot tell how to log in"),
                        )
                        .fix("configure authentication in the registry itself (auth.htpasswd), not in a proxy that drops the header"),
                    );
                    Api::Broken
                }
            },
            _ => {
                self.push(unexpected_status(&url, &answer, self.t()));
                Api::Broken
            }
        }
    }

    /// Step 7.
    pub(super) async fn credentials_step(&mut self, ep: &Endpoint, api: &Api, secure: bool) {
        let t = self.t().clone();
        let name = t.registry_name();
        let stored = match self.credentials.clone() {
            Some((user, password)) => Stored::Password {
                user,
                password,
                file: "--user / --password-stdin".into(),
            },
            None => clients::stored_credentials(&self.fs, &t),
        };
        let challenge = match api {
            Api::Broken => return,
            Api::Open => {
                if let Stored::Password { user, .. } = &stored {
                    self.push(Step::ok("credentials", format!("{user}: not needed, the registry lets anyone in")));
                }
                return;
            }
            Api::Login(ch) => ch.clone(),
        };
        let (user, password, source) = match stored {
            Stored::Password { user, password, file } => (user, password, file),
            Stored::Helper { helper, file } => {
                self.push(
                    Step::warn(
                        "credentials",
                        format!("the credentials for {name} are kept by docker-credential-{helper} ({file}); wharf does not read them"),
                    )
                    .fix(format!(
                        "check a password directly: wharf doctor {} --user USER --password-stdin",
                        t.host_port()
                    )),
                );
                return;
            }
            Stored::IdentityToken { file } => {
                self.push(
                    Step::warn(
                        "credentials",
                        format!("{file} holds an identity token for {name}, not a password; wharf does not use it"),
                    )
                    .fix(format!(
                        "check a password directly: wharf doctor {} --user USER --password-stdin",
                        t.host_port()
                    )),
                );
                return;
            }
            Stored::None { searched } => {
                self.push(
                    Step::warn(
                        "credentials",
                        "not logged in: pulls and pushes will fail with \"no basic auth credentials\" (Docker) or \
                         \"unauthorized: authentication required\"",
                    )
                    .detail(format!("no credentials for {name} in {}", searched.join(", ")))
                    .fix(format!(
                        "docker login {name} -u USER (podman login {name}); to test a password first: \
                         wharf doctor {} --user USER --password-stdin",
                        t.host_port()
                    )),
                );
                return;
            }
        };
        if !secure {
            self.push(
                Step::warn(
                    "credentials",
                    format!("{user}: password not sent, because no client here can verify this server"),
                )
                .detail("over an unverified or plain-HTTP connection to another machine the password could be read on the way")
                .fix("fix the problems above first, then run wharf doctor again"),
            );
            return;
        }
        let step = if challenge.is("basic") {
            self.basic_login(ep, &user, &password, &source).await
        } else if challenge.is("bearer") {
            self.bearer_login(ep, &challenge, &user, &password, &source).await
        } else {
            Step::fail(
                "credentials",
                format!(
                    "the registry asks for {} authentication, which container clients do not speak",
                    challenge.scheme
                ),
            )
        };
        self.push(step);
    }

    async fn basic_login(&self, ep: &Endpoint, user: &str, password: &str, source: &str) -> Step {
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        match ep.get("/v2/", Some(&auth)).await {
            Ok(a) => self.login_answer(&a, user, source, "GET /v2/ with these credentials"),
            Err(e) => Step::fail(
                "credentials",
                format!("GET {} with credentials failed: {}", ep.url("/v2/"), e.message),
            ),
        }
    }

    /// Docker's token flow: the realm gives a token for the credentials, /v2/ accepts it.
    async fn bearer_login(&self, ep: &Endpoint, ch: &Challenge, user: &str, password: &str, source: &str) -> Step {
        let Some(realm) = ch.param("realm") else {
            return Step::fail("credentials", "the Bearer challenge names no realm (token server)");
        };
        let Some(url) = api::parse_url(realm) else {
            return Step::fail("credentials", format!("the token realm {realm:?} is not an http(s) URL"));
        };
        let (token_ep, verifier) = match self.token_endpoint(ep, &url).await {
            Ok(e) => e,
            Err(step) => return *step,
        };
        let mut query = format!("account={}", api::encode(user));
        if let Some(service) = ch.param("service") {
            query.push_str(&format!("&service={}", api::encode(service)));
        }
        let sep = if url.path_and_query.contains('?') { '&' } else { '?' };
        let path = format!("{}{sep}{query}", url.path_and_query);
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        let answer = match token_ep.get(&path, Some(&auth)).await {
            Ok(a) => a,
            Err(e) => match verifier.and_then(|v| v.refusal()) {
                Some(why) => return token_certificate_refused(&ep.target, &url.target, &why),
                None => return Step::fail("credentials", format!("the token server {realm} did not answer: {}", e.message)),
            },
        };
        if answer.status != 200 {
            return self.login_answer(&answer, user, source, &format!("the token server {realm}"));
        }
        let doc: serde_json::Value = serde_json::from_slice(&answer.body).unwrap_or_default();
        let Some(token) = doc["token"].as_str().or_else(|| doc["access_token"].as_str()) else {
            return Step::fail("credentials", format!("the token server {realm} answered 200 without a token"));
        };
        match ep.get("/v2/", Some(&format!("Bearer {token}"))).await {
            Ok(a) => self.login_answer(&a, user, source, "GET /v2/ with the token"),
            Err(e) => Step::fail(
                "credentials",
                format!("GET {} with the token failed: {}", ep.url("/v2/"), e.message),
            ),
        }
    }

    /// Where to ask for a token: the registry's own connection when the realm is on it;
    /// otherwise a connection verified against this machine's CAs with Go's rules (the Go
    /// clients' own), since it carries the password; its verifier says why it refused.
    async fn token_endpoint(&self, ep: &Endpoint, url: &api::Url) -> Result<(Endpoint, Option<Arc<GoRulesVerifier>>), Box<Step>> {
        if url.target.host_port() == ep.target.host_port() && url.tls == ep.tls.is_some() {
            return Ok((ep.clone(), None));
        }
        let fail = |m: String| Box::new(Step::fail("credentials", m));
        let realm = url.target.host_port();
        let addr = tokio::net::lookup_host((url.target.host.as_str(), url.target.port))
            .await
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| fail(format!("the token server {realm} does not resolve")))?;
        if !url.tls && !addr.ip().is_loopback() {
            return Err(fail(format!(
                "the token server http://{realm} is plain HTTP: passwords would cross the network in clear"
            )));
        }
        let (tls, verifier) = match url.tls {
            false => (None, None),
            true => {
                let (client, verifier) = self
                    .verified_client(&ep.target, &url.target)
                    .map_err(|m| fail(format!("token server {realm}: {m}")))?;
                (Some(Arc::new(client)), Some(verifier))
            }
        };
        let endpoint = Endpoint {
            addr,
            target: url.target.clone(),
            tls,
            timeout: ep.timeout,
        };
        Ok((endpoint, verifier))
    }

    /// A TLS client that verifies the token server `t` as Go does, with the CAs Docker asks it
    /// with: the system's plus the *registry's* certs.d. Docker (loginV2 and pulls), containerd
    /// and containers/image fetch tokens over the registry's own transport, so certs.d for the
    /// token server's name plays no part.
    fn verified_client(&self, registry: &Target, t: &Target) -> Result<(TlsClient, Arc<GoRulesVerifier>), String> {
        let mut roots = clients::system_roots(&self.fs).map(|(_, r)| r).unwrap_or_default();
        for dir in clients::host_dirs(registry) {
            if let Some(cd) = clients::read_cert_dir(&self.fs, &format!("/etc/docker/certs.d/{dir}")) {
                roots.extend(cd.roots);
            }
        }
        let host = t.ip.map_or_else(|| t.host.clone(), |ip| ip.to_string());
        let verifier = GoRulesVerifier::new(roots, &host);
        Ok((TlsClient::with_verifier(t, verifier.clone(), None)?, verifier))
    }

    /// Judges the answer to an authenticated request.
    fn login_answer(&self, a: &Answer, user: &str, source: &str, what: &str) -> Step {
        let name = self.t().registry_name();
        let server_said = a.registry_error().map(|e| format!("the registry said: {e}"));
        match a.status {
            200 => Step::ok("credentials", format!("{user}: login accepted ({source})")),
            401 => {
                let mut fix = format!(
                    "log in again with the right password: docker login {name} -u {user}\n\
                     if the password is lost, set a new one on the registry's machine: wharf htpasswd set HTPASSWD_FILE {user}\n\
                     (HTPASSWD_FILE is auth.htpasswd.path / REGISTRY_AUTH_HTPASSWD_PATH; the registry reads the change without a restart)"
                );
                if source.starts_with('/') {
                    fix = format!("the password stored in {source} is not the right one\n{fix}");
                }
                Step::fail(
                    "credentials",
                    format!("unauthorized: wrong user name or password for {user} ({what} → 401)"),
                )
                .details(server_said)
                .fix(fix)
            }
            429 => Step::fail(
                "credentials",
                format!("toomanyrequests: {user} is rate-limited after failed logins ({what} → 429)"),
            )
            .details(server_said)
            .details(a.header("retry-after").map(|r| format!("Retry-After: {r} seconds")))
            .fix(format!("wait, then log in with the right password: docker login {name} -u {user}")),
            403 => Step::fail(
                "credentials",
                format!("denied: {user} logged in but may not use the registry ({what} → 403)"),
            )
            .details(server_said)
            .fix("grant the user access in the registry's access rules"),
            other => Step::fail("credentials", format!("{what} → {other}")).details(server_said),
        }
    }
}

/// A request that got no HTTP answer.
fn request_failed(url: &str, e: &RequestError, client: &TlsClient, name: &str) -> Step {
    let needs_client_cert = matches!(
        e.alert,
        Some(
            AlertDescription::CertificateRequired
                | AlertDescription::BadCertificate
                | AlertDescription::UnknownCA
                | AlertDescription::HandshakeFailure
        )
    ) && client.client_cert_requested();
    if needs_client_cert {
        let what = if client.client_cert_offered() {
            "the registry refused the client certificate from /etc/docker/certs.d (not signed by a CA in its http.tls.clientcas?)"
        } else {
            "the registry requires a client certificate (mutual TLS) and none is installed"
        };
        return Step::fail("api", format!("remote error: tls: certificate required — {what}"))
            .detail(e.message.clone())
            .fix(client_cert_fix(name));
    }
    Step::fail("api", format!("GET {url} failed: {}", e.message))
        .fix("look at the registry's log; a proxy in front of it may cut the connection")
}

fn unexpected_status(url: &str, a: &Answer, t: &Target) -> Step {
    let server = a.header("server").unwrap_or_default();
    let said = a.registry_error();
    let step = match a.status {
        403 if server.starts_with("AirTunes") => {
            return Step::fail("api", format!("GET {url} → 403 from {server}: port {} is macOS's AirPlay Receiver, not the registry", t.port))
                .fix("on macOS, port 5000 belongs to AirPlay: publish the registry on another port (-p 5001:5000, then use HOST:5001) or turn AirPlay Receiver off in System Settings > General > AirDrop & Handoff");
        }
        404 => Step::fail("api", format!("GET {url} → 404: this is not a registry API at /v2/")).fix(
            "something else answers on this port (another web server?): check the port; behind a reverse proxy, forward /v2/ \
             to the registry unchanged",
        ),
        429 => Step::fail(
            "api",
            format!("GET {url} → 429: toomanyrequests, the registry is rate-limiting this client"),
        )
        .fix("wait and retry; a login that keeps failing triggers this: check the credentials"),
        502..=504 => Step::fail(
            "api",
            format!("GET {url} → {}: a proxy answered, but the registry behind it did not", a.status),
        )
        .fix("start the registry behind the proxy, or correct the proxy's upstream address"),
        300..=399 => Step::warn(
            "api",
            format!(
                "GET {url} → {} redirect to {}",
                a.status,
                a.header("location").unwrap_or_else(|| "(no Location)".into())
            ),
        )
        .fix("use the address the registry redirects to, or serve /v2/ directly"),
        s => Step::fail(
            "api",
            format!("GET {url} → {s}: not the answer of a registry (200 or 401 expected)"),
        )
        .fix("check that this address and port are the registry's"),
    };
    let step = if server.is_empty() {
        step
    } else {
        step.detail(format!("Server: {server}"))
    };
    step.details(said.map(|s| format!("the server said: {s}")))
}

/// The token server's certificate, refused by Go's rules: Docker, containerd and podman would
/// not get a token either. An unknown authority is fixed by adding the token server's CA
/// where they look for it: the registry's certs.d (every `*.crt` there is a CA for Docker and
/// podman) or the system store; anything else by a new certificate for the token server.
fn token_certificate_refused(registry: &Target, t: &Target, why: &str) -> Step {
    let hp = t.host_port();
    let step = Step::fail(
        "credentials",
        format!("the token server {hp}'s certificate is refused: {why} (Docker, containerd and podman refuse it too)"),
    )
    .detail("the password was not sent");
    if why != UNKNOWN_AUTHORITY {
        return step.fix(format!(
            "give the token server {hp} a certificate Go clients accept (check it with: wharf cert inspect CERT --host {hp}), \
             then run wharf doctor again"
        ));
    }
    let dir = registry.host_port();
    step.detail(format!(
        "clients ask the token server with the registry's CAs: the system's and those in /etc/docker/certs.d/{dir}/"
    ))
    .fix(format!(
        "with the token server's CA certificate saved as token-ca.crt:\n\
         sudo mkdir -p /etc/docker/certs.d/{dir} && sudo cp token-ca.crt /etc/docker/certs.d/{dir}/token-ca.crt\n\
         sudo mkdir -p /etc/containers/certs.d/{dir} && sudo cp token-ca.crt /etc/containers/certs.d/{dir}/token-ca.crt"
    ))
}
