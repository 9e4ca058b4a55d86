//! The crash tests' pushers and checker, shared by the filesystem test (tests/crash_safety.rs)
//! and the object-storage one (tests/s3_crash.rs): raw HTTP clients doing monolithic, chunked
//! and streamed uploads, manifest PUTs under tags of their own and moves of one tag each; a
//! ledger of everything the server acknowledged (201); and a checker that finds every
//! acknowledged push again, with bytes equal to its digest, after the kills.
#![allow(dead_code)]

use super::images;
use super::{sha256_digest, Wharf};
use futures::StreamExt;
use rand::Rng;
use reqwest::{Method, StatusCode, Url};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Everything the servers acknowledged with a 201, to be checked after every restart.
#[derive(Default)]
pub struct Ledger {
    pub blobs: Vec<AckedBlob>,
    pub manifests: Vec<AckedManifest>,
    /// Per `(repo, tag)` moved again and again: where it must point now.
    pub moves: BTreeMap<(String, String), TagMove>,
}

#[derive(Clone, Debug)]
pub struct AckedBlob {
    pub repo: String,
    pub digest: String,
}

#[derive(Clone, Debug)]
pub struct AckedManifest {
    pub repo: String,
    /// The tag it was pushed under and must still be found by; None for a tag that moved on
    /// (then only the digest must stay).
    pub tag: Option<String>,
    pub digest: String,
    /// None when a client other than ours (skopeo) sent it: then only the digest is known.
    pub bytes: Option<Vec<u8>>,
}

/// A tag one client moves: the manifest of its last acknowledged PUT, and those of the PUTs
/// after it that a kill cut off unanswered (any of them may have landed, the latest one to).
#[derive(Clone, Debug, Default)]
pub struct TagMove {
    pub acked: Option<String>,
    pub unanswered: Vec<String>,
}

impl TagMove {
    fn allows(&self, digest: &str) -> bool {
        self.acked.as_deref() == Some(digest) || self.unanswered.iter().any(|d| d == digest)
    }
}

pub type SharedLedger = Arc<Mutex<Ledger>>;

impl Ledger {
    /// Everything acknowledged from `from` (blob and manifest counts) on: what to check now.
    pub fn since(&self, from: (usize, usize)) -> (Vec<AckedBlob>, Vec<AckedManifest>) {
        (self.blobs[from.0..].to_vec(), self.manifests[from.1..].to_vec())
    }

    pub fn counts(&self) -> (usize, usize) {
        (self.blobs.len(), self.manifests.len())
    }
}

/// A transport error ends the client: its server is gone until the next round.
pub struct Gone;

pub struct Client {
    pub http: reqwest::Client,
    /// The servers it talks to, each request to the next one: with several replicas an upload
    /// begun on one is continued and finished on another.
    pub bases: Vec<Url>,
    pub next: AtomicUsize,
    pub ledger: SharedLedger,
    /// `<n>-r<round>`: `n` names its repository and its moving tag across rounds.
    pub id: String,
}

impl Client {
    pub fn new(http: reqwest::Client, bases: Vec<Url>, ledger: SharedLedger, id: String) -> Client {
        Client {
            http,
            bases,
            next: AtomicUsize::new(0),
            ledger,
            id,
        }
    }

    fn ack_blob(&self, repo: &str, digest: &str) {
        self.ledger.lock().unwrap().blobs.push(AckedBlob {
            repo: repo.into(),
            digest: digest.into(),
        });
    }

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

    /// `target` (a path, or a `Location` naming any server) on the next server in turn.
    fn url(&self, target: &str) -> Url {
        let base = &self.bases[self.next.fetch_add(1, Ordering::Relaxed) % self.bases.len()];
        let whole = base.join(target).expect("url");
        let mut url = base.clone();
        url.set_path(whole.path());
        url.set_query(whole.query());
        url
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
        self.ack_blob(repo, digest);
        Ok(digest.to_string())
    }

