//! `wharf trust` against a real wharf serving TLS: what it installs (paths, content, modes),
//! that re-running changes nothing, `--remove`, `--dry-run`, the refusals (wrong fingerprint,
//! no terminal, a CA that did not sign the server, a certificate for another name), the sh
//! script, `--login`, containerd's config.toml, and that real clients (curl, skopeo) accept
//! the files it installed.

mod common;

use base64::Engine;
use common::{require_tool, wharf_bin};
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// A CA and a server certificate made with `wharf cert`.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// A CA, and a server certificate for `names` (`--ip X` / `--dns Y` arguments).
    fn new(names: &[&str]) -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca");
        let srv = dir.path().join("srv");
        run_ok(Command::new(wharf_bin()).args(["cert", "ca", "--out"]).arg(&ca));
        run_ok(
            Command::new(wharf_bin())
                .args(["cert", "issue", "--ca"])
                .arg(&ca)
                .arg("--out")
                .arg(&srv)
                .args(names),
        );
        Pki { dir }
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca/ca.crt")
    }

    fn ca_der(&self) -> Vec<u8> {
        pem_der(&std::fs::read_to_string(self.ca_file()).unwrap())
    }

    /// Computed here from the DER, independently of wharf: `AB:CD:...`.
    fn fingerprint(&self) -> String {
        let digest = Sha256::digest(self.ca_der());
        digest.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
    }
}

fn pem_der(pem: &str) -> Vec<u8> {
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD.decode(b64).expect("PEM body")
}

fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run");
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// `wharf serve` with `http.tls` from `pki`, publishing `cafile` (if any) at the CA path.
struct TlsWharf {
    child: Child,
    /// `127.0.0.1:PORT`
    addr: String,
    _dir: tempfile::TempDir,
}

impl TlsWharf {
    fn start(pki: &Pki, cafile: Option<&Path>, htpasswd: Option<&Path>) -> TlsWharf {
        let dir = tempfile::tempdir().unwrap();
        let srv = pki.dir.path().join("srv");
        let mut yaml = format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:0\n  tls:\n    certificate: {}\n    key: {}\n",
            dir.path().join("data").display(),
            srv.join("server.crt").display(),
            srv.join("server.key").display(),
        );
        if let Some(ca) = cafile {
            yaml.push_str(&format!("    cafile: {}\n", ca.display()));
        }
        if let Some(h) = htpasswd {
            yaml.push_str(&format!("auth:\n  htpasswd:\n    realm: test\n    path: {}\n", h.display()));
        }
        let config = dir.path().join("config.yml");
        std::fs::write(&config, yaml).unwrap();
        let mut child = Command::new(wharf_bin())
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn wharf");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on https://").nth(1) {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or_default().to_string());
                }
            }
        });
        let mut server = TlsWharf {
            child,
            addr: String::new(),
            _dir: dir,
        };
        server.addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("wharf did not start with TLS within 30s");
        server
    }
}

impl Drop for TlsWharf {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `wharf trust ARGS` with stdin from `stdin` (none: /dev/null, so never a terminal),
/// under umask 077 so that the modes checked below are wharf's doing.
fn trust(args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg("umask 077; exec \"$0\" trust \"$@\"").arg(wharf_bin()).args(args);
    // Under sudo the login would go to the invoking user's home instead of HOME.
    cmd.env_remove("SUDO_USER");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn wharf trust");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    println!(
        "$ wharf trust {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn files(root: &Path) -> Vec<String> {
    common::files_under(root)
}

/// A fake root with the Debian and the RHEL system store directories.
fn fake_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    for d in ["usr/local/share/ca-certificates", "etc/pki/ca-trust/source/anchors"] {
        std::fs::create_dir_all(root.path().join(d)).unwrap();
    }
    root
}

fn expected_files(addr: &str) -> Vec<String> {
    let port = addr.rsplit(':').next().unwrap();
    let mut v = vec![
        format!("/etc/containerd/certs.d/{addr}/ca.crt"),
        format!("/etc/containerd/certs.d/{addr}/hosts.toml"),
        format!("/etc/containers/certs.d/{addr}/ca.crt"),
        format!("/etc/docker/certs.d/{addr}/ca.crt"),
        format!("/etc/pki/ca-trust/source/anchors/wharf-127.0.0.1-{port}.crt"),
        format!("/usr/local/share/ca-certificates/wharf-127.0.0.1-{port}.crt"),
        // What wharf wrote, for --remove.
        format!("/etc/wharf/trust/wharf-127.0.0.1-{port}.json"),
    ];
    v.sort();
    v
}

