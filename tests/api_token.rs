//! Docker Registry v2 token authentication, black-box through the real binary: wharf as its own
//! token server (`auth.token.htpasswd`) and as a registry trusting an external token server's
//! certificate (`auth.token.rootcertbundle`), driven with reqwest the way Docker drives it:
//! challenge on `/v2/`, token from the realm with Basic credentials, then Bearer requests.

mod common;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use common::Wharf;
use reqwest::header::HeaderMap;
use reqwest::{Method, Url};
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

const SERVICE: &str = "wharf-test";
const ISSUER: &str = "wharf-test-issuer";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// An access policy: public/** readable by anyone, alice may do everything, reader may pull.
const ACCESS: &str = "access:
  anonymous: {allow: [pull], repositories: ['public/**']}
  rules:
    - {repositories: ['**'], users: [alice], allow: [pull, push, delete]}
    - {repositories: ['**'], users: [reader], allow: [pull]}
";

// ---------------------------------------------------------------------------------------------
// Set-up

/// A running wharf with its configuration directory.
struct Setup {
    wharf: Wharf,
    client: Client,
    _dir: tempfile::TempDir,
}

fn write_htpasswd(path: &Path, users: &[(&str, &str)]) {
    let lines: String = users
        .iter()
        .map(|(u, p)| format!("{u}:{}\n", bcrypt::hash(p, 4).expect("bcrypt")))
        .collect();
    std::fs::write(path, lines).unwrap();
}

/// Starts wharf with `auth.token` set from `token` (YAML lines under `token:`), the access
/// policy above, deletes enabled.
fn start(token: &str, dir: tempfile::TempDir) -> Setup {
    let config = dir.path().join("config.yml");
    let token: String = token.lines().map(|l| format!("    {l}\n")).collect();
    let yaml = format!("version: 0.1\nstorage:\n  delete: {{enabled: true}}\nauth:\n  token:\n{token}{ACCESS}");
    std::fs::write(&config, yaml).unwrap();
    let wharf = Wharf::start_with(&[config.to_str().unwrap()], &[]);
    let client = Client::new(&wharf.url);
    Setup { wharf, client, _dir: dir }
}

/// wharf as its own token server; alice, reader (and carol for the rate limit) in htpasswd.
fn own_token_server() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    write_htpasswd(&htpasswd, &[("alice", "alice-pw"), ("reader", "reader-pw"), ("carol", "carol-pw")]);
    let token = format!("htpasswd: {}\nservice: {SERVICE}\nissuer: {ISSUER}\n", htpasswd.display());
    start(&token, dir)
}

// ---------------------------------------------------------------------------------------------
// HTTP

struct Client {
    base: Url,
    http: reqwest::Client,
}

struct Resp {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.show()))
    }

    fn show(&self) -> String {
        format!("{} {:?} {}", self.status, self.headers, String::from_utf8_lossy(&self.body))
    }

    fn expect(&self, status: u16) -> &Self {
        assert_eq!(self.status, status, "{}", self.show());
        self
    }

    /// The `WWW-Authenticate` Bearer challenge's parameters.
    fn challenge(&self) -> BTreeMap<String, String> {
        let value = self.header("www-authenticate");
        let params = value
            .strip_prefix("Bearer ")
            .unwrap_or_else(|| panic!("not a Bearer challenge: {}", self.show()));
        parse_challenge(params)
    }

    fn error_code(&self) -> String {
        self.json()["errors"][0]["code"].as_str().unwrap_or_default().to_string()
    }
}

/// `k="v",k2="v2"` (values never contain quotes here).
fn parse_challenge(params: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = params;
    while let Some((key, after)) = rest.split_once("=\"") {
        let (value, tail) = after.split_once('"').expect("closing quote");
        out.insert(key.trim_start_matches(',').trim().to_string(), value.to_string());
        rest = tail;
    }
    out
}

impl Client {
    fn new(base: &str) -> Client {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        Client {
            base: Url::parse(base).unwrap(),
            http,
        }
    }

