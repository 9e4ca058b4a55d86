//! A small registry client for the black-box API tests: it talks to a running `wharf` over HTTP
//! with reqwest, follows `Location` headers exactly as the server gives them (relative ones are
//! resolved against the server URL), builds manifests and indexes, and checks the spec's error
//! bodies. Tests stay short by pushing through these helpers and asserting on `Resp`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Method, Url};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Wharf;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// What real clients send when pulling a manifest; registry:2 answers OCI content only to
/// clients that list the OCI types, so every manifest GET sends all of them.
pub const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json";

/// Starts a server with deletes enabled (the setting most tests need) and a client for it.
pub fn start() -> (Wharf, Registry) {
    let w = Wharf::start_with(&[], &[("REGISTRY_STORAGE_DELETE_ENABLED", "true")]);
    let reg = Registry::new(&w);
    (w, reg)
}

/// One HTTP response, fully read.
#[derive(Debug)]
pub struct Resp {
    pub method: Method,
    pub url: String,
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The header's value; panics naming the request when it is missing.
    pub fn must(&self, name: &str) -> &str {
        self.header(name)
            .unwrap_or_else(|| panic!("{} missing header {name}: {}", self.what(), self.show()))
    }

    pub fn location(&self) -> &str {
        self.must("Location")
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{}: body is not JSON ({e}): {}", self.what(), self.show()))
    }

    fn what(&self) -> String {
        format!("{} {}", self.method, self.url)
    }

    /// Status, headers and a printable slice of the body, for failure messages.
    pub fn show(&self) -> String {
        let text = String::from_utf8_lossy(&self.body[..self.body.len().min(600)]).into_owned();
        format!("status {} headers {:?} body {text:?}", self.status, self.headers)
    }

    /// Asserts the status and the API version header every response must carry.
    pub fn expect(&self, status: u16) -> &Self {
        assert_eq!(self.status, status, "{}: {}", self.what(), self.show());
        assert_eq!(
            self.header("Docker-Distribution-API-Version"),
            Some("registry/2.0"),
            "{}: every response carries the API version header",
            self.what()
        );
        self
    }

    /// Asserts a spec error response: the status, a JSON body `{"errors":[{code,message}]}`
    /// in which one code is among `codes`.
    pub fn expect_error(&self, status: u16, codes: &[&str]) -> &Self {
        self.expect(status);
        let ctype = self.header("Content-Type").unwrap_or_default();
        assert!(
            ctype.starts_with("application/json"),
            "{}: error Content-Type {ctype:?}",
            self.what()
        );
        let body = self.json();
        let errors = body["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("{}: no errors array: {}", self.what(), self.show()));
        assert!(!errors.is_empty(), "{}: empty errors array", self.what());
        for e in errors {
            let code = e["code"].as_str().unwrap_or_default();
            assert!(
                !code.is_empty() && code.chars().all(|c| c.is_ascii_uppercase() || c == '_'),
                "{}: bad error code in {e}",
                self.what()
            );
            assert!(e["message"].is_string(), "{}: error without message: {e}", self.what());
        }
        let found = errors.iter().any(|e| codes.contains(&e["code"].as_str().unwrap_or_default()));
        assert!(found, "{}: want one of {codes:?}: {}", self.what(), self.show());
        self
    }

    /// Asserts a 4xx answer with a spec error body, whatever the exact status and code.
    pub fn expect_client_error(&self) -> &Self {
        assert!((400..500).contains(&self.status), "{}: want 4xx: {}", self.what(), self.show());
        let code = self.json()["errors"][0]["code"].as_str().map(str::to_owned);
        assert!(code.is_some(), "{}: 4xx without a spec error body: {}", self.what(), self.show());
        self
    }
}

/// A content descriptor as manifests carry it.
#[derive(Clone, Debug)]
pub struct Desc {
    pub media_type: String,
    pub digest: String,
    pub size: usize,
}

impl Desc {
    pub fn of(media_type: &str, data: &[u8]) -> Desc {
        Desc {
            media_type: media_type.to_string(),
            digest: sha256(data),
            size: data.len(),
        }
    }

    pub fn json(&self) -> Value {
        json!({"mediaType": self.media_type, "digest": self.digest, "size": self.size})
    }
}

/// A manifest pushed with `Registry::push_manifest_with`, with the blobs it references.
#[derive(Debug)]
pub struct Pushed {
    pub manifest: Vec<u8>,
    pub digest: String,
    pub config: Desc,
    pub config_bytes: Vec<u8>,
    pub layer: Desc,
    pub layer_bytes: Vec<u8>,
    pub resp: Resp,
}

impl Pushed {
    /// This manifest as a descriptor (for indexes and `subject` fields).
    pub fn desc(&self) -> Desc {
        Desc {
            media_type: OCI_MANIFEST.into(),
            digest: self.digest.clone(),
            size: self.manifest.len(),
        }
    }
}

fn basic_headers(user: &str, password: &str) -> HeaderMap {
    use base64::Engine;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let mut headers = HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Basic {token}").parse().expect("header value"),
    );
    headers
}

