//! Docker Registry v2 token authentication ("authentication via central service"), free of HTTP.
//!
//! A client that meets `WWW-Authenticate: Bearer realm=…,service=…,scope=…` asks the token
//! server at `realm` for a token covering the scopes it needs, then sends it as
//! `Authorization: Bearer <token>`. The token is a compact JWS (a JWT) whose claims say who the
//! holder is (`sub`), for which registry (`aud`), by whom (`iss`), until when (`exp`, `nbf`) and
//! what it may do (`access`: `[{"type":"repository","name":"team/app","actions":["pull"]}]`).
//!
//! - [`Scope`]: the `scope` strings of challenges and token requests.
//! - [`TokenIssuer`]: wharf's own token server signs with an ECDSA P-256 key (ES256). The header's
//!   `kid` is the key's libtrust ID, which is how registry:2 (and registry:3, for compatibility)
//!   finds a trusted key, so wharf's tokens also validate on a registry:2 that trusts the key.
//! - [`TokenVerifier`]: checks tokens from wharf's own key and/or from the keys of the
//!   certificates in a `rootcertbundle` (an external token server such as docker_auth or
//!   Portus), as registry:2 does: signature, issuer, audience, validity period.
//! - [`grant`]: what wharf's token server puts in a token, given the access policy.
//!
//! Tokens are credentials: no error message or log line here contains one.

use super::token_keys::{self, JwkKey};
use super::{Action, Policy};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{self, EcdsaKeyPair, KeyPair, UnparsedPublicKey, VerificationAlgorithm};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::fmt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Longer bearer values are refused unread: real tokens are a few hundred bytes to a few KiB.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;
/// Clock skew tolerated on `exp` and `nbf`, as registry:2 does (RFC 7519 section 4.1.5).
pub const LEEWAY_SECS: i64 = 60;
/// Lifetime of the tokens wharf issues; Docker fetches a new one when it expires.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);
/// At most this many scopes are honoured per token request, which keeps tokens far below
/// [`MAX_TOKEN_LEN`] (a repository name is at most 255 characters).
pub const MAX_SCOPES: usize = 16;

// ---------------------------------------------------------------------------------------------
// Scopes

/// One `scope` item: `repository:<name>:<actions>` or `registry:catalog:*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// `repository[(class)]:<name>:<action>[,<action>…]`. `actions` keeps the known names
    /// (`pull`, `push`, `delete`, `*`) in request order; unknown ones are dropped.
    Repository {
        name: String,
        class: Option<String>,
        actions: Vec<String>,
    },
    /// `registry:catalog:*`: listing `/v2/_catalog`.
    Catalog,
}

impl Scope {
    /// Parses one scope; `None` for anything malformed (callers ignore those, like registry:2).
    pub fn parse(s: &str) -> Option<Scope> {
        // The name may itself contain ':' (`localhost:5000/app`), so type is cut at the first
        // ':' and the actions at the last.
        let (kind, rest) = s.split_once(':')?;
        let (name, actions) = rest.rsplit_once(':')?;
        let (kind, class) = split_class(kind)?;
        match kind {
            "repository" => {
                crate::oci::RepoName::parse(name)?;
                let actions = known_actions(actions);
                Some(Scope::Repository {
                    name: name.to_string(),
                    class,
                    actions,
                })
            }
            "registry" if name == "catalog" && actions.split(',').any(|a| a == "*") => Some(Scope::Catalog),
            _ => None,
        }
    }

    /// Every scope in `params` (each value may hold several, separated by spaces), invalid
    /// ones skipped, at most [`MAX_SCOPES`].
    pub fn parse_all<'a>(params: impl IntoIterator<Item = &'a str>) -> Vec<Scope> {
        params
            .into_iter()
            .flat_map(|p| p.split(' '))
            .filter(|s| !s.is_empty())
            .filter_map(Scope::parse)
            .take(MAX_SCOPES)
            .collect()
    }

    /// The scope of a repository and an action, as challenges announce it.
    pub fn repository(name: &str, actions: &[&str]) -> Scope {
        Scope::Repository {
            name: name.to_string(),
            class: None,
            actions: actions.iter().map(|a| a.to_string()).collect(),
        }
    }
}

/// `repository(plugin)` → (`repository`, `Some("plugin")`).
fn split_class(kind: &str) -> Option<(&str, Option<String>)> {
    let Some(open) = kind.find('(') else {
        return valid_word(kind).then_some((kind, None));
    };
    let class = kind[open + 1..].strip_suffix(')')?;
    let kind = &kind[..open];
    (valid_word(kind) && valid_word(class)).then(|| (kind, Some(class.to_string())))
}

fn valid_word(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
}

fn known_actions(list: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for a in list.split(',') {
        let known = a == "*" || a.parse::<Action>().is_ok();
        if known && !out.iter().any(|o| o == a) {
            out.push(a.to_string());
        }
    }
    out
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Repository { name, class, actions } => {
                f.write_str("repository")?;
                if let Some(c) = class {
                    write!(f, "({c})")?;
                }
                write!(f, ":{name}:{}", actions.join(","))
            }
            Scope::Catalog => f.write_str("registry:catalog:*"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Claims

/// One entry of a token's `access` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    #[serde(default)]
    pub actions: Vec<String>,
}

impl Access {
    fn grants(&self, kind: &str, name: &str, action: &str) -> bool {
        self.kind == kind && self.name == name && self.actions.iter().any(|a| a == action || a == "*")
    }
}

/// The verified claims of a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub issuer: String,
    /// `None` for anonymous tokens (no or empty `sub`).
    pub subject: Option<String>,
    pub expires_at: i64,
    pub access: Vec<Access>,
    /// Signed with wharf's own key (rather than a `rootcertbundle` key).
    pub issued_here: bool,
}

impl Claims {
    /// Whether the token lets its holder do `action` in repository `repo`.
    pub fn allows(&self, repo: &str, action: Action) -> bool {
        self.access.iter().any(|a| a.grants("repository", repo, action.as_str()))
    }

    /// Whether the token grants `registry:catalog:*`.
    pub fn allows_catalog(&self) -> bool {
        self.access.iter().any(|a| a.grants("registry", "catalog", "*"))
    }
}

/// The claims as they travel. Missing numbers are zero, as Go's decoder leaves them (so a
/// token without `exp` is expired); `aud` is a string or a list of strings (RFC 7519).
#[derive(Deserialize)]
struct WireClaims {
    #[serde(default)]
    iss: String,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    aud: Option<Audience>,
    #[serde(default)]
    exp: i64,
    #[serde(default)]
    nbf: i64,
    #[serde(default)]
    access: Option<Vec<Access>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, service: &str) -> bool {
        match self {
            Audience::One(a) => a == service,
            Audience::Many(list) => list.iter().any(|a| a == service),
        }
    }
}

#[derive(Serialize)]
struct IssuedClaims<'a> {
    iss: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<&'a str>,
    aud: &'a str,
    exp: i64,
    nbf: i64,
    iat: i64,
    jti: String,
    access: &'a [Access],
}

#[derive(Serialize, Deserialize)]
struct Header {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    typ: Option<String>,
    alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    x5c: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jwk: Option<serde_json::Value>,
}

// ---------------------------------------------------------------------------------------------
// Errors

/// Why a token is refused. The messages are safe to return to clients and to log: they never
/// contain the token or any part of it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is longer than {MAX_TOKEN_LEN} bytes")]
    TooLong,
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error("token signing algorithm is not supported (ES256, ES384, RS256, RS384, RS512 are)")]
    UnsupportedAlgorithm,
    #[error("token is signed by an untrusted key")]
    UntrustedKey,
    #[error("token signing certificate is not trusted: {0}")]
    UntrustedChain(&'static str),
    #[error("token signing algorithm does not match its key")]
    AlgorithmMismatch,
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token is from an untrusted issuer")]
    WrongIssuer,
    #[error("token is intended for another service")]
    WrongAudience,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("cannot sign a token")]
    Signing,
}

/// A key or certificate file that cannot be used; names the file and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct KeyFileError {
    pub path: String,
    pub message: String,
}

