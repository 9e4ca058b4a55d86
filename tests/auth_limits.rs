//! Login hardening, black-box through the real binary: failed-login limits that parallel
//! guesses cannot beat (Basic and the token endpoint), `Retry-After` that says the real wait,
//! lockouts that a SIGHUP keeps (also one that changes the limits), clients behind `http.trustedproxies`, an htpasswd file that
//! fails closed when it is deleted or broken, a `Host` header that never reaches a URL unless it
//! is a plain host[:port], and a published CA file that never serves a private key.

mod common;

use common::api::Registry;
use common::{write_htpasswd, Wharf};
use futures::future::join_all;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

fn write_config(dir: &Path, body: &str) -> String {
    let path = dir.join("config.yml");
    std::fs::write(&path, format!("version: 0.1\n{body}")).unwrap();
    path.display().to_string()
}

fn basic_yaml(htpasswd: &Path, extra: &str) -> String {
    format!("auth:\n  htpasswd:\n    realm: test\n    path: {}\n{extra}", htpasswd.display())
}

fn token_yaml(htpasswd: &Path) -> String {
    format!(
        "auth:\n  token:\n    service: limits-test\n    issuer: limits-test\n    htpasswd: {}\n",
        htpasswd.display()
    )
}

/// Statuses of 120 simultaneous requests to `target` with a wrong password for alice.
async fn parallel_wrong_passwords(w: &Wharf, target: &str) -> Vec<u16> {
    let guesser = Registry::with_basic(w, "alice", "wrong");
    let requests = (0..120).map(|_| guesser.get(target));
    join_all(requests).await.iter().map(|r| r.status).collect()
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_wrong_passwords_get_no_more_checks_than_the_limit_with_basic_auth() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("htpasswd");
    write_htpasswd(&pw, &[("alice", "alice-pw")]);
    let w = Wharf::start_with(&[&write_config(dir.path(), &basic_yaml(&pw, ""))], &[]);
    let statuses = parallel_wrong_passwords(&w, "/v2/").await;
    let (checked, refused) = (count(&statuses, 401), count(&statuses, 429));
    eprintln!("120 parallel wrong passwords: {checked} × 401, {refused} × 429");
    assert!(checked <= 5, "{checked} passwords were checked, the limit is 5: {statuses:?}");
    assert_eq!(checked + refused, 120, "only 401 and 429: {statuses:?}");
    // The right password waits out the lockout too; another user is not affected.
    Registry::with_basic(&w, "alice", "alice-pw").get("/v2/").await.expect(429);
}

