//! CNCF distribution 2.8.2 (Debian's `docker-registry`), the registry wharf must be a drop-in
//! for: started on a free loopback port over a given storage root, stopped by PID on drop. Also
//! checks of the registry:2 on-disk layout both servers must write.
#![allow(dead_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::images::{stop_child, wait_until};

pub const DISTRIBUTION_BIN: &str = "docker-registry";

pub struct Distribution {
    child: Option<Child>,
    _dir: tempfile::TempDir,
    log: PathBuf,
    /// `127.0.0.1:PORT`
    pub addr: String,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    pub root: PathBuf,
}

impl Distribution {
    /// True when the binary is installed; prints SKIP outside CI, panics in CI otherwise.
    pub fn available() -> bool {
        super::require_tool(DISTRIBUTION_BIN)
    }

    /// Serves `root` (the directory holding `docker/registry/v2`) with deletes enabled.
    pub fn start(root: &Path) -> Distribution {
        Self::start_with(root, "")
    }

    /// Serves `root` with `extra` (top-level YAML sections, e.g. `auth:`) added to the configuration.
    pub fn start_with(root: &Path, extra: &str) -> Distribution {
        Self::start_on(root, &filesystem_storage(root), extra, &[])
    }

    /// Serves `storage` (a whole `storage:` section, say S3's) with `extra` added, the
    /// environment changed by `env_remove`.
    pub fn start_on_storage(storage: &str, extra: &str, env_remove: &[&str]) -> Distribution {
        Self::start_on(Path::new(""), storage, extra, env_remove)
    }

    fn start_on(root: &Path, storage: &str, extra: &str, env_remove: &[&str]) -> Distribution {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = super::free_port();
        let addr = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        std::fs::write(&config, config_yaml(storage, &addr) + extra).expect("write config.yml");
        let log = dir.path().join("registry.log");
        let out = File::create(&log).expect("registry log");
        let mut cmd = Command::new(DISTRIBUTION_BIN);
        cmd.arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        // REGISTRY_* from the environment of the test runner would override the file.
        for (k, _) in std::env::vars() {
            if k.starts_with("REGISTRY_") {
                cmd.env_remove(k);
            }
        }
        for k in env_remove {
            cmd.env_remove(k);
        }
        let child = cmd.spawn().expect("spawn docker-registry");
        let d = Distribution {
            child: Some(child),
            _dir: dir,
            log,
            url: format!("http://{addr}"),
            addr,
            root: root.to_path_buf(),
        };
        d.wait_ready();
        d
    }

    fn wait_ready(&self) {
        let ok = wait_until(Duration::from_secs(20), || std::net::TcpStream::connect(&self.addr).is_ok());
        if !ok {
            panic!(
                "docker-registry did not listen on {} within 20s; log:\n{}",
                self.addr,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child, Duration::from_secs(10));
        }
    }
}

impl Drop for Distribution {
    fn drop(&mut self) {
        self.stop();
    }
}

fn filesystem_storage(root: &Path) -> String {
    format!(
        "storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n",
        root.display()
    )
}

fn config_yaml(storage: &str, addr: &str) -> String {
    format!(
        "version: 0.1\n\
         log:\n  level: info\n  accesslog:\n    disabled: true\n\
         {storage}\
         http:\n  addr: {addr}\n  secret: wharf-compat-test-secret\n"
    )
}

// ---------------------------------------------------------------------------------------------
// The registry:2 layout

/// `<root>/docker/registry/v2`
pub fn v2(root: &Path) -> PathBuf {
    root.join("docker/registry/v2")
}

fn hex(digest: &str) -> &str {
    digest.split_once(':').map(|(_, h)| h).unwrap_or(digest)
}

fn alg(digest: &str) -> &str {
    digest.split_once(':').map(|(a, _)| a).unwrap_or("sha256")
}

/// Asserts a link file holds exactly the digest, with no trailing newline.
pub fn assert_link(path: &Path, digest: &str) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("missing link {}: {e}", path.display()));
    assert_eq!(
        bytes,
        digest.as_bytes(),
        "link {} must hold exactly `{digest}` (no newline)",
        path.display()
    );
}

/// Asserts the blob's data file exists under `blobs/<alg>/<2 hex>/<hex>/data` with these bytes.
pub fn assert_blob_data(root: &Path, digest: &str, bytes: &[u8]) {
    let h = hex(digest);
    let path = v2(root).join("blobs").join(alg(digest)).join(&h[..2]).join(h).join("data");
    let data = std::fs::read(&path).unwrap_or_else(|e| panic!("missing {}: {e}", path.display()));
    assert!(data == bytes, "{} holds different bytes", path.display());
}

pub fn repo_dir(root: &Path, repo: &str) -> PathBuf {
    v2(root).join("repositories").join(repo)
}

/// Asserts `repo` links `digest` as a layer/config blob (`_layers/<alg>/<hex>/link`).
pub fn assert_layer_link(root: &Path, repo: &str, digest: &str) {
    let p = repo_dir(root, repo)
        .join("_layers")
        .join(alg(digest))
        .join(hex(digest))
        .join("link");
    assert_link(&p, digest);
}

/// Asserts `repo` has the manifest revision link for `digest`.
pub fn assert_revision_link(root: &Path, repo: &str, digest: &str) {
    let p = repo_dir(root, repo)
        .join("_manifests/revisions")
        .join(alg(digest))
        .join(hex(digest))
        .join("link");
    assert_link(&p, digest);
}

/// Asserts `tag` in `repo` currently points at `digest` and its index records that digest.
pub fn assert_tag_links(root: &Path, repo: &str, tag: &str, digest: &str) {
    let t = repo_dir(root, repo).join("_manifests/tags").join(tag);
    assert_link(&t.join("current/link"), digest);
    assert_link(&t.join("index").join(alg(digest)).join(hex(digest)).join("link"), digest);
}

/// Asserts distribution's rule that manifests are not linked as layers.
pub fn assert_no_layer_link(root: &Path, repo: &str, digest: &str) {
    let p = repo_dir(root, repo).join("_layers").join(alg(digest)).join(hex(digest));
    assert!(!p.exists(), "{} should not exist: manifests get no _layers link", p.display());
}