    async fn send(&self, method: Method, target: &str, auth: Auth<'_>, headers: &[(&str, &str)], body: Vec<u8>) -> Resp {
        let url = self.base.join(target).unwrap();
        let mut req = self.http.request(method, url);
        req = match auth {
            Auth::None => req,
            Auth::Bearer(t) => req.bearer_auth(t),
            Auth::Basic(u, p) => req.basic_auth(u, Some(p)),
        };
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.body(body).send().await.unwrap();
        Resp {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: resp.bytes().await.unwrap().to_vec(),
        }
    }

    async fn get(&self, target: &str, auth: Auth<'_>) -> Resp {
        self.send(Method::GET, target, auth, &[], vec![]).await
    }

    /// A token the way Docker asks for one: GET on the realm with `account`, `client_id`,
    /// `offline_token`, `service` and the scopes, credentials as Basic.
    async fn docker_token(&self, realm: &str, user: Option<(&str, &str)>, scopes: &[&str]) -> Resp {
        let mut url = Url::parse(realm).unwrap();
        {
            let mut q = url.query_pairs_mut();
            if let Some((u, _)) = user {
                q.append_pair("account", u);
            }
            q.append_pair("client_id", "docker");
            q.append_pair("offline_token", "true");
            q.append_pair("service", SERVICE);
            for s in scopes {
                q.append_pair("scope", s);
            }
        }
        let auth = user.map_or(Auth::None, |(u, p)| Auth::Basic(u, p));
        self.send(Method::GET, url.as_str(), auth, &[], vec![]).await
    }

    /// A token granted to `user`, via the realm of the `/v2/` challenge.
    async fn token(&self, user: Option<(&str, &str)>, scopes: &[&str]) -> String {
        let realm = self.get("/v2/", Auth::None).await.challenge()["realm"].clone();
        let resp = self.docker_token(&realm, user, scopes).await;
        resp.expect(200);
        resp.json()["token"].as_str().unwrap().to_string()
    }

    /// Pushes a blob with POST + PUT; returns the final status (201 when it worked) and, when a
    /// step was refused, that response.
    async fn push_blob(&self, repo: &str, data: &[u8], token: &str) -> Resp {
        let start = self
            .send(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/"),
                Auth::Bearer(token),
                &[],
                vec![],
            )
            .await;
        if start.status != 202 {
            return start;
        }
        let mut url = self.base.join(start.header("location")).unwrap();
        url.query_pairs_mut().append_pair("digest", &digest(data));
        let headers = [("Content-Type", "application/octet-stream")];
        self.send(Method::PUT, url.as_str(), Auth::Bearer(token), &headers, data.to_vec())
            .await
    }

    /// Pushes a one-layer image as `repo:tag`; returns the manifest PUT's response.
    async fn push_image(&self, repo: &str, tag: &str, token: &str) -> Resp {
        let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let layer = format!("layer of {repo}").into_bytes();
        for blob in [&config[..], &layer[..]] {
            let r = self.push_blob(repo, blob, token).await;
            if r.status != 201 {
                return r;
            }
        }
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(config), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest(&layer), "size": layer.len()}],
        });
        let headers = [("Content-Type", OCI_MANIFEST)];
        let body = serde_json::to_vec(&manifest).unwrap();
        self.send(
            Method::PUT,
            &format!("/v2/{repo}/manifests/{tag}"),
            Auth::Bearer(token),
            &headers,
            body,
        )
        .await
    }

    async fn get_manifest(&self, repo: &str, tag: &str, token: &str) -> Resp {
        let headers = [("Accept", OCI_MANIFEST)];
        self.send(
            Method::GET,
            &format!("/v2/{repo}/manifests/{tag}"),
            Auth::Bearer(token),
            &headers,
            vec![],
        )
        .await
    }
}

#[derive(Clone, Copy)]
enum Auth<'a> {
    None,
    Bearer(&'a str),
    Basic(&'a str, &'a str),
}

fn digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

