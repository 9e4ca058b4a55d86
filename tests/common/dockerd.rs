//! A private Docker daemon for one test: its own data root, exec root, socket, client config and
//! the containerd it manages, all in a short temporary directory under /tmp. Stopped by PID on
//! drop, also when the test panics.
//!
//! `start` gives a daemon without networking (`--bridge=none`), enough to build, push and pull.
//! `start_bridged` gives one whose containers get addresses, so `docker run -p` and
//! docker-compose publish ports: it uses a bridge of its own (never `docker0`, which another
//! daemon may own) with addresses from 198.19.0.0/16 (the benchmarking range, never routed
//! outside) and takes compose networks from the same /24. Both the bridge and every network
//! interface left in that range are removed on drop.
#![allow(dead_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use super::images::{pid_alive, run, run_unchecked, short_tempdir, signal_pid, stop_child, wait_until};

/// Debian's client, which matches the daemon (another `docker` may come first on PATH).
pub const DOCKER: &str = "/usr/bin/docker";

pub struct Dockerd {
    child: Option<Child>,
    /// The bridge `start_bridged` made, and the /24 it and the compose networks use.
    bridge: Option<Bridge>,
    dir: tempfile::TempDir,
    /// `unix:///tmp/.../docker.sock`
    pub host: String,
    pub exec_root: PathBuf,
    pub data_root: PathBuf,
    /// Client configuration directory (DOCKER_CONFIG), empty: no credentials from the host.
    pub client_config: PathBuf,
}

impl Dockerd {
    /// Starts dockerd as root. Returns None (after printing SKIP) when not root or dockerd is
    /// missing outside CI; panics in CI.
    pub fn start() -> Option<Dockerd> {
        Self::launch(None, &[])
    }

    /// A daemon started through `wrapper` (`wrapper... dockerd ARGS`), e.g. `ip netns exec NS
    /// ...` for a client on another network. The wrapper must exec dockerd, so the PID stays
    /// the daemon's.
    pub fn start_wrapped(wrapper: &[&str]) -> Option<Dockerd> {
        Self::launch(None, wrapper)
    }

    /// A daemon on another machine: in the network namespace `netns`, with /etc and
    /// /usr/local/share/ca-certificates overlays on this machine's, private to it (kept in a
    /// tmpfs mounted on `overlays`), so what the client writes there (trust, nsswitch.conf)
    /// stays there. `setup` is shell run in the daemon's mount namespace after the overlays,
    /// before dockerd starts. Run more in its namespaces with [`Dockerd::nsenter`].
    pub fn start_with_private_etc(netns: &str, overlays: &Path, setup: &str) -> Option<Dockerd> {
        let ov = overlays.display();
        let script = format!(
            "set -e; mount -t tmpfs wharf-client {ov}; \
             for d in /etc /usr/local/share/ca-certificates; do \
               [ -d \"$d\" ] || continue; n=$(echo \"$d\" | tr / _); mkdir -p {ov}/$n/u {ov}/$n/w; \
               mount -t overlay overlay -o lowerdir=$d,upperdir={ov}/$n/u,workdir={ov}/$n/w $d; \
             done; {setup}\n exec \"$@\""
        );
        // nsenter rather than `ip netns exec`, which remounts /sys and so hides the cgroup
        // mounts dockerd needs.
        let netns = format!("--net=/run/netns/{netns}");
        let wrapper = [
            "nsenter",
            &netns,
            "--",
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
            "sh",
        ];
        Self::start_wrapped(&wrapper)
    }

    /// `nsenter ... --`: a command prefix that runs a program in this daemon's network and
    /// mount namespaces (its private /etc, when it has one).
    pub fn nsenter(&self) -> Command {
        let pid = self.pid().expect("the daemon runs").to_string();
        let mut c = Command::new("nsenter");
        c.args(["--target", &pid, "--mount", "--net", "--"]);
        c
    }

    /// A daemon with a bridge network: `-p` publishing and docker-compose work.
    pub fn start_bridged() -> Option<Dockerd> {
        if !super::is_root() || !super::require_tool("ip") {
            return Self::launch(None, &[]);
        }
        let bridge = Bridge::create();
        Self::launch(Some(bridge), &[])
    }

