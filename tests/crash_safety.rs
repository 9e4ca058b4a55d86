//! Crash safety: many concurrent pushes (raw HTTP clients doing monolithic, chunked and streamed
//! uploads and manifest PUTs, and skopeo copying OCI images), the server killed with SIGKILL at
//! random moments and restarted on the same root, round after round. After every restart each
//! push that was acknowledged (201) must be pullable with the right bytes; at the end every blob
//! file on disk must hash to its name, every tag must point at a complete manifest, and the
//! upload-purging job must have removed the sessions the kills abandoned.

mod common;

use common::images::{self, OciLayout, Skopeo};
use common::{sha256_digest, Wharf};
use futures::StreamExt;
use rand::Rng;
use reqwest::{Method, StatusCode, Url};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
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

/// Everything the server acknowledged with a 201, to be checked after every restart.
#[derive(Default)]
struct Ledger {
    blobs: Vec<AckedBlob>,
    manifests: Vec<AckedManifest>,
}

#[derive(Clone, Debug)]
struct AckedBlob {
    repo: String,
    digest: String,
}

#[derive(Clone, Debug)]
struct AckedManifest {
    repo: String,
    tag: String,
    digest: String,
    /// None when a client other than ours (skopeo) sent it: then only the digest is known.
    bytes: Option<Vec<u8>>,
}

type SharedLedger = Arc<Mutex<Ledger>>;

fn ack_blob(ledger: &SharedLedger, repo: &str, digest: &str) {
    ledger.lock().unwrap().blobs.push(AckedBlob {
        repo: repo.into(),
        digest: digest.into(),
    });
}

/// A transport error ends the client: the server is gone until the next round.
struct Gone;

struct Client {
    http: reqwest::Client,
    base: Url,
    ledger: SharedLedger,
    id: String,
}

impl Client {
    async fn send(&self, method: Method, url: Url, ctype: Option<&str>, body: reqwest::Body) -> Result<(StatusCode, Option<String>), Gone> {
        let mut req = self.http.request(method, url).body(body);
        if let Some(c) = ctype {
            req = req.header("Content-Type", c);
        }
        let resp = req.send().await.map_err(|_| Gone)?;
        let status = resp.status();
        let location = resp.headers().get("Location").and_then(|v| v.to_str().ok()).map(str::to_owned);
        resp.bytes().await.map_err(|_| Gone)?;
        Ok((status, location))
    }

    fn url(&self, target: &str) -> Url {
        self.base.join(target).expect("url")
    }

    fn with_digest(&self, location: &str, digest: &str) -> Url {
        let mut u = self.url(location);
        u.query_pairs_mut().append_pair("digest", digest);
        u
    }

    /// A blob in one request: `POST ?digest=`.
    async fn monolithic(&self, repo: &str, data: Vec<u8>) -> Result<String, Gone> {
        let digest = sha256_digest(&data);
        let mut url = self.url(&format!("/v2/{repo}/blobs/uploads/"));
        url.query_pairs_mut().append_pair("digest", &digest);
        let (status, _) = self.send(Method::POST, url, Some("application/octet-stream"), data.into()).await?;
        self.expect_created(status, repo, &digest, "monolithic")
    }

    /// POST, PATCH chunks with `Content-Range`, then PUT `?digest=` with the last chunk.
    async fn chunked(&self, repo: &str, data: Vec<u8>) -> Result<String, Gone> {
        let digest = sha256_digest(&data);
        let mut location = self.start(repo).await?;
        let chunk = (data.len() / 3).max(1);
        let mut at = 0;
        while data.len() - at > chunk {
            let end = at + chunk;
            let url = self.url(&location);
            let resp = self
                .http
                .patch(url)
                .header("Content-Type", "application/octet-stream")
                .header("Content-Range", format!("{at}-{}", end - 1))
                .body(data[at..end].to_vec())
                .send()
                .await
                .map_err(|_| Gone)?;
            assert_eq!(resp.status(), StatusCode::ACCEPTED, "PATCH chunk {at}-{end} of {repo}");
            location = resp.headers()["Location"].to_str().unwrap().to_string();
            resp.bytes().await.map_err(|_| Gone)?;
            at = end;
        }
        let url = self.with_digest(&location, &digest);
        let (status, _) = self
            .send(Method::PUT, url, Some("application/octet-stream"), data[at..].to_vec().into())
            .await?;
        self.expect_created(status, repo, &digest, "chunked")
    }

    /// POST, one PATCH whose body streams in pieces with pauses (chunked transfer encoding, so
    /// kills land mid-body), then an empty PUT `?digest=`.
    async fn streamed(&self, repo: &str, data: Vec<u8>) -> Result<String, Gone> {
        let digest = sha256_digest(&data);
        let location = self.start(repo).await?;
        let pieces: Vec<Vec<u8>> = data.chunks(16 * 1024).map(<[u8]>::to_vec).collect();
        let body = futures::stream::iter(pieces).then(|p| async move {
            tokio::time::sleep(Duration::from_millis(2)).await;
            Ok::<_, std::io::Error>(p)
        });
        let (status, location) = self
            .send(
                Method::PATCH,
                self.url(&location),
                Some("application/octet-stream"),
                reqwest::Body::wrap_stream(body),
            )
            .await?;
        assert_eq!(status, StatusCode::ACCEPTED, "streamed PATCH to {repo}");
        let url = self.with_digest(&location.expect("PATCH Location"), &digest);
        let (status, _) = self.send(Method::PUT, url, None, Vec::new().into()).await?;
        self.expect_created(status, repo, &digest, "streamed")
    }

