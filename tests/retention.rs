//! Usage, deletion, protected tags and retention through the running server: usage figures
//! checked against what the disk holds (computed here from the link files and blob sizes),
//! after pushes, deletes and a restart, and by `wharf du` on the stopped store; tag deletion
//! keeping sibling tags; repository deletion; refusals without the delete right or with deletes
//! disabled; protected tags; a retention dry run listing exactly what the real run deletes; and
//! the usage page's time on 10,000 repositories.

mod common;

use common::api::*;
use common::{wharf_bin, Wharf};
use reqwest::Method;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

/// Digests a repository links (layers and manifest revisions), read from its link files.
fn linked(v2: &Path, repo: &str) -> BTreeSet<String> {
    let base = v2.join("repositories").join(repo);
    let mut out = BTreeSet::new();
    for dir in [base.join("_layers/sha256"), base.join("_manifests/revisions/sha256")] {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if e.path().join("link").is_file() {
                out.insert(format!("sha256:{}", e.file_name().to_string_lossy()));
            }
        }
    }
    out
}

fn blob_size(v2: &Path, digest: &str) -> u64 {
    let hex = hex_of(digest);
    std::fs::metadata(v2.join(format!("blobs/sha256/{}/{hex}/data", &hex[..2])))
        .map(|m| m.len())
        .unwrap_or_else(|e| panic!("blob {digest}: {e}"))
}

/// (unique, shared) bytes of each repository, from the disk alone.
fn usage_on_disk(v2: &Path, repos: &[&str]) -> BTreeMap<String, (u64, u64)> {
    let sets: Vec<(String, BTreeSet<String>)> = repos.iter().map(|r| (r.to_string(), linked(v2, r))).collect();
    let mut out = BTreeMap::new();
    for (name, set) in &sets {
        let (mut unique, mut shared) = (0, 0);
        for d in set {
            let holders = sets.iter().filter(|(_, s)| s.contains(d)).count();
            if holders > 1 {
                shared += blob_size(v2, d);
            } else {
                unique += blob_size(v2, d);
            }
        }
        out.insert(name.clone(), (unique, shared));
    }
    out
}

fn usage_from_api(page: &Value) -> BTreeMap<String, (u64, u64)> {
    page["repositories"]
        .as_array()
        .expect("repositories")
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                (r["uniquebytes"].as_u64().unwrap(), r["sharedbytes"].as_u64().unwrap()),
            )
        })
        .collect()
}

/// Pushes an image whose layers are `layers` (pushed here) under `tag`; returns its digest.
async fn push_layers(reg: &Registry, repo: &str, tag: &str, layers: &[&[u8]]) -> String {
    let config = config_blob();
    reg.push_blob(repo, &config).await;
    let mut descs = Vec::new();
    for l in layers {
        reg.push_blob(repo, l).await;
        descs.push(Desc::of(OCI_LAYER, l));
    }
    let manifest = to_bytes(&image_manifest(OCI_MANIFEST, &Desc::of(OCI_CONFIG, &config), &descs));
    reg.push_manifest(repo, Some(tag), OCI_MANIFEST, &manifest).await;
    sha256(&manifest)
}

