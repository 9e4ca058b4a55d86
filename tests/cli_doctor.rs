//! `wharf doctor` end to end: the real binary diagnoses real servers on 127.0.0.1 — nothing
//! listening, wharf over plain HTTP, wharf over TLS with certificates clients refuse (unknown
//! CA, no IP SAN, clientAuth-only EKU), and wharf with htpasswd logins. Client-side files
//! (certs.d, hosts.toml, ~/.docker/config.json) live in a fake root passed with `--root`.

mod common;

use common::netns::TestHost;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The home directory doctor sees (below `--root`).
const HOME: &str = "/home/tester";

struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Outcome {
    fn has(&self, needle: &str) -> bool {
        self.stdout.contains(needle)
    }

    #[track_caller]
    fn expect(&self, needles: &[&str]) {
        for n in needles {
            assert!(
                self.has(n),
                "expected {n:?} in the diagnosis:\n{}\nstderr:\n{}",
                self.stdout,
                self.stderr
            );
        }
    }

    /// The printed line of a step (`FAIL  trust.containers ...`), with its details and fix.
    fn step(&self, status: &str, name: &str) -> String {
        let head = format!("{status:<6}{name} ");
        let mut out = String::new();
        let mut inside = false;
        for line in self.stdout.lines() {
            if line.starts_with(&head) {
                inside = true;
            } else if inside && !line.starts_with(' ') {
                break;
            }
            if inside {
                out.push_str(line);
                out.push('\n');
            }
        }
        assert!(!out.is_empty(), "no step {head:?} in:\n{}", self.stdout);
        out
    }
}

/// A `wharf` command on `host` (inside its network namespace; `ip netns exec` execs wharf, so
/// the child's PID is wharf's) or on this machine.
fn wharf_on(host: Option<&TestHost>) -> Command {
    match host {
        Some(h) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &h.ns, common::wharf_bin()]);
            c
        }
        None => Command::new(common::wharf_bin()),
    }
}

/// Runs `wharf doctor ARGS` with a time limit, feeding `stdin` if given.
fn doctor(args: &[&str], stdin: Option<&str>) -> Outcome {
    doctor_in(None, args, stdin)
}

/// `wharf doctor ARGS` on `host` (inside its network namespace) or on this machine.
fn doctor_in(host: Option<&TestHost>, args: &[&str], stdin: Option<&str>) -> Outcome {
    let dir = tempfile::tempdir().expect("tempdir");
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let mut command = wharf_on(host);
    let mut child = command
        .arg("doctor")
        .args(args)
        .args(["--timeout", "10"])
        .env("HOME", HOME)
        .env_remove("DOCKER_CONFIG")
        .env_remove("XDG_RUNTIME_DIR")
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("spawn wharf doctor");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(input.as_bytes()).expect("write stdin");
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("wharf doctor {args:?} did not finish within 90s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let o = Outcome {
        code: status.code().unwrap_or(-1),
        stdout: std::fs::read_to_string(&out).unwrap(),
        stderr: std::fs::read_to_string(&err).unwrap(),
    };
    println!("--- wharf doctor {args:?} (exit {}):\n{}{}", o.code, o.stdout, o.stderr);
    o
}

