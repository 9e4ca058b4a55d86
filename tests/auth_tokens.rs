//! Tokens across the life of a server, black-box through the real binary: wharf's own token
//! server keeps its signing key across restarts (a token issued before a restart is accepted
//! after it), changes it only on `wharf token rotate-key`, and applies access rules removed on
//! SIGHUP to the next token; an external token server whose tokens carry an `x5c` chain issued
//! by a CA in `rootcertbundle`, or a `jwk` header, is accepted as distribution accepts it.

mod common;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use common::api::Registry;
use common::{write_htpasswd, Wharf};
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};
use std::path::Path;

const SERVICE: &str = "tokens-test";
const ISSUER: &str = "tokens-test-issuer";

/// wharf as its own token server; `rules` is the access section's rule list.
fn token_config(dir: &Path, rules: &str) -> String {
    let path = dir.join("config.yml");
    let yaml = format!(
        "version: 0.1\nauth:\n  token:\n    service: {SERVICE}\n    issuer: {ISSUER}\n    htpasswd: {}\naccess:\n  rules:\n{rules}",
        dir.join("htpasswd").display()
    );
    std::fs::write(&path, yaml).unwrap();
    path.display().to_string()
}

const ALICE_AND_READER: &str = "    - {repositories: ['**'], users: [alice], allow: [pull, push]}\n    - {repositories: ['team/**'], users: [reader], allow: [pull]}\n";
const ALICE_ONLY: &str = "    - {repositories: ['**'], users: [alice], allow: [pull, push]}\n";

/// A token from wharf's endpoint for `user` with `scope`.
async fn token(w: &Wharf, user: &str, password: &str, scope: &str) -> String {
    let reg = Registry::with_basic(w, user, password);
    let url = reg.url_with("/auth/token", &[("service", SERVICE), ("scope", scope)]);
    let resp = reg.call(reqwest::Method::GET, url, &[], vec![]).await;
    resp.expect(200);
    resp.json()["token"].as_str().unwrap().to_string()
}

