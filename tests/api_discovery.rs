//! Content discovery: tag lists and the catalog with `n`/`last` pagination and `Link` headers,
//! deep repository names, and the referrers API (subjects, artifact types, filtering).

mod common;

use common::api::*;
use serde_json::{json, Value};

/// Tags `tags` onto one manifest in `repo`.
async fn tag_all(reg: &Registry, repo: &str, tags: &[&str]) {
    let img = reg.push_image(repo, tags[0]).await;
    for tag in &tags[1..] {
        reg.push_manifest(repo, Some(tag), OCI_MANIFEST, &img.manifest).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tags_list_is_sorted() {
    let (_w, reg) = start();
    tag_all(&reg, "app", &["latest", "v1.10", "1.0", "Z", "v1.9", "a_b", "A"]).await;
    let resp = reg.get("/v2/app/tags/list").await;
    resp.expect(200);
    let body = resp.json();
    assert_eq!(body["name"], "app");
    assert_eq!(strings(&body["tags"]), ["1.0", "A", "Z", "a_b", "latest", "v1.10", "v1.9"]);
    assert!(next_link(&resp).is_none(), "a complete list has no next link");
}

#[tokio::test(flavor = "multi_thread")]
async fn tags_list_paginates_with_n_last_and_link() {
    let (_w, reg) = start();
    let tags = ["t0", "t1", "t2", "t3", "t4"];
    tag_all(&reg, "app", &tags).await;

    let first = reg.get("/v2/app/tags/list?n=2").await;
    first.expect(200);
    assert_eq!(strings(&first.json()["tags"]), ["t0", "t1"]);
    let link = next_link(&first).expect("Link rel=next when more tags remain");
    assert!(link.starts_with("/v2/app/tags/list?"), "Link target {link}");
    assert_eq!(query_param(&link, "n").as_deref(), Some("2"));
    assert_eq!(query_param(&link, "last").as_deref(), Some("t1"));

    let (all, pages) = reg.collect_pages("/v2/app/tags/list?n=2", "tags").await;
    assert_eq!(all, tags);
    assert!(pages >= 3, "5 tags in pages of 2 take at least 3 pages");

    let after = reg.get("/v2/app/tags/list?last=t2").await;
    after.expect(200);
    assert_eq!(strings(&after.json()["tags"]), ["t3", "t4"]);
    let tail = reg.get("/v2/app/tags/list?n=10&last=t3").await;
    tail.expect(200);
    assert_eq!(strings(&tail.json()["tags"]), ["t4"]);
    assert!(next_link(&tail).is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn tags_list_with_n_zero_is_empty_without_link() {
    let (_w, reg) = start();
    tag_all(&reg, "app", &["a", "b"]).await;
    let resp = reg.get("/v2/app/tags/list?n=0").await;
    resp.expect(200);
    let body = resp.json();
    assert_eq!(body["tags"], json!([]), "n=0 gives an empty list: {body}");
    assert!(resp.header("Link").is_none(), "n=0 must not carry a Link header");
}

#[tokio::test(flavor = "multi_thread")]
async fn tags_list_of_unknown_repository_is_name_unknown() {
    let (_w, reg) = start();
    reg.get("/v2/ghost/tags/list").await.expect_error(404, &["NAME_UNKNOWN"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn catalog_lists_repositories_with_pagination() {
    let (_w, reg) = start();
    let repos = ["alpha", "beta/one", "beta/two", "gamma/x/y"];
    for repo in repos.iter().rev() {
        reg.push_image(repo, "v1").await;
    }
    let all = reg.get("/v2/_catalog").await;
    all.expect(200);
    assert_eq!(strings(&all.json()["repositories"]), repos);

    let first = reg.get("/v2/_catalog?n=1").await;
    first.expect(200);
    assert_eq!(strings(&first.json()["repositories"]), ["alpha"]);
    let link = next_link(&first).expect("catalog Link rel=next");
    assert!(link.starts_with("/v2/_catalog?"), "{link}");
    assert_eq!(query_param(&link, "last").as_deref(), Some("alpha"));
    let (paged, _) = reg.collect_pages("/v2/_catalog?n=1", "repositories").await;
    assert_eq!(paged, repos);

    let after = reg.get("/v2/_catalog?n=2&last=beta/one").await;
    after.expect(200);
    assert_eq!(strings(&after.json()["repositories"]), ["beta/two", "gamma/x/y"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn deep_repository_names_work_everywhere() {
    let (_w, reg) = start();
    let repo = "a/b/c/d";
    let img = reg.push_image(repo, "v1").await;
    let got = reg.get_manifest(repo, "v1").await;
    got.expect(200);
    assert_eq!(got.body, img.manifest);
    reg.get(&format!("/v2/{repo}/blobs/{}", img.layer.digest)).await.expect(200);
    let tags = reg.get(&format!("/v2/{repo}/tags/list")).await;
    tags.expect(200);
    assert_eq!(tags.json()["name"], repo);
    let catalog = reg.get("/v2/_catalog").await;
    assert_eq!(strings(&catalog.json()["repositories"]), [repo]);
    // Parent paths of a deep name are not repositories.
    reg.get("/v2/a/b/tags/list").await.expect_error(404, &["NAME_UNKNOWN"]);
}

const SBOM: &str = "application/vnd.example.sbom.v1";
const SIG_CONFIG: &str = "application/vnd.example.signature.config.v1+json";

/// The `manifests` of a referrers answer, checking it is an image index.
fn referrers_of(resp: &Resp) -> Vec<Value> {
    resp.expect(200);
    assert_eq!(resp.header("Content-Type"), Some(OCI_INDEX), "{}", resp.show());
    let body = resp.json();
    assert_eq!(body["schemaVersion"], 2);
    assert_eq!(body["mediaType"], OCI_INDEX);
    body["manifests"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("no manifests: {body}"))
}

fn find<'a>(list: &'a [Value], digest: &str) -> &'a Value {
    list.iter()
        .find(|d| d["digest"] == digest)
        .unwrap_or_else(|| panic!("{digest} not in {list:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn referrers_list_manifests_whose_subject_is_the_digest() {
    let (_w, reg) = start();
    let subject = reg.push_image("app", "v1").await;
    let subject_json = subject.desc().json();

    let sbom_extra = json!({"subject": subject_json, "artifactType": SBOM, "annotations": {"org.example.format": "spdx"}});
    let sbom = reg
        .push_manifest_with("app", None, "application/vnd.example.sbom.config", sbom_extra)
        .await;
    assert_eq!(
        sbom.resp.header("OCI-Subject"),
        Some(subject.digest.as_str()),
        "{}",
        sbom.resp.show()
    );
    let sig_extra = json!({"subject": subject_json, "annotations": {"org.example.signer": "ci"}});
    let sig = reg.push_manifest_with("app", Some("sig"), SIG_CONFIG, sig_extra).await;

    // An index can refer too; without artifactType its descriptor has none.
    let mut index = index_manifest(OCI_INDEX, &[sbom.desc()]);
    merge(&mut index, json!({"subject": subject_json, "annotations": {"kind": "bundle"}}));
    let index = to_bytes(&index);
    let index_resp = reg.push_manifest("app", None, OCI_INDEX, &index).await;
    assert_eq!(index_resp.header("OCI-Subject"), Some(subject.digest.as_str()));
    reg.push_image("app", "unrelated").await;

    let list = referrers_of(&reg.get(&format!("/v2/app/referrers/{}", subject.digest)).await);
    assert_eq!(list.len(), 3, "{list:?}");
    let d = find(&list, &sbom.digest);
    assert_eq!(d["mediaType"], OCI_MANIFEST);
    assert_eq!(d["size"], sbom.manifest.len());
    assert_eq!(d["artifactType"], SBOM);
    assert_eq!(d["annotations"], json!({"org.example.format": "spdx"}));
    let d = find(&list, &sig.digest);
    assert_eq!(d["artifactType"], SIG_CONFIG, "falls back to the config media type");
    assert_eq!(d["annotations"], json!({"org.example.signer": "ci"}));
    let d = find(&list, &sha256(&index));
    assert_eq!(d["mediaType"], OCI_INDEX);
    assert_eq!(d["size"], index.len());
    assert!(d.get("artifactType").is_none(), "index without artifactType: {d}");
    assert_eq!(d["annotations"], json!({"kind": "bundle"}));
}

#[tokio::test(flavor = "multi_thread")]
async fn referrers_filter_by_artifact_type() {
    let (_w, reg) = start();
    let subject = reg.push_image("app", "v1").await;
    let extra = |at: &str| json!({"subject": subject.desc().json(), "artifactType": at});
    let sbom = reg.push_manifest_with("app", None, OCI_CONFIG, extra(SBOM)).await;
    reg.push_manifest_with("app", None, OCI_CONFIG, extra("application/vnd.example.other+json"))
        .await;

    let path = format!("/v2/app/referrers/{}", subject.digest);
    let url = reg.url_with(&path, &[("artifactType", SBOM)]);
    let resp = reg.call(reqwest::Method::GET, url, &[], vec![]).await;
    let list = referrers_of(&resp);
    assert_eq!(resp.header("OCI-Filters-Applied"), Some("artifactType"));
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["digest"], sbom.digest);

    let unfiltered = reg.get(&path).await;
    assert_eq!(referrers_of(&unfiltered).len(), 2);
    assert!(unfiltered.header("OCI-Filters-Applied").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn referrers_of_a_digest_without_referrers_is_an_empty_index() {
    let (_w, reg) = start();
    let img = reg.push_image("app", "v1").await;
    let list = referrers_of(&reg.get(&format!("/v2/app/referrers/{}", img.digest)).await);
    assert!(list.is_empty());
    let unknown = sha256(b"nothing refers to this");
    let list = referrers_of(&reg.get(&format!("/v2/app/referrers/{unknown}")).await);
    assert!(list.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn referrer_pushed_before_its_subject_is_listed() {
    let (_w, reg) = start();
    // The subject need not exist yet: clients may push referrers first.
    let absent = Desc::of(OCI_MANIFEST, b"{\"schemaVersion\":2,\"later\":true}");
    let extra = json!({"subject": absent.json(), "artifactType": SBOM});
    let early = reg.push_manifest_with("app", None, OCI_CONFIG, extra).await;
    assert_eq!(early.resp.header("OCI-Subject"), Some(absent.digest.as_str()));
    let list = referrers_of(&reg.get(&format!("/v2/app/referrers/{}", absent.digest)).await);
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["digest"], early.digest);
}

#[tokio::test(flavor = "multi_thread")]
async fn referrers_in_a_repository_nothing_was_pushed_to_are_an_empty_index() {
    let (_w, reg) = start();
    // A client asks before its first push (to learn whether the registry has the API at all):
    // the spec says a registry with the referrers API never answers 404 there.
    let subject = sha256(b"a subject nobody pushed");
    let plain = reg.get(&format!("/v2/never/pushed/referrers/{subject}")).await;
    assert!(referrers_of(&plain).is_empty(), "{}", plain.show());
    let filtered = reg.get(&format!("/v2/never/pushed/referrers/{subject}?artifactType={SBOM}")).await;
    assert!(referrers_of(&filtered).is_empty(), "{}", filtered.show());
    assert_eq!(filtered.header("OCI-Filters-Applied"), Some("artifactType"));
    // Asking created nothing.
    let catalog = reg.get("/v2/_catalog").await;
    assert!(strings(&catalog.json()["repositories"]).is_empty(), "{}", catalog.show());
}
