//! `wharf serve` with a certificate clients will refuse (issue: seed 003's CN-only certificate,
//! a clientAuth-only one, an expired one): it says so at start, naming the client errors and
//! Docker's loopback exception, still serves as registry:2 would, and refuses to start only
//! when `--refuse-bad-certificate` asks. curl, a real client, agrees with each verdict.

mod common;

use common::{require_tool, Wharf};
use std::path::{Path, PathBuf};
use std::process::Command;

fn openssl_self_signed(dir: &Path, name: &str, extra: &[&str]) -> (PathBuf, PathBuf) {
    let (crt, key) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    let mut args: Vec<String> = ["req", "-x509", "-nodes", "-sha256", "-days", "365", "-newkey", "rsa:2048"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend([
        "-keyout".into(),
        key.display().to_string(),
        "-out".into(),
        crt.display().to_string(),
    ]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let out = Command::new("openssl").args(&args).output().expect("openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    (crt, key)
}

/// A certificate for 127.0.0.1 whose validity ended in 2021 (openssl 3.0 cannot back-date).
fn expired(dir: &Path) -> (PathBuf, PathBuf) {
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = vec![rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap())];
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (crt, key_path) = (dir.join("expired.crt"), dir.join("expired.key"));
    std::fs::write(&crt, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (crt, key_path)
}

fn tls_env<'a>(crt: &'a str, key: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![("REGISTRY_HTTP_TLS_CERTIFICATE", crt), ("REGISTRY_HTTP_TLS_KEY", key)]
}

fn serve(dir: &Path, crt: &Path, key: &Path, extra: &[&str]) -> Result<Wharf, String> {
    let root = dir.join(format!("root-{}", crt.file_stem().unwrap().to_string_lossy()));
    let (crt, key) = (crt.display().to_string(), key.display().to_string());
    let root = root.display().to_string();
    let mut args = vec!["--addr", "127.0.0.1:0", "--root", &root];
    args.extend_from_slice(extra);
    let w = Wharf::try_launch_args(&[], &args, &tls_env(&crt, &key))?;
    w.wait_for_start_messages();
    Ok(w)
}

/// What curl, verifying against the certificate itself as the CA, makes of the server.
fn curl_accepts(w: &Wharf, ca: &Path) -> (bool, String) {
    let out = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "--cacert"])
        .arg(ca)
        .arg(format!("{}/v2/", w.url))
        .output()
        .expect("curl");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn refused_certificates_are_named_at_start_and_still_served() {
    if !require_tool("openssl") || !require_tool("curl") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();

    // Seed 003: `openssl req -x509 ... -subj /CN=...` with no subjectAltName.
    let (crt, key) = openssl_self_signed(d, "cn-only", &["-subj", "/CN=127.0.0.1"]);
    let w = serve(d, &crt, &key, &[]).expect("a CN-only certificate is served, as registry:2 serves it");
    let said = w.errors();
    assert!(said.contains("clients will refuse the certificate"), "{said}");
    assert!(said.contains("legacy Common Name field, use SANs instead"), "{said}");
    assert!(
        said.contains("Docker skips certificate verification for registries on loopback"),
        "{said}"
    );
    assert!(said.contains("fix: wharf cert issue"), "{said}");
    drop(w);
    let refused = serve(d, &crt, &key, &["--refuse-bad-certificate"])
        .err()
        .expect("--refuse-bad-certificate refuses it");
    assert!(refused.contains("not starting"), "{refused}");

    // A certificate made for client authentication only (seed 004's FAQ).
    let (crt, key) = openssl_self_signed(
        d,
        "client-only",
        &[
            "-subj",
            "/CN=reg",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-addext",
            "extendedKeyUsage=clientAuth",
        ],
    );
    let w = serve(d, &crt, &key, &[]).unwrap();
    assert!(
        w.errors().contains("x509: certificate specifies an incompatible key usage"),
        "{}",
        w.errors()
    );
    let (ok, why) = curl_accepts(&w, &crt);
    assert!(!ok, "curl accepted a clientAuth-only certificate, which wharf said clients refuse");
    assert!(
        why.contains("unsuitable certificate purpose") || why.contains("SSL certificate problem"),
        "{why}"
    );
    drop(w);

    // An expired certificate, refused at start with the env switch the container image uses.
    let (crt, key) = expired(d);
    let w = serve(d, &crt, &key, &[]).unwrap();
    assert!(w.errors().contains("expired on"), "{}", w.errors());
    let (ok, why) = curl_accepts(&w, &crt);
    assert!(!ok && why.contains("expired"), "curl: {why}");
    drop(w);
    let root = d.join("root-env").display().to_string();
    let (c, k) = (crt.display().to_string(), key.display().to_string());
    let mut env = tls_env(&c, &k);
    env.push(("WHARF_REFUSE_BAD_CERTIFICATE", "true"));
    let refused = Wharf::try_launch_args(&[], &["--addr", "127.0.0.1:0", "--root", &root], &env).err();
    assert!(refused.is_some_and(|e| e.contains("clients will refuse this certificate")));

    // Seed 000's IP-SAN certificate: nothing refused, and curl agrees.
    let (crt, key) = openssl_self_signed(d, "ip-san", &["-subj", "/CN=reg", "-addext", "subjectAltName=IP:127.0.0.1"]);
    let w = serve(d, &crt, &key, &["--refuse-bad-certificate"]).expect("a good certificate starts even when strict");
    assert!(!w.errors().contains("clients will refuse"), "{}", w.errors());
    let (ok, why) = curl_accepts(&w, &crt);
    assert!(ok, "curl refused a certificate wharf found fine: {why}");
}
