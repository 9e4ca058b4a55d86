//! Pull: the base endpoint, blobs (GET, HEAD, ranges), manifests by tag and by digest, the
//! manifest kinds clients push (OCI image and index, Docker schema2 and list, artifacts), and
//! the 404s for content that is not there.

mod common;

use common::api::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn base_endpoint_answers_200_with_api_version() {
    let (_w, reg) = start();
    let resp = reg.get("/v2/").await;
    resp.expect(200);
    // The version header is also on errors and on HEAD answers.
    reg.get("/v2/nothing/here/manifests/latest").await.expect_client_error().expect(404);
    reg.head("/v2/").await.expect(200);
}

#[tokio::test(flavor = "multi_thread")]
async fn blob_get_and_head_return_bytes_length_and_digest() {
    let (_w, reg) = start();
    let data = random_bytes(70_000);
    let digest = reg.push_blob("app", &data).await;
    let path = format!("/v2/app/blobs/{digest}");

    let got = reg.get(&path).await;
    got.expect(200);
    assert_eq!(got.body, data);
    assert_eq!(got.header("Docker-Content-Digest"), Some(digest.as_str()));
    assert_eq!(got.header("Content-Length"), Some(data.len().to_string().as_str()));

    let head = reg.head(&path).await;
    head.expect(200);
    assert!(head.body.is_empty(), "HEAD must not carry a body");
    assert_eq!(head.header("Docker-Content-Digest"), Some(digest.as_str()));
    assert_eq!(head.header("Content-Length"), Some(data.len().to_string().as_str()));
}

