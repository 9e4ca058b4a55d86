//! Garbage collection racing pushes, in the spirit of the crash test: raw-HTTP pushers and
//! skopeo push while collections with no delay and `deleteuntagged` run back to back, and the
//! server is SIGKILLed during sweeps and restarted. Every acknowledged push must survive with
//! all its content; no tag may point at missing content; no blob may be corrupt.

mod common;

use common::api::*;
use common::images::{OciLayout, Skopeo};
use common::Wharf;
use reqwest::Method;
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ROUNDS: usize = 4;
const PUSHERS: usize = 3;
const PUSHES_PER_ROUND: usize = 5;
const ATTEMPTS: usize = 30;

/// What a pusher knows of its tag: the digest last acknowledged and those sent after it, whose
/// acknowledgement a kill may have swallowed.
#[derive(Default, Clone)]
struct TagState {
    acked: Option<String>,
    unacked: Vec<String>,
}

type Tags = Arc<Mutex<BTreeMap<(String, String), TagState>>>;

#[derive(Default)]
struct Counts {
    acked: AtomicU64,
    retried: AtomicU64,
    gc_runs: AtomicU64,
    gc_deleted_blobs: AtomicU64,
}

async fn try_blob(reg: &Registry, repo: &str, data: &[u8]) -> Result<(), String> {
    let digest = sha256(data);
    // As docker does: a blob the repository has is not sent again.
    let head = reg
        .try_call(Method::HEAD, reg.url(&format!("/v2/{repo}/blobs/{digest}")), &[], vec![])
        .await
        .map_err(|e| e.to_string())?;
    if head.status == 200 {
        return Ok(());
    }
    let start = reg
        .try_call(
            Method::POST,
            reg.url(&format!("/v2/{repo}/blobs/uploads/")),
            &[("Content-Length", "0")],
            vec![],
        )
        .await
        .map_err(|e| e.to_string())?;
    if start.status != 202 {
        return Err(format!("upload start {}", start.status));
    }
    let url = reg.url_with(start.location(), &[("digest", &digest)]);
    let put = reg
        .try_call(Method::PUT, url, &[("Content-Type", "application/octet-stream")], data.to_vec())
        .await
        .map_err(|e| e.to_string())?;
    if put.status != 201 {
        return Err(format!("upload {}", put.status));
    }
    Ok(())
}

/// One image push (blobs, then the manifest by tag); Ok on 201.
async fn try_push(reg: &Registry, repo: &str, tag: &str, blobs: &[Vec<u8>], manifest: &[u8]) -> Result<(), String> {
    for b in blobs {
        try_blob(reg, repo, b).await?;
    }
    let put = reg
        .try_call(
            Method::PUT,
            reg.url(&format!("/v2/{repo}/manifests/{tag}")),
            &[("Content-Type", OCI_MANIFEST)],
            manifest.to_vec(),
        )
        .await
        .map_err(|e| e.to_string())?;
    match put.status {
        201 => Ok(()),
        s => Err(format!("manifest {s}: {}", String::from_utf8_lossy(&put.body))),
    }
}

