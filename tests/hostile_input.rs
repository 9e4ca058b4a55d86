//! Hostile input catalogue, against the real binary: over-long and host-qualified names, invalid
//! UTF-8 in paths, queries and headers, digests that lie, Content-Length and Content-Range that
//! lie, chunks out of order, manifests that are too big, malformed, duplicated, mistyped or that
//! point at what is not there, oversized heads, slow clients (headers and bodies), absurd
//! page sizes. Every case pins the status and the spec error code. Each test ends by checking
//! that the server still answers, never panicked, and that its storage root holds nothing but
//! registry:2's layout with every blob matching its digest. (tests/api_errors.rs has the
//! simpler cases: traversal names, malformed digests, invalid tags, unknown sessions.)

mod common;

use common::api::*;
use common::Wharf;
use reqwest::Method;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The slow-client limits the server runs with here: short, so the tests stay quick.
const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
const BODY_TIMEOUT: Duration = Duration::from_secs(2);

/// A server whose stderr goes to a file, so a test can check that nothing panicked.
struct Hostile {
    w: Wharf,
    reg: Registry,
    stderr: PathBuf,
    _tmp: tempfile::TempDir,
}

async fn start() -> Hostile {
    let tmp = tempfile::tempdir().expect("tempdir");
    let stderr = tmp.path().join("stderr.log");
    let root = tmp.path().join("data");
    let script = format!("exec \"$0\" \"$@\" 2>>'{}'", stderr.display());
    let header = format!("{}s", HEADER_TIMEOUT.as_secs());
    let body = format!("{}s", BODY_TIMEOUT.as_secs());
    let env = [
        ("REGISTRY_STORAGE_DELETE_ENABLED", "true"),
        ("REGISTRY_HTTP_TIMEOUTS_HEADER", header.as_str()),
        ("REGISTRY_HTTP_TIMEOUTS_BODY", body.as_str()),
        ("RUST_BACKTRACE", "1"),
    ];
    let w = Wharf::launch(&["sh", "-c", &script], "127.0.0.1:0", &root, &[], &env);
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(&w.addr).await.is_err() {
        assert!(Instant::now() < deadline, "wharf never accepted connections");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let reg = Registry::new(&w);
    Hostile { w, reg, stderr, _tmp: tmp }
}

impl Hostile {
    /// The end of every test: the server answers, logged no panic, and wrote only the layout.
    async fn assert_survived(&mut self) {
        self.reg.get("/v2/").await.expect(200);
        let child = self.w.child.as_mut().expect("server child");
        assert!(child.try_wait().expect("wait").is_none(), "the server exited");
        let log = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        assert!(!log.contains("panicked"), "the server panicked:\n{log}");
        assert_layout(&self.w.root);
    }
}

// ---- the storage root ----

/// Everything under `root` must be registry:2's layout (plus wharf's `_wharf` extras), every
/// blob must hash to the digest its path names, and no temporary file may be left behind.
fn assert_layout(root: &Path) {
    let v2 = root.join("docker/registry/v2");
    for path in walk(root).into_iter().filter(|p| p.is_file()) {
        let rel = path
            .strip_prefix(&v2)
            .unwrap_or_else(|_| panic!("file outside docker/registry/v2: {}", path.display()));
        let parts: Vec<&str> = rel.iter().map(|c| c.to_str().expect("UTF-8 path")).collect();
        match parts.as_slice() {
            ["blobs", alg, pre, hex, "data"] => {
                assert_eq!(&hex[..2], *pre, "{}", path.display());
                let digest = format!("{alg}:{hex}");
                let data = std::fs::read(&path).expect("read blob");
                let actual = match *alg {
                    "sha256" => sha256(&data),
                    "sha512" => sha512(&data),
                    other => panic!("blob of unknown algorithm {other}: {}", path.display()),
                };
                assert_eq!(actual, digest, "blob bytes do not match their digest: {}", path.display());
            }
            ["repositories", rest @ ..] => assert_repository_file(&path, rest),
            // The running server's single-writer lock.
            ["_wharf", "lock"] => {}
            _ => panic!("unexpected file in the layout: {}", path.display()),
        }
    }
}

fn assert_repository_file(path: &Path, parts: &[&str]) {
    let split = parts
        .iter()
        .position(|p| p.starts_with('_'))
        .unwrap_or_else(|| panic!("repository file outside _layers/_manifests/_uploads: {}", path.display()));
    let name = parts[..split].join("/");
    assert!(valid_name(&name), "invalid repository directory {name:?}: {}", path.display());
    let link_to = |alg: &str, hex: &str| {
        assert_eq!(read_text(path), format!("{alg}:{hex}"), "{}", path.display());
    };
    match &parts[split..] {
        ["_layers", alg, hex, "link"] | ["_manifests", "revisions", alg, hex, "link"] => link_to(alg, hex),
        ["_manifests", "tags", _tag, "index", alg, hex, "link"] => link_to(alg, hex),
        ["_manifests", "tags", _tag, "current", "link"] => {
            let target = read_text(path);
            assert!(target.starts_with("sha256:") || target.starts_with("sha512:"), "{}", path.display());
        }
        ["_wharf", "referrers", _a, _s, alg, hex, "link"] => link_to(alg, hex),
        ["_uploads", _id, "data" | "startedat"] | ["_uploads", _id, "hashstates", ..] => {}
        other => panic!("unexpected repository file {other:?}: {}", path.display()),
    }
}

/// The distribution-spec name grammar, restated here so the check does not trust the server.
fn valid_name(name: &str) -> bool {
    let component = |c: &str| {
        let ok_char = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        let b = c.as_bytes();
        !b.is_empty()
            && ok_char(b[0])
            && ok_char(b[b.len() - 1])
            && b.iter().all(|&x| ok_char(x) || b"._-".contains(&x))
            && !c.contains("..")
            && !c.contains("___")
    };
    name.len() <= 255 && name.split('/').all(component)
}

// ---- raw HTTP ----

/// Writes `request` (write errors ignored: the server may close first) and reads until the
/// server closes. Returns the status and body, or None when it closed without answering.
async fn exchange(addr: &str, request: &[u8]) -> Option<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let _ = s.write_all(request).await;
    read_answer(&mut s, Duration::from_secs(15)).await
}