fn wharf_ok(args: &[&str]) {
    let o = Command::new(common::wharf_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run wharf");
    assert!(o.status.success(), "wharf {args:?} failed: {}", String::from_utf8_lossy(&o.stderr));
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// Puts `content` at `logical` (an absolute client-side path) below `root`.
fn put(root: &Path, logical: &str, content: &str) {
    let path = root.join(logical.trim_start_matches('/'));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

/// `wharf serve CONFIG` with TLS (the shared harness waits for an http:// address only).
struct Server {
    child: Option<Child>,
    /// `127.0.0.1:PORT`
    addr: String,
}

impl Server {
    fn start(dir: &Path, cert: &Path, key: &Path, htpasswd: Option<&Path>) -> Server {
        Self::start_with_client_ca(dir, cert, key, htpasswd, None)
    }

    /// With `client_ca`, the server requires client certificates signed by it (mutual TLS).
    fn start_with_client_ca(dir: &Path, cert: &Path, key: &Path, htpasswd: Option<&Path>, client_ca: Option<&Path>) -> Server {
        Self::start_on(None, dir, cert, key, htpasswd, client_ca)
    }

    /// On `host` (a network namespace: a non-loopback address, as another machine), or on
    /// 127.0.0.1.
    fn start_on(host: Option<&TestHost>, dir: &Path, cert: &Path, key: &Path, htpasswd: Option<&Path>, client_ca: Option<&Path>) -> Server {
        let ip = host.map_or("127.0.0.1", |h| h.ip.as_str());
        let mut config = format!(
            "version: 0.1\nhttp:\n  addr: {ip}:0\n  tls:\n    certificate: {}\n    key: {}\n",
            p(cert),
            p(key)
        );
        if let Some(ca) = client_ca {
            config.push_str(&format!("    clientcas:\n      - {}\n", p(ca)));
        }
        if let Some(h) = htpasswd {
            config.push_str(&format!("auth:\n  htpasswd:\n    realm: Doctor Realm\n    path: {}\n", p(h)));
        }
        Self::start_config(host, dir, &config)
    }

    /// `wharf serve` with this configuration, on `host` or on this machine.
    fn start_config(host: Option<&TestHost>, dir: &Path, config: &str) -> Server {
        let config_path = dir.join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let mut command = wharf_on(host);
        let mut child = command
            .arg("serve")
            .arg(&config_path)
            .arg("--root")
            .arg(dir.join("data"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn wharf serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                println!("[wharf stdout] {line}");
                if let Some(rest) = line.split("listening on https://").nth(1) {
                    let _ = tx.send(rest.chars().take_while(|c| !c.is_whitespace()).collect::<String>());
                }
            }
        });
        let mut server = Server {
            child: Some(child),
            addr: String::new(),
        };
        server.addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("wharf serve did not print an https:// address within 30s");
        server
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on the PID of a child this test started and has not reaped.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A CA (`<dir>/ca`) made by `wharf cert ca`, and a server certificate for `names` in `<dir>/srv`.
fn ca_and_server(dir: &Path, names: &[&str]) -> (PathBuf, PathBuf) {
    let (ca, srv) = (dir.join("ca"), dir.join("srv"));
    wharf_ok(&["cert", "ca", "--out", p(&ca), "--name", "Doctor Test CA"]);
    let mut args = vec!["cert", "issue", "--ca", p(&ca), "--out", p(&srv)];
    args.extend_from_slice(names);
    wharf_ok(&args);
    (ca, srv)
}

fn ca_fingerprint(ca_dir: &Path) -> String {
    let pem = std::fs::read_to_string(ca_dir.join("ca.crt")).unwrap();
    wharf::tls::certs::fingerprint_sha256(&pem).unwrap()
}

/// A fake client machine with Docker and podman set up (/etc/docker, and the policy.json
/// containers-common installs for podman and skopeo).
fn client_root(dir: &Path) -> PathBuf {
    let root = dir.join("client");
    std::fs::create_dir_all(root.join("etc/docker")).unwrap();
    put(
        &root,
        "/etc/containers/policy.json",
        r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
    );
    root
}

#[test]
fn nothing_listening_is_connection_refused_with_a_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", common::free_port());
    let o = doctor(&[&addr, "--root", p(tmp.path())], None);
    assert_eq!(o.code, 1);
    let step = o.step("FAIL", "connect");
    assert!(step.contains(&format!("dial tcp {addr}: connect: connection refused")), "{step}");
    assert!(
        step.contains("fix: nothing accepts connections") && step.contains("is the registry running?"),
        "{step}"
    );
    assert!(!o.has("protocol"), "nothing after a refused connection:\n{}", o.stdout);
    assert!(o.stderr.contains("1 check(s) failed"), "{}", o.stderr);

    // The same as JSON: one document on stdout.
    let o = doctor(&[&addr, "--root", p(tmp.path()), "--json"], None);
    assert_eq!(o.code, 1);
    let doc: serde_json::Value = serde_json::from_str(&o.stdout).expect("JSON output");
    assert_eq!(doc["ok"], false);
    assert_eq!(doc["failed"], 1);
    let steps = doc["steps"].as_array().unwrap();
    let names: Vec<&str> = steps.iter().map(|s| s["step"].as_str().unwrap()).collect();
    assert_eq!(names, ["address", "dns", "connect"]);
    let connect = &steps[2];
    assert_eq!(connect["status"], "fail");
    assert!(connect["message"].as_str().unwrap().contains("connection refused"));
    assert!(connect["fix"].as_str().unwrap().contains("wharf serve --addr 0.0.0.0:"));
}

#[test]
fn unparseable_address_fails_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let o = doctor(&["reg.lan:99999", "--root", p(tmp.path())], None);
    assert_eq!(o.code, 1);
    assert!(o.step("FAIL", "address").contains("is not a port number"), "{}", o.stdout);
}

#[test]
fn plain_http_registry_is_the_http_response_to_https_client_diagnosis() {
    let w = common::Wharf::start();
    let tmp = tempfile::tempdir().unwrap();
    let port = w.addr.rsplit(':').next().unwrap().to_string();
    // "localhost" resolves through /etc/hosts: the DNS step runs without network traffic.
    let name = format!("localhost:{port}");
    let o = doctor(&[&name, "--root", p(tmp.path())], None);
    // Docker accepts plain HTTP on 127.0.0.0/8, so this is a warning, not a failure.
    assert_eq!(o.code, 0, "{}", o.stdout);
    o.expect(&["ok    dns", "localhost resolves to"]);
    let step = o.step("warn", "protocol");
    for needle in [
        "http: server gave HTTP response to HTTPS client",
        "docker: accepts it: 127.0.0.1 is in 127.0.0.0/8",
        "\"insecure-registries\"",
        "ctr: --plain-http",
        "--tls-verify=false",
        "REGISTRY_HTTP_TLS_CERTIFICATE",
    ] {
        assert!(step.contains(needle), "{needle:?} missing in:\n{step}");
    }
    assert!(
        o.step("ok", "api").contains(&format!("GET http://{name}/v2/ → 200")),
        "{}",
        o.stdout
    );
    assert!(!o.has("trust."), "no certificate steps over plain HTTP:\n{}", o.stdout);
}

#[test]
fn tls_registry_with_an_unknown_ca_then_trusted_once_the_ca_is_installed() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, srv) = ca_and_server(tmp.path(), &["--ip", "127.0.0.1"]);
    let server = Server::start(tmp.path(), &srv.join("server.crt"), &srv.join("server.key"), None);
    let addr = server.addr.clone();
    let root = client_root(tmp.path());
    let fp = ca_fingerprint(&ca);

    let o = doctor(&[&addr, "--root", p(&root)], None);
    assert_eq!(o.code, 1);
    o.expect(&[
        "ok    protocol            TLS: TLS 1.3",
        "ok    certificate",
        "issuer: CN=Doctor Test CA",
    ]);
    let podman = o.step("FAIL", "trust.containers");
    assert!(podman.contains("x509: certificate signed by unknown authority"), "{podman}");
    assert!(
        podman.contains(&format!("wharf trust {addr} --ca ca.crt --fingerprint {fp}")),
        "{podman}"
    );
    assert!(podman.contains(&format!("/etc/containers/certs.d/{addr}/ca.crt")), "{podman}");
    // Docker verifies nothing for 127.0.0.0/8, and says what verification would give.
    let docker = o.step("ok", "trust.docker");
    assert!(
        docker.contains("does not verify") && docker.contains("unknown authority"),
        "{docker}"
    );
    assert!(o.has("skip  trust.containerd"), "{}", o.stdout);
    o.expect(&["ok    api", "→ 200"]);

    // Installed where Docker reads it: podman reads /etc/docker/certs.d too.
    put(
        &root,
        &format!("/etc/docker/certs.d/{addr}/ca.crt"),
        &std::fs::read_to_string(ca.join("ca.crt")).unwrap(),
    );
    // containerd installed (its config.toml exists, and sets config_path so that the CRI
    // reads certs.d too), with a hosts.toml naming the CA.
    put(
        &root,
        "/etc/containerd/config.toml",
        "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/etc/containerd/certs.d\"\n",
    );
    let ca_path = format!("/etc/containerd/certs.d/{addr}/ca.crt");
    put(&root, &ca_path, &std::fs::read_to_string(ca.join("ca.crt")).unwrap());
    put(
        &root,
        &format!("/etc/containerd/certs.d/{addr}/hosts.toml"),
        &format!("server = \"https://{addr}\"\n[host.\"https://{addr}\"]\n  ca = \"{ca_path}\"\n"),
    );
    let o = doctor(&[&addr, "--root", p(&root)], None);
    assert_eq!(o.code, 0, "{}", o.stdout);
    assert!(o
        .step("ok", "trust.containers")
        .contains(&format!("trusted (CA from /etc/docker/certs.d/{addr}/ca.crt)")));
    assert!(o.step("ok", "trust.containerd").contains(&format!("trusted (CA from {ca_path})")));
    assert!(o.step("ok", "trust.docker").contains("it would verify with the CA"));
    o.expect(&["No problems found."]);

    // A client speaking plain HTTP to the TLS port.
    let o = doctor(&[&format!("http://{addr}"), "--root", p(&root)], None);
    assert_eq!(o.code, 1);
    let step = o.step("FAIL", "plain-http");
    assert!(step.contains("client sent an HTTP request to an HTTPS server"), "{step}");
    assert!(step.contains(&format!("use https://{addr}")), "{step}");
}