async fn raw_pusher(url: String, id: usize, round: usize, shared: Arc<Vec<Vec<u8>>>, tags: Tags, counts: Arc<Counts>) {
    let reg = Registry::basic_at(&url, "race", "race", "gc-race-pusher");
    let (repo, tag) = (format!("race/p{id}"), "latest".to_string());
    for n in 0..PUSHES_PER_ROUND {
        let config = format!(r#"{{"architecture":"amd64","os":"linux","pusher":{id},"round":{round},"n":{n}}}"#).into_bytes();
        let own = random_bytes(8192);
        let layers = [shared[n % shared.len()].clone(), own];
        let descs: Vec<Desc> = layers.iter().map(|l| Desc::of(OCI_LAYER, l)).collect();
        let manifest = to_bytes(&image_manifest(OCI_MANIFEST, &Desc::of(OCI_CONFIG, &config), &descs));
        let digest = sha256(&manifest);
        let blobs = [config, layers[0].clone(), layers[1].clone()];
        for attempt in 0..ATTEMPTS {
            tags.lock()
                .unwrap()
                .entry((repo.clone(), tag.clone()))
                .or_default()
                .unacked
                .push(digest.clone());
            match try_push(&reg, &repo, &tag, &blobs, &manifest).await {
                Ok(()) => {
                    let mut t = tags.lock().unwrap();
                    let s = t.get_mut(&(repo.clone(), tag.clone())).unwrap();
                    s.acked = Some(digest.clone());
                    s.unacked.clear();
                    counts.acked.fetch_add(1, Ordering::SeqCst);
                    break;
                }
                Err(why) => {
                    counts.retried.fetch_add(1, Ordering::SeqCst);
                    assert!(attempt + 1 < ATTEMPTS, "push never went through: {why}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// skopeo pushes a fresh image under its own tag per round, retrying what a kill interrupted.
fn skopeo_pusher(skopeo: &Skopeo, addr: &str, round: usize, tags: &Tags, counts: &Counts) {
    let dir = tempfile::tempdir().unwrap();
    let mut layout = OciLayout::create(dir.path());
    let img = layout.add_image("amd64", 2);
    layout.tag_image("v1", &img);
    let tag = format!("r{round}");
    let dest = format!("docker://{addr}/race/skopeo:{tag}");
    for attempt in 0..ATTEMPTS {
        let out = common::images::run_unchecked(skopeo.cmd("copy").arg(layout.reference("v1")).arg(&dest));
        let key = ("race/skopeo".to_string(), tag.clone());
        if out.status.success() {
            let raw = common::images::run_unchecked(skopeo.cmd("inspect").arg("--raw").arg(&dest));
            if raw.status.success() {
                tags.lock().unwrap().entry(key).or_default().acked = Some(sha256(&raw.stdout));
                counts.acked.fetch_add(1, Ordering::SeqCst);
                return;
            }
        }
        counts.retried.fetch_add(1, Ordering::SeqCst);
        assert!(
            attempt + 1 < ATTEMPTS,
            "skopeo never pushed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

async fn gc_loop(url: String, stop: Arc<AtomicBool>, counts: Arc<Counts>) {
    let reg = Registry::basic_at(&url, "race", "race", "gc-race-collector");
    let mut runs = 0;
    while !stop.load(Ordering::SeqCst) && runs < 10_000 {
        runs += 1;
        let url = reg.url_with("/v2/_wharf/gc", &[("deleteuntagged", "true")]);
        match reg.try_call(Method::POST, url, &[], vec![]).await {
            Ok(r) if r.status == 200 => {
                counts.gc_runs.fetch_add(1, Ordering::SeqCst);
                let n = r.json()["blobs_deleted"].as_array().map_or(0, Vec::len);
                counts.gc_deleted_blobs.fetch_add(n as u64, Ordering::SeqCst);
                // A breath between runs: a push gets at least this long (and a whole run) from
                // asking about a blob to sending the manifest naming it (`gc::fence`).
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

fn serve(config: &Path, root: &Path) -> Wharf {
    let mut w = Wharf::launch_args(&[], &[&config.display().to_string()], &[]);
    w.root = root.to_path_buf();
    w
}

/// Every blob file under the root hashes to its name.
fn corrupt_blobs(root: &Path) -> usize {
    walk(&root.join("docker/registry/v2/blobs"))
        .iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "data"))
        .filter(|p| {
            let hex = p.parent().unwrap().file_name().unwrap().to_string_lossy().into_owned();
            sha256(&std::fs::read(p).unwrap()) != format!("sha256:{hex}")
        })
        .count()
}

/// Whether a manifest and every blob it names pull complete and intact.
async fn complete(reg: &Registry, repo: &str, reference: &str) -> bool {
    let m = reg.get_manifest(repo, reference).await;
    if m.status != 200 {
        return false;
    }
    let doc: Value = serde_json::from_slice(&m.body).unwrap();
    let mut blobs: Vec<&Value> = doc["layers"].as_array().into_iter().flatten().collect();
    blobs.extend(doc.get("config"));
    for b in blobs {
        let d = b["digest"].as_str().unwrap();
        let r = reg.get(&format!("/v2/{repo}/blobs/{d}")).await;
        if r.status != 200 || sha256(&r.body) != d {
            return false;
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pushes_racing_collections_and_kills_lose_nothing() {
    let with_skopeo = common::require_tool("skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let root: PathBuf = tmp.path().join("data");
    let config = tmp.path().join("config.yml");
    let addr = format!("127.0.0.1:{}", common::free_port());
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  maintenance:\n    gc:\n      delay: 0s\nhttp:\n  addr: {addr}\n",
            root.display()
        ),
    )
    .unwrap();
    let mut w = serve(&config, &root);
    let url = w.url.clone();
    let shared: Arc<Vec<Vec<u8>>> = Arc::new((0..3).map(|_| random_bytes(16_384)).collect());
    let tags: Tags = Arc::default();
    let counts = Arc::new(Counts::default());
    let mut kills = 0;
    for round in 0..ROUNDS {
        let stop = Arc::new(AtomicBool::new(false));
        let collector = tokio::spawn(gc_loop(url.clone(), stop.clone(), counts.clone()));
        let pushers: Vec<_> = (0..PUSHERS)
            .map(|id| tokio::spawn(raw_pusher(url.clone(), id, round, shared.clone(), tags.clone(), counts.clone())))
            .collect();
        let sk = with_skopeo.then(|| {
            let (addr, tags, counts) = (addr.clone(), tags.clone(), counts.clone());
            std::thread::spawn(move || skopeo_pusher(&Skopeo::new().unwrap(), &addr, round, &tags, &counts))
        });
        // Kill while collections run (one is running nearly all the time), then serve again.
        tokio::time::sleep(Duration::from_millis(300 + 150 * round as u64)).await;
        let mut child = w.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
        w = serve(&config, &root);
        for p in pushers {
            p.await.unwrap();
        }
        if let Some(t) = sk {
            t.join().unwrap();
        }
        stop.store(true, Ordering::SeqCst);
        collector.await.unwrap();
    }
    // One last collection with nothing racing it, then check everything.
    let reg = Registry::new(&w);
    reg.call(
        Method::POST,
        reg.url_with("/v2/_wharf/gc", &[("deleteuntagged", "true")]),
        &[],
        vec![],
    )
    .await
    .expect(200);
    let mut lost = 0;
    let acknowledged = tags.lock().unwrap().clone();
    for ((repo, tag), state) in acknowledged {
        let served = reg.get_manifest(&repo, &tag).await;
        let digest = served.header("Docker-Content-Digest").unwrap_or_default().to_string();
        let known: HashSet<&String> = state.acked.iter().chain(&state.unacked).collect();
        if served.status != 200 || !known.contains(&digest) || !complete(&reg, &repo, &tag).await {
            eprintln!(
                "LOST: {repo}:{tag} serves {} {digest}, acknowledged {:?}",
                served.status, state.acked
            );
            lost += 1;
        }
    }
    let mut dangling = 0;
    let mut tags_checked = 0;
    for repo in strings(&reg.get("/v2/_catalog").await.json()["repositories"]) {
        for tag in strings(&reg.get(&format!("/v2/{repo}/tags/list")).await.json()["tags"]) {
            tags_checked += 1;
            if !complete(&reg, &repo, &tag).await {
                eprintln!("DANGLING: {repo}:{tag}");
                dangling += 1;
            }
        }
    }
    let corrupt = corrupt_blobs(&root);
    println!(
        "gc race: {} acknowledged pushes, {} retried attempts, {} collections ({} blobs deleted), {kills} kills, {tags_checked} tags checked: \
         {lost} acknowledged pushes lost, {dangling} tags pointing at missing content, {corrupt} corrupt blobs",
        counts.acked.load(Ordering::SeqCst),
        counts.retried.load(Ordering::SeqCst),
        counts.gc_runs.load(Ordering::SeqCst),
        counts.gc_deleted_blobs.load(Ordering::SeqCst),
    );
    assert!(
        counts.gc_runs.load(Ordering::SeqCst) > 0 && counts.gc_deleted_blobs.load(Ordering::SeqCst) > 0,
        "collections ran and deleted"
    );
    assert_eq!((lost, dangling, corrupt), (0, 0, 0));
}
