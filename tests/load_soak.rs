//! Load and soak: 64 concurrent clients mix pushes (monolithic and chunked) and pulls (whole,
//! ranged, HEAD) of random-sized blobs, manifests by tag and by digest, and tag lists against
//! one server on 127.0.0.1, for a bounded time. Every response is checked (pulled bytes against
//! their digest, ranges against the bytes pushed), and the run prints requests served, errors
//! (must be 0), p50/p99 latency and the server's RSS sampled over time, which must stay flat:
//! after a warm-up third, the last third of the run may not grow past the middle one by more
//! than a small bound.
//!
//! WHARF_SOAK_SECS sets the duration (default 30); WHARF_SOAK_CLIENTS the client count
//! (default 64). For the figures in the README: `WHARF_SOAK_SECS=300 cargo test --release
//! --test load_soak -- --nocapture`.

mod common;

use common::api::*;
use common::Wharf;
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use reqwest::Method;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const REPOS: usize = 8;
/// Pushed blobs remembered for pulls; beyond this, new ones replace random old ones.
const POOL_CAP: usize = 4096;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A pushed blob, regenerable from its seed so ranges can be checked without keeping bytes.
#[derive(Clone)]
struct BlobRec {
    repo: usize,
    seed: u64,
    size: usize,
    digest: String,
}

#[derive(Clone)]
struct ManifestRec {
    repo: usize,
    tag: String,
    digest: String,
    bytes: Arc<Vec<u8>>,
}