fn claims_of(token: &str) -> Value {
    let part = token.split('.').nth(1).expect("three-part token");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

// ---------------------------------------------------------------------------------------------
// wharf as its own token server

#[tokio::test]
async fn challenge_then_docker_style_login() {
    let s = own_token_server();
    let c = &s.client;

    // Anonymous ping: the Bearer challenge pointing at wharf's own token endpoint.
    let ping = c.get("/v2/", Auth::None).await;
    ping.expect(401);
    assert_eq!(ping.error_code(), "UNAUTHORIZED");
    assert_eq!(
        ping.header("www-authenticate"),
        format!("Bearer realm=\"{}/auth/token\",service=\"{SERVICE}\"", s.wharf.url)
    );
    assert_eq!(ping.header("docker-distribution-api-version"), "registry/2.0");

    // A route's challenge names its scope.
    let pull = c.get("/v2/team/app/manifests/latest", Auth::None).await;
    pull.expect(401);
    assert_eq!(pull.challenge()["scope"], "repository:team/app:pull");
    let upload = c.send(Method::POST, "/v2/team/app/blobs/uploads/", Auth::None, &[], vec![]).await;
    assert_eq!(upload.challenge()["scope"], "repository:team/app:pull,push");
    let catalog = c.get("/v2/_catalog", Auth::None).await;
    assert_eq!(catalog.challenge()["scope"], "registry:catalog:*");

    // docker login: wrong password, then the right one.
    let realm = ping.challenge()["realm"].clone();
    let wrong = c.docker_token(&realm, Some(("alice", "nope")), &[]).await;
    wrong.expect(401);
    assert_eq!(wrong.error_code(), "UNAUTHORIZED");
    assert!(wrong.header("www-authenticate").starts_with("Basic realm="), "{}", wrong.show());
    let unknown = c.docker_token(&realm, Some(("mallory", "x")), &[]).await;
    unknown.expect(401);

    let ok = c.docker_token(&realm, Some(("alice", "alice-pw")), &[]).await;
    ok.expect(200);
    assert!(ok.header("content-type").starts_with("application/json"));
    assert_eq!(ok.header("cache-control"), "no-store");
    let body = ok.json();
    let token = body["token"].as_str().unwrap();
    assert_eq!(body["access_token"], body["token"]);
    assert_eq!(body["expires_in"], 300);
    let issued_at = body["issued_at"].as_str().unwrap();
    time::OffsetDateTime::parse(issued_at, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("issued_at {issued_at:?} is not RFC 3339: {e}"));
    let claims = claims_of(token);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["aud"], SERVICE);
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["access"], json!([]));
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').next().unwrap()).unwrap()).unwrap();
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["typ"], "JWT");
    assert_eq!(header["kid"].as_str().unwrap().split(':').count(), 12);

    // The login's final step: /v2/ with the token.
    c.get("/v2/", Auth::Bearer(token)).await.expect(200);
    // Basic credentials are not accepted on the API itself, as with registry:2's token auth.
    let basic = c.get("/v2/", Auth::Basic("alice", "alice-pw")).await;
    basic.expect(401);
    assert!(basic.header("www-authenticate").starts_with("Bearer "));

    // Garbage and forged tokens.
    let garbage = c.get("/v2/", Auth::Bearer("not.a.token")).await;
    garbage.expect(401);
    assert_eq!(garbage.challenge()["error"], "invalid_token");
    assert!(!String::from_utf8_lossy(&garbage.body).contains("not.a.token"));
    let mut forged_claims = claims.clone();
    forged_claims["access"] = json!([{"type": "repository", "name": "team/app", "actions": ["push"]}]);
    let parts: Vec<&str> = token.split('.').collect();
    let forged = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(forged_claims.to_string()), parts[2]);
    let refused = c.get("/v2/team/app/tags/list", Auth::Bearer(&forged)).await;
    refused.expect(401);
    assert_eq!(refused.challenge()["error"], "invalid_token");
}

