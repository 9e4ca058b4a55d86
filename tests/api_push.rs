//! Push: every blob upload flow (POST+PUT, single POST, chunked, streamed, mount), upload
//! sessions (status, cancel), manifest uploads and their validation, and the registry:2 layout
//! the pushes leave on disk.

mod common;

use common::api::*;
use reqwest::Method;
use serde_json::json;

/// Follows a 201's `Location` and checks it serves `data` with its digest.
async fn assert_blob_at_location(reg: &Registry, created: &Resp, data: &[u8]) {
    created.expect(201);
    let got = reg.get(created.location()).await;
    got.expect(200);
    assert_eq!(got.body, data, "blob at {}", created.location());
}

#[tokio::test(flavor = "multi_thread")]
async fn monolithic_post_then_put() {
    let (_w, reg) = start();
    let data = random_bytes(50_000);
    let digest = sha256(&data);

    let started = reg.start_upload("app").await;
    let uuid = started.must("Docker-Upload-UUID");
    assert!(started.location().contains(uuid), "Location names the session: {}", started.show());
    assert_upload_range(&started, 0);

    let done = reg.finish_upload(started.location(), &digest, &data).await;
    assert_eq!(done.header("Docker-Content-Digest"), Some(digest.as_str()), "{}", done.show());
    assert_blob_at_location(&reg, &done, &data).await;
    assert!(done.location().ends_with(&format!("/v2/app/blobs/{digest}")), "{}", done.location());
}

