//! Garbage collection on shared object storage (Garage), with replicas serving the bucket while
//! it runs: a collection through replica A while A and B push images that reuse the very blobs
//! it found unreferenced (HEAD says present, nothing is uploaded, the manifest PUT relies on
//! them: the case a collection that only sees its own replica's requests gets wrong) and fresh
//! ones. Every acknowledged manifest must pull through both replicas with every blob's bytes
//! matching its digest; what nobody reused must be gone from the bucket; a second collection
//! asked of B meanwhile is refused. And `wharf garbage-collect` on an s3 configuration, after
//! which distribution 2.8.2 reads the bucket and its own collector finds nothing left to delete.

mod common;

use common::api::{config_blob, image_manifest, random_bytes, sha256, to_bytes, Desc, Registry, OCI_CONFIG, OCI_LAYER, OCI_MANIFEST};
use common::distribution::Distribution;
use common::garage::{runtime, Garage, BUCKET, REGION};
use futures::TryStreamExt;
use object_store::ObjectStore;
use reqwest::Method;
use serde_json::Value;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Small timings: a run publishes for 4 s, replicas poll every 300 ms.
const TIMING: [(&str, &str); 5] = [
    ("REGISTRY_STORAGE_MAINTENANCE_GC_DELAY", "0s"),
    ("REGISTRY_STORAGE_MAINTENANCE_GC_WINDOW", "4s"),
    ("REGISTRY_STORAGE_MAINTENANCE_GC_POLL", "300ms"),
    ("REGISTRY_STORAGE_MAINTENANCE_GC_MARGIN", "1s"),
    ("REGISTRY_STORAGE_MAINTENANCE_GC_MAXRUNAGE", "10m"),
];

/// Seeded images whose manifests are deleted (their blobs then unreferenced), of which the
/// last `UNREUSED` are reused by nobody.
const ORPHANS: usize = 60;
const UNREUSED: usize = 6;
/// Pushes per pusher at most, one every `PACE`, and how long pushers go on at most: spread over
/// the whole collection (its lease, first mark, window, second mark and sweep).
const PUSHES_MAX: usize = 80;
const PACE: Duration = Duration::from_millis(120);
const PUSHING_MAX: Duration = Duration::from_secs(90);
/// Tries of one push (a blob deleted under it is uploaded again; a 503 waits).
const ATTEMPTS: usize = 20;

#[derive(Clone)]
struct Blob {
    digest: String,
    bytes: Vec<u8>,
    media_type: &'static str,
}

impl Blob {
    fn new(bytes: Vec<u8>, media_type: &'static str) -> Blob {
        Blob {
            digest: sha256(&bytes),
            bytes,
            media_type,
        }
    }

    fn desc(&self) -> Desc {
        Desc::of(self.media_type, &self.bytes)
    }
}

/// An image: config first, then layers.
#[derive(Clone)]
struct Image {
    repo: String,
    tag: String,
    blobs: Vec<Blob>,
}

impl Image {
    fn manifest(&self) -> Vec<u8> {
        let layers: Vec<Desc> = self.blobs[1..].iter().map(Blob::desc).collect();
        to_bytes(&image_manifest(OCI_MANIFEST, &self.blobs[0].desc(), &layers))
    }
}

fn fresh_image(repo: &str, tag: &str) -> Image {
    Image {
        repo: repo.into(),
        tag: tag.into(),
        blobs: vec![Blob::new(config_blob(), OCI_CONFIG), Blob::new(random_bytes(3000), OCI_LAYER)],
    }
}

/// What became of pushes.
#[derive(Default)]
struct Tally {
    acked: Vec<Image>,
    /// Blob uploads a HEAD, mount or manifest PUT made necessary again (content gone under a push).
    reuploads: usize,
    /// 503 answers (a push waited for a run, or took too long inside a window).
    unavailable: usize,
    /// Manifest PUTs refused as MANIFEST_BLOB_UNKNOWN (then retried with the blob uploaded).
    blob_unknown: usize,
}