pub struct Registry {
    pub base: Url,
    http: reqwest::Client,
}

impl Registry {
    pub fn new(w: &Wharf) -> Registry {
        Self::with_headers(w, HeaderMap::new())
    }

    /// A client that sends `user:password` with Basic authentication on every request.
    pub fn with_basic(w: &Wharf, user: &str, password: &str) -> Registry {
        Self::at(&w.url, basic_headers(user, password))
    }

    /// A client of a server at `url` (one a test runs in-process) sending `user:password` with
    /// Basic authentication and `user_agent` on every request.
    pub fn basic_at(url: &str, user: &str, password: &str, user_agent: &str) -> Registry {
        let mut headers = basic_headers(user, password);
        headers.insert(reqwest::header::USER_AGENT, user_agent.parse().expect("header value"));
        Self::at(url, headers)
    }

    /// A client that sends `Authorization: Bearer <token>` on every request.
    pub fn with_bearer(w: &Wharf, token: &str) -> Registry {
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {token}").parse().expect("header value"),
        );
        Self::with_headers(w, headers)
    }

    fn with_headers(w: &Wharf, headers: HeaderMap) -> Registry {
        Self::at(&w.url, headers)
    }

    /// A client of a server at `url` without credentials (a replica the test started).
    pub fn at_url(url: &str) -> Registry {
        Self::at(url, HeaderMap::new())
    }

    fn at(url: &str, headers: HeaderMap) -> Registry {
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(60))
            .build()
            .expect("reqwest client");
        Registry {
            base: Url::parse(url).expect("server url"),
            http,
        }
    }

    /// Resolves a path or a `Location` value (absolute, or relative to the server) to a URL.
    pub fn url(&self, target: &str) -> Url {
        self.base.join(target).unwrap_or_else(|e| panic!("bad target {target:?}: {e}"))
    }

    /// `target` with query parameters appended (percent-encoded), keeping any it already has.
    pub fn url_with(&self, target: &str, query: &[(&str, &str)]) -> Url {
        let mut url = self.url(target);
        url.query_pairs_mut().extend_pairs(query);
        url
    }

    pub async fn call(&self, method: Method, url: Url, headers: &[(&str, &str)], body: Vec<u8>) -> Resp {
        let what = format!("{method} {url}");
        self.try_call(method, url, headers, body)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e:?}"))
    }

    /// Like `call`, but a transport failure (reset, closed connection) is returned, not a panic.
    pub async fn try_call(&self, method: Method, url: Url, headers: &[(&str, &str)], body: Vec<u8>) -> Result<Resp, reqwest::Error> {
        let mut req = self.http.request(method.clone(), url.clone());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if !body.is_empty() || matches!(method, Method::POST | Method::PUT | Method::PATCH) {
            req = req.body(body);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let resp_headers = resp.headers().clone();
        let body = resp.bytes().await?.to_vec();
        Ok(Resp {
            method,
            url: url.to_string(),
            status,
            headers: resp_headers,
            body,
        })
    }

    pub async fn get(&self, target: &str) -> Resp {
        self.call(Method::GET, self.url(target), &[], vec![]).await
    }

    pub async fn get_with(&self, target: &str, headers: &[(&str, &str)]) -> Resp {
        self.call(Method::GET, self.url(target), headers, vec![]).await
    }

    pub async fn head(&self, target: &str) -> Resp {
        self.call(Method::HEAD, self.url(target), &[], vec![]).await
    }

    pub async fn delete(&self, target: &str) -> Resp {
        self.call(Method::DELETE, self.url(target), &[], vec![]).await
    }

    // ---- blobs ----

    /// `POST /v2/<repo>/blobs/uploads/`: opens an upload session, asserting the 202 answer.
    pub async fn start_upload(&self, repo: &str) -> Resp {
        let url = self.url(&format!("/v2/{repo}/blobs/uploads/"));
        let resp = self.call(Method::POST, url, &[("Content-Length", "0")], vec![]).await;
        resp.expect(202);
        resp.location();
        resp
    }

    /// `PATCH <location>` with one chunk; `range` adds `Content-Range: <start>-<end>`.
    pub async fn patch(&self, location: &str, chunk: &[u8], range: Option<(usize, usize)>) -> Resp {
        let cr = range.map(|(s, e)| format!("{s}-{e}"));
        let mut headers = vec![("Content-Type", "application/octet-stream")];
        if let Some(cr) = cr.as_deref() {
            headers.push(("Content-Range", cr));
        }
        self.call(Method::PATCH, self.url(location), &headers, chunk.to_vec()).await
    }

    /// `PUT <location>?digest=<digest>` with an optional final chunk as the body.
    pub async fn finish_upload(&self, location: &str, digest: &str, body: &[u8]) -> Resp {
        let url = self.url_with(location, &[("digest", digest)]);
        let headers = [("Content-Type", "application/octet-stream")];
        self.call(Method::PUT, url, &headers, body.to_vec()).await
    }

    /// Pushes a blob with POST then PUT and returns its sha256 digest.
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = sha256(data);
        let started = self.start_upload(repo).await;
        self.finish_upload(started.location(), &digest, data).await.expect(201);
        digest
    }

    // ---- manifests ----

    /// `PUT /v2/<repo>/manifests/<reference>` with the given Content-Type.
    pub async fn put_manifest(&self, repo: &str, reference: &str, media_type: &str, body: &[u8]) -> Resp {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        self.call(Method::PUT, url, &[("Content-Type", media_type)], body.to_vec()).await
    }

    /// Pushes a manifest (by tag, or by its own digest when `tag` is None), asserting 201, the
    /// `Docker-Content-Digest` header and a `Location`; returns the response.
    pub async fn push_manifest(&self, repo: &str, tag: Option<&str>, media_type: &str, body: &[u8]) -> Resp {
        let digest = sha256(body);
        let reference = tag.unwrap_or(&digest);
        let resp = self.put_manifest(repo, reference, media_type, body).await;
        resp.expect(201);
        assert_eq!(resp.header("Docker-Content-Digest"), Some(digest.as_str()), "{}", resp.show());
        resp.location();
        resp
    }

    /// `GET /v2/<repo>/manifests/<reference>` accepting every manifest type.
    pub async fn get_manifest(&self, repo: &str, reference: &str) -> Resp {
        self.get_with(&format!("/v2/{repo}/manifests/{reference}"), &[("Accept", ACCEPT_MANIFESTS)])
            .await
    }

    /// `HEAD /v2/<repo>/manifests/<reference>` accepting every manifest type.
    pub async fn head_manifest(&self, repo: &str, reference: &str) -> Resp {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        self.call(Method::HEAD, url, &[("Accept", ACCEPT_MANIFESTS)], vec![]).await
    }

    /// Pushes a fresh config (of `config_type`) and layer, then an OCI image manifest over them with
    /// `extra` merged into its top level (subject, artifactType, annotations...).
    pub async fn push_manifest_with(&self, repo: &str, tag: Option<&str>, config_type: &str, extra: Value) -> Pushed {
        let config_bytes = config_blob();
        let layer_bytes = random_bytes(2048);
        self.push_blob(repo, &config_bytes).await;
        self.push_blob(repo, &layer_bytes).await;
        let config = Desc::of(config_type, &config_bytes);
        let layer = Desc::of(OCI_LAYER, &layer_bytes);
        let mut doc = image_manifest(OCI_MANIFEST, &config, std::slice::from_ref(&layer));
        merge(&mut doc, extra);
        let manifest = to_bytes(&doc);
        let resp = self.push_manifest(repo, tag, OCI_MANIFEST, &manifest).await;
        Pushed {
            digest: sha256(&manifest),
            manifest,
            config,
            config_bytes,
            layer,
            layer_bytes,
            resp,
        }
    }

    /// Pushes a plain OCI image (config, one layer, manifest) under `tag`.
    pub async fn push_image(&self, repo: &str, tag: &str) -> Pushed {
        self.push_manifest_with(repo, Some(tag), OCI_CONFIG, json!({})).await
    }

    /// Follows list pagination from `first` through every `Link: <...>; rel="next"`, returning the
    /// entries under `key` in order and the number of pages (bounded to catch loops).
    pub async fn collect_pages(&self, first: &str, key: &str) -> (Vec<String>, usize) {
        let mut all = Vec::new();
        let mut next = Some(first.to_string());
        let mut pages = 0;
        while let Some(target) = next {
            pages += 1;
            assert!(pages <= 100, "pagination from {first} does not end");
            let resp = self.get(&target).await;
            resp.expect(200);
            all.extend(strings(&resp.json()[key]));
            next = next_link(&resp);
        }
        (all, pages)
    }
}

