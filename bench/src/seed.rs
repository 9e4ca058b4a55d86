//! Writes test content straight into the registry:2 layout both servers read, so 10,000
//! repositories and 10,000 tags take a second instead of 20,000 pushes.

use rand::RngCore;
use sha2::Digest;
use std::path::Path;

pub const APP_REPO: &str = "bench/app";
pub const TAGS_REPO: &str = "bench/tags";
pub const CATALOG_PREFIX: &str = "cat/r";

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", sha2::Sha256::digest(bytes))
}

/// The seeded layout as objects: each file's path below the storage root and its bytes. The
/// filesystem section writes them as files, the object-storage section as objects.
pub type Objects = Vec<(String, Vec<u8>)>;

const V2: &str = "docker/registry/v2";

fn hex(d: &str) -> &str {
    &d["sha256:".len()..]
}

pub fn blob(out: &mut Objects, bytes: Vec<u8>) -> String {
    let d = sha256(&bytes);
    out.push((format!("{V2}/blobs/sha256/{}/{}/data", &hex(&d)[..2], hex(&d)), bytes));
    d
}

fn link(out: &mut Objects, dir: String, digest: &str) {
    out.push((format!("{dir}/link"), digest.as_bytes().to_vec()));
}

fn repo_dir(repo: &str) -> String {
    format!("{V2}/repositories/{repo}")
}

pub fn link_layer(out: &mut Objects, repo: &str, d: &str) {
    link(out, format!("{}/_layers/sha256/{}", repo_dir(repo), hex(d)), d);
}

pub fn link_revision(out: &mut Objects, repo: &str, d: &str) {
    link(out, format!("{}/_manifests/revisions/sha256/{}", repo_dir(repo), hex(d)), d);
}

pub fn link_tag(out: &mut Objects, repo: &str, tag: &str, d: &str) {
    let t = format!("{}/_manifests/tags/{tag}", repo_dir(repo));
    link(out, format!("{t}/current"), d);
    link(out, format!("{t}/index/sha256/{}", hex(d)), d);
}

/// How the catalog's repositories are made: registry:2 lists only those with `_manifests`;
/// wharf lists those with `_layers` too.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum CatalogRepos {
    /// A layer link each (what the filesystem section has always seeded).
    LayerLink,
    /// A manifest revision link each: repositories both registries list.
    ManifestLink,
}

/// Writes the seeded layout (see [`objects`]) under the filesystem root `root`.
pub fn seed(root: &Path, repos: usize, tags: usize) {
    write_objects(root, objects(repos, tags, CatalogRepos::LayerLink));
}

/// Writes objects (paths relative to the storage root) as files under `root`.
pub fn write_objects(root: &Path, objects: Objects) {
    for (path, bytes) in objects {
        let file = root.join(path);
        std::fs::create_dir_all(file.parent().expect("a file in a directory")).expect("seed dir");
        std::fs::write(&file, bytes).expect("seed file");
    }
}

/// One small image tagged `latest` in `bench/app`, the same image under `tags` tags in
/// `bench/tags`, and `repos` further repositories `cat/rNNNNN`.
pub fn objects(repos: usize, tags: usize, catalog: CatalogRepos) -> Objects {
    let mut out = Objects::new();
    let mut layer = vec![0u8; 2048];
    rand::thread_rng().fill_bytes(&mut layer);
    let layer_len = layer.len();
    let layer_d = blob(&mut out, layer);
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": { "type": "layers", "diff_ids": [layer_d] },
        "config": {}
    })
    .to_string();
    let config_d = blob(&mut out, config.clone().into_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_d, "size": config.len() },
        "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_d, "size": layer_len }]
    })
    .to_string();
    let manifest_d = blob(&mut out, manifest.into_bytes());
    for repo in [APP_REPO, TAGS_REPO] {
        link_layer(&mut out, repo, &layer_d);
        link_layer(&mut out, repo, &config_d);
        link_revision(&mut out, repo, &manifest_d);
    }
    link_tag(&mut out, APP_REPO, "latest", &manifest_d);
    for i in 0..tags {
        link_tag(&mut out, TAGS_REPO, &tag_name(i), &manifest_d);
    }
    for i in 0..repos {
        match catalog {
            CatalogRepos::LayerLink => link_layer(&mut out, &catalog_repo(i), &config_d),
            CatalogRepos::ManifestLink => link_revision(&mut out, &catalog_repo(i), &manifest_d),
        }
    }
    out
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