async fn usage_page(reg: &Registry) -> Value {
    let resp = reg.get("/v2/_wharf/usage?n=1000").await;
    resp.expect(200);
    resp.json()
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_matches_the_disk_after_pushes_deletes_and_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data");
    let debug = format!("127.0.0.1:{}", common::free_port());
    let env = [
        ("REGISTRY_STORAGE_DELETE_ENABLED", "true"),
        ("REGISTRY_HTTP_DEBUG_ADDR", debug.as_str()),
        ("REGISTRY_HTTP_DEBUG_PROMETHEUS_ENABLED", "true"),
    ];
    let mut w = Wharf::start_on_root(&root, &[], &env);
    let reg = Registry::new(&w);
    let v2 = v2_dir(&w);
    let shared = random_bytes(40_000);
    let (only_a, only_b) = (random_bytes(30_000), random_bytes(7_000));
    push_layers(&reg, "u/a", "v1", &[&shared, &only_a]).await;
    push_layers(&reg, "u/b", "v1", &[&shared, &only_b]).await;
    push_layers(&reg, "u/b", "v2", &[&only_b]).await;
    let repos = ["u/a", "u/b"];

    let page = usage_page(&reg).await;
    let want = usage_on_disk(&v2, &repos);
    assert_eq!(usage_from_api(&page), want, "{page}");
    assert!(
        want["u/a"].1 >= 40_000 && want["u/a"].0 >= 30_000,
        "the shared layer counts as shared: {want:?}"
    );
    let b = &page["repositories"][1];
    assert_eq!((b["tags"].as_u64(), b["manifests"].as_u64()), (Some(2), Some(2)), "{b}");
    assert!(b["lastpush"].is_string() && b["lastpull"].is_null(), "{b}");

    // The metrics count the repositories and each blob they link once.
    let all: BTreeSet<String> = repos.iter().flat_map(|r| linked(&v2, r)).collect();
    let stored: u64 = all.iter().map(|d| blob_size(&v2, d)).sum();
    let metrics = reqwest::get(format!("http://{debug}/metrics")).await.unwrap().text().await.unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l == "wharf_repositories 2.0" || l == "wharf_repositories 2"),
        "{metrics}"
    );
    let line = metrics
        .lines()
        .find(|l| l.starts_with("wharf_stored_bytes "))
        .expect("wharf_stored_bytes");
    assert_eq!(line.split(' ').nth(1).unwrap().parse::<f64>().unwrap(), stored as f64, "{line}");

    // A pull is recorded; one repository's figures alone.
    reg.get_manifest("u/a", "v1").await.expect(200);
    let one = reg.get("/v2/u/a/_wharf/usage").await;
    one.expect(200);
    assert!(one.json()["lastpull"].is_string(), "{}", one.show());
    reg.get("/v2/nothing/here/_wharf/usage").await.expect_error(404, &["NAME_UNKNOWN"]);

    // The repository sharing the layer goes: what u/a shared is now its own.
    reg.call(Method::DELETE, reg.url("/v2/u/b/_wharf/repository"), &[], vec![])
        .await
        .expect(202);
    let page = usage_page(&reg).await;
    assert_eq!(usage_from_api(&page), usage_on_disk(&v2, &["u/a"]), "{page}");
    assert_eq!(usage_from_api(&page)["u/a"].1, 0, "nothing is shared any more");

    // After a restart the figures, and the pull time, are read back from the disk.
    w.stop();
    let w = Wharf::start_on_root(&root, &[], &env);
    let reg = Registry::new(&w);
    let page = usage_page(&reg).await;
    assert_eq!(usage_from_api(&page), usage_on_disk(&v2, &["u/a"]), "{page}");
    assert!(
        page["repositories"][0]["lastpull"].is_string(),
        "the pull survived the restart: {page}"
    );
    // `wharf du` with the server running asks it, through the root's control socket.
    let du_json = |extra: &[&str]| -> Value {
        let out = std::process::Command::new(wharf_bin())
            .args(["du", "--json"])
            .args(extra)
            .env("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", &root)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    assert_eq!(du_json(&[]), page, "the running server's own page");
    assert_eq!(du_json(&["u/a"])["repositories"], page["repositories"]);
    drop(w);

    // `wharf du` on the stopped store says the same.
    let out = std::process::Command::new(wharf_bin())
        .args(["du", "--json"])
        .env("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", &root)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let du: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(usage_from_api(&du), usage_on_disk(&v2, &["u/a"]), "{du}");
    let table = std::process::Command::new(wharf_bin())
        .args(["du", "--bytes"])
        .env("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", &root)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    let unique = usage_on_disk(&v2, &["u/a"])["u/a"].0.to_string();
    assert!(text.lines().any(|l| l.starts_with("u/a") && l.contains(&unique)), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tag_delete_keeps_its_siblings_and_a_repository_delete_leaves_the_catalog() {
    let (_w, reg) = start();
    let pushed = reg.push_image("d/app", "v1").await;
    reg.push_manifest("d/app", Some("v2"), OCI_MANIFEST, &pushed.manifest).await;
    reg.push_manifest("d/app", Some("v3"), OCI_MANIFEST, &pushed.manifest).await;
    reg.delete("/v2/d/app/manifests/v1").await.expect(202);
    reg.get_manifest("d/app", "v1").await.expect_error(404, &["MANIFEST_UNKNOWN"]);
    reg.get_manifest("d/app", "v2").await.expect(200);
    assert_eq!(strings(&reg.get("/v2/d/app/tags/list").await.json()["tags"]), ["v2", "v3"]);
    // By digest: the manifest and every tag on it.
    reg.delete(&format!("/v2/d/app/manifests/{}", pushed.digest)).await.expect(202);
    assert!(strings(&reg.get("/v2/d/app/tags/list").await.json()["tags"]).is_empty());

    let other = reg.push_image("d/other", "v1").await;
    reg.push_image("d/app/nested", "v1").await;
    reg.push_image("d/app", "v9").await;
    let url = reg.url("/v2/d/app/_wharf/repository");
    reg.call(Method::DELETE, url.clone(), &[], vec![]).await.expect(202);
    let catalog = strings(&reg.get("/v2/_catalog").await.json()["repositories"]);
    assert_eq!(catalog, ["d/app/nested", "d/other"], "the nested repository stays");
    reg.get("/v2/d/app/tags/list").await.expect_error(404, &["NAME_UNKNOWN"]);
    reg.call(Method::DELETE, url, &[], vec![])
        .await
        .expect_error(404, &["NAME_UNKNOWN"]);
    // The others still pull, blobs included.
    reg.get_manifest("d/other", "v1").await.expect(200);
    let blob = reg.get(&format!("/v2/d/other/blobs/{}", other.layer.digest)).await;
    blob.expect(200);
    reg.get_manifest("d/app/nested", "v1").await.expect(200);
}

#[tokio::test(flavor = "multi_thread")]
async fn deletes_are_refused_when_disabled_and_without_the_delete_right() {
    let w = Wharf::start();
    let reg = Registry::new(&w);
    reg.push_image("x/app", "v1").await;
    let url = reg.url("/v2/x/app/_wharf/repository");
    reg.call(Method::DELETE, url, &[], vec![]).await.expect_error(405, &["UNSUPPORTED"]);
    reg.delete("/v2/x/app/manifests/v1").await.expect_error(405, &["UNSUPPORTED"]);
    reg.get_manifest("x/app", "v1").await.expect(200);

    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    common::write_htpasswd(&htpasswd, &[("admin", "admin-pw"), ("dev", "dev-pw")]);
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nstorage:\n  delete: {{enabled: true}}\nauth:\n  htpasswd: {{realm: t, path: {}}}\naccess:\n  rules:\n    - {{repositories: ['**'], users: [admin], allow: [pull, push, delete]}}\n    - {{repositories: ['**'], users: [dev], allow: [pull, push]}}\n",
            htpasswd.display()
        ),
    )
    .unwrap();
    let w = Wharf::start_with(&[config.to_str().unwrap()], &[]);
    let (admin, dev) = (
        Registry::with_basic(&w, "admin", "admin-pw"),
        Registry::with_basic(&w, "dev", "dev-pw"),
    );
    dev.push_image("y/app", "v1").await;
    let url = dev.url("/v2/y/app/_wharf/repository");
    dev.call(Method::DELETE, url.clone(), &[], vec![])
        .await
        .expect_error(403, &["DENIED"]);
    dev.delete("/v2/y/app/manifests/v1").await.expect_error(403, &["DENIED"]);
    // A retention run needs the delete right everywhere; its dry run only the pull right.
    dev.call(Method::POST, dev.url("/v2/_wharf/retention"), &[], vec![])
        .await
        .expect_error(403, &["DENIED"]);
    dev.get("/v2/_wharf/retention?dryrun=true").await.expect(200);
    admin.call(Method::DELETE, url, &[], vec![]).await.expect(202);
    dev.get("/v2/y/app/tags/list").await.expect_error(404, &["NAME_UNKNOWN"]);
}

