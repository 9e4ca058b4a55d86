//! Writes test content straight into the registry:2 layout both servers read, so 10,000
//! repositories and 10,000 tags take a second instead of 20,000 pushes.

use rand::RngCore;
use sha2::Digest;
use std::path::{Path, PathBuf};

pub const APP_REPO: &str = "bench/app";
pub const TAGS_REPO: &str = "bench/tags";
pub const CATALOG_PREFIX: &str = "cat/r";

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", sha2::Sha256::digest(bytes))
}

fn v2(root: &Path) -> PathBuf {
    root.join("docker/registry/v2")
}

fn hex(d: &str) -> &str {
    &d["sha256:".len()..]
}

pub fn write_blob(root: &Path, bytes: &[u8]) -> String {
    let d = sha256(bytes);
    let dir = v2(root).join("blobs/sha256").join(&hex(&d)[..2]).join(hex(&d));
    std::fs::create_dir_all(&dir).expect("blob dir");
    std::fs::write(dir.join("data"), bytes).expect("blob data");
    d
}

fn write_link(dir: PathBuf, digest: &str) {
    std::fs::create_dir_all(&dir).expect("link dir");
    std::fs::write(dir.join("link"), digest).expect("link");
}

fn repo_dir(root: &Path, repo: &str) -> PathBuf {
    v2(root).join("repositories").join(repo)
}

pub fn link_layer(root: &Path, repo: &str, d: &str) {
    write_link(repo_dir(root, repo).join("_layers/sha256").join(hex(d)), d);
}

pub fn link_revision(root: &Path, repo: &str, d: &str) {
    write_link(repo_dir(root, repo).join("_manifests/revisions/sha256").join(hex(d)), d);
}

pub fn link_tag(root: &Path, repo: &str, tag: &str, d: &str) {
    let t = repo_dir(root, repo).join("_manifests/tags").join(tag);
    write_link(t.join("current"), d);
    write_link(t.join("index/sha256").join(hex(d)), d);
}

/// One small image tagged `latest` in `bench/app`, the same image under `tags` tags in
/// `bench/tags`, and `repos` further repositories `cat/rNNNNN`.
pub fn seed(root: &Path, repos: usize, tags: usize) {
    let mut layer = vec![0u8; 2048];
    rand::thread_rng().fill_bytes(&mut layer);
    let layer_d = write_blob(root, &layer);
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": { "type": "layers", "diff_ids": [layer_d] },
        "config": {}
    })
    .to_string();
    let config_d = write_blob(root, config.as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_d, "size": config.len() },
        "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_d, "size": layer.len() }]
    })
    .to_string();
    let manifest_d = write_blob(root, manifest.as_bytes());
    for repo in [APP_REPO, TAGS_REPO] {
        link_layer(root, repo, &layer_d);
        link_layer(root, repo, &config_d);
        link_revision(root, repo, &manifest_d);
    }
    link_tag(root, APP_REPO, "latest", &manifest_d);
    for i in 0..tags {
        link_tag(root, TAGS_REPO, &tag_name(i), &manifest_d);
    }
    for i in 0..repos {
        link_layer(root, &catalog_repo(i), &config_d);
    }
}

pub fn tag_name(i: usize) -> String {
    format!("t{i:05}")
}

pub fn catalog_repo(i: usize) -> String {
    format!("{CATALOG_PREFIX}{i:05}")
}

/// The bcrypt htpasswd file both servers check, at the cost `htpasswd -B` uses by default.
pub fn htpasswd(path: &Path, user: &str, password: &str) {
    let hash = bcrypt::hash_with_result(password, 5)
        .expect("bcrypt")
        .format_for_version(bcrypt::Version::TwoY);
    std::fs::write(path, format!("{user}:{hash}\n")).expect("write htpasswd");
}

/// Replaces `to` with a copy of the seeded root `from`, for a second server: two wharfs never
/// share a root.
pub fn copy_root(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("run cp");
    assert!(status.success(), "cp -a {} {}: {status}", from.display(), to.display());
}