fn mtimes(root: &Path) -> Vec<std::time::SystemTime> {
    files(root)
        .iter()
        .map(|f| std::fs::metadata(root.join(&f[1..])).unwrap().modified().unwrap())
        .collect()
}

#[test]
fn installs_for_every_runtime_then_changes_nothing_then_removes_exactly() {
    let pki = Pki::new(&["--ip", "127.0.0.1"]);
    let server = TlsWharf::start(&pki, Some(&pki.ca_file()), None);
    let root = fake_root();
    let r = root.path().to_str().unwrap();
    let fp = pki.fingerprint();
    let addr = server.addr.as_str();

    let out = trust(&[addr, "--fingerprint", &fp, "--root", r], None, &[]);
    assert!(out.status.success());
    assert_eq!(files(root.path()), expected_files(addr));
    for f in files(root.path()) {
        let p = root.path().join(&f[1..]);
        assert_eq!(mode(&p), 0o644, "{f}");
        if f.ends_with(".crt") {
            assert_eq!(pem_der(&std::fs::read_to_string(&p).unwrap()), pki.ca_der(), "{f} holds the CA");
        }
    }
    for d in [
        "etc/docker",
        "etc/docker/certs.d",
        &format!("etc/docker/certs.d/{addr}"),
        &format!("etc/containerd/certs.d/{addr}"),
    ] {
        assert_eq!(mode(&root.path().join(d)), 0o755, "{d}");
    }
    let hosts = std::fs::read_to_string(root.path().join(format!("etc/containerd/certs.d/{addr}/hosts.toml"))).unwrap();
    assert!(hosts.contains(&format!("\nserver = \"https://{addr}\"\n")), "{hosts}");
    assert!(
        hosts.contains(&format!(
            "[host.\"https://{addr}\"]\n  capabilities = [\"pull\", \"resolve\", \"push\"]\n"
        )),
        "{hosts}"
    );
    assert!(
        hosts.contains(&format!("  ca = \"/etc/containerd/certs.d/{addr}/ca.crt\"\n")),
        "absolute path as the target sees it: {hosts}"
    );
    let text = stdout(&out);
    assert_eq!(text.matches(" wrote ").count(), 6, "{text}");
    assert!(text.contains("no restart needed"), "{text}");
    // Under --root the store commands are printed for the other system, never run here.
    assert!(
        text.contains("run inside") && text.contains("update-ca-certificates") && text.contains("update-ca-trust"),
        "{text}"
    );
    assert!(!text.contains("ran update"), "{text}");
    assert!(
        text.contains("config_path") && text.contains("--hosts-dir /etc/containerd/certs.d"),
        "{text}"
    );
    assert!(text.contains(&format!("docker pull {addr}/")), "{text}");
    assert!(
        text.contains(&format!(
            "curl --cacert /etc/docker/certs.d/{addr}/ca.crt https://{addr}/v2/_catalog"
        )),
        "{text}"
    );

    let before = mtimes(root.path());
    let again = trust(
        &[addr, "--fingerprint", &fp.to_lowercase().replace(':', ""), "--root", r],
        None,
        &[],
    );
    assert!(again.status.success());
    let text = stdout(&again);
    assert_eq!(text.matches(" unchanged ").count(), 6, "{text}");
    assert!(
        !text.contains("wrote") && !text.contains("run inside"),
        "nothing to do, nothing to refresh: {text}"
    );
    assert_eq!(mtimes(root.path()), before, "no file rewritten");

    let removed = trust(&[addr, "--remove", "--root", r], None, &[]);
    assert!(removed.status.success());
    let file_lines = stdout(&removed)
        .lines()
        .filter(|l| !l.starts_with("dirs") && l.contains(" removed "))
        .count();
    assert_eq!(file_lines, 6, "{}", stdout(&removed));
    assert!(files(root.path()).is_empty(), "{:?}", files(root.path()));
    for d in ["etc/docker", "etc/containerd", "etc/containers", "etc/wharf"] {
        assert!(!root.path().join(d).exists(), "{d}: created by wharf trust, removed once empty");
    }
    assert!(root.path().join("usr/local/share/ca-certificates").is_dir(), "the store stays");
    let twice = trust(&[addr, "--remove", "--root", r], None, &[]);
    assert!(twice.status.success());
    assert!(
        stdout(&twice).contains("absent") && !stdout(&twice).contains("removed"),
        "{}",
        stdout(&twice)
    );
}

