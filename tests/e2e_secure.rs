//! Secure by default, end to end with real clients. A registry on a test host in a network
//! namespace (a non-loopback address, where Docker and containerd insist on verified TLS) starts
//! with no TLS or auth configured and secures itself; a private dockerd, curl, skopeo and ctr on
//! this host first fail with the x509 error (and `wharf doctor` names it and its fix), then work
//! once `wharf trust` has installed the CA in the real /etc/{docker,containerd,containers}/certs.d.
//! Also: a certificate replaced on disk is served by the next new connection without a restart.

mod common;

use base64::Engine;
use common::dockerd::Dockerd;
use common::images::{docker_context, run, run_unchecked, wait_until};
use common::netns::TestHost;
use common::{printed_after, require_tool, wharf_bin, Wharf};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const RUNTIMES: &str = "docker,containerd,containers";

/// What `wharf serve` printed when it secured itself.
struct AutoSecured {
    password: String,
    fingerprint: String,
    /// The client command exactly as printed.
    trust_command: String,
}

impl AutoSecured {
    fn from_output(out: &str) -> AutoSecured {
        let after = |marker: &str| printed_after(out, marker);
        AutoSecured {
            password: after("created user admin with password "),
            fingerprint: after("CA fingerprint (SHA-256): "),
            trust_command: format!("wharf trust {}", after("wharf trust ")),
        }
    }
}

/// The CA files `wharf trust` writes for one registry, removed with `wharf trust --remove` on
/// drop so a failing test leaves nothing in /etc.
struct TrustedFiles {
    registry: String,
    /// The certs.d directories that did not exist before: removed again once empty.
    new_dirs: Vec<PathBuf>,
}

impl TrustedFiles {
    fn new(registry: &str) -> TrustedFiles {
        let new_dirs = ["/etc/docker/certs.d", "/etc/containerd/certs.d", "/etc/containers/certs.d"]
            .iter()
            .map(PathBuf::from)
            .filter(|d| !d.exists())
            .collect();
        TrustedFiles {
            registry: registry.to_string(),
            new_dirs,
        }
    }

    fn paths(&self) -> Vec<PathBuf> {
        let r = &self.registry;
        vec![
            PathBuf::from(format!("/etc/docker/certs.d/{r}/ca.crt")),
            PathBuf::from(format!("/etc/containerd/certs.d/{r}/hosts.toml")),
            PathBuf::from(format!("/etc/containerd/certs.d/{r}/ca.crt")),
            PathBuf::from(format!("/etc/containers/certs.d/{r}/ca.crt")),
        ]
    }

    fn remove(&self) -> Output {
        run_unchecked(Command::new(wharf_bin()).args(["trust", &self.registry, "--remove", "--runtimes", RUNTIMES]))
    }
}