// ---- fixtures ----

pub fn random_bytes(n: usize) -> Vec<u8> {
    use rand::RngCore;
    let mut v = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut v);
    v
}

/// A small, unique image configuration.
pub fn config_blob() -> Vec<u8> {
    let nonce = hex::encode(random_bytes(8));
    to_bytes(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Labels": {"nonce": nonce}},
        "rootfs": {"type": "layers", "diff_ids": []}
    }))
}

/// An image manifest document (OCI or Docker schema2, chosen by `media_type`).
pub fn image_manifest(media_type: &str, config: &Desc, layers: &[Desc]) -> Value {
    json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": config.json(),
        "layers": layers.iter().map(Desc::json).collect::<Vec<_>>(),
    })
}

/// An index / manifest list document whose entries are given platforms in order.
pub fn index_manifest(media_type: &str, manifests: &[Desc]) -> Value {
    let archs = ["amd64", "arm64", "ppc64le", "s390x"];
    let entries: Vec<Value> = manifests
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let mut e = d.json();
            e["platform"] = json!({"architecture": archs[i % archs.len()], "os": "linux"});
            e
        })
        .collect();
    json!({"schemaVersion": 2, "mediaType": media_type, "manifests": entries})
}

/// Shallow merge of `extra`'s keys into `doc`.
pub fn merge(doc: &mut Value, extra: Value) {
    if let (Some(d), Value::Object(e)) = (doc.as_object_mut(), extra) {
        d.extend(e);
    }
}

