//! Crash safety: many concurrent pushes (raw HTTP clients doing monolithic, chunked and streamed
//! uploads, manifest PUTs and tag moves, and skopeo copying OCI images), the server killed with SIGKILL at
//! random moments and restarted on the same root, round after round. After every restart each
//! push that was acknowledged (201) must be pullable with the right bytes; at the end every blob
//! file on disk must hash to its name, every tag must point at a complete manifest, and the
//! upload-purging job must have removed the sessions the kills abandoned.

mod common;

use common::crash::{kill, AckedManifest, Checker, Client, Findings, SharedLedger};
use common::images::{self, OciLayout, Skopeo};
use common::{sha256_digest, Wharf};
use rand::Rng;
use reqwest::Url;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Rounds run by default (and in CI); `WHARF_CRASH_ROUNDS` changes it for local digging.
const DEFAULT_ROUNDS: usize = 200;
/// Every this many rounds, a skopeo copy of an OCI image joins the raw clients.
const SKOPEO_EVERY: usize = 10;
/// Concurrent raw HTTP clients per round.
const RAW_CLIENTS: usize = 6;
/// The whole test gives up (and fails) past this, so a hang cannot eat the CI budget.
const TIME_LIMIT: Duration = Duration::from_secs(900);
/// Upload sessions older than this are purged; rounds last well under it.
const PURGE_AGE_SECS: u64 = 4;

fn config_file(dir: &Path) -> PathBuf {
    let path = dir.join("config.yml");
    let yaml = format!(
        "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /unused\n  maintenance:\n    uploadpurging:\n      enabled: true\n      age: {PURGE_AGE_SECS}s\n      interval: 1s\n      dryrun: false\n"
    );
    std::fs::write(&path, yaml).unwrap();
    path
}

fn start(root: &Path, config: &Path) -> Wharf {
    Wharf::start_on_root(root, &[config.to_str().unwrap()], &[("WHARF_LOG", "wharf=warn")])
}

/// One prepared OCI layout per skopeo round, so image creation (gzip) stays out of the rounds.
struct SkopeoImage {
    layout: OciLayout,
    digest: String,
}

fn skopeo_copy(sk: &Skopeo, img: &SkopeoImage, addr: &str, repo: &str) -> Child {
    let mut cmd = sk.cmd("copy");
    cmd.arg(img.layout.reference("v1"))
        .arg(format!("docker://{addr}/{repo}:v1"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd.spawn().expect("spawn skopeo")
}

/// Repository names under `repositories/` (directories holding `_manifests`).
fn repositories(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((d, name)) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let file = e.file_name().to_string_lossy().into_owned();
            if file == "_manifests" {
                out.push(name.clone());
            } else if !file.starts_with('_') && e.path().is_dir() {
                let child = if name.is_empty() { file } else { format!("{name}/{file}") };
                stack.push((e.path(), child));
            }
        }
    }
    out.sort();
    out
}

/// Every `blobs/<alg>/<xx>/<hex>/data` hashes to its name, and a blob directory holds nothing
/// but `data` (no partial or temporary file is ever visible there). Returns the blob count.
fn check_blob_files(v2: &Path, f: &mut Findings) -> usize {
    let dir = v2.join("blobs/sha256");
    let mut count = 0;
    for prefix in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        for blob in std::fs::read_dir(prefix.path()).unwrap().flatten() {
            let hex = blob.file_name().to_string_lossy().into_owned();
            let entries: Vec<String> = std::fs::read_dir(blob.path())
                .unwrap()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            // A crash between making the directory and renaming the verified data into it
            // leaves it empty: no blob, and nothing a reader could mistake for one.
            if entries.is_empty() {
                continue;
            }
            if entries != ["data"] {
                f.corrupt.push(format!("blob directory {hex} holds {entries:?}"));
                continue;
            }
            count += 1;
            let bytes = std::fs::read(blob.path().join("data")).unwrap();
            if sha256_digest(&bytes) != format!("sha256:{hex}") {
                f.corrupt
                    .push(format!("blob file {hex} ({} bytes) does not hash to its name", bytes.len()));
            }
        }
    }
    count
}