impl Drop for TrustedFiles {
    fn drop(&mut self) {
        self.remove();
        for d in &self.new_dirs {
            // Fails harmlessly while anything else is in there.
            let _ = std::fs::remove_dir(d);
        }
    }
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Runs `cmd` with `input` on its standard input.
fn run_with_stdin(cmd: &mut Command, input: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().expect("wait");
    eprintln!("{cmd:?} -> {}", out.status);
    out
}

fn docker_login(d: &Dockerd, registry: &str, password: &str) -> Output {
    run_with_stdin(d.cmd().args(["login", registry, "-u", "admin", "--password-stdin"]), password)
}

fn assert_unknown_authority(out: &Output, what: &str) {
    assert!(!out.status.success(), "{what} must fail before the CA is trusted:\n{}", text(out));
    assert!(
        text(out).contains("x509: certificate signed by unknown authority"),
        "{what} should fail with the x509 unknown-authority error:\n{}",
        text(out)
    );
}

/// skopeo with an accept-anything policy and no credentials from the host, but its default
/// TLS settings: certificates are verified against /etc/containers/certs.d.
fn skopeo(policy_dir: &Path, sub: &str) -> Command {
    let mut c = Command::new("skopeo");
    c.arg("--policy")
        .arg(policy_dir.join("policy.json"))
        .arg("--registries.d")
        .arg(policy_dir)
        .arg(sub)
        .arg("--authfile")
        .arg(policy_dir.join("auth.json"));
    c
}

/// `curl --cacert CA ARGS URL`: status line, headers and body.
fn curl(ca: &Path, args: &[&str], url: &str) -> String {
    let out = run(Command::new("curl")
        .args(["-sS", "-i", "--max-time", "20", "--cacert"])
        .arg(ca)
        .args(args)
        .arg(url));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The first HTTP status code in `curl -i` output.
fn status_of(response: &str) -> u16 {
    response
        .lines()
        .find(|l| l.starts_with("HTTP/"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in:\n{response}"))
}

#[test]
fn auto_secured_registry_on_a_test_host_works_with_docker_curl_skopeo_and_ctr_after_wharf_trust() {
    for tool in ["curl", "skopeo", "ctr"] {
        if !require_tool(tool) {
            return;
        }
    }
    let Some(host) = TestHost::create() else { return };
    let Some(d) = Dockerd::start() else { return };
    let registry = host.addr(5000);
    let files = TrustedFiles::new(&registry);
    files.remove(); // a leftover from a killed run for the same address
    for p in files.paths() {
        assert!(!p.exists(), "{} exists before wharf trust ran", p.display());
    }

    // The server, exactly as the README starts it: nothing configured but the address (every
    // address of the test host), so it secures itself and names the host's address for clients.
    let data = tempfile::tempdir().unwrap();
    let wharf = Wharf::launch(&host.prefix(), "0.0.0.0:5000", &data.path().join("data"), &[], &[]);
    assert_eq!(wharf.url, "https://0.0.0.0:5000", "a non-loopback address is served over TLS");
    let auto = AutoSecured::from_output(&wharf.output());
    assert_eq!(
        auto.trust_command,
        format!("wharf trust {registry} --fingerprint {}", auto.fingerprint),
        "the printed client command names the test host's address"
    );
    assert!(wharf.output().contains(&format!("docker login {registry} -u admin")));
    assert!(
        wait_until(Duration::from_secs(20), || std::net::TcpStream::connect(&registry).is_ok()),
        "the test host's registry never accepted connections"
    );

    // Before trust: Docker refuses the unknown CA, and doctor says so and how to fix it.
    let image = format!("{registry}/secure/app:v1");
    let ctx = tempfile::tempdir().unwrap();
    docker_context(ctx.path(), 3);
    d.docker(&["build", "-q", "-t", &image, &ctx.path().to_string_lossy()]);
    let image_id = d.inspect(&image, "{{.Id}}");
    assert_unknown_authority(&docker_login(&d, &registry, &auto.password), "docker login");
    assert_unknown_authority(&d.docker_unchecked(&["push", &image]), "docker push");
    let doctor = run_unchecked(
        Command::new(wharf_bin())
            .args(["doctor", &registry])
            .env("DOCKER_CONFIG", &d.client_config),
    );
    let report = text(&doctor);
    assert!(!doctor.status.success(), "doctor must report the failure:\n{report}");
    let docker_line = report
        .lines()
        .find(|l| l.contains("trust.docker"))
        .unwrap_or_else(|| panic!("doctor has no Docker trust step:\n{report}"));
    assert!(docker_line.starts_with("FAIL"), "{docker_line}");
    assert!(
        docker_line.contains("x509: certificate signed by unknown authority"),
        "{docker_line}"
    );
    assert!(
        report.contains(&format!("fix: {}", auto.trust_command)),
        "doctor's fix is the command wharf serve printed:\n{report}"
    );
    let policy = tempfile::tempdir().unwrap();
    std::fs::write(
        policy.path().join("policy.json"),
        br#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
    )
    .unwrap();
    std::fs::write(policy.path().join("auth.json"), br#"{"auths":{}}"#).unwrap();
    let creds = format!("admin:{}", auto.password);
    let inspect = run_unchecked(skopeo(policy.path(), "inspect").args(["--creds", &creds, &format!("docker://{registry}/secure/app:v1")]));
    assert_unknown_authority(&inspect, "skopeo inspect");

    // The client command: it writes the real certs.d entries dockerd, containerd and skopeo read.
    let trust = run(Command::new(wharf_bin()).args(["trust", &registry, "--fingerprint", &auto.fingerprint, "--runtimes", RUNTIMES]));
    let trust_out = text(&trust);
    assert!(trust_out.contains("the fingerprint matches --fingerprint"), "{trust_out}");
    let ca_path = PathBuf::from(format!("/etc/docker/certs.d/{registry}/ca.crt"));
    for p in files.paths() {
        assert!(p.is_file(), "wharf trust did not write {}:\n{trust_out}", p.display());
    }
    let ca_pem = std::fs::read_to_string(&ca_path).unwrap();
    assert_eq!(
        fingerprint_of_pem(&ca_pem),
        auto.fingerprint,
        "the installed CA is the one wharf serve announced"
    );
    let hosts_toml = std::fs::read_to_string(format!("/etc/containerd/certs.d/{registry}/hosts.toml")).unwrap();
    assert!(hosts_toml.contains(&format!("https://{registry}")), "{hosts_toml}");

    let inspect = run_unchecked(skopeo(policy.path(), "inspect").args(["--creds", &creds, &format!("docker://{registry}/secure/app:v1")]));
    assert!(
        text(&inspect).contains("manifest unknown"),
        "skopeo now trusts the registry and reaches the API:\n{}",
        text(&inspect)
    );

    // Docker: a wrong password is refused; the printed one logs in; push, rmi, pull round-trips.
    let wrong = docker_login(&d, &registry, "not-the-password");
    assert!(!wrong.status.success(), "a wrong password must be refused:\n{}", text(&wrong));
    assert!(text(&wrong).to_lowercase().contains("unauthorized"), "{}", text(&wrong));
    let login = docker_login(&d, &registry, &auto.password);
    assert!(login.status.success(), "docker login with the printed password:\n{}", text(&login));
    assert!(text(&login).contains("Login Succeeded"), "{}", text(&login));
    let doctor = run_unchecked(
        Command::new(wharf_bin())
            .args(["doctor", &registry])
            .env("DOCKER_CONFIG", &d.client_config),
    );
    let report = text(&doctor);
    for step in ["trust.docker", "trust.containerd", "trust.containers", "credentials"] {
        let line = report.lines().find(|l| l.contains(step)).unwrap_or_default();
        assert!(line.starts_with("ok"), "after trust and login doctor passes {step}:\n{report}");
    }
    let push = String::from_utf8_lossy(&d.docker(&["push", &image]).stdout).into_owned();
    let digest = push
        .lines()
        .find_map(|l| l.split("digest: ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no digest in push output:\n{push}"))
        .to_string();
    let repo_digests = d.inspect(&image, "{{json .RepoDigests}}");
    d.docker(&["rmi", &image]);
    assert!(!d.has_image(&image_id), "rmi removed the image");
    let pull = String::from_utf8_lossy(&d.docker(&["pull", &image]).stdout).into_owned();
    assert!(pull.contains(&format!("Digest: {digest}")), "{pull}");
    assert_eq!(d.inspect(&image, "{{.Id}}"), image_id, "same image ID after push and pull");
    assert_eq!(d.inspect(&image, "{{json .RepoDigests}}"), repo_digests);

    // curl as in the seeds: anonymous gets the Basic challenge, the admin sees the catalog.
    let anonymous = curl(&ca_path, &[], &format!("https://{registry}/v2/"));
    assert_eq!(status_of(&anonymous), 401, "{anonymous}");
    assert!(
        anonymous.to_ascii_lowercase().contains("www-authenticate: basic realm=\"wharf\""),
        "{anonymous}"
    );
    let catalog = curl(&ca_path, &["-u", &creds], &format!("https://{registry}/v2/_catalog"));
    assert_eq!(status_of(&catalog), 200, "{catalog}");
    assert!(catalog.contains(r#"{"repositories":["secure/app"]}"#), "{catalog}");
    let wrong_curl = curl(&ca_path, &["-u", "admin:wrong"], &format!("https://{registry}/v2/_catalog"));
    assert_eq!(status_of(&wrong_curl), 401, "{wrong_curl}");

    // skopeo with its default certificate directory: out to a directory (manifest kept as served,
    // no format conversion) and back under a new name; docker pulls the copy by the same digest.
    let out_dir = tempfile::tempdir().unwrap();
    let saved = format!("dir:{}", out_dir.path().display());
    run(skopeo(policy.path(), "copy").args(["--src-creds", &creds, &format!("docker://{image}"), &saved]));
    let copy = format!("{registry}/secure/copy:v1");
    run(skopeo(policy.path(), "copy").args(["--dest-creds", &creds, &saved, &format!("docker://{copy}")]));
    let pulled_copy = String::from_utf8_lossy(&d.docker(&["pull", &copy]).stdout).into_owned();
    assert!(
        pulled_copy.contains(&format!("Digest: {digest}")),
        "skopeo's round trip kept the manifest:\n{pulled_copy}"
    );
    assert_eq!(d.inspect(&copy, "{{.Id}}"), image_id);

    // ctr with the hosts.toml and CA wharf trust wrote for containerd.
    let ctr_pull = |extra: &[&str]| {
        let mut c = d.ctr();
        c.args(["images", "pull", "--user", &creds]).args(extra).arg(&image);
        run_unchecked(&mut c)
    };
    assert_unknown_authority(&ctr_pull(&[]), "ctr pull without --hosts-dir");
    let pulled = ctr_pull(&["--hosts-dir", "/etc/containerd/certs.d"]);
    assert!(pulled.status.success(), "ctr pull with the trusted CA:\n{}", text(&pulled));
    let listed = String::from_utf8_lossy(&run(d.ctr().args(["images", "ls"])).stdout).into_owned();
    let row = listed
        .lines()
        .find(|l| l.split_whitespace().next() == Some(image.as_str()))
        .unwrap_or_else(|| panic!("ctr images ls lacks {image}:\n{listed}"));
    assert_eq!(
        row.split_whitespace().nth(2),
        Some(digest.as_str()),
        "ctr resolved the digest docker pushed"
    );

    // Removal: every file is gone again.
    let removed = files.remove();
    assert!(removed.status.success(), "{}", text(&removed));
    for p in files.paths() {
        assert!(!p.exists(), "wharf trust --remove left {}", p.display());
        assert!(
            !p.parent().unwrap().exists(),
            "wharf trust --remove left {}",
            p.parent().unwrap().display()
        );
    }
    let after = d.docker_unchecked(&["pull", &copy]);
    assert_unknown_authority(&after, "docker pull after wharf trust --remove");
}

fn fingerprint_of_der(der: &[u8]) -> String {
    Sha256::digest(der).iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

/// SHA-256 of the first certificate in a PEM text, `AB:CD:...`.
fn fingerprint_of_pem(pem: &str) -> String {
    let b64: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    fingerprint_of_der(&base64::engine::general_purpose::STANDARD.decode(b64).expect("PEM body"))
}

/// The certificate a new TLS connection to `addr` is served, as openssl s_client sees it.
fn served_fingerprint(addr: &str) -> String {
    let out = run(Command::new("openssl").args(["s_client", "-connect", addr, "-servername", "localhost"]));
    fingerprint_of_pem(&String::from_utf8_lossy(&out.stdout))
}

fn wharf_cert(args: &[&str], out: &Path) {
    run(Command::new(wharf_bin()).arg("cert").args(args).arg("--out").arg(out));
}

#[test]
fn a_certificate_replaced_on_disk_is_served_by_the_next_connection_without_a_restart() {
    if !require_tool("openssl") || !require_tool("curl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (ca, live, next) = (dir.path().join("ca"), dir.path().join("live"), dir.path().join("next"));
    wharf_cert(&["ca"], &ca);
    let issue = |out: &Path, extra: &[&str]| {
        let mut args = vec!["issue", "--ca", ca.to_str().unwrap(), "--ip", "127.0.0.1", "--dns", "localhost"];
        args.extend_from_slice(extra);
        wharf_cert(&args, out);
    };
    issue(&live, &[]);
    let (cert, key) = (live.join("server.crt"), live.join("server.key"));
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nhttp:\n  tls:\n    certificate: {}\n    key: {}\n",
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let mut wharf = Wharf::start_with(&[config.to_str().unwrap()], &[]);
    assert!(wharf.url.starts_with("https://"), "{}", wharf.url);
    let pid = wharf.pid();
    let first = fingerprint_of_pem(&std::fs::read_to_string(&cert).unwrap());
    assert_eq!(served_fingerprint(&wharf.addr), first);

    // Replace both files the way certificate managers do: write beside, rename over.
    issue(&next, &[]);
    let second = fingerprint_of_pem(&std::fs::read_to_string(next.join("server.crt")).unwrap());
    assert_ne!(second, first);
    std::fs::rename(next.join("server.key"), &key).unwrap();
    std::fs::rename(next.join("server.crt"), &cert).unwrap();
    // Handshakes look at the files at most once per second.
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(
        served_fingerprint(&wharf.addr),
        second,
        "the next new connection gets the replaced certificate"
    );

    // And again with `wharf cert issue --force`, which rewrites the files in place.
    issue(&live, &["--force"]);
    let third = fingerprint_of_pem(&std::fs::read_to_string(&cert).unwrap());
    assert_ne!(third, second);
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(served_fingerprint(&wharf.addr), third);
    let ca_crt = ca.join("ca.crt");
    let ok = curl(&ca_crt, &[], &format!("{}/v2/", wharf.url));
    assert_eq!(status_of(&ok), 200, "curl verifies the new certificate against the CA:\n{ok}");

    // The same process served all three.
    assert_eq!(wharf.pid(), pid);
    assert!(
        matches!(wharf.child.as_mut().unwrap().try_wait(), Ok(None)),
        "the server kept running"
    );
    assert!(common::images::pid_alive(pid));
}