#[test]
fn certificate_without_the_ip_san() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, srv) = ca_and_server(tmp.path(), &["--dns", "registry.test"]);
    let server = Server::start(tmp.path(), &srv.join("server.crt"), &srv.join("server.key"), None);
    let root = client_root(tmp.path());
    put(
        &root,
        &format!("/etc/docker/certs.d/{}/ca.crt", server.addr),
        &std::fs::read_to_string(ca.join("ca.crt")).unwrap(),
    );
    let o = doctor(&[&server.addr, "--root", p(&root)], None);
    assert_eq!(o.code, 1);
    let step = o.step("FAIL", "certificate");
    assert!(
        step.contains("x509: cannot validate certificate for 127.0.0.1 because it doesn't contain any IP SANs"),
        "{step}"
    );
    assert!(
        step.contains("wharf cert issue --ca CA_DIR --out CERT_DIR --ip 127.0.0.1 --dns registry.test"),
        "{step}"
    );
    // The CA itself is trusted: the name is the problem, not the issuer, and podman refuses
    // with that error.
    let podman = o.step("FAIL", "trust.containers");
    assert!(podman.contains("doesn't contain any IP SANs"), "{podman}");
    assert!(podman.contains("the chain is trusted (CA from /etc/docker/certs.d/"), "{podman}");
}