/// The other side of counting attempts in flight: a burst of one user's requests with the
/// right password (parallel layer pulls, CI jobs starting together) before any of them was
/// checked must all get in, with Basic auth and at the token endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_right_passwords_is_never_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("htpasswd");
    write_htpasswd(&pw, &[("alice", "alice-pw")]);
    for (yaml, target) in [(basic_yaml(&pw, ""), "/v2/"), (token_yaml(&pw), "/auth/token?service=limits-test")] {
        let w = Wharf::start_with(&[&write_config(dir.path(), &yaml)], &[]);
        let alice = Registry::with_basic(&w, "alice", "alice-pw");
        let statuses: Vec<u16> = join_all((0..64).map(|_| alice.get(target)))
            .await
            .iter()
            .map(|r| r.status)
            .collect();
        assert_eq!(
            count(&statuses, 200),
            64,
            "{target}: 64 parallel logins with the right password: {statuses:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_wrong_passwords_get_no_more_checks_than_the_limit_at_the_token_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("htpasswd");
    write_htpasswd(&pw, &[("alice", "alice-pw"), ("bob", "bob-pw")]);
    let w = Wharf::start_with(&[&write_config(dir.path(), &token_yaml(&pw))], &[]);
    let statuses = parallel_wrong_passwords(&w, "/auth/token?service=limits-test").await;
    let (checked, refused) = (count(&statuses, 401), count(&statuses, 429));
    eprintln!("120 parallel wrong passwords at /auth/token: {checked} × 401, {refused} × 429");
    assert!(checked <= 5, "{checked} passwords were checked, the limit is 5: {statuses:?}");
    assert_eq!(checked + refused, 120, "only 401 and 429: {statuses:?}");
    let bob = Registry::with_basic(&w, "bob", "bob-pw");
    bob.get("/auth/token?service=limits-test").await.expect(200);
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_after_says_the_remaining_lockout_and_a_sighup_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("htpasswd");
    write_htpasswd(&pw, &[("alice", "alice-pw")]);
    let w = Wharf::start_with(&[&write_config(dir.path(), &basic_yaml(&pw, ""))], &[]);
    let guesser = Registry::with_basic(&w, "alice", "wrong");
    for _ in 0..5 {
        guesser.get("/v2/").await.expect(401);
    }
    let locked = guesser.get("/v2/").await;
    locked.expect_error(429, &["TOOMANYREQUESTS"]);
    let retry: u64 = locked.must("retry-after").parse().expect("Retry-After in seconds");
    assert!((55..=60).contains(&retry), "a fresh one-minute lockout: Retry-After {retry}");
    let message = locked.json()["errors"][0]["message"].as_str().unwrap().to_string();
    assert!(message.ends_with(&format!("try again in {retry} seconds")), "{message}");

    // A reload keeps the count: the lockout goes on, and a later Retry-After is shorter.
    w.hangup();
    w.wait_for_output("configuration reloaded", 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let still = Registry::with_basic(&w, "alice", "alice-pw").get("/v2/").await;
    still.expect_error(429, &["TOOMANYREQUESTS"]);
    let later: u64 = still.must("retry-after").parse().unwrap();
    assert!(later < retry, "Retry-After counts down across the reload: {retry} then {later}");
}

/// A reload that changes `failedlogins` (here at wharf's token endpoint) keeps the counts: a
/// user locked out stays locked out, and the new limit applies to the next user's failures.
#[tokio::test(flavor = "multi_thread")]
async fn a_sighup_with_new_limits_keeps_the_lockouts_at_the_token_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("htpasswd");
    write_htpasswd(&pw, &[("alice", "alice-pw"), ("bob", "bob-pw")]);
    let target = "/auth/token?service=limits-test";
    let config = write_config(dir.path(), &token_yaml(&pw));
    let w = Wharf::start_with(&[&config], &[]);
    let guesser = Registry::with_basic(&w, "alice", "wrong");
    for _ in 0..5 {
        guesser.get(target).await.expect(401);
    }
    guesser.get(target).await.expect_error(429, &["TOOMANYREQUESTS"]);

    let limits = "    failedlogins:\n      peraddress: 8\n      peruser: 50\n      window: 60s\n";
    write_config(dir.path(), &format!("{}{limits}", token_yaml(&pw)));
    w.hangup();
    w.wait_for_output("configuration reloaded", 1);
    let alice = Registry::with_basic(&w, "alice", "alice-pw").get(target).await;
    alice.expect_error(429, &["TOOMANYREQUESTS"]);

    // The new limit: bob may fail 8 times now (5 before the reload), then he is locked out.
    let bob = Registry::with_basic(&w, "bob", "wrong");
    for n in 1..=8 {
        assert_eq!(bob.get(target).await.status, 401, "bob's failure {n} of 8 is checked");
    }
    bob.get(target).await.expect_error(429, &["TOOMANYREQUESTS"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn behind_a_trusted_proxy_each_client_has_its_own_count() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("htpasswd");
    write_htpasswd(&pw, &[("alice", "alice-pw")]);
    let proxied = basic_yaml(&pw, "http:\n  trustedproxies: [127.0.0.1]\n");
    let w = Wharf::start_with(&[&write_config(dir.path(), &proxied)], &[]);
    let attacker = [("X-Forwarded-For", "198.51.100.66")];
    let user = [("X-Forwarded-For", "203.0.113.7")];
    let guesser = Registry::with_basic(&w, "alice", "wrong");
    for _ in 0..5 {
        guesser.get_with("/v2/", &attacker).await.expect(401);
    }
    guesser.get_with("/v2/", &attacker).await.expect(429);
    // The proxy's other client logs in; a forged header in front of the proxy's changes nothing.
    let alice = Registry::with_basic(&w, "alice", "alice-pw");
    alice.get_with("/v2/", &user).await.expect(200);
    // A guess with a forged header in front of the proxy's is still counted for the address the
    // proxy saw (locked: 429), not for the forged one (alice's, which would answer 401).
    let forged = [("X-Forwarded-For", "203.0.113.7, 198.51.100.66")];
    guesser.get_with("/v2/", &forged).await.expect(429);
    guesser.get_with("/v2/", &user).await.expect(401);

    // Without the setting the header is ignored: everyone behind the address shares its count.
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("htpasswd");
    write_htpasswd(&pw, &[("alice", "alice-pw")]);
    let w = Wharf::start_with(&[&write_config(dir.path(), &basic_yaml(&pw, ""))], &[]);
    let guesser = Registry::with_basic(&w, "alice", "wrong");
    for _ in 0..5 {
        guesser.get_with("/v2/", &attacker).await.expect(401);
    }
    Registry::with_basic(&w, "alice", "alice-pw")
        .get_with("/v2/", &user)
        .await
        .expect(429);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_or_broken_htpasswd_file_refuses_every_login() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("htpasswd");
    write_htpasswd(&pw, &[("alice", "alice-pw")]);
    let w = Wharf::start_with(&[&write_config(dir.path(), &basic_yaml(&pw, ""))], &[]);
    let alice = Registry::with_basic(&w, "alice", "alice-pw");
    alice.get("/v2/").await.expect(200);
    std::fs::remove_file(&pw).unwrap();
    // The file is checked at most once a second.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    alice.get("/v2/").await.expect(401);
    write_htpasswd(&pw, &[("alice", "alice-pw")]);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    alice.get("/v2/").await.expect(200);
    std::fs::write(&pw, "this line has no colon\n").unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    alice.get("/v2/").await.expect(401);
    // A SIGHUP with the file still broken cannot bring the old users back either.
    w.hangup();
    tokio::time::sleep(Duration::from_millis(500)).await;
    alice.get("/v2/").await.expect(401);

    // keeponerror: the users loaded before stay.
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("htpasswd");
    write_htpasswd(&pw, &[("alice", "alice-pw")]);
    let kept = basic_yaml(&pw, "").replace("    realm: test\n", "    realm: test\n    keeponerror: true\n");
    let w = Wharf::start_with(&[&write_config(dir.path(), &kept)], &[]);
    let alice = Registry::with_basic(&w, "alice", "alice-pw");
    alice.get("/v2/").await.expect(200);
    std::fs::remove_file(&pw).unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    alice.get("/v2/").await.expect(200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_token_server_htpasswd_refuses_logins() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("htpasswd");
    write_htpasswd(&pw, &[("alice", "alice-pw")]);
    let w = Wharf::start_with(&[&write_config(dir.path(), &token_yaml(&pw))], &[]);
    let alice = Registry::with_basic(&w, "alice", "alice-pw");
    alice.get("/auth/token?service=limits-test").await.expect(200);
    std::fs::remove_file(&pw).unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    alice.get("/auth/token?service=limits-test").await.expect(401);
}

/// One raw HTTP/1.1 request (reqwest always sends a valid Host), returning the response head.
fn raw_request(addr: &str, request: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    text.split("\r\n\r\n").next().unwrap_or_default().to_string()
}

fn header_of(head: &str, name: &str) -> String {
    head.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
        .unwrap_or_default()
}

#[test]
fn a_host_that_is_not_host_port_never_reaches_the_realm_or_a_location() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("htpasswd");
    write_htpasswd(&pw, &[("alice", "alice-pw")]);
    let w = Wharf::start_with(&[&write_config(dir.path(), &token_yaml(&pw))], &[]);
    let evil = raw_request(&w.addr, "GET /v2/ HTTP/1.1\r\nHost: evil.example/x?\r\nConnection: close\r\n\r\n");
    assert!(evil.starts_with("HTTP/1.1 401"), "{evil}");
    let challenge = header_of(&evil, "www-authenticate");
    assert!(challenge.starts_with("Bearer realm=\"/auth/token\""), "{challenge}");
    assert!(!evil.contains("evil.example"), "{evil}");
    // A plain host:port is used as before.
    let fine = raw_request(
        &w.addr,
        "GET /v2/ HTTP/1.1\r\nHost: registry.example:5000\r\nConnection: close\r\n\r\n",
    );
    let challenge = header_of(&fine, "www-authenticate");
    assert!(
        challenge.starts_with("Bearer realm=\"http://registry.example:5000/auth/token\""),
        "{challenge}"
    );

    // An upload's Location on an open registry.
    let open = Wharf::start();
    for host in ["evil.example/x?", "evil.example#", "a@evil.example"] {
        let head = raw_request(
            &open.addr,
            &format!("POST /v2/app/blobs/uploads/ HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
        );
        assert!(head.starts_with("HTTP/1.1 202"), "{head}");
        let location = header_of(&head, "location");
        assert!(location.starts_with("/v2/app/blobs/uploads/"), "Host {host:?}: Location {location}");
    }
}

/// A CA certificate and its key, as people keep them (and as HAProxy wants them combined).
fn ca() -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
}

fn cafile_yaml(path: &Path) -> String {
    format!("http:\n  tls:\n    cafile: {}\n", path.display())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ca_file_with_a_private_key_is_refused_and_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca();
    let combined = dir.path().join("ca-combined.pem");
    std::fs::write(&combined, format!("{cert}{key}")).unwrap();
    let cfg = write_config(dir.path(), &cafile_yaml(&combined));
    let out = std::process::Command::new(common::wharf_bin())
        .args(["serve", "--addr", "127.0.0.1:0", "--root"])
        .arg(dir.path().join("data"))
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started with a key in the CA file: {err}");
    assert!(
        err.contains("http.tls.cafile") && err.contains(&combined.display().to_string()) && err.contains("private key"),
        "the error names the key, the file and why: {err}"
    );
    assert!(!err.contains(key.lines().nth(1).unwrap()), "the key is not printed: {err}");

    // A file with the certificate and other text: only the certificate is served.
    let clean = dir.path().join("ca.pem");
    std::fs::write(&clean, format!("Issuer: our CA\n{cert}")).unwrap();
    let w = Wharf::start_with(&[&write_config(dir.path(), &cafile_yaml(&clean))], &[]);
    let anyone = Registry::new(&w);
    let served = anyone.get("/.well-known/wharf/ca.crt").await;
    served.expect(200);
    let body = String::from_utf8_lossy(&served.body).to_string();
    assert_eq!(body.matches("-----BEGIN CERTIFICATE-----").count(), 1, "{body}");
    assert!(!body.contains("Issuer: our CA") && !body.contains("PRIVATE KEY"), "{body}");
    // The key added later and a reload: refused, and the key is still not served.
    std::fs::write(&clean, format!("{cert}{key}")).unwrap();
    w.hangup();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let after = anyone.get("/.well-known/wharf/ca.crt").await;
    assert!(!String::from_utf8_lossy(&after.body).contains("PRIVATE KEY"));
    assert_eq!(w.output().matches("configuration reloaded").count(), 0, "{}", w.output());
}
