//! Error paths: invalid repository names (including path traversal sent byte-for-byte),
//! malformed and unsupported digests, invalid tags, unknown upload sessions, list parameters,
//! and bodies whose length disagrees with their headers. Each answer must be a spec error and
//! must leave nothing on disk.

mod common;

use common::api::*;
use reqwest::Method;

/// Asserts a raw answer is a 4xx spec error: 400 with one of `codes_400`, or any 404 error.
fn assert_raw_error(what: &str, answer: Option<(u16, Vec<u8>)>, codes_400: &[&str]) {
    let (status, body) = answer.unwrap_or_else(|| panic!("{what}: connection closed without an answer"));
    let json: serde_json::Value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| panic!("{what}: {status} without a JSON body: {}", String::from_utf8_lossy(&body)));
    let code = json["errors"][0]["code"].as_str().unwrap_or_default().to_string();
    let ok = match status {
        400 => codes_400.contains(&code.as_str()),
        404 => !code.is_empty(),
        _ => false,
    };
    assert!(ok, "{what}: got {status} {json}");
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_repository_names_are_rejected_and_create_nothing() {
    let (w, _reg) = start();
    let marker = format!("escaped{}", hex::encode(random_bytes(4)));
    let names = [
        "Upper/Case".to_string(),
        "a/../b".to_string(),
        format!("a/../../../../{marker}"),
        format!("a/%2e%2e/%2e%2e/%2e%2e/%2e%2e/{marker}"),
        format!("{}tmp/{marker}", "../".repeat(12)),
        format!("/{marker}"),
        "a".repeat(256),
        "a/./b".to_string(),
        "a//b".to_string(),
        "a___b".to_string(),
        "-lead".to_string(),
    ];
    let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#;
    for name in &names {
        let requests: [(&str, String, &[u8]); 4] = [
            ("GET", format!("/v2/{name}/tags/list"), b""),
            ("GET", format!("/v2/{name}/manifests/latest"), b""),
            ("POST", format!("/v2/{name}/blobs/uploads/"), b""),
            ("PUT", format!("/v2/{name}/manifests/latest"), manifest),
        ];
        for (method, path, body) in requests {
            let head = format!(
                "{method} {path} HTTP/1.0\r\nContent-Type: {OCI_MANIFEST}\r\nContent-Length: {}",
                body.len()
            );
            let answer = raw_request(&w.addr, &head, body, false).await;
            assert_raw_error(&format!("{method} {path}"), answer, &["NAME_INVALID"]);
        }
    }
    let repos = walk(&v2_dir(&w).join("repositories"));
    assert!(repos.is_empty(), "invalid names created {repos:?}");
    let outside = w.root.parent().expect("root has a parent");
    let escaped: Vec<_> = walk(outside)
        .into_iter()
        .filter(|p| p.to_string_lossy().to_lowercase().contains(&marker))
        .collect();
    assert!(escaped.is_empty(), "traversal wrote {escaped:?}");
    assert!(!std::path::Path::new("/tmp").join(&marker).exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_digests_are_digest_invalid() {
    let (_w, reg) = start();
    reg.push_image("app", "v1").await;
    let upper = format!("sha256:{}", "A".repeat(64));
    let bad = ["sha256:xyz", "sha256:abc", upper.as_str(), "nocolon", "sha256:"];
    for digest in bad {
        reg.get(&format!("/v2/app/blobs/{digest}"))
            .await
            .expect_error(400, &["DIGEST_INVALID"]);
        reg.head(&format!("/v2/app/blobs/{digest}")).await.expect(400);
        reg.delete(&format!("/v2/app/blobs/{digest}"))
            .await
            .expect_error(400, &["DIGEST_INVALID"]);
        let referrers = reg.get(&format!("/v2/app/referrers/{digest}")).await;
        referrers.expect_error(400, &["DIGEST_INVALID"]);
        let started = reg.start_upload("app").await;
        let put = reg.finish_upload(started.location(), digest, b"data").await;
        put.expect_error(400, &["DIGEST_INVALID"]);
    }
    for digest in ["sha256:xyz", upper.as_str()] {
        reg.get_manifest("app", digest).await.expect_error(400, &["DIGEST_INVALID"]);
    }
    // Closing an upload without any digest is refused the same way.
    let started = reg.start_upload("app").await;
    let url = reg.url(started.location());
    let resp = reg.call(Method::PUT, url, &[], b"data".to_vec()).await;
    resp.expect_error(400, &["DIGEST_INVALID"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn unsupported_digest_algorithms_are_refused() {
    let (_w, reg) = start();
    reg.push_image("app", "v1").await;
    let md5 = format!("md5:{}", "0".repeat(32));
    let codes = ["DIGEST_INVALID", "UNSUPPORTED"];
    reg.get(&format!("/v2/app/blobs/{md5}")).await.expect_error(400, &codes);
    reg.get_manifest("app", &md5).await.expect_error(400, &codes);
    let started = reg.start_upload("app").await;
    reg.finish_upload(started.location(), &md5, b"data").await.expect_error(400, &codes);
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_tags_are_rejected() {
    let (_w, reg) = start();
    let img = reg.push_image("app", "v1").await;
    let long = "t".repeat(129);
    for tag in [".hidden", "-dash", long.as_str(), "has%20space", "semi;colon"] {
        let resp = reg.put_manifest("app", tag, OCI_MANIFEST, &img.manifest).await;
        resp.expect_client_error();
        assert!(matches!(resp.status, 400 | 404), "PUT tag {tag:?}: {}", resp.show());
        reg.get_manifest("app", tag).await.expect_client_error();
    }
    // 128 characters is still a valid tag.
    let longest = "t".repeat(128);
    reg.push_manifest("app", Some(&longest), OCI_MANIFEST, &img.manifest).await;
    let tags = reg.get("/v2/app/tags/list").await;
    assert_eq!(strings(&tags.json()["tags"]), [longest.as_str(), "v1"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_upload_sessions_are_blob_upload_unknown() {
    let (w, reg) = start();
    reg.push_image("app", "v1").await;
    let unknown = format!("/v2/app/blobs/uploads/{}", uuid::Uuid::new_v4());
    let digest = sha256(b"x");
    reg.get(&unknown).await.expect_error(404, &["BLOB_UPLOAD_UNKNOWN"]);
    reg.patch(&unknown, b"x", None).await.expect_error(404, &["BLOB_UPLOAD_UNKNOWN"]);
    reg.finish_upload(&unknown, &digest, b"x")
        .await
        .expect_error(404, &["BLOB_UPLOAD_UNKNOWN"]);
    reg.delete(&unknown).await.expect_error(404, &["BLOB_UPLOAD_UNKNOWN"]);

    // A session belongs to the repository that opened it.
    let started = reg.start_upload("app").await;
    let mut other = reg.url(started.location());
    let path = other.path().replacen("/v2/app/", "/v2/other/", 1);
    other.set_path(&path);
    let other = other.to_string();
    reg.get(&other).await.expect_error(404, &["BLOB_UPLOAD_UNKNOWN"]);
    reg.patch(&other, b"x", None).await.expect_error(404, &["BLOB_UPLOAD_UNKNOWN"]);

    let head = "GET /v2/app/blobs/uploads/../../../../../../etc/passwd HTTP/1.0";
    let answer = raw_request(&w.addr, head, b"", false).await;
    assert_raw_error(head, answer, &["BLOB_UPLOAD_UNKNOWN", "BLOB_UPLOAD_INVALID", "NAME_INVALID"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn list_parameters_are_bounded_not_fatal() {
    let (_w, reg) = start();
    reg.push_image("app", "v1").await;
    for n in ["2147483647", "1000000000000"] {
        let tags = reg.get(&format!("/v2/app/tags/list?n={n}")).await;
        tags.expect(200);
        assert_eq!(strings(&tags.json()["tags"]), ["v1"]);
        let catalog = reg.get(&format!("/v2/_catalog?n={n}")).await;
        catalog.expect(200);
        assert_eq!(strings(&catalog.json()["repositories"]), ["app"]);
    }
    for target in ["/v2/app/tags/list?n=abc", "/v2/_catalog?n=abc"] {
        let resp = reg.get(target).await;
        resp.expect_client_error();
        assert_eq!(resp.status, 400, "{target}: {}", resp.show());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_that_disagree_with_their_length_are_refused() {
    let (w, reg) = start();
    let data = random_bytes(100);
    let digest = sha256(&data);

    // Content-Range claims 100 bytes but 50 arrive: refused, and nothing of it is kept.
    let started = reg.start_upload("app").await;
    let short = reg.patch(started.location(), &data[..50], Some((0, 99))).await;
    assert!(matches!(short.status, 400 | 416), "{}", short.show());
    let done = reg.finish_upload(started.location(), &digest, &data).await;
    done.expect(201);

    // Content-Length promises more than is sent before the client gives up.
    let other = random_bytes(1000);
    let other_digest = sha256(&other);
    let started = reg.start_upload("app").await;
    let url = reg.url_with(started.location(), &[("digest", &other_digest)]);
    let head = format!("PUT {} HTTP/1.0\r\nContent-Length: 1000", relative(&url));
    if let Some((status, _)) = raw_request(&w.addr, &head, &other[..500], true).await {
        assert!(status >= 400, "truncated upload answered {status}");
    }
    reg.head(&format!("/v2/app/blobs/{other_digest}")).await.expect(404);

    // Content-Length shorter than the body: only the declared bytes count, so the digest fails.
    let url = reg.url_with("/v2/app/blobs/uploads/", &[("digest", &other_digest)]);
    let head = format!("POST {} HTTP/1.0\r\nContent-Length: 600", relative(&url));
    // The server may close with the surplus unread, which can cut its answer off; when an
    // answer arrives it must be the spec error.
    let answer = raw_request(&w.addr, &head, &other, false).await;
    if answer.is_some() {
        assert_raw_error("POST with a short Content-Length", answer, &["DIGEST_INVALID", "SIZE_INVALID"]);
    }
    reg.head(&format!("/v2/app/blobs/{other_digest}")).await.expect(404);
}