#[test]
fn certificate_for_client_auth_only_is_an_incompatible_key_usage() {
    let tmp = tempfile::tempdir().unwrap();
    let ca_dir = tmp.path().join("ca");
    wharf_ok(&["cert", "ca", "--out", p(&ca_dir), "--name", "Doctor Test CA"]);
    let ca_pem = std::fs::read_to_string(ca_dir.join("ca.crt")).unwrap();
    let ca_key = rcgen::KeyPair::from_pem(&std::fs::read_to_string(ca_dir.join("ca.key")).unwrap()).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_pem, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name.push(rcgen::DnType::CommonName, "127.0.0.1");
    params.subject_alt_names = vec![rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap())];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(90);
    let leaf = params.signed_by(&key, &issuer).unwrap();
    let (cert, key_path) = (tmp.path().join("server.crt"), tmp.path().join("server.key"));
    std::fs::write(&cert, format!("{}{ca_pem}", leaf.pem())).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();

    let server = Server::start(tmp.path(), &cert, &key_path, None);
    let root = client_root(tmp.path());
    put(&root, &format!("/etc/docker/certs.d/{}/ca.crt", server.addr), &ca_pem);
    let o = doctor(&[&server.addr, "--root", p(&root)], None);
    assert_eq!(o.code, 1);
    let step = o.step("FAIL", "certificate");
    assert!(step.contains("x509: certificate specifies an incompatible key usage"), "{step}");
    assert!(step.contains("clientAuth") && step.contains("wharf cert issue"), "{step}");
}

#[test]
fn htpasswd_login_anonymous_wrong_and_right_password() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, srv) = ca_and_server(tmp.path(), &["--ip", "127.0.0.1"]);
    let htpasswd = alice_htpasswd(tmp.path());
    let server = Server::start(tmp.path(), &srv.join("server.crt"), &srv.join("server.key"), Some(&htpasswd));
    let addr = server.addr.clone();
    let root = client_root(tmp.path());
    put(
        &root,
        &format!("/etc/docker/certs.d/{addr}/ca.crt"),
        &std::fs::read_to_string(ca.join("ca.crt")).unwrap(),
    );

    // Anonymous: the challenge is reported; not being logged in is a warning.
    let o = doctor(&[&addr, "--root", p(&root)], None);
    assert_eq!(o.code, 0, "{}", o.stdout);
    let api = o.step("ok", "api");
    assert!(api.contains("→ 401: the registry requires a login"), "{api}");
    assert!(api.contains("WWW-Authenticate: Basic realm=\"Doctor Realm\""), "{api}");
    assert!(api.contains("scheme: Basic, realm: Doctor Realm"), "{api}");
    let creds = o.step("warn", "credentials");
    assert!(
        creds.contains("no basic auth credentials") && creds.contains(&format!("docker login {addr}")),
        "{creds}"
    );

    // Wrong password.
    let o = doctor(
        &[&addr, "--root", p(&root), "--user", "alice", "--password-stdin"],
        Some("wrong-pass\n"),
    );
    assert_eq!(o.code, 1);
    let creds = o.step("FAIL", "credentials");
    assert!(creds.contains("unauthorized: wrong user name or password for alice"), "{creds}");
    assert!(
        creds.contains(&format!("docker login {addr} -u alice")) && creds.contains("wharf htpasswd set HTPASSWD_FILE alice"),
        "{creds}"
    );

    // Right password.
    let o = doctor(
        &[&addr, "--root", p(&root), "--user", "alice", "--password-stdin"],
        Some("s3cret-pass\n"),
    );
    assert_eq!(o.code, 0, "{}", o.stdout);
    assert!(o.step("ok", "credentials").contains("alice: login accepted"), "{}", o.stdout);

    // What `docker login` stored in ~/.docker/config.json is checked without --user.
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cret-pass");
    let config = serde_json::json!({"auths": {addr.clone(): {"auth": auth}}});
    put(&root, &format!("{HOME}/.docker/config.json"), &config.to_string());
    let o = doctor(&[&addr, "--root", p(&root)], None);
    assert_eq!(o.code, 0, "{}", o.stdout);
    assert!(
        o.step("ok", "credentials")
            .contains(&format!("alice: login accepted ({HOME}/.docker/config.json)")),
        "{}",
        o.stdout
    );
}

