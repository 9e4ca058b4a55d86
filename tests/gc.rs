//! Garbage collection against the real binary: exactly the unreferenced bytes go, what is
//! tagged keeps pulling, an index keeps its children while tagged, young content survives the
//! delay, and `wharf garbage-collect` works through a running server and on a stopped store.

mod common;

use common::api::*;
use common::Wharf;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A storage root with its configuration file: deletes on, the given GC delay.
struct Setup {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    config: PathBuf,
}

fn setup(delay: &str) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data");
    let config = tmp.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  maintenance:\n    gc:\n      delay: {delay}\n\
             http:\n  addr: 127.0.0.1:0\n  debug:\n    addr: 127.0.0.1:{}\n    prometheus:\n      enabled: true\n",
            root.display(),
            common::free_port()
        ),
    )
    .unwrap();
    Setup { _tmp: tmp, root, config }
}

fn serve(s: &Setup) -> Wharf {
    let config = s.config.display().to_string();
    let mut w = Wharf::launch_args(&[], &[&config], &[]);
    w.root = s.root.clone();
    w
}

/// `wharf garbage-collect <flags> CONFIG`, its stdout; asserts success.
fn garbage_collect(s: &Setup, flags: &[&str]) -> String {
    let out = Command::new(common::wharf_bin())
        .arg("garbage-collect")
        .args(flags)
        .arg(&s.config)
        .env_remove("REGISTRY_CONFIGURATION_PATH")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "garbage-collect failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{stdout}");
    stdout
}

/// Bytes of every blob's data file under the root.
fn blob_bytes(root: &Path) -> u64 {
    walk(&root.join("docker/registry/v2/blobs"))
        .iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "data"))
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum()
}

