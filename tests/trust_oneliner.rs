//! Trust with nothing but curl and sh on the client: `wharf serve` prints a one-liner that fetches
//! its trust script with curl pinned to the server's public key, and pipes it into `sudo sh`.
//!
//! - A client in a network namespace of its own, with a real dockerd and no wharf binary, runs the
//!   one-liner exactly as printed: before, Docker refuses the registry's certificate; a wrong pin
//!   makes curl refuse and installs nothing; the right one installs the CA, and `docker login`,
//!   push and pull work. The client's /etc and system store are overlays private to it, so the
//!   script runs for real (update-ca-certificates included) without touching this machine's.
//! - The served script is byte for byte `wharf trust --script`'s, and under busybox `sh` (busybox
//!   applets only, no openssl) on root filesystems laid out as macOS, balenaOS and Debian/RHEL it
//!   writes what each of those systems reads; a copy damaged in transit installs nothing.
//! - A server with no CA to publish serves no script either.

mod common;

use common::dockerd::Dockerd;
use common::images::{run, run_unchecked, run_with_input_unchecked, short_tempdir};
use common::netns::TestHost;
use common::{files_under, printed_after, require_tool, wharf_bin, Wharf};
use std::path::Path;
use std::process::{Command, Output};

/// The PATH of a client shell: the system's directories only (no cargo target, no wharf).
const CLIENT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What `wharf serve` printed for clients.
struct Printed {
    password: String,
    fingerprint: String,
    /// The curl one-liner exactly as printed.
    one_liner: String,
}

impl Printed {
    fn from_output(out: &str) -> Printed {
        Printed {
            password: printed_after(out, "created user admin with password "),
            fingerprint: printed_after(out, "CA fingerprint (SHA-256): "),
            one_liner: format!("curl {}", printed_after(out, "wharf:   curl ")),
        }
    }

