//! A containerd private to one test, and the CRI pull kubelet makes through it.
//!
//! The containerd has its own root, state and socket, and runs in a mount namespace of its own
//! where test directories are bind-mounted over the host's (`/etc/containerd`, and whatever else
//! the test names): it reads the paths a node's containerd reads while the host's files stay
//! untouched. `cri_pull` is CRI `ImageService/PullImage` with `AuthConfig{username, password}`
//! (what an imagePullSecret becomes), sent by a gRPC client built from the CRI API's proto
//! (tests/fixtures/cri) with grpcio-tools.
#![allow(dead_code)]

use super::images::{run_unchecked, short_tempdir, signal_pid, wait_until};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// /etc/containerd/config.toml as Debian's containerd package installs it.
pub const DEBIAN_CONFIG: &str = include_str!("../fixtures/containerd/debian-default.toml");

/// Whether grpcio-tools is importable: false (after SKIP) outside CI; panics in CI.
pub fn grpc_tools_present() -> bool {
    if !super::require_tool("python3") {
        return false;
    }
    let grpc = Command::new("python3").args(["-c", "import grpc, grpc_tools.protoc"]).output();
    if !grpc.is_ok_and(|o| o.status.success()) {
        if super::in_ci() {
            panic!("grpcio-tools is required in CI (scripts/test.sh installs it)");
        }
        eprintln!("SKIP: grpcio-tools not installed (python3 -m pip install grpcio-tools)");
        return false;
    }
    true
}

/// Bind mounts made in a private mount namespace before a program is exec'd: the program sees
/// each source directory (or file) at its target path, and nothing else changes on the host.
#[derive(Clone, Debug, Default)]
pub struct MountView {
    binds: Vec<(PathBuf, PathBuf)>,
}

impl MountView {
    pub fn new() -> MountView {
        MountView::default()
    }

    /// Shows `source` at `target` (both must exist, of the same kind).
    pub fn bind(mut self, source: impl Into<PathBuf>, target: impl Into<PathBuf>) -> MountView {
        self.binds.push((source.into(), target.into()));
        self
    }

    /// `unshare ... sh -c ... SRC DST ... --`: prepend to a program and its arguments. sh execs
    /// the program, so the PID of the spawned process is the program's.
    pub fn prefix(&self) -> Vec<String> {
        let mut args: Vec<String> = ["unshare", "--mount", "--propagation", "private", "sh", "-c"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.push("while [ \"$1\" != -- ]; do mount --bind \"$1\" \"$2\" || exit 111; shift 2; done; shift; exec \"$@\"".into());
        args.push("mount-view".into());
        for (source, target) in &self.binds {
            args.push(source.display().to_string());
            args.push(target.display().to_string());
        }
        args.push("--".into());
        args
    }

    /// `program` run in this view.
    pub fn command(&self, program: &str) -> Command {
        let prefix = self.prefix();
        let mut c = Command::new(&prefix[0]);
        c.args(&prefix[1..]).arg(program);
        c
    }
}

/// A containerd in a mount view. Stopped by PID on drop.
pub struct Containerd {
    child: Option<Child>,
    view: MountView,
    dir: tempfile::TempDir,
}

impl Containerd {
    /// A containerd reading `root`'s etc/containerd as /etc/containerd.
    pub fn start(root: &Path) -> Containerd {
        Self::start_in(MountView::new().bind(root.join("etc/containerd"), "/etc/containerd"))
    }

    /// A containerd in `view` (which shows it its /etc/containerd).
    pub fn start_in(view: MountView) -> Containerd {
        let mut c = Containerd {
            child: None,
            view,
            dir: short_tempdir("wcri"),
        };
        c.launch();
        c
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("run/c.sock")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    fn launch(&mut self) {
        let d = self.dir.path();
        let _ = std::fs::remove_file(self.socket());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("containerd.log"))
            .unwrap();
        let child = self
            .view
            .command("containerd")
            .args(["--config", "/etc/containerd/config.toml", "--root"])
            .arg(d.join("lib"))
            .arg("--state")
            .arg(d.join("run"))
            .arg("--address")
            .arg(self.socket())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start containerd");
        self.child = Some(child);
        let sock = self.socket();
        assert!(
            wait_until(Duration::from_secs(60), || sock.exists()
                && self.log().contains("containerd successfully booted")),
            "containerd did not start within 60s:\n{}",
            self.log()
        );
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal_pid(child.id(), libc::SIGTERM);
            let exited = wait_until(Duration::from_secs(20), || matches!(child.try_wait(), Ok(Some(_))));
            if !exited {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }

    /// What `systemctl restart containerd` does on a node: stop it, start it again.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// CRI PullImage with a pull secret's user and password.
    pub fn cri_pull(&self, image: &str, user: &str, password: &str) -> Output {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cri/cri_pull.py");
        run_unchecked(
            Command::new("timeout")
                .args(["150", "python3"])
                .arg(script)
                .arg(self.socket())
                .arg(image)
                .arg(user)
                .env("CRI_PASSWORD", password),
        )
    }

    /// A `ctr` command bound to this containerd, in a namespace of its own.
    pub fn ctr(&self) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address").arg(self.socket()).args(["--namespace", "wharf-test"]);
        c
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        self.stop();
    }
}