    /// A config and one or two layers, each uploaded a different way; returns the manifest.
    async fn image_content(&self, repo: &str, n: usize) -> Result<Vec<u8>, Gone> {
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
        Ok(serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": images::OCI_MANIFEST,
            "config": {"mediaType": images::OCI_CONFIG, "digest": config_digest, "size": config_len},
            "layers": layers,
        }))
        .unwrap())
    }

    async fn put_manifest(&self, repo: &str, tag: &str, manifest: &[u8]) -> Result<(), Gone> {
        let url = self.url(&format!("/v2/{repo}/manifests/{tag}"));
        let (status, _) = self
            .send(Method::PUT, url, Some(images::OCI_MANIFEST), manifest.to_vec().into())
            .await?;
        assert_eq!(status, StatusCode::CREATED, "manifest PUT {repo}:{tag}");
        Ok(())
    }

    fn ack_manifest(&self, repo: &str, tag: Option<String>, manifest: Vec<u8>) {
        self.ledger.lock().unwrap().manifests.push(AckedManifest {
            repo: repo.into(),
            tag,
            digest: sha256_digest(&manifest),
            bytes: Some(manifest),
        });
    }

    /// An image under a tag of its own.
    async fn image(&self, repo: &str, n: usize) -> Result<(), Gone> {
        let manifest = self.image_content(repo, n).await?;
        let tag = format!("{}-{n}", self.id);
        self.put_manifest(repo, &tag, &manifest).await?;
        self.ack_manifest(repo, Some(tag), manifest);
        Ok(())
    }

    /// A new image under this client's one moving tag: the tag moves off the previous one.
    async fn move_tag(&self, repo: &str, n: usize) -> Result<(), Gone> {
        let manifest = self.image_content(repo, n).await?;
        let digest = sha256_digest(&manifest);
        let tag = format!("moving{}", self.number());
        let key = (repo.to_string(), tag.clone());
        self.ledger
            .lock()
            .unwrap()
            .moves
            .entry(key.clone())
            .or_default()
            .unanswered
            .push(digest.clone());
        self.put_manifest(repo, &tag, &manifest).await?;
        self.ledger.lock().unwrap().moves.insert(
            key,
            TagMove {
                acked: Some(digest),
                unanswered: Vec::new(),
            },
        );
        self.ack_manifest(repo, None, manifest);
        Ok(())
    }

    fn number(&self) -> &str {
        &self.id[..self.id.find('-').unwrap_or(self.id.len())]
    }

    /// Pushes until its server disappears (or `stop` is raised).
    pub async fn run(self, stop: Arc<AtomicBool>) {
        let repo = format!("crash/raw{}", self.number());
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let pick = rand::thread_rng().gen_range(0..11);
            let step = match pick {
                0..=1 => self.monolithic(&repo, random_blob()).await.map(drop),
                2..=3 => self.chunked(&repo, random_blob()).await.map(drop),
                4..=5 => self.streamed(&repo, random_blob()).await.map(drop),
                6 => self.abandoned(&repo).await,
                7 => self.move_tag(&repo, n).await,
                _ => self.image(&repo, n).await,
            };
            if step.is_err() {
                return;
            }
        }
    }
}

/// Mostly small blobs, some up to a few hundred KiB, one in twenty empty.
pub fn random_blob() -> Vec<u8> {
    let mut rng = rand::thread_rng();
    let len = match rng.gen_range(0..20) {
        0 => 0,
        1..=14 => rng.gen_range(1..32 * 1024),
        _ => rng.gen_range(32 * 1024..400 * 1024),
    };
    images::random_bytes(len)
}

/// SIGKILL, no warning: what a crash or the OOM killer does.
pub fn kill(w: &mut Wharf) {
    let mut child = w.child.take().expect("server child");
    child.kill().expect("SIGKILL wharf");
    child.wait().expect("reap wharf");
}

/// What checking found wrong, to be reported together at the end.
#[derive(Default)]
pub struct Findings {
    pub lost: Vec<String>,
    pub corrupt: Vec<String>,
}

impl Findings {
    pub fn is_clean(&self) -> bool {
        self.lost.is_empty() && self.corrupt.is_empty()
    }
}

pub struct Checker {
    http: reqwest::Client,
    base: Url,
}