fn key_file_error(path: &Path, message: impl Into<String>) -> KeyFileError {
    KeyFileError {
        path: path.display().to_string(),
        message: message.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Key IDs

/// libtrust's key ID, which registry:2 looks tokens' `kid` up by: SHA-256 of the DER
/// SubjectPublicKeyInfo, first 240 bits, RFC 4648 base32 without padding (48 characters), in
/// 12 groups of 4 joined by ':'.
pub fn libtrust_key_id(spki_der: &[u8]) -> String {
    let hash = Sha256::digest(spki_der);
    let b32 = base32(&hash[..30]);
    let groups: Vec<&str> = b32.as_bytes().chunks(4).map(|c| std::str::from_utf8(c).unwrap_or("")).collect();
    groups.join(":")
}

/// RFC 4648 base32 (upper case, no padding).
fn base32(data: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(data.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &byte in data {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// RFC 7638 JWK thumbprint (SHA-256, base64url): the `kid` registry:3-era token servers may
/// send instead of the libtrust ID.
fn jwk_thumbprint(key: &PublicKey) -> String {
    let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
    let json = match key.kind {
        KeyKind::Rsa => {
            let (n, e) = key.rsa_parts.clone().unwrap_or_default();
            format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, b64(&e), b64(&n))
        }
        KeyKind::EcP256 | KeyKind::EcP384 => {
            // Uncompressed point: 0x04 || x || y.
            let coords = key.raw.get(1..).unwrap_or_default();
            let (x, y) = coords.split_at(coords.len() / 2);
            let crv = if key.kind == KeyKind::EcP256 { "P-256" } else { "P-384" };
            format!(r#"{{"crv":"{crv}","kty":"EC","x":"{}","y":"{}"}}"#, b64(x), b64(y))
        }
    };
    URL_SAFE_NO_PAD.encode(Sha256::digest(json.as_bytes()))
}

// ---------------------------------------------------------------------------------------------
// Issuing

/// DER prefix of a P-256 SubjectPublicKeyInfo (id-ecPublicKey, prime256v1, 65-byte BIT STRING);
/// the uncompressed point follows.
const P256_SPKI_PREFIX: &[u8] = &[
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01,
    0x07, 0x03, 0x42, 0x00,
];

/// Signs tokens with an ECDSA P-256 key (ES256).
pub struct TokenIssuer {
    key: EcdsaKeyPair,
    spki: Vec<u8>,
    kid: String,
    rng: SystemRandom,
}

impl fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenIssuer").field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl TokenIssuer {
    /// A fresh key, kept in memory only: tokens die with the process (the server keeps its key
    /// in a file instead, see [`TokenIssuer::load_or_create`]).
    pub fn generate() -> Result<Self, TokenError> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).map_err(|_| TokenError::Signing)?;
        Self::from_pkcs8(pkcs8.as_ref()).ok_or(TokenError::Signing)
    }

    /// The key in the PKCS#8 file at `path` (PEM `PRIVATE KEY`, or DER); when the file does
    /// not exist, a new key is generated and written there with mode 0600.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyFileError> {
        match std::fs::read(path) {
            Ok(bytes) => Self::from_file_bytes(&bytes)
                .ok_or_else(|| key_file_error(path, "not an ECDSA P-256 private key in PKCS#8 form (PEM \"PRIVATE KEY\" or DER)")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::create(path),
            Err(e) => Err(key_file_error(path, format!("cannot read: {e}"))),
        }
    }

    fn create(path: &Path) -> Result<Self, KeyFileError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let (pkcs8, pem) = new_pkcs8_pem().map_err(|m| key_file_error(path, m))?;
        let mut file = match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
            Ok(f) => f,
            // Another process created it in between: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Self::load_or_create(path),
            Err(e) => return Err(key_file_error(path, format!("cannot create: {e}"))),
        };
        file.write_all(pem.as_bytes())
            .and_then(|_| file.sync_all())
            .map_err(|e| key_file_error(path, format!("cannot write: {e}")))?;
        Self::from_pkcs8(&pkcs8).ok_or_else(|| key_file_error(path, "generated key is unusable"))
    }

    /// Replaces the key at `path` with a new one (mode 0600), atomically: a server reloading
    /// it reads the old key or the new one, never half a file. Tokens signed with the old key
    /// are refused by every server that loaded the new one.
    pub fn rotate(path: &Path) -> Result<Self, KeyFileError> {
        let (pkcs8, pem) = new_pkcs8_pem().map_err(|m| key_file_error(path, m))?;
        crate::tls::certs::write_atomic(path, pem.as_bytes(), 0o600).map_err(|e| key_file_error(path, format!("cannot write: {e}")))?;
        Self::from_pkcs8(&pkcs8).ok_or_else(|| key_file_error(path, "generated key is unusable"))
    }

    fn from_file_bytes(bytes: &[u8]) -> Option<Self> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::PrivatePkcs8KeyDer;
        match PrivatePkcs8KeyDer::from_pem_slice(bytes) {
            Ok(der) => Self::from_pkcs8(der.secret_pkcs8_der()),
            Err(_) => Self::from_pkcs8(bytes),
        }
    }

    fn from_pkcs8(der: &[u8]) -> Option<Self> {
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng).ok()?;
        let spki = [P256_SPKI_PREFIX, key.public_key().as_ref()].concat();
        let kid = libtrust_key_id(&spki);
        Some(TokenIssuer { key, spki, kid, rng })
    }

    /// The libtrust key ID that tokens carry as `kid`.
    pub fn key_id(&self) -> &str {
        &self.kid
    }

    /// The public key as a DER SubjectPublicKeyInfo.
    pub fn public_key_der(&self) -> &[u8] {
        &self.spki
    }

    /// A signed token for `subject` (`None`: anonymous) valid for `ttl` from now.
    pub fn issue(
        &self,
        subject: Option<&str>,
        audience: &str,
        issuer: &str,
        access: &[Access],
        ttl: Duration,
    ) -> Result<String, TokenError> {
        self.issue_at(subject, audience, issuer, access, ttl, unix_now())
    }

    /// As [`TokenIssuer::issue`], at a given time (seconds since the Unix epoch).
    pub fn issue_at(
        &self,
        subject: Option<&str>,
        audience: &str,
        issuer: &str,
        access: &[Access],
        ttl: Duration,
        now: i64,
    ) -> Result<String, TokenError> {
        let mut jti = [0u8; 16];
        self.rng.fill(&mut jti).map_err(|_| TokenError::Signing)?;
        let claims = IssuedClaims {
            iss: issuer,
            sub: subject.filter(|s| !s.is_empty()),
            aud: audience,
            exp: now.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)),
            nbf: now,
            iat: now,
            jti: hex::encode(jti),
            access,
        };
        let header = Header {
            typ: Some("JWT".into()),
            alg: "ES256".into(),
            kid: Some(self.kid.clone()),
            x5c: None,
            jwk: None,
        };
        let header = serde_json::to_vec(&header).map_err(|_| TokenError::Signing)?;
        let claims = serde_json::to_vec(&claims).map_err(|_| TokenError::Signing)?;
        let signing_input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(claims));
        let sig = self
            .key
            .sign(&self.rng, signing_input.as_bytes())
            .map_err(|_| TokenError::Signing)?;
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref())))
    }
}

/// A fresh P-256 key: its PKCS#8 DER and the PEM written to key files.
fn new_pkcs8_pem() -> Result<(Vec<u8>, String), &'static str> {
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
        .map_err(|_| "cannot generate a key")?;
    let pem = pem_encode("PRIVATE KEY", pkcs8.as_ref());
    Ok((pkcs8.as_ref().to_vec(), pem))
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap_or("")).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Verifying

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    EcP256,
    EcP384,
    Rsa,
}

/// A key that may sign tokens.
#[derive(Debug, Clone)]
struct PublicKey {
    kind: KeyKind,
    /// What ring verifies with: the uncompressed point, or the PKCS#1 RSAPublicKey DER.
    raw: Vec<u8>,
    /// RSA modulus and exponent without leading zeros (for the JWK thumbprint).
    rsa_parts: Option<(Vec<u8>, Vec<u8>)>,
    /// Names the token header may use for the key: libtrust ID and JWK thumbprint.
    ids: Vec<String>,
    /// The certificate it came from (DER), to match `x5c` headers; `None` for wharf's own key.
    cert: Option<Vec<u8>>,
}

impl PublicKey {
    /// Whether a JWK names this very key.
    fn is(&self, jwk: &JwkKey) -> bool {
        match (self.kind, jwk) {
            (KeyKind::EcP256, JwkKey::Ec { p384: false, point }) | (KeyKind::EcP384, JwkKey::Ec { p384: true, point }) => {
                self.raw == *point
            }
            (KeyKind::Rsa, JwkKey::Rsa { n, e }) => self.rsa_parts.as_ref().is_some_and(|(kn, ke)| kn == n && ke == e),
            _ => false,
        }
    }

    fn algorithm(&self, alg: &str) -> Result<&'static dyn VerificationAlgorithm, TokenError> {
        let algorithm: &'static dyn VerificationAlgorithm = match (alg, self.kind) {
            ("ES256", KeyKind::EcP256) => &signature::ECDSA_P256_SHA256_FIXED,
            ("ES384", KeyKind::EcP384) => &signature::ECDSA_P384_SHA384_FIXED,
            ("RS256", KeyKind::Rsa) => &signature::RSA_PKCS1_2048_8192_SHA256,
            ("RS384", KeyKind::Rsa) => &signature::RSA_PKCS1_2048_8192_SHA384,
            ("RS512", KeyKind::Rsa) => &signature::RSA_PKCS1_2048_8192_SHA512,
            _ => return Err(TokenError::AlgorithmMismatch),
        };
        Ok(algorithm)
    }
}