    fn launch(bridge: Option<Bridge>, wrapper: &[&str]) -> Option<Dockerd> {
        if !super::is_root() {
            if super::in_ci() {
                panic!("dockerd tests must run as root in CI");
            }
            eprintln!("SKIP: dockerd tests need root");
            return None;
        }
        if !super::require_tool("dockerd") || !super::require_tool(DOCKER) {
            return None;
        }
        let dir = short_tempdir("wd");
        let data_root = dir.path().join("d");
        let exec_root = dir.path().join("x");
        let client_config = dir.path().join("c");
        for d in [&data_root, &exec_root, &client_config] {
            std::fs::create_dir_all(d).expect("create dockerd dirs");
        }
        // An empty daemon config so the host's /etc/docker/daemon.json does not apply.
        let daemon_json = dir.path().join("daemon.json");
        std::fs::write(&daemon_json, b"{}").unwrap();
        let sock = dir.path().join("docker.sock");
        let log = File::create(dir.path().join("dockerd.log")).expect("dockerd log");
        let network: Vec<String> = match &bridge {
            None => vec!["--bridge=none".into()],
            // Published ports go through docker-proxy (no iptables): it listens on the host
            // and connects to the container across the bridge.
            Some(b) => vec![
                format!("--bridge={}", b.name),
                format!("--default-address-pool=base={},size=28", b.pool),
                "--userland-proxy=true".into(),
            ],
        };
        let mut command = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg("dockerd");
                c
            }
            None => Command::new("dockerd"),
        };
        let child = command
            .arg("--config-file")
            .arg(&daemon_json)
            .args(["--storage-driver=vfs", "--iptables=false", "--ip-masq=false"])
            .args(&network)
            .arg("--data-root")
            .arg(&data_root)
            .arg("--exec-root")
            .arg(&exec_root)
            .arg("--pidfile")
            .arg(data_root.join("docker.pid"))
            .arg("--host")
            .arg(format!("unix://{}", sock.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn dockerd");
        let d = Dockerd {
            child: Some(child),
            bridge,
            host: format!("unix://{}", sock.display()),
            exec_root,
            data_root,
            client_config,
            dir,
        };
        d.wait_ready();
        Some(d)
    }

    fn wait_ready(&self) {
        let ready = wait_until(Duration::from_secs(60), || {
            Command::new(DOCKER)
                .args(["-H", &self.host, "version"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        });
        if !ready {
            panic!("dockerd did not answer within 60s; log:\n{}", self.log_tail());
        }
    }

    /// The last lines of the daemon's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// The daemon's PID (for `nsenter --target`), while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The directory the daemon's files live in (short, under /tmp), for a test's own files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A `docker-compose` command (Debian's 1.29) bound to this daemon.
    pub fn compose(&self) -> Command {
        let mut c = Command::new("docker-compose");
        c.env("DOCKER_HOST", &self.host)
            .env("DOCKER_CONFIG", &self.client_config)
            .env("DOCKER_BUILDKIT", "0")
            .env("COMPOSE_DOCKER_CLI_BUILD", "0");
        c
    }

    /// A `docker` command bound to this daemon, with the legacy builder (no BuildKit).
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(DOCKER);
        c.arg("-H")
            .arg(&self.host)
            .env("DOCKER_CONFIG", &self.client_config)
            .env("DOCKER_BUILDKIT", "0");
        c
    }

    /// Runs `docker ARGS` and panics (printing its output) on failure.
    pub fn docker(&self, args: &[&str]) -> Output {
        run(self.cmd().args(args))
    }

    pub fn docker_unchecked(&self, args: &[&str]) -> Output {
        run_unchecked(self.cmd().args(args))
    }

    /// `docker image inspect --format FORMAT REF`, trimmed.
    pub fn inspect(&self, reference: &str, format: &str) -> String {
        let out = self.docker(&["image", "inspect", "--format", format, reference]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Builds a small image as `image`, pushes it, removes it here and pulls it back, and
    /// checks the image pulled is the one pushed.
    pub fn push_and_pull_back(&self, image: &str) {
        let ctx = tempfile::tempdir().unwrap();
        super::images::docker_context(ctx.path(), 2);
        self.docker(&["build", "-q", "-t", image, &ctx.path().to_string_lossy()]);
        let id = self.inspect(image, "{{.Id}}");
        self.docker(&["push", image]);
        self.docker(&["rmi", image]);
        assert!(!self.has_image(image));
        self.docker(&["pull", image]);
        assert_eq!(self.inspect(image, "{{.Id}}"), id, "the pulled image is the pushed one");
    }

    /// True when the daemon has an image by this name or ID.
    pub fn has_image(&self, reference: &str) -> bool {
        self.docker_unchecked(&["image", "inspect", reference]).status.success()
    }

    /// The socket of the containerd that dockerd started under its exec root.
    pub fn containerd_sock(&self) -> PathBuf {
        self.exec_root.join("containerd/containerd.sock")
    }

    /// A `ctr` command bound to this daemon's containerd, in a namespace of its own.
    pub fn ctr(&self) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address").arg(self.containerd_sock()).args(["--namespace", "wharf-test"]);
        c
    }

    fn containerd_pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.exec_root.join("containerd/containerd.pid")).ok()?;
        text.trim().parse().ok()
    }

    pub fn stop(&mut self) {
        let containerd = self.containerd_pid();
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child, Duration::from_secs(20));
        }
        // dockerd stops its containerd on SIGTERM; after a SIGKILL it may be left behind.
        if let Some(pid) = containerd {
            if pid_alive(pid) && is_our_containerd(pid, &self.exec_root) {
                signal_pid(pid, libc::SIGKILL);
                wait_until(Duration::from_secs(5), || !pid_alive(pid));
            }
        }
        if let Some(b) = self.bridge.take() {
            b.remove();
        }
    }
}