#[tokio::test]
async fn push_and_pull_with_tokens_follow_the_policy() {
    let s = own_token_server();
    let c = &s.client;
    let alice = Some(("alice", "alice-pw"));

    let token = c.token(alice, &["repository:team/app:pull,push"]).await;
    assert_eq!(
        claims_of(&token)["access"],
        json!([{"type": "repository", "name": "team/app", "actions": ["pull", "push"]}])
    );
    c.push_image("team/app", "v1", &token).await.expect(201);
    let got = c.get_manifest("team/app", "v1", &token).await;
    got.expect(200);
    assert_eq!(got.json()["schemaVersion"], 2);
    // The token is for team/app only.
    let elsewhere = c.push_image("team/other", "v1", &token).await;
    elsewhere.expect(401);
    assert_eq!(elsewhere.challenge()["error"], "insufficient_scope");
    assert_eq!(elsewhere.challenge()["scope"], "repository:team/other:pull,push");
    // Without delete in the token, DELETE is refused even though alice may delete.
    let digest = got.header("docker-content-digest").to_string();
    let del = c
        .send(
            Method::DELETE,
            &format!("/v2/team/app/manifests/{digest}"),
            Auth::Bearer(&token),
            &[],
            vec![],
        )
        .await;
    del.expect(401);
    assert_eq!(del.challenge()["scope"], "repository:team/app:delete");
    assert_eq!(del.challenge()["error"], "insufficient_scope");
    let star = c.token(alice, &["repository:team/app:*"]).await;
    assert_eq!(claims_of(&star)["access"][0]["actions"], json!(["pull", "push", "delete"]));

    // A pull-only user asking for push gets pull only; the push is refused, the pull works.
    let reader = c.token(Some(("reader", "reader-pw")), &["repository:team/app:pull,push"]).await;
    assert_eq!(claims_of(&reader)["access"][0]["actions"], json!(["pull"]));
    let refused = c.push_image("team/app", "v2", &reader).await;
    refused.expect(401);
    assert_eq!(refused.error_code(), "UNAUTHORIZED");
    let challenge = refused.challenge();
    assert_eq!(challenge["error"], "insufficient_scope");
    assert_eq!(challenge["scope"], "repository:team/app:pull,push");
    assert_eq!(challenge["service"], SERVICE);
    c.get_manifest("team/app", "v1", &reader).await.expect(200);

    // Anonymous tokens carry what the policy grants anonymous users: public/** pulls.
    c.push_image("public/base", "latest", &c.token(alice, &["repository:public/base:push"]).await)
        .await
        .expect(201);
    let anon = c
        .token(None, &["repository:public/base:pull,push", "repository:team/app:pull"])
        .await;
    let access = &claims_of(&anon)["access"];
    assert!(claims_of(&anon).get("sub").is_none());
    assert_eq!(access[0], json!({"type": "repository", "name": "public/base", "actions": ["pull"]}));
    assert_eq!(access[1], json!({"type": "repository", "name": "team/app", "actions": []}));
    c.get_manifest("public/base", "latest", &anon).await.expect(200);
    let private = c.get_manifest("team/app", "v1", &anon).await;
    private.expect(401);
    assert_eq!(private.challenge()["error"], "insufficient_scope");
    c.get("/v2/", Auth::Bearer(&anon)).await.expect(200);

    // The catalog needs registry:catalog:*, granted to authenticated users only.
    let no_catalog = c.get("/v2/_catalog", Auth::Bearer(&token)).await;
    no_catalog.expect(401);
    assert_eq!(no_catalog.challenge()["scope"], "registry:catalog:*");
    let listing = c.token(Some(("reader", "reader-pw")), &["registry:catalog:*"]).await;
    let repos = c.get("/v2/_catalog", Auth::Bearer(&listing)).await;
    repos.expect(200);
    assert_eq!(repos.json()["repositories"], json!(["public/base", "team/app"]));
    let anon_catalog = c.token(None, &["registry:catalog:*"]).await;
    assert_eq!(claims_of(&anon_catalog)["access"], json!([]));
}