/// Verifies bearer tokens for one service.
#[derive(Debug, Clone)]
pub struct TokenVerifier {
    issuer: String,
    service: String,
    keys: Vec<PublicKey>,
}

impl TokenVerifier {
    /// A verifier that trusts no key yet; tokens must carry `iss == issuer` and have `service`
    /// among their audiences.
    pub fn new(issuer: &str, service: &str) -> Self {
        TokenVerifier {
            issuer: issuer.to_string(),
            service: service.to_string(),
            keys: Vec::new(),
        }
    }

    /// Trusts tokens signed by wharf's own issuer.
    pub fn trust_issuer(&mut self, issuer: &TokenIssuer) {
        self.keys.push(PublicKey {
            kind: KeyKind::EcP256,
            raw: issuer.key.public_key().as_ref().to_vec(),
            rsa_parts: None,
            ids: vec![issuer.kid.clone()],
            cert: None,
        });
    }

    /// Trusts the keys of the certificates in the PEM bundle at `path` (registry:2's
    /// `rootcertbundle`). Returns how many keys were added; a bundle without a usable
    /// certificate is an error, as registry:2 refuses to start then.
    pub fn trust_bundle_file(&mut self, path: &Path) -> Result<usize, KeyFileError> {
        let pem = std::fs::read(path).map_err(|e| key_file_error(path, format!("cannot read: {e}")))?;
        self.trust_bundle(&pem).map_err(|m| key_file_error(path, m))
    }

    /// As [`TokenVerifier::trust_bundle_file`], from the bundle's text.
    pub fn trust_bundle(&mut self, pem: &[u8]) -> Result<usize, String> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::CertificateDer;
        let mut added = 0;
        for (i, cert) in CertificateDer::pem_slice_iter(pem).enumerate() {
            let cert = cert.map_err(|e| format!("certificate {}: not valid PEM: {e}", i + 1))?;
            let key = key_of_certificate(&cert).map_err(|m| format!("certificate {}: {m}", i + 1))?;
            self.keys.push(key);
            added += 1;
        }
        if added == 0 {
            return Err("contains no PEM certificate (expected -----BEGIN CERTIFICATE-----)".into());
        }
        Ok(added)
    }

    /// Checks `token` at time `now` (seconds since the Unix epoch) and returns its claims.
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::TooLong);
        }
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(TokenError::Malformed("expected three dot-separated parts"));
        };
        let header: Header = decode_json(h, "header")?;
        let signature = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| TokenError::Malformed("signature is not base64url"))?;
        if !matches!(header.alg.as_str(), "ES256" | "ES384" | "RS256" | "RS384" | "RS512") {
            return Err(TokenError::UnsupportedAlgorithm);
        }
        let key = self.signing_key(&header, now)?;
        let signed = &token[..h.len() + 1 + c.len()];
        UnparsedPublicKey::new(key.algorithm(&header.alg)?, &key.raw)
            .verify(signed.as_bytes(), &signature)
            .map_err(|_| TokenError::BadSignature)?;
        // Only signed claims are read.
        let claims: WireClaims = decode_json(c, "claims")?;
        self.check_claims(claims, key.cert.is_none(), now)
    }

    /// The key that signed the token, in registry:2's order (see `token_keys`): the leaf of an
    /// `x5c` chain that leads to the bundle, else a `jwk` that is a trusted key (or the leaf of
    /// its own trusted chain), else the trusted key named by `kid`.
    fn signing_key(&self, header: &Header, now: i64) -> Result<Cow<'_, PublicKey>, TokenError> {
        if let Some(x5c) = header.x5c.as_ref().filter(|c| !c.is_empty()) {
            return self.chain_key(x5c, now).map(Cow::Owned);
        }
        if let Some(jwk) = &header.jwk {
            let (material, x5c) = token_keys::parse_jwk(jwk)?;
            return match x5c {
                None => self
                    .keys
                    .iter()
                    .find(|k| k.is(&material))
                    .map(Cow::Borrowed)
                    .ok_or(TokenError::UntrustedKey),
                Some(x5c) => {
                    let leaf = self.chain_key(&x5c, now)?;
                    match leaf.is(&material) {
                        true => Ok(Cow::Owned(leaf)),
                        false => Err(TokenError::UntrustedChain("the jwk is not the key of its x5c leaf")),
                    }
                }
            };
        }
        let kid = header.kid.as_deref().filter(|k| !k.is_empty()).ok_or(TokenError::UntrustedKey)?;
        self.keys
            .iter()
            .find(|k| k.ids.iter().any(|id| id == kid))
            .map(Cow::Borrowed)
            .ok_or(TokenError::UntrustedKey)
    }

    /// The key of an `x5c` chain's leaf, once the chain is verified against the bundle.
    fn chain_key(&self, x5c: &[String], now: i64) -> Result<PublicKey, TokenError> {
        let chain = token_keys::decode_chain(x5c)?;
        let roots: Vec<&[u8]> = self.keys.iter().filter_map(|k| k.cert.as_deref()).collect();
        let leaf = token_keys::verify_chain(&chain, &roots, now)?;
        key_of_certificate(&leaf).map_err(|_| TokenError::UntrustedChain("the x5c leaf's key is not RSA, P-256 or P-384"))
    }

    fn check_claims(&self, claims: WireClaims, issued_here: bool, now: i64) -> Result<Claims, TokenError> {
        if claims.iss != self.issuer {
            return Err(TokenError::WrongIssuer);
        }
        if !claims.aud.is_some_and(|a| a.contains(&self.service)) {
            return Err(TokenError::WrongAudience);
        }
        if now > claims.exp.saturating_add(LEEWAY_SECS) {
            return Err(TokenError::Expired);
        }
        if now < claims.nbf.saturating_sub(LEEWAY_SECS) {
            return Err(TokenError::NotYetValid);
        }
        Ok(Claims {
            issuer: claims.iss,
            subject: claims.sub.filter(|s| !s.is_empty()),
            expires_at: claims.exp,
            access: claims.access.unwrap_or_default(),
            issued_here,
        })
    }
}

fn decode_json<T: serde::de::DeserializeOwned>(part: &str, what: &'static str) -> Result<T, TokenError> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| {
        TokenError::Malformed(match what {
            "header" => "header is not base64url",
            _ => "claims are not base64url",
        })
    })?;
    serde_json::from_slice(&bytes).map_err(|_| {
        TokenError::Malformed(match what {
            "header" => "header is not the expected JSON",
            _ => "claims are not the expected JSON",
        })
    })
}

/// The signing key of a bundle certificate: RSA, or ECDSA on P-256 or P-384 (what ring
/// verifies).
fn key_of_certificate(der: &[u8]) -> Result<PublicKey, String> {
    use x509_parser::public_key::PublicKey as Parsed;
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let spki = cert.public_key();
    let (kind, raw, rsa_parts) = match spki.parsed() {
        Ok(Parsed::RSA(rsa)) => {
            let strip = |b: &[u8]| b[b.iter().position(|&x| x != 0).unwrap_or(b.len())..].to_vec();
            (
                KeyKind::Rsa,
                spki.subject_public_key.data.to_vec(),
                Some((strip(rsa.modulus), strip(rsa.exponent))),
            )
        }
        Ok(Parsed::EC(point)) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string());
            let kind = match curve.as_deref() {
                Some("1.2.840.10045.3.1.7") => KeyKind::EcP256,
                Some("1.3.132.0.34") => KeyKind::EcP384,
                _ => return Err("ECDSA key on a curve other than P-256 or P-384".into()),
            };
            (kind, point.data().to_vec(), None)
        }
        _ => return Err("key type is not RSA or ECDSA".into()),
    };
    let mut key = PublicKey {
        kind,
        raw,
        rsa_parts,
        ids: vec![libtrust_key_id(spki.raw)],
        cert: Some(der.to_vec()),
    };
    key.ids.push(jwk_thumbprint(&key));
    Ok(key)
}

// ---------------------------------------------------------------------------------------------
// Granting

