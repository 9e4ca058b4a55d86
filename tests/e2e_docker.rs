//! The Docker engine and containerd's `ctr` against wharf: `docker push` of a multi-layer image
//! built `FROM scratch`, `docker rmi`, `docker pull` (same image ID and RepoDigests), cross-repository
//! mounts and layer reuse on push, pull by digest, and `ctr images pull --plain-http` of what docker
//! pushed. docker treats 127.0.0.0/8 registries as insecure, so plain HTTP works without config.

mod common;

use common::distribution::{assert_layer_link, assert_no_layer_link, assert_revision_link, assert_tag_links};
use common::dockerd::{pushed_digest, Dockerd};
use common::images::{
    docker_context, docker_context_on, referenced_digests, registry_blob, registry_manifest, registry_tags, run, DOCKER_MANIFEST,
};
use common::Wharf;

/// Ends the test early outside CI when not root or docker is missing (panics in CI).
macro_rules! dockerd_or_skip {
    () => {
        match Dockerd::start() {
            Some(d) => d,
            None => return,
        }
    };
}

/// Builds a `FROM scratch` image with `layers` layers as `tag`; returns its image ID.
fn build(d: &Dockerd, tag: &str, layers: usize) -> String {
    let ctx = tempfile::tempdir().unwrap();
    docker_context(ctx.path(), layers);
    d.docker(&["build", "-q", "-t", tag, &ctx.path().to_string_lossy()]);
    d.inspect(tag, "{{.Id}}")
}

#[test]
fn push_rmi_pull_keeps_image_id_and_digest_and_ctr_pulls_it() {
    if !common::require_tool("ctr") {
        return;
    }
    let d = dockerd_or_skip!();
    let w = Wharf::start();
    let image = format!("{}/team/app:v1", w.addr);
    let id = build(&d, &image, 3);

    let digest = pushed_digest(&d.docker(&["push", &image]).stdout);
    let repo_digests = d.inspect(&image, "{{json .RepoDigests}}");
    assert_eq!(repo_digests, format!("[\"{}/team/app@{digest}\"]", w.addr));

    // What wharf now serves is exactly what docker pushed.
    let manifest = registry_manifest(&w.url, "team/app", "v1");
    assert_eq!(common::sha256_digest(&manifest.body), digest);
    assert_eq!(manifest.header("Content-Type"), Some(DOCKER_MANIFEST));
    let blobs = referenced_digests(&manifest.body);
    assert_eq!(blobs.len(), 4, "config and three layers");
    for b in &blobs {
        registry_blob(&w.url, "team/app", b);
        assert_layer_link(&w.root, "team/app", b);
    }
    assert_revision_link(&w.root, "team/app", &digest);
    assert_tag_links(&w.root, "team/app", "v1", &digest);
    assert_no_layer_link(&w.root, "team/app", &digest);

    d.docker(&["rmi", &image]);
    assert!(!d.has_image(&id), "rmi removed the image");

    let pull = d.docker(&["pull", &image]);
    assert!(
        String::from_utf8_lossy(&pull.stdout).contains(&format!("Digest: {digest}")),
        "docker pull reports the pushed digest"
    );
    assert_eq!(d.inspect(&image, "{{.Id}}"), id, "same image ID after the round trip");
    assert_eq!(d.inspect(&image, "{{json .RepoDigests}}"), repo_digests);

    // containerd (the one dockerd runs) pulls the same manifest over plain HTTP.
    run(d.ctr().args(["images", "pull", "--plain-http", &image]));
    let listed = String::from_utf8_lossy(&run(d.ctr().args(["images", "ls"])).stdout).into_owned();
    let row = listed
        .lines()
        .find(|l| l.split_whitespace().next() == Some(image.as_str()))
        .unwrap_or_else(|| panic!("ctr images ls lacks {image}:\n{listed}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[1], DOCKER_MANIFEST, "ctr saw a docker schema2 manifest");
    assert_eq!(cols[2], digest, "ctr resolved the same manifest digest as docker");
    let content = run(d.ctr().args(["content", "get", &digest])).stdout;
    assert_eq!(content, manifest.body, "ctr stored the manifest bytes wharf served");
}

#[test]
fn second_push_reuses_layers_mounts_across_repos_and_pulls_by_digest() {
    let d = dockerd_or_skip!();
    let w = Wharf::start();
    let base = format!("{}/team/base:v1", w.addr);
    build(&d, &base, 3);
    let base_digest = pushed_digest(&d.docker(&["push", &base]).stdout);

    // A child image: its three base layers already sit in the repository.
    let child = format!("{}/team/base:v2", w.addr);
    let ctx = tempfile::tempdir().unwrap();
    docker_context_on(ctx.path(), &base);
    d.docker(&["build", "-q", "-t", &child, &ctx.path().to_string_lossy()]);
    let out = d.docker(&["push", &child]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(text.matches("Layer already exists").count(), 3, "push output:\n{text}");
    let child_digest = pushed_digest(&out.stdout);
    assert_eq!(registry_tags(&w.url, "team/base"), vec!["v1", "v2"]);

    // The same image under another repository: docker mounts the blobs instead of uploading.
    let other = format!("{}/other/copy:latest", w.addr);
    d.docker(&["tag", &base, &other]);
    let out = d.docker(&["push", &other]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(text.matches("Mounted from team/base").count(), 3, "push output:\n{text}");
    assert_eq!(pushed_digest(&out.stdout), base_digest, "same manifest in the other repository");
    let manifest = registry_manifest(&w.url, "other/copy", "latest");
    for b in referenced_digests(&manifest.body) {
        registry_blob(&w.url, "other/copy", &b);
        assert_layer_link(&w.root, "other/copy", &b);
    }

    // Remove everything locally, then pull by digest from both repositories.
    let base_id = d.inspect(&base, "{{.Id}}");
    let child_id = d.inspect(&child, "{{.Id}}");
    d.docker(&["rmi", &child, &base, &other]);
    assert!(!d.has_image(&base_id) && !d.has_image(&child_id));

    let by_digest = format!("{}/other/copy@{base_digest}", w.addr);
    d.docker(&["pull", &by_digest]);
    assert_eq!(d.inspect(&by_digest, "{{.Id}}"), base_id);
    let child_by_digest = format!("{}/team/base@{child_digest}", w.addr);
    d.docker(&["pull", &child_by_digest]);
    assert_eq!(d.inspect(&child_by_digest, "{{.Id}}"), child_id);
}