fn blob_exists(root: &Path, digest: &str) -> bool {
    let hex = hex_of(digest);
    root.join(format!("docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2]))
        .is_file()
}

/// Pushes an image of `layers` (config first) under `tag`; returns the manifest bytes.
async fn push(reg: &Registry, repo: &str, tag: Option<&str>, config: &[u8], layers: &[&[u8]]) -> Vec<u8> {
    reg.push_blob(repo, config).await;
    let mut descs = Vec::new();
    for l in layers {
        reg.push_blob(repo, l).await;
        descs.push(Desc::of(OCI_LAYER, l));
    }
    let manifest = to_bytes(&image_manifest(OCI_MANIFEST, &Desc::of(OCI_CONFIG, config), &descs));
    reg.push_manifest(repo, tag, OCI_MANIFEST, &manifest).await;
    manifest
}

/// Pulls a manifest and every blob it names (children of an index too), checking digests.
async fn pull_all(reg: &Registry, repo: &str, reference: &str) {
    let m = reg.get_manifest(repo, reference).await;
    m.expect(200);
    let doc: Value = serde_json::from_slice(&m.body).unwrap();
    for child in doc["manifests"].as_array().into_iter().flatten() {
        Box::pin(pull_all(reg, repo, child["digest"].as_str().unwrap())).await;
    }
    let mut blobs: Vec<&Value> = doc["layers"].as_array().into_iter().flatten().collect();
    blobs.extend(doc.get("config"));
    for b in blobs {
        let d = b["digest"].as_str().unwrap();
        let r = reg.get(&format!("/v2/{repo}/blobs/{d}")).await;
        r.expect(200);
        assert_eq!(sha256(&r.body), d);
    }
}

fn report(out: &str, line: &str) -> usize {
    out.lines().filter(|l| l.contains(line)).count()
}

#[tokio::test]
async fn shared_layers_stay_and_exactly_the_unique_bytes_of_a_deleted_image_go() {
    let s = setup("0s");
    let w = serve(&s);
    let reg = Registry::new(&w);
    let (shared, unique_a, unique_b) = (random_bytes(40_000), random_bytes(30_000), random_bytes(20_000));
    let (config_a, config_b) = (
        br#"{"architecture":"amd64","os":"linux","a":1}"#.to_vec(),
        br#"{"architecture":"amd64","os":"linux","b":1}"#.to_vec(),
    );
    let manifest_a = push(&reg, "app", Some("a"), &config_a, &[&shared, &unique_a]).await;
    push(&reg, "app", Some("b"), &config_b, &[&shared, &unique_b]).await;
    let before = blob_bytes(&s.root);
    reg.delete(&format!("/v2/app/manifests/{}", sha256(&manifest_a))).await.expect(202);

    let out = garbage_collect(&s, &[]);
    assert!(out.contains("by the running server"), "{out}");
    let freed = (manifest_a.len() + config_a.len() + unique_a.len()) as u64;
    assert_eq!(
        before - blob_bytes(&s.root),
        freed,
        "exactly image a's own manifest, config and layer"
    );
    assert!(out.contains(&format!("freed {freed} bytes")), "{out}");
    for (d, gone) in [
        (sha256(&unique_a), true),
        (sha256(&config_a), true),
        (sha256(&manifest_a), true),
        (sha256(&shared), false),
        (sha256(&unique_b), false),
    ] {
        assert_eq!(blob_exists(&s.root, &d), !gone, "{d}");
    }
    pull_all(&reg, "app", "b").await;
    // No "blob exists" for what went (distribution #4569): the caches follow the sweep.
    reg.head(&format!("/v2/app/blobs/{}", sha256(&unique_a))).await.expect(404);
    assert!(!s
        .root
        .join(format!(
            "docker/registry/v2/repositories/app/_layers/sha256/{}",
            hex_of(&sha256(&unique_a))
        ))
        .exists());
    let status = reg.get("/v2/_wharf/gc").await;
    status.expect(200);
    assert_eq!(status.json()["last"]["bytes_freed"], freed);
    let config = std::fs::read_to_string(&s.config).unwrap();
    let debug = config.split("debug:\n    addr: ").nth(1).unwrap().lines().next().unwrap();
    let metrics = reqwest::get(format!("http://{debug}/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains(&format!("wharf_gc_freed_bytes_total {freed}")), "{metrics}");
    assert!(metrics.contains("wharf_gc_runs_total 1"), "{metrics}");
}

#[tokio::test]
async fn a_tagged_index_keeps_its_children_with_delete_untagged_and_they_go_once_it_is_untagged() {
    let s = setup("0s");
    let w = serve(&s);
    let reg = Registry::new(&w);
    let mut children = Vec::new();
    for arch in ["amd64", "arm64"] {
        let config = format!(r#"{{"architecture":"{arch}","os":"linux"}}"#).into_bytes();
        let m = push(&reg, "multi", None, &config, &[&random_bytes(10_000)]).await;
        children.push(Desc::of(OCI_MANIFEST, &m));
    }
    let index = to_bytes(&index_manifest(OCI_INDEX, &children));
    reg.push_manifest("multi", Some("latest"), OCI_INDEX, &index).await;
    // An untagged image beside it goes; the index's untagged children do not.
    let loose = push(&reg, "multi", None, br#"{"loose":true}"#, &[&random_bytes(5_000)]).await;

    let out = garbage_collect(&s, &["--delete-untagged"]);
    assert_eq!(report(&out, "manifest eligible for deletion"), 1, "{out}");
    assert!(out.contains(&sha256(&loose)), "{out}");
    pull_all(&reg, "multi", "latest").await;
    for c in &children {
        reg.get_manifest("multi", &c.digest).await.expect(200);
    }

    reg.delete("/v2/multi/manifests/latest").await.expect(202);
    let before = blob_bytes(&s.root);
    let out = garbage_collect(&s, &["-m"]);
    assert_eq!(
        report(&out, "manifest eligible for deletion"),
        3,
        "the index and both children: {out}"
    );
    for c in &children {
        reg.get_manifest("multi", &c.digest).await.expect(404);
        assert!(!blob_exists(&s.root, &c.digest));
    }
    assert!(blob_bytes(&s.root) < before);
    // The layers were pulled just after the previous run: a request that used a blob keeps it
    // through the next collection too (`gc::fence`), the one after takes it.
    let out = garbage_collect(&s, &["-m"]);
    assert_eq!(
        report(&out, "blob eligible for deletion"),
        4,
        "the two layers and two configs: {out}"
    );
    assert_eq!(blob_bytes(&s.root), 0, "nothing of the repository is left");
}

#[tokio::test]
async fn a_blob_younger_than_the_delay_survives() {
    let s = setup("1h");
    let w = serve(&s);
    let reg = Registry::new(&w);
    let lone = random_bytes(3000);
    let d = reg.push_blob("young", &lone).await;
    let out = garbage_collect(&s, &[]);
    assert!(blob_exists(&s.root, &d), "{out}");
    assert_eq!(report(&out, "blob eligible for deletion"), 0, "{out}");
    assert!(out.contains("1 unreferenced kept"), "{out}");
    reg.head(&format!("/v2/young/blobs/{d}")).await.expect(200);
}

#[tokio::test]
async fn dry_run_through_a_running_server_and_on_a_stopped_one_lists_and_deletes_nothing() {
    let s = setup("0s");
    let mut w = serve(&s);
    let reg = Registry::new(&w);
    let layer = random_bytes(12_345);
    let m = push(&reg, "dry", Some("v1"), br#"{"dry":1}"#, &[&layer]).await;
    reg.delete("/v2/dry/manifests/v1").await.expect(202);
    let before = blob_bytes(&s.root);
    let expected_bytes = before;

    let out = garbage_collect(&s, &["--dry-run", "--delete-untagged"]);
    assert!(out.contains("(dry run) by the running server"), "{out}");
    assert!(out.contains(&format!("would free {expected_bytes} bytes")), "{out}");
    assert_eq!(report(&out, "blob eligible for deletion"), 3, "{out}");
    assert!(
        out.contains(&format!("dry: manifest eligible for deletion: {}", sha256(&m))),
        "{out}"
    );
    assert_eq!(blob_bytes(&s.root), before, "a dry run deletes nothing");
    assert!(
        w.errors().contains("garbage collection requested through the control channel"),
        "{}",
        w.errors()
    );

    w.stop();
    let out = garbage_collect(&s, &["-d", "-m"]);
    assert!(out.contains("with the storage root locked (no server running)"), "{out}");
    assert!(out.contains(&format!("would free {expected_bytes} bytes")), "{out}");
    assert_eq!(blob_bytes(&s.root), before);
    let out = garbage_collect(&s, &["-m"]);
    assert!(out.contains(&format!("freed {expected_bytes} bytes")), "{out}");
    assert_eq!(blob_bytes(&s.root), 0);
}

/// Two images in `repo`, `keep` and `drop`, sharing a layer, pushed to whatever serves `reg`;
/// `drop` is then deleted by digest. Returns (kept manifest, dropped image's own digests).
async fn two_images_one_deleted(reg: &Registry, repo: &str) -> (Vec<u8>, Vec<String>) {
    let shared = random_bytes(25_000);
    let (own_keep, own_drop) = (random_bytes(11_000), random_bytes(13_000));
    let keep = push(reg, repo, Some("keep"), br#"{"keep":1}"#, &[&shared, &own_keep]).await;
    let dropped = push(reg, repo, Some("drop"), br#"{"drop":1}"#, &[&shared, &own_drop]).await;
    reg.delete(&format!("/v2/{repo}/manifests/{}", sha256(&dropped))).await.expect(202);
    (keep, vec![sha256(&dropped), sha256(br#"{"drop":1}"#), sha256(&own_drop)])
}

#[tokio::test]
async fn a_registry2_store_collected_by_wharf_is_served_by_distribution() {
    if !common::distribution::Distribution::available() {
        return;
    }
    let s = setup("0s");
    let mut d = common::distribution::Distribution::start(&s.root);
    let reg = Registry::basic_at(&d.url, "-", "-", "gc-test");
    let (keep, gone) = two_images_one_deleted(&reg, "r2/app").await;
    d.stop();
    let out = garbage_collect(&s, &["--delete-untagged"]);
    assert!(out.contains("no server running"), "{out}");
    for g in &gone {
        assert!(!blob_exists(&s.root, g), "{g} collected");
    }
    let d = common::distribution::Distribution::start(&s.root);
    let reg = Registry::basic_at(&d.url, "-", "-", "gc-test");
    pull_all(&reg, "r2/app", "keep").await;
    assert_eq!(
        reg.get_manifest("r2/app", "keep").await.header("Docker-Content-Digest"),
        Some(sha256(&keep).as_str())
    );
    reg.get_manifest("r2/app", "drop").await.expect(404);
}

#[tokio::test]
async fn a_wharf_store_collected_by_distribution_is_served_by_wharf() {
    if !common::distribution::Distribution::available() {
        return;
    }
    let s = setup("0s");
    let mut w = serve(&s);
    let reg = Registry::new(&w);
    let (keep, gone) = two_images_one_deleted(&reg, "w/app").await;
    w.stop();
    let out = Command::new(common::distribution::DISTRIBUTION_BIN)
        .args(["garbage-collect", "--delete-untagged"])
        .arg(&s.config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for g in &gone {
        assert!(!blob_exists(&s.root, g), "{g} collected by distribution");
    }
    let w = serve(&s);
    let reg = Registry::new(&w);
    pull_all(&reg, "w/app", "keep").await;
    assert_eq!(
        reg.get_manifest("w/app", "keep").await.header("Docker-Content-Digest"),
        Some(sha256(&keep).as_str())
    );
    // wharf's own collection afterwards finds nothing more to do and nothing dangling.
    let out = garbage_collect(&s, &["-m"]);
    assert!(out.contains("0 blobs and 0 manifests eligible for deletion"), "{out}");
}

fn stored_blob(root: &Path, digest: &str) -> Vec<u8> {
    let hex = hex_of(digest);
    std::fs::read(root.join(format!("docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2]))).unwrap()
}

/// Two images docker built on one base and pushed; one deleted: the collection frees exactly
/// its own manifest, config and layer, and docker still pulls the other.
#[test]
fn docker_images_sharing_layers_one_deleted_frees_exactly_its_own_blobs() {
    let Some(d) = common::dockerd::Dockerd::start() else { return };
    let s = setup("0s");
    let w = serve(&s);
    let base = format!("{}/gc/base:v1", w.addr);
    let ctx = tempfile::tempdir().unwrap();
    common::images::docker_context(ctx.path(), 2);
    d.docker(&["build", "-q", "-t", &base, &ctx.path().to_string_lossy()]);
    d.docker(&["push", &base]);
    let mut digests = Vec::new();
    for name in ["a", "b"] {
        let image = format!("{}/gc/{name}:v1", w.addr);
        let ctx = tempfile::tempdir().unwrap();
        common::images::docker_context_on(ctx.path(), &base);
        d.docker(&["build", "-q", "-t", &image, &ctx.path().to_string_lossy()]);
        digests.push(common::dockerd::pushed_digest(&d.docker(&["push", &image]).stdout));
    }
    let manifest_a: Value = serde_json::from_slice(&stored_blob(&s.root, &digests[0])).unwrap();
    let layers_a: Vec<String> = manifest_a["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();
    let own_a = [
        digests[0].clone(),
        manifest_a["config"]["digest"].as_str().unwrap().to_string(),
        layers_a.last().unwrap().clone(),
    ];
    let freed: u64 = own_a.iter().map(|dg| stored_blob(&s.root, dg).len() as u64).sum();
    let delete = Command::new("curl")
        .args(["-fsS", "-X", "DELETE", &format!("{}/v2/gc/a/manifests/{}", w.url, digests[0])])
        .status()
        .unwrap();
    assert!(delete.success());
    let before = blob_bytes(&s.root);
    let out = garbage_collect(&s, &[]);
    assert_eq!(before - blob_bytes(&s.root), freed, "{out}");
    for dg in &own_a {
        assert!(!blob_exists(&s.root, dg), "{dg}");
    }
    for shared in &layers_a[..layers_a.len() - 1] {
        assert!(blob_exists(&s.root, shared), "the base layers stay");
    }
    let b = format!("{}/gc/b:v1", w.addr);
    d.docker(&["rmi", &b]);
    d.docker(&["pull", &b]);
    assert_eq!(d.inspect(&b, "{{index .RepoDigests 0}}"), format!("{}/gc/b@{}", w.addr, digests[1]));
}

/// A collection applies the retention policies first: the tag a policy drops is deleted (with
/// its manifest, now untagged: the policy deletes untagged manifests), and the same run frees
/// exactly the bytes only that tag held; the dry run before it only lists.
#[tokio::test]
async fn a_collection_applies_retention_first_and_frees_what_it_dropped() {
    let s = setup("0s");
    let config = std::fs::read_to_string(&s.config).unwrap().replace(
        "    gc:\n",
        "    retention:\n      delay: 0s\n      policies:\n        - repositories: ['app']\n          deleteuntagged: true\n          keeptags:\n            - {mostrecentlypushedcount: 1}\n    gc:\n",
    );
    std::fs::write(&s.config, config).unwrap();
    let w = serve(&s);
    let reg = Registry::new(&w);
    let (layer_old, layer_new) = (random_bytes(25_000), random_bytes(15_000));
    let (config_old, config_new) = (
        br#"{"architecture":"amd64","os":"linux","v":"old"}"#.to_vec(),
        br#"{"architecture":"amd64","os":"linux","v":"new"}"#.to_vec(),
    );
    let manifest_old = push(&reg, "app", Some("old"), &config_old, &[&layer_old]).await;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    push(&reg, "app", Some("new"), &config_new, &[&layer_new]).await;
    let before = blob_bytes(&s.root);

    let dry = garbage_collect(&s, &["--dry-run"]);
    assert_eq!(report(&dry, "app: retention would delete tag old"), 1, "{dry}");
    assert_eq!(report(&dry, "retention would delete tag new"), 0, "{dry}");
    assert_eq!(report(&dry, "app: retention would delete manifest"), 1, "{dry}");
    assert_eq!(blob_bytes(&s.root), before, "a dry run deletes nothing");
    reg.get_manifest("app", "old").await.expect(200);

    let out = garbage_collect(&s, &[]);
    assert_eq!(report(&out, "app: retention deleted tag old"), 1, "{out}");
    let freed = (manifest_old.len() + config_old.len() + layer_old.len()) as u64;
    assert_eq!(before - blob_bytes(&s.root), freed, "exactly the dropped tag's own blobs");
    assert!(!blob_exists(&s.root, &sha256(&layer_old)));
    reg.get_manifest("app", "old").await.expect_error(404, &["MANIFEST_UNKNOWN"]);
    pull_all(&reg, "app", "new").await;
}
