//! The pull kubelet makes, right the first time: CRI `ImageService/PullImage` with
//! `AuthConfig{username, password}` (what an imagePullSecret becomes), sent to a real containerd
//! by a gRPC client built from the CRI API's proto (tests/fixtures/cri), against a wharf serving
//! TLS with a certificate from a CA of the user's own (seed 004) on a test host's address.
//!
//! Each containerd is private to the test — its own root, state, socket, and an /etc/containerd
//! of its own made from Debian's packaged config.toml, bind-mounted over /etc/containerd in a
//! mount namespace of its own — so it reads the paths a node's containerd reads while the
//! host's files stay untouched. `wharf trust --root` and `wharf kube node-trust --root` (the
//! DaemonSet's command, with the node's root mounted) configure that directory.
//!
//! Shown: the pull fails with seed 004's "x509: certificate signed by unknown authority" on
//! Debian's default config; after one `wharf trust` (which sets config_path and says to
//! restart containerd) it still fails until containerd restarts, then succeeds; and the same
//! from a fresh root with the node-trust DaemonSet's command, whose stop removes what it wrote
//! and nothing else, and puts Debian's config.toml back.

mod common;

use common::cri::{grpc_tools_present, Containerd, DEBIAN_CONFIG};
use common::images::{push_one_layer_image, run, run_unchecked, signal_pid, wait_until};
use common::netns::TestHost;
use common::{require_tool, wharf_bin, write_htpasswd, Wharf};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const USER: &str = "kubelet";
const PASSWORD: &str = "pull-secret-password";

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The tools this test drives; false (after SKIP) outside CI when one is missing.
fn tools_present() -> bool {
    for tool in ["containerd", "unshare", "skopeo"] {
        if !require_tool(tool) {
            return false;
        }
    }
    grpc_tools_present()
}

/// A node's root filesystem as far as containerd is concerned: `etc/containerd` with Debian's
/// config.toml, and nothing else.
fn node_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("etc/containerd")).unwrap();
    std::fs::write(root.path().join("etc/containerd/config.toml"), DEBIAN_CONFIG).unwrap();
    root
}

fn assert_unknown_authority(out: &Output, when: &str) {
    let t = text(out);
    assert!(!out.status.success(), "{when}: the pull succeeded:\n{t}");
    assert!(t.contains("x509: certificate signed by unknown authority"), "{when}: {t}");
}

fn assert_pulled(out: &Output, image_id: &str, c: &Containerd, when: &str) {
    let t = text(out);
    assert!(out.status.success(), "{when}: {t}\ncontainerd's log:\n{}", c.log());
    assert_eq!(
        t.trim(),
        format!("pulled {image_id}"),
        "{when}: CRI returns the image's config digest"
    );
}

/// Every line of `old` is still in `new`, in order.
fn keeps_every_line(old: &str, new: &str) -> bool {
    let mut lines = new.lines();
    old.lines().all(|l| lines.any(|n| n == l))
}

/// A CA, and a server certificate from it for `ip`, as seed 004 makes them (with `wharf cert`).
fn pki(ip: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    run(Command::new(wharf_bin()).args(["cert", "ca", "--out"]).arg(dir.path().join("ca")));
    run(Command::new(wharf_bin())
        .args(["cert", "issue", "--ca"])
        .arg(dir.path().join("ca"))
        .arg("--out")
        .arg(dir.path().join("srv"))
        .args(["--ip", ip]));
    // skopeo's --dest-cert-dir: the CA alone (a lone *.key there would be taken for a client key).
    std::fs::create_dir_all(dir.path().join("skopeo")).unwrap();
    std::fs::copy(dir.path().join("ca/ca.crt"), dir.path().join("skopeo/ca.crt")).unwrap();
    dir
}

fn fingerprint(ca: &Path) -> String {
    let out = run(Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(ca));
    let line = String::from_utf8_lossy(&out.stdout).to_string();
    line.trim().split_once('=').expect("openssl fingerprint line").1.to_string()
}

/// wharf with the seed's TLS files and a password, on every address of the test host.
fn start_registry(host: &TestHost, pki: &Path, data: &Path) -> Wharf {
    let htpasswd = data.join("htpasswd");
    write_htpasswd(&htpasswd, &[(USER, PASSWORD)]);
    let config = data.join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 0.0.0.0:5000\n  tls:\n    certificate: {}\n    \
             key: {}\nauth:\n  htpasswd:\n    realm: cri-test\n    path: {}\n",
            data.join("data").display(),
            pki.join("srv/server.crt").display(),
            pki.join("srv/server.key").display(),
            htpasswd.display()
        ),
    )
    .unwrap();
    let wharf = Wharf::launch_args(&host.prefix(), &[config.to_str().unwrap()], &[]);
    let addr = host.addr(5000);
    assert!(
        wait_until(Duration::from_secs(20), || std::net::TcpStream::connect(&addr).is_ok()),
        "the test host's registry never accepted connections"
    );
    wharf
}

