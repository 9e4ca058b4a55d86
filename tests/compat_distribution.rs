//! Data compatibility with CNCF distribution 2.8.2 (Debian's `docker-registry`): a storage root
//! written by one server is served by the other. skopeo pushes an OCI image under two tags, an
//! OCI multi-arch index, a docker schema2 image and a docker manifest list into one server; the
//! other then serves the same directory, and every manifest and blob must come back byte for
//! byte, with the same tags and catalog. The on-disk layout itself (link files, their exact
//! contents) is checked against distribution's rules in both directions.

mod common;

use std::path::Path;

use common::distribution::{
    assert_blob_data, assert_layer_link, assert_no_layer_link, assert_revision_link, assert_tag_links, Distribution,
};
use common::images::{
    child_manifests, http_request, layout_blob, random_bytes, referenced_digests, registry_blob, registry_catalog, registry_manifest,
    registry_tags, start_pending_upload, HttpResp, OciLayout, PulledContent, Skopeo, DOCKER_LIST, DOCKER_MANIFEST,
};
use common::Wharf;

/// One pushed manifest (image or index) and where it lives.
struct Pushed {
    repo: &'static str,
    tags: Vec<&'static str>,
    /// The manifest bytes as the registry stores them (after any format conversion by skopeo).
    manifest: Vec<u8>,
}

/// What both tests push: the source layout and what the first registry ended up holding.
struct Fixtures {
    _tmp: tempfile::TempDir,
    layout: OciLayout,
    pushed: Vec<Pushed>,
}

impl Fixtures {
    /// Writes the source layout; nothing is pushed yet.
    fn new() -> Fixtures {
        let tmp = tempfile::tempdir().unwrap();
        let layout = OciLayout::create(&tmp.path().join("src"));
        Fixtures {
            _tmp: tmp,
            layout,
            pushed: Vec::new(),
        }
    }

    fn source_blob(&self, digest: &str) -> Vec<u8> {
        layout_blob(&self.layout.dir, digest)
    }

    /// Pushes every kind of content into the registry at `addr`.
    fn push_all(&mut self, sk: &Skopeo, addr: &str) {
        let img = self.layout.add_image("amd64", 3);
        self.layout.tag_image("app", &img);
        let idx = self.layout.add_index(&["amd64", "arm64"], 2);
        self.layout.tag_index("multi", &idx);
        let dock = self.layout.add_image("amd64", 2);
        self.layout.tag_image("dock", &dock);
        let list = self.layout.add_index(&["amd64", "arm64"], 1);
        self.layout.tag_index("list", &list);

        let push = |tag: &str, repo: &str, rtag: &str, extra: &[&str]| -> Vec<u8> {
            let dest = format!("docker://{addr}/{repo}:{rtag}");
            sk.copy(&self.layout.reference(tag), &dest, extra);
            sk.inspect_raw(&dest)
        };
        let app = push("app", "team/app", "v1", &[]);
        assert_eq!(app, img.manifest, "OCI manifests are stored as sent");
        assert_eq!(push("app", "team/app", "v2", &[]), img.manifest);
        let multi = push("multi", "team/multi", "latest", &["--all"]);
        assert_eq!(multi, idx.bytes, "OCI indexes are stored as sent");
        let docker = push("dock", "legacy/docker", "1.0", &["--format", "v2s2"]);
        assert!(String::from_utf8_lossy(&docker).contains(DOCKER_MANIFEST), "schema2 stored");
        let dlist = push("list", "legacy/list", "stable", &["--all", "--format", "v2s2"]);
        assert!(String::from_utf8_lossy(&dlist).contains(DOCKER_LIST), "manifest list stored");

        self.pushed = vec![
            Pushed {
                repo: "team/app",
                tags: vec!["v1", "v2"],
                manifest: app,
            },
            Pushed {
                repo: "team/multi",
                tags: vec!["latest"],
                manifest: multi,
            },
            Pushed {
                repo: "legacy/docker",
                tags: vec!["1.0"],
                manifest: docker,
            },
            Pushed {
                repo: "legacy/list",
                tags: vec!["stable"],
                manifest: dlist,
            },
        ];
    }

    /// The child manifests of a pushed index, fetched from the registry that stored them (their
    /// bytes differ from the layout's when skopeo converted the format).
    fn children(&self, base_url: &str, p: &Pushed) -> Vec<(String, Vec<u8>)> {
        child_manifests(&p.manifest)
            .into_iter()
            .map(|d| {
                let body = registry_manifest(base_url, p.repo, &d).body;
                (d, body)
            })
            .collect()
    }