async fn read_answer(s: &mut TcpStream, limit: Duration) -> Option<(u16, Vec<u8>)> {
    let mut buf = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let mut chunk = [0u8; 8192];
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Err(_) => panic!("server neither answered nor closed within {limit:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let text = String::from_utf8_lossy(&buf);
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4).unwrap_or(buf.len());
    Some((status, buf[split..].to_vec()))
}

/// An HTTP/1.1 request that closes its connection after the answer.
fn request(method: &str, target: &[u8], headers: &[(&str, &[u8])], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(target);
    out.extend_from_slice(b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v);
        out.extend_from_slice(b"\r\n");
    }
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-length")) {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// Asserts a raw answer is `status` with a spec error body holding `code`.
fn assert_raw(what: &str, answer: Option<(u16, Vec<u8>)>, status: u16, code: &str) {
    let (got, body) = answer.unwrap_or_else(|| panic!("{what}: connection closed without an answer"));
    let text = String::from_utf8_lossy(&body);
    assert_eq!(got, status, "{what}: {text}");
    let json: Value = serde_json::from_slice(&body).unwrap_or_else(|_| panic!("{what}: {got} without a JSON body: {text}"));
    let codes: Vec<&str> = json["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["code"].as_str())
        .collect();
    assert!(codes.contains(&code), "{what}: want {code}, got {json}");
}

/// The relative target of a Location (raw requests send it as is).
fn target_of(reg: &Registry, location: &str, query: &[(&str, &str)]) -> String {
    relative(&reg.url_with(location, query))
}

// ---- names ----

#[tokio::test(flavor = "multi_thread")]
async fn over_long_and_host_qualified_names_are_name_invalid() {
    let mut h = start().await;
    // 255 characters is the limit (registry:2 counts the whole name); deep names count slashes.
    let longest = format!("{}/{}", "a".repeat(127), "b".repeat(127));
    assert_eq!(longest.len(), 255);
    h.reg.push_blob(&longest, b"at the limit").await;
    let too_long = [
        format!("{}/{}", "a".repeat(128), "b".repeat(127)),
        "a/".repeat(128) + "a",
        "x".repeat(4096),
    ];
    for name in &too_long {
        let resp = h
            .reg
            .call(Method::POST, h.reg.url(&format!("/v2/{name}/blobs/uploads/")), &[], vec![])
            .await;
        resp.expect_error(400, &["NAME_INVALID"]);
        h.reg
            .get(&format!("/v2/{name}/tags/list"))
            .await
            .expect_error(400, &["NAME_INVALID"]);
    }
    // A name with the registry host in it (what a client pushes to, not a repository).
    for name in ["127.0.0.1:5000/app", "localhost:5000/app", "registry.example.com:443/a"] {
        let answer = exchange(&h.w.addr, &request("GET", format!("/v2/{name}/tags/list").as_bytes(), &[], b"")).await;
        assert_raw(name, answer, 400, "NAME_INVALID");
    }
    let repos = h.reg.get("/v2/_catalog").await;
    assert_eq!(strings(&repos.json()["repositories"]), [longest.as_str()]);
    h.assert_survived().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_utf8_in_paths_queries_and_headers() {
    let mut h = start().await;
    let img = h.reg.push_image("app", "v1").await;

    // Raw bytes above 0x7f in the request line: hyper refuses the request before routing.
    let answer = exchange(&h.w.addr, &request("GET", b"/v2/\xff\xfe/tags/list", &[], b"")).await;
    if let Some((status, _)) = answer {
        assert_eq!(status, 400, "raw non-ASCII path");
    }
    // Percent-encoded invalid UTF-8 reaches the parsers, which refuse it.
    let cases: [(&str, u16, &str); 6] = [
        ("/v2/%ff%fe/tags/list", 400, "NAME_INVALID"),
        ("/v2/app%c0%af/tags/list", 400, "NAME_INVALID"),
        ("/v2/app/blobs/sha256:%ff%fe", 400, "DIGEST_INVALID"),
        ("/v2/app/referrers/sha256%3A%c3%28", 400, "DIGEST_INVALID"),
        // No tag can be invalid UTF-8, so nothing is stored under it (a push is refused below).
        ("/v2/app/manifests/%ff", 404, "MANIFEST_UNKNOWN"),
        ("/v2/app/tags/list?n=%ff", 400, "SIZE_INVALID"),
    ];
    for (target, status, code) in cases {
        let answer = exchange(&h.w.addr, &request("GET", target.as_bytes(), &[], b"")).await;
        assert_raw(target, answer, status, code);
    }
    let answer = exchange(&h.w.addr, &request("PUT", b"/v2/app/manifests/%ff", &[], &img.manifest)).await;
    assert_raw("PUT /v2/app/manifests/%ff", answer, 400, "MANIFEST_INVALID");
    let started = h.reg.start_upload("app").await;
    let target = format!("{}?digest=sha256%3A%ff", relative(&h.reg.url(started.location())));
    let answer = exchange(&h.w.addr, &request("PUT", target.as_bytes(), &[], b"x")).await;
    assert_raw("PUT ?digest=<invalid UTF-8>", answer, 400, "DIGEST_INVALID");

    // Header values with invalid UTF-8.
    let started = h.reg.start_upload("app").await;
    let target = relative(&h.reg.url(started.location()));
    let answer = exchange(
        &h.w.addr,
        &request("PATCH", target.as_bytes(), &[("Content-Range", b"0-\xff")], b"x"),
    )
    .await;
    assert_raw("Content-Range with invalid UTF-8", answer, 416, "BLOB_UPLOAD_INVALID");
    let headers: [(&str, &[u8]); 1] = [("Content-Type", b"application/vnd.oci.image.manifest.v1+json\xff")];
    let answer = exchange(&h.w.addr, &request("PUT", b"/v2/app/manifests/utf8", &headers, &img.manifest)).await;
    assert_raw("manifest Content-Type with invalid UTF-8", answer, 400, "MANIFEST_INVALID");
    h.reg.get_manifest("app", "utf8").await.expect_error(404, &["MANIFEST_UNKNOWN"]);
    // A Host that is not UTF-8 cannot go into an absolute Location: the server falls back to a
    // relative one instead of echoing the bytes.
    let mut s = TcpStream::connect(&h.w.addr).await.expect("connect");
    s.write_all(b"POST /v2/app/blobs/uploads/ HTTP/1.1\r\nHost: \xffevil\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut raw)).await;
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 202"), "{text}");
    assert!(text.to_lowercase().contains("location: /v2/app/blobs/uploads/"), "{text}");
    h.assert_survived().await;
}

// ---- digests and bodies ----

#[tokio::test(flavor = "multi_thread")]
async fn bodies_that_do_not_match_their_digest_are_digest_invalid() {
    let mut h = start().await;
    let data = random_bytes(4096);
    let other = sha256(b"something else");
    // Monolithic POST.
    let url = h.reg.url_with("/v2/app/blobs/uploads/", &[("digest", &other)]);
    h.reg
        .call(Method::POST, url, &[], data.clone())
        .await
        .expect_error(400, &["DIGEST_INVALID"]);
    // Session PUT with the body; then a PATCH then an empty PUT.
    let started = h.reg.start_upload("app").await;
    h.reg
        .finish_upload(started.location(), &other, &data)
        .await
        .expect_error(400, &["DIGEST_INVALID"]);
    let started = h.reg.start_upload("app").await;
    h.reg.patch(started.location(), &data, None).await.expect(202);
    h.reg
        .finish_upload(started.location(), &other, b"")
        .await
        .expect_error(400, &["DIGEST_INVALID"]);
    // The right hex under the wrong algorithm, and a sha512 that does not match.
    let as_sha512 = format!("sha512:{}{}", hex_of(&sha256(&data)), hex_of(&sha256(&data)));
    let url = h.reg.url_with("/v2/app/blobs/uploads/", &[("digest", &as_sha512)]);
    h.reg
        .call(Method::POST, url, &[], data.clone())
        .await
        .expect_error(400, &["DIGEST_INVALID"]);
    // Digests that are too long, carry junk, or name an algorithm wharf cannot verify.
    let long = format!("sha256:{}", "a".repeat(10_000));
    let junk = format!("{}00", sha256(&data));
    for bad in [
        long.as_str(),
        junk.as_str(),
        "sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564",
    ] {
        let url = h.reg.url_with("/v2/app/blobs/uploads/", &[("digest", bad)]);
        h.reg
            .call(Method::POST, url, &[], data.clone())
            .await
            .expect_error(400, &["DIGEST_INVALID"]);
    }
    // mount= with a bad digest or a bad source name.
    let url = h
        .reg
        .url_with("/v2/app/blobs/uploads/", &[("mount", "sha256:zz"), ("from", "other")]);
    h.reg
        .call(Method::POST, url, &[], vec![])
        .await
        .expect_error(400, &["DIGEST_INVALID"]);
    let url = h
        .reg
        .url_with("/v2/app/blobs/uploads/", &[("mount", &sha256(&data)), ("from", "../etc")]);
    h.reg
        .call(Method::POST, url, &[], vec![])
        .await
        .expect_error(400, &["NAME_INVALID"]);
    for digest in [sha256(&data), other, as_sha512] {
        h.reg.head(&format!("/v2/app/blobs/{digest}")).await.expect(404);
    }
    // The session that failed its digest check can still be completed correctly.
    h.reg.finish_upload(started.location(), &sha256(&data), b"").await.expect(201);
    h.assert_survived().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn content_range_and_length_lies_and_chunks_out_of_order() {
    let mut h = start().await;
    let data = random_bytes(3000);
    let digest = sha256(&data);
    let started = h.reg.start_upload("app").await;
    let loc = started.location().to_string();
    // First chunk in place.
    let first = h.reg.patch(&loc, &data[..1000], Some((0, 999))).await;
    first.expect(202);
    assert_upload_range(&first, 1000);
    // A chunk that skips ahead, one that overlaps, one that starts over: 416.
    for (s, e) in [(2000, 2999), (500, 1499), (0, 999)] {
        let chunk = &data[s..=e];
        let resp = h.reg.patch(&loc, chunk, Some((s, e))).await;
        resp.expect_error(416, &["BLOB_UPLOAD_INVALID"]);
    }
    // Ranges that cannot be: backwards, not numbers, and one whose length overflows.
    for cr in [
        "1999-1000",
        "a-b",
        "1000",
        "-5",
        "1000-18446744073709551615",
        "18446744073709551615-18446744073709551615",
    ] {
        let url = h.reg.url(&loc);
        let headers = [("Content-Range", cr), ("Content-Type", "application/octet-stream")];
        let resp = h.reg.call(Method::PATCH, url, &headers, data[1000..2000].to_vec()).await;
        resp.expect_error(416, &["BLOB_UPLOAD_INVALID"]);
    }
    // The range says 1000 bytes, the body (and its Content-Length) says 500.
    let resp = h.reg.patch(&loc, &data[1000..1500], Some((1000, 1999))).await;
    resp.expect_error(400, &["SIZE_INVALID"]);
    // Content-Length larger than the body, the client then gives up: the chunk is dropped.
    let target = target_of(&h.reg, &loc, &[]);
    let mut s = TcpStream::connect(&h.w.addr).await.expect("connect");
    let head = format!("PATCH {target} HTTP/1.1\r\nHost: x\r\nContent-Range: 1000-1999\r\nContent-Length: 1000\r\n\r\n");
    s.write_all(head.as_bytes()).await.expect("write");
    s.write_all(&data[1000..1400]).await.expect("write");
    s.shutdown().await.expect("half-close");
    if let Some((status, body)) = read_answer(&mut s, Duration::from_secs(15)).await {
        assert_raw("truncated chunk", Some((status, body)), 400, "BLOB_UPLOAD_INVALID");
    }
    // Nothing of the lies was kept: the session still holds the first 1000 bytes.
    let status = h.reg.get(&loc).await;
    status.expect(204);
    assert_upload_range(&status, 1000);
    // Content-Length that is not a number is refused by the HTTP layer.
    let answer = exchange(
        &h.w.addr,
        &request("PATCH", target.as_bytes(), &[("Content-Length", b"12abc")], b""),
    )
    .await;
    if let Some((status, _)) = answer {
        assert_eq!(status, 400, "non-numeric Content-Length");
    }
    // The honest rest completes the blob.
    h.reg.patch(&loc, &data[1000..], Some((1000, 2999))).await.expect(202);
    h.reg.finish_upload(&loc, &digest, b"").await.expect(201);
    let pulled = h.reg.get(&format!("/v2/app/blobs/{digest}")).await;
    pulled.expect(200);
    assert_eq!(sha256(&pulled.body), digest);
    h.assert_survived().await;
}

// ---- manifests ----

#[tokio::test(flavor = "multi_thread")]
async fn malformed_manifests_are_refused() {
    let mut h = start().await;
    let img = h.reg.push_image("app", "v1").await;
    let valid: Value = serde_json::from_slice(&img.manifest).unwrap();

    // Over 4 MiB, with and without a Content-Length.
    let mut big = valid.clone();
    big["annotations"] = json!({"pad": "x".repeat(4 * 1024 * 1024)});
    let big = to_bytes(&big);
    h.reg
        .put_manifest("app", "big", OCI_MANIFEST, &big)
        .await
        .expect_error(413, &["SIZE_INVALID"]);
    let stream = futures::stream::iter(
        big.chunks(64 * 1024)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let chunked = reqwest::Client::new()
        .put(h.reg.url("/v2/app/manifests/big"))
        .header("Content-Type", OCI_MANIFEST)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .expect("chunked PUT");
    assert_eq!(chunked.status().as_u16(), 413);
    // Exactly at the limit is still accepted (the spec asks for at least 4 MiB).
    let mut at_limit = valid.clone();
    at_limit["annotations"] = json!({"pad": ""});
    let pad = 4 * 1024 * 1024 - to_bytes(&at_limit).len();
    at_limit["annotations"] = json!({"pad": "x".repeat(pad)});
    let at_limit = to_bytes(&at_limit);
    assert_eq!(at_limit.len(), 4 * 1024 * 1024);
    h.reg.push_manifest("app", Some("at-limit"), OCI_MANIFEST, &at_limit).await;

    let text = String::from_utf8(img.manifest.clone()).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("not JSON", b"{not json".to_vec(), OCI_MANIFEST),
        (
            "not UTF-8",
            [&img.manifest[..10], b"\xff\xfe", &img.manifest[10..]].concat(),
            OCI_MANIFEST,
        ),
        ("empty", Vec::new(), OCI_MANIFEST),
        ("a JSON array", b"[1,2,3]".to_vec(), OCI_MANIFEST),
        (
            "nested 100000 deep",
            format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes(),
            OCI_MANIFEST,
        ),
        (
            "duplicate top-level key",
            text.replacen('{', r#"{"schemaVersion":2,"#, 1).into_bytes(),
            OCI_MANIFEST,
        ),
        (
            "duplicate config",
            text.replacen(r#""config":"#, &format!(r#""config":{},"config":"#, img.config.json()), 1)
                .into_bytes(),
            OCI_MANIFEST,
        ),
        ("Content-Type names an index", img.manifest.clone(), OCI_INDEX),
        ("Content-Type is Docker's", img.manifest.clone(), DOCKER_MANIFEST),
        (
            "unknown mediaType",
            text.replace(OCI_MANIFEST, "application/vnd.example.thing+json").into_bytes(),
            OCI_MANIFEST,
        ),
        (
            "schema1",
            br#"{"schemaVersion":1,"name":"app","tag":"v1","fsLayers":[]}"#.to_vec(),
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
        ),
        (
            "schemaVersion 3",
            text.replace(r#""schemaVersion":2"#, r#""schemaVersion":3"#).into_bytes(),
            OCI_MANIFEST,
        ),
        (
            "layer digest of an unknown algorithm",
            text.replace(&img.layer.digest, &format!("md5:{}", "0".repeat(32))).into_bytes(),
            OCI_MANIFEST,
        ),
        (
            "negative size",
            text.replace(&format!(r#""size":{}"#, img.layer.size), r#""size":-1"#).into_bytes(),
            OCI_MANIFEST,
        ),
    ];
    for (what, body, content_type) in &cases {
        let resp = h.reg.put_manifest("app", "bad", content_type, body).await;
        assert_eq!(resp.status, 400, "{what}: {}", resp.show());
        resp.expect_error(400, &["MANIFEST_INVALID"]);
    }
    h.reg.get_manifest("app", "bad").await.expect_error(404, &["MANIFEST_UNKNOWN"]);
    h.reg.get_manifest("app", "big").await.expect_error(404, &["MANIFEST_UNKNOWN"]);
    let tags = h.reg.get("/v2/app/tags/list").await;
    assert_eq!(strings(&tags.json()["tags"]), ["at-limit", "v1"]);
    h.assert_survived().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn indexes_pointing_at_themselves_or_missing_children_are_refused() {
    let mut h = start().await;
    let img = h.reg.push_image("app", "v1").await;
    // A child that was never pushed.
    let missing = Desc::of(OCI_MANIFEST, b"never pushed");
    let index = to_bytes(&index_manifest(OCI_INDEX, &[img.desc(), missing.clone()]));
    let resp = h.reg.put_manifest("app", "idx", OCI_INDEX, &index).await;
    resp.expect_error(400, &["MANIFEST_BLOB_UNKNOWN"]);
    assert_eq!(resp.json()["errors"][0]["detail"]["digest"], missing.digest);
    // A child that is a layer blob of the repository, not a manifest.
    let layer_as_child = Desc {
        media_type: OCI_MANIFEST.into(),
        ..img.layer.clone()
    };
    let index = to_bytes(&index_manifest(OCI_INDEX, &[layer_as_child]));
    h.reg
        .put_manifest("app", "idx", OCI_INDEX, &index)
        .await
        .expect_error(400, &["MANIFEST_BLOB_UNKNOWN"]);
    // A child that exists, but only in another repository.
    let elsewhere = h.reg.push_image("other", "v1").await;
    let index = to_bytes(&index_manifest(OCI_INDEX, &[elsewhere.desc()]));
    h.reg
        .put_manifest("app", "idx", OCI_INDEX, &index)
        .await
        .expect_error(400, &["MANIFEST_BLOB_UNKNOWN"]);
    // An index that names the digest it is pushed under as its own child: its bytes cannot
    // hash to that digest, so it is refused for the digest before its children are looked at.
    let guess = sha256(b"the index itself");
    let own = Desc {
        media_type: OCI_INDEX.into(),
        digest: guess.clone(),
        size: 100,
    };
    let index = to_bytes(&index_manifest(OCI_INDEX, &[own]));
    h.reg
        .put_manifest("app", &guess, OCI_INDEX, &index)
        .await
        .expect_error(400, &["DIGEST_INVALID"]);
    // The same index by tag: its child is missing.
    h.reg
        .put_manifest("app", "self", OCI_INDEX, &index)
        .await
        .expect_error(400, &["MANIFEST_BLOB_UNKNOWN"]);
    // An image whose config is an index's digest (a manifest, not a blob of the repository).
    let good_index = to_bytes(&index_manifest(OCI_INDEX, &[img.desc()]));
    h.reg.push_manifest("app", Some("idx"), OCI_INDEX, &good_index).await;
    let twisted = Desc::of(OCI_CONFIG, &good_index);
    let image = to_bytes(&image_manifest(OCI_MANIFEST, &twisted, &[]));
    h.reg
        .put_manifest("app", "twisted", OCI_MANIFEST, &image)
        .await
        .expect_error(400, &["MANIFEST_BLOB_UNKNOWN"]);
    let tags = h.reg.get("/v2/app/tags/list").await;
    assert_eq!(strings(&tags.json()["tags"]), ["idx", "v1"]);
    h.assert_survived().await;
}

// ---- connections ----

#[tokio::test(flavor = "multi_thread")]
async fn oversized_heads_are_refused_cleanly() {
    let mut h = start().await;
    let big_value = vec![b'a'; 100 * 1024];
    let many: Vec<(String, &[u8])> = (0..200).map(|i| (format!("X-Many-{i}"), b"v".as_slice())).collect();
    let many: Vec<(&str, &[u8])> = many.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let long_target = format!("/v2/app/tags/list?last={}", "a".repeat(100 * 1024));
    let requests = [
        ("one 100 KiB header", request("GET", b"/v2/", &[("X-Big", &big_value)], b"")),
        ("200 headers", request("GET", b"/v2/", &many, b"")),
        ("100 KiB request target", request("GET", long_target.as_bytes(), &[], b"")),
    ];
    for (what, req) in requests {
        // Refused with 431 (or 414 for the target), or the connection closed: never served.
        if let Some((status, _)) = exchange(&h.w.addr, &req).await {
            assert!(matches!(status, 414 | 431), "{what}: answered {status}");
        }
        h.reg.get("/v2/").await.expect(200);
    }
    // Just over the limit on a blob push: a JSON error, and the blob is not stored.
    let blob = b"head too large";
    let digest = sha256(blob);
    let target = format!("/v2/app/blobs/uploads/?digest={digest}");
    let padding = vec![b'p'; 65 * 1024];
    let req = request("POST", target.as_bytes(), &[("X-Padding", &padding)], blob);
    let (status, body) = exchange(&h.w.addr, &req).await.expect("an answer");
    assert_eq!(status, 431);
    let err: Value = serde_json::from_slice(&body).expect("a JSON error body");
    assert_eq!(err["errors"][0]["code"], "SIZE_INVALID", "{err}");
    h.reg.head(&format!("/v2/app/blobs/{digest}")).await.expect(404);
    h.assert_survived().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_the_server_did_not_need_is_read_out_so_the_client_sees_the_answer() {
    let mut h = start().await;
    // Far more than the socket buffers hold: a server that closed with it unread would reset the
    // connection while the client is still writing.
    let body = vec![0x5a_u8; 32 * 1024 * 1024];
    let digest = sha256(&body);
    let cases = [
        (
            "a chunk for an unknown upload",
            "PATCH",
            "/v2/app/blobs/uploads/no-such-session".to_string(),
            404,
            "BLOB_UPLOAD_UNKNOWN",
        ),
        (
            "a blob pushed to an invalid name",
            "POST",
            format!("/v2/Bad_Name/blobs/uploads/?digest={digest}"),
            400,
            "NAME_INVALID",
        ),
    ];
    for (what, method, target, status, code) in cases {
        let req = request(method, target.as_bytes(), &[("Content-Type", b"application/octet-stream")], &body);
        let mut s = TcpStream::connect(&h.w.addr).await.expect("connect");
        s.write_all(&req)
            .await
            .unwrap_or_else(|e| panic!("{what}: the server stopped taking the body: {e}"));
        assert_raw(what, read_answer(&mut s, Duration::from_secs(15)).await, status, code);
    }
    h.reg.head(&format!("/v2/app/blobs/{digest}")).await.expect(404);
    h.assert_survived().await;
}

/// Sends a request head one header line at a time, forever, until the server hangs up.
/// Returns how long the server took.
async fn slowloris(addr: String) -> Duration {
    let started = Instant::now();
    let mut s = TcpStream::connect(&addr).await.expect("connect");
    s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n").await.expect("write");
    let mut buf = [0u8; 1024];
    for i in 0..100 {
        match tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await {
            Ok(Ok(_)) | Ok(Err(_)) => return started.elapsed(),
            Err(_) => {}
        }
        if s.write_all(format!("X-Slow-{i}: a\r\n").as_bytes()).await.is_err() {
            return started.elapsed();
        }
    }
    panic!("a slowloris client was held for {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_header_senders_are_dropped_and_do_not_block_others() {
    let mut h = start().await;
    let clients: Vec<_> = (0..100).map(|_| tokio::spawn(slowloris(h.w.addr.clone()))).collect();
    // While they trickle, everyone else is served promptly.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..5 {
        let t = Instant::now();
        h.reg.get("/v2/").await.expect(200);
        assert!(t.elapsed() < Duration::from_secs(1), "served in {:?} under slowloris", t.elapsed());
    }
    for c in clients {
        let held = c.await.expect("slowloris task");
        assert!(held >= HEADER_TIMEOUT - Duration::from_millis(300), "dropped early after {held:?}");
        assert!(held < HEADER_TIMEOUT + Duration::from_secs(4), "held for {held:?}");
    }
    // An idle keep-alive connection is dropped by the same limit.
    let mut idle = TcpStream::connect(&h.w.addr).await.expect("connect");
    let t = Instant::now();
    let answer = read_answer(&mut idle, Duration::from_secs(15)).await;
    assert!(answer.is_none(), "an idle connection got {answer:?}");
    assert!(
        t.elapsed() < HEADER_TIMEOUT + Duration::from_secs(4),
        "idle connection held {:?}",
        t.elapsed()
    );
    h.assert_survived().await;
}

/// Sends a request whose body stops after `sent` bytes of the declared `declared`, then waits
/// for the server's answer. Returns it and how long it took.
async fn stalled_body(
    addr: &str,
    method: &str,
    target: &str,
    content_type: &str,
    declared: usize,
    sent: &[u8],
) -> (Option<(u16, Vec<u8>)>, Duration) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let head = format!("{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: {declared}\r\n\r\n");
    s.write_all(head.as_bytes()).await.expect("write head");
    s.write_all(sent).await.expect("write body");
    let t = Instant::now();
    let answer = read_answer(&mut s, Duration::from_secs(20)).await;
    (answer, t.elapsed())
}

#[tokio::test(flavor = "multi_thread")]
async fn stalled_bodies_time_out_and_keep_nothing() {
    let mut h = start().await;
    let data = random_bytes(1 << 20);
    let digest = sha256(&data);
    let started = h.reg.start_upload("app").await;
    let loc = started.location().to_string();
    let patch_target = target_of(&h.reg, &loc, &[]);
    let post_target = relative(&h.reg.url_with("/v2/app/blobs/uploads/", &[("digest", &digest)]));
    let manifest = h.reg.push_image("app", "v1").await.manifest;

    let addr = h.w.addr.clone();
    let (patch, post, put, ()) = tokio::join!(
        stalled_body(&addr, "PATCH", &patch_target, "application/octet-stream", data.len(), &data[..100]),
        stalled_body(&addr, "POST", &post_target, "application/octet-stream", data.len(), &data[..100]),
        stalled_body(
            &addr,
            "PUT",
            "/v2/app/manifests/stalled",
            OCI_MANIFEST,
            manifest.len(),
            &manifest[..10]
        ),
        async {
            // Meanwhile a whole push goes through.
            tokio::time::sleep(Duration::from_millis(200)).await;
            h.reg.push_image("busy", "v1").await;
        },
    );
    for (what, (answer, took), code) in [
        ("stalled PATCH", patch, "BLOB_UPLOAD_INVALID"),
        ("stalled monolithic POST", post, "BLOB_UPLOAD_INVALID"),
        ("stalled manifest PUT", put, "MANIFEST_INVALID"),
    ] {
        assert!(took >= BODY_TIMEOUT - Duration::from_millis(300), "{what}: answered after {took:?}");
        assert!(took < BODY_TIMEOUT + Duration::from_secs(5), "{what}: held for {took:?}");
        assert_raw(what, answer, 400, code);
    }
    // Nothing of the stalled bodies was kept; the session can still be used.
    let status = h.reg.get(&loc).await;
    status.expect(204);
    assert_upload_range(&status, 0);
    h.reg.head(&format!("/v2/app/blobs/{digest}")).await.expect(404);
    h.reg.get_manifest("app", "stalled").await.expect_error(404, &["MANIFEST_UNKNOWN"]);
    h.reg.finish_upload(&loc, &digest, &data).await.expect(201);
    h.assert_survived().await;
}

// ---- lists ----

#[tokio::test(flavor = "multi_thread")]
async fn absurd_page_sizes_and_markers() {
    let mut h = start().await;
    for i in 0..3 {
        h.reg.push_image(&format!("repo{i}"), "v1").await;
    }
    // The largest n there is: every entry, one page, no Link.
    let max = u64::MAX.to_string();
    for target in [format!("/v2/_catalog?n={max}"), format!("/v2/repo0/tags/list?n={max}")] {
        let resp = h.reg.get(&target).await;
        resp.expect(200);
        assert!(resp.header("Link").is_none(), "{target}: {}", resp.show());
    }
    assert_eq!(
        strings(&h.reg.get(&format!("/v2/_catalog?n={max}")).await.json()["repositories"]).len(),
        3
    );
    // Beyond u64, negative, fractional, hex: not a page size.
    for n in ["18446744073709551616", "99999999999999999999999999999", "-1", "1.5", "0x10", "1e3"] {
        for base in ["/v2/_catalog", "/v2/repo0/tags/list"] {
            let resp = h.reg.get(&format!("{base}?n={n}")).await;
            resp.expect_error(400, &["SIZE_INVALID"]);
        }
    }
    // A huge `last` marker and one past everything: an empty page, not an error.
    let long_last = "z".repeat(8 * 1024);
    for last in [long_last.as_str(), "zzzz", "%ff"] {
        let resp = h.reg.get(&format!("/v2/_catalog?n=2&last={last}")).await;
        resp.expect(200);
        assert!(strings(&resp.json()["repositories"]).is_empty(), "{}", resp.show());
    }
    // Paging with n=1 walks every repository exactly once.
    let (all, pages) = h.reg.collect_pages("/v2/_catalog?n=1", "repositories").await;
    assert_eq!(all, ["repo0", "repo1", "repo2"]);
    assert!(pages >= 3);
    h.assert_survived().await;
}