const RETENTION: &str = "version: 0.1
storage:
  delete: {enabled: true}
  maintenance:
    retention:
      delay: 0s
      protected:
        - {repositories: ['keep/**', 'ret/app'], tags: ['release-*']}
      policies:
        - repositories: ['ret/**']
          deleteuntagged: true
          keeptags:
            - {mostrecentlypushedcount: 2}
            - {patterns: ['stable']}
";

fn retention_server() -> (Wharf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yml");
    std::fs::write(&config, RETENTION).unwrap();
    (Wharf::start_with(&[config.to_str().unwrap()], &[]), dir)
}

#[tokio::test(flavor = "multi_thread")]
async fn protected_tags_are_neither_moved_nor_deleted() {
    let (w, _dir) = retention_server();
    let reg = Registry::new(&w);
    let first = reg.push_image("keep/app", "release-1").await;
    let second = reg.push_image("keep/app", "latest").await;
    // Moving it is refused; pushing what it already points at is not.
    reg.put_manifest("keep/app", "release-1", OCI_MANIFEST, &second.manifest)
        .await
        .expect_error(403, &["DENIED"]);
    reg.push_manifest("keep/app", Some("release-1"), OCI_MANIFEST, &first.manifest)
        .await;
    assert_eq!(
        reg.get_manifest("keep/app", "release-1").await.header("Docker-Content-Digest"),
        Some(first.digest.as_str())
    );
    reg.delete("/v2/keep/app/manifests/release-1").await.expect_error(403, &["DENIED"]);
    reg.delete(&format!("/v2/keep/app/manifests/{}", first.digest))
        .await
        .expect_error(403, &["DENIED"]);
    reg.call(Method::DELETE, reg.url("/v2/keep/app/_wharf/repository"), &[], vec![])
        .await
        .expect_error(403, &["DENIED"]);
    reg.get_manifest("keep/app", "release-1").await.expect(200);
    // Unprotected tags move and go as usual.
    reg.push_manifest("keep/app", Some("latest"), OCI_MANIFEST, &first.manifest).await;
    reg.delete("/v2/keep/app/manifests/latest").await.expect(202);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retention_dry_run_lists_exactly_what_the_run_then_deletes() {
    let (w, _dir) = retention_server();
    let reg = Registry::new(&w);
    let mut digests = BTreeMap::new();
    // Oldest first: stable, release-1 (protected), t1 .. t4; plus a manifest pushed untagged.
    for tag in ["stable", "release-1", "t1", "t2", "t3", "t4"] {
        digests.insert(tag, reg.push_image("ret/app", tag).await.digest);
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let untagged = reg
        .push_manifest_with("ret/app", None, OCI_CONFIG, serde_json::json!({}))
        .await
        .digest;
    let outside = reg.push_image("other/app", "t0").await;

    let dry = reg.get("/v2/_wharf/retention?dryrun=true").await;
    dry.expect(200);
    let dry = dry.json();
    assert_eq!(dry["dryrun"], true);
    let listed = |r: &Value, key: &str, field: &str| -> BTreeSet<String> {
        r[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i[field].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        listed(&dry, "tags", "tag"),
        BTreeSet::from(["t1".to_string(), "t2".to_string()]),
        "{dry}"
    );
    let want_manifests: BTreeSet<String> = [&digests["t1"], &digests["t2"], &untagged].into_iter().cloned().collect();
    assert_eq!(listed(&dry, "manifests", "digest"), want_manifests, "{dry}");
    // Nothing changed yet.
    assert_eq!(strings(&reg.get("/v2/ret/app/tags/list").await.json()["tags"]).len(), 6);

    let run = reg.call(Method::POST, reg.url("/v2/_wharf/retention"), &[], vec![]).await;
    run.expect(200);
    let run = run.json();
    assert_eq!(run["dryrun"], false);
    assert_eq!(run["tags"], dry["tags"], "the run deleted what the dry run listed");
    assert_eq!(run["manifests"], dry["manifests"]);
    assert_eq!(
        strings(&reg.get("/v2/ret/app/tags/list").await.json()["tags"]),
        ["release-1", "stable", "t3", "t4"]
    );
    for d in &want_manifests {
        reg.get_manifest("ret/app", d).await.expect_error(404, &["MANIFEST_UNKNOWN"]);
    }
    reg.get_manifest("ret/app", &digests["t4"]).await.expect(200);
    reg.get_manifest("other/app", &outside.digest).await.expect(200);
    // A second dry run finds nothing more.
    let again = reg.get("/v2/_wharf/retention?dryrun=true").await.json();
    assert!(
        again["tags"].as_array().unwrap().is_empty() && again["manifests"].as_array().unwrap().is_empty(),
        "{again}"
    );
}

/// Writes `n` repositories in registry:2's layout (a layer, a manifest revision and a tag
/// each, over blobs some share), as a long-lived registry would hold them.
fn write_repositories(v2: &Path, n: usize) {
    let blob = |data: &[u8]| {
        let d = sha256(data);
        let hex = hex_of(&d).to_string();
        let dir = v2.join(format!("blobs/sha256/{}/{hex}", &hex[..2]));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("data"), data).unwrap();
        d
    };
    let link = |path: std::path::PathBuf, d: &str| {
        std::fs::create_dir_all(&path).unwrap();
        std::fs::write(path.join("link"), d).unwrap();
    };
    let shared: Vec<String> = (0..10).map(|i| blob(format!("shared layer {i}").as_bytes())).collect();
    for i in 0..n {
        let repo = v2.join(format!("repositories/team{}/app{i:05}", i % 100));
        let manifest = blob(format!("manifest {i}").as_bytes());
        let layer = &shared[i % shared.len()];
        link(repo.join(format!("_layers/sha256/{}", hex_of(layer))), layer);
        link(repo.join(format!("_manifests/revisions/sha256/{}", hex_of(&manifest))), &manifest);
        link(repo.join("_manifests/tags/latest/current"), &manifest);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_usage_page_is_fast_with_ten_thousand_repositories() {
    // In memory when possible: removing 100,000 small files and directories from a disk mounted
    // with `discard` takes minutes, which is not what this test measures.
    let shm = Path::new("/dev/shm");
    let tmp = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .unwrap();
    let root = tmp.path().join("data");
    write_repositories(&root.join("docker/registry/v2"), 10_000);
    let started = Instant::now();
    let w = Wharf::start_on_root(&root, &[], &[]);
    let startup = started.elapsed();
    let reg = Registry::new(&w);
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let resp = reg.get("/v2/_wharf/usage?n=100").await;
        times.push(t.elapsed());
        resp.expect(200);
        let page = resp.json();
        assert_eq!(page["repositories"].as_array().unwrap().len(), 100);
        assert_eq!(page["repositories"][0]["name"], "team0/app00000");
        assert_eq!(page["repositories"][0]["tags"], 1);
        assert!(next_link(&resp).is_some(), "more pages follow");
    }
    let last = reg.get("/v2/_wharf/usage?n=100&last=team99/app09899").await;
    let t = Instant::now();
    let deep = reg.get("/v2/_wharf/usage?n=100&last=team50/app00050").await;
    times.push(t.elapsed());
    deep.expect(200);
    assert_eq!(last.json()["repositories"].as_array().unwrap().len(), 1, "{}", last.show());
    times.sort();
    println!("10,000 repositories: server up in {startup:?} (usage index built), usage page times {times:?}");
    assert!(times[0] < Duration::from_millis(200), "first page took {:?}", times[0]);
    assert!(
        times[times.len() / 2] < Duration::from_millis(200),
        "median {:?}",
        times[times.len() / 2]
    );
}
