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
        set_up_first(|pid, n, (local_ip, ip)| {
            let host = TestHost {
                ns: format!("{NS_PREFIX}{pid}-{n}"),
                host_if: format!("wh{pid}h{n}"),
                ip,
                local_ip,
            };
            host.set_up(&format!("wh{pid}n{n}")).then_some(host)
        })
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

/// Two machines on a LAN of their own: two network namespaces joined directly by a veth pair
/// and to nothing else, so multicast (mDNS) sent by one reaches the other and no real network.
/// Both are removed on drop, also when the test panics.
pub struct TestLan {
    /// The namespace a server runs in, and its address.
    pub server_ns: String,
    pub server_ip: String,
    /// The namespace a client runs in, its address and its end of the link (for a daemon
    /// that must be told which interface the LAN is on).
    pub client_ns: String,
    pub client_ip: String,
    pub client_if: String,
}

impl TestLan {
    /// Makes both namespaces and the link. Returns None (after printing SKIP) when not root or
    /// `ip` is missing outside CI; panics in CI.
    pub fn create() -> Option<TestLan> {
        set_up_first(|pid, n, (server_ip, client_ip)| {
            let lan = TestLan {
                server_ns: format!("{NS_PREFIX}{pid}-{n}-s"),
                server_ip,
                client_ns: format!("{NS_PREFIX}{pid}-{n}-c"),
                client_ip,
                client_if: format!("wh{pid}c{n}"),
            };
            lan.set_up(&format!("wh{pid}s{n}")).then_some(lan)
        })
    }

    fn set_up(&self, server_if: &str) -> bool {
        let (server, client, client_if) = (self.server_ns.as_str(), self.client_ns.as_str(), self.client_if.as_str());
        let server_addr = format!("{}/30", self.server_ip);
        let client_addr = format!("{}/30", self.client_ip);
        let steps: Vec<Vec<&str>> = vec![
            vec!["netns", "add", server],
            vec!["netns", "add", client],
            vec![
                "-n", server, "link", "add", server_if, "type", "veth", "peer", "name", client_if, "netns", client,
            ],
            vec!["-n", server, "addr", "add", &server_addr, "dev", server_if],
            vec!["-n", client, "addr", "add", &client_addr, "dev", client_if],
            vec!["-n", server, "link", "set", server_if, "up"],
            vec!["-n", client, "link", "set", client_if, "up"],
            vec!["-n", server, "link", "set", "lo", "up"],
            vec!["-n", client, "link", "set", "lo", "up"],
        ];
        steps.iter().all(|args| ip(args))
    }
}

impl Drop for TestLan {
    fn drop(&mut self) {
        // The veth pair lives only in these namespaces: deleting them deletes it.
        ip_quiet(&["netns", "del", &self.server_ns]);
        ip_quiet(&["netns", "del", &self.client_ns]);
    }
}

/// Several machines on one switch: a bridge in a namespace of its own ("hub"), a namespace per
/// machine plugged into it, and this namespace on it too (at `local_ip`), all in one /29 of
/// 198.18.0.0/15 and joined to no other network. For a cluster whose members must reach each
/// other and the test (Garage's nodes). Everything is removed on drop, also on panic.
pub struct TestSwitch {
    hub: String,
    host_if: String,
    /// The namespaces of the machines, and their addresses, in order.
    pub machines: Vec<(String, String)>,
    /// The address of this namespace on the switch.
    pub local_ip: String,
}

impl TestSwitch {
    /// Up to 5 machines. None (after printing SKIP) when namespaces cannot be made here.
    pub fn create(machines: usize) -> Option<TestSwitch> {
        assert!((1..=5).contains(&machines), "a /29 holds the test and at most 5 machines");
        if !can_make_namespaces() {
            return None;
        }
        let pid = std::process::id();
        for _ in 0..16 {
            let n = NEXT.fetch_add(1, Ordering::SeqCst);
            let subnet = (pid.wrapping_mul(7919).wrapping_add(n.wrapping_mul(104_729))) % (SUBNETS / 2);
            let base = (198u32 << 24) | (18 << 16) | (subnet * 8);
            if (1..=machines as u32 + 1).any(|i| address_in_use(&dotted(base + i))) {
                continue;
            }
            let switch = TestSwitch {
                hub: format!("{NS_PREFIX}{pid}-{n}-hub"),
                host_if: format!("wh{pid}w{n}"),
                machines: (0..machines)
                    .map(|i| (format!("{NS_PREFIX}{pid}-{n}-m{i}"), dotted(base + 2 + i as u32)))
                    .collect(),
                local_ip: dotted(base + 1),
            };
            if switch.set_up() {
                return Some(switch);
            }
        }
        panic!("could not create the test switch's namespaces (see the ip errors above)");
    }