/// Upload sessions still on disk, as `repo/_uploads/id` paths.
fn upload_sessions(v2: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![v2.join("repositories")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if !e.path().is_dir() {
                continue;
            }
            if e.file_name() == "_uploads" {
                for s in std::fs::read_dir(e.path()).into_iter().flatten().flatten() {
                    out.push(s.path().strip_prefix(v2).unwrap().display().to_string());
                }
            } else {
                stack.push(e.path());
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_pushes_survive_sigkill_and_blobs_never_corrupt() {
    let Some(sk) = Skopeo::new() else { return };
    let rounds: usize = std::env::var("WHARF_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_ROUNDS);
    let began = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data");
    let v2 = root.join("docker/registry/v2");
    let config = config_file(tmp.path());

    let skopeo_images: Vec<SkopeoImage> = (0..rounds.div_ceil(SKOPEO_EVERY))
        .map(|i| {
            let mut layout = OciLayout::create(&tmp.path().join(format!("layout{i}")));
            let img = layout.add_image_sized("amd64", &[3000, 120_000]);
            layout.tag_image("v1", &img);
            SkopeoImage {
                layout,
                digest: img.digest,
            }
        })
        .collect();

    let ledger: SharedLedger = Arc::default();
    let mut findings = Findings::default();
    let mut checked = (0, 0);
    let mut skopeo_runs = (0, 0);
    // Sessions the kills left on disk, counted at every restart (the purge job removes them).
    let mut abandoned_seen = 0;
    let mut w = start(&root, &config);
    for round in 0..rounds {
        assert!(began.elapsed() < TIME_LIMIT, "crash test ran past {TIME_LIMIT:?} at round {round}");
        let stop = Arc::new(AtomicBool::new(false));
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let base = Url::parse(&w.url).unwrap();
        let clients: Vec<_> = (0..RAW_CLIENTS)
            .map(|c| {
                let client = Client::new(http.clone(), vec![base.clone()], ledger.clone(), format!("{c}-r{round}"));
                tokio::spawn(client.run(stop.clone()))
            })
            .collect();
        let with_skopeo = round % SKOPEO_EVERY == SKOPEO_EVERY - 1;
        let skopeo = with_skopeo.then(|| {
            let img = &skopeo_images[round / SKOPEO_EVERY];
            let repo = format!("crash/skopeo{round}");
            (skopeo_copy(&sk, img, &w.addr, &repo), repo, img.digest.clone())
        });
        // Skopeo rounds run long enough for the copy to finish some of the time.
        let delay = if with_skopeo {
            rand::thread_rng().gen_range(100..2500)
        } else {
            rand::thread_rng().gen_range(20..400)
        };
        tokio::time::sleep(Duration::from_millis(delay)).await;
        kill(&mut w);
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            c.await.expect("client task panicked (a server answer was wrong)");
        }
        if let Some((mut child, repo, digest)) = skopeo {
            skopeo_runs.0 += 1;
            let status = tokio::task::spawn_blocking(move || {
                let ok = images::wait_until(Duration::from_secs(60), || matches!(child.try_wait(), Ok(Some(_))));
                if !ok {
                    let _ = child.kill();
                }
                child.wait().unwrap()
            })
            .await
            .unwrap();
            if status.success() {
                skopeo_runs.1 += 1;
                ledger.lock().unwrap().manifests.push(AckedManifest {
                    repo,
                    tag: Some("v1".into()),
                    digest,
                    bytes: None,
                });
            }
        }

        w = start(&root, &config);
        abandoned_seen += upload_sessions(&v2).len();
        // What this round acknowledged must be there now; everything is checked again at the end.
        let ((blobs, manifests), moves) = {
            let l = ledger.lock().unwrap();
            (l.since(checked), l.moves.clone())
        };
        checked = (checked.0 + blobs.len(), checked.1 + manifests.len());
        let checker = Checker::new(&w.url);
        checker.ledger(&blobs, &manifests, &mut findings).await;
        checker.moves(&moves, &mut findings).await;
        assert!(
            findings.is_clean(),
            "round {round}: lost {:?} corrupt {:?}",
            findings.lost,
            findings.corrupt
        );
    }

    // The final server runs undisturbed: everything acknowledged, every tag, every blob file.
    let checker = Checker::new(&w.url);
    let (blobs, manifests) = ledger.lock().unwrap().since((0, 0));
    checker.ledger(&blobs, &manifests, &mut findings).await;
    let tags = checker.every_tag(&repositories(&v2.join("repositories")), &mut findings).await;
    let blob_files = check_blob_files(&v2, &mut findings);

    // Sessions left by the kills go once they are older than the purge age.
    let before_purge = upload_sessions(&v2).len();
    let purged = images::wait_until(Duration::from_secs(PURGE_AGE_SECS + 15), || upload_sessions(&v2).is_empty());
    let left = upload_sessions(&v2);

    let unique_blobs: BTreeSet<&str> = blobs.iter().map(|b| b.digest.as_str()).collect();
    println!(
        "crash safety: rounds {rounds}, pushes acknowledged {} (blobs {}, {} unique; manifests {}), skopeo copies {} finished of {}, \
         pushes lost {}, corrupt blobs {}, blob files checked {blob_files}, tags checked {tags}, \
         abandoned uploads seen at restarts {abandoned_seen}, {before_purge} before the final purge wait and {} after, elapsed {:.1}s",
        blobs.len() + manifests.len(),
        blobs.len(),
        unique_blobs.len(),
        manifests.len(),
        skopeo_runs.1,
        skopeo_runs.0,
        findings.lost.len(),
        findings.corrupt.len(),
        left.len(),
        began.elapsed().as_secs_f64()
    );
    assert!(findings.lost.is_empty(), "acknowledged pushes lost: {:?}", findings.lost);
    assert!(findings.corrupt.is_empty(), "corrupt blobs: {:?}", findings.corrupt);
    assert!(
        blobs.len() > rounds,
        "too few pushes were acknowledged to mean anything: {}",
        blobs.len()
    );
    assert!(
        manifests.len() > rounds / 10,
        "too few manifests were acknowledged: {}",
        manifests.len()
    );
    assert!(
        skopeo_runs.1 > 0,
        "no skopeo copy finished before its kill in {} tries",
        skopeo_runs.0
    );
    assert!(
        abandoned_seen > 0,
        "the kills left no abandoned upload: the purge check would prove nothing"
    );
    assert!(purged, "abandoned uploads were not purged: {left:?}");
}