fn blob_bytes(seed: u64, size: usize) -> Vec<u8> {
    let mut v = vec![0u8; size];
    StdRng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

fn repo_name(i: usize) -> String {
    format!("soak/repo{i}")
}

/// Mostly small blobs, some medium, a few of a few MiB: the mix of configs and layers.
fn blob_size(rng: &mut StdRng) -> usize {
    match rng.gen_range(0..100) {
        0..=59 => rng.gen_range(1..16 * 1024),
        60..=94 => rng.gen_range(16 * 1024..256 * 1024),
        _ => rng.gen_range(256 * 1024..3 * 1024 * 1024),
    }
}

#[derive(Default)]
struct Shared {
    blobs: Mutex<Vec<BlobRec>>,
    manifests: Mutex<Vec<ManifestRec>>,
    requests: AtomicU64,
    errors: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    first_errors: Mutex<Vec<String>>,
}

impl Shared {
    fn fail(&self, what: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_errors.lock().unwrap();
        if first.len() < 20 {
            first.push(what);
        }
    }

    fn remember_blob(&self, rec: BlobRec, rng: &mut StdRng) {
        let mut blobs = self.blobs.lock().unwrap();
        if blobs.len() < POOL_CAP {
            blobs.push(rec);
        } else {
            let i = rng.gen_range(0..blobs.len());
            blobs[i] = rec;
        }
    }

    fn pick_blob(&self, rng: &mut StdRng) -> Option<BlobRec> {
        let blobs = self.blobs.lock().unwrap();
        (!blobs.is_empty()).then(|| blobs[rng.gen_range(0..blobs.len())].clone())
    }

    fn pick_manifest(&self, rng: &mut StdRng) -> Option<ManifestRec> {
        let m = self.manifests.lock().unwrap();
        (!m.is_empty()).then(|| m[rng.gen_range(0..m.len())].clone())
    }
}

/// One client: its own connection pool, its own random stream.
struct Client {
    id: usize,
    reg: Registry,
    rng: StdRng,
    shared: Arc<Shared>,
    latencies_us: Vec<u32>,
    counter: usize,
}

impl Client {
    /// Sends one request, timing it; a transport failure is an error, not a panic.
    async fn send(&mut self, method: Method, url: reqwest::Url, headers: &[(&str, &str)], body: Vec<u8>) -> Option<Resp> {
        let what = format!("{method} {url}");
        let t = Instant::now();
        let sent = body.len() as u64;
        let result = self.reg.try_call(method, url, headers, body).await;
        self.latencies_us.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
        self.shared.requests.fetch_add(1, Ordering::Relaxed);
        self.shared.bytes_up.fetch_add(sent, Ordering::Relaxed);
        match result {
            Ok(r) => {
                self.shared.bytes_down.fetch_add(r.body.len() as u64, Ordering::Relaxed);
                Some(r)
            }
            Err(e) => {
                self.shared.fail(format!("{what}: {e}"));
                None
            }
        }
    }

    /// Sends and requires `status`; anything else is recorded as an error.
    async fn expect(&mut self, method: Method, url: reqwest::Url, headers: &[(&str, &str)], body: Vec<u8>, status: u16) -> Option<Resp> {
        let resp = self.send(method, url, headers, body).await?;
        if resp.status != status {
            self.shared
                .fail(format!("{} {}: want {status}: {}", resp.method, resp.url, resp.show()));
            return None;
        }
        Some(resp)
    }

    fn check(&self, ok: bool, what: impl FnOnce() -> String) -> bool {
        if !ok {
            self.shared.fail(what());
        }
        ok
    }

    async fn step(&mut self) {
        match self.rng.gen_range(0..100) {
            0..=19 => self.push_blob_monolithic().await,
            20..=29 => self.push_blob_chunked().await,
            30..=54 => self.pull_blob().await,
            55..=64 => self.pull_range().await,
            65..=74 => self.push_manifest().await,
            75..=89 => self.pull_manifest().await,
            90..=94 => self.head_blob().await,
            _ => self.list_tags().await,
        }
    }

    fn new_blob(&mut self) -> (BlobRec, Vec<u8>) {
        let seed = self.rng.gen();
        let size = blob_size(&mut self.rng);
        let bytes = blob_bytes(seed, size);
        let rec = BlobRec {
            repo: self.rng.gen_range(0..REPOS),
            seed,
            size,
            digest: sha256(&bytes),
        };
        (rec, bytes)
    }

    async fn push_blob_monolithic(&mut self) {
        let (rec, bytes) = self.new_blob();
        let _ = self.push_monolithic(rec, bytes, true).await;
    }

    /// Pushes in one POST; `remember` puts the blob in the pool pulls draw from (only blobs made
    /// by `new_blob`, whose bytes the seed regenerates).
    async fn push_monolithic(&mut self, rec: BlobRec, bytes: Vec<u8>, remember: bool) -> Option<BlobRec> {
        let url = self
            .reg
            .url_with(&format!("/v2/{}/blobs/uploads/", repo_name(rec.repo)), &[("digest", &rec.digest)]);
        let resp = self
            .expect(Method::POST, url, &[("Content-Type", "application/octet-stream")], bytes, 201)
            .await?;
        if !self.check(resp.header("Docker-Content-Digest") == Some(rec.digest.as_str()), || {
            format!("POST {}: digest header {}", rec.digest, resp.show())
        }) {
            return None;
        }
        if remember {
            self.shared.remember_blob(rec.clone(), &mut self.rng);
        }
        Some(rec)
    }

    async fn push_blob_chunked(&mut self) {
        let (rec, bytes) = self.new_blob();
        let repo = repo_name(rec.repo);
        let url = self.reg.url(&format!("/v2/{repo}/blobs/uploads/"));
        let Some(started) = self.expect(Method::POST, url, &[("Content-Length", "0")], vec![], 202).await else {
            return;
        };
        let mut location = started.location().to_string();
        let chunks = self.rng.gen_range(1..=4usize);
        let step = bytes.len().div_ceil(chunks).max(1);
        let mut offset = 0;
        while offset < bytes.len() {
            let end = (offset + step).min(bytes.len());
            let range = format!("{offset}-{}", end - 1);
            let headers = [("Content-Type", "application/octet-stream"), ("Content-Range", range.as_str())];
            let url = self.reg.url(&location);
            let Some(resp) = self.expect(Method::PATCH, url, &headers, bytes[offset..end].to_vec(), 202).await else {
                return;
            };
            let want = format!("0-{}", end - 1);
            if !self.check(resp.header("Range") == Some(want.as_str()), || {
                format!("PATCH {range}: {}", resp.show())
            }) {
                return;
            }
            location = resp.location().to_string();
            offset = end;
        }
        let url = self.reg.url_with(&location, &[("digest", &rec.digest)]);
        if self.expect(Method::PUT, url, &[], vec![], 201).await.is_some() {
            self.shared.remember_blob(rec, &mut self.rng);
        }
    }

    async fn pull_blob(&mut self) {
        let Some(rec) = self.shared.pick_blob(&mut self.rng) else {
            return self.push_blob_monolithic().await;
        };
        let url = self.reg.url(&format!("/v2/{}/blobs/{}", repo_name(rec.repo), rec.digest));
        let Some(resp) = self.expect(Method::GET, url, &[], vec![], 200).await else {
            return;
        };
        let ok = resp.body.len() == rec.size && sha256(&resp.body) == rec.digest;
        self.check(ok, || {
            format!("GET blob {}: {} bytes that do not match", rec.digest, resp.body.len())
        });
    }

    async fn pull_range(&mut self) {
        let Some(rec) = self.shared.pick_blob(&mut self.rng) else { return };
        let start = self.rng.gen_range(0..rec.size);
        let end = self.rng.gen_range(start..rec.size);
        let range = format!("bytes={start}-{end}");
        let url = self.reg.url(&format!("/v2/{}/blobs/{}", repo_name(rec.repo), rec.digest));
        let Some(resp) = self.expect(Method::GET, url, &[("Range", &range)], vec![], 206).await else {
            return;
        };
        let want = blob_bytes(rec.seed, rec.size);
        let ok = resp.body == want[start..=end];
        self.check(ok, || format!("GET {range} of {}: wrong bytes", rec.digest));
    }

    async fn head_blob(&mut self) {
        let Some(rec) = self.shared.pick_blob(&mut self.rng) else { return };
        let url = self.reg.url(&format!("/v2/{}/blobs/{}", repo_name(rec.repo), rec.digest));
        let Some(resp) = self.expect(Method::HEAD, url, &[], vec![], 200).await else {
            return;
        };
        let len = rec.size.to_string();
        self.check(resp.header("Content-Length") == Some(len.as_str()), || {
            format!("HEAD {}: {}", rec.digest, resp.show())
        });
    }

    /// A fresh config and one to three layers (new or already in the repository), then the
    /// manifest under a tag only this client writes.
    async fn push_manifest(&mut self) {
        let repo = self.rng.gen_range(0..REPOS);
        let config = config_blob();
        let config_rec = BlobRec {
            repo,
            seed: 0,
            size: config.len(),
            digest: sha256(&config),
        };
        if self.push_monolithic(config_rec, config.clone(), false).await.is_none() {
            return;
        }
        let mut layers = Vec::new();
        for _ in 0..self.rng.gen_range(1..=3) {
            let (mut rec, bytes) = self.new_blob();
            rec.repo = repo;
            let Some(rec) = self.push_monolithic(rec, bytes, true).await else {
                return;
            };
            layers.push(Desc {
                media_type: OCI_LAYER.into(),
                digest: rec.digest,
                size: rec.size,
            });
        }
        let doc = image_manifest(OCI_MANIFEST, &Desc::of(OCI_CONFIG, &config), &layers);
        let bytes = to_bytes(&doc);
        let digest = sha256(&bytes);
        self.counter += 1;
        let tag = format!("c{}-{}", self.id, self.counter);
        let url = self.reg.url(&format!("/v2/{}/manifests/{tag}", repo_name(repo)));
        let Some(resp) = self
            .expect(Method::PUT, url, &[("Content-Type", OCI_MANIFEST)], bytes.clone(), 201)
            .await
        else {
            return;
        };
        if !self.check(resp.header("Docker-Content-Digest") == Some(digest.as_str()), || {
            format!("PUT {tag}: {}", resp.show())
        }) {
            return;
        }
        let rec = ManifestRec {
            repo,
            tag,
            digest,
            bytes: Arc::new(bytes),
        };
        let mut all = self.shared.manifests.lock().unwrap();
        if all.len() < POOL_CAP {
            all.push(rec);
        } else {
            let i = self.rng.gen_range(0..all.len());
            all[i] = rec;
        }
    }

    async fn pull_manifest(&mut self) {
        let Some(rec) = self.shared.pick_manifest(&mut self.rng) else {
            return self.push_manifest().await;
        };
        let reference = if self.rng.gen_bool(0.5) {
            rec.tag.clone()
        } else {
            rec.digest.clone()
        };
        let url = self.reg.url(&format!("/v2/{}/manifests/{reference}", repo_name(rec.repo)));
        let Some(resp) = self.expect(Method::GET, url, &[("Accept", ACCEPT_MANIFESTS)], vec![], 200).await else {
            return;
        };
        let ok = resp.body == *rec.bytes && resp.header("Docker-Content-Digest") == Some(rec.digest.as_str());
        self.check(ok, || format!("GET manifest {reference}: {}", resp.show()));
    }

    async fn list_tags(&mut self) {
        let repo = self.rng.gen_range(0..REPOS);
        let url = self.reg.url(&format!("/v2/{}/tags/list?n=50", repo_name(repo)));
        let resp = self.send(Method::GET, url, &[], vec![]).await;
        if let Some(resp) = resp {
            // A repository nobody pushed to yet is NAME_UNKNOWN; otherwise a sorted page.
            let ok = match resp.status {
                200 => {
                    let tags = strings(&resp.json()["tags"]);
                    tags.windows(2).all(|w| w[0] < w[1]) && tags.len() <= 50
                }
                404 => resp.body.windows(12).any(|w| w == b"NAME_UNKNOWN"),
                _ => false,
            };
            self.check(ok, || format!("GET tags of {}: {}", repo_name(repo), resp.show()));
        }
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn median(v: &[u64]) -> u64 {
    let mut v = v.to_vec();
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_pushes_and_pulls_stay_correct_with_flat_memory() {
    let secs = env_u64("WHARF_SOAK_SECS", 30);
    let clients = env_u64("WHARF_SOAK_CLIENTS", 64) as usize;
    let w = Wharf::start_with(&[], &[("RUST_LOG", "warn")]);
    let shared = Arc::new(Shared::default());
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);

    // RSS every 250 ms while the clients run.
    let sampler = {
        let pid = w.pid();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut samples: Vec<(f64, u64)> = Vec::new();
            let t0 = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                let rss = status
                    .lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                samples.push((t0.elapsed().as_secs_f64(), rss));
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            samples
        })
    };

    let workers: Vec<_> = (0..clients)
        .map(|id| {
            let mut client = Client {
                id,
                reg: Registry::new(&w),
                rng: StdRng::seed_from_u64(rand::random()),
                shared: shared.clone(),
                latencies_us: Vec::new(),
                counter: 0,
            };
            tokio::spawn(async move {
                // Bounded in time and in count: a client does at most a million steps.
                for _ in 0..1_000_000 {
                    if Instant::now() >= deadline {
                        break;
                    }
                    client.step().await;
                }
                client.latencies_us
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await.expect("client task"));
    }
    stop.store(true, Ordering::Relaxed);
    let samples = sampler.await.expect("sampler");
    let elapsed = started.elapsed().as_secs_f64();

    // The server is still whole: it answers, and a final full read-back of every remembered
    // blob and manifest matches.
    let reg = Registry::new(&w);
    reg.get("/v2/").await.expect(200);
    let blobs = shared.blobs.lock().unwrap().clone();
    for rec in blobs.iter().take(200) {
        let resp = reg.get(&format!("/v2/{}/blobs/{}", repo_name(rec.repo), rec.digest)).await;
        resp.expect(200);
        assert_eq!(sha256(&resp.body), rec.digest, "read-back of {}", rec.digest);
    }

    latencies.sort_unstable();
    let requests = shared.requests.load(Ordering::Relaxed);
    let errors = shared.errors.load(Ordering::Relaxed);
    let rss: Vec<u64> = samples.iter().map(|s| s.1).collect();
    // The first third is warm-up (caches, the tag index, connection and thread pools fill);
    // the middle third is the reference the last one is held to.
    let settled = &rss[rss.len() / 3..];
    let (first, last) = settled.split_at(settled.len() / 2);
    let (first_med, last_med) = (median(first), median(last));
    let peak = rss.iter().copied().max().unwrap_or(0);
    println!("load/soak: {clients} clients for {elapsed:.1}s against 127.0.0.1");
    println!(
        "  requests served: {requests} ({:.0}/s), errors: {errors}",
        requests as f64 / elapsed
    );
    println!(
        "  pushed {:.1} MiB, pulled {:.1} MiB; {} blobs and {} manifests remembered",
        shared.bytes_up.load(Ordering::Relaxed) as f64 / 1048576.0,
        shared.bytes_down.load(Ordering::Relaxed) as f64 / 1048576.0,
        blobs.len(),
        shared.manifests.lock().unwrap().len()
    );
    println!(
        "  latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0)
    );
    println!(
        "  server RSS: middle third median {} MiB, last third median {} MiB, peak {} MiB ({} samples)",
        first_med / 1024,
        last_med / 1024,
        peak / 1024,
        rss.len()
    );
    let step = (samples.len() / 10).max(1);
    let timeline: Vec<String> = samples
        .iter()
        .step_by(step)
        .map(|(t, kib)| format!("{t:.0}s:{}M", kib / 1024))
        .collect();
    println!("  RSS over time: {}", timeline.join(" "));

    let first_errors = shared.first_errors.lock().unwrap().clone();
    assert_eq!(errors, 0, "errors under load:\n{}", first_errors.join("\n"));
    assert!(requests > clients as u64 * 5, "only {requests} requests in {elapsed:.0}s");
    assert!(rss.len() >= 6 && first_med > 0, "RSS was not sampled: {rss:?}");
    // Flat memory: after warm-up the server holds no more than it did early on, give or take
    // allocator slack and the tag index, which grows with every new tag. A leak per request, or
    // allocator arenas filling with freed buffers, shows here as steady growth.
    let allowed = first_med + first_med / 10 + 8 * 1024;
    assert!(
        last_med <= allowed,
        "server RSS grew from {first_med} KiB to {last_med} KiB (allowed {allowed} KiB)"
    );
}