    /// Asserts the registry:2 layout under `root` holds everything pushed, the way distribution
    /// writes it: blob data, `_layers` links for configs and layers only, revision links for every
    /// manifest (index children included), tag links with exact contents.
    fn assert_layout(&self, root: &Path, base_url: &str) {
        for p in &self.pushed {
            let digest = common::sha256_digest(&p.manifest);
            assert_blob_data(root, &digest, &p.manifest);
            assert_revision_link(root, p.repo, &digest);
            assert_no_layer_link(root, p.repo, &digest);
            for tag in &p.tags {
                assert_tag_links(root, p.repo, tag, &digest);
            }
            let mut images = vec![p.manifest.clone()];
            for (child, body) in self.children(base_url, p) {
                assert_blob_data(root, &child, &body);
                assert_revision_link(root, p.repo, &child);
                assert_no_layer_link(root, p.repo, &child);
                images.push(body);
            }
            for m in images.iter().filter(|m| child_manifests(m).is_empty()) {
                for blob in referenced_digests(m) {
                    assert_blob_data(root, &blob, &self.source_blob(&blob));
                    assert_layer_link(root, p.repo, &blob);
                }
            }
        }
    }

    /// Pulls everything back from the registry at `addr` and compares it with what was pushed:
    /// manifests byte for byte, blobs against the source layout, tags and catalog.
    fn assert_served(&self, sk: &Skopeo, addr: &str) {
        let base_url = format!("http://{addr}");
        let tmp = tempfile::tempdir().unwrap();
        for (i, p) in self.pushed.iter().enumerate() {
            assert_eq!(registry_tags(&base_url, p.repo), p.tags, "tags of {}", p.repo);
            for tag in &p.tags {
                let served = registry_manifest(&base_url, p.repo, tag);
                assert_eq!(served.body, p.manifest, "{}:{tag} served as stored", p.repo);
                let media_type = serde_json::from_slice::<serde_json::Value>(&p.manifest).unwrap()["mediaType"]
                    .as_str()
                    .map(String::from);
                assert_eq!(served.header("Content-Type").map(String::from), media_type);
            }
            for (child, body) in self.children(&base_url, p) {
                for blob in referenced_digests(&body) {
                    assert_eq!(registry_blob(&base_url, p.repo, &blob), self.source_blob(&blob));
                }
                assert_eq!(common::sha256_digest(&body), child);
            }
            // A full client pull into skopeo's dir: transport keeps every byte as served.
            let out = tmp.path().join(format!("pull{i}"));
            let src = format!("docker://{addr}/{}:{}", p.repo, p.tags[0]);
            sk.copy(&src, &format!("dir:{}", out.display()), &["--all"]);
            let pulled = PulledContent::read_dir_transport(&out);
            let children = self.children(&base_url, p);
            pulled.assert_same_tree(&p.manifest, &|d| {
                children
                    .iter()
                    .find(|(c, _)| c == d)
                    .map(|(_, b)| b.clone())
                    .unwrap_or_else(|| self.source_blob(d))
            });
        }
        let mut want: Vec<&str> = self.pushed.iter().map(|p| p.repo).collect();
        want.sort();
        assert_eq!(registry_catalog(&base_url), want, "catalog");
    }
}

/// Leaves unfinished uploads behind, as interrupted clients do: one in a pushed repository and
/// one in a repository that has nothing else. Distribution lists a repository in the catalog
/// only once it has a `_layers` directory, so the second must not appear in either catalog.
fn leave_pending_uploads(base_url: &str) {
    start_pending_upload(base_url, "team/app", &random_bytes(1000));
    start_pending_upload(base_url, "pending/only", &random_bytes(777));
}

/// Both tools are needed; SKIP outside CI, fail in CI.
fn tools() -> Option<Skopeo> {
    if !Distribution::available() {
        return None;
    }
    Skopeo::new()
}

#[test]
fn root_written_by_distribution_is_served_by_wharf() {
    let Some(sk) = tools() else { return };
    let data = tempfile::tempdir().unwrap();
    let root = data.path().join("registry");
    let mut fx = Fixtures::new();

    let mut dist = Distribution::start(&root);
    fx.push_all(&sk, &dist.addr);
    leave_pending_uploads(&dist.url);
    // Our reading of distribution's layout must match what it actually wrote.
    fx.assert_layout(&root, &dist.url);
    fx.assert_served(&sk, &dist.addr);
    dist.stop();

    let w = Wharf::start_on_root(&root, &[], &[]);
    fx.assert_served(&sk, &w.addr);
}

#[test]
fn root_written_by_wharf_is_served_by_distribution() {
    let Some(sk) = tools() else { return };
    let data = tempfile::tempdir().unwrap();
    let root = data.path().join("registry");
    let mut fx = Fixtures::new();

    let mut w = Wharf::start_on_root(&root, &[], &[]);
    fx.push_all(&sk, &w.addr);
    leave_pending_uploads(&w.url);
    fx.assert_layout(&root, &w.url);
    fx.assert_served(&sk, &w.addr);
    w.stop();

    let dist = Distribution::start(&root);
    fx.assert_served(&sk, &dist.addr);
    // Distribution accepts new pushes into the same root, next to wharf's data.
    let mut more = Fixtures::new();
    more.push_all(&sk, &dist.addr);
    more.assert_served(&sk, &dist.addr);
    drop(dist);

    // And wharf serves the mixed root afterwards.
    let w = Wharf::start_on_root(&root, &[], &[]);
    more.assert_served(&sk, &w.addr);
}