impl Checker {
    /// A checker of the server at `url`; it follows redirects (to presigned URLs).
    pub fn new(url: &str) -> Checker {
        Checker {
            http: reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap(),
            base: Url::parse(url).unwrap(),
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
            f.lost.push(format!("blob {repo}@{digest} at {}: {status}", self.base));
        } else if sha256_digest(&body) != digest {
            f.corrupt.push(format!(
                "blob {repo}@{digest} at {} served {} bytes hashing to something else",
                self.base,
                body.len()
            ));
        }
    }

    /// The manifest by tag and by digest, and every blob or child it references.
    async fn manifest(&self, m: &AckedManifest, f: &mut Findings) {
        for reference in m.tag.iter().chain([&m.digest]) {
            let (status, digest, body) = self.get(&format!("/v2/{}/manifests/{reference}", m.repo), true).await;
            if status != StatusCode::OK {
                f.lost.push(format!("manifest {}:{reference} at {}: {status}", m.repo, self.base));
                return;
            }
            if digest.as_deref() != Some(m.digest.as_str()) || sha256_digest(&body) != m.digest {
                f.lost
                    .push(format!("manifest {}:{reference} at {} is not {}", m.repo, self.base, m.digest));
                return;
            }
            if m.bytes.as_ref().is_some_and(|b| b != &body) {
                f.corrupt.push(format!(
                    "manifest {}:{reference} at {}: bytes differ from what was pushed",
                    m.repo, self.base
                ));
            }
        }
        self.references(&m.repo, &m.digest, f).await;
    }

    /// Everything a manifest refers to is there (children recursively).
    async fn references(&self, repo: &str, digest: &str, f: &mut Findings) {
        let (status, _, body) = self.get(&format!("/v2/{repo}/manifests/{digest}"), true).await;
        if status != StatusCode::OK {
            f.lost.push(format!("manifest {repo}@{digest} at {}: {status}", self.base));
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

    pub async fn ledger(&self, acked: &[AckedBlob], manifests: &[AckedManifest], f: &mut Findings) {
        for b in acked {
            self.blob(&b.repo, &b.digest, f).await;
        }
        for m in manifests {
            self.manifest(m, f).await;
        }
    }

    /// Every moved tag points at its last acknowledged manifest or at one sent after it that a
    /// kill left unanswered; never at an older one, never at nothing once a move was answered.
    pub async fn moves(&self, moves: &BTreeMap<(String, String), TagMove>, f: &mut Findings) {
        for ((repo, tag), m) in moves {
            let (status, digest, _) = self.get(&format!("/v2/{repo}/manifests/{tag}"), true).await;
            match digest.filter(|_| status == StatusCode::OK) {
                Some(d) if m.allows(&d) => {}
                Some(d) => f.lost.push(format!("tag {repo}:{tag} at {} moved back to {d}: {m:?}", self.base)),
                None if m.acked.is_some() => f.lost.push(format!("moved tag {repo}:{tag} at {}: {status}", self.base)),
                None => {}
            }
        }
    }

    /// Every tag of every repository in `repos` resolves to a manifest whose references all
    /// exist; returns how many tags there were.
    pub async fn every_tag(&self, repos: &[String], f: &mut Findings) -> usize {
        let mut tags = 0;
        for repo in repos {
            let (status, _, body) = self.get(&format!("/v2/{repo}/tags/list"), false).await;
            assert_eq!(status, StatusCode::OK, "tags/list of {repo}");
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            for tag in v["tags"].as_array().into_iter().flatten().filter_map(|t| t.as_str()) {
                tags += 1;
                let (status, digest, _) = self.get(&format!("/v2/{repo}/manifests/{tag}"), true).await;
                match digest.filter(|_| status == StatusCode::OK) {
                    Some(d) => self.references(repo, &d, f).await,
                    None => f
                        .lost
                        .push(format!("tag {repo}:{tag} at {} points at nothing: {status}", self.base)),
                }
            }
        }
        tags
    }

    /// The repositories the server lists in its catalog.
    pub async fn catalog(&self) -> Vec<String> {
        let (status, _, body) = self.get("/v2/_catalog?n=10000", false).await;
        assert_eq!(status, StatusCode::OK, "catalog at {}", self.base);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        v["repositories"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_str().map(String::from))
            .collect()
    }
}