#[test]
fn mutual_tls_without_then_with_a_client_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, srv) = ca_and_server(tmp.path(), &["--ip", "127.0.0.1"]);
    let server = Server::start_with_client_ca(
        tmp.path(),
        &srv.join("server.crt"),
        &srv.join("server.key"),
        None,
        Some(&ca.join("ca.crt")),
    );
    let addr = server.addr.clone();
    let root = client_root(tmp.path());
    let certs_d = format!("/etc/docker/certs.d/{addr}");
    put(
        &root,
        &format!("{certs_d}/ca.crt"),
        &std::fs::read_to_string(ca.join("ca.crt")).unwrap(),
    );

    let o = doctor(&[&addr, "--root", p(&root)], None);
    assert_eq!(o.code, 1);
    assert!(
        o.step("ok", "protocol")
            .contains("asks for a client certificate (mutual TLS); none is installed"),
        "{}",
        o.stdout
    );
    let api = o.step("FAIL", "api");
    assert!(api.contains("requires a client certificate"), "{api}");
    assert!(api.contains(&format!("wharf cert client --ca CA_DIR --out {certs_d}")), "{api}");

    // What the fix says: a client certificate where Docker (and podman) look for it.
    wharf_ok(&[
        "cert",
        "client",
        "--ca",
        p(&ca),
        "--out",
        p(&root.join(certs_d.trim_start_matches('/'))),
        "--name",
        "tester",
    ]);
    let o = doctor(&[&addr, "--root", p(&root)], None);
    assert_eq!(o.code, 0, "{}", o.stdout);
    assert!(
        o.step("ok", "protocol").contains("the one in /etc/docker/certs.d was offered"),
        "{}",
        o.stdout
    );
    o.expect(&["→ 200"]);
}