    /// Starts a session and sends part of a blob, then walks away: the purge job's work.
    async fn abandoned(&self, repo: &str) -> Result<(), Gone> {
        let location = self.start(repo).await?;
        let (status, _) = self
            .send(Method::PATCH, self.url(&location), None, images::random_bytes(4096).into())
            .await?;
        assert_eq!(status, StatusCode::ACCEPTED, "PATCH of an upload to abandon");
        Ok(())
    }

    async fn start(&self, repo: &str) -> Result<String, Gone> {
        let (status, location) = self
            .send(
                Method::POST,
                self.url(&format!("/v2/{repo}/blobs/uploads/")),
                None,
                Vec::new().into(),
            )
            .await?;
        assert_eq!(status, StatusCode::ACCEPTED, "POST upload to {repo}");
        Ok(location.expect("upload Location"))
    }

    fn expect_created(&self, status: StatusCode, repo: &str, digest: &str, how: &str) -> Result<String, Gone> {
        assert_eq!(status, StatusCode::CREATED, "{how} upload of {digest} to {repo}");
        ack_blob(&self.ledger, repo, digest);
        Ok(digest.to_string())
    }

    /// A config and one or two layers, each uploaded a different way, then the manifest under a
    /// tag of its own.
    async fn image(&self, repo: &str, n: usize) -> Result<(), Gone> {
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Env": [format!("N={}-{n}", self.id)]},
            "rootfs": {"type": "layers", "diff_ids": []},
        }))
        .unwrap();
        let config_len = config.len();
        let config_digest = self.monolithic(repo, config).await?;
        let mut layers = Vec::new();
        let layer_count = rand::thread_rng().gen_range(1..=2);
        for i in 0..layer_count {
            let data = random_blob();
            let len = data.len();
            let digest = match i {
                0 => self.chunked(repo, data).await?,
                _ => self.streamed(repo, data).await?,
            };
            layers.push(serde_json::json!({"mediaType": images::OCI_LAYER_GZIP, "digest": digest, "size": len}));
        }
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": images::OCI_MANIFEST,
            "config": {"mediaType": images::OCI_CONFIG, "digest": config_digest, "size": config_len},
            "layers": layers,
        }))
        .unwrap();
        let tag = format!("{}-{n}", self.id);
        let url = self.url(&format!("/v2/{repo}/manifests/{tag}"));
        let (status, _) = self
            .send(Method::PUT, url, Some(images::OCI_MANIFEST), manifest.clone().into())
            .await?;
        assert_eq!(status, StatusCode::CREATED, "manifest PUT {repo}:{tag}");
        self.ledger.lock().unwrap().manifests.push(AckedManifest {
            repo: repo.into(),
            tag,
            digest: sha256_digest(&manifest),
            bytes: Some(manifest),
        });
        Ok(())
    }

    /// Pushes until the server disappears (or `stop` is raised).
    async fn run(self, stop: Arc<AtomicBool>) {
        let repo = format!("crash/raw{}", &self.id[..self.id.find('-').unwrap_or(self.id.len())]);
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let pick = rand::thread_rng().gen_range(0..10);
            let step = match pick {
                0..=1 => self.monolithic(&repo, random_blob()).await.map(drop),
                2..=3 => self.chunked(&repo, random_blob()).await.map(drop),
                4..=5 => self.streamed(&repo, random_blob()).await.map(drop),
                6 => self.abandoned(&repo).await,
                _ => self.image(&repo, n).await,
            };
            if step.is_err() {
                return;
            }
        }
    }
}

/// Mostly small blobs, some up to a few hundred KiB, one in twenty empty.
fn random_blob() -> Vec<u8> {
    let mut rng = rand::thread_rng();
    let len = match rng.gen_range(0..20) {
        0 => 0,
        1..=14 => rng.gen_range(1..32 * 1024),
        _ => rng.gen_range(32 * 1024..400 * 1024),
    };
    images::random_bytes(len)
}

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