pub fn to_bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("serialize")
}

pub fn sha256(data: &[u8]) -> String {
    super::sha256_digest(data)
}

pub fn sha512(data: &[u8]) -> String {
    use sha2::{Digest, Sha512};
    format!("sha512:{}", hex::encode(Sha512::digest(data)))
}

/// The hex part of a digest.
pub fn hex_of(digest: &str) -> &str {
    digest.split_once(':').map(|(_, h)| h).unwrap_or(digest)
}

/// The strings of a JSON array (empty for null or a missing key).
pub fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// The target of a `Link: <url>; rel="next"` header, if any.
pub fn next_link(resp: &Resp) -> Option<String> {
    let link = resp.header("Link")?;
    let (target, params) = link.trim().strip_prefix('<')?.split_once('>')?;
    let rel_next = params.split(';').any(|p| p.trim().replace(' ', "") == "rel=\"next\"");
    assert!(rel_next, "Link header without rel=\"next\": {link}");
    Some(target.to_string())
}

/// The path and query of a URL: the relative form of a `Location`.
pub fn relative(url: &Url) -> String {
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    }
}

/// Asserts an upload answer's `Range: 0-<last byte>` after `received` bytes (registry:2 says
/// `0-0` for an empty session).
pub fn assert_upload_range(resp: &Resp, received: usize) {
    let want = format!("0-{}", received.saturating_sub(1));
    assert_eq!(resp.header("Range"), Some(want.as_str()), "{}", resp.show());
}

/// A query parameter of a URL or path (percent-decoded).
pub fn query_param(target: &str, key: &str) -> Option<String> {
    let url = Url::parse("http://x/").ok()?.join(target).ok()?;
    url.query_pairs().find(|(k, _)| k == key).map(|(_, v)| v.into_owned())
}

// ---- on disk ----

/// `<root>/docker/registry/v2`, where registry:2 keeps blobs and repositories.
pub fn v2_dir(w: &Wharf) -> PathBuf {
    w.root.join("docker/registry/v2")
}

/// Contents of a link file (or data file) as a string; panics naming the missing path.
pub fn read_text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every path under `dir` (files and directories), recursively.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out
}

// ---- raw HTTP ----

/// Sends bytes exactly as given (paths with `..` or `%2e` that URL libraries would normalize)
/// as an HTTP/1.0 request, and returns the status and body, or None if the server closed the
/// connection without answering. `close_early` half-closes after writing, for truncated bodies.
pub async fn raw_request(addr: &str, head: &str, body: &[u8], close_early: bool) -> Option<(u16, Vec<u8>)> {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("{head}\r\nHost: {addr}\r\n\r\n");
    s.write_all(request.as_bytes()).await.expect("write head");
    s.write_all(body).await.expect("write body");
    if close_early {
        let _ = s.shutdown().await;
    }
    // Read until the server closes; a reset (the server closing with our bytes unread) ends the
    // answer like a close does, keeping what already arrived.
    let mut buf = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let mut chunk = [0u8; 8192];
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Err(_) => panic!("server neither answered nor closed within 15s: {head}"),
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let text = String::from_utf8_lossy(&buf);
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4).unwrap_or(buf.len());
    Some((status, buf[split..].to_vec()))
}