/// Runs `openssl ARGS` in `dir`, as the seeds' recipes do.
fn openssl(dir: &Path, args: &[&str]) -> String {
    let o = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl");
    assert!(o.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// An htpasswd file with alice / s3cret-pass.
fn alice_htpasswd(dir: &Path) -> PathBuf {
    let htpasswd = dir.join("htpasswd");
    let hash = bcrypt::hash_with_result("s3cret-pass", 4)
        .unwrap()
        .format_for_version(bcrypt::Version::TwoY);
    std::fs::write(&htpasswd, format!("alice:{hash}\n")).unwrap();
    htpasswd
}

/// `skopeo login` with `cert_dir`'s CA: what Go's crypto/x509 (podman, skopeo, and Docker's
/// and containerd's verifier too) says of the registry's certificate. None when skopeo is
/// not installed (outside CI).
fn skopeo_login(tmp: &Path, addr: &str, cert_dir: &Path) -> Option<(bool, String)> {
    if !common::require_tool("skopeo") {
        return None;
    }
    let mut child = Command::new("skopeo")
        .args(["login", "--cert-dir", p(cert_dir), "--authfile", p(&tmp.join("auth.json"))])
        .args(["-u", "alice", "--password-stdin", addr])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn skopeo");
    child.stdin.take().unwrap().write_all(b"s3cret-pass\n").unwrap();
    let o = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    println!("--- skopeo login {addr} (exit {:?}):\n{text}", o.status.code());
    Some((o.status.success(), text))
}

/// How one matrix row's certificate is made: by the seed's openssl command with these extra
/// arguments, or (an expired one, which openssl 3.0's `req` cannot date back) by rcgen.
enum Recipe {
    Openssl(Vec<String>),
    Expired,
}

/// Writes `certs/domain.crt` and `certs/domain.key` in `dir`: self-signed and CA:TRUE, as
/// `openssl req -x509` makes them by default.
fn make_seed_certificate(dir: &Path, ip: &str, recipe: &Recipe) {
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    match recipe {
        Recipe::Openssl(extra) => {
            let subject = format!("/CN={ip}");
            let mut args = vec![
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-days",
                "365",
                "-nodes",
                "-sha256",
                "-keyout",
                "certs/domain.key",
                "-out",
                "certs/domain.crt",
                "-subj",
                &subject,
            ];
            args.extend(extra.iter().map(String::as_str));
            openssl(dir, &args);
        }
        Recipe::Expired => {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut params = rcgen::CertificateParams::default();
            params.distinguished_name.push(rcgen::DnType::CommonName, ip);
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params.subject_alt_names = vec![rcgen::SanType::IpAddress(ip.parse().unwrap())];
            params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(30);
            params.not_after = time::OffsetDateTime::now_utc() - time::Duration::days(1);
            std::fs::write(certs.join("domain.crt"), params.self_signed(&key).unwrap().pem()).unwrap();
            std::fs::write(certs.join("domain.key"), key.serialize_pem()).unwrap();
        }
    }
    let text = openssl(dir, &["x509", "-in", "certs/domain.crt", "-noout", "-text"]);
    assert!(text.contains("CA:TRUE"), "the seed's certificate is a CA certificate:\n{text}");
}

/// Seed 000's and 002's `openssl req -x509` certificate (self-signed, and CA:TRUE by
/// OpenSSL's defaults) used as the server certificate and installed as its own CA: Go clients
/// accept it, so doctor must too and go on to the password check. Seed 003's CN-only one, a
/// clientAuth-only and an expired one are refused by Go clients, with the error doctor names.
/// The registry is on a non-loopback address (a network namespace), where passwords are sent
/// only over a verified connection. skopeo, where installed, gives the real Go verdict.
#[test]
fn seed_openssl_self_signed_ca_certificate_is_judged_as_go_clients_judge_it() {
    let Some(host) = TestHost::create() else { return };
    if !common::require_tool("openssl") {
        return;
    }
    let ip = host.ip.clone();
    let san = format!("subjectAltName = IP:{ip}");
    let args = |a: &[&str]| Recipe::Openssl(a.iter().map(|s| s.to_string()).collect());
    // (row, recipe, Go's error; None: accepted)
    let cases = [
        ("000/002 IP SAN", args(&["-addext", &san]), None),
        (
            "003 CN only",
            args(&[]),
            Some("x509: certificate relies on legacy Common Name field, use SANs instead"),
        ),
        (
            "clientAuth EKU",
            args(&["-addext", &san, "-addext", "extendedKeyUsage = clientAuth"]),
            Some("x509: certificate specifies an incompatible key usage"),
        ),
        (
            "expired",
            Recipe::Expired,
            Some("x509: certificate has expired or is not yet valid"),
        ),
    ];
    let mut matrix = Vec::new();
    for (row, recipe, go_error) in cases {
        let tmp = tempfile::tempdir().unwrap();
        make_seed_certificate(tmp.path(), &ip, &recipe);
        let htpasswd = alice_htpasswd(tmp.path());
        let (cert, key) = (tmp.path().join("certs/domain.crt"), tmp.path().join("certs/domain.key"));
        let server = Server::start_on(Some(&host), tmp.path(), &cert, &key, Some(&htpasswd), None);
        let addr = server.addr.clone();
        let root = client_root(tmp.path());
        let ca_pem = std::fs::read_to_string(&cert).unwrap();
        put(&root, &format!("/etc/docker/certs.d/{addr}/ca.crt"), &ca_pem);

        // The real Go client, with that certificate as its CA (seed 000's certs.d copy).
        let cert_dir = tmp.path().join("cert-dir");
        std::fs::create_dir_all(&cert_dir).unwrap();
        std::fs::write(cert_dir.join("ca.crt"), &ca_pem).unwrap();
        let skopeo = skopeo_login(tmp.path(), &addr, &cert_dir);
        if let Some((ok, out)) = &skopeo {
            assert_eq!(*ok, go_error.is_none(), "{row}: skopeo login: {out}");
            if let Some(e) = go_error {
                assert!(out.contains(e), "{row}: skopeo's error: {out}");
            }
        }

        let o = doctor(
            &[&addr, "--root", p(&root), "--user", "alice", "--password-stdin"],
            Some("s3cret-pass\n"),
        );
        match go_error {
            None => {
                assert_eq!(o.code, 0, "{row}: {}", o.stdout);
                for client in ["trust.docker", "trust.containers"] {
                    let step = o.step("ok", client);
                    assert!(step.contains("trusted (CA from /etc/docker/certs.d/"), "{step}");
                    assert!(!step.contains("refuse"), "{step}");
                }
                assert!(o.step("ok", "credentials").contains("alice: login accepted"), "{}", o.stdout);
            }
            Some(e) => {
                assert_eq!(o.code, 1, "{row}: {}", o.stdout);
                assert!(o.step("FAIL", "certificate").contains(e), "{row}: {}", o.stdout);
                assert!(o.step("warn", "credentials").contains("password not sent"), "{}", o.stdout);
            }
        }
        let verdict = |accepts: bool| if accepts { "accepts" } else { "refuses" };
        matrix.push(format!(
            "{row:<16} skopeo: {:<15} doctor: {} (exit {})",
            skopeo.map_or("not installed", |(ok, _)| verdict(ok)),
            verdict(o.code == 0),
            o.code
        ));
    }
    println!(
        "certificate (CA:TRUE, self-signed, installed as the CA) × client:\n{}",
        matrix.join("\n")
    );
}

/// Seed 004: a server certificate signed by the user's own CA (made with openssl). Doctor's
/// `wharf trust ... --ca ca.crt --fingerprint` must name the CA's fingerprint: run as printed
/// (the CA_FINGERPRINT placeholder, when the server does not send its CA, filled in the way
/// the text says), it installs the CA.
#[test]
fn printed_trust_command_for_a_ca_signed_certificate_succeeds_as_printed() {
    if !common::require_tool("openssl") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    openssl(dir, &["ecparam", "-name", "prime256v1", "-genkey", "-out", "ca.key"]);
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "ca.key",
            "-sha256",
            "-days",
            "365",
            "-subj",
            "/CN=Cluster CA",
            "-out",
            "ca.crt",
        ],
    );
    openssl(dir, &["ecparam", "-name", "prime256v1", "-genkey", "-out", "repo-key.pem"]);
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-sha256",
            "-key",
            "repo-key.pem",
            "-subj",
            "/O=system:nodes/CN=system:node:registry",
            "-out",
            "repo.csr",
        ],
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName = IP:127.0.0.1\nextendedKeyUsage = serverAuth\nkeyUsage = critical, digitalSignature, keyEncipherment\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "repo.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "90",
            "-sha256",
            "-extfile",
            "ext.cnf",
            "-out",
            "repo.crt",
        ],
    );
    let (leaf, ca) = (
        std::fs::read_to_string(dir.join("repo.crt")).unwrap(),
        std::fs::read_to_string(dir.join("ca.crt")).unwrap(),
    );
    let ca_fp = wharf::tls::certs::fingerprint_sha256(&ca).unwrap();
    let openssl_fp = openssl(dir, &["x509", "-in", "ca.crt", "-noout", "-fingerprint", "-sha256"]);
    let wharf_dir = Path::new(common::wharf_bin()).parent().unwrap().to_path_buf();
    let path = format!("{}:{}", wharf_dir.display(), std::env::var("PATH").unwrap_or_default());

    // The server sends only its own certificate (as a CSR-signed one is), then with the CA.
    for (served, chain) in [("leaf only", leaf.clone()), ("leaf and CA", format!("{leaf}{ca}"))] {
        let case = tempfile::tempdir().unwrap();
        let cert = case.path().join("tls.crt");
        std::fs::write(&cert, &chain).unwrap();
        let server = Server::start(case.path(), &cert, &dir.join("repo-key.pem"), None);
        let addr = server.addr.clone();
        let root = client_root(case.path());
        let o = doctor(&[&addr, "--root", p(&root)], None);
        let step = o.step("FAIL", "trust.containers");
        let line = step
            .lines()
            .find_map(|l| l.split_once("wharf trust ").map(|(_, rest)| format!("wharf trust {rest}")))
            .unwrap_or_else(|| panic!("no wharf trust command in:\n{step}"));
        assert!(
            line.starts_with(&format!("wharf trust {addr} --ca ca.crt --fingerprint ")),
            "{line}"
        );
        let command = if served == "leaf only" {
            assert!(line.contains("CA_FINGERPRINT"), "{served}: {line}");
            line.replace("CA_FINGERPRINT", &format!("'{}'", openssl_fp.trim()))
        } else {
            assert!(line.contains(&ca_fp), "{served}: the CA's fingerprint: {line}");
            line.clone()
        };
        let target = case.path().join("target-root");
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("{command} --root {}", p(&target)))
            .current_dir(dir)
            .env("PATH", &path)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        println!("--- {served}: {command}\n{text}");
        assert!(out.status.success(), "{served}: the printed command failed:\n{text}");
        let installed = std::fs::read_to_string(target.join(format!("etc/docker/certs.d/{addr}/ca.crt"))).unwrap();
        assert_eq!(wharf::tls::certs::fingerprint_sha256(&installed).unwrap(), ca_fp);
        drop(server);
    }
}