/// Pushes a one-layer linux/amd64 image with skopeo; returns its config digest (the image ID).
fn push_image(pki: &Path, image: &str) -> String {
    let cert_dir = pki.join("skopeo");
    push_one_layer_image(
        &format!("docker://{image}"),
        &format!("{USER}:{PASSWORD}"),
        &["--dest-cert-dir", cert_dir.to_str().unwrap()],
    )
}

/// What both tests pull from: wharf on a test host with seed 004's files and an image pushed.
struct Setup {
    _host: TestHost,
    _wharf: Wharf,
    _data: tempfile::TempDir,
    pki: tempfile::TempDir,
    registry: String,
    image: String,
    image_id: String,
}

impl Setup {
    fn start() -> Option<Setup> {
        if !tools_present() {
            return None;
        }
        let host = TestHost::create()?;
        let registry = host.addr(5000);
        let pki = pki(&host.ip);
        let data = tempfile::tempdir().unwrap();
        let wharf = start_registry(&host, pki.path(), data.path());
        let image = format!("{registry}/team/app:v1");
        let image_id = push_image(pki.path(), &image);
        Some(Setup {
            _host: host,
            _wharf: wharf,
            _data: data,
            pki,
            registry,
            image,
            image_id,
        })
    }

    fn ca(&self) -> PathBuf {
        self.pki.path().join("ca/ca.crt")
    }
}

#[test]
fn cri_pull_with_a_pull_secret_works_after_one_wharf_trust_and_after_the_node_trust_daemonset() {
    let Some(setup) = Setup::start() else { return };
    let (registry, image, image_id) = (setup.registry.clone(), setup.image.clone(), setup.image_id.clone());
    let ca = setup.ca();
    let fp = fingerprint(&ca);

    // A node as Debian installs it: the CRI refuses the user's CA.
    let root = node_root();
    let mut containerd = Containerd::start(root.path());
    assert_unknown_authority(
        &containerd.cri_pull(&image, USER, PASSWORD),
        "Debian's default config, nothing trusted",
    );

    // The CA in certs.d alone (config.toml kept as Debian ships it): the CRI still refuses, and
    // doctor says so for Kubernetes although ctr --hosts-dir would trust it.
    let r = root.path().to_str().unwrap();
    let keep = text(&run(Command::new(wharf_bin()).args(["trust", &registry, "--ca"]).arg(&ca).args([
        "--fingerprint",
        &fp,
        "--root",
        r,
        "--runtimes",
        "containerd",
        "--keep-containerd-config",
    ])));
    assert!(keep.contains("does not set config_path"), "{keep}");
    assert_unknown_authority(&containerd.cri_pull(&image, USER, PASSWORD), "certs.d without config_path");
    let doctor = text(&run_unchecked(Command::new(wharf_bin()).args(["doctor", &registry, "--root", r])));
    let line = doctor
        .lines()
        .find(|l| l.contains("trust.containerd"))
        .unwrap_or_else(|| panic!("no containerd step:\n{doctor}"));
    assert!(
        line.starts_with("warn") && line.contains("Kubernetes (CRI) refuses it: x509: certificate signed by unknown authority"),
        "{line}\n{doctor}"
    );

    // One wharf trust: certs.d, config_path set in config.toml (every line of it kept), and the
    // one line saying how to restart containerd.
    let trust = run(Command::new(wharf_bin()).args(["trust", &registry, "--ca"]).arg(&ca).args([
        "--fingerprint",
        &fp,
        "--root",
        r,
        "--runtimes",
        "containerd",
    ]));
    let out = text(&trust);
    println!("wharf trust:\n{out}");
    let config = std::fs::read_to_string(root.path().join("etc/containerd/config.toml")).unwrap();
    assert!(keeps_every_line(DEBIAN_CONFIG, &config), "{config}");
    assert!(config.contains("config_path = \"/etc/containerd/certs.d\""), "{config}");
    let restart_lines: Vec<&str> = out.lines().filter(|l| l.contains("restart containerd")).collect();
    assert_eq!(restart_lines.len(), 1, "one line about the restart:\n{out}");
    assert!(restart_lines[0].ends_with(": systemctl restart containerd"), "{}", restart_lines[0]);

    // containerd reads config.toml only when it starts: until then the pull still fails.
    assert_unknown_authority(&containerd.cri_pull(&image, USER, PASSWORD), "before the restart");
    containerd.restart();
    assert_pulled(
        &containerd.cri_pull(&image, USER, PASSWORD),
        &image_id,
        &containerd,
        "after wharf trust and a restart",
    );

    // Running it again changes nothing and asks for no restart.
    let again = text(&run(Command::new(wharf_bin()).args(["trust", &registry, "--ca"]).arg(&ca).args([
        "--fingerprint",
        &fp,
        "--root",
        r,
        "--runtimes",
        "containerd",
    ])));
    assert!(!again.contains("restart containerd"), "{again}");
    assert!(again.contains("no restart needed"), "{again}");
    assert_eq!(
        std::fs::read_to_string(root.path().join("etc/containerd/config.toml")).unwrap(),
        config
    );
    drop(containerd);

    // A fresh node with the DaemonSet's command (wharf kube node-trust, watching, the node's
    // root mounted): it installs on start; on SIGTERM it removes what it wrote.
    let node = node_root();
    let mut containerd = Containerd::start(node.path());
    assert_unknown_authority(&containerd.cri_pull(&image, USER, PASSWORD), "a fresh node");
    // The same CA, put into Docker's certs.d by hand before: not wharf's, so it stays.
    let hand = node.path().join(format!("etc/docker/certs.d/{registry}/ca.crt"));
    std::fs::create_dir_all(hand.parent().unwrap()).unwrap();
    std::fs::copy(&ca, &hand).unwrap();
    std::fs::set_permissions(&hand, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut daemon = Command::new(wharf_bin())
        .args(["kube", "node-trust", "--interval", "1", "--ca"])
        .arg(&ca)
        .arg("--root")
        .arg(node.path())
        .arg(&registry)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start node-trust");
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    for stream in [
        Box::new(daemon.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(daemon.stderr.take().unwrap()),
    ] {
        let seen = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                println!("[node-trust] {line}");
                seen.lock().unwrap().push(line);
            }
        });
    }
    let said = |needle: &str| lines.lock().unwrap().iter().any(|l| l.contains(needle));
    assert!(
        wait_until(Duration::from_secs(30), || said("restart containerd")),
        "node-trust did not install: {:?}",
        lines.lock().unwrap()
    );
    let hosts_toml = node.path().join(format!("etc/containerd/certs.d/{registry}/hosts.toml"));
    assert!(hosts_toml.is_file());
    containerd.restart();
    assert_pulled(
        &containerd.cri_pull(&image, USER, PASSWORD),
        &image_id,
        &containerd,
        "after node-trust and a restart",
    );

    signal_pid(daemon.id(), libc::SIGTERM);
    assert!(
        wait_until(Duration::from_secs(30), || matches!(daemon.try_wait(), Ok(Some(_)))),
        "node-trust did not stop on SIGTERM"
    );
    let status = daemon.wait().unwrap();
    assert!(status.success(), "{:?}", lines.lock().unwrap());
    assert!(
        !hosts_toml.parent().unwrap().exists(),
        "the registry's certs.d directory is removed"
    );
    assert!(hand.is_file(), "the CA placed by hand stays");
    for created in ["etc/containers", "etc/wharf"] {
        assert!(!node.path().join(created).exists(), "{created}: wharf's empty directories go");
    }
    // The last registry gone, config.toml is Debian's again (and the restart line says so).
    assert_eq!(
        std::fs::read_to_string(node.path().join("etc/containerd/config.toml")).unwrap(),
        DEBIAN_CONFIG
    );
    assert!(!node.path().join("etc/containerd/config.toml.before-wharf").exists());
    assert!(said("put back the original of"), "{:?}", lines.lock().unwrap());
}