#[tokio::test]
async fn scopes_in_one_parameter_and_invalid_ones() {
    let s = own_token_server();
    let c = &s.client;
    let realm = format!("{}/auth/token", s.wharf.url);
    let resp = c
        .docker_token(
            &realm,
            Some(("alice", "alice-pw")),
            &[
                "repository:a:pull repository:b:push",
                "nonsense",
                "repository:UPPER:pull",
                "registry:catalog:*",
            ],
        )
        .await;
    resp.expect(200);
    let access = &claims_of(resp.json()["token"].as_str().unwrap())["access"];
    assert_eq!(
        access,
        &json!([
            {"type": "repository", "name": "a", "actions": ["pull"]},
            {"type": "repository", "name": "b", "actions": ["push"]},
            {"type": "registry", "name": "catalog", "actions": ["*"]},
        ])
    );
    // Another service's token is not ours to issue.
    let mut url = Url::parse(&realm).unwrap();
    url.query_pairs_mut().append_pair("service", "someone-else");
    let other = c
        .send(Method::GET, url.as_str(), Auth::Basic("alice", "alice-pw"), &[], vec![])
        .await;
    other.expect(400);
}

#[tokio::test]
async fn oauth2_password_grant() {
    let s = own_token_server();
    let c = &s.client;
    let form = |user: &str, pw: &str, grant: &str| {
        let mut f = Url::parse("http://x/").unwrap();
        f.query_pairs_mut()
            .append_pair("grant_type", grant)
            .append_pair("username", user)
            .append_pair("password", pw)
            .append_pair("service", SERVICE)
            .append_pair("client_id", "wharf-test")
            .append_pair("scope", "repository:team/app:pull,push");
        f.query().unwrap().to_string().into_bytes()
    };
    let ctype = [("Content-Type", "application/x-www-form-urlencoded")];
    let ok = c
        .send(
            Method::POST,
            "/auth/token",
            Auth::None,
            &ctype,
            form("alice", "alice-pw", "password"),
        )
        .await;
    ok.expect(200);
    let body = ok.json();
    assert_eq!(body["scope"], "repository:team/app:pull,push");
    assert_eq!(body["expires_in"], 300);
    let token = body["access_token"].as_str().unwrap();
    c.push_image("team/app", "oauth", token).await.expect(201);

    let wrong = c
        .send(Method::POST, "/auth/token", Auth::None, &ctype, form("alice", "bad", "password"))
        .await;
    wrong.expect(401);
    assert_eq!(wrong.json()["error"], "invalid_grant");
    assert_eq!(wrong.error_code(), "UNAUTHORIZED");
    let refresh = c
        .send(
            Method::POST,
            "/auth/token",
            Auth::None,
            &ctype,
            form("alice", "alice-pw", "refresh_token"),
        )
        .await;
    refresh.expect(400);
    assert_eq!(refresh.json()["error"], "unsupported_grant_type");
    let missing = c
        .send(Method::POST, "/auth/token", Auth::None, &ctype, b"grant_type=password".to_vec())
        .await;
    missing.expect(400);
    assert_eq!(missing.json()["error"], "invalid_request");
    let control = c
        .send(
            Method::POST,
            "/auth/token",
            Auth::None,
            &ctype,
            form("alice\nforged log line", "x", "password"),
        )
        .await;
    control.expect(400);
    assert_eq!(control.json()["error"], "invalid_request");
    c.send(Method::PUT, "/auth/token", Auth::None, &[], vec![]).await.expect(405);
}

#[tokio::test]
async fn failed_logins_are_rate_limited() {
    let s = own_token_server();
    let c = &s.client;
    let realm = format!("{}/auth/token", s.wharf.url);
    let mut failures = 0;
    let mut limited = None;
    for _ in 0..20 {
        let r = c.docker_token(&realm, Some(("carol", "guess")), &[]).await;
        if r.status == 429 {
            limited = Some(r);
            break;
        }
        r.expect(401);
        failures += 1;
    }
    let limited = limited.expect("no 429 after 20 failed logins");
    assert!(failures >= 3, "limited after only {failures} failures");
    assert_eq!(limited.error_code(), "TOOMANYREQUESTS");
    // Even the right password waits now; other users are unaffected.
    c.docker_token(&realm, Some(("carol", "carol-pw")), &[]).await.expect(429);
    c.docker_token(&realm, Some(("alice", "alice-pw")), &[]).await.expect(200);
}