/// A Linux bridge for one daemon, `198.19.N.1/26`, with `198.19.N.64/26` for the networks
/// the daemon creates (compose's).
struct Bridge {
    name: String,
    /// `198.19.N.0/24`: everything this daemon's networks use.
    range: String,
    pool: String,
}

impl Bridge {
    fn create() -> Bridge {
        let pid = std::process::id();
        for attempt in 0..64u32 {
            let n = (pid.wrapping_add(attempt.wrapping_mul(37))) % 200 + 20;
            let range = format!("198.19.{n}.0/24");
            if !interfaces_in(&range).is_empty() {
                continue;
            }
            let name = format!("whbr{}", (pid + attempt) % 100_000_000);
            let b = Bridge {
                name: name.clone(),
                range,
                pool: format!("198.19.{n}.64/26"),
            };
            let addr = format!("198.19.{n}.1/26");
            let ok = [
                vec!["link", "add", name.as_str(), "type", "bridge"],
                vec!["addr", "add", addr.as_str(), "dev", name.as_str()],
                vec!["link", "set", name.as_str(), "up"],
            ]
            .iter()
            .all(|args| run_unchecked(Command::new("ip").args(args)).status.success());
            if ok {
                return b;
            }
            b.remove();
        }
        panic!("could not create a bridge for dockerd in 198.19.0.0/16");
    }

    /// Deletes the bridge and any interface left with an address in the range (networks the
    /// daemon made and did not remove).
    fn remove(&self) {
        let mut names = interfaces_in(&self.range);
        names.push(self.name.clone());
        for name in names {
            let _ = Command::new("ip")
                .args(["link", "del", &name])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Interfaces with an IPv4 address in `range`.
fn interfaces_in(range: &str) -> Vec<String> {
    let out = run_unchecked(Command::new("ip").args(["-o", "-4", "addr", "show", "to", range]));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(|n| n.trim_end_matches(':').to_string())
        .collect()
}

/// Checks the process's command line names our exec root, so a recycled PID is never signalled.
fn is_our_containerd(pid: u32, exec_root: &Path) -> bool {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&cmdline).contains(&*exec_root.to_string_lossy())
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The manifest digest from `docker push` output (`v1: digest: sha256:... size: N`).
pub fn pushed_digest(output: &[u8]) -> String {
    let text = String::from_utf8_lossy(output);
    text.lines()
        .find_map(|l| l.split("digest: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no digest in docker push output:\n{text}"))
        .to_string()
}
