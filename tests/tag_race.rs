//! Many clients moving one tag at once (CI jobs all pushing `latest`): when they are done, the
//! tag the registry serves is the tag on disk, read after read. The index's per-tag write order
//! is what keeps the two equal (src/store/index.rs; its unit test forces the bad interleaving).

mod common;

use common::api::{self, Registry, OCI_MANIFEST};
use futures::future::join_all;
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_clients_moving_one_tag_leave_it_equal_to_its_link_on_disk() {
    let (w, reg) = api::start();
    let repo = "ci/app";
    let mut manifests = Vec::new();
    for i in 0..16 {
        let p = reg
            .push_manifest_with(repo, None, api::OCI_CONFIG, json!({"annotations": {"job": i.to_string()}}))
            .await;
        p.resp.expect(201);
        manifests.push((p.manifest, p.digest));
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    let clients = manifests.iter().map(|(body, _)| {
        let client = Registry::new(&w);
        async move {
            let mut pushes = 0;
            while Instant::now() < deadline && pushes < 200 {
                client.put_manifest(repo, "latest", OCI_MANIFEST, body).await.expect(201);
                pushes += 1;
            }
            pushes
        }
    });
    let pushes: usize = join_all(clients).await.into_iter().sum();
    eprintln!("{pushes} pushes of {repo}:latest by 16 clients");

    let link = w.root.join(format!(
        "docker/registry/v2/repositories/{repo}/_manifests/tags/latest/current/link"
    ));
    let on_disk = std::fs::read_to_string(&link).unwrap();
    assert!(
        manifests.iter().any(|(_, d)| *d == on_disk),
        "the link names one of the pushed manifests: {on_disk}"
    );
    for _ in 0..20 {
        let served = reg.get_manifest(repo, "latest").await;
        served.expect(200);
        assert_eq!(served.must("docker-content-digest"), on_disk, "the tag served is the tag on disk");
    }
}
