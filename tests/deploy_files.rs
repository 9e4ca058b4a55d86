//! The files in deploy/ as they are shipped: the systemd unit passes `systemd-analyze verify`
//! without a warning and its ExecStart, run as an unprivileged user on an empty state directory
//! as systemd would run it, starts a secured registry; the compose file is valid for Debian's
//! docker-compose. (The image and seed 004's compose file run for real in tests/e2e_image.rs;
//! this machine has no systemd as PID 1, so the unit itself cannot be started here.)

mod common;

use common::netns::TestHost;
use common::{is_root, require_tool, wharf_bin, Wharf};
use std::process::Command;

const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/wharf.service");
const COMPOSE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/docker-compose.yml");
const INSTALLED_BIN: &str = "/usr/local/bin/wharf";

fn unit_value<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines().filter_map(|l| l.strip_prefix(&format!("{key}="))).collect()
}

#[test]
fn systemd_unit_verifies_and_its_command_starts_a_secured_registry() {
    if !require_tool("systemd-analyze") || !require_tool("setpriv") || !is_root() {
        return;
    }
    let unit = std::fs::read_to_string(UNIT).unwrap();
    // The unit names the installed binary; verify it against this build's.
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("wharf.service");
    std::fs::write(&copy, unit.replace(INSTALLED_BIN, wharf_bin())).unwrap();
    let out = Command::new("systemd-analyze").arg("verify").arg(&copy).output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && said.trim().is_empty(), "systemd-analyze verify: {said}");

    for (key, want) in [
        ("Restart", "on-failure"),
        ("ProtectSystem", "strict"),
        ("StateDirectory", "wharf"),
        ("User", "wharf"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
    ] {
        assert_eq!(unit_value(&unit, key), vec![want], "{key}");
    }

    // ExecStart as systemd runs it: as the service's own (unprivileged) user, on the empty
    // directory StateDirectory= creates, on a test host (a network namespace) so that its
    // 0.0.0.0 is that host's addresses only. Only the port changes.
    let Some(host) = TestHost::create() else { return };
    let exec = unit_value(&unit, "ExecStart")[0];
    let mut args: Vec<String> = exec.split_whitespace().map(str::to_string).collect();
    assert_eq!(args[..2], [INSTALLED_BIN.to_string(), "serve".to_string()], "{exec}");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let state = tmp.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::os::unix::fs::chown(&state, Some(65534), Some(65534)).unwrap();
    let at = |args: &[String], flag: &str| args.iter().position(|a| a == flag).map(|i| i + 1);
    let addr = at(&args, "--addr").expect("ExecStart names --addr");
    assert!(args[addr].starts_with("0.0.0.0:"), "the unit listens on the network: {exec}");
    args[addr] = format!("0.0.0.0:{}", common::free_port());
    let root = at(&args, "--root").expect("ExecStart names --root");
    assert_eq!(args[root], "/var/lib/wharf", "the StateDirectory");
    args[root] = state.display().to_string();
    let serve_args: Vec<&str> = args[2..].iter().map(String::as_str).collect();
    let mut prefix = host.prefix();
    prefix.extend(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]);
    let w = Wharf::try_launch_args(&prefix, &serve_args, &[]).expect("the unit's command starts as an unprivileged user");
    w.wait_for_output("created user admin with password", 1);
    assert!(w.url.starts_with("https://"), "wharf started its own way secures itself: {}", w.url);
    assert!(state.join("wharf/server.crt").exists(), "its state lives in the StateDirectory");
    let port = args[addr].rsplit(':').next().unwrap().parse::<u16>().unwrap();
    let code = Command::new("curl")
        .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10"])
        .arg(format!("https://{}/v2/", host.addr(port)))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&code.stdout),
        "401",
        "a client on the network meets TLS and a password"
    );
}

#[test]
fn compose_file_is_valid_for_docker_compose() {
    if !require_tool("docker-compose") {
        return;
    }
    let out = Command::new("docker-compose").args(["-f", COMPOSE, "config"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let config = String::from_utf8_lossy(&out.stdout);
    for want in [
        "image: wharf:latest",
        "restart: unless-stopped",
        "REGISTRY_HTTP_TLS_CERTIFICATE: /certs/repo-crt.pem",
        "REGISTRY_AUTH: htpasswd",
        "published: 5001",
    ] {
        assert!(config.contains(want), "compose config lacks {want:?}:\n{config}");
    }
}