    /// `ip netns exec NS` for machine `i`.
    pub fn prefix(&self, i: usize) -> Vec<&str> {
        vec!["ip", "netns", "exec", &self.machines[i].0]
    }

    fn set_up(&self) -> bool {
        let hub = self.hub.as_str();
        let local = format!("{}/29", self.local_ip);
        let mut steps: Vec<Vec<String>> = vec![
            vec!["netns", "add", hub],
            vec!["-n", hub, "link", "add", "br0", "type", "bridge"],
            vec!["-n", hub, "link", "set", "br0", "up"],
            vec!["link", "add", &self.host_if, "type", "veth", "peer", "name", "up0", "netns", hub],
            vec!["-n", hub, "link", "set", "up0", "master", "br0", "up"],
            vec!["addr", "add", &local, "dev", &self.host_if],
            vec!["link", "set", &self.host_if, "up"],
        ]
        .into_iter()
        .map(|v| v.into_iter().map(String::from).collect())
        .collect();
        for (i, (ns, ip)) in self.machines.iter().enumerate() {
            let port = format!("p{i}");
            let addr = format!("{ip}/29");
            for step in [
                vec!["netns", "add", ns],
                vec!["-n", hub, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", ns],
                vec!["-n", hub, "link", "set", &port, "master", "br0", "up"],
                vec!["-n", ns, "addr", "add", &addr, "dev", "eth0"],
                vec!["-n", ns, "link", "set", "eth0", "up"],
                vec!["-n", ns, "link", "set", "lo", "up"],
            ] {
                steps.push(step.into_iter().map(String::from).collect());
            }
        }
        steps.iter().all(|args| ip(&args.iter().map(String::as_str).collect::<Vec<_>>()))
    }
}

impl Drop for TestSwitch {
    fn drop(&mut self) {
        for (ns, _) in &self.machines {
            ip_quiet(&["netns", "del", ns]);
        }
        ip_quiet(&["netns", "del", &self.hub]);
        ip_quiet(&["link", "del", &self.host_if]);
    }
}

/// The first of up to 16 attempts `set_up(pid, attempt, addresses)` makes work, each on a free
/// /30 of its own: another run may hold the subnet an attempt maps to. None (after printing
/// SKIP) when namespaces cannot be made here; panics when every attempt fails. A failed attempt
/// is dropped, which removes what it made.
fn set_up_first<T>(mut set_up: impl FnMut(u32, u32, (String, String)) -> Option<T>) -> Option<T> {
    if !can_make_namespaces() {
        return None;
    }
    let pid = std::process::id();
    for _ in 0..16 {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let Some(addresses) = free_pair(pid, n) else { continue };
        if let Some(made) = set_up(pid, n, addresses) {
            return Some(made);
        }
    }
    panic!("could not create test network namespaces (see the ip errors above)");
}

/// False (after printing SKIP) when namespaces cannot be made here: not root, or no `ip`
/// (outside CI; panics in CI). Removes namespaces earlier runs left first.
fn can_make_namespaces() -> bool {
    if !super::is_root() {
        if super::in_ci() {
            panic!("network namespace tests must run as root in CI");
        }
        eprintln!("SKIP: network namespaces need root");
        return false;
    }
    if !super::require_tool("ip") {
        return false;
    }
    remove_stale();
    true
}

/// The two addresses of a /30 in 198.18.0.0/15 that this PID's `n`th attempt maps to, when
/// no interface here uses them yet.
fn free_pair(pid: u32, n: u32) -> Option<(String, String)> {
    let subnet = (pid.wrapping_mul(7919).wrapping_add(n.wrapping_mul(104_729))) % SUBNETS;
    let base = (198u32 << 24) | (18 << 16) | (subnet * 4);
    let (first, second) = (dotted(base + 1), dotted(base + 2));
    if address_in_use(&first) || address_in_use(&second) {
        return None;
    }
    Some((first, second))
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