/// Pushes `data` into `repo` with POST then PUT (distribution 2.8.2 has no single-POST upload);
/// returns its digest.
fn push_blob_to(base_url: &str, repo: &str, data: &[u8]) -> String {
    let digest = common::sha256_digest(data);
    let started = http_request("POST", &format!("{base_url}/v2/{repo}/blobs/uploads/"), &[], Vec::new());
    assert_eq!(started.status, 202, "start upload at {base_url}");
    let location = started.header("Location").expect("upload Location");
    let location = if location.starts_with('/') {
        format!("{base_url}{location}")
    } else {
        location.to_string()
    };
    let sep = if location.contains('?') { '&' } else { '?' };
    let done = http_request("PUT", &format!("{location}{sep}digest={digest}"), &[], data.to_vec());
    assert_eq!(
        done.status,
        201,
        "finish upload at {base_url}: {}",
        String::from_utf8_lossy(&done.body)
    );
    digest
}

/// `POST /v2/<repo>/blobs/uploads/` with `query`, for blob mounts.
fn post_upload(base_url: &str, repo: &str, query: &str) -> HttpResp {
    http_request("POST", &format!("{base_url}/v2/{repo}/blobs/uploads/?{query}"), &[], Vec::new())
}

/// The conformance points of issue 11 where distribution 2.8.2 has an answer, asked of both
/// servers: reads and deletes of a manifest under a name no tag can have are 404 on both (wharf
/// adds the spec's JSON error, distribution answers its router's plain-text 404); mounts from a
/// repository that lacks the blob, or of a blob nowhere, start an upload on both; a mount from a
/// repository that has it is 201 on both. distribution does not do the spec's optional mount
/// without `from` (202) and has no referrers API, so those are compared on disk only: the link a
/// mount without `from` writes in wharf's root is the one distribution reads.
#[test]
fn conformance_answers_match_distribution() {
    if !Distribution::available() {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let (dist_root, wharf_root) = (data.path().join("dist"), data.path().join("wharf"));
    let dist = Distribution::start(&dist_root);
    let mut w = Wharf::start_on_root(&wharf_root, &[], &[]);
    let layer = random_bytes(3000);
    let mut digest = String::new();
    for base in [&dist.url, &w.url] {
        digest = push_blob_to(base, "src", &layer);
    }

    let long = "t".repeat(129);
    for name in ["-dash", ".hidden", long.as_str(), "semi;colon", "has%20space"] {
        for method in ["GET", "HEAD", "DELETE"] {
            let target = format!("/v2/src/manifests/{name}");
            let theirs = http_request(method, &format!("{}{target}", dist.url), &[], Vec::new());
            let ours = http_request(method, &format!("{}{target}", w.url), &[], Vec::new());
            assert_eq!(theirs.status, 404, "distribution: {method} {target}");
            assert_eq!(ours.status, theirs.status, "wharf: {method} {target}");
            if method != "HEAD" {
                assert_eq!(ours.json()["errors"][0]["code"], "MANIFEST_UNKNOWN", "wharf: {method} {target}");
            }
        }
    }

    let absent = common::sha256_digest(b"no repository holds this");
    let cases = [
        (format!("mount={digest}&from=src"), 201),
        (format!("mount={digest}&from=empty"), 202),
        (format!("mount={absent}&from=src"), 202),
        (format!("mount={absent}"), 202),
    ];
    for (i, (query, status)) in cases.iter().enumerate() {
        let repo = format!("dst{i}");
        let theirs = post_upload(&dist.url, &repo, query);
        let ours = post_upload(&w.url, &repo, query);
        assert_eq!(theirs.status, *status, "distribution: POST ?{query}");
        assert_eq!(ours.status, theirs.status, "wharf: POST ?{query}");
        if *status == 201 {
            assert_eq!(ours.header("Docker-Content-Digest"), theirs.header("Docker-Content-Digest"));
        } else {
            assert!(ours.header("Docker-Upload-UUID").is_some(), "wharf: an upload session for ?{query}");
        }
    }

    // The mount without `from` distribution does not do, on wharf's root served by distribution.
    let mounted = post_upload(&w.url, "dst/anywhere", &format!("mount={digest}"));
    assert_eq!(
        mounted.status,
        201,
        "wharf mounts without from: {}",
        String::from_utf8_lossy(&mounted.body)
    );
    w.stop();
    drop(dist);
    assert_layer_link(&wharf_root, "dst/anywhere", &digest);
    let dist = Distribution::start(&wharf_root);
    assert_eq!(registry_blob(&dist.url, "dst/anywhere", &digest), layer);
}
