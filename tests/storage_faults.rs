//! Storage faults on a small tmpfs the test mounts as the storage root: a full disk in the middle
//! of an upload, a read-only remount, and directories the server may not enter. wharf runs as an
//! unprivileged user (root would bypass the permission bits). Each time the server must answer
//! with a 5xx and the spec's error JSON, stay up, keep everything committed before the fault,
//! show no partial blob, and work again once the fault is gone.

mod common;

use common::api::{self, Registry};
use common::{images, in_ci, is_root, Wharf};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The unprivileged user wharf runs as.
const NOBODY: u32 = 65534;
const FS_SIZE: &str = "24m";

/// A tmpfs mounted on a fresh temporary directory, unmounted on drop (also when a test panics).
struct SmallFs {
    mount: PathBuf,
    _tmp: tempfile::TempDir,
}

impl SmallFs {
    fn new() -> SmallFs {
        let tmp = tempfile::tempdir().unwrap();
        // The unprivileged server must be able to walk down to the mount point.
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let mount = tmp.path().join("fs");
        std::fs::create_dir(&mount).unwrap();
        images::run(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o"])
                .arg(format!("size={FS_SIZE},mode=0755,uid={NOBODY},gid={NOBODY}"))
                .arg("tmpfs")
                .arg(&mount),
        );
        SmallFs { mount, _tmp: tmp }
    }

    fn remount(&self, mode: &str) {
        images::run(Command::new("mount").arg("-o").arg(format!("remount,{mode}")).arg(&self.mount));
    }

    fn root(&self) -> PathBuf {
        self.mount.join("registry")
    }

    /// Fills the filesystem until the kernel refuses, then frees `leave` bytes.
    fn fill(&self, leave: u64) -> PathBuf {
        use std::io::Write;
        let path = self.mount.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let block = vec![0xA5u8; 64 * 1024];
        loop {
            match f.write(&block) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("filling {}: {e}", path.display()),
            }
        }
        let full = f.metadata().unwrap().len();
        f.set_len(full.saturating_sub(leave)).unwrap();
        path
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("mount").arg("-o").arg("remount,rw").arg(&self.mount).status();
        let ok = Command::new("umount")
            .arg(&self.mount)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            // Still busy (a server that has not exited yet): detach it so nothing stays mounted.
            let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
        }
    }
}

/// None (after printing SKIP) outside CI when not root; mounting needs root, so CI runs it.
fn small_fs() -> Option<SmallFs> {
    if !is_root() {
        assert!(!in_ci(), "storage fault tests need root (mount, setpriv) and CI runs as root");
        eprintln!("SKIP: storage fault tests need root to mount a tmpfs");
        return None;
    }
    for tool in ["mount", "umount", "setpriv"] {
        if !common::require_tool(tool) {
            return None;
        }
    }
    Some(SmallFs::new())
}

/// `wharf serve` as the unprivileged user on the tmpfs root.
fn start_unprivileged(fs: &SmallFs) -> Wharf {
    let uid = format!("--reuid={NOBODY}");
    let gid = format!("--regid={NOBODY}");
    let prefix = ["setpriv", uid.as_str(), gid.as_str(), "--clear-groups"];
    let w = Wharf::launch(
        &prefix,
        "127.0.0.1:0",
        &fs.root(),
        &[],
        &[("REGISTRY_STORAGE_DELETE_ENABLED", "true"), ("WHARF_LOG", "wharf=warn")],
    );
    let ready = images::wait_until(Duration::from_secs(20), || std::net::TcpStream::connect(&w.addr).is_ok());
    assert!(ready, "wharf never accepted connections");
    w
}

/// A 5xx with the spec's error body, one of `codes`.
fn expect_server_error(resp: &api::Resp, codes: &[&str]) {
    assert!((500..600).contains(&resp.status), "want a 5xx: {}", resp.show());
    resp.expect_error(resp.status, codes);
}