#[test]
fn the_installed_files_work_with_curl_and_skopeo() {
    let pki = Pki::new(&["--ip", "127.0.0.1"]);
    let server = TlsWharf::start(&pki, Some(&pki.ca_file()), None);
    let root = fake_root();
    let addr = server.addr.as_str();
    let out = trust(
        &[addr, "--fingerprint", &pki.fingerprint(), "--root", root.path().to_str().unwrap()],
        None,
        &[],
    );
    assert!(out.status.success());

    if require_tool("curl") {
        let ca = root.path().join(format!("etc/docker/certs.d/{addr}/ca.crt"));
        let curl = Command::new("curl")
            .args(["-sS", "--max-time", "20", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
            .arg(&ca)
            .arg(format!("https://{addr}/v2/"))
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&curl.stdout),
            "200",
            "curl: {}",
            String::from_utf8_lossy(&curl.stderr)
        );
        // The same request without the CA fails: the file is what makes it work.
        let bare = Command::new("curl")
            .args(["-sS", "--max-time", "20", "-o", "/dev/null"])
            .arg(format!("https://{addr}/v2/"))
            .output()
            .unwrap();
        assert!(!bare.status.success());
    }
    if require_tool("skopeo") {
        let certs = root.path().join(format!("etc/containers/certs.d/{addr}"));
        let sk = Command::new("timeout")
            .args(["60", "skopeo", "inspect", "--retry-times", "0", "--cert-dir"])
            .arg(&certs)
            .arg(format!("docker://{addr}/x/y:z"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&sk.stderr).to_lowercase();
        assert!(!sk.status.success());
        assert!(!err.contains("x509") && !err.contains("certificate"), "TLS must be accepted: {err}");
        assert!(err.contains("manifest unknown"), "skopeo reached the API: {err}");
    }
}

#[test]
fn dry_run_shows_everything_and_writes_nothing() {
    let pki = Pki::new(&["--ip", "127.0.0.1"]);
    let server = TlsWharf::start(&pki, Some(&pki.ca_file()), None);
    let root = fake_root();
    let out = trust(
        &[
            &server.addr,
            "--fingerprint",
            &pki.fingerprint(),
            "--root",
            root.path().to_str().unwrap(),
            "--dry-run",
        ],
        None,
        &[],
    );
    assert!(out.status.success());
    assert!(files(root.path()).is_empty(), "{:?}", files(root.path()));
    for d in ["etc/docker", "etc/containerd", "etc/containers"] {
        assert!(!root.path().join(d).exists(), "{d}");
    }
    let text = stdout(&out);
    assert_eq!(text.matches("would write").count(), 6, "{text}");
    assert!(text.contains("would run update-ca-certificates"), "{text}");
}

#[test]
fn a_wrong_fingerprint_or_no_confirmation_installs_nothing() {
    let pki = Pki::new(&["--ip", "127.0.0.1"]);
    let server = TlsWharf::start(&pki, Some(&pki.ca_file()), None);
    let root = fake_root();
    let r = root.path().to_str().unwrap();
    let wrong = "00:".repeat(31) + "00";
    let out = trust(&[&server.addr, "--fingerprint", &wrong, "--root", r, "--yes"], None, &[]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("fingerprint mismatch") && stderr(&out).contains(&pki.fingerprint()),
        "{}",
        stderr(&out)
    );
    assert!(files(root.path()).is_empty());

    let malformed = trust(&[&server.addr, "--fingerprint", "AB:CD", "--root", r], None, &[]);
    assert!(!malformed.status.success());
    assert!(stderr(&malformed).contains("64 hex digits"));

    // No --fingerprint, no --yes, stdin not a terminal: refused, with the fingerprint to check.
    let unasked = trust(&[&server.addr, "--root", r], None, &[]);
    assert!(!unasked.status.success());
    assert!(
        stderr(&unasked).contains("no terminal") && stderr(&unasked).contains(&pki.fingerprint()),
        "{}",
        stderr(&unasked)
    );
    assert!(files(root.path()).is_empty());

    let yes = trust(&[&server.addr, "--root", r, "--yes", "--runtimes", "docker"], None, &[]);
    assert!(yes.status.success());
    assert!(stderr(&yes).contains("without checking its fingerprint"));
    let port = server.addr.rsplit(':').next().unwrap();
    assert_eq!(
        files(root.path()),
        vec![
            format!("/etc/docker/certs.d/{}/ca.crt", server.addr),
            format!("/etc/wharf/trust/wharf-127.0.0.1-{port}.json")
        ]
    );
}

#[test]
fn a_published_ca_that_did_not_sign_the_server_is_refused() {
    let pki = Pki::new(&["--ip", "127.0.0.1"]);
    let impostor = Pki::new(&["--ip", "127.0.0.1"]);
    // The server publishes a CA other than the one that issued its certificate: what an
    // interceptor relaying the real server's certificate but its own CA would look like.
    let server = TlsWharf::start(&pki, Some(&impostor.ca_file()), None);
    let root = fake_root();
    let out = trust(
        &[
            &server.addr,
            "--fingerprint",
            &impostor.fingerprint(),
            "--root",
            root.path().to_str().unwrap(),
        ],
        None,
        &[],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("refusing to trust this CA") && err.contains("not issued by this CA"),
        "{err}"
    );
    assert!(files(root.path()).is_empty());

    // --ca with the wrong file is checked against the live server the same way.
    let with_file = trust(
        &[
            &server.addr,
            "--ca",
            impostor.ca_file().to_str().unwrap(),
            "--yes",
            "--root",
            root.path().to_str().unwrap(),
        ],
        None,
        &[],
    );
    assert!(!with_file.status.success());
    assert!(stderr(&with_file).contains("not issued by this CA"), "{}", stderr(&with_file));
    assert!(files(root.path()).is_empty());
}

#[test]
fn a_certificate_that_does_not_name_the_address_is_refused() {
    let pki = Pki::new(&["--dns", "registry.example"]);
    let server = TlsWharf::start(&pki, Some(&pki.ca_file()), None);
    let root = fake_root();
    let out = trust(
        &[
            &server.addr,
            "--fingerprint",
            &pki.fingerprint(),
            "--root",
            root.path().to_str().unwrap(),
        ],
        None,
        &[],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("not valid for 127.0.0.1") && err.contains("registry.example"), "{err}");
    assert!(files(root.path()).is_empty());
}

#[test]
fn ca_file_is_checked_against_the_server_or_installed_with_a_warning_when_offline() {
    let pki = Pki::new(&["--ip", "127.0.0.1"]);
    let server = TlsWharf::start(&pki, None, None);
    let ca = pki.ca_file();
    let root = fake_root();
    let r = root.path().to_str().unwrap();

    // This server publishes nothing: the message says to get the file.
    let unpublished = trust(&[&server.addr, "--yes", "--root", r], None, &[]);
    assert!(!unpublished.status.success());
    assert!(stderr(&unpublished).contains("--ca FILE"), "{}", stderr(&unpublished));

    let checked = trust(
        &[
            &server.addr,
            "--ca",
            ca.to_str().unwrap(),
            "--fingerprint",
            &pki.fingerprint(),
            "--root",
            r,
            "--runtimes",
            "docker",
        ],
        None,
        &[],
    );
    assert!(checked.status.success());
    assert!(stdout(&checked).contains("chains to this CA"), "{}", stdout(&checked));

    let offline = format!("127.0.0.1:{}", common::free_port());
    let out = trust(
        &[
            &offline,
            "--ca",
            ca.to_str().unwrap(),
            "--fingerprint",
            &pki.fingerprint(),
            "--root",
            r,
            "--runtimes",
            "docker,containers",
        ],
        None,
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("connection refused") && stderr(&out).contains("without checking"),
        "{}",
        stderr(&out)
    );
    let installed = root.path().join(format!("etc/containers/certs.d/{offline}/ca.crt"));
    assert_eq!(pem_der(&std::fs::read_to_string(installed).unwrap()), pki.ca_der());
}

#[test]
fn plain_http_registry_is_explained() {
    let server = common::Wharf::start();
    let root = fake_root();
    let out = trust(&[&server.addr, "--yes", "--root", root.path().to_str().unwrap()], None, &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("does not speak TLS"), "{}", stderr(&out));
    let http = trust(&[&server.url, "--yes"], None, &[]);
    assert!(!http.status.success());
    assert!(stderr(&http).contains("plain-HTTP"), "{}", stderr(&http));
}

/// Generates the script, then runs it with `sh` under ROOT (and PATH, if given).
fn run_script(script: &str, root: &Path, path: Option<&str>) -> Output {
    let file = root.parent().unwrap().join(format!("trust-{}.sh", rand_suffix()));
    std::fs::write(&file, script).unwrap();
    let mut cmd = Command::new("/bin/sh");
    cmd.arg(&file).env("ROOT", root);
    if let Some(p) = path {
        cmd.env("PATH", p);
    }
    let out = cmd.output().unwrap();
    println!("$ ROOT={} sh script\n{}{}", root.display(), stdout(&out), stderr(&out));
    out
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

#[test]
fn the_script_installs_the_same_files_checks_the_fingerprint_and_removes() {
    let pki = Pki::new(&["--ip", "127.0.0.1"]);
    let server = TlsWharf::start(&pki, Some(&pki.ca_file()), None);
    let addr = server.addr.as_str();
    let gen = trust(&[addr, "--fingerprint", &pki.fingerprint(), "--script"], None, &[]);
    assert!(gen.status.success());
    let script = stdout(&gen);
    assert!(script.starts_with("#!/bin/sh\n"));
    assert!(
        stderr(&gen).contains("chains to this CA"),
        "messages go to stderr while stdout is the script"
    );

    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    for d in ["usr/local/share/ca-certificates", "etc/pki/ca-trust/source/anchors"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let first = run_script(&script, &root, None);
    assert!(first.status.success());
    // The script keeps no record of what it wrote (its own --remove script knows the paths).
    let mut expected = expected_files(addr);
    expected.retain(|f| !f.starts_with("/etc/wharf/"));
    assert_eq!(files(&root), expected);
    // Byte for byte what the native installer writes.
    let native = fake_root();
    assert!(trust(
        &[addr, "--fingerprint", &pki.fingerprint(), "--root", native.path().to_str().unwrap()],
        None,
        &[]
    )
    .status
    .success());
    for f in files(&root) {
        assert_eq!(
            std::fs::read(root.join(&f[1..])).unwrap(),
            std::fs::read(native.path().join(&f[1..])).unwrap(),
            "{f}"
        );
        assert_eq!(mode(&root.join(&f[1..])), 0o644, "{f}");
    }
    assert_eq!(mode(&root.join(format!("etc/docker/certs.d/{addr}"))), 0o755);
    assert!(stdout(&first).contains("run inside the target system: update-ca-certificates"));

    let second = run_script(&script, &root, None);
    assert!(second.status.success());
    assert_eq!(stdout(&second).matches("unchanged ").count(), 6, "{}", stdout(&second));
    assert!(!stdout(&second).contains("wrote"));

    // A copy damaged in transit installs nothing.
    let fresh = work.path().join("fresh");
    std::fs::create_dir_all(&fresh).unwrap();
    let body_line = script.lines().find(|l| l.len() == 64 && !l.contains(' ')).expect("a base64 line");
    let flipped: String = body_line.chars().rev().collect();
    let damaged = run_script(&script.replacen(body_line, &flipped, 1), &fresh, None);
    assert!(!damaged.status.success());
    assert!(stderr(&damaged).contains("nothing installed"), "{}", stderr(&damaged));
    assert!(files(&fresh).is_empty());

    // Without openssl the script checks sha256sum of the DER instead.
    let bin = work.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for tool in [
        "mktemp",
        "rm",
        "cat",
        "sed",
        "tr",
        "base64",
        "sha256sum",
        "cut",
        "mkdir",
        "dirname",
        "cp",
        "chmod",
        "mv",
        "grep",
        "rmdir",
    ] {
        let found = Command::new("sh").arg("-c").arg(format!("command -v {tool}")).output().unwrap();
        let target = String::from_utf8_lossy(&found.stdout).trim().to_string();
        assert!(!target.is_empty(), "{tool} is needed by the script");
        std::os::unix::fs::symlink(target, bin.join(tool)).unwrap();
    }
    let no_openssl = run_script(&script, &fresh, Some(bin.to_str().unwrap()));
    assert!(no_openssl.status.success(), "{}", stderr(&no_openssl));
    assert_eq!(files(&fresh).len(), 4, "no system store under this root: {:?}", files(&fresh));
    let damaged = run_script(
        &script.replacen(body_line, &flipped, 1),
        &work.path().join("fresh2"),
        Some(bin.to_str().unwrap()),
    );
    assert!(!damaged.status.success());

    let gen_remove = trust(&[addr, "--remove", "--script"], None, &[]);
    assert!(gen_remove.status.success());
    let removed = run_script(&stdout(&gen_remove), &root, None);
    assert!(removed.status.success());
    assert!(files(&root).is_empty(), "{:?}", files(&root));
    assert!(!root.join(format!("etc/docker/certs.d/{addr}")).exists());
}

#[test]
fn login_checks_the_password_first_and_merges_into_config_json() {
    let pki = Pki::new(&["--ip", "127.0.0.1"]);
    let htpasswd = pki.dir.path().join("htpasswd");
    let mut add = Command::new(wharf_bin());
    add.args(["htpasswd", "add", "--cost", "4", "--password-stdin"])
        .arg(&htpasswd)
        .arg("alice")
        .stdin(Stdio::piped());
    let mut child = add.spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"s3cret\n").unwrap();
    assert!(child.wait().unwrap().success());
    let server = TlsWharf::start(&pki, Some(&pki.ca_file()), Some(&htpasswd));
    let addr = server.addr.as_str();

    let home = tempfile::tempdir().unwrap();
    let docker_dir = home.path().join(".docker");
    std::fs::create_dir_all(&docker_dir).unwrap();
    let config = docker_dir.join("config.json");
    std::fs::write(&config, r#"{"auths":{"other.example:5000":{"auth":"eDp5"}},"psFormat":"table"}"#).unwrap();
    let env = [("HOME", home.path().to_str().unwrap()), ("DOCKER_CONFIG", "")];
    let root = fake_root();
    let r = root.path().to_str().unwrap();
    let fp = pki.fingerprint();

    // A wrong password: refused before anything is installed; config.json untouched.
    let wrong = trust(
        &[addr, "--fingerprint", &fp, "--root", r, "--login", "alice", "--password-stdin"],
        Some("nope\n"),
        &env,
    );
    assert!(!wrong.status.success());
    assert!(stderr(&wrong).contains("wrong user name or password"), "{}", stderr(&wrong));
    assert!(files(root.path()).is_empty());
    assert!(std::fs::read_to_string(&config).unwrap().contains("other.example"));

    // The config file is found under --root like everything else.
    let rooted_config = root.path().join(config.strip_prefix("/").unwrap());
    std::fs::create_dir_all(rooted_config.parent().unwrap()).unwrap();
    std::fs::copy(&config, &rooted_config).unwrap();
    let ok = trust(
        &[addr, "--fingerprint", &fp, "--root", r, "--login", "alice", "--password-stdin"],
        Some("s3cret\n"),
        &env,
    );
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(stdout(&ok).contains("password is accepted"));
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&rooted_config).unwrap()).unwrap();
    assert_eq!(
        doc["auths"][addr]["auth"],
        base64::engine::general_purpose::STANDARD.encode("alice:s3cret")
    );
    assert_eq!(doc["auths"]["other.example:5000"]["auth"], "eDp5", "other registries kept");
    assert_eq!(doc["psFormat"], "table", "other settings kept");
    assert_eq!(mode(&rooted_config), 0o600);
    assert!(stdout(&ok).contains("-u alice"), "{}", stdout(&ok));

    let again = trust(
        &[addr, "--fingerprint", &fp, "--root", r, "--login", "alice", "--password-stdin"],
        Some("s3cret\n"),
        &env,
    );
    assert!(again.status.success());
    assert!(stdout(&again).contains("login      unchanged"), "{}", stdout(&again));

    let forget = trust(&[addr, "--remove", "--root", r, "--login", "alice"], None, &env);
    assert!(forget.status.success(), "{}", stderr(&forget));
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&rooted_config).unwrap()).unwrap();
    assert!(doc["auths"].get(addr).is_none());
    assert_eq!(doc["auths"]["other.example:5000"]["auth"], "eDp5");
}