fn claims_of(token: &str) -> Value {
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

fn bearer(w: &Wharf, token: &str) -> Registry {
    Registry::with_bearer(w, token)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_issued_before_a_restart_is_accepted_after_it_until_the_key_is_rotated() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    write_htpasswd(&dir.path().join("htpasswd"), &[("alice", "alice-pw")]);
    let cfg = token_config(dir.path(), ALICE_AND_READER);
    let root = dir.path().join("data");
    let mut w = Wharf::start_on_root(&root, &[&cfg], &[]);
    let before = token(&w, "alice", "alice-pw", "repository:team/app:pull,push").await;
    bearer(&w, &before).push_image("team/app", "v1").await;
    let key = root.join("wharf/token-signing.key");
    let mode = std::fs::metadata(&key)
        .expect("the signing key is kept under the root")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    w.stop();

    let mut w = Wharf::start_on_root(&root, &[&cfg], &[]);
    bearer(&w, &before).get("/v2/").await.expect(200);
    bearer(&w, &before).get_manifest("team/app", "v1").await.expect(200);

    // Rotation: the running server keeps the old key until told, then refuses its tokens.
    let out = std::process::Command::new(common::wharf_bin())
        .args(["token", "rotate-key", &cfg, "--root"])
        .arg(&root)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(said.contains(&key.display().to_string()) && said.contains("SIGHUP"), "{said}");
    bearer(&w, &before).get("/v2/").await.expect(200);
    w.hangup();
    w.wait_for_output("configuration reloaded", 1);
    let refused = bearer(&w, &before).get("/v2/").await;
    refused.expect(401);
    assert!(refused.must("www-authenticate").contains("error=\"invalid_token\""));
    let after = token(&w, "alice", "alice-pw", "repository:team/app:pull").await;
    bearer(&w, &after).get_manifest("team/app", "v1").await.expect(200);
    w.stop();
    // And the rotated key is the one a restart loads.
    let w = Wharf::start_on_root(&root, &[&cfg], &[]);
    bearer(&w, &after).get("/v2/").await.expect(200);
    bearer(&w, &before).get("/v2/").await.expect(401);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sighup_that_removes_a_right_is_applied_to_the_next_token() {
    let dir = tempfile::tempdir().unwrap();
    write_htpasswd(&dir.path().join("htpasswd"), &[("alice", "alice-pw"), ("reader", "reader-pw")]);
    let cfg = token_config(dir.path(), ALICE_AND_READER);
    let w = Wharf::start_with(&[&cfg], &[]);
    let pusher = token(&w, "alice", "alice-pw", "repository:team/app:pull,push").await;
    bearer(&w, &pusher).push_image("team/app", "v1").await;
    let granted = token(&w, "reader", "reader-pw", "repository:team/app:pull").await;
    assert_eq!(claims_of(&granted)["access"][0]["actions"], json!(["pull"]));
    bearer(&w, &granted).get_manifest("team/app", "v1").await.expect(200);

    token_config(dir.path(), ALICE_ONLY);
    w.hangup();
    w.wait_for_output("configuration reloaded", 1);
    let next = token(&w, "reader", "reader-pw", "repository:team/app:pull").await;
    assert_eq!(claims_of(&next)["access"][0]["actions"], json!([]), "{}", claims_of(&next));
    let refused = bearer(&w, &next).get_manifest("team/app", "v1").await;
    refused.expect(401);
    assert!(refused.must("www-authenticate").contains("insufficient_scope"));
    // Nothing about a restart was said.
    assert!(!w.output().contains("only applied at the next restart"), "{}", w.output());
}

// ---------------------------------------------------------------------------------------------
// An external token server with a CA

/// A certificate for `key`, valid from `from` to `until` (Unix seconds), a CA when `ca`.
fn certificate(
    key: &rcgen::KeyPair,
    name: &str,
    ca: bool,
    from: i64,
    until: i64,
    issuer: Option<&rcgen::Issuer<'_, &rcgen::KeyPair>>,
) -> Vec<u8> {
    let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    params.not_before = time::OffsetDateTime::from_unix_timestamp(from).unwrap();
    params.not_after = time::OffsetDateTime::from_unix_timestamp(until).unwrap();
    if ca {
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::DigitalSignature];
    }
    match issuer {
        Some(i) => params.signed_by(key, i).unwrap().der().to_vec(),
        None => params.self_signed(key).unwrap().der().to_vec(),
    }
}

fn pem(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", lines.join("\n"))
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Signs a token with a P-256 key (PKCS#8 DER) and the given header.
fn sign(pkcs8: &[u8], header: Value) -> String {
    let t = now();
    let claims = json!({
        "iss": ISSUER, "sub": "ci", "aud": SERVICE, "exp": t + 300, "nbf": t - 5, "iat": t - 5, "jti": "1",
        "access": [{"type": "repository", "name": "ext/app", "actions": ["pull", "push"]}],
    });
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let rng = ring::rand::SystemRandom::new();
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &rng).unwrap();
    let sig = key.sign(&rng, input.as_bytes()).unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
}

fn x5c(chain: &[&[u8]]) -> Value {
    json!({"typ": "JWT", "alg": "ES256", "x5c": chain.iter().map(|c| STANDARD.encode(c)).collect::<Vec<_>>()})
}

fn jwk(pkcs8: &[u8]) -> Value {
    let rng = ring::rand::SystemRandom::new();
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &rng).unwrap();
    let p = key.public_key().as_ref();
    json!({"typ": "JWT", "alg": "ES256", "jwk": {"kty": "EC", "crv": "P-256", "x": URL_SAFE_NO_PAD.encode(&p[1..33]), "y": URL_SAFE_NO_PAD.encode(&p[33..])}})
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_signed_by_a_ca_issued_leaf_or_a_trusted_jwk_are_accepted_and_others_refused() {
    let (t, day) = (now(), 86_400);
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = certificate(&ca_key, "Token CA", true, t - day, t + day, None);
    let mut ca_params = rcgen::CertificateParams::new(vec![]).unwrap();
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "Token CA");
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = certificate(&leaf_key, "tokens", false, t - day, t + day, Some(&issuer));
    let expired = certificate(&leaf_key, "tokens", false, t - 2 * day, t - day, Some(&issuer));
    let other_ca_key = rcgen::KeyPair::generate().unwrap();
    let mut other_params = rcgen::CertificateParams::new(vec![]).unwrap();
    other_params.distinguished_name.push(rcgen::DnType::CommonName, "Other CA");
    let other = rcgen::Issuer::from_params(&other_params, &other_ca_key);
    let stranger = certificate(&leaf_key, "tokens", false, t - day, t + day, Some(&other));
    // The bundle also holds a token server's self-signed certificate, whose key may come as jwk.
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server_cert = certificate(&server_key, "server", false, t - day, t + day, None);

    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle.pem");
    std::fs::write(&bundle, format!("{}{}", pem(&ca), pem(&server_cert))).unwrap();
    let cfg = dir.path().join("config.yml");
    std::fs::write(
        &cfg,
        format!("version: 0.1\nauth:\n  token:\n    realm: https://auth.example.com/token\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n", bundle.display()),
    )
    .unwrap();
    let w = Wharf::start_with(&[cfg.to_str().unwrap()], &[]);
    let leaf_pkcs8 = leaf_key.serialize_der();

    let issued = sign(&leaf_pkcs8, x5c(&[&leaf]));
    bearer(&w, &issued).push_image("ext/app", "v1").await;
    let with_ca = sign(&leaf_pkcs8, x5c(&[&leaf, &ca]));
    bearer(&w, &with_ca).get_manifest("ext/app", "v1").await.expect(200);
    let by_jwk = sign(&server_key.serialize_der(), jwk(&server_key.serialize_der()));
    bearer(&w, &by_jwk).get_manifest("ext/app", "v1").await.expect(200);

    for (what, token) in [
        ("a leaf of another CA", sign(&leaf_pkcs8, x5c(&[&stranger]))),
        ("an expired leaf", sign(&leaf_pkcs8, x5c(&[&expired]))),
        ("a jwk in no bundle certificate", sign(&leaf_pkcs8, jwk(&leaf_pkcs8))),
    ] {
        let r = bearer(&w, &token).get_manifest("ext/app", "v1").await;
        assert_eq!(r.status, 401, "{what}: {}", r.show());
        assert!(r.must("www-authenticate").contains("error=\"invalid_token\""), "{what}");
    }
}
