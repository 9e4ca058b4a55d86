//! `wharf serve --mdns NAME` on a test host (a network namespace): from this namespace, on the
//! other end of the link, `NAME.local` resolves to the test host's address and the registry is
//! listed as a DNS-SD service, asked by a resolver of the test's own (tests/fixtures); the
//! automatic certificate covers `NAME.local`; and when the server stops, it says goodbye.
//!
//! And the journey of seed 000: a real dockerd on another machine of the LAN (a namespace of its
//! own, with avahi-daemon and libnss-mdns, the way Debian resolves `.local`) reaches the
//! registry as `NAME.local:PORT`: refused before `wharf trust`, then login, push and pull.

mod common;

use common::dockerd::Dockerd;
use common::images::{run_unchecked, run_with_input_unchecked, short_tempdir, stop_child, wait_until};
use common::netns::{TestHost, TestLan};
use common::{printed_after, require_tool, wharf_bin, Wharf};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The server this test started, killed if the test fails before it stops it itself (so a
/// failed assertion leaves no wharf running in the namespace).
struct Stopped(std::process::Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn resolve(host: &TestHost, name: &str, service: &str) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mdns_resolve.py");
    let out = Command::new("python3")
        .args([script, &host.local_ip, name, service, "10"])
        .output()
        .expect("run the mDNS resolver");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn name_local_resolves_from_another_namespace() {
    if !common::require_tool("python3") {
        return;
    }
    let Some(host) = TestHost::create() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let name = format!("wharf{}", std::process::id());
    let port = 5000 + (std::process::id() % 1000) as u16;
    let mut cmd = Command::new("ip");
    cmd.args([
        "netns",
        "exec",
        &host.ns,
        wharf_bin(),
        "serve",
        "--addr",
        &format!("0.0.0.0:{port}"),
        "--mdns",
        &name,
    ])
    .arg("--root")
    .arg(tmp.path().join("data"))
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    let mut server = Stopped(cmd.spawn().unwrap());
    let child = &mut server.0;
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    let start = Instant::now();
    while !seen.iter().any(|l: &String| l.contains("listening on")) {
        assert!(start.elapsed() < Duration::from_secs(60), "no start: {seen:?}");
        match lines.next() {
            Some(Ok(l)) => seen.push(l),
            _ => break,
        }
    }
    let log = seen.join("\n");
    assert!(log.contains(&format!("answering for {name}.local")), "{log}");

    let local = format!("{name}.local");
    let service = "_https._tcp.local";
    let found = resolve(&host, &local, service);
    eprintln!("mDNS from the other namespace: {found}");
    assert_eq!(found["A"], serde_json::json!([host.ip]), "{local} -> the test host's address");
    assert!(
        found["SRV"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s.as_str() == Some(&format!("{local}:{port}"))),
        "the registry as a DNS-SD service: {found}"
    );
    assert!(
        found["PTR"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p.as_str() == Some(&format!("{name}.{service}"))),
        "{found}"
    );

    // The automatic certificate names NAME.local.
    let crt = tmp.path().join("data/wharf/server.crt");
    let inspect = Command::new(wharf_bin())
        .args(["cert", "inspect"])
        .arg(&crt)
        .args(["--host", &format!("{local}:{port}")])
        .output()
        .unwrap();
    assert!(inspect.status.success(), "{}", String::from_utf8_lossy(&inspect.stdout));

    // SAFETY: kill on the PID of `ip netns exec`, which execs wharf: the child this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(start.elapsed() < Duration::from_secs(30), "wharf did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
    let after = resolve(&host, &local, service);
    assert_eq!(after["A"], serde_json::json!([]), "stopped: nobody answers for {local}: {after}");
}

/// The client's hosts line: `.local` names asked over mDNS (through avahi-daemon), the rest
/// as before. Given to the client's private /etc only; this machine's nsswitch.conf is not
/// touched.
const MDNS_HOSTS: &str = "hosts: files mdns4_minimal [NOTFOUND=return] dns";

/// avahi-daemon as a resolver for one client: only its end of the LAN, no D-Bus (nss-mdns
/// talks to it over /run/avahi-daemon/socket), no wide-area DNS, nothing published.
fn avahi_conf(interface: &str) -> String {
    format!(
        "[server]\nuse-ipv4=yes\nuse-ipv6=no\nallow-interfaces={interface}\nenable-dbus=no\n\
         [wide-area]\nenable-wide-area=no\n[publish]\ndisable-publishing=yes\n"
    )
}

/// True when libc can load nss-mdns (Debian's libnss-mdns); without it SKIP, or panic in CI.
fn have_nss_mdns() -> bool {
    let cache = Command::new("ldconfig").arg("-p").output().expect("run ldconfig");
    let found = String::from_utf8_lossy(&cache.stdout).contains("libnss_mdns4_minimal.so.2");
    if !found {
        assert!(
            !common::in_ci(),
            "libnss-mdns is required in CI but libnss_mdns4_minimal is not installed"
        );
        eprintln!("SKIP: libnss-mdns not installed (run the README's test command to install it)");
    }
    found
}

/// A daemon this test started, stopped by PID on drop.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        stop_child(&mut self.0, Duration::from_secs(5));
    }
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn docker_on_another_machine_pushes_to_name_local_after_trust() {
    for tool in ["avahi-daemon", "nsenter", "unshare", "getent"] {
        if !require_tool(tool) {
            return;
        }
    }
    if !have_nss_mdns() {
        return;
    }
    let Some(lan) = TestLan::create() else { return };
    let name = format!("wharfd{}", std::process::id());
    let data = tempfile::tempdir().unwrap();
    let in_server_ns = ["ip", "netns", "exec", lan.server_ns.as_str()];
    let wharf = Wharf::launch(
        &in_server_ns,
        &format!("{}:0", lan.server_ip),
        &data.path().join("data"),
        &["--mdns", &name],
        &[],
    );
    let port = wharf.addr.rsplit(':').next().unwrap().to_string();
    let registry = format!("{name}.local:{port}");
    let out = wharf.output();
    assert!(out.contains(&format!("clients use {registry}")), "{out}");
    let password = printed_after(&out, "created user admin with password ");
    let fingerprint = printed_after(&out, "CA fingerprint (SHA-256): ");

    // The client machine. Debian's dockerd is built with cgo (no `netgo` tag: `go version -m`
    // shows `-tags=apparmor,seccomp,journald`), and Go sends a `.local` name to libc's
    // getaddrinfo, that is through nsswitch.conf, whenever it may be mDNS: so libnss-mdns
    // and avahi-daemon, as on a Debian desktop, are what make Docker resolve `NAME.local`.
    // /run is a tmpfs of the client's own, so its avahi-daemon's socket
    // (/run/avahi-daemon/socket, where nss-mdns looks) is the only one it sees.
    let overlays = short_tempdir("wm");
    let setup = format!(
        "mount -t tmpfs wharf-client-run /run; mkdir /run/avahi-daemon; \
         sed -i -E 's/^hosts:.*/{MDNS_HOSTS}/' /etc/nsswitch.conf; grep -qxF '{MDNS_HOSTS}' /etc/nsswitch.conf"
    );
    let Some(d) = Dockerd::start_with_private_etc(&lan.client_ns, overlays.path(), &setup) else {
        return;
    };
    let login = |d: &Dockerd| run_with_input_unchecked(d.cmd().args(["login", &registry, "-u", "admin", "--password-stdin"]), &password);

    // No avahi-daemon yet: dockerd's lookup fails in libc (glibc's EAI_AGAIN text, not one of
    // Go's own resolver's messages), so it does go through nsswitch.conf.
    let unresolved = login(&d);
    assert!(!unresolved.status.success());
    assert!(
        text(&unresolved).contains(&format!("lookup {name}.local: Temporary failure in name resolution")),
        "{}",
        text(&unresolved)
    );

    let conf = d.dir().join("avahi-daemon.conf");
    std::fs::write(&conf, avahi_conf(&lan.client_if)).unwrap();
    let avahi_log = std::fs::File::create(d.dir().join("avahi.log")).unwrap();
    let avahi = Daemon(
        d.nsenter()
            .args(["avahi-daemon", "--no-drop-root", "--no-chroot", "--no-rlimits", "-f"])
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(avahi_log.try_clone().unwrap())
            .stderr(avahi_log)
            .spawn()
            .expect("start avahi-daemon"),
    );
    let resolved = || {
        let out = run_unchecked(d.nsenter().args(["getent", "ahostsv4", &format!("{name}.local")]));
        String::from_utf8_lossy(&out.stdout).split_whitespace().next().map(str::to_string)
    };
    let found = wait_until(Duration::from_secs(30), || resolved().is_some());
    let log = std::fs::read_to_string(d.dir().join("avahi.log")).unwrap_or_default();
    assert!(found, "{name}.local did not resolve on the client; avahi-daemon:\n{log}");
    assert_eq!(
        resolved().as_deref(),
        Some(lan.server_ip.as_str()),
        "{name}.local -> the registry's address"
    );

    // Docker reaches the registry by name now, and refuses its certificate until trusted.
    let untrusted = login(&d);
    assert!(!untrusted.status.success());
    assert!(
        text(&untrusted).contains("x509: certificate signed by unknown authority"),
        "{}",
        text(&untrusted)
    );

    // `wharf trust NAME.local:PORT` on the client, with the fingerprint the server printed.
    let trust = run_unchecked(
        d.nsenter()
            .arg(wharf_bin())
            .args(["trust", &registry, "--fingerprint", &fingerprint]),
    );
    assert!(trust.status.success(), "{}", text(&trust));
    assert!(
        text(&trust).contains(&format!("wrote /etc/docker/certs.d/{registry}/ca.crt")),
        "{}",
        text(&trust)
    );
    for own in [
        format!("/etc/docker/certs.d/{registry}"),
        format!("/usr/local/share/ca-certificates/wharf-{name}.local-{port}.crt"),
    ] {
        assert!(
            !std::path::Path::new(&own).exists(),
            "{own}: the client's files stay in its own overlay"
        );
    }

    let trusted = login(&d);
    assert!(trusted.status.success(), "{}", text(&trusted));
    d.push_and_pull_back(&format!("{registry}/mdns/app:v1"));
    drop(avahi);
}