#[test]
fn containerd_config_path_is_set_keeping_every_line_and_left_alone_on_request() {
    let pki = Pki::new(&["--ip", "127.0.0.1"]);
    let server = TlsWharf::start(&pki, Some(&pki.ca_file()), None);
    let root = fake_root();
    let r = root.path().to_str().unwrap();
    let fp = pki.fingerprint();
    // The real default of the installed containerd when there is one (1.x: config_path = "").
    let default = if common::in_ci() || Command::new("containerd").arg("--version").output().is_ok() {
        let out = run_ok(Command::new("containerd").args(["config", "default"]));
        String::from_utf8(out.stdout).unwrap()
    } else {
        "version = 2\n\n[plugins]\n  [plugins.\"io.containerd.grpc.v1.cri\".registry]\n    config_path = \"\"\n".to_string()
    };
    let config = root.path().join("etc/containerd/config.toml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(&config, &default).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let args = [server.addr.as_str(), "--fingerprint", &fp, "--root", r, "--runtimes", "containerd"];

    let report = trust(&[&args[..], &["--keep-containerd-config"]].concat(), None, &[]);
    assert!(report.status.success());
    assert!(stdout(&report).contains("does not set config_path"), "{}", stdout(&report));
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        default,
        "not edited with --keep-containerd-config"
    );

    let configure = trust(&args, None, &[]);
    assert!(configure.status.success(), "{}", stderr(&configure));
    let restart: Vec<String> = stdout(&configure)
        .lines()
        .filter(|l| l.contains("restart containerd"))
        .map(str::to_owned)
        .collect();
    assert_eq!(restart.len(), 1, "one line says how to restart: {}", stdout(&configure));
    assert!(restart[0].ends_with("systemctl restart containerd"), "{restart:?}");
    let edited = std::fs::read_to_string(&config).unwrap();
    let changed: Vec<(&str, &str)> = default.lines().zip(edited.lines()).filter(|(a, b)| a != b).collect();
    assert_eq!(changed.len(), 1, "exactly one line changes: {changed:?}");
    assert_eq!(changed[0].1.trim(), "config_path = \"/etc/containerd/certs.d\"");
    assert_eq!(edited.lines().count(), default.lines().count());
    assert_eq!(mode(&config), 0o600, "mode kept");
    assert_eq!(
        std::fs::read_to_string(config.with_extension("toml.before-wharf")).unwrap(),
        default,
        "original kept aside"
    );

    let again = trust(&args, None, &[]);
    assert!(again.status.success());
    assert!(stdout(&again).contains("no restart needed"), "{}", stdout(&again));
    assert!(!stdout(&again).contains("restart containerd"), "{}", stdout(&again));
    let report = trust(&[&args[..], &["--keep-containerd-config"]].concat(), None, &[]);
    assert!(
        stdout(&report).contains("has config_path = \"/etc/containerd/certs.d\""),
        "{}",
        stdout(&report)
    );
}