/// SIGKILL, no warning: what a crash or the OOM killer does.
fn kill(w: &mut Wharf) {
    let mut child = w.child.take().expect("server child");
    child.kill().expect("SIGKILL wharf");
    child.wait().expect("reap wharf");
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

/// What checking found wrong, to be reported together at the end.
#[derive(Default)]
struct Findings {
    lost: Vec<String>,
    corrupt: Vec<String>,
}

struct Checker {
    http: reqwest::Client,
    base: Url,
}

impl Checker {
    fn new(w: &Wharf) -> Checker {
        Checker {
            http: reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap(),
            base: Url::parse(&w.url).unwrap(),
        }
    }

    async fn get(&self, path: &str, accept: bool) -> (StatusCode, Option<String>, Vec<u8>) {
        let mut req = self.http.get(self.base.join(path).unwrap());
        if accept {
            req = req.header("Accept", images::ACCEPT_ALL_MANIFESTS);
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("GET {path} after restart: {e}"));
        let status = resp.status();
        let digest = resp
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        (status, digest, resp.bytes().await.unwrap().to_vec())
    }

    async fn blob(&self, repo: &str, digest: &str, f: &mut Findings) {
        let (status, _, body) = self.get(&format!("/v2/{repo}/blobs/{digest}"), false).await;
        if status != StatusCode::OK {
            f.lost.push(format!("blob {repo}@{digest}: {status}"));
        } else if sha256_digest(&body) != digest {
            f.corrupt.push(format!(
                "blob {repo}@{digest} served {} bytes hashing to something else",
                body.len()
            ));
        }
    }

    /// The manifest by tag and by digest, and every blob or child it references.
    async fn manifest(&self, m: &AckedManifest, f: &mut Findings) {
        for reference in [&m.tag, &m.digest] {
            let (status, digest, body) = self.get(&format!("/v2/{}/manifests/{reference}", m.repo), true).await;
            if status != StatusCode::OK {
                f.lost.push(format!("manifest {}:{reference}: {status}", m.repo));
                return;
            }
            if digest.as_deref() != Some(m.digest.as_str()) || sha256_digest(&body) != m.digest {
                f.lost.push(format!("manifest {}:{reference} is not {}", m.repo, m.digest));
                return;
            }
            if m.bytes.as_ref().is_some_and(|b| b != &body) {
                f.corrupt
                    .push(format!("manifest {}:{reference} bytes differ from what was pushed", m.repo));
            }
        }
        self.references(&m.repo, &m.digest, f).await;
    }

    /// Everything a manifest refers to is there (children recursively).
    async fn references(&self, repo: &str, digest: &str, f: &mut Findings) {
        let (status, _, body) = self.get(&format!("/v2/{repo}/manifests/{digest}"), true).await;
        if status != StatusCode::OK {
            f.lost.push(format!("manifest {repo}@{digest}: {status}"));
            return;
        }
        if images::is_index(&body) {
            for child in images::child_manifests(&body) {
                Box::pin(self.references(repo, &child, f)).await;
            }
        } else {
            for d in images::referenced_digests(&body) {
                self.blob(repo, &d, f).await;
            }
        }
    }

    async fn ledger(&self, acked: &[AckedBlob], manifests: &[AckedManifest], f: &mut Findings) {
        for b in acked {
            self.blob(&b.repo, &b.digest, f).await;
        }
        for m in manifests {
            self.manifest(m, f).await;
        }
    }

    /// Every tag of every repository resolves to a manifest whose references all exist.
    async fn every_tag(&self, v2: &Path, f: &mut Findings) -> usize {
        let mut tags = 0;
        for repo in repositories(&v2.join("repositories")) {
            let (status, _, body) = self.get(&format!("/v2/{repo}/tags/list"), false).await;
            assert_eq!(status, StatusCode::OK, "tags/list of {repo}");
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            for tag in v["tags"].as_array().into_iter().flatten().filter_map(|t| t.as_str()) {
                tags += 1;
                let (status, digest, _) = self.get(&format!("/v2/{repo}/manifests/{tag}"), true).await;
                match digest.filter(|_| status == StatusCode::OK) {
                    Some(d) => self.references(&repo, &d, f).await,
                    None => f.lost.push(format!("tag {repo}:{tag} points at nothing: {status}")),
                }
            }
        }
        tags
    }
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
                let client = Client {
                    http: http.clone(),
                    base: base.clone(),
                    ledger: ledger.clone(),
                    id: format!("{c}-r{round}"),
                };
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
                    tag: "v1".into(),
                    digest,
                    bytes: None,
                });
            }
        }

        w = start(&root, &config);
        abandoned_seen += upload_sessions(&v2).len();
        // What this round acknowledged must be there now; everything is checked again at the end.
        let (blobs, manifests) = {
            let l = ledger.lock().unwrap();
            (l.blobs[checked.0..].to_vec(), l.manifests[checked.1..].to_vec())
        };
        checked = (checked.0 + blobs.len(), checked.1 + manifests.len());
        Checker::new(&w).ledger(&blobs, &manifests, &mut findings).await;
        assert!(
            findings.lost.is_empty() && findings.corrupt.is_empty(),
            "round {round}: lost {:?} corrupt {:?}",
            findings.lost,
            findings.corrupt
        );
    }

    // The final server runs undisturbed: everything acknowledged, every tag, every blob file.
    let checker = Checker::new(&w);
    let (blobs, manifests) = {
        let l = ledger.lock().unwrap();
        (l.blobs.clone(), l.manifests.clone())
    };
    checker.ledger(&blobs, &manifests, &mut findings).await;
    let tags = checker.every_tag(&v2, &mut findings).await;
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
