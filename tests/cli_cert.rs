//! `wharf cert` end to end: the real binary makes the CA and certificates, openssl checks them,
//! and curl and `openssl s_client` complete (or refuse) real TLS handshakes against a server
//! built from wharf's `ServerConfig` — including a certificate replaced on disk while it runs.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wharf::tls::{certs, server};

/// Runs a command with a time limit, capturing its output (through files, so a chatty command
/// cannot block on a full pipe).
fn run(cmd: &mut Command) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within 60s");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: std::fs::read(&out).unwrap(),
        stderr: std::fs::read(&err).unwrap(),
    }
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn wharf(args: &[&str]) -> Output {
    run(Command::new(common::wharf_bin()).args(args))
}

/// Runs wharf and requires success.
fn wharf_ok(args: &[&str]) -> String {
    let o = wharf(args);
    assert!(o.status.success(), "wharf {args:?} failed:\n{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn openssl(args: &[&str]) -> Output {
    run(Command::new("openssl").args(args))
}

fn openssl_ok(args: &[&str]) -> String {
    let o = openssl(args);
    assert!(o.status.success(), "openssl {args:?} failed:\n{}", text(&o));
    text(&o)
}

fn tools_present() -> bool {
    common::require_tool("openssl") && common::require_tool("curl")
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// A CA in `<dir>/ca` and a server certificate for `names` in `<dir>/srv`, made by the binary.
fn ca_and_server(dir: &Path, names: &[&str]) -> (PathBuf, PathBuf) {
    let (ca, srv) = (dir.join("ca"), dir.join("srv"));
    wharf_ok(&["cert", "ca", "--out", p(&ca), "--name", "Test CA"]);
    let mut args = vec!["cert", "issue", "--ca", p(&ca), "--out", p(&srv)];
    args.extend_from_slice(names);
    wharf_ok(&args);
    (ca, srv)
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn ca_and_server_certificate_pass_openssl() {
    if !tools_present() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (ca, srv) = (tmp.path().join("ca"), tmp.path().join("srv"));
    let out = wharf_ok(&["cert", "ca", "--out", p(&ca), "--name", "Test CA", "--days", "100"]);
    assert!(out.contains("wharf cert issue --ca"), "next steps missing:\n{out}");
    assert_eq!(mode(&ca.join("ca.key")), 0o600);

    let ca_text = openssl_ok(&["x509", "-in", p(&ca.join("ca.crt")), "-noout", "-text"]);
    for want in [
        "CA:TRUE, pathlen:0",
        "Certificate Sign, CRL Sign",
        "X509v3 Subject Key Identifier",
        "ecdsa-with-SHA256",
        "NIST CURVE: P-256",
        "CN = Test CA",
    ] {
        assert!(ca_text.contains(want), "ca.crt lacks {want:?}:\n{ca_text}");
    }

    let out = wharf_ok(&[
        "cert",
        "issue",
        "--ca",
        p(&ca),
        "--out",
        p(&srv),
        "--ip",
        "127.0.0.1",
        "--dns",
        "registry.test",
        "--days",
        "30",
    ]);
    let (crt, key) = (srv.join("server.crt"), srv.join("server.key"));
    assert!(out.contains(&format!("REGISTRY_HTTP_TLS_CERTIFICATE={}", crt.display())), "{out}");
    assert!(out.contains(&format!("REGISTRY_HTTP_TLS_KEY={}", key.display())), "{out}");
    assert!(out.contains("/etc/docker/certs.d/"), "{out}");
    assert_eq!(mode(&key), 0o600);

    let srv_text = openssl_ok(&["x509", "-in", p(&crt), "-noout", "-text"]);
    for want in [
        "IP Address:127.0.0.1",
        "DNS:registry.test",
        "TLS Web Server Authentication",
        "CA:FALSE",
        "Digital Signature",
        "X509v3 Authority Key Identifier",
        "CN = registry.test",
        "Issuer: CN = Test CA",
    ] {
        assert!(srv_text.contains(want), "server.crt lacks {want:?}:\n{srv_text}");
    }
    let verified = openssl_ok(&["verify", "-CAfile", p(&ca.join("ca.crt")), p(&crt)]);
    assert!(verified.contains(": OK"), "{verified}");
    assert!(openssl_ok(&["x509", "-in", p(&crt), "-noout", "-checkip", "127.0.0.1"]).contains("does match"));
    assert!(openssl_ok(&["x509", "-in", p(&crt), "-noout", "-checkhost", "registry.test"]).contains("does match"));
    assert!(openssl_ok(&["x509", "-in", p(&crt), "-noout", "-checkip", "10.1.1.1"]).contains("does NOT match"));

    // Full chain: the server certificate, then exactly the CA certificate.
    let chain = std::fs::read_to_string(&crt).unwrap();
    assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2);
    assert!(chain.ends_with(&std::fs::read_to_string(ca.join("ca.crt")).unwrap()));

    // The key belongs to the certificate.
    let cert_pub = openssl_ok(&["x509", "-in", p(&crt), "-noout", "-pubkey"]);
    let key_pub = openssl_ok(&["pkey", "-in", p(&key), "-pubout"]);
    assert_eq!(cert_pub, key_pub);

    // The fingerprint wharf prints is openssl's.
    let fp = openssl_ok(&["x509", "-in", p(&crt), "-noout", "-fingerprint", "-sha256"]);
    let fp = fp.trim().split('=').nth(1).unwrap().to_string();
    assert!(out.contains(&format!("SHA-256 fingerprint: {fp}")), "{fp} not in:\n{out}");
}

#[test]
fn existing_files_are_kept_without_force() {
    if !tools_present() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let ca = tmp.path().join("ca");
    wharf_ok(&["cert", "ca", "--out", p(&ca)]);
    let before = std::fs::read(ca.join("ca.crt")).unwrap();
    let o = wharf(&["cert", "ca", "--out", p(&ca)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("already exists") && text(&o).contains("--force"), "{}", text(&o));
    assert_eq!(std::fs::read(ca.join("ca.crt")).unwrap(), before);
    wharf_ok(&["cert", "ca", "--out", p(&ca), "--force"]);
    assert_ne!(std::fs::read(ca.join("ca.crt")).unwrap(), before);

    let srv = tmp.path().join("srv");
    wharf_ok(&["cert", "issue", "--ca", p(&ca), "--out", p(&srv), "--dns", "a.test"]);
    let o = wharf(&["cert", "issue", "--ca", p(&ca), "--out", p(&srv), "--dns", "b.test"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    // Without any name there is nothing to certify.
    let o = wharf(&["cert", "issue", "--ca", p(&ca), "--out", p(&tmp.path().join("x"))]);
    assert!(!o.status.success() && text(&o).contains("--local"), "{}", text(&o));
    // A CA directory without a CA.
    let o = wharf(&[
        "cert",
        "issue",
        "--ca",
        p(&srv),
        "--out",
        p(&tmp.path().join("y")),
        "--dns",
        "a.test",
    ]);
    assert!(!o.status.success() && text(&o).contains("ca.crt"), "{}", text(&o));
}

#[test]
fn local_names_cover_this_machine() {
    if !tools_present() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (_, srv) = ca_and_server(tmp.path(), &["--local"]);
    let t = openssl_ok(&["x509", "-in", p(&srv.join("server.crt")), "-noout", "-text"]);
    assert!(t.contains("DNS:localhost") && t.contains("IP Address:127.0.0.1"), "{t}");
    for ip in certs::local_addresses() {
        let shown = match ip {
            std::net::IpAddr::V4(v4) => v4.to_string(),
            // openssl prints IPv6 SANs uncompressed and upper-case.
            std::net::IpAddr::V6(v6) => v6.segments().iter().map(|s| format!("{s:X}")).collect::<Vec<_>>().join(":"),
        };
        assert!(t.contains(&format!("IP Address:{shown}")), "{shown} missing:\n{t}");
    }
    if let Some(host) = certs::hostname() {
        assert!(t.contains(&format!("DNS:{host}")), "{host} missing:\n{t}");
    }
}

#[test]
fn inspect_explains_what_clients_reject() {
    if !tools_present() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (ca, srv) = ca_and_server(d, &["--ip", "127.0.0.1", "--dns", "registry.test"]);
    let crt = srv.join("server.crt");

    let o = wharf(&["cert", "inspect", p(&crt), "--host", "127.0.0.1:5000"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("No problems found for 127.0.0.1"), "{}", text(&o));
    assert!(text(&o).contains("IP addresses:   127.0.0.1"), "{}", text(&o));

    let o = wharf(&["cert", "inspect", p(&crt), "--host", "10.9.8.7:5000"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("x509: certificate is valid for 127.0.0.1, not 10.9.8.7"),
        "{}",
        text(&o)
    );
    assert!(
        text(&o).contains("wharf cert issue --ca CA_DIR --out CERT_DIR --ip 127.0.0.1 --ip 10.9.8.7 --dns registry.test"),
        "{}",
        text(&o)
    );

    let o = wharf(&["cert", "inspect", p(&ca.join("ca.crt"))]);
    assert!(o.status.success() && text(&o).contains("(CA certificate)"), "{}", text(&o));

    // Standard input.
    let mut cmd = Command::new(common::wharf_bin());
    cmd.args(["cert", "inspect", "-", "--host", "registry.test"])
        .stdin(std::fs::File::open(&crt).unwrap());
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}", text(&o));

    // The key instead of the certificate.
    let o = wharf(&["cert", "inspect", p(&srv.join("server.key"))]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("swapped"), "{}", text(&o));
}

#[test]
fn inspect_catches_the_classic_openssl_mistakes() {
    if !tools_present() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let self_signed = |name: &str, extra: &[&str]| -> PathBuf {
        let (crt, key) = (d.join(format!("{name}.crt")), d.join(format!("{name}.key")));
        let mut args = vec![
            "req",
            "-x509",
            "-nodes",
            "-sha256",
            "-days",
            "365",
            "-keyout",
            p(&key),
            "-out",
            p(&crt),
        ];
        args.extend_from_slice(extra);
        openssl_ok(&args);
        crt
    };
    // `openssl req -newkey rsa:4096 -x509` with a CN only: no subjectAltName at all.
    let no_san = self_signed("nosan", &["-newkey", "rsa:2048", "-subj", "/CN=registry.test"]);
    let o = wharf(&["cert", "inspect", p(&no_san), "--host", "registry.test:5000"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("x509: certificate relies on legacy Common Name field, use SANs instead"),
        "{}",
        text(&o)
    );
    assert!(text(&o).contains("--dns registry.test"), "{}", text(&o));

    // The seed's IP-SAN certificate works, with a self-signed warning.
    let ip_san = self_signed(
        "ipsan",
        &["-newkey", "rsa:2048", "-subj", "/CN=reg", "-addext", "subjectAltName = IP:10.1.2.3"],
    );
    let o = wharf(&["cert", "inspect", p(&ip_san), "--host", "10.1.2.3:5000"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("WARNING") && text(&o).contains("self-signed"), "{}", text(&o));
    assert!(text(&o).contains("Key:            RSA 2048 bits"), "{}", text(&o));
    let o = wharf(&["cert", "inspect", p(&ip_san), "--host", "10.1.2.4"]);
    assert!(
        text(&o).contains("x509: certificate is valid for 10.1.2.3, not 10.1.2.4"),
        "{}",
        text(&o)
    );
    // A DNS-only certificate reached by IP.
    let dns_san = self_signed(
        "dnssan",
        &[
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-subj",
            "/CN=reg",
            "-addext",
            "subjectAltName = DNS:reg.test",
        ],
    );
    let o = wharf(&["cert", "inspect", p(&dns_san), "--host", "192.168.7.7"]);
    assert!(
        text(&o).contains("cannot validate certificate for 192.168.7.7 because it doesn't contain any IP SANs"),
        "{}",
        text(&o)
    );
    // A client-only extendedKeyUsage.
    let client_eku = self_signed(
        "clienteku",
        &[
            "-newkey",
            "rsa:2048",
            "-subj",
            "/CN=reg",
            "-addext",
            "subjectAltName = DNS:reg.test",
            "-addext",
            "extendedKeyUsage = clientAuth",
        ],
    );
    let o = wharf(&["cert", "inspect", p(&client_eku), "--host", "reg.test"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("x509: certificate specifies an incompatible key usage"),
        "{}",
        text(&o)
    );
    // A weak key.
    let weak = self_signed(
        "weak",
        &[
            "-newkey",
            "rsa:1024",
            "-subj",
            "/CN=reg",
            "-addext",
            "subjectAltName = DNS:reg.test",
        ],
    );
    let o = wharf(&["cert", "inspect", p(&weak), "--host", "reg.test"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("1024-bit RSA key"), "{}", text(&o));
}

#[test]
fn csr_is_signed_by_an_outside_ca() {
    if !tools_present() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let out = wharf_ok(&["cert", "csr", "--out", p(&d.join("req")), "--ip", "10.0.0.5", "--dns", "reg.test"]);
    for step in [
        "1. Have the CA sign it",
        "--kubelet-serving",
        "2. Install",
        "cert install-signed",
        "3. Serve it",
    ] {
        assert!(out.contains(step), "csr output lacks {step:?}:\n{out}");
    }
    let csr = d.join("req/server.csr");
    assert_eq!(mode(&d.join("req/server.key")), 0o600);
    let t = openssl_ok(&["req", "-in", p(&csr), "-noout", "-text", "-verify"]);
    for want in [
        "verify OK",
        "IP Address:10.0.0.5",
        "DNS:reg.test",
        "TLS Web Server Authentication",
        "CN = reg.test",
    ] {
        assert!(t.contains(want), "CSR lacks {want:?}:\n{t}");
    }
    // An openssl CA signs it, copying the requested extensions, as a company CA would.
    let ca = d.join("ca");
    wharf_ok(&["cert", "ca", "--out", p(&ca)]);
    let signed = d.join("req/server.crt");
    openssl_ok(&[
        "x509",
        "-req",
        "-in",
        p(&csr),
        "-CA",
        p(&ca.join("ca.crt")),
        "-CAkey",
        p(&ca.join("ca.key")),
        "-copy_extensions",
        "copy",
        "-days",
        "30",
        "-out",
        p(&signed),
    ]);
    assert!(openssl_ok(&["verify", "-CAfile", p(&ca.join("ca.crt")), p(&signed)]).contains(": OK"));
    let o = wharf(&["cert", "inspect", p(&signed), "--host", "10.0.0.5:5000"]);
    assert!(o.status.success(), "{}", text(&o));
    server::load_cert_key(&signed, &d.join("req/server.key")).expect("the CSR's key serves the signed certificate");
}

#[test]
fn issue_works_with_openssl_made_cas() {
    if !tools_present() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let make_ca = |name: &str, key_args: &[&str], convert: &[&str]| -> PathBuf {
        let dir = d.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("ca.key");
        let mut args: Vec<&str> = key_args.to_vec();
        args.extend_from_slice(&["-out", p(&key)]);
        openssl_ok(&args);
        if !convert.is_empty() {
            let mut args: Vec<&str> = convert.to_vec();
            args.extend_from_slice(&["-in", p(&key), "-out", p(&key)]);
            openssl_ok(&args);
        }
        openssl_ok(&[
            "req",
            "-x509",
            "-key",
            p(&key),
            "-sha256",
            "-days",
            "30",
            "-subj",
            "/CN=OpenSSL CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-out",
            p(&dir.join("ca.crt")),
        ]);
        dir
    };
    let rsa_pkcs1 = make_ca(
        "rsa",
        &["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        &["rsa", "-traditional"],
    );
    assert!(std::fs::read_to_string(rsa_pkcs1.join("ca.key"))
        .unwrap()
        .contains("BEGIN RSA PRIVATE KEY"));
    let ec_sec1 = make_ca("ec", &["ecparam", "-name", "prime256v1", "-genkey"], &[]);
    assert!(std::fs::read_to_string(ec_sec1.join("ca.key"))
        .unwrap()
        .contains("BEGIN EC PRIVATE KEY"));
    let rsa_pkcs8 = make_ca("rsa8", &["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"], &[]);
    for ca in [rsa_pkcs1, ec_sec1, rsa_pkcs8] {
        let srv = ca.join("srv");
        wharf_ok(&["cert", "issue", "--ca", p(&ca), "--out", p(&srv), "--ip", "127.0.0.1"]);
        let verified = openssl_ok(&["verify", "-CAfile", p(&ca.join("ca.crt")), p(&srv.join("server.crt"))]);
        assert!(verified.contains(": OK"), "{}: {verified}", ca.display());
    }
}

// ---- TLS handshakes against wharf's ServerConfig ----

/// A TLS server on 127.0.0.1 answering every HTTP/1.1 request with "ok"; stopped on drop.
struct TlsServer {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start_server(config: Arc<rustls::ServerConfig>) -> TlsServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(20), answer(acceptor, tcp)).await;
            });
        }
    });
    TlsServer { port, task }
}

async fn answer(acceptor: tokio_rustls::TlsAcceptor, tcp: tokio::net::TcpStream) -> std::io::Result<()> {
    let mut tls = acceptor.accept(tcp).await?;
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 65536 {
        let n = tls.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        request.extend_from_slice(&buf[..n]);
    }
    tls.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        .await?;
    tls.shutdown().await
}

async fn run_async(program: &str, args: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args).stdin(Stdio::null()).kill_on_drop(true);
    match tokio::time::timeout(Duration::from_secs(30), cmd.output()).await {
        Ok(out) => out.unwrap_or_else(|e| panic!("{program}: {e}")),
        Err(_) => panic!("{program} {args:?} did not finish within 30s"),
    }
}

async fn curl(port: u16, ca: &Path, extra: &[&str]) -> Output {
    let url = format!("https://127.0.0.1:{port}/v2/");
    let mut args = vec!["-sS", "--http1.1", "--max-time", "20", "--cacert", p(ca)];
    args.extend_from_slice(extra);
    args.push(&url);
    run_async("curl", &args).await
}

async fn s_client(port: u16, ca: &Path, extra: &[&str]) -> Output {
    let connect = format!("127.0.0.1:{port}");
    let mut args = vec![
        "s_client",
        "-connect",
        &connect,
        "-CAfile",
        p(ca),
        "-verify_return_error",
        "-verify_ip",
        "127.0.0.1",
    ];
    args.extend_from_slice(extra);
    run_async("openssl", &args).await
}

/// The SHA-256 fingerprint of the certificate the server presents, computed by openssl from
/// the PEM that s_client prints.
async fn served_fingerprint(port: u16, ca: &Path) -> Option<String> {
    let o = s_client(port, ca, &[]).await;
    if !o.status.success() {
        return None;
    }
    let out = String::from_utf8_lossy(&o.stdout);
    let start = out.find("-----BEGIN CERTIFICATE-----")?;
    let end = out[start..].find("-----END CERTIFICATE-----")? + start + "-----END CERTIFICATE-----".len();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("served.crt");
    std::fs::write(&file, format!("{}\n", &out[start..end])).unwrap();
    let fp = String::from_utf8_lossy(
        &run_async("openssl", &["x509", "-in", p(&file), "-noout", "-fingerprint", "-sha256"])
            .await
            .stdout,
    )
    .into_owned();
    Some(fp.trim().split('=').nth(1)?.to_string())
}

fn config_for(srv: &Path, client_cas: &[PathBuf]) -> Arc<rustls::ServerConfig> {
    server::server_config(&srv.join("server.crt"), &srv.join("server.key"), client_cas).expect("server config")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_and_openssl_accept_the_issued_certificate() {
    if !tools_present() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (ca, srv) = ca_and_server(tmp.path(), &["--ip", "127.0.0.1", "--dns", "localhost"]);
    let ca_crt = ca.join("ca.crt");
    let server = start_server(config_for(&srv, &[])).await;

    let o = curl(server.port, &ca_crt, &[]).await;
    assert!(o.status.success(), "curl: {}", text(&o));
    assert_eq!(o.stdout, b"ok");
    let by_name = format!("localhost:{}:127.0.0.1", server.port);
    let url = format!("https://localhost:{}/v2/", server.port);
    let o = run_async(
        "curl",
        &[
            "-sS",
            "--http1.1",
            "--max-time",
            "20",
            "--cacert",
            p(&ca_crt),
            "--resolve",
            &by_name,
            &url,
        ],
    )
    .await;
    assert!(o.status.success(), "curl by name: {}", text(&o));

    for version in ["-tls1_3", "-tls1_2"] {
        let o = s_client(server.port, &ca_crt, &[version, "-alpn", "h2,http/1.1"]).await;
        let t = text(&o);
        assert!(o.status.success(), "s_client {version}: {t}");
        assert!(t.contains("Verify return code: 0 (ok)"), "{t}");
        assert!(t.contains("ALPN protocol: h2"), "{t}");
    }
    // TLS 1.1 and older are refused.
    let o = s_client(server.port, &ca_crt, &["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"]).await;
    assert!(!o.status.success(), "TLS 1.1 accepted: {}", text(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_without_the_ip_san_is_refused() {
    if !tools_present() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (ca, srv) = ca_and_server(tmp.path(), &["--dns", "only-a-name.test"]);
    let ca_crt = ca.join("ca.crt");
    let server = start_server(config_for(&srv, &[])).await;

    let o = curl(server.port, &ca_crt, &[]).await;
    assert_eq!(o.status.code(), Some(60), "curl must reject the name mismatch: {}", text(&o));
    let o = s_client(server.port, &ca_crt, &[]).await;
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("IP address mismatch"), "{}", text(&o));
    // And wharf says so before any client tries.
    let o = wharf(&[
        "cert",
        "inspect",
        p(&srv.join("server.crt")),
        "--host",
        &format!("127.0.0.1:{}", server.port),
    ]);
    assert!(text(&o).contains("doesn't contain any IP SANs"), "{}", text(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaced_certificate_is_served_without_restart() {
    if !tools_present() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (ca, srv) = ca_and_server(tmp.path(), &["--ip", "127.0.0.1"]);
    let ca_crt = ca.join("ca.crt");
    let crt = srv.join("server.crt");
    let server = start_server(config_for(&srv, &[])).await;
    let first = certs::fingerprint_sha256(&std::fs::read_to_string(&crt).unwrap()).unwrap();
    assert_eq!(served_fingerprint(server.port, &ca_crt).await.as_deref(), Some(first.as_str()));

    // Renew in place with the CLI while the server runs.
    wharf_ok(&["cert", "issue", "--ca", p(&ca), "--out", p(&srv), "--ip", "127.0.0.1", "--force"]);
    let second = certs::fingerprint_sha256(&std::fs::read_to_string(&crt).unwrap()).unwrap();
    assert_ne!(first, second);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut served = None;
    while Instant::now() < deadline {
        served = served_fingerprint(server.port, &ca_crt).await;
        if served.as_deref() == Some(second.as_str()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        served.as_deref(),
        Some(second.as_str()),
        "the renewed certificate was not served within 10s"
    );
    assert!(curl(server.port, &ca_crt, &[]).await.status.success());

    // A broken replacement leaves the working certificate in service.
    std::fs::write(&crt, "not a certificate\n").unwrap();
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(served_fingerprint(server.port, &ca_crt).await.as_deref(), Some(second.as_str()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_are_required_when_client_cas_are_set() {
    if !tools_present() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (ca, srv) = ca_and_server(d, &["--ip", "127.0.0.1"]);
    let ca_crt = ca.join("ca.crt");
    let out = wharf_ok(&[
        "cert",
        "client",
        "--ca",
        p(&ca),
        "--out",
        p(&d.join("client")),
        "--name",
        "ci-runner",
    ]);
    assert!(out.contains("REGISTRY_HTTP_TLS_CLIENTCAS_0="), "{out}");
    assert_eq!(mode(&d.join("client/client.key")), 0o600);
    let server = start_server(config_for(&srv, std::slice::from_ref(&ca_crt))).await;

    let o = curl(server.port, &ca_crt, &[]).await;
    assert!(!o.status.success(), "a client without a certificate got in: {}", text(&o));
    let (cert, key) = (d.join("client/client.cert"), d.join("client/client.key"));
    let o = curl(server.port, &ca_crt, &["--cert", p(&cert), "--key", p(&key)]).await;
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(o.stdout, b"ok");

    // A client certificate from another CA is refused.
    let other = d.join("other");
    wharf_ok(&["cert", "ca", "--out", p(&other)]);
    wharf_ok(&[
        "cert",
        "client",
        "--ca",
        p(&other),
        "--out",
        p(&d.join("intruder")),
        "--name",
        "intruder",
    ]);
    let o = curl(
        server.port,
        &ca_crt,
        &[
            "--cert",
            p(&d.join("intruder/client.cert")),
            "--key",
            p(&d.join("intruder/client.key")),
        ],
    )
    .await;
    assert!(!o.status.success(), "a foreign client certificate got in: {}", text(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_made_rsa_and_ec_keys_are_served() {
    if !tools_present() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let variants: [(&str, &[&str], &[&str], &str); 3] = [
        (
            "rsa-pkcs8",
            &["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            &[],
            "BEGIN PRIVATE KEY",
        ),
        (
            "rsa-pkcs1",
            &["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            &["rsa", "-traditional"],
            "BEGIN RSA PRIVATE KEY",
        ),
        (
            "ec-sec1",
            &["ecparam", "-name", "prime256v1", "-genkey"],
            &[],
            "BEGIN EC PRIVATE KEY",
        ),
    ];
    for (name, gen, convert, label) in variants {
        let (key, crt) = (d.join(format!("{name}.key")), d.join(format!("{name}.crt")));
        let mut args = gen.to_vec();
        args.extend_from_slice(&["-out", p(&key)]);
        openssl_ok(&args);
        if !convert.is_empty() {
            let mut args = convert.to_vec();
            args.extend_from_slice(&["-in", p(&key), "-out", p(&key)]);
            openssl_ok(&args);
        }
        assert!(std::fs::read_to_string(&key).unwrap().contains(label), "{name}");
        openssl_ok(&[
            "req",
            "-x509",
            "-key",
            p(&key),
            "-sha256",
            "-days",
            "30",
            "-subj",
            "/CN=reg",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-out",
            p(&crt),
        ]);
        let config = server::server_config(&crt, &key, &[]).unwrap_or_else(|e| panic!("{name}: {e}"));
        let server = start_server(config).await;
        let o = curl(server.port, &crt, &[]).await;
        assert!(o.status.success(), "{name}: {}", text(&o));
    }
    // A key that belongs to another certificate is named in the error.
    let err = server::load_cert_key(&d.join("rsa-pkcs8.crt"), &d.join("ec-sec1.key"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("ec-sec1.key") && err.contains("does not match"), "{err}");
}