#[test]
fn k3s_nodes_get_the_registry_in_registries_yaml_and_lose_it_on_remove() {
    let pki = Pki::new(&["--ip", "127.0.0.1"]);
    let server = TlsWharf::start(&pki, Some(&pki.ca_file()), None);
    let root = fake_root();
    std::fs::create_dir_all(root.path().join("etc/rancher/k3s")).unwrap();
    let r = root.path().to_str().unwrap();
    let fp = pki.fingerprint();
    let addr = server.addr.as_str();
    let args = [addr, "--fingerprint", &fp, "--root", r, "--runtimes", "containerd"];

    let out = trust(&args, None, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("restart k3s"), "{}", stdout(&out));
    let yaml_path = root.path().join("etc/rancher/k3s/registries.yaml");
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&yaml_path).unwrap()).unwrap();
    let ca_file = doc["configs"][addr]["tls"]["ca_file"].as_str().unwrap().to_string();
    assert_eq!(ca_file, format!("/etc/containerd/certs.d/{addr}/ca.crt"));
    assert_eq!(
        pem_der(&std::fs::read_to_string(root.path().join(&ca_file[1..])).unwrap()),
        pki.ca_der()
    );
    assert!(
        !stdout(&trust(&args, None, &[])).contains("restart k3s"),
        "a second run changes nothing"
    );

    let removed = trust(&[addr, "--remove", "--root", r, "--runtimes", "containerd"], None, &[]);
    assert!(removed.status.success(), "{}", stderr(&removed));
    assert!(!yaml_path.exists(), "wharf's registries.yaml with nothing left in it goes");
    assert!(root.path().join("etc/rancher/k3s").is_dir());
}