/// A Docker-only host (a balena device): no containerd or podman binary, config or socket,
/// only `/etc/containerd/certs.d` and `/etc/containers/certs.d` left behind. Both are "not
/// installed", not failures.
#[test]
fn docker_only_host_does_not_fail_on_containerd_or_podman() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, srv) = ca_and_server(tmp.path(), &["--ip", "127.0.0.1"]);
    let server = Server::start(tmp.path(), &srv.join("server.crt"), &srv.join("server.key"), None);
    let addr = server.addr.clone();
    let root = tmp.path().join("client");
    put(
        &root,
        &format!("/etc/docker/certs.d/{addr}/ca.crt"),
        &std::fs::read_to_string(ca.join("ca.crt")).unwrap(),
    );
    // Directories left behind (emptied certs.d) are no containerd and no podman.
    std::fs::create_dir_all(root.join("etc/containerd/certs.d")).unwrap();
    std::fs::create_dir_all(root.join("etc/containers/certs.d")).unwrap();
    let o = doctor(&[&addr, "--root", p(&root)], None);
    assert_eq!(o.code, 0, "{}", o.stdout);
    assert!(o.step("skip", "trust.containerd").contains("not installed"), "{}", o.stdout);
    assert!(
        o.step("skip", "trust.containers")
            .contains("not installed (no podman, skopeo or buildah on PATH"),
        "{}",
        o.stdout
    );
    assert!(o.step("ok", "trust.docker").contains("verify with the CA"), "{}", o.stdout);

    // podman's configuration makes it judged: it reads Docker's certs.d too.
    put(&root, "/etc/containers/registries.conf", "unqualified-search-registries = []\n");
    let o = doctor(&[&addr, "--root", p(&root)], None);
    assert!(o.step("ok", "trust.containers").contains("trusted"), "{}", o.stdout);

    // Once containerd is there (its config.toml), it is judged: without a hosts.toml it
    // speaks plain HTTP to a loopback registry (tests/trust_matrix.rs shows containerd 1.6 do
    // so), which this TLS port refuses.
    put(&root, "/etc/containerd/config.toml", "version = 2\n");
    let o = doctor(&[&addr, "--root", p(&root)], None);
    assert_eq!(o.code, 1, "{}", o.stdout);
    let step = o.step("FAIL", "trust.containerd");
    assert!(
        step.contains("speaks plain HTTP") && step.contains("malformed HTTP response"),
        "{}",
        o.stdout
    );
}