/// A node configured the old way (`registry.mirrors` / `configs.*.tls` in config.toml, as older
/// guides say) with config_path set: containerd refuses to load its CRI plugin. One wharf trust
/// moves the blocks into hosts.toml files, and after the restart the CRI loads and pulls.
#[test]
fn old_style_registry_blocks_are_moved_out_and_the_cri_loads_again() {
    let Some(setup) = Setup::start() else { return };
    let (registry, image, image_id) = (setup.registry.clone(), setup.image.clone(), setup.image_id.clone());
    let ca = setup.ca();

    let default = String::from_utf8(run(Command::new("containerd").args(["config", "default"])).stdout).unwrap();
    let old_style = default
        .replace("config_path = \"\"", "config_path = \"/etc/containerd/certs.d\"")
        .replace(
            "      [plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors]\n",
            "      [plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors]\n        \
             [plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"docker.io\"]\n          \
             endpoint = [\"https://mirror.example:5000\"]\n",
        );
    assert_ne!(old_style, default, "containerd config default has the tables this test edits");
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("etc/containerd")).unwrap();
    std::fs::write(root.path().join("etc/containerd/config.toml"), &old_style).unwrap();
    let mut containerd = Containerd::start(root.path());
    assert!(
        containerd.log().contains("`mirrors` cannot be set when `config_path` is provided"),
        "{}",
        containerd.log()
    );
    assert!(
        !containerd.cri_pull(&image, USER, PASSWORD).status.success(),
        "no CRI without its plugin"
    );

    let out = text(&run(Command::new(wharf_bin())
        .args(["trust", &registry, "--ca"])
        .arg(&ca)
        .args(["--fingerprint", &fingerprint(&ca), "--root"])
        .arg(root.path())
        .args(["--runtimes", "containerd"])));
    assert!(out.contains("moved from config.toml: registry.mirrors.\"docker.io\""), "{out}");
    let moved = std::fs::read_to_string(root.path().join("etc/containerd/certs.d/docker.io/hosts.toml")).unwrap();
    assert!(moved.contains("[host.\"https://mirror.example:5000\"]"), "{moved}");
    let log_before = containerd.log().len();
    containerd.restart();
    assert!(!containerd.log()[log_before..].contains("cannot be set"), "{}", containerd.log());
    assert_pulled(
        &containerd.cri_pull(&image, USER, PASSWORD),
        &image_id,
        &containerd,
        "after moving the old blocks out",
    );
}