#[tokio::test(flavor = "multi_thread")]
async fn single_post_with_digest_creates_the_blob() {
    let (_w, reg) = start();
    let data = random_bytes(3000);
    let digest = sha256(&data);
    let url = reg.url_with("/v2/app/blobs/uploads/", &[("digest", &digest)]);
    let headers = [("Content-Type", "application/octet-stream")];
    let done = reg.call(Method::POST, url, &headers, data.clone()).await;
    assert_eq!(done.header("Docker-Content-Digest"), Some(digest.as_str()));
    assert_blob_at_location(&reg, &done, &data).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn chunked_upload_in_order_with_final_chunk_in_put() {
    let (_w, reg) = start();
    let data = random_bytes(300_000);
    let (a, b, c) = (&data[..100_000], &data[100_000..250_000], &data[250_000..]);
    let started = reg.start_upload("chunks").await;

    let first = reg.patch(started.location(), a, Some((0, a.len() - 1))).await;
    first.expect(202);
    assert_upload_range(&first, a.len());
    first.must("Docker-Upload-UUID");

    // A chunk that does not start at the current offset is refused and changes nothing.
    let gap = reg.patch(first.location(), b, Some((a.len() + 10, a.len() + 9 + b.len()))).await;
    gap.expect(416);
    // Its body was never read, so the server ends that connection and must say so: a client
    // that reused it would see its next request cut off.
    assert_eq!(gap.header("Connection"), Some("close"), "{}", gap.show());
    let status = reg.get(first.location()).await;
    status.expect(204);
    assert_upload_range(&status, a.len());

    let second = reg.patch(status.location(), b, Some((a.len(), a.len() + b.len() - 1))).await;
    second.expect(202);
    assert_upload_range(&second, a.len() + b.len());

    let digest = sha256(&data);
    let url = reg.url_with(second.location(), &[("digest", &digest)]);
    let range = format!("{}-{}", a.len() + b.len(), data.len() - 1);
    let headers = [("Content-Type", "application/octet-stream"), ("Content-Range", range.as_str())];
    let done = reg.call(Method::PUT, url, &headers, c.to_vec()).await;
    assert_blob_at_location(&reg, &done, &data).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn streamed_patches_without_content_range_append() {
    let (_w, reg) = start();
    let data = random_bytes(120_000);
    let started = reg.start_upload("stream").await;
    let first = reg.patch(started.location(), &data[..70_000], None).await;
    first.expect(202);
    assert_upload_range(&first, 70_000);
    let second = reg.patch(first.location(), &data[70_000..], None).await;
    second.expect(202);
    assert_upload_range(&second, data.len());
    let done = reg.finish_upload(second.location(), &sha256(&data), &[]).await;
    assert_blob_at_location(&reg, &done, &data).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn upload_status_and_cancel() {
    let (_w, reg) = start();
    let started = reg.start_upload("app").await;
    let patched = reg.patch(started.location(), b"0123456789", None).await;
    patched.expect(202);

    let status = reg.get(patched.location()).await;
    status.expect(204);
    assert_upload_range(&status, 10);
    status.location();
    assert_eq!(status.header("Docker-Upload-UUID"), started.header("Docker-Upload-UUID"));

    reg.delete(patched.location()).await.expect(204);
    reg.get(patched.location()).await.expect_error(404, &["BLOB_UPLOAD_UNKNOWN"]);
    let late = reg.finish_upload(patched.location(), &sha256(b"0123456789"), &[]).await;
    late.expect_error(404, &["BLOB_UPLOAD_UNKNOWN"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn digest_mismatch_on_put_is_digest_invalid() {
    let (_w, reg) = start();
    let data = random_bytes(1000);
    let claimed = sha256(b"something else");
    let started = reg.start_upload("app").await;
    let resp = reg.finish_upload(started.location(), &claimed, &data).await;
    resp.expect_error(400, &["DIGEST_INVALID"]);
    for digest in [claimed, sha256(&data)] {
        reg.head(&format!("/v2/app/blobs/{digest}")).await.expect(404);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cross_repository_mount_links_an_existing_blob() {
    let (_w, reg) = start();
    let data = random_bytes(5000);
    let digest = reg.push_blob("team/src", &data).await;
    let url = reg.url_with("/v2/dst/blobs/uploads/", &[("mount", &digest), ("from", "team/src")]);
    let mounted = reg.call(Method::POST, url, &[], vec![]).await;
    assert_eq!(mounted.header("Docker-Content-Digest"), Some(digest.as_str()));
    assert_blob_at_location(&reg, &mounted, &data).await;
    let got = reg.get(&format!("/v2/dst/blobs/{digest}")).await;
    got.expect(200);
    assert_eq!(got.body, data);
}

#[tokio::test(flavor = "multi_thread")]
async fn mount_falls_back_to_an_upload_session() {
    let (_w, reg) = start();
    reg.push_blob("src", b"present in src").await;
    let elsewhere = random_bytes(700);
    let elsewhere_digest = reg.push_blob("third", &elsewhere).await;
    let absent = random_bytes(900);

    // Absent from the registry, or present but not in `from`: both start an ordinary upload.
    for (digest, data) in [(sha256(&absent), &absent), (elsewhere_digest, &elsewhere)] {
        assert_mount_falls_back(&reg, &[("mount", &digest), ("from", "src")], data).await;
    }
}

/// POSTs a mount of `data`'s blob into `dst` with `query` and checks it starts an upload
/// session instead, leaves the blob absent, and that the session then completes the push.
async fn assert_mount_falls_back(reg: &Registry, query: &[(&str, &str)], data: &[u8]) {
    let digest = query.iter().find(|(k, _)| *k == "mount").map(|(_, v)| *v).expect("a mount query");
    let url = reg.url_with("/v2/dst/blobs/uploads/", query);
    let resp = reg.call(Method::POST, url, &[], vec![]).await;
    resp.expect(202);
    resp.must("Docker-Upload-UUID");
    reg.head(&format!("/v2/dst/blobs/{digest}")).await.expect(404);
    let done = reg.finish_upload(resp.location(), digest, data).await;
    assert_blob_at_location(reg, &done, data).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn upload_location_works_relative_and_absolute() {
    let (w, reg) = start();
    let data = random_bytes(20_000);
    let started = reg.start_upload("app").await;
    let loc = started.location();
    if loc.contains("://") {
        assert!(loc.starts_with(&w.url), "absolute Location points at this server: {loc}");
    }
    // Use the session through its absolute URL, then through its relative form.
    let absolute = reg.url(loc).to_string();
    let first = reg.patch(&absolute, &data[..8000], Some((0, 7999))).await;
    first.expect(202);
    let rel = relative(&reg.url(first.location()));
    let second = reg.patch(&rel, &data[8000..], Some((8000, data.len() - 1))).await;
    second.expect(202);
    let absolute = reg.url(second.location()).to_string();
    let done = reg.finish_upload(&absolute, &sha256(&data), &[]).await;
    assert_blob_at_location(&reg, &done, &data).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sha512_blobs_upload_and_fetch() {
    let (_w, reg) = start();
    let data = random_bytes(4000);
    let digest = sha512(&data);
    let started = reg.start_upload("app").await;
    let wrong = sha512(b"other bytes");
    reg.finish_upload(started.location(), &wrong, &data)
        .await
        .expect_error(400, &["DIGEST_INVALID"]);

    let started = reg.start_upload("app").await;
    let done = reg.finish_upload(started.location(), &digest, &data).await;
    assert_blob_at_location(&reg, &done, &data).await;
    let got = reg.get(&format!("/v2/app/blobs/{digest}")).await;
    got.expect(200);
    assert_eq!(got.body, data);
    let reported = got.must("Docker-Content-Digest");
    assert!(reported == digest || reported == sha256(&data), "digest header {reported}");
}

#[tokio::test(flavor = "multi_thread")]
async fn manifest_put_by_tag_and_by_digest() {
    let (_w, reg) = start();
    let img = reg.push_image("app", "v1").await;
    let got = reg.get(img.resp.location()).await;
    got.expect(200);
    assert_eq!(got.body, img.manifest, "Location of a manifest PUT is pullable");

    let by_digest = reg.push_manifest_with("app", None, OCI_CONFIG, json!({})).await;
    let got = reg.get_manifest("app", &by_digest.digest).await;
    got.expect(200);
    assert_eq!(got.body, by_digest.manifest);
    assert!(
        by_digest.resp.location().ends_with(&by_digest.digest),
        "{}",
        by_digest.resp.location()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn manifest_referencing_a_missing_blob_is_rejected() {
    let (_w, reg) = start();
    let config = config_blob();
    reg.push_blob("app", &config).await;
    let config = Desc::of(OCI_CONFIG, &config);
    let missing = Desc::of(OCI_LAYER, b"never uploaded");
    let doc = image_manifest(OCI_MANIFEST, &config, &[missing]);
    let resp = reg.put_manifest("app", "v1", OCI_MANIFEST, &to_bytes(&doc)).await;
    resp.expect_error(400, &["MANIFEST_BLOB_UNKNOWN"]);

    let doc = image_manifest(OCI_MANIFEST, &Desc::of(OCI_CONFIG, b"{}"), &[]);
    let resp = reg.put_manifest("app", "v2", OCI_MANIFEST, &to_bytes(&doc)).await;
    resp.expect_error(400, &["MANIFEST_BLOB_UNKNOWN"]);
    reg.get_manifest("app", "v1").await.expect(404);
}

#[tokio::test(flavor = "multi_thread")]
async fn index_referencing_a_missing_manifest_is_rejected() {
    let (_w, reg) = start();
    let present = reg.push_image("multi", "amd").await;
    let missing = Desc::of(OCI_MANIFEST, b"{\"schemaVersion\":2}");
    let index = index_manifest(OCI_INDEX, &[present.desc(), missing]);
    let resp = reg.put_manifest("multi", "latest", OCI_INDEX, &to_bytes(&index)).await;
    resp.expect_error(400, &["MANIFEST_BLOB_UNKNOWN"]);
}

/// A valid manifest over pushed blobs, padded with an annotation to exactly `len` bytes.
async fn manifest_of_size(reg: &Registry, repo: &str, len: usize) -> Vec<u8> {
    let config = config_blob();
    reg.push_blob(repo, &config).await;
    let mut doc = image_manifest(OCI_MANIFEST, &Desc::of(OCI_CONFIG, &config), &[]);
    doc["annotations"] = json!({"pad": ""});
    let base = to_bytes(&doc).len();
    doc["annotations"]["pad"] = json!("x".repeat(len - base));
    let body = to_bytes(&doc);
    assert_eq!(body.len(), len);
    body
}

#[tokio::test(flavor = "multi_thread")]
async fn manifests_up_to_4_mib_are_accepted_and_larger_rejected() {
    let (_w, reg) = start();
    const LIMIT: usize = 4 * 1024 * 1024;
    let fits = manifest_of_size(&reg, "big", LIMIT).await;
    reg.push_manifest("big", Some("fits"), OCI_MANIFEST, &fits).await;

    let too_big = manifest_of_size(&reg, "big", LIMIT + 1).await;
    // The refusal must reach the client: a server that answers early and closes with the body
    // unread makes the client's send fail with a reset instead of showing the error.
    let url = reg.url("/v2/big/manifests/huge");
    let sent = reg.try_call(Method::PUT, url, &[("Content-Type", OCI_MANIFEST)], too_big).await;
    let resp = sent.unwrap_or_else(|e| panic!("oversized manifest PUT got no answer, only {e:?}"));
    resp.expect_client_error();
    assert!(matches!(resp.status, 400 | 413), "{}", resp.show());
    reg.get_manifest("big", "huge").await.expect(404);
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_manifests_are_manifest_invalid() {
    let (_w, reg) = start();
    let img = reg.push_image("app", "v1").await;
    let mut wrong_shape: serde_json::Value = serde_json::from_slice(&img.manifest).unwrap();
    wrong_shape["layers"] = json!("not a list");
    let mut mislabeled = wrong_shape.clone();
    mislabeled["layers"] = json!([]);
    mislabeled["mediaType"] = json!(OCI_INDEX);
    let cases: [(&str, Vec<u8>); 4] = [
        ("not json", b"{not json".to_vec()),
        ("json array", b"[]".to_vec()),
        ("layers not a list", to_bytes(&wrong_shape)),
        ("mediaType differs from Content-Type", to_bytes(&mislabeled)),
    ];
    for (what, body) in cases {
        let resp = reg.put_manifest("app", "bad", OCI_MANIFEST, &body).await;
        assert_eq!(resp.status, 400, "{what}: {}", resp.show());
        resp.expect_error(400, &["MANIFEST_INVALID"]);
    }
    reg.get_manifest("app", "bad").await.expect(404);
}

#[tokio::test(flavor = "multi_thread")]
async fn put_by_digest_of_other_content_is_digest_invalid() {
    let (_w, reg) = start();
    let img = reg.push_image("app", "v1").await;
    let other = sha256(b"some other manifest");
    let resp = reg.put_manifest("app", &other, OCI_MANIFEST, &img.manifest).await;
    resp.expect_error(400, &["DIGEST_INVALID"]);
    reg.get_manifest("app", &other).await.expect(404);
}

/// Asserts a registry:2 link file: the digest, no trailing newline.
fn assert_link(path: &std::path::Path, digest: &str) {
    assert_eq!(read_text(path), digest, "{}", path.display());
}

#[tokio::test(flavor = "multi_thread")]
async fn push_writes_the_registry2_layout() {
    let (w, reg) = start();
    let img = reg.push_image("library/app", "v1").await;
    let v2 = v2_dir(&w);
    let blobs = [(&img.layer.digest, &img.layer_bytes), (&img.config.digest, &img.config_bytes)];
    for (digest, bytes) in blobs.into_iter().chain([(&img.digest, &img.manifest)]) {
        let hex = hex_of(digest);
        let data = v2.join(format!("blobs/sha256/{}/{hex}/data", &hex[..2]));
        assert_eq!(&std::fs::read(&data).unwrap_or_default(), bytes, "{}", data.display());
    }
    let repo = v2.join("repositories/library/app");
    for (digest, _) in blobs {
        assert_link(&repo.join(format!("_layers/sha256/{}/link", hex_of(digest))), digest);
    }
    let manifests = repo.join("_manifests");
    let hex = hex_of(&img.digest);
    assert_link(&manifests.join(format!("revisions/sha256/{hex}/link")), &img.digest);
    assert_link(&manifests.join("tags/v1/current/link"), &img.digest);
    assert_link(&manifests.join(format!("tags/v1/index/sha256/{hex}/link")), &img.digest);

    // Retagging moves `current` and keeps every digest the tag ever had in its index.
    let next = reg.push_manifest_with("library/app", Some("v1"), OCI_CONFIG, json!({})).await;
    assert_link(&manifests.join("tags/v1/current/link"), &next.digest);
    for digest in [&img.digest, &next.digest] {
        let index = format!("tags/v1/index/sha256/{}/link", hex_of(digest));
        assert_link(&manifests.join(index), digest);
    }
    // Finished uploads leave no session state behind.
    let leftovers = walk(&repo.join("_uploads"));
    assert!(leftovers.is_empty(), "upload state left: {leftovers:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn mount_without_from_links_a_blob_another_repository_holds() {
    let (_w, reg) = start();
    let data = random_bytes(6000);
    let digest = reg.push_blob("team/src", &data).await;
    // The spec lets a registry treat `from` as optional and mount the blob wherever it finds it.
    let url = reg.url_with("/v2/dst/blobs/uploads/", &[("mount", &digest)]);
    let mounted = reg.call(Method::POST, url, &[], vec![]).await;
    assert_eq!(mounted.header("Docker-Content-Digest"), Some(digest.as_str()), "{}", mounted.show());
    assert_blob_at_location(&reg, &mounted, &data).await;

    // A blob no repository holds (never pushed, or deleted from the only one that had it, its
    // bytes waiting for garbage collection) is not mounted: an upload session starts instead.
    let deleted = random_bytes(900);
    let deleted_digest = reg.push_blob("gone", &deleted).await;
    reg.delete(&format!("/v2/gone/blobs/{deleted_digest}")).await.expect(202);
    let absent = random_bytes(800);
    for (digest, data) in [(sha256(&absent), &absent), (deleted_digest, &deleted)] {
        assert_mount_falls_back(&reg, &[("mount", &digest)], data).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn upload_sessions_use_the_digest_algorithm_the_client_names() {
    let (_w, reg) = start();
    let data = random_bytes(70_000);
    let digest = sha512(&data);
    let url = reg.url_with("/v2/app/blobs/uploads/", &[("digest-algorithm", "sha512")]);
    let started = reg.call(Method::POST, url, &[("Content-Length", "0")], vec![]).await;
    started.expect(202);
    let first = reg.patch(started.location(), &data[..30_000], Some((0, 29_999))).await;
    first.expect(202);
    let done = reg.finish_upload(first.location(), &digest, &data[30_000..]).await;
    assert_eq!(done.header("Docker-Content-Digest"), Some(digest.as_str()), "{}", done.show());
    assert_blob_at_location(&reg, &done, &data).await;

    let url = reg.url_with("/v2/app/blobs/uploads/", &[("digest-algorithm", "sha256")]);
    let started = reg.call(Method::POST, url, &[("Content-Length", "0")], vec![]).await;
    started.expect(202);
    let done = reg.finish_upload(started.location(), &sha256(&data), &data).await;
    assert_blob_at_location(&reg, &done, &data).await;

    // An algorithm the registry cannot verify: the spec's 400 for an unsupported algorithm,
    // before any session exists, for every form of POST.
    let other = random_bytes(100);
    for alg in ["md5", "blake3", "SHA512", "sha256+x"] {
        for extra in [vec![], vec![("digest", sha256(&other))], vec![("mount", sha256(&data))]] {
            let mut query = vec![("digest-algorithm", alg.to_string())];
            query.extend(extra);
            let pairs: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let url = reg.url_with("/v2/refused/blobs/uploads/", &pairs);
            let resp = reg
                .call(Method::POST, url, &[("Content-Type", "application/octet-stream")], other.clone())
                .await;
            resp.expect_error(400, &["DIGEST_INVALID"]);
        }
    }
    reg.head(&format!("/v2/refused/blobs/{}", sha256(&other))).await.expect(404);
    let catalog = reg.get("/v2/_catalog").await;
    assert_eq!(strings(&catalog.json()["repositories"]), ["app"], "{}", catalog.show());
}

/// The tags an answer's `OCI-Tag` headers name (each header a comma-separated list), sorted.
fn oci_tags(resp: &Resp) -> Vec<String> {
    let mut tags: Vec<String> = resp
        .headers
        .get_all("OCI-Tag")
        .iter()
        .flat_map(|v| v.to_str().unwrap_or_default().split(',').map(|t| t.trim().to_string()))
        .filter(|t| !t.is_empty())
        .collect();
    tags.sort();
    tags
}

/// `PUT /v2/<repo>/manifests/<reference>` with query parameters.
async fn put_manifest_with(reg: &Registry, repo: &str, reference: &str, query: &[(&str, &str)], body: &[u8]) -> Resp {
    let url = reg.url_with(&format!("/v2/{repo}/manifests/{reference}"), query);
    reg.call(Method::PUT, url, &[("Content-Type", OCI_MANIFEST)], body.to_vec()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn push_by_digest_with_tag_parameters_tags_the_manifest() {
    let (_w, reg) = start();
    let img = reg.push_manifest_with("app", None, OCI_CONFIG, json!({})).await;
    let tags = [("tag", "1.2.3"), ("tag", "1.2"), ("tag", "1"), ("tag", "latest"), ("tag", "1.2")];
    let resp = put_manifest_with(&reg, "app", &img.digest, &tags, &img.manifest).await;
    resp.expect(201);
    assert_eq!(resp.header("Docker-Content-Digest"), Some(img.digest.as_str()));
    assert_eq!(oci_tags(&resp), ["1", "1.2", "1.2.3", "latest"], "{}", resp.show());
    let list = reg.get("/v2/app/tags/list").await;
    assert_eq!(strings(&list.json()["tags"]), ["1", "1.2", "1.2.3", "latest"]);
    for tag in ["1", "1.2", "1.2.3", "latest"] {
        let got = reg.get_manifest("app", tag).await;
        got.expect(200);
        assert_eq!(got.body, img.manifest, "{tag}");
    }

    // One invalid tag refuses the whole push: no tag moves, the others included.
    let next = reg.push_manifest_with("app", None, OCI_CONFIG, json!({})).await;
    let resp = put_manifest_with(&reg, "app", &next.digest, &[("tag", "latest"), ("tag", "-bad")], &next.manifest).await;
    resp.expect_error(400, &["MANIFEST_INVALID"]);
    assert_eq!(reg.get_manifest("app", "latest").await.body, img.manifest);

    // More tags than one request may set: 414, as the spec allows, and nothing is tagged.
    let many: Vec<String> = (0..101).map(|i| format!("many-{i}")).collect();
    let query: Vec<(&str, &str)> = many.iter().map(|t| ("tag", t.as_str())).collect();
    let resp = put_manifest_with(&reg, "app", &next.digest, &query, &next.manifest).await;
    resp.expect_error(414, &["UNSUPPORTED"]);
    let list = reg.get("/v2/app/tags/list").await;
    assert_eq!(strings(&list.json()["tags"]), ["1", "1.2", "1.2.3", "latest"]);
    // The spec's minimum, ten, is well within the limit.
    let resp = put_manifest_with(&reg, "app", &next.digest, &query[..10], &next.manifest).await;
    resp.expect(201);
    assert_eq!(oci_tags(&resp).len(), 10, "{}", resp.show());

    // On a push by tag, the parameters add to the path's tag, and the answer names them all.
    let resp = put_manifest_with(&reg, "app", "stable", &[("tag", "also")], &img.manifest).await;
    resp.expect(201);
    assert_eq!(oci_tags(&resp), ["also", "stable"], "{}", resp.show());
    assert_eq!(reg.get_manifest("app", "also").await.body, img.manifest);
}

/// A fresh manifest over `img`'s blobs (an annotation makes it unique).
fn variant(img: &Pushed, note: &str) -> Vec<u8> {
    let mut doc: serde_json::Value = serde_json::from_slice(&img.manifest).unwrap();
    doc["annotations"] = json!({ "org.example.note": note });
    to_bytes(&doc)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_manifest_pushed_under_sha512_keeps_that_digest() {
    let (_w, reg) = start();
    let img = reg.push_image("app", "v1").await;

    // The spec's main branch: push by the sha512 digest, with the tags as parameters.
    let body = variant(&img, "by digest");
    let digest = sha512(&body);
    let resp = put_manifest_with(&reg, "app", &digest, &[("tag", "latest")], &body).await;
    resp.expect(201);
    assert_eq!(resp.header("Docker-Content-Digest"), Some(digest.as_str()), "{}", resp.show());
    assert_eq!(oci_tags(&resp), ["latest"]);
    assert!(resp.location().ends_with(&digest), "{}", resp.show());
    for reference in ["latest", digest.as_str()] {
        let got = reg.get_manifest("app", reference).await;
        got.expect(200);
        assert_eq!(got.body, body);
        assert_eq!(got.header("Docker-Content-Digest"), Some(digest.as_str()), "{reference}");
        let head = reg.head_manifest("app", reference).await;
        assert_eq!(head.header("Docker-Content-Digest"), Some(digest.as_str()), "HEAD {reference}");
    }

    // regclient's form for a tag: the digest the manifest must have, as a `digest` parameter.
    let body = variant(&img, "by tag");
    let digest = sha512(&body);
    let resp = put_manifest_with(&reg, "app", "v2", &[("digest", &digest)], &body).await;
    resp.expect(201);
    assert_eq!(resp.header("Docker-Content-Digest"), Some(digest.as_str()), "{}", resp.show());
    let got = reg.get_manifest("app", "v2").await;
    assert_eq!(got.header("Docker-Content-Digest"), Some(digest.as_str()));
    assert_eq!(got.body, body);

    // A digest the content does not have, or one of an algorithm wharf cannot verify: refused,
    // and the tag is not created.
    let wrong = sha512(b"other content");
    let md5 = "md5:d41d8cd98f00b204e9800998ecf8427e";
    for bad in [wrong.as_str(), md5] {
        let resp = put_manifest_with(&reg, "app", "v3", &[("digest", bad)], &body).await;
        resp.expect_error(400, &["DIGEST_INVALID"]);
    }
    // A push by digest whose `digest` parameter names another digest is refused too.
    let resp = put_manifest_with(&reg, "app", &digest, &[("digest", &wrong)], &body).await;
    resp.expect_error(400, &["DIGEST_INVALID"]);
    reg.get_manifest("app", "v3").await.expect_error(404, &["MANIFEST_UNKNOWN"]);
}