// ---------------------------------------------------------------------------------------------
// Tokens from an external token server

/// A token server's signing key and its self-signed certificate.
struct External {
    key: EcdsaKeyPair,
    cert_der: Vec<u8>,
    cert_pem: String,
}

impl External {
    fn new() -> External {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["tokens.example.com".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let rng = ring::rand::SystemRandom::new();
        let signing = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &key.serialize_der(), &rng).unwrap();
        External {
            key: signing,
            cert_der: cert.der().to_vec(),
            cert_pem: cert.pem(),
        }
    }

    /// libtrust's key ID (registry:2's `kid`): SHA-256 of the SubjectPublicKeyInfo, 30 bytes,
    /// base32, groups of four.
    fn kid(&self) -> String {
        let mut spki = hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").unwrap();
        spki.extend_from_slice(self.key.public_key().as_ref());
        let hash = Sha256::digest(&spki);
        let b32 = base32(&hash[..30]);
        b32.as_bytes()
            .chunks(4)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(":")
    }

    fn sign(&self, header: Value, claims: Value) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = self.key.sign(&ring::rand::SystemRandom::new(), input.as_bytes()).unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }

    fn token(&self, sub: &str, exp: i64, aud: &str, access: Value) -> String {
        let header = json!({"typ": "JWT", "alg": "ES256", "kid": self.kid()});
        let t = now();
        let claims = json!({"iss": ISSUER, "sub": sub, "aud": aud, "exp": exp, "nbf": t - 5, "iat": t - 5, "jti": "1", "access": access});
        self.sign(header, claims)
    }
}

fn base32(data: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let bits: Vec<bool> = data.iter().flat_map(|b| (0..8).rev().map(move |i| b >> i & 1 == 1)).collect();
    bits.chunks(5)
        .map(|c| {
            let v = c
                .iter()
                .chain(std::iter::repeat(&false))
                .take(5)
                .fold(0, |acc, &b| acc << 1 | b as usize);
            ALPHABET[v] as char
        })
        .collect()
}

fn push_pull(name: &str) -> Value {
    json!([{"type": "repository", "name": name, "actions": ["pull", "push"]}])
}

#[tokio::test]
async fn external_tokens_expiry_and_both_kinds_together() {
    let ext = External::new();
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle.pem");
    std::fs::write(&bundle, &ext.cert_pem).unwrap();
    let htpasswd = dir.path().join("htpasswd");
    write_htpasswd(&htpasswd, &[("alice", "alice-pw")]);
    let token = format!(
        "realm: https://auth.example.com/token\nservice: {SERVICE}\nissuer: {ISSUER}\nrootcertbundle: {}\nhtpasswd: {}\n",
        bundle.display(),
        htpasswd.display()
    );
    let s = start(&token, dir);
    let c = &s.client;

    // The configured realm is announced as is.
    let ping = c.get("/v2/", Auth::None).await;
    assert_eq!(ping.challenge()["realm"], "https://auth.example.com/token");

    // An external token, found by kid, grants what its claims say (policy aside: "ext" is
    // no rule's business here, and the subject is unknown to htpasswd).
    let good = ext.token("someone", now() + 300, SERVICE, push_pull("ext/app"));
    c.push_image("ext/app", "v1", &good).await.expect(201);
    c.get_manifest("ext/app", "v1", &good).await.expect(200);
    // The same key found through an x5c chain instead of kid.
    let x5c = ext.sign(
        json!({"alg": "ES256", "x5c": [STANDARD.encode(&ext.cert_der)]}),
        json!({"iss": ISSUER, "aud": [SERVICE], "exp": now() + 300, "access": push_pull("ext/app")}),
    );
    c.get_manifest("ext/app", "v1", &x5c).await.expect(200);

    // Expired beyond the minute of leeway, another audience, another key: invalid_token.
    let expired = ext.token("someone", now() - 120, SERVICE, push_pull("ext/app"));
    let other_aud = ext.token("someone", now() + 300, "elsewhere", push_pull("ext/app"));
    let stranger = External::new().token("someone", now() + 300, SERVICE, push_pull("ext/app"));
    for (what, t) in [("expired", &expired), ("audience", &other_aud), ("untrusted key", &stranger)] {
        let r = c.get_manifest("ext/app", "v1", t).await;
        assert_eq!(r.status, 401, "{what}: {}", r.show());
        assert_eq!(r.challenge()["error"], "invalid_token", "{what}");
        assert_eq!(r.challenge()["scope"], "repository:ext/app:pull", "{what}");
    }

    // wharf's own tokens are accepted alongside.
    let realm = format!("{}/auth/token", s.wharf.url);
    let own = c
        .docker_token(&realm, Some(("alice", "alice-pw")), &["repository:ext/app:pull"])
        .await;
    own.expect(200);
    c.get_manifest("ext/app", "v1", own.json()["token"].as_str().unwrap())
        .await
        .expect(200);

    // An external catalog token lists every repository, as registry:2 does.
    let catalog = ext.token(
        "someone",
        now() + 300,
        SERVICE,
        json!([{"type": "registry", "name": "catalog", "actions": ["*"]}]),
    );
    let list = c.get("/v2/_catalog", Auth::Bearer(&catalog)).await;
    list.expect(200);
    assert_eq!(list.json()["repositories"], json!(["ext/app"]));
}