    /// The download alone, without `| sudo sh`.
    fn download(&self) -> &str {
        self.one_liner.split(" | ").next().unwrap()
    }
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The pin of the key `addr` really serves, computed by openssl from the TLS handshake.
fn served_pin(addr: &str) -> String {
    let pipeline = format!(
        "echo | openssl s_client -connect {addr} 2>/dev/null | openssl x509 -pubkey -noout \
         | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | openssl enc -base64"
    );
    let out = run(Command::new("sh").arg("-c").arg(pipeline));
    format!("sha256//{}", stdout(&out).trim())
}

/// Runs `script` with `sh -c` on the client: in the namespaces of its dockerd (network and
/// mounts), with a clean environment and the system PATH.
fn on_client(d: &Dockerd, script: &str) -> Output {
    let out = run_unchecked(d.nsenter().args(["env", "-i", CLIENT_PATH, "sh", "-c"]).arg(script));
    println!("client$ {script}\n{}", text(&out));
    out
}

fn docker_login(d: &Dockerd, registry: &str, password: &str) -> Output {
    run_with_input_unchecked(d.cmd().args(["login", registry, "-u", "admin", "--password-stdin"]), password)
}

#[test]
fn a_client_with_only_curl_and_sh_trusts_the_registry_with_the_printed_one_liner() {
    for tool in ["curl", "openssl", "sudo", "nsenter", "unshare"] {
        if !require_tool(tool) {
            return;
        }
    }
    let Some(host) = TestHost::create() else { return };
    let overlays = short_tempdir("wo");
    let Some(d) = Dockerd::start_with_private_etc(&host.ns, overlays.path(), "") else {
        return;
    };

    // The registry listens on this side of the client's link, secured automatically.
    let data = tempfile::tempdir().unwrap();
    let wharf = Wharf::launch(&[], &format!("{}:0", host.local_ip), &data.path().join("data"), &[], &[]);
    assert!(wharf.url.starts_with("https://"), "{}", wharf.url);
    let registry = wharf.addr.clone();
    let printed = Printed::from_output(&wharf.output());
    let pin = served_pin(&registry);
    assert_eq!(
        printed.one_liner,
        format!("curl -fsSk --pinnedpubkey '{pin}' https://{registry}/.well-known/wharf/trust.sh | sudo sh"),
        "the one-liner pins the key the server serves"
    );
    assert!(
        wharf.output().contains("--pinnedpubkey makes curl refuse"),
        "the start message says why -k is safe:\n{}",
        wharf.output()
    );

    // The script served is `wharf trust --script`'s for this registry, byte for byte.
    let served = run(Command::new("sh").arg("-c").arg(printed.download()));
    let generated = run(Command::new(wharf_bin()).args(["trust", &registry, "--fingerprint", &printed.fingerprint, "--script"]));
    assert_eq!(stdout(&served), stdout(&generated));
    assert!(stdout(&served).contains(&printed.fingerprint));

    // The client has no wharf, and Docker there does not trust the registry yet.
    assert!(!on_client(&d, "command -v wharf").status.success(), "no wharf on the client's PATH");
    let before = docker_login(&d, &registry, &printed.password);
    assert!(!before.status.success());
    assert!(
        text(&before).contains("x509: certificate signed by unknown authority"),
        "{}",
        text(&before)
    );

    // A wrong pin: curl refuses the server, sh gets nothing, nothing is installed.
    let wrong = "sha256//47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
    assert_ne!(wrong, pin);
    let refused = on_client(&d, &printed.one_liner.replace(&pin, wrong));
    assert!(
        text(&refused).contains("pinned public key"),
        "curl names the pin:\n{}",
        text(&refused)
    );
    let nothing = on_client(
        &d,
        "ls -A /etc/docker/certs.d /etc/containerd/certs.d /etc/containers/certs.d 2>/dev/null; \
         ls /usr/local/share/ca-certificates /etc/ssl/certs | grep wharf-",
    );
    assert_eq!(stdout(&nothing).trim(), "", "a wrong pin installs nothing");

    // The one-liner exactly as printed.
    let trusted = on_client(&d, &printed.one_liner);
    assert!(trusted.status.success(), "{}", text(&trusted));
    let said = stdout(&trusted);
    for line in [
        format!("wrote /etc/docker/certs.d/{registry}/ca.crt"),
        format!("wrote /etc/containerd/certs.d/{registry}/hosts.toml"),
        format!("wrote /etc/containers/certs.d/{registry}/ca.crt"),
        "docker: dockerd found".to_string(),
        "ran update-ca-certificates".to_string(),
    ] {
        assert!(said.contains(&line), "{line:?} missing:\n{said}");
    }
    let ca = run(Command::new("sh").arg("-c").arg(printed.download().replace("trust.sh", "ca.crt")));
    let installed = on_client(&d, &format!("cat /etc/docker/certs.d/{registry}/ca.crt"));
    assert_eq!(stdout(&installed), stdout(&ca), "the installed CA is the one the server publishes");
    assert!(
        !Path::new(&format!("/etc/docker/certs.d/{registry}")).exists(),
        "the client's files stay in its own overlay"
    );

    // Docker on the client now logs in, pushes and pulls.
    let login = docker_login(&d, &registry, &printed.password);
    assert!(login.status.success(), "{}", text(&login));
    d.push_and_pull_back(&format!("{registry}/oneliner/app:v1"));
}

/// A directory of busybox applets (its `--list`), as the only PATH: the script meets nothing
/// but what busybox offers.
fn busybox_bin(dir: &Path) -> String {
    let busybox = String::from_utf8_lossy(&run(Command::new("sh").args(["-c", "command -v busybox"])).stdout)
        .trim()
        .to_string();
    std::fs::create_dir_all(dir).unwrap();
    let list = run(Command::new(&busybox).arg("--list"));
    for applet in stdout(&list).lines().filter(|a| !a.is_empty()) {
        std::os::unix::fs::symlink(&busybox, dir.join(applet)).unwrap();
    }
    std::os::unix::fs::symlink(&busybox, dir.join("busybox")).unwrap();
    dir.display().to_string()
}

fn busybox_sh(script: &Path, root: &Path, path: &str) -> Output {
    let out = run_unchecked(
        Command::new(Path::new(path).join("busybox"))
            .arg("sh")
            .arg(script)
            .env_clear()
            .env("PATH", path)
            .env("ROOT", root),
    );
    println!("$ ROOT={} busybox sh trust.sh\n{}", root.display(), text(&out));
    out
}

fn layout(root: &Path, dirs: &[&str], files: &[(&str, &str)]) {
    for d in dirs {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    for (f, content) in files {
        std::fs::create_dir_all(root.join(f).parent().unwrap()).unwrap();
        std::fs::write(root.join(f), content).unwrap();
    }
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

const BALENA_OS_RELEASE: &str = "ID=\"balena-os\"\nNAME=\"balenaOS\"\nVERSION=\"6.1.25\"\nPRETTY_NAME=\"balenaOS 6.1.25\"\n";
const MACOS_VERSION: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<plist version=\"1.0\"><dict>\
<key>ProductName</key><string>macOS</string><key>ProductVersion</key><string>14.5</string></dict></plist>\n";

#[test]
fn busybox_sh_runs_the_served_script_on_macos_balenaos_and_debian_rhel_layouts() {
    for tool in ["curl", "busybox"] {
        if !require_tool(tool) {
            return;
        }
    }
    // Automatic TLS on loopback too, asked for: the one-liner is printed the same way.
    let wharf = Wharf::start_with(&[], &[("WHARF_AUTO_TLS", "true")]);
    let printed = Printed::from_output(&wharf.output());
    let addr = wharf.addr.clone();
    let port = addr.rsplit(':').next().unwrap().to_string();
    let work = tempfile::tempdir().unwrap();
    let script = work.path().join("trust.sh");
    run(Command::new("sh")
        .arg("-c")
        .arg(format!("{} > {}", printed.download(), script.display())));
    let ca = stdout(&run(Command::new("sh")
        .arg("-c")
        .arg(printed.download().replace("trust.sh", "ca.crt"))));
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
    let path = busybox_bin(&work.path().join("busybox"));
    let stem = format!("wharf-127.0.0.1-{port}");

    // macOS: the CA file, and the keychain command to run on the Mac (this is not one).
    let mac = work.path().join("mac");
    layout(
        &mac,
        &["Library/Keychains"],
        &[("System/Library/CoreServices/SystemVersion.plist", MACOS_VERSION)],
    );
    let out = busybox_sh(&script, &mac, &path);
    assert!(out.status.success(), "{}", text(&out));
    let mac_ca = format!("/Library/Application Support/wharf/{stem}.crt");
    assert_eq!(
        files_under(&mac),
        [mac_ca.clone(), "/System/Library/CoreServices/SystemVersion.plist".into()]
    );
    assert_eq!(std::fs::read_to_string(mac.join(&mac_ca[1..])).unwrap(), ca);
    assert_eq!(mode(&mac.join(&mac_ca[1..])), 0o644);
    let command = format!("sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain '{mac_ca}'");
    assert!(
        stdout(&out).contains(&format!("macOS: run on the Mac: {command}")),
        "{}",
        text(&out)
    );

    // balenaOS: balenaEngine's certs.d only; the read-only rest is left alone.
    let balena = work.path().join("balena");
    layout(
        &balena,
        &["mnt/data/docker", "usr/share/ca-certificates"],
        &[("etc/os-release", BALENA_OS_RELEASE)],
    );
    let out = busybox_sh(&script, &balena, &path);
    assert!(out.status.success(), "{}", text(&out));
    let docker_ca = format!("/etc/docker/certs.d/{addr}/ca.crt");
    assert_eq!(files_under(&balena), [docker_ca.clone(), "/etc/os-release".into()]);
    assert_eq!(std::fs::read_to_string(balena.join(&docker_ca[1..])).unwrap(), ca);
    assert!(stdout(&out).contains("balenaEngine reads /etc/docker/certs.d"), "{}", text(&out));

    // Debian and RHEL stores side by side: every runtime's certs.d and both anchors.
    let linux = work.path().join("linux");
    layout(&linux, &["usr/local/share/ca-certificates", "etc/pki/ca-trust/source/anchors"], &[]);
    let out = busybox_sh(&script, &linux, &path);
    assert!(out.status.success(), "{}", text(&out));
    let mut expected = vec![
        format!("/etc/containerd/certs.d/{addr}/ca.crt"),
        format!("/etc/containerd/certs.d/{addr}/hosts.toml"),
        format!("/etc/containers/certs.d/{addr}/ca.crt"),
        docker_ca.clone(),
        format!("/etc/pki/ca-trust/source/anchors/{stem}.crt"),
        format!("/usr/local/share/ca-certificates/{stem}.crt"),
    ];
    expected.sort();
    assert_eq!(files_under(&linux), expected);
    for cmd in ["update-ca-certificates", "update-ca-trust"] {
        assert!(
            stdout(&out).contains(&format!("run inside the target system: {cmd}")),
            "{}",
            text(&out)
        );
    }
    let again = busybox_sh(&script, &linux, &path);
    assert!(again.status.success());
    assert_eq!(stdout(&again).matches("unchanged ").count(), 6, "{}", text(&again));

    // A damaged copy fails busybox's sha256sum check (no openssl here) and installs nothing.
    let body = std::fs::read_to_string(&script).unwrap();
    let line = body.lines().find(|l| l.len() == 64 && !l.contains(' ')).expect("a base64 line");
    let damaged = work.path().join("damaged.sh");
    std::fs::write(&damaged, body.replacen(line, &line.chars().rev().collect::<String>(), 1)).unwrap();
    let fresh = work.path().join("fresh");
    layout(&fresh, &[], &[("etc/os-release", BALENA_OS_RELEASE)]);
    let out = busybox_sh(&damaged, &fresh, &path);
    assert!(!out.status.success());
    assert!(text(&out).contains("nothing installed"), "{}", text(&out));
    assert_eq!(files_under(&fresh), ["/etc/os-release"]);
}

#[test]
fn without_a_ca_to_publish_there_is_no_trust_script() {
    if !require_tool("curl") {
        return;
    }
    // Plain HTTP on loopback: nothing to trust, so neither the CA nor the script is served.
    let wharf = Wharf::start();
    assert!(!wharf.output().contains("--pinnedpubkey"), "{}", wharf.output());
    for path in ["/.well-known/wharf/trust.sh", "/.well-known/wharf/ca.crt"] {
        let out = run(Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("{}{path}", wharf.url)));
        assert_eq!(stdout(&out), "404", "{path}");
    }
}