/// One blob as docker sends it: HEAD in the target repository; if absent a mount from `from`;
/// if that fails an upload. True once the repository has it.
async fn send_blob(reg: &Registry, repo: &str, blob: &Blob, from: Option<&str>, tally: &Mutex<Tally>) -> bool {
    let head = reg
        .try_call(Method::HEAD, reg.url(&format!("/v2/{repo}/blobs/{}", blob.digest)), &[], vec![])
        .await;
    if head.as_ref().is_ok_and(|h| h.status == 200) {
        return true;
    }
    let start = match from {
        Some(from) => reg.url_with(&format!("/v2/{repo}/blobs/uploads/"), &[("mount", &blob.digest), ("from", from)]),
        None => reg.url(&format!("/v2/{repo}/blobs/uploads/")),
    };
    let Ok(started) = reg.try_call(Method::POST, start, &[("Content-Length", "0")], vec![]).await else {
        return false;
    };
    match started.status {
        201 => return true,
        202 => {}
        503 => {
            tally.lock().unwrap().unavailable += 1;
            return false;
        }
        other => panic!("upload start answered {other}: {}", started.show()),
    }
    let url = reg.url_with(started.location(), &[("digest", &blob.digest)]);
    let put = reg
        .try_call(
            Method::PUT,
            url,
            &[("Content-Type", "application/octet-stream")],
            blob.bytes.clone(),
        )
        .await;
    match put.map(|p| p.status) {
        Ok(201) => {
            tally.lock().unwrap().reuploads += 1;
            true
        }
        Ok(503) => {
            tally.lock().unwrap().unavailable += 1;
            false
        }
        other => panic!("blob upload answered {other:?}"),
    }
}