#[tokio::test]
async fn external_token_server_only() {
    let ext = External::new();
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle.pem");
    std::fs::write(&bundle, &ext.cert_pem).unwrap();
    let token = format!(
        "realm: https://auth.example.com/token\nservice: {SERVICE}\nissuer: {ISSUER}\nrootcertbundle: {}\n",
        bundle.display()
    );
    let s = start(&token, dir);
    let c = &s.client;
    // No token endpoint of its own.
    let r = c.get("/auth/token", Auth::Basic("alice", "alice-pw")).await;
    r.expect(404);
    let ping = c.get("/v2/", Auth::None).await;
    assert_eq!(
        ping.header("www-authenticate"),
        format!("Bearer realm=\"https://auth.example.com/token\",service=\"{SERVICE}\"")
    );
    let good = ext.token("someone", now() + 300, SERVICE, push_pull("ext/app"));
    c.get("/v2/", Auth::Bearer(&good)).await.expect(200);
    c.push_image("ext/app", "v1", &good).await.expect(201);
    // A token for ext/app does not reach ext/other.
    let other = c.get_manifest("ext/other", "v1", &good).await;
    other.expect(401);
    assert_eq!(other.challenge()["error"], "insufficient_scope");

    // A mount without `from` finds the layer only in a repository the token grants pull on:
    // push on ext/copy alone gets an upload session, pull on ext/app as well gets the mount.
    let layer = digest(b"layer of ext/app");
    let mount = format!("/v2/ext/copy/blobs/uploads/?mount={layer}");
    let push_only = ext.token("someone", now() + 300, SERVICE, push_pull("ext/copy"));
    let r = c.send(Method::POST, &mount, Auth::Bearer(&push_only), &[], vec![]).await;
    r.expect(202);
    assert!(!r.header("docker-upload-uuid").is_empty(), "{}", r.show());
    let blob = format!("/v2/ext/copy/blobs/{layer}");
    c.get(&blob, Auth::Bearer(&push_only)).await.expect(404);
    let access = json!([
        {"type": "repository", "name": "ext/copy", "actions": ["pull", "push"]},
        {"type": "repository", "name": "ext/app", "actions": ["pull"]},
    ]);
    let with_source = ext.token("someone", now() + 300, SERVICE, access);
    let r = c.send(Method::POST, &mount, Auth::Bearer(&with_source), &[], vec![]).await;
    r.expect(201);
    assert_eq!(r.header("docker-content-digest"), layer);
    c.get(&blob, Auth::Bearer(&push_only)).await.expect(200);
}