/// A Bearer registry whose token server is the same wharf under another address: the registry
/// is asked for at the namespace's LAN address, the realm says `https://127.0.0.1:PORT` (doctor
/// runs inside the namespace, as a client on that machine would). The certificate is a seed's
/// `openssl req -x509` one (self-signed, CA:TRUE) installed as the registry's CA. Doctor asks the
/// token server with Go's rules and the registry's CAs, as Docker does: with 127.0.0.1 in the
/// certificate it sends the password and logs in (webpki would refuse a CA used as the server
/// certificate); without, it names Go's error and sends nothing.
#[test]
fn token_server_certificate_is_judged_with_go_rules_and_the_registrys_cas() {
    let Some(host) = TestHost::create() else { return };
    if !common::require_tool("openssl") {
        return;
    }
    let ip = host.ip.clone();
    // The namespace is this test's own: nothing else listens there.
    let port = 5443;
    let registry = format!("{ip}:{port}");
    let realm = format!("https://127.0.0.1:{port}/auth/token");
    let cases = [
        (format!("subjectAltName = IP:{ip},IP:127.0.0.1"), None),
        (
            format!("subjectAltName = IP:{ip}"),
            Some(format!("x509: certificate is valid for {ip}, not 127.0.0.1")),
        ),
    ];
    for (san, go_error) in cases {
        let tmp = tempfile::tempdir().unwrap();
        make_seed_certificate(tmp.path(), &ip, &Recipe::Openssl(vec!["-addext".into(), san.clone()]));
        let htpasswd = alice_htpasswd(tmp.path());
        let config = format!(
            "version: 0.1\nhttp:\n  addr: 0.0.0.0:{port}\n  tls:\n    certificate: {}\n    key: {}\n\
             auth:\n  token:\n    realm: {realm}\n    service: doctor-test\n    issuer: doctor-test\n    htpasswd: {}\n",
            p(&tmp.path().join("certs/domain.crt")),
            p(&tmp.path().join("certs/domain.key")),
            p(&htpasswd)
        );
        let _server = Server::start_config(Some(&host), tmp.path(), &config);
        let root = client_root(tmp.path());
        let ca_pem = std::fs::read_to_string(tmp.path().join("certs/domain.crt")).unwrap();
        put(&root, &format!("/etc/docker/certs.d/{registry}/ca.crt"), &ca_pem);

        let o = doctor_in(
            Some(&host),
            &[&registry, "--root", p(&root), "--user", "alice", "--password-stdin"],
            Some("s3cret-pass\n"),
        );
        assert!(o.step("ok", "api").contains("token authentication"), "{san}: {}", o.stdout);
        match go_error {
            None => {
                assert_eq!(o.code, 0, "{san}: {}", o.stdout);
                assert!(o.step("ok", "credentials").contains("alice: login accepted"), "{san}: {}", o.stdout);
            }
            Some(e) => {
                assert_eq!(o.code, 1, "{san}: {}", o.stdout);
                let step = o.step("FAIL", "credentials");
                assert!(
                    step.contains(&format!("the token server 127.0.0.1:{port}'s certificate is refused: {e}")),
                    "{san}: {step}"
                );
                assert!(step.contains("the password was not sent"), "{step}");
            }
        }
    }
}
