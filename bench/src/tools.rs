//! Real clients: skopeo copying an OCI layout, and a private Docker daemon pushing and pulling
//! an image built FROM scratch (nothing is pulled from outside).

use rand::RngCore;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn random(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rand::thread_rng().fill_bytes(&mut v);
    v
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.stdin(Stdio::null()).output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

pub fn timed(cmd: &mut Command) -> Result<f64, String> {
    let t = Instant::now();
    run(cmd)?;
    Ok(t.elapsed().as_secs_f64())
}

/// An OCI image layout with `layers` random uncompressed layers of `layer_size` bytes, tagged
/// `latest`.
pub fn oci_layout(dir: &Path, layers: usize, layer_size: usize) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("layout dir");
    let put = |bytes: &[u8]| {
        let d = crate::seed::sha256(bytes);
        std::fs::write(blobs.join(&d["sha256:".len()..]), bytes).expect("layout blob");
        d
    };
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for _ in 0..layers {
        let l = random(layer_size);
        let d = put(&l);
        diff_ids.push(d.clone());
        descs.push(serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": l.len()}));
    }
    let config =
        serde_json::json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}, "config": {}})
            .to_string();
    let config_d = put(config.as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_d, "size": config.len()},
        "layers": descs
    })
    .to_string();
    let manifest_d = put(manifest.as_bytes());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_d, "size": manifest.len(),
                       "annotations": {"org.opencontainers.image.ref.name": "latest"}}]
    });
    std::fs::write(dir.join("index.json"), index.to_string()).expect("index.json");
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).expect("oci-layout");
}

/// `skopeo copy` of the layout to `addr/repo:tag`; returns seconds.
pub fn skopeo_copy(layout: &Path, home: &Path, addr: &str, repo: &str, tag: &str) -> Result<f64, String> {
    timed(
        Command::new("skopeo")
            .env("HOME", home)
            .args(["copy", "--quiet", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:latest", layout.display()))
            .arg(format!("docker://{addr}/{repo}:{tag}")),
    )
}

/// A Docker daemon of our own (vfs storage, no networking changes), stopped by PID on drop.
pub struct Dockerd {
    child: Option<Child>,
    dir: PathBuf,
    host: String,
}

impl Dockerd {
    pub fn start(dir: &Path) -> Result<Dockerd, String> {
        let data = dir.join("d");
        let exec = dir.join("x");
        let client = dir.join("c");
        for d in [&data, &exec, &client] {
            std::fs::create_dir_all(d).map_err(|e| e.to_string())?;
        }
        std::fs::write(dir.join("daemon.json"), "{}").map_err(|e| e.to_string())?;
        let sock = dir.join("docker.sock");
        let log = std::fs::File::create(dir.join("dockerd.log")).map_err(|e| e.to_string())?;
        let child = Command::new("dockerd")
            .arg("--config-file")
            .arg(dir.join("daemon.json"))
            .args(["--storage-driver=vfs", "--iptables=false", "--ip-masq=false", "--bridge=none"])
            .arg("--data-root")
            .arg(&data)
            .arg("--exec-root")
            .arg(&exec)
            .arg("--pidfile")
            .arg(data.join("docker.pid"))
            .arg("--host")
            .arg(format!("unix://{}", sock.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("dockerd: {e}"))?;
        let d = Dockerd {
            child: Some(child),
            dir: dir.to_path_buf(),
            host: format!("unix://{}", sock.display()),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while d.docker(&["version"]).is_err() {
            if Instant::now() > deadline {
                return Err("dockerd did not answer within 60s".into());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(d)
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new("/usr/bin/docker");
        c.arg("-H")
            .arg(&self.host)
            .env("DOCKER_CONFIG", self.dir.join("c"))
            .env("DOCKER_BUILDKIT", "0");
        c
    }

    pub fn docker(&self, args: &[&str]) -> Result<f64, String> {
        timed(self.cmd().args(args))
    }

    /// Builds `name` FROM scratch with `layers` layers of `layer_size` random bytes each.
    pub fn build(&self, ctx: &Path, name: &str, layers: usize, layer_size: usize) -> Result<(), String> {
        std::fs::create_dir_all(ctx).map_err(|e| e.to_string())?;
        let mut dockerfile = String::from("FROM scratch\n");
        for i in 0..layers {
            std::fs::write(ctx.join(format!("l{i}")), random(layer_size)).map_err(|e| e.to_string())?;
            dockerfile.push_str(&format!("COPY l{i} /l{i}\n"));
        }
        std::fs::write(ctx.join("Dockerfile"), dockerfile).map_err(|e| e.to_string())?;
        self.docker(&["build", "-q", "-t", name, &ctx.to_string_lossy()]).map(|_| ())
    }

    /// Removes image references, ignoring ones that are not there.
    pub fn rmi(&self, refs: &[&str]) {
        let _ = self.cmd().arg("rmi").arg("-f").args(refs).stdin(Stdio::null()).output();
    }

    fn containerd_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.dir.join("x/containerd/containerd.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let containerd = self.containerd_pid();
        if let Some(mut child) = self.child.take() {
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // dockerd normally stops its containerd; make sure ours (and only ours) is gone.
        if let Some(pid) = containerd {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&*self.dir.to_string_lossy()) {
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        // vfs layers of a stopped daemon are plain directories.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