/// Pushes `image` until its manifest PUT is acknowledged (recorded) or the tries run out.
async fn push(reg: &Registry, image: &Image, from: Option<&str>, tally: &Mutex<Tally>) {
    let manifest = image.manifest();
    for _ in 0..ATTEMPTS {
        let mut all = true;
        for blob in &image.blobs {
            all &= send_blob(reg, &image.repo, blob, from, tally).await;
        }
        if !all {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let url = reg.url(&format!("/v2/{}/manifests/{}", image.repo, image.tag));
        let Ok(resp) = reg
            .try_call(Method::PUT, url, &[("Content-Type", OCI_MANIFEST)], manifest.clone())
            .await
        else {
            continue;
        };
        match resp.status {
            201 => {
                tally.lock().unwrap().acked.push(image.clone());
                return;
            }
            503 => {
                tally.lock().unwrap().unavailable += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            400 if String::from_utf8_lossy(&resp.body).contains("MANIFEST_BLOB_UNKNOWN") => tally.lock().unwrap().blob_unknown += 1,
            _ => panic!("manifest PUT: {}", resp.show()),
        }
    }
    panic!("{}:{} was never acknowledged in {ATTEMPTS} tries", image.repo, image.tag);
}

/// Every acknowledged image pulls through `reg`: its manifest by tag, every blob whole with
/// the bytes its digest names.
async fn assert_pulls(reg: &Registry, name: &str, images: &[Image]) {
    for image in images {
        let got = reg.get_manifest(&image.repo, &image.tag).await;
        assert_eq!(got.status, 200, "{}:{} through {name}: {}", image.repo, image.tag, got.show());
        assert_eq!(got.body, image.manifest(), "{}:{} through {name}", image.repo, image.tag);
        for blob in &image.blobs {
            let got = reg.get(&format!("/v2/{}/blobs/{}", image.repo, blob.digest)).await;
            assert_eq!(
                got.status,
                200,
                "{} of {}:{} through {name}: {}",
                blob.digest,
                image.repo,
                image.tag,
                got.show()
            );
            assert_eq!(
                sha256(&got.body),
                blob.digest,
                "{} of {}:{} through {name}",
                blob.digest,
                image.repo,
                image.tag
            );
        }
    }
}

/// The bucket itself, as the test reads it (no wharf in between).
fn bucket(g: &Garage) -> object_store::aws::AmazonS3 {
    object_store::aws::AmazonS3Builder::new()
        .with_endpoint(g.nodes[0].endpoint())
        .with_allow_http(true)
        .with_region(REGION)
        .with_bucket_name(BUCKET)
        .with_access_key_id(&g.key_id)
        .with_secret_access_key(&g.secret)
        .with_virtual_hosted_style_request(false)
        .build()
        .expect("S3 client for the test")
}

/// Every key under `prefix`.
async fn keys(s3: &object_store::aws::AmazonS3, prefix: &str) -> Vec<String> {
    let prefix = object_store::path::Path::from(prefix);
    let listed: Vec<object_store::ObjectMeta> = s3.list(Some(&prefix)).try_collect().await.expect("list the bucket");
    listed.into_iter().map(|m| m.location.to_string()).collect()
}

/// The digests of the blobs stored under `root` (`<root>/docker/registry/v2/blobs/...`).
async fn stored_blobs(s3: &object_store::aws::AmazonS3, root: &str) -> HashSet<String> {
    keys(s3, &format!("{root}/docker/registry/v2/blobs"))
        .await
        .iter()
        .filter_map(|k| {
            let parts: Vec<&str> = k.split('/').collect();
            let n = parts.len();
            (n >= 4 && parts[n - 1] == "data").then(|| format!("{}:{}", parts[n - 4], parts[n - 2]))
        })
        .collect()
}

/// Seeds `count` images through `reg` and deletes the manifests of those in `orphan`: their
/// blobs (and manifests) are then unreferenced, their layer links left in place.
async fn seed(reg: &Registry, count: usize, orphan: std::ops::Range<usize>) -> Vec<(Image, String)> {
    let mut out = Vec::new();
    for i in 0..count {
        let image = fresh_image(&format!("seed/{i}"), "v1");
        let tally = Mutex::new(Tally::default());
        push(reg, &image, None, &tally).await;
        let digest = sha256(&image.manifest());
        if orphan.contains(&i) {
            reg.delete(&format!("/v2/seed/{i}/manifests/{digest}")).await.expect(202);
        }
        out.push((image, digest));
    }
    out
}

#[test]
fn a_collection_through_one_replica_spares_what_both_replicas_push_meanwhile() {
    let Some(g) = Garage::single() else { return };
    let root = "gcrace";
    let mut extra: Vec<(&str, &str)> = TIMING.to_vec();
    extra.extend([
        ("REGISTRY_STORAGE_DELETE_ENABLED", "true"),
        ("REGISTRY_STORAGE_REDIRECT_DISABLE", "true"),
    ]);
    let a = g.serve(0, &format!("/{root}"), &extra);
    let b = g.serve(0, &format!("/{root}"), &extra);
    let (ra, rb) = (Arc::new(Registry::at_url(&a.url)), Arc::new(Registry::at_url(&b.url)));
    let rt = runtime();
    let s3 = bucket(&g);

    // Images through B, the manifests of all but the last deleted: their blobs are what the
    // collection finds unreferenced. Pushes reuse them one orphan after the other, so that
    // some first touch their orphan in each phase of the run.
    let seeded = rt.block_on(seed(&rb, ORPHANS + 1, 0..ORPHANS));
    let reused: Vec<Image> = seeded[..ORPHANS - UNREUSED].iter().map(|(i, _)| i.clone()).collect();
    let unreused: Vec<String> = seeded[ORPHANS - UNREUSED..ORPHANS]
        .iter()
        .flat_map(|(i, m)| i.blobs.iter().map(|b| b.digest.clone()).chain([m.clone()]))
        .collect();

    let tally = Arc::new(Mutex::new(Tally::default()));
    let (report, refused, pushes) = rt.block_on(async {
        let stop = Arc::new(AtomicBool::new(false));
        let next_orphan = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let begun = Instant::now();
        let pushers: Vec<_> = [(ra.clone(), "a"), (rb.clone(), "b")]
            .into_iter()
            .map(|(reg, name)| {
                let (stop, tally, reused, next_orphan) = (stop.clone(), tally.clone(), reused.clone(), next_orphan.clone());
                tokio::spawn(async move {
                    let mut n = 0;
                    while n < PUSHES_MAX && !stop.load(Ordering::SeqCst) && begun.elapsed() < PUSHING_MAX {
                        tokio::time::sleep(PACE).await;
                        let source = &reused[next_orphan.load(Ordering::SeqCst) % reused.len()];
                        let fresh = Blob::new(random_bytes(2000), OCI_LAYER);
                        match n % 3 {
                            // The seeded repository again, its unreferenced config and layer reused
                            // (HEAD answers 200, nothing is uploaded) with a fresh layer.
                            0 => {
                                let mut image = source.clone();
                                image.tag = format!("{name}-{n}");
                                image.blobs.push(fresh);
                                next_orphan.fetch_add(1, Ordering::SeqCst);
                                push(&reg, &image, None, &tally).await;
                            }
                            // Another repository, the unreferenced blobs mounted from the seeded one.
                            1 => {
                                let mut image = source.clone();
                                image.repo = format!("copy/{name}{n}");
                                image.tag = "v1".into();
                                image.blobs.push(fresh);
                                next_orphan.fetch_add(1, Ordering::SeqCst);
                                push(&reg, &image, Some(&source.repo), &tally).await;
                            }
                            _ => push(&reg, &fresh_image(&format!("fresh/{name}{n}"), "v1"), None, &tally).await,
                        }
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let gc = {
            let ra = ra.clone();
            tokio::spawn(async move { ra.call(Method::POST, ra.url("/v2/_wharf/gc"), &[], vec![]).await })
        };
        // A holds the lease once it has settled (2 s); its window lasts 4 s more.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let refused = rb.call(Method::POST, rb.url("/v2/_wharf/gc"), &[], vec![]).await;
        let report = gc.await.unwrap();
        // Pushes go on a little after the run, then stop.
        tokio::time::sleep(Duration::from_secs(1)).await;
        stop.store(true, Ordering::SeqCst);
        let mut pushes = 0;
        for p in pushers {
            pushes += p.await.unwrap();
        }
        (report, refused, pushes)
    });
    assert_eq!(report.status, 200, "the collection through A: {}", report.show());
    let report: Value = report.json();
    assert_eq!(
        refused.status,
        409,
        "a second collection through B while A collects: {}",
        refused.show()
    );
    assert!(
        String::from_utf8_lossy(&refused.body).contains("already running"),
        "{}",
        refused.show()
    );
    let tally = Arc::try_unwrap(tally).ok().unwrap().into_inner().unwrap();
    let deleted: HashSet<String> = report["blobs_deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["digest"].as_str().unwrap().to_string())
        .collect();
    eprintln!(
        "{pushes} pushes during the collection: {} acknowledged, {} blob uploads, {} MANIFEST_BLOB_UNKNOWN, {} 503; collection: {} blobs deleted, {} spared in {}s",
        tally.acked.len(),
        tally.reuploads,
        tally.blob_unknown,
        tally.unavailable,
        deleted.len(),
        report["spared"],
        report["duration_seconds"]
    );
    let reusing = tally.acked.iter().filter(|i| !i.repo.starts_with("fresh/")).count();
    assert!(reusing >= 20, "only {reusing} pushes reusing unreferenced blobs were acknowledged");

    rt.block_on(async {
        assert_pulls(&ra, "A", &tally.acked).await;
        assert_pulls(&rb, "B", &tally.acked).await;
        let stored = stored_blobs(&s3, root).await;
        for d in &unreused {
            assert!(
                deleted.contains(d),
                "{d}, unreferenced and reused by nobody, was not collected: {report}"
            );
            assert!(!stored.contains(d), "{d} was reported deleted but is still in the bucket");
        }
        for image in &tally.acked {
            for blob in &image.blobs {
                assert!(
                    stored.contains(&blob.digest),
                    "{} of an acknowledged push is not in the bucket",
                    blob.digest
                );
            }
        }
        // The run withdrew everything it published, and released its lease.
        let left = keys(&s3, &format!("{root}/wharf")).await;
        assert!(left.is_empty(), "the collection left coordination objects: {left:?}");
    });
}

/// `wharf garbage-collect` with `storage.s3` from the environment `env` (no file).
fn garbage_collect(env: Vec<(String, String)>) -> std::process::Output {
    let mut cmd = std::process::Command::new(common::wharf_bin());
    cmd.arg("garbage-collect");
    for (k, _) in std::env::vars() {
        if k.starts_with("REGISTRY_") || k.starts_with("WHARF_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env).envs(TIMING);
    cmd.output().expect("run wharf garbage-collect")
}

#[test]
fn garbage_collect_on_an_s3_config_leaves_a_bucket_distribution_reads() {
    let Some(g) = Garage::single() else { return };
    if !Distribution::available() {
        return;
    }
    let root = "offline";
    let rt = runtime();
    let s3 = bucket(&g);
    let (kept, doomed) = {
        let a = g.serve(0, &format!("/{root}"), &[("REGISTRY_STORAGE_DELETE_ENABLED", "true")]);
        let ra = Registry::at_url(&a.url);
        let seeded = rt.block_on(seed(&ra, 4, 1..3));
        let kept: Vec<Image> = [0, 3].iter().map(|i| seeded[*i].0.clone()).collect();
        let doomed: Vec<String> = seeded[1..3]
            .iter()
            .flat_map(|(i, m)| i.blobs.iter().map(|b| b.digest.clone()).chain([m.clone()]))
            .collect();
        (kept, doomed)
    };
    // distribution serves the same bucket while the collection runs (its window is open, the
    // lease and the run's candidates in the bucket beside registry:2's layout).
    let dist = Distribution::start_on_storage(&g.distribution_storage(0, &format!("/{root}")), "", &["AWS_CA_BUNDLE"]);
    let rd = Registry::at_url(&dist.url);
    let env = g.wharf_env(0, &format!("/{root}"));
    let collector = std::thread::spawn(move || garbage_collect(env));
    rt.block_on(async {
        let limit = Instant::now() + Duration::from_secs(30);
        while keys(&s3, &format!("{root}/wharf/gc/runs")).await.is_empty() {
            assert!(Instant::now() < limit, "the collection published no run within 30 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let catalog = rd.get("/v2/_catalog").await;
        catalog.expect(200);
        assert_eq!(
            catalog.json()["repositories"],
            serde_json::json!(["seed/0", "seed/1", "seed/2", "seed/3"]),
            "distribution's catalog beside a running collection"
        );
    });
    let out = collector.join().unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "wharf garbage-collect: {printed}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(printed.contains("on the shared bucket"), "{printed}");
    rt.block_on(async {
        let stored = stored_blobs(&s3, root).await;
        for d in &doomed {
            assert!(printed.contains(d.as_str()), "{d} not reported deleted:\n{printed}");
            assert!(!stored.contains(d), "{d} still in the bucket");
        }
        assert_pulls(&rd, "distribution", &kept).await;
    });
    drop(dist);
    // distribution's own collector on the bucket wharf collected: nothing left for it.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yml");
    let storage = g.distribution_storage(0, &format!("/{root}"));
    std::fs::write(
        &config,
        format!("version: 0.1\n{storage}http:\n  addr: 127.0.0.1:0\n  secret: s3-gc-test\n"),
    )
    .unwrap();
    let mut cmd = std::process::Command::new(common::distribution::DISTRIBUTION_BIN);
    cmd.arg("garbage-collect").arg(&config).env_remove("AWS_CA_BUNDLE");
    for (k, _) in std::env::vars() {
        if k.starts_with("REGISTRY_") {
            cmd.env_remove(k);
        }
    }
    let theirs = cmd.output().expect("docker-registry garbage-collect");
    let text = String::from_utf8_lossy(&theirs.stdout).to_string() + &String::from_utf8_lossy(&theirs.stderr);
    assert!(theirs.status.success(), "distribution's garbage-collect: {text}");
    assert!(
        text.contains("0 blobs and 0 manifests eligible for deletion"),
        "distribution's collector after wharf's:\n{text}"
    );
    // A second run of wharf's finds nothing either.
    let again = garbage_collect(g.wharf_env(0, &format!("/{root}")));
    assert!(again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("0 blobs and 0 manifests eligible for deletion"),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );
}
