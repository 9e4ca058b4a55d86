//! A test host: a network namespace joined to this one by a veth pair, with addresses from
//! 198.18.0.0/15 (the benchmarking range, never routed outside). A registry listening there is
//! on a non-loopback address, so Docker and containerd enforce TLS against it as they would
//! against a registry on another machine. Removed on drop, also when the test panics.
#![allow(dead_code)]

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// /30 subnets in 198.18.0.0/15.
const SUBNETS: u32 = (1 << 17) / 4;
/// Namespace names start with this, then the PID of the test process that made them.
const NS_PREFIX: &str = "wharft-";

static NEXT: AtomicU32 = AtomicU32::new(0);

pub struct TestHost {
    /// The namespace's name, for `ip netns exec`.
    pub ns: String,
    host_if: String,
    /// The address of the test host (inside the namespace).
    pub ip: String,
    /// The address of this side of the link.
    pub local_ip: String,
}

impl TestHost {
    /// Makes the namespace and link. Returns None (after printing SKIP) when not root or `ip`
    /// is missing outside CI; panics in CI.
    pub fn create() -> Option<TestHost> {
        if !super::is_root() {
            if super::in_ci() {
                panic!("network namespace tests must run as root in CI");
            }
            eprintln!("SKIP: network namespaces need root");
            return None;
        }
        if !super::require_tool("ip") {
            return None;
        }
        remove_stale();
        let pid = std::process::id();
        // Several attempts: another run may hold the subnet this PID maps to.
        for _ in 0..16 {
            let n = NEXT.fetch_add(1, Ordering::SeqCst);
            let subnet = (pid.wrapping_mul(7919).wrapping_add(n.wrapping_mul(104_729))) % SUBNETS;
            let base = (198u32 << 24) | (18 << 16) | (subnet * 4);
            let (local_ip, ip) = (dotted(base + 1), dotted(base + 2));
            if address_in_use(&local_ip) || address_in_use(&ip) {
                continue;
            }
            let host = TestHost {
                ns: format!("{NS_PREFIX}{pid}-{n}"),
                host_if: format!("wh{pid}h{n}"),
                ip,
                local_ip,
            };
            if host.set_up(&format!("wh{pid}n{n}")) {
                return Some(host);
            }
            drop(host);
        }
        panic!("could not create a test network namespace (see the ip errors above)");
    }

    /// `ip netns exec NS`: a command prefix that runs a program on the test host.
    pub fn prefix(&self) -> Vec<&str> {
        vec!["ip", "netns", "exec", &self.ns]
    }

    /// `HOST:PORT` on the test host.
    pub fn addr(&self, port: u16) -> String {
        format!("{}:{port}", self.ip)
    }

    fn set_up(&self, peer_if: &str) -> bool {
        let (ns, host_if) = (self.ns.as_str(), self.host_if.as_str());
        let local = format!("{}/30", self.local_ip);
        let remote = format!("{}/30", self.ip);
        let steps: Vec<Vec<&str>> = vec![
            vec!["netns", "add", ns],
            vec!["link", "add", host_if, "type", "veth", "peer", "name", peer_if],
            vec!["link", "set", peer_if, "netns", ns],
            vec!["addr", "add", &local, "dev", host_if],
            vec!["link", "set", host_if, "up"],
            vec!["-n", ns, "addr", "add", &remote, "dev", peer_if],
            vec!["-n", ns, "link", "set", peer_if, "up"],
            vec!["-n", ns, "link", "set", "lo", "up"],
        ];
        steps.iter().all(|args| ip(args))
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        // Deleting the namespace destroys its end of the pair, which takes this end with it;
        // the explicit delete covers a namespace that was never made.
        ip_quiet(&["netns", "del", &self.ns]);
        ip_quiet(&["link", "del", &self.host_if]);
    }
}

/// Runs `ip ARGS`, printing the error on failure.
fn ip(args: &[&str]) -> bool {
    let out = Command::new("ip").args(args).stdin(Stdio::null()).output().expect("run ip");
    if !out.status.success() {
        eprintln!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    out.status.success()
}

fn ip_quiet(args: &[&str]) {
    let _ = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn dotted(a: u32) -> String {
    std::net::Ipv4Addr::from(a).to_string()
}

fn address_in_use(ip: &str) -> bool {
    let out = Command::new("ip").args(["-o", "addr", "show", "to", ip]).output().expect("run ip");
    !String::from_utf8_lossy(&out.stdout).trim().is_empty()
}

/// Deletes namespaces left by test processes that no longer exist (a run killed before its
/// guards ran). Their veth pairs go with them.
fn remove_stale() {
    let out = Command::new("ip").args(["netns", "list"]).output().expect("run ip");
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else { continue };
        let Some(pid) = name.strip_prefix(NS_PREFIX).and_then(|rest| rest.split('-').next()) else {
            continue;
        };
        if pid
            .parse::<u32>()
            .is_ok_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
        {
            ip_quiet(&["netns", "del", name]);
        }
    }
}
