//! `wharf serve --mdns NAME` on a test host (a network namespace): from this namespace, on the
//! other end of the link, `NAME.local` resolves to the test host's address and the registry is
//! listed as a DNS-SD service, asked by a resolver of the test's own (tests/fixtures); the
//! automatic certificate covers `NAME.local`; and when the server stops, it says goodbye.

mod common;

use common::netns::TestHost;
use common::wharf_bin;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
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