/// The server still answers, and an image pushed before the fault is whole.
async fn assert_intact(reg: &Registry, pushed: &api::Pushed, repo: &str, tag: &str) {
    reg.get("/v2/").await.expect(200);
    let m = reg.get_manifest(repo, tag).await;
    m.expect(200);
    assert_eq!(m.body, pushed.manifest, "manifest {repo}:{tag} changed");
    for (desc, bytes) in [(&pushed.config, &pushed.config_bytes), (&pushed.layer, &pushed.layer_bytes)] {
        let b = reg.get(&format!("/v2/{repo}/blobs/{}", desc.digest)).await;
        b.expect(200);
        assert_eq!(&b.body, bytes, "blob {} changed", desc.digest);
    }
}

/// No blob named `digest` exists, on disk or through the API.
async fn assert_no_blob(reg: &Registry, fs: &SmallFs, repo: &str, digest: &str) {
    reg.head(&format!("/v2/{repo}/blobs/{digest}")).await.expect(404);
    let hex = api::hex_of(digest);
    let dir = fs.root().join("docker/registry/v2/blobs/sha256").join(&hex[..2]).join(hex);
    assert!(!dir.exists(), "a blob directory for {digest} is visible: {}", dir.display());
}

/// Every blob file under the root hashes to its name.
fn assert_blob_files_whole(root: &Path) {
    for path in api::walk(&root.join("docker/registry/v2/blobs")) {
        if path.file_name().is_some_and(|n| n == "data") {
            let hex = path.parent().unwrap().file_name().unwrap().to_string_lossy().into_owned();
            let bytes = std::fs::read(&path).unwrap();
            assert_eq!(api::sha256(&bytes), format!("sha256:{hex}"), "{} is not whole", path.display());
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn full_disk_mid_upload_is_a_503_and_loses_nothing() {
    let Some(fs) = small_fs() else { return };
    let w = start_unprivileged(&fs);
    let reg = Registry::new(&w);
    let pushed = reg.push_image("full/app", "before").await;

    // A session with a first chunk in it, then the disk fills up.
    let first = api::random_bytes(100_000);
    let rest = api::random_bytes(1 << 20);
    let whole: Vec<u8> = first.iter().chain(rest.iter()).copied().collect();
    let digest = api::sha256(&whole);
    let started = reg.start_upload("full/app").await;
    let chunk = reg.patch(started.location(), &first, Some((0, first.len() - 1))).await;
    chunk.expect(202);
    let location = chunk.location().to_string();
    let filler = fs.fill(128 * 1024);

    // The next chunk cannot fit: it fails partway through writing. (It is kept small enough
    // for loopback socket buffers to hold whole, so the client reads the early answer instead of
    // a broken pipe.)
    let failed = reg.patch(&location, &rest, Some((first.len(), whole.len() - 1))).await;
    expect_server_error(&failed, &["UNAVAILABLE"]);
    // The server closes a connection whose request body it stopped reading; a fresh client
    // keeps a pooled connection from racing that close.
    let reg = Registry::new(&w);
    // The session is rolled back to what it held before, ready for a retry.
    let status = reg.get(&location).await;
    status.expect(204);
    api::assert_upload_range(&status, first.len());
    // A whole blob sent in one request fails the same way, and leaves nothing behind.
    let mono = api::random_bytes(1 << 20);
    let url = reg.url_with("/v2/full/app/blobs/uploads/", &[("digest", &api::sha256(&mono))]);
    let resp = reg
        .call(
            reqwest::Method::POST,
            url,
            &[("Content-Type", "application/octet-stream")],
            mono.clone(),
        )
        .await;
    expect_server_error(&resp, &["UNAVAILABLE"]);
    let reg = Registry::new(&w);
    assert_no_blob(&reg, &fs, "full/app", &api::sha256(&mono)).await;
    assert_no_blob(&reg, &fs, "full/app", &digest).await;
    assert_intact(&reg, &pushed, "full/app", "before").await;

    // Space comes back: the same session resumes and commits.
    std::fs::remove_file(filler).unwrap();
    let resumed = reg.patch(&location, &rest, Some((first.len(), whole.len() - 1))).await;
    resumed.expect(202);
    reg.finish_upload(resumed.location(), &digest, &[]).await.expect(201);
    let got = reg.get(&format!("/v2/full/app/blobs/{digest}")).await;
    got.expect(200);
    assert!(got.body == whole, "the resumed blob differs from what was sent");
    reg.push_image("full/app", "after").await;
    assert_intact(&reg, &pushed, "full/app", "before").await;
    assert_blob_files_whole(&fs.root());
}

#[tokio::test(flavor = "multi_thread")]
async fn full_disk_refuses_manifests_and_new_sessions_cleanly() {
    let Some(fs) = small_fs() else { return };
    let w = start_unprivileged(&fs);
    let reg = Registry::new(&w);
    let pushed = reg.push_image("tight/app", "v1").await;
    // Blobs for a second image are in before the disk fills; its manifest comes after.
    let config = api::config_blob();
    let layer = api::random_bytes(3000);
    reg.push_blob("tight/app", &config).await;
    reg.push_blob("tight/app", &layer).await;
    let doc = api::image_manifest(
        api::OCI_MANIFEST,
        &api::Desc::of(api::OCI_CONFIG, &config),
        &[api::Desc::of(api::OCI_LAYER, &layer)],
    );
    let manifest = api::to_bytes(&doc);
    let filler = fs.fill(0);

    let resp = reg.put_manifest("tight/app", "v2", api::OCI_MANIFEST, &manifest).await;
    expect_server_error(&resp, &["UNAVAILABLE"]);
    let reg = Registry::new(&w);
    let resp = reg.get_manifest("tight/app", "v2").await;
    resp.expect_error(404, &["MANIFEST_UNKNOWN"]);
    let url = reg.url("/v2/tight/other/blobs/uploads/");
    let resp = reg.call(reqwest::Method::POST, url, &[("Content-Length", "0")], vec![]).await;
    assert!(
        resp.status == 202 || (500..600).contains(&resp.status),
        "starting an upload on a full disk: {}",
        resp.show()
    );
    if resp.status != 202 {
        expect_server_error(&resp, &["UNAVAILABLE"]);
    }
    assert_intact(&reg, &pushed, "tight/app", "v1").await;

    std::fs::remove_file(filler).unwrap();
    reg.push_manifest("tight/app", Some("v2"), api::OCI_MANIFEST, &manifest).await;
    reg.get_manifest("tight/app", "v2").await.expect(200);
    assert_blob_files_whole(&fs.root());
}

#[tokio::test(flavor = "multi_thread")]
async fn read_only_remount_is_a_503_reads_go_on_and_rw_recovers() {
    let Some(fs) = small_fs() else { return };
    let w = start_unprivileged(&fs);
    let reg = Registry::new(&w);
    let pushed = reg.push_image("ro/app", "v1").await;
    let started = reg.start_upload("ro/app").await;
    let location = started.location().to_string();

    fs.remount("ro");
    let blob = api::random_bytes(50_000);
    let digest = api::sha256(&blob);
    let resp = reg.patch(&location, &blob, None).await;
    expect_server_error(&resp, &["UNAVAILABLE"]);
    let reg = Registry::new(&w);
    let url = reg.url_with("/v2/ro/app/blobs/uploads/", &[("digest", &digest)]);
    let resp = reg
        .call(
            reqwest::Method::POST,
            url,
            &[("Content-Type", "application/octet-stream")],
            blob.clone(),
        )
        .await;
    expect_server_error(&resp, &["UNAVAILABLE"]);
    let reg = Registry::new(&w);
    let url = reg.url("/v2/ro/app/blobs/uploads/");
    let resp = reg.call(reqwest::Method::POST, url, &[("Content-Length", "0")], vec![]).await;
    expect_server_error(&resp, &["UNAVAILABLE"]);
    let reg = Registry::new(&w);
    let resp = reg.put_manifest("ro/app", "v2", api::OCI_MANIFEST, &pushed.manifest).await;
    expect_server_error(&resp, &["UNAVAILABLE"]);
    let reg = Registry::new(&w);
    let resp = reg.delete(&format!("/v2/ro/app/manifests/{}", pushed.digest)).await;
    expect_server_error(&resp, &["UNAVAILABLE"]);
    // Pulls keep working from a read-only disk.
    assert_intact(&reg, &pushed, "ro/app", "v1").await;
    assert_no_blob(&reg, &fs, "ro/app", &digest).await;

    fs.remount("rw");
    let resp = reg.patch(&location, &blob, None).await;
    resp.expect(202);
    reg.finish_upload(resp.location(), &digest, &[]).await.expect(201);
    reg.push_manifest("ro/app", Some("v2"), api::OCI_MANIFEST, &pushed.manifest).await;
    reg.push_image("ro/app", "v3").await;
    assert_intact(&reg, &pushed, "ro/app", "v1").await;
    assert_blob_files_whole(&fs.root());
}

#[tokio::test(flavor = "multi_thread")]
async fn directories_the_server_may_not_enter_are_a_500_and_recover() {
    let Some(fs) = small_fs() else { return };
    let w = start_unprivileged(&fs);
    let reg = Registry::new(&w);
    let pushed = reg.push_image("perm/app", "v1").await;
    let v2 = fs.root().join("docker/registry/v2");
    let blobs = v2.join("blobs");
    let repo_dir = v2.join("repositories/perm/app");
    let set_mode = |p: &Path, mode: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();

    // The blob store is closed to the server: new blobs cannot be committed, stored ones not read.
    set_mode(&blobs, 0o000);
    let blob = api::random_bytes(20_000);
    let digest = api::sha256(&blob);
    let started = reg.start_upload("perm/app").await;
    let resp = reg.finish_upload(started.location(), &digest, &blob).await;
    expect_server_error(&resp, &["UNKNOWN"]);
    let reg = Registry::new(&w);
    let resp = reg.get(&format!("/v2/perm/app/blobs/{}", pushed.layer.digest)).await;
    expect_server_error(&resp, &["UNKNOWN"]);
    // The session is still there to retry once the directory opens again.
    reg.get(started.location()).await.expect(204);
    set_mode(&blobs, 0o755);
    assert_no_blob(&reg, &fs, "perm/app", &digest).await;
    reg.finish_upload(started.location(), &digest, &[]).await.expect(201);
    assert_eq!(reg.get(&format!("/v2/perm/app/blobs/{digest}")).await.body, blob);

    // The repository's directory is closed: its manifests and tags cannot be written or read.
    set_mode(&repo_dir, 0o000);
    let resp = reg.put_manifest("perm/app", "v2", api::OCI_MANIFEST, &pushed.manifest).await;
    expect_server_error(&resp, &["UNKNOWN"]);
    // A read may still be served from memory (tag index, manifest cache); if it is not, it is a
    // clean 5xx, never wrong bytes.
    let resp = reg.get_manifest("perm/app", "v1").await;
    if resp.status == 200 {
        assert_eq!(resp.body, pushed.manifest, "manifest served from a closed repository differs");
    } else {
        expect_server_error(&resp, &["UNKNOWN"]);
    }
    reg.get("/v2/").await.expect(200);
    set_mode(&repo_dir, 0o755);
    reg.push_manifest("perm/app", Some("v2"), api::OCI_MANIFEST, &pushed.manifest).await;
    assert_intact(&reg, &pushed, "perm/app", "v1").await;
    assert_intact(&reg, &pushed, "perm/app", "v2").await;
    assert_blob_files_whole(&fs.root());
}