#[tokio::test(flavor = "multi_thread")]
async fn blob_range_requests_return_206_and_416() {
    let (_w, reg) = start();
    let data = random_bytes(10_000);
    let digest = reg.push_blob("app", &data).await;
    let path = format!("/v2/app/blobs/{digest}");
    let size = data.len();

    // (Range header, first byte, last byte) per RFC 9110: closed, open-ended and suffix ranges.
    let cases = [
        ("bytes=100-199", 100, 199),
        ("bytes=9000-", 9000, size - 1),
        ("bytes=-10", size - 10, size - 1),
    ];
    for (range, first, last) in cases {
        let resp = reg.get_with(&path, &[("Range", range)]).await;
        resp.expect(206);
        assert_eq!(resp.body, &data[first..=last], "{range}");
        let want = format!("bytes {first}-{last}/{size}");
        assert_eq!(resp.header("Content-Range"), Some(want.as_str()), "{range}");
        assert_eq!(resp.header("Content-Length"), Some((last - first + 1).to_string().as_str()));
    }

    let past_end = format!("bytes={size}-{}", size + 10);
    let resp = reg.get_with(&path, &[("Range", &past_end)]).await;
    resp.expect(416);
    let want = format!("bytes */{size}");
    assert_eq!(resp.header("Content-Range"), Some(want.as_str()), "{}", resp.show());
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_blob_is_404_blob_unknown() {
    let (_w, reg) = start();
    reg.push_image("app", "v1").await;
    let absent = sha256(b"never pushed");
    let path = format!("/v2/app/blobs/{absent}");
    reg.get(&path).await.expect_error(404, &["BLOB_UNKNOWN"]);
    reg.head(&path).await.expect(404);
}

#[tokio::test(flavor = "multi_thread")]
async fn blobs_are_scoped_to_their_repository() {
    let (_w, reg) = start();
    let img = reg.push_image("owner/private", "v1").await;
    reg.push_image("other", "v1").await;
    // A blob linked only to another repository must not be readable through this one.
    let path = format!("/v2/other/blobs/{}", img.layer.digest);
    reg.get(&path).await.expect_error(404, &["BLOB_UNKNOWN"]);
    reg.head(&path).await.expect(404);
}

#[tokio::test(flavor = "multi_thread")]
async fn manifest_get_and_head_by_tag_and_by_digest() {
    let (_w, reg) = start();
    let img = reg.push_image("team/app", "v1").await;
    for reference in ["v1", img.digest.as_str()] {
        let got = reg.get_manifest("team/app", reference).await;
        got.expect(200);
        assert_eq!(got.body, img.manifest, "manifest bytes by {reference}");
        assert_eq!(got.header("Content-Type"), Some(OCI_MANIFEST));
        assert_eq!(got.header("Docker-Content-Digest"), Some(img.digest.as_str()));

        let head = reg.head_manifest("team/app", reference).await;
        head.expect(200);
        assert!(head.body.is_empty());
        assert_eq!(head.header("Content-Type"), Some(OCI_MANIFEST));
        assert_eq!(head.header("Docker-Content-Digest"), Some(img.digest.as_str()));
        assert_eq!(head.header("Content-Length"), Some(img.manifest.len().to_string().as_str()));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_manifests_and_repositories_are_404() {
    let (_w, reg) = start();
    reg.push_image("app", "v1").await;
    reg.get_manifest("app", "nope").await.expect_error(404, &["MANIFEST_UNKNOWN"]);
    let absent = sha256(b"no such manifest");
    reg.get_manifest("app", &absent).await.expect_error(404, &["MANIFEST_UNKNOWN"]);
    reg.head_manifest("app", &absent).await.expect(404);
    // The spec lets a registry answer either code for a repository it has never seen.
    let unknown_repo = reg.get_manifest("ghost/repo", "v1").await;
    unknown_repo.expect_error(404, &["NAME_UNKNOWN", "MANIFEST_UNKNOWN"]);
    let blob = reg.get(&format!("/v2/ghost/repo/blobs/{absent}")).await;
    blob.expect_error(404, &["NAME_UNKNOWN", "BLOB_UNKNOWN"]);
}

/// References no tag can be (the grammar is `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`), as a client
/// sends them in a path (percent-encoded where they hold characters a path cannot).
fn names_no_tag_can_have() -> Vec<String> {
    vec![
        ".hidden".into(),
        "-dash".into(),
        "t".repeat(129),
        "has%20space".into(),
        "semi;colon".into(),
        "%C3%A9t%C3%A9".into(),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn reading_a_manifest_under_a_name_no_tag_can_have_is_manifest_unknown() {
    let (_w, reg) = start();
    reg.push_image("app", "v1").await;
    // distribution answers these with 404, and the spec's pull section asks for 404 when the
    // manifest is not found: nothing can have been stored under a name no tag can have. Only a
    // push must refuse the name.
    for repo in ["app", "ghost/repo"] {
        for name in names_no_tag_can_have() {
            let got = reg.get_manifest(repo, &name).await;
            got.expect_error(404, &["MANIFEST_UNKNOWN"]);
            let head = reg.head_manifest(repo, &name).await;
            head.expect(404);
            assert!(head.body.is_empty(), "HEAD answers without a body: {}", head.show());
            reg.delete(&format!("/v2/{repo}/manifests/{name}"))
                .await
                .expect_error(404, &["MANIFEST_UNKNOWN"]);
        }
    }
    let img = reg.get_manifest("app", "v1").await;
    img.expect(200);
    for name in names_no_tag_can_have() {
        let put = reg.put_manifest("app", &name, OCI_MANIFEST, &img.body).await;
        put.expect_error(400, &["MANIFEST_INVALID"]);
    }
    // A reference that names a digest is still held to the digest grammar.
    reg.get_manifest("app", "sha256:abc").await.expect_error(400, &["DIGEST_INVALID"]);
}

/// Pushes `body` under `tag` and checks that tag and digest give back the same bytes and type.
async fn assert_round_trip(reg: &Registry, repo: &str, tag: &str, media_type: &str, body: &[u8]) {
    let digest = sha256(body);
    reg.push_manifest(repo, Some(tag), media_type, body).await;
    for reference in [tag, digest.as_str()] {
        let got = reg.get_manifest(repo, reference).await;
        got.expect(200);
        assert_eq!(got.body, body, "{repo}:{reference} bytes");
        assert_eq!(got.header("Content-Type"), Some(media_type), "{repo}:{reference}");
        assert_eq!(got.header("Docker-Content-Digest"), Some(digest.as_str()));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn oci_index_round_trips() {
    let (_w, reg) = start();
    let amd = reg.push_image("multi", "amd").await;
    let arm = reg.push_image("multi", "arm").await;
    let index = to_bytes(&index_manifest(OCI_INDEX, &[amd.desc(), arm.desc()]));
    assert_round_trip(&reg, "multi", "latest", OCI_INDEX, &index).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_schema2_manifest_and_list_round_trip() {
    let (_w, reg) = start();
    let config = config_blob();
    let layer = random_bytes(4096);
    reg.push_blob("dock", &config).await;
    reg.push_blob("dock", &layer).await;
    let config = Desc::of(DOCKER_CONFIG, &config);
    let layer = Desc::of(DOCKER_LAYER, &layer);
    let manifest = to_bytes(&image_manifest(DOCKER_MANIFEST, &config, &[layer]));
    assert_round_trip(&reg, "dock", "v2", DOCKER_MANIFEST, &manifest).await;

    let child = Desc::of(DOCKER_MANIFEST, &manifest);
    let list = to_bytes(&index_manifest(DOCKER_LIST, &[child]));
    assert_round_trip(&reg, "dock", "list", DOCKER_LIST, &list).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn artifact_manifest_with_artifact_type_round_trips() {
    let (_w, reg) = start();
    let config = br#"{"tool":"sbom-gen"}"#.to_vec();
    let payload = br#"{"packages":[]}"#.to_vec();
    reg.push_blob("artifacts", &config).await;
    reg.push_blob("artifacts", &payload).await;
    let mut doc = image_manifest(
        OCI_MANIFEST,
        &Desc::of("application/vnd.example.sbom.config.v1+json", &config),
        &[Desc::of("application/vnd.example.sbom.v1+json", &payload)],
    );
    merge(
        &mut doc,
        json!({"artifactType": "application/vnd.example.sbom.v1", "annotations": {"k": "v"}}),
    );
    assert_round_trip(&reg, "artifacts", "sbom", OCI_MANIFEST, &to_bytes(&doc)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn manifests_are_stored_as_the_exact_bytes_sent() {
    let (_w, reg) = start();
    let config = config_blob();
    let layer = random_bytes(1000);
    reg.push_blob("exact", &config).await;
    reg.push_blob("exact", &layer).await;
    // Unusual whitespace, key order and a trailing newline: re-serializing would change the digest.
    let body = format!(
        "{{\n\t\"layers\" : [ {{\"size\":{},\"mediaType\":\"{OCI_LAYER}\",  \"digest\":\"{}\"}} ],\r\n\
         \"config\":{{ \"digest\":\"{}\" ,\"size\": {}, \"mediaType\":\"{OCI_CONFIG}\"}},\n\n\
         \"mediaType\":\"{OCI_MANIFEST}\",   \"schemaVersion\"  :  2 }}\n",
        layer.len(),
        sha256(&layer),
        sha256(&config),
        config.len()
    );
    assert_round_trip(&reg, "exact", "odd", OCI_MANIFEST, body.as_bytes()).await;
}

/// Large blobs take other paths than small ones: chunks of a megabyte or more are hashed on a
/// thread of their own (the running hash must carry across chunks), and a committed blob is
/// streamed out as memory-mapped windows of a few MiB (ranges must cross window edges intact).
#[tokio::test(flavor = "multi_thread")]
async fn large_chunked_blob_round_trips_whole_and_in_ranges() {
    let (_w, reg) = start();
    let data = random_bytes(5 * 1024 * 1024 + 12_345);
    let digest = sha256(&data);
    let mut location = reg.start_upload("big").await.location().to_string();
    let chunk = 1536 * 1024;
    for (i, piece) in data.chunks(chunk).enumerate() {
        let first = i * chunk;
        let resp = reg.patch(&location, piece, Some((first, first + piece.len() - 1))).await;
        resp.expect(202);
        location = resp.location().to_string();
    }
    reg.finish_upload(&location, &digest, &[]).await.expect(201);

    let path = format!("/v2/big/blobs/{digest}");
    let whole = reg.get(&path).await;
    whole.expect(200);
    assert_eq!(whole.body.len(), data.len());
    assert!(whole.body == data, "the blob read back differs from what was pushed");
    let mib = 1024 * 1024;
    for (first, last) in [
        (0, 2 * mib),
        (2 * mib - 1, 2 * mib),
        (mib + 7, 4 * mib + 9),
        (4 * mib, data.len() - 1),
    ] {
        let resp = reg.get_with(&path, &[("Range", &format!("bytes={first}-{last}"))]).await;
        resp.expect(206);
        assert!(resp.body == data[first..=last], "range {first}-{last} differs");
    }
}
