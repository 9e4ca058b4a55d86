//! Content management: deleting manifests, tags and blobs (202 then 404), what stays behind,
//! referrers after a delete, and deletes refused when storage.delete is not enabled.

mod common;

use common::api::*;
use common::Wharf;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn deletes_are_405_unsupported_unless_enabled() {
    let w = Wharf::start_with(&[], &[]);
    let reg = Registry::new(&w);
    let img = reg.push_image("app", "v1").await;
    let targets = [
        format!("/v2/app/manifests/{}", img.digest),
        "/v2/app/manifests/v1".to_string(),
        format!("/v2/app/blobs/{}", img.layer.digest),
    ];
    for target in &targets {
        reg.delete(target).await.expect_error(405, &["UNSUPPORTED"]);
    }
    // Nothing was removed.
    reg.get_manifest("app", "v1").await.expect(200);
    reg.get(&format!("/v2/app/blobs/{}", img.layer.digest)).await.expect(200);
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_manifest_by_digest_removes_it_and_its_tags() {
    let (w, reg) = start();
    let img = reg.push_image("app", "v1").await;
    reg.push_manifest("app", Some("also"), OCI_MANIFEST, &img.manifest).await;
    let keep = reg.push_image("app", "keep").await;

    let resp = reg.delete(&format!("/v2/app/manifests/{}", img.digest)).await;
    resp.expect(202);
    reg.get_manifest("app", &img.digest).await.expect_error(404, &["MANIFEST_UNKNOWN"]);
    reg.head_manifest("app", &img.digest).await.expect(404);
    for tag in ["v1", "also"] {
        reg.get_manifest("app", tag).await.expect_error(404, &["MANIFEST_UNKNOWN"]);
    }
    reg.get_manifest("app", "keep").await.expect(200);
    let tags = reg.get("/v2/app/tags/list").await;
    tags.expect(200);
    assert_eq!(strings(&tags.json()["tags"]), ["keep"]);

    // registry:2 removes the revision link and the tags that pointed at it.
    let manifests = v2_dir(&w).join("repositories/app/_manifests");
    let revision = manifests.join(format!("revisions/sha256/{}/link", hex_of(&img.digest)));
    assert!(!revision.exists(), "{} still there", revision.display());
    assert!(!manifests.join("tags/v1").exists(), "tag directory of a deleted manifest");
    let kept = manifests.join(format!("revisions/sha256/{}/link", hex_of(&keep.digest)));
    assert_eq!(read_text(&kept), keep.digest);
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_tag_keeps_the_manifest() {
    let (_w, reg) = start();
    let img = reg.push_image("app", "v1").await;
    reg.push_manifest("app", Some("v2"), OCI_MANIFEST, &img.manifest).await;

    reg.delete("/v2/app/manifests/v1").await.expect(202);
    reg.get_manifest("app", "v1").await.expect_error(404, &["MANIFEST_UNKNOWN"]);
    reg.get_manifest("app", "v2").await.expect(200);
    let by_digest = reg.get_manifest("app", &img.digest).await;
    by_digest.expect(200);
    assert_eq!(by_digest.body, img.manifest);
    let tags = reg.get("/v2/app/tags/list").await;
    assert_eq!(strings(&tags.json()["tags"]), ["v2"]);
    reg.delete("/v2/app/manifests/v1").await.expect_error(404, &["MANIFEST_UNKNOWN"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_blob_then_404() {
    let (w, reg) = start();
    let data = random_bytes(3000);
    let digest = reg.push_blob("app", &data).await;
    let path = format!("/v2/app/blobs/{digest}");
    let resp = reg.delete(&path).await;
    resp.expect(202);
    reg.get(&path).await.expect_error(404, &["BLOB_UNKNOWN"]);
    reg.head(&path).await.expect(404);
    // Deleting unlinks the blob from the repository, as registry:2 does.
    let link = v2_dir(&w).join(format!("repositories/app/_layers/sha256/{}/link", hex_of(&digest)));
    assert!(!link.exists(), "{} still there", link.display());
    reg.delete(&path).await.expect_error(404, &["BLOB_UNKNOWN"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_unknown_content_is_404() {
    let (_w, reg) = start();
    reg.push_image("app", "v1").await;
    let absent = sha256(b"absent");
    let manifest = reg.delete(&format!("/v2/app/manifests/{absent}")).await;
    manifest.expect_error(404, &["MANIFEST_UNKNOWN"]);
    reg.delete(&format!("/v2/app/blobs/{absent}"))
        .await
        .expect_error(404, &["BLOB_UNKNOWN"]);
    let ghost = reg.delete(&format!("/v2/ghost/manifests/{absent}")).await;
    ghost.expect_error(404, &["NAME_UNKNOWN", "MANIFEST_UNKNOWN"]);
    let ghost = reg.delete(&format!("/v2/ghost/blobs/{absent}")).await;
    ghost.expect_error(404, &["NAME_UNKNOWN", "BLOB_UNKNOWN"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn deleted_referrer_leaves_the_referrers_list() {
    let (_w, reg) = start();
    let subject = reg.push_image("app", "v1").await;
    let extra = |n: &str| json!({"subject": subject.desc().json(), "artifactType": n});
    let gone = reg.push_manifest_with("app", None, OCI_CONFIG, extra("application/x.gone")).await;
    let stays = reg.push_manifest_with("app", None, OCI_CONFIG, extra("application/x.stays")).await;
    let path = format!("/v2/app/referrers/{}", subject.digest);
    let before = reg.get(&path).await;
    before.expect(200);
    assert_eq!(before.json()["manifests"].as_array().map(Vec::len), Some(2));

    reg.delete(&format!("/v2/app/manifests/{}", gone.digest)).await.expect(202);
    let after = reg.get(&path).await;
    after.expect(200);
    let digests: Vec<String> = after.json()["manifests"]
        .as_array()
        .map(|l| l.iter().filter_map(|d| d["digest"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    assert_eq!(digests, [stays.digest]);
}