/// What wharf's token server grants for `requested` scopes to `user` (`None`: anonymous):
/// per repository, the requested actions the policy allows (`*` asks for every action);
/// `registry:catalog:*` to authenticated users. Repeated scopes for one repository are merged.
/// Denied repositories stay listed with no actions, so the holder can see what was refused.
pub fn grant(requested: &[Scope], user: Option<&str>, policy: &Policy) -> Vec<Access> {
    let mut out: Vec<Access> = Vec::new();
    for scope in requested.iter().take(MAX_SCOPES) {
        match scope {
            Scope::Repository { name, actions, .. } => {
                let wanted = actions.iter().flat_map(|a| match a.as_str() {
                    "*" => Action::ALL.to_vec(),
                    other => other.parse().into_iter().collect(),
                });
                let allowed: Vec<String> = wanted
                    .filter(|a| policy.allows(user, name, *a))
                    .map(|a| a.as_str().to_string())
                    .collect();
                let i = match out.iter().position(|e| e.kind == "repository" && &e.name == name) {
                    Some(i) => i,
                    None => {
                        out.push(Access {
                            kind: "repository".into(),
                            name: name.clone(),
                            actions: Vec::new(),
                        });
                        out.len() - 1
                    }
                };
                for a in allowed {
                    if !out[i].actions.contains(&a) {
                        out[i].actions.push(a);
                    }
                }
            }
            Scope::Catalog if user.is_some() => {
                if !out.iter().any(|e| e.kind == "registry") {
                    out.push(Access {
                        kind: "registry".into(),
                        name: "catalog".into(),
                        actions: vec!["*".into()],
                    });
                }
            }
            Scope::Catalog => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::RsaKeyPair;

    const SERVICE: &str = "registry.example.com";
    const ISSUER: &str = "wharf-tokens";
    const NOW: i64 = 1_700_000_000;

    /// A fixed P-256 key. Its key ID was computed outside this code, in a shell with OpenSSL
    /// and coreutils:
    /// `openssl pkey -in k.pem -pubout -outform DER | openssl dgst -sha256 -binary | head -c 30
    ///  | base32 | tr -d = | sed 's/..../&:/g; s/:$//'`
    /// and its RFC 7638 thumbprint by hashing `{"crv":"P-256","kty":"EC","x":…,"y":…}` built from
    /// the last 64 bytes of that DER with `openssl dgst -sha256 -binary | base64 | tr '+/' '-_'`.
    const EC_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgms+E0Txvqpdtj/8y
51dSCzxOtZTiCaKeizmIrQrHOtChRANCAATSayoIP6hgVokQ7FEvpx69+ZLuaIM8
CwpdlxUbKbfeeJSMYYTjvt6M16fIgd4ZjCN7HdPZ3xHkHP6AFUW/Bq2j
-----END PRIVATE KEY-----
";
    const EC_KEY_ID: &str = "MTN4:O3NH:HNPF:4ZU6:EUEX:EE6E:BBP5:6NJU:GNWU:RLA7:2XBO:Q6RQ";
    const EC_THUMBPRINT: &str = "BLS6IFGfVeXxde0BeUnAHuIsBWqJn_So73JsWkNMoG8";

    /// A fixed RSA-2048 key (`openssl genpkey -algorithm RSA`), with its libtrust ID computed
    /// as above and its thumbprint from `{"e":"AQAB","kty":"RSA","n":…}`, `n` taken from
    /// `openssl rsa -noout -modulus`.
    const RSA_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCZacaoJW5xR6Ro
h0U1yulMws+Kx9tBXgMUs4ipYZXk24JwD3IvNo7LnsVTXUK3yQcgPqAMV36BUQ2J
MP27RHBgvmZZBlxUOIIC7jYHjzmc55vRgkWw9QN4a+hR/dgGsmiYL4ioji8zC5pv
UXlUUykdt32HeuxWMMXMII2NLJKSKaOchKHbr+5Uo1WjjPpvZdED6oKAM7jyKIBW
kwF30JNc7PacQrTJmsZUA3R57269/dabkuKnc69aqIOsuX4MRwmULeBf1nnAeidh
pChwbjVtRCmDKXfZ7dqMcWkTwsOv0lEOCOPqQbTa30EePbGklRxtUtCI5oI+jClI
R4x2l13JAgMBAAECggEAAYg5uTnP7fr3N7XZKmd8tmJrzyvj3LXWh27Ku5xidjaB
rHfr/fuv9ZRVWZAe96N2PQegLMgbRzz7WnGOLPpmB7S1ZGsga2psNZ0pa5Tgc00K
jMOOVVnR7HocBCLx7TeuIbyJfX5s0Rkdcl1nLpZxDzHq38fXYDgEie7mBaw4f3yi
kvtdd1vWOv3Kqy+g3OiEcLk5SefZthDKS3O8eweXg4QV1KRLh6/A9ujgrx+6VpJb
g3LSMl2+U6RqLnwX3oY5pXg+qRwG8ltiGBMKurvqBPtXWzU0AB4l+0GrZW21ytUq
A8us8LKQ0uFXJ1R6j8xgWCbff+VM65o4NyGQEGkGPQKBgQDYOD0XRi630Gzi9MMn
wqEU+GkN4I1EJXZOax12NQ7mlZXrajLDy5Ce8uB1TKVecYGdiuUbghs5MUW1fGs1
EHYltVt/ZpegfdOCYm4xeR/fcCmkGuWtJ/1QV8QTzr2Vnh2rgncNFnrx9l2EqFuO
n56lcOW26Jf3IDr2TXpAWy6dewKBgQC1o2fISfgojOdY/teBUs1hfkL6DgNEpwXN
meD6DcKEaiW4gF6M5/FFGDwtFKQgibQS25dosSTw1lSjvLVhjJd4N0JzmO+/WtfS
TrX//YmcgPZz0SEgAG1gwO7Dh5naYWH29pZsNhJstI8RmETKhxQ0ttOqNZI4swKV
E0HcRDrUiwKBgHmLu8PenxqTnvJCV4Z9YaHxNtUnOyJo0MWqb0ho8TRsOHe7Hkh0
oZrIu6cU7A1YT12pm7tH+1e+PAqWo4mT9GakOYg3utrsgL7V6E4FYgZv/eiTejNJ
vJuyirX7zRVTaihk0dnYnkpwjQeqwLU/Q6aK/YdB31N7mcmlqiiNWXoLAoGAayc4
5Fluwk1NdZzxeWNlsewQiv+VQfzeWYo7xIg1hnQwSIXCQZHbLY28gkO5B1D1IGLX
EXXfewyV5fo/borIGK1Q0G0akmJ/C5xPlfL2KZOS0IRA7GYUII3wzPzD8KaealjS
KIhFmkdyV0ji3C+P5gEtIS51UmmYTmWL5uuBYT0CgYEAl6LuuRpYEXt7iOC2Hw4j
nZMVc0qrKuowmOygBg2MD6Ad/zVDxDjV7m/zKh//VfzOcBlCyPbmo+rctl7gHkhM
0IAWSDDSgvC9ktDPswTbb/2wvSZ15KtKURCqHYC9BMOsIsGXD4J2vrwHRQ6xbdhP
1coVAiUeR1VsFchypCLup7o=
-----END PRIVATE KEY-----
";
    const RSA_KEY_ID: &str = "D6GY:KVYP:7FGQ:L2ZF:YAZO:V4CT:4PIZ:UDZQ:IJNZ:JRNN:3KTL:LPCO";
    const RSA_THUMBPRINT: &str = "iEB3rPCuAmh8TUkQQivrBF8oubbp4RqFErUanfDlfwM";

    fn pkcs8_der(pem: &str) -> Vec<u8> {
        use rustls_pki_types::pem::PemObject;
        rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .secret_pkcs8_der()
            .to_vec()
    }

    /// A self-signed certificate for a PKCS#8 key, as a token server's operator would make.
    fn certificate(pkcs8: &[u8]) -> Vec<u8> {
        let key = rcgen::KeyPair::try_from(pkcs8).unwrap();
        let params = rcgen::CertificateParams::new(vec!["tokens.example.com".to_string()]).unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    fn pem_cert(der: &[u8]) -> String {
        pem_encode("CERTIFICATE", der)
    }

    /// Some signer other than wharf's own code, for tokens from "external" servers.
    enum Signer {
        Ec(EcdsaKeyPair),
        Rsa(RsaKeyPair, &'static dyn signature::RsaEncoding),
    }

    impl Signer {
        fn ec(pkcs8: &[u8], alg: &'static signature::EcdsaSigningAlgorithm) -> Signer {
            Signer::Ec(EcdsaKeyPair::from_pkcs8(alg, pkcs8, &SystemRandom::new()).unwrap())
        }

        fn rsa(pkcs8: &[u8], alg: &'static dyn signature::RsaEncoding) -> Signer {
            Signer::Rsa(RsaKeyPair::from_pkcs8(pkcs8).unwrap(), alg)
        }

        fn sign(&self, msg: &[u8]) -> Vec<u8> {
            let rng = SystemRandom::new();
            match self {
                Signer::Ec(k) => k.sign(&rng, msg).unwrap().as_ref().to_vec(),
                Signer::Rsa(k, alg) => {
                    let mut sig = vec![0; k.public().modulus_len()];
                    k.sign(*alg, &rng, msg, &mut sig).unwrap();
                    sig
                }
            }
        }
    }

    fn forge(header: serde_json::Value, claims: serde_json::Value, signer: &Signer) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = signer.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    fn claims_json() -> serde_json::Value {
        serde_json::json!({
            "iss": ISSUER, "sub": "alice", "aud": SERVICE,
            "exp": NOW + 300, "nbf": NOW, "iat": NOW, "jti": "x",
            "access": [{"type": "repository", "name": "team/app", "actions": ["pull", "push"]}]
        })
    }

    fn fixed_issuer() -> TokenIssuer {
        TokenIssuer::from_file_bytes(EC_KEY_PEM.as_bytes()).unwrap()
    }

    fn own_verifier(issuer: &TokenIssuer) -> TokenVerifier {
        let mut v = TokenVerifier::new(ISSUER, SERVICE);
        v.trust_issuer(issuer);
        v
    }

    fn pull_push(name: &str) -> Vec<Access> {
        vec![Access {
            kind: "repository".into(),
            name: name.into(),
            actions: vec!["pull".into(), "push".into()],
        }]
    }

    fn part_json(token: &str, i: usize) -> serde_json::Value {
        let part = token.split('.').nth(i).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    #[test]
    fn base32_matches_rfc4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ] {
            assert_eq!(base32(input.as_bytes()), want, "{input:?}");
        }
    }

    #[test]
    fn key_id_matches_the_independently_computed_vector() {
        let issuer = fixed_issuer();
        assert_eq!(issuer.key_id(), EC_KEY_ID);
        // Same key from DER, and the SPKI is the one OpenSSL writes (91 bytes for P-256).
        let again = TokenIssuer::from_file_bytes(&pkcs8_der(EC_KEY_PEM)).unwrap();
        assert_eq!(again.key_id(), EC_KEY_ID);
        assert_eq!(issuer.public_key_der().len(), 91);
        assert_eq!(libtrust_key_id(issuer.public_key_der()), EC_KEY_ID);
        let shape = EC_KEY_ID.split(':').collect::<Vec<_>>();
        assert_eq!(shape.len(), 12);
        assert!(shape.iter().all(|g| g.len() == 4));
    }

    #[test]
    fn bundle_keys_are_known_by_libtrust_id_and_thumbprint() {
        let ec = key_of_certificate(&certificate(&pkcs8_der(EC_KEY_PEM))).unwrap();
        assert_eq!(ec.ids, vec![EC_KEY_ID.to_string(), EC_THUMBPRINT.to_string()]);
        assert_eq!(ec.kind, KeyKind::EcP256);
        let rsa = key_of_certificate(&certificate(&pkcs8_der(RSA_KEY_PEM))).unwrap();
        assert_eq!(rsa.ids, vec![RSA_KEY_ID.to_string(), RSA_THUMBPRINT.to_string()]);
        assert_eq!(rsa.kind, KeyKind::Rsa);
    }

    #[test]
    fn issued_tokens_verify_and_carry_the_registry_claims() {
        let issuer = TokenIssuer::generate().unwrap();
        let token = issuer
            .issue_at(Some("alice"), SERVICE, ISSUER, &pull_push("team/app"), DEFAULT_TTL, NOW)
            .unwrap();
        let header = part_json(&token, 0);
        assert_eq!(header, serde_json::json!({"typ": "JWT", "alg": "ES256", "kid": issuer.key_id()}));
        let claims = part_json(&token, 1);
        for key in ["iss", "sub", "aud", "exp", "nbf", "iat", "jti", "access"] {
            assert!(claims.get(key).is_some(), "{key} missing in {claims}");
        }
        assert_eq!(claims["exp"], NOW + 300);
        assert_eq!(
            claims["access"],
            serde_json::json!([{"type": "repository", "name": "team/app", "actions": ["pull", "push"]}])
        );
        // The signature is JWS's fixed r||s form, 64 bytes for P-256.
        assert_eq!(URL_SAFE_NO_PAD.decode(token.split('.').nth(2).unwrap()).unwrap().len(), 64);

        let verified = own_verifier(&issuer).verify(&token, NOW + 10).unwrap();
        assert_eq!(verified.subject.as_deref(), Some("alice"));
        assert_eq!(verified.issuer, ISSUER);
        assert!(verified.issued_here);
        assert!(verified.allows("team/app", Action::Pull));
        assert!(verified.allows("team/app", Action::Push));
        assert!(!verified.allows("team/app", Action::Delete));
        assert!(!verified.allows("team/other", Action::Pull));
        assert!(!verified.allows_catalog());
        // Every token is unique.
        let second = issuer
            .issue_at(Some("alice"), SERVICE, ISSUER, &pull_push("team/app"), DEFAULT_TTL, NOW)
            .unwrap();
        assert_ne!(part_json(&second, 1)["jti"], claims["jti"]);
    }

    #[test]
    fn anonymous_tokens_have_no_subject() {
        let issuer = TokenIssuer::generate().unwrap();
        let token = issuer.issue_at(None, SERVICE, ISSUER, &[], DEFAULT_TTL, NOW).unwrap();
        assert!(part_json(&token, 1).get("sub").is_none());
        let claims = own_verifier(&issuer).verify(&token, NOW).unwrap();
        assert_eq!(claims.subject, None);
        assert!(claims.access.is_empty());
    }

    #[test]
    fn validity_period_has_a_minute_of_leeway() {
        let issuer = TokenIssuer::generate().unwrap();
        let v = own_verifier(&issuer);
        let token = issuer
            .issue_at(Some("a"), SERVICE, ISSUER, &[], Duration::from_secs(300), NOW)
            .unwrap();
        assert!(v.verify(&token, NOW + 300 + 60).is_ok());
        assert_eq!(v.verify(&token, NOW + 300 + 61), Err(TokenError::Expired));
        assert!(v.verify(&token, NOW - 60).is_ok());
        assert_eq!(v.verify(&token, NOW - 61), Err(TokenError::NotYetValid));
        // A token without exp is expired, as registry:2 reads a missing number as zero.
        let signer = Signer::ec(&pkcs8_der(EC_KEY_PEM), &signature::ECDSA_P256_SHA256_FIXED_SIGNING);
        let v = own_verifier(&fixed_issuer());
        let mut claims = claims_json();
        claims.as_object_mut().unwrap().remove("exp");
        let t = forge(serde_json::json!({"alg": "ES256", "kid": EC_KEY_ID}), claims, &signer);
        assert_eq!(v.verify(&t, NOW), Err(TokenError::Expired));
    }

    #[test]
    fn wrong_audience_or_issuer_is_refused() {
        let issuer = TokenIssuer::generate().unwrap();
        let v = own_verifier(&issuer);
        let other_service = issuer.issue_at(Some("a"), "elsewhere", ISSUER, &[], DEFAULT_TTL, NOW).unwrap();
        assert_eq!(v.verify(&other_service, NOW), Err(TokenError::WrongAudience));
        let other_issuer = issuer.issue_at(Some("a"), SERVICE, "someone else", &[], DEFAULT_TTL, NOW).unwrap();
        assert_eq!(v.verify(&other_issuer, NOW), Err(TokenError::WrongIssuer));
    }

    #[test]
    fn audience_may_be_a_list() {
        let signer = Signer::ec(&pkcs8_der(EC_KEY_PEM), &signature::ECDSA_P256_SHA256_FIXED_SIGNING);
        let v = own_verifier(&fixed_issuer());
        let header = serde_json::json!({"typ": "JWT", "alg": "ES256", "kid": EC_KEY_ID});
        let mut claims = claims_json();
        claims["aud"] = serde_json::json!(["other", SERVICE]);
        assert!(v.verify(&forge(header.clone(), claims.clone(), &signer), NOW).is_ok());
        claims["aud"] = serde_json::json!(["other"]);
        assert_eq!(
            v.verify(&forge(header.clone(), claims.clone(), &signer), NOW),
            Err(TokenError::WrongAudience)
        );
        claims.as_object_mut().unwrap().remove("aud");
        assert_eq!(v.verify(&forge(header, claims, &signer), NOW), Err(TokenError::WrongAudience));
    }

    #[test]
    fn tampering_is_detected() {
        let issuer = TokenIssuer::generate().unwrap();
        let v = own_verifier(&issuer);
        let token = issuer
            .issue_at(Some("bob"), SERVICE, ISSUER, &pull_push("app"), DEFAULT_TTL, NOW)
            .unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        // Claims changed to grant more: the signature no longer matches.
        let mut claims = part_json(&token, 1);
        claims["access"][0]["name"] = "admin/app".into();
        let forged = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(claims.to_string()), parts[2]);
        assert_eq!(v.verify(&forged, NOW), Err(TokenError::BadSignature));
        // Signature bytes flipped.
        let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        sig[10] ^= 1;
        let flipped = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(sig));
        assert_eq!(v.verify(&flipped, NOW), Err(TokenError::BadSignature));
        // No signature at all.
        assert_eq!(v.verify(&format!("{}.{}.", parts[0], parts[1]), NOW), Err(TokenError::BadSignature));
    }

    #[test]
    fn unknown_or_missing_key_ids_are_refused() {
        let ours = TokenIssuer::generate().unwrap();
        let theirs = TokenIssuer::generate().unwrap();
        let v = own_verifier(&ours);
        let token = theirs.issue_at(Some("a"), SERVICE, ISSUER, &[], DEFAULT_TTL, NOW).unwrap();
        assert_eq!(v.verify(&token, NOW), Err(TokenError::UntrustedKey));
        // Their signature under our kid does not verify either.
        let signer = Signer::ec(&pkcs8_der(EC_KEY_PEM), &signature::ECDSA_P256_SHA256_FIXED_SIGNING);
        let lying = forge(serde_json::json!({"alg": "ES256", "kid": ours.key_id()}), claims_json(), &signer);
        assert_eq!(v.verify(&lying, NOW), Err(TokenError::BadSignature));
        let no_kid = forge(serde_json::json!({"alg": "ES256"}), claims_json(), &signer);
        assert_eq!(own_verifier(&fixed_issuer()).verify(&no_kid, NOW), Err(TokenError::UntrustedKey));
    }

    #[test]
    fn only_asymmetric_algorithms_matching_the_key_are_accepted() {
        let issuer = fixed_issuer();
        let v = own_verifier(&issuer);
        let token = issuer.issue_at(Some("a"), SERVICE, ISSUER, &[], DEFAULT_TTL, NOW).unwrap();
        let rest = token.split_once('.').unwrap().1;
        for (alg, want) in [
            ("none", TokenError::UnsupportedAlgorithm),
            ("HS256", TokenError::UnsupportedAlgorithm),
            ("es256", TokenError::UnsupportedAlgorithm),
            ("RS256", TokenError::AlgorithmMismatch),
            ("ES384", TokenError::AlgorithmMismatch),
        ] {
            let header = URL_SAFE_NO_PAD.encode(serde_json::json!({"alg": alg, "kid": EC_KEY_ID}).to_string());
            assert_eq!(v.verify(&format!("{header}.{rest}"), NOW), Err(want), "{alg}");
        }
    }

    #[test]
    fn bundle_keys_verify_external_tokens() {
        let rsa_cert = certificate(&pkcs8_der(RSA_KEY_PEM));
        let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let p384_cert = certificate(&p384.serialize_der());
        let mut v = TokenVerifier::new(ISSUER, SERVICE);
        let bundle = format!("{}{}", pem_cert(&rsa_cert), pem_cert(&p384_cert));
        assert_eq!(v.trust_bundle(bundle.as_bytes()), Ok(2));

        let rsa = |alg| Signer::rsa(&pkcs8_der(RSA_KEY_PEM), alg);
        let cases = [
            ("RS256", serde_json::json!(RSA_KEY_ID), rsa(&signature::RSA_PKCS1_SHA256)),
            ("RS384", serde_json::json!(RSA_THUMBPRINT), rsa(&signature::RSA_PKCS1_SHA384)),
            ("RS512", serde_json::json!(RSA_KEY_ID), rsa(&signature::RSA_PKCS1_SHA512)),
        ];
        for (alg, kid, signer) in cases {
            let token = forge(serde_json::json!({"typ": "JWT", "alg": alg, "kid": kid}), claims_json(), &signer);
            let claims = v.verify(&token, NOW).unwrap_or_else(|e| panic!("{alg}: {e}"));
            assert!(!claims.issued_here);
            assert!(claims.allows("team/app", Action::Push));
        }
        // An x5c chain whose leaf is a bundle certificate, without kid.
        let es384 = Signer::ec(&p384.serialize_der(), &signature::ECDSA_P384_SHA384_FIXED_SIGNING);
        let x5c = serde_json::json!({"alg": "ES384", "x5c": [STANDARD.encode(&p384_cert)]});
        assert!(v.verify(&forge(x5c, claims_json(), &es384), NOW).is_ok());
        // A leaf that is not in the bundle is refused even with a trusted kid beside it.
        let stranger = certificate(&pkcs8_der(EC_KEY_PEM));
        let header = serde_json::json!({"alg": "RS256", "kid": RSA_KEY_ID, "x5c": [STANDARD.encode(stranger)]});
        let token = forge(header, claims_json(), &rsa(&signature::RSA_PKCS1_SHA256));
        assert!(matches!(v.verify(&token, NOW), Err(TokenError::UntrustedChain(_))));
        // wharf's own key is not trusted unless added.
        let own = fixed_issuer().issue_at(Some("a"), SERVICE, ISSUER, &[], DEFAULT_TTL, NOW).unwrap();
        assert_eq!(v.verify(&own, NOW), Err(TokenError::UntrustedKey));
        v.trust_issuer(&fixed_issuer());
        assert!(v.verify(&own, NOW).unwrap().issued_here);
    }

    /// A certificate for `key`, valid from `from` to `until` (Unix seconds), signed by
    /// `issuer` (or self-signed), a CA when `ca`.
    fn cert_for(
        key: &rcgen::KeyPair,
        name: &str,
        ca: bool,
        from: i64,
        until: i64,
        issuer: Option<&rcgen::Issuer<'_, &rcgen::KeyPair>>,
    ) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(vec![format!("{name}.example.com")]).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.not_before = time::OffsetDateTime::from_unix_timestamp(from).unwrap();
        params.not_after = time::OffsetDateTime::from_unix_timestamp(until).unwrap();
        if ca {
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
        }
        match issuer {
            Some(i) => params.signed_by(key, i).unwrap().der().to_vec(),
            None => params.self_signed(key).unwrap().der().to_vec(),
        }
    }

    /// A CA (root), an intermediate it signed, and a token-signing leaf for each.
    struct Pki {
        root_key: rcgen::KeyPair,
        root: Vec<u8>,
        intermediate: Vec<u8>,
        /// Signed by the root directly; its key signs tokens.
        leaf: Vec<u8>,
        leaf_key: Vec<u8>,
        /// Signed by the intermediate.
        deep_leaf: Vec<u8>,
        deep_key: Vec<u8>,
    }

    /// What an issuer needs of a CA's parameters to sign with it: its name.
    fn params_of(name: &str) -> rcgen::CertificateParams {
        let mut p = rcgen::CertificateParams::new(vec![]).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p
    }

    fn pki() -> Pki {
        let (from, until) = (NOW - 86_400, NOW + 86_400);
        let root_key = rcgen::KeyPair::generate().unwrap();
        let root = cert_for(&root_key, "root", true, from, until, None);
        let root_params = params_of("root");
        let root_issuer = rcgen::Issuer::from_params(&root_params, &root_key);
        let inter_key = rcgen::KeyPair::generate().unwrap();
        let intermediate = cert_for(&inter_key, "intermediate", true, from, until, Some(&root_issuer));
        let inter_params = params_of("intermediate");
        let inter_issuer = rcgen::Issuer::from_params(&inter_params, &inter_key);
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = cert_for(&leaf_key, "tokens", false, from, until, Some(&root_issuer));
        let deep = rcgen::KeyPair::generate().unwrap();
        let deep_leaf = cert_for(&deep, "deep-tokens", false, from, until, Some(&inter_issuer));
        Pki {
            root_key,
            root,
            intermediate,
            leaf,
            leaf_key: leaf_key.serialize_der(),
            deep_leaf,
            deep_key: deep.serialize_der(),
        }
    }

    fn es256(pkcs8: &[u8]) -> Signer {
        Signer::ec(pkcs8, &signature::ECDSA_P256_SHA256_FIXED_SIGNING)
    }

    fn x5c_header(chain: &[&[u8]]) -> serde_json::Value {
        serde_json::json!({"typ": "JWT", "alg": "ES256", "x5c": chain.iter().map(|c| STANDARD.encode(c)).collect::<Vec<_>>()})
    }

    fn jwk_of(pkcs8: &[u8]) -> serde_json::Value {
        let key = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &SystemRandom::new()).unwrap();
        let point = key.public_key().as_ref();
        serde_json::json!({"kty": "EC", "crv": "P-256", "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..])})
    }

    #[test]
    fn x5c_chains_issued_by_a_bundle_ca_are_accepted() {
        let p = pki();
        let mut v = TokenVerifier::new(ISSUER, SERVICE);
        v.trust_bundle(pem_cert(&p.root).as_bytes()).unwrap();
        // Leaf signed by the bundle CA; with the CA repeated in the chain, as some servers send it.
        let token = forge(x5c_header(&[&p.leaf]), claims_json(), &es256(&p.leaf_key));
        let claims = v.verify(&token, NOW).unwrap();
        assert!(!claims.issued_here && claims.allows("team/app", Action::Push));
        let with_root = forge(x5c_header(&[&p.leaf, &p.root]), claims_json(), &es256(&p.leaf_key));
        assert!(v.verify(&with_root, NOW).is_ok());
        // Through an intermediate the header carries.
        let deep = forge(x5c_header(&[&p.deep_leaf, &p.intermediate]), claims_json(), &es256(&p.deep_key));
        assert!(v.verify(&deep, NOW).is_ok());
        // The leaf's key must be the signer: another key under the same chain is a bad signature.
        let other = forge(x5c_header(&[&p.leaf]), claims_json(), &es256(&p.deep_key));
        assert_eq!(v.verify(&other, NOW), Err(TokenError::BadSignature));
    }

    #[test]
    fn x5c_chains_that_do_not_verify_are_refused() {
        let p = pki();
        let stranger = pki();
        let mut v = TokenVerifier::new(ISSUER, SERVICE);
        v.trust_bundle(pem_cert(&p.root).as_bytes()).unwrap();
        let untrusted = |e: &Result<Claims, TokenError>| matches!(e, Err(TokenError::UntrustedChain(_)));
        // Another CA's leaf (a CA of the same name: the signature gives it away), a self-signed
        // leaf, and a chain missing its intermediate.
        let theirs = forge(x5c_header(&[&stranger.leaf]), claims_json(), &es256(&stranger.leaf_key));
        let r = v.verify(&theirs, NOW);
        assert_eq!(
            r,
            Err(TokenError::UntrustedChain("a certificate of the x5c chain has a bad signature"))
        );
        let key = rcgen::KeyPair::generate().unwrap();
        let selfsigned = cert_for(&key, "tokens", false, NOW - 60, NOW + 60, None);
        let r = v.verify(&forge(x5c_header(&[&selfsigned]), claims_json(), &es256(&key.serialize_der())), NOW);
        assert_eq!(
            r,
            Err(TokenError::UntrustedChain(
                "the x5c chain does not lead to a certificate of the rootcertbundle"
            ))
        );
        let gap = forge(x5c_header(&[&p.deep_leaf]), claims_json(), &es256(&p.deep_key));
        assert!(untrusted(&v.verify(&gap, NOW)));
        // A stranger's intermediate cannot lend trust either.
        let borrowed = forge(
            x5c_header(&[&stranger.deep_leaf, &p.intermediate]),
            claims_json(),
            &es256(&stranger.deep_key),
        );
        assert!(untrusted(&v.verify(&borrowed, NOW)));
        // Expired and not yet valid leaves (the chain is checked at the token's verification time).
        let token = forge(x5c_header(&[&p.leaf]), claims_json(), &es256(&p.leaf_key));
        let later = v.verify(&token, NOW + 2 * 86_400);
        assert_eq!(later, Err(TokenError::UntrustedChain("a certificate of the x5c chain has expired")));
        let key = rcgen::KeyPair::try_from(p.leaf_key.as_slice()).unwrap();
        let root_params = params_of("root");
        let issuer = rcgen::Issuer::from_params(&root_params, &p.root_key);
        let expired = cert_for(&key, "tokens", false, NOW - 86_400, NOW - 3_600, Some(&issuer));
        let r = v.verify(&forge(x5c_header(&[&expired]), claims_json(), &es256(&p.leaf_key)), NOW);
        assert_eq!(r, Err(TokenError::UntrustedChain("a certificate of the x5c chain has expired")));
        let early = cert_for(&key, "tokens", false, NOW + 3_600, NOW + 86_400, Some(&issuer));
        let r = v.verify(&forge(x5c_header(&[&early]), claims_json(), &es256(&p.leaf_key)), NOW);
        assert_eq!(
            r,
            Err(TokenError::UntrustedChain("a certificate of the x5c chain is not valid yet"))
        );
        // A self-signed bundle certificate used as its own leaf is still checked for expiry.
        let own_key = rcgen::KeyPair::generate().unwrap();
        let old = cert_for(&own_key, "old", false, NOW - 86_400, NOW - 3_600, None);
        let mut v2 = TokenVerifier::new(ISSUER, SERVICE);
        v2.trust_bundle(pem_cert(&old).as_bytes()).unwrap();
        let r = v2.verify(&forge(x5c_header(&[&old]), claims_json(), &es256(&own_key.serialize_der())), NOW);
        assert_eq!(r, Err(TokenError::UntrustedChain("a certificate of the x5c chain has expired")));
        // Garbage and overlong chains.
        let junk = forge(
            serde_json::json!({"alg": "ES256", "x5c": ["!!"]}),
            claims_json(),
            &es256(&p.leaf_key),
        );
        assert_eq!(v.verify(&junk, NOW), Err(TokenError::Malformed("x5c is not base64")));
        let long: Vec<&[u8]> = std::iter::repeat_n(p.leaf.as_slice(), 9).collect();
        let r = v.verify(&forge(x5c_header(&long), claims_json(), &es256(&p.leaf_key)), NOW);
        assert!(untrusted(&r), "{r:?}");
    }

    #[test]
    fn jwk_headers_are_accepted_for_trusted_keys_only() {
        let p = pki();
        let mut v = TokenVerifier::new(ISSUER, SERVICE);
        // The bundle holds the CA and a token server's own (self-signed) certificate.
        let server_key = rcgen::KeyPair::generate().unwrap();
        let server_cert = cert_for(&server_key, "server", false, NOW - 60, NOW + 86_400, None);
        v.trust_bundle(format!("{}{}", pem_cert(&p.root), pem_cert(&server_cert)).as_bytes())
            .unwrap();
        let server_pkcs8 = server_key.serialize_der();
        let jwk = |pkcs8: &[u8]| serde_json::json!({"alg": "ES256", "jwk": jwk_of(pkcs8)});
        // The JWK of a bundle key: accepted.
        assert!(v
            .verify(&forge(jwk(&server_pkcs8), claims_json(), &es256(&server_pkcs8)), NOW)
            .is_ok());
        // A JWK whose key is in no bundle certificate: refused, even though it signed the token.
        let stranger = pkcs8_der(EC_KEY_PEM);
        let r = v.verify(&forge(jwk(&stranger), claims_json(), &es256(&stranger)), NOW);
        assert_eq!(r, Err(TokenError::UntrustedKey));
        // A CA-issued leaf's JWK carrying its chain: accepted; a JWK not matching its chain: refused.
        let mut with_chain = jwk_of(&p.leaf_key);
        with_chain["x5c"] = serde_json::json!([STANDARD.encode(&p.leaf)]);
        let header = serde_json::json!({"alg": "ES256", "jwk": with_chain});
        assert!(v.verify(&forge(header, claims_json(), &es256(&p.leaf_key)), NOW).is_ok());
        let mut mismatched = jwk_of(&stranger);
        mismatched["x5c"] = serde_json::json!([STANDARD.encode(&p.leaf)]);
        let header = serde_json::json!({"alg": "ES256", "jwk": mismatched});
        let r = v.verify(&forge(header, claims_json(), &es256(&stranger)), NOW);
        assert_eq!(r, Err(TokenError::UntrustedChain("the jwk is not the key of its x5c leaf")));
        // Malformed JWKs.
        for bad in [
            serde_json::json!({"kty": "oct", "k": "AAAA"}),
            serde_json::json!({"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"}),
            serde_json::json!({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}),
            serde_json::json!("not an object"),
        ] {
            let t = forge(
                serde_json::json!({"alg": "ES256", "jwk": bad}),
                claims_json(),
                &es256(&server_pkcs8),
            );
            assert!(matches!(v.verify(&t, NOW), Err(TokenError::Malformed(_))), "{bad}");
        }
        // An RSA JWK of a bundle key.
        let rsa_cert = certificate(&pkcs8_der(RSA_KEY_PEM));
        v.trust_bundle(pem_cert(&rsa_cert).as_bytes()).unwrap();
        let parsed = key_of_certificate(&rsa_cert).unwrap();
        let (n, e) = parsed.rsa_parts.clone().unwrap();
        let header =
            serde_json::json!({"alg": "RS256", "jwk": {"kty": "RSA", "n": URL_SAFE_NO_PAD.encode(&n), "e": URL_SAFE_NO_PAD.encode(&e)}});
        let t = forge(
            header,
            claims_json(),
            &Signer::rsa(&pkcs8_der(RSA_KEY_PEM), &signature::RSA_PKCS1_SHA256),
        );
        assert!(v.verify(&t, NOW).is_ok());
    }

    #[test]
    fn unusable_bundles_are_errors() {
        let mut v = TokenVerifier::new(ISSUER, SERVICE);
        assert!(v.trust_bundle(b"").unwrap_err().contains("no PEM certificate"));
        assert!(v.trust_bundle(EC_KEY_PEM.as_bytes()).unwrap_err().contains("no PEM certificate"));
        let junk = pem_encode("CERTIFICATE", b"not der");
        assert!(v
            .trust_bundle(junk.as_bytes())
            .unwrap_err()
            .starts_with("certificate 1: not an X.509"));
        let dir = tempfile::tempdir().unwrap();
        let e = v.trust_bundle_file(&dir.path().join("missing.pem")).unwrap_err().to_string();
        assert!(e.contains("missing.pem: cannot read"), "{e}");
    }

    #[test]
    fn hostile_input_gives_errors_not_panics() {
        let issuer = fixed_issuer();
        let v = own_verifier(&issuer);
        let token = issuer.issue_at(Some("a"), SERVICE, ISSUER, &[], DEFAULT_TTL, NOW).unwrap();
        let long = "a".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(v.verify(&long, NOW), Err(TokenError::TooLong));
        let mut inputs: Vec<String> = ["", ".", "..", "...", "a.b.c", "a.b", "é.é.é", "e30.e30.", "e30.e30.e30"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        // Every truncation and a byte substitution at every position.
        for i in 0..token.len() {
            inputs.push(token[..i].to_string());
            let mut b = token.clone().into_bytes();
            b[i] = if b[i] == b'A' { b'B' } else { b'A' };
            inputs.push(String::from_utf8(b).unwrap());
        }
        for input in &inputs {
            if input == &token {
                continue;
            }
            let e = v.verify(input, NOW).unwrap_err();
            let shown = e.to_string();
            assert!(
                input.len() < 8 || !shown.contains(input.as_str()),
                "error quotes the token: {shown}"
            );
            assert!(!shown.contains(token.split('.').nth(1).unwrap()));
        }
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token.key");
        let first = TokenIssuer::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(std::fs::read_to_string(&path).unwrap().starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let second = TokenIssuer::load_or_create(&path).unwrap();
        assert_eq!(first.key_id(), second.key_id());
        // A token from the first instance verifies with the second's key.
        let t = first.issue_at(Some("a"), SERVICE, ISSUER, &[], DEFAULT_TTL, NOW).unwrap();
        assert!(own_verifier(&second).verify(&t, NOW).is_ok());
        // A key written by OpenSSL loads too.
        let fixed = dir.path().join("fixed.pem");
        std::fs::write(&fixed, EC_KEY_PEM).unwrap();
        assert_eq!(TokenIssuer::load_or_create(&fixed).unwrap().key_id(), EC_KEY_ID);
        // Rotation replaces the key in place: old tokens no longer verify with the new key.
        let rotated = TokenIssuer::rotate(&path).unwrap();
        assert_ne!(rotated.key_id(), first.key_id());
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(TokenIssuer::load_or_create(&path).unwrap().key_id(), rotated.key_id());
        assert_eq!(own_verifier(&rotated).verify(&t, NOW), Err(TokenError::UntrustedKey));
        // Anything else is refused with the file named.
        std::fs::write(&fixed, RSA_KEY_PEM).unwrap();
        let e = TokenIssuer::load_or_create(&fixed).unwrap_err().to_string();
        assert!(e.contains("fixed.pem") && e.contains("P-256"), "{e}");
    }

    #[test]
    fn scopes_parse_and_print() {
        let ok = [
            ("repository:app:pull", "repository:app:pull"),
            ("repository:team/app:pull,push", "repository:team/app:pull,push"),
            ("repository:app:*", "repository:app:*"),
            ("repository:app:pull,pull,delete", "repository:app:pull,delete"),
            ("repository:app:pull,bogus", "repository:app:pull"),
            ("repository:app:", "repository:app:"),
            ("repository(plugin):vieux/sshfs:pull", "repository(plugin):vieux/sshfs:pull"),
            ("registry:catalog:*", "registry:catalog:*"),
        ];
        for (input, printed) in ok {
            let s = Scope::parse(input).unwrap_or_else(|| panic!("{input} should parse"));
            assert_eq!(s.to_string(), printed);
            assert_eq!(Scope::parse(printed), Some(s));
        }
        let bad = [
            // The grammar allows a host in the name, but such a name is no repository here.
            "repository:localhost:5000/app:push",
            "",
            "repository",
            "repository:app",
            "repository::pull",
            "repository:App:pull",
            "repository:a//b:pull",
            "repository(:app:pull",
            "repository(x:app:pull",
            "repository()x:app:pull",
            "registry:catalog:pull",
            "registry:other:*",
            "image:app:pull",
            ":app:pull",
        ];
        for input in bad {
            assert_eq!(Scope::parse(input), None, "{input:?}");
        }
        assert_eq!(
            Scope::parse("repository(plugin):p:pull"),
            Some(Scope::Repository {
                name: "p".into(),
                class: Some("plugin".into()),
                actions: vec!["pull".into()]
            })
        );
    }

    #[test]
    fn several_scopes_in_one_or_many_parameters() {
        let params = [
            "repository:a:pull repository:b:push",
            "bogus",
            "",
            "registry:catalog:*",
            "repository:c:pull  repository:d:pull",
        ];
        let names: Vec<String> = Scope::parse_all(params).iter().map(|s| s.to_string()).collect();
        assert_eq!(
            names,
            [
                "repository:a:pull",
                "repository:b:push",
                "registry:catalog:*",
                "repository:c:pull",
                "repository:d:pull"
            ]
        );
        let many: Vec<String> = (0..100).map(|i| format!("repository:r{i}:pull")).collect();
        assert_eq!(Scope::parse_all(many.iter().map(String::as_str)).len(), MAX_SCOPES);
    }

    fn policy(yaml: &str) -> Policy {
        let cfg: crate::auth::AccessConfig = serde_yaml_ng::from_str(yaml).unwrap();
        Policy::new(Some(&cfg)).unwrap()
    }

    fn granted(scopes: &str, user: Option<&str>, p: &Policy) -> String {
        let access = grant(&Scope::parse_all([scopes]), user, p);
        access
            .iter()
            .map(|a| format!("{}:{}:{}", a.kind, a.name, a.actions.join(",")))
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn grants_follow_the_policy() {
        let p = policy(
            "anonymous: {allow: [pull], repositories: ['public/**']}\n\
             rules:\n\
             - {repositories: ['team/*'], users: [alice], allow: [pull, push, delete]}\n\
             - {repositories: ['**'], users: ['*'], allow: [pull]}\n",
        );
        assert_eq!(
            granted("repository:team/app:pull,push", Some("alice"), &p),
            "repository:team/app:pull,push"
        );
        assert_eq!(
            granted("repository:team/app:*", Some("alice"), &p),
            "repository:team/app:pull,push,delete"
        );
        assert_eq!(
            granted("repository:team/app:pull,push", Some("bob"), &p),
            "repository:team/app:pull"
        );
        assert_eq!(granted("repository:team/app:pull,push", None, &p), "repository:team/app:");
        assert_eq!(granted("repository:public/x:pull,push", None, &p), "repository:public/x:pull");
        // Repeated scopes merge; the catalog is for authenticated users.
        assert_eq!(
            granted(
                "repository:team/app:pull repository:team/app:push registry:catalog:*",
                Some("alice"),
                &p
            ),
            "repository:team/app:pull,push registry:catalog:*"
        );
        assert_eq!(granted("registry:catalog:*", None, &p), "");
        // Without an access section: registry:2's "authenticated users may do everything".
        let open = Policy::new(None).unwrap();
        assert_eq!(granted("repository:x:*", Some("u"), &open), "repository:x:pull,push,delete");
        assert_eq!(granted("repository:x:pull", None, &open), "repository:x:");
    }

    #[test]
    fn star_in_a_token_grants_every_action() {
        let claims = Claims {
            issuer: ISSUER.into(),
            subject: None,
            expires_at: NOW,
            access: vec![
                Access {
                    kind: "repository".into(),
                    name: "a".into(),
                    actions: vec!["*".into()],
                },
                Access {
                    kind: "registry".into(),
                    name: "catalog".into(),
                    actions: vec!["*".into()],
                },
            ],
            issued_here: false,
        };
        for a in Action::ALL {
            assert!(claims.allows("a", a));
            assert!(!claims.allows("b", a));
        }
        assert!(claims.allows_catalog());
        // "registry:catalog" with only named actions does not list the catalog.
        let partial = Claims {
            access: vec![Access {
                kind: "registry".into(),
                name: "catalog".into(),
                actions: vec!["pull".into()],
            }],
            ..claims
        };
        assert!(!partial.allows_catalog());
    }
}
