//! wharf on S3 object storage, on a real Garage: the bucket in registry:2's S3 layout, shared
//! by several `wharf serve` replicas (an upload begun on one finished on another, a tag pushed
//! through one read through another at once), blob GETs redirected to presigned URLs or
//! streamed, distribution 2.8.2 and wharf serving each other's pushes from one bucket, and a
//! three-node cluster that keeps serving with a node stopped. Every byte is compared by digest.

mod common;

use common::api::{random_bytes, Registry, OCI_MANIFEST};
use common::distribution::Distribution;
use common::garage::{runtime, Garage};
use common::images::{curl_follow, on_any_replica, Skopeo};
use common::netns::TestSwitch;
use common::sha256_digest;

const MIB: usize = 1 << 20;

/// The blob as one replica serves it, streamed (no redirect): status 200 and the bytes.
async fn streamed(r: &Registry, repo: &str, digest: &str, headers: &[(&str, &str)]) -> (u16, Vec<u8>) {
    let resp = r.get_with(&format!("/v2/{repo}/blobs/{digest}"), headers).await;
    (resp.status, resp.body.clone())
}

#[test]
fn replicas_share_a_bucket_sessions_tags_and_redirects() {
    let Some(g) = Garage::single() else { return };
    if !common::require_tool("curl") {
        return;
    }
    let chunk = ("REGISTRY_STORAGE_S3_CHUNKSIZE", "5242880");
    let a = g.serve(0, "/wharf", &[chunk, ("REGISTRY_STORAGE_REDIRECT_DISABLE", "true")]);
    let b = g.serve(0, "/wharf", &[chunk]);
    let (ra, rb) = (Registry::at_url(&a.url), Registry::at_url(&b.url));
    let rt = runtime();

    let small = random_bytes(300_000);
    let big = random_bytes(12 * MIB + 123);
    let (d_small, d_big) = (sha256_digest(&small), sha256_digest(&big));
    let cuts = [0, 6 * MIB, 9 * MIB, 11 * MIB + MIB / 2, big.len()];
    let location = rt.block_on(async {
        // Monolithic, through A.
        assert_eq!(ra.push_blob("team/app", &small).await, d_small);
        // Chunked across both replicas: parts of 5 MiB and more, tails carried in the bucket.
        let mut location = on_any_replica(ra.start_upload("team/app").await.location());
        for (i, w) in cuts.windows(2).take(3).enumerate() {
            let via = if i % 2 == 0 { &ra } else { &rb };
            let resp = via.patch(&location, &big[w[0]..w[1]], Some((w[0], w[1] - 1))).await;
            resp.expect(202);
            assert_eq!(resp.header("Range"), Some(format!("0-{}", w[1] - 1).as_str()), "{}", resp.show());
            location = on_any_replica(resp.location());
        }
        location
    });
    // A, which took the last chunk, dies without a chance to flush anything; a new A starts.
    let mut a = a;
    common::images::signal_pid(a.pid(), libc::SIGKILL);
    a.stop();
    let a = g.serve(0, "/wharf", &[chunk, ("REGISTRY_STORAGE_REDIRECT_DISABLE", "true")]);
    let ra = Registry::at_url(&a.url);
    rt.block_on(async {
        // The session's state is in the bucket: B reports what A received, and finishes it.
        let status = rb.get(&location).await;
        status.expect(204);
        assert_eq!(status.header("Range"), Some(format!("0-{}", cuts[3] - 1).as_str()));
        rb.finish_upload(&location, &d_big, &big[cuts[3]..]).await.expect(201);

        // Streamed by A (redirects off), whole and by range.
        assert_eq!(streamed(&ra, "team/app", &d_big, &[]).await, (200, big.clone()));
        let (status, part) = streamed(&ra, "team/app", &d_big, &[("Range", "bytes=100-199")]).await;
        assert_eq!((status, part.as_slice()), (206, &big[100..200]));
        // HEAD through the redirecting replica answers itself.
        let head = rb.head(&format!("/v2/team/app/blobs/{d_big}")).await;
        head.expect(200);
        assert_eq!(head.header("Content-Length"), Some(big.len().to_string().as_str()));
        // B redirects to a presigned URL on the bucket.
        let got = rb.get(&format!("/v2/team/app/blobs/{d_small}")).await;
        assert!(matches!(got.status, 307 | 302), "{}", got.show());
        assert!(got.location().starts_with(&g.nodes[0].endpoint()), "{}", got.location());
    });
    // Memory stays bounded by the part size, not the blob's: 48 MiB pushed in one request grows
    // the replica's peak by at most the three 5 MiB parts an upload holds (two being sent, one
    // filling) and some slack, far below the blob's size.
    let huge = random_bytes(48 * MIB);
    let before = a.peak_rss_kib();
    rt.block_on(async { assert_eq!(ra.push_blob("team/huge", &huge).await, sha256_digest(&huge)) });
    let peak = a.peak_rss_kib();
    eprintln!("replica A's peak RSS before and after a 48 MiB monolithic push with 5 MiB parts: {before} / {peak} KiB");
    let grown = peak.saturating_sub(before);
    assert!(
        grown < 32 * 1024,
        "a 48 MiB push grew the peak by {grown} KiB: the blob was held in memory"
    );
    let via_b = format!("{}/v2/team/app/blobs/{d_big}", b.url);
    assert_eq!(sha256_digest(&curl_follow(&via_b, None)), d_big, "curl follows the presigned URL");
    assert_eq!(
        curl_follow(&via_b, Some("1000-1999")),
        big[1000..2000].to_vec(),
        "a range through the redirect"
    );

    rt.block_on(async {
        // A tag pushed through A is served by tag through B at once, and moved through B is
        // seen by A at once.
        let first = ra.push_image("team/app", "latest").await;
        let by_b = rb.get_manifest("team/app", "latest").await;
        by_b.expect(200);
        assert_eq!(by_b.body, first.manifest);
        let second = rb.push_image("team/app", "latest").await;
        let by_a = ra.get_manifest("team/app", "latest").await;
        assert_eq!(by_a.body, second.manifest);
        let tags = ra.get("/v2/team/app/tags/list").await;
        assert_eq!(tags.json()["tags"], serde_json::json!(["latest"]));
        let catalog = rb.get("/v2/_catalog").await;
        assert_eq!(catalog.json()["repositories"], serde_json::json!(["team/app", "team/huge"]));
    });

    // A multi-arch index copied in through A and out through B (which redirects its blobs).
    let Some(sk) = Skopeo::new() else { return };
    let (into, out_of) = (
        format!("docker://{}/team/multi:v1", a.addr),
        format!("docker://{}/team/multi:v1", b.addr),
    );
    sk.copy_index_through(&into, &out_of);
}

#[test]
fn distribution_and_wharf_serve_each_others_pushes_from_one_bucket() {
    let Some(g) = Garage::single() else { return };
    if !Distribution::available() {
        return;
    }
    // distribution's S3 driver would use this environment's CA bundle for plain HTTP too.
    let dist = Distribution::start_on_storage(&g.distribution_storage(0, "/shared"), "", &["AWS_CA_BUNDLE"]);
    let w = g.serve(0, "/shared", &[("REGISTRY_STORAGE_REDIRECT_DISABLE", "true")]);
    let (rd, rw) = (Registry::at_url(&dist.url), Registry::at_url(&w.url));
    let rt = runtime();
    rt.block_on(async {
        // distribution pushes, wharf serves.
        let pushed = rd.push_image("from/dist", "v1").await;
        let big = random_bytes(7 * MIB + 5);
        let d_big = rd.push_blob("from/dist", &big).await;
        let got = rw.get_manifest("from/dist", "v1").await;
        got.expect(200);
        assert_eq!(got.body, pushed.manifest, "distribution's push, served by wharf by tag");
        for (digest, bytes) in [
            (&pushed.layer.digest, &pushed.layer_bytes),
            (&pushed.config.digest, &pushed.config_bytes),
        ] {
            assert_eq!(streamed(&rw, "from/dist", digest, &[]).await, (200, bytes.clone()));
        }
        assert_eq!(streamed(&rw, "from/dist", &d_big, &[]).await, (200, big));
        let tags = rw.get("/v2/from/dist/tags/list").await;
        assert_eq!(tags.json()["tags"], serde_json::json!(["v1"]));

        // wharf pushes (a chunked blob through a multipart upload too), distribution serves.
        let pushed = rw.push_image("from/wharf", "v2").await;
        let big = random_bytes(11 * MIB + 7);
        let d_big = sha256_digest(&big);
        let location = rw.start_upload("from/wharf").await.location().to_string();
        let resp = rw.patch(&location, &big[..6 * MIB], Some((0, 6 * MIB - 1))).await;
        resp.expect(202);
        rw.finish_upload(resp.location(), &d_big, &big[6 * MIB..]).await.expect(201);
        let got = rd.get_manifest("from/wharf", "v2").await;
        got.expect(200);
        assert_eq!(got.body, pushed.manifest, "wharf's push, served by distribution by tag");
        assert_eq!(
            streamed(&rd, "from/wharf", &pushed.layer.digest, &[]).await,
            (200, pushed.layer_bytes.clone())
        );
        assert_eq!(streamed(&rd, "from/wharf", &d_big, &[]).await, (200, big));
        let tags = rd.get("/v2/from/wharf/tags/list").await;
        assert_eq!(tags.json()["tags"], serde_json::json!(["v2"]), "{}", dist.log());
        let catalog = rd.get("/v2/_catalog").await;
        assert_eq!(catalog.json()["repositories"], serde_json::json!(["from/dist", "from/wharf"]));
    });
}

#[test]
fn a_three_node_cluster_keeps_serving_with_one_node_stopped() {
    let Some(switch) = TestSwitch::create(3) else { return };
    let hosts: Vec<(Vec<String>, String)> = (0..3)
        .map(|i| {
            let prefix = switch.prefix(i).into_iter().map(String::from).collect();
            (prefix, switch.machines[i].1.clone())
        })
        .collect();
    let Some(mut g) = Garage::start(&hosts) else { return };
    let no_redirect = ("REGISTRY_STORAGE_REDIRECT_DISABLE", "true");
    let a = g.serve(0, "/", &[no_redirect]);
    let b = g.serve(1, "/", &[no_redirect]);
    let (ra, rb) = (Registry::at_url(&a.url), Registry::at_url(&b.url));
    let rt = runtime();
    let push_and_pull = |tag: &'static str| {
        rt.block_on(async {
            let pushed = ra.push_image("cluster/app", tag).await;
            let big = random_bytes(7 * MIB + 1);
            let d_big = ra.push_blob("cluster/app", &big).await;
            let got = rb.get_manifest("cluster/app", tag).await;
            got.expect(200);
            assert_eq!(got.body, pushed.manifest);
            assert_eq!(
                streamed(&rb, "cluster/app", &pushed.layer.digest, &[]).await,
                (200, pushed.layer_bytes)
            );
            assert_eq!(streamed(&rb, "cluster/app", &d_big, &[]).await, (200, big));
        })
    };
    push_and_pull("before");
    // Replication factor 3 writes to a quorum of 2: with one node down, both go on.
    g.nodes[2].stop();
    push_and_pull("after");
    rt.block_on(async {
        let tags = ra.get("/v2/cluster/app/tags/list").await;
        assert_eq!(tags.json()["tags"], serde_json::json!(["after", "before"]));
    });
}

#[test]
fn tag_pages_on_object_storage_come_in_tag_order_from_bounded_listings() {
    let Some(g) = Garage::single() else { return };
    let a = g.serve(0, "/pages", &[("REGISTRY_STORAGE_REDIRECT_DISABLE", "true")]);
    let ra = Registry::at_url(&a.url);
    // Keys sort by `<tag>/`, so `v1-rc/` and `v1.0/` come before `v1/`: names where key order
    // and tag order differ, which a listing stopping early must still page correctly.
    let names = ["v1", "v1-rc", "v1-rc.2", "v1.0", "v10", "v1_x", "v", "w-1", "w"];
    runtime().block_on(async {
        let pushed = ra.push_image("paged/app", "a").await;
        for name in names {
            ra.put_manifest("paged/app", name, OCI_MANIFEST, &pushed.manifest).await.expect(201);
        }
        let mut want: Vec<String> = names.iter().chain(&["a"]).map(|s| s.to_string()).collect();
        want.sort();
        let all = ra.get("/v2/paged/app/tags/list").await;
        assert_eq!(all.json()["tags"], serde_json::json!(want));
        for n in [1, 2, 3, 4] {
            let (paged, pages) = ra.collect_pages(&format!("/v2/paged/app/tags/list?n={n}"), "tags").await;
            assert_eq!(paged, want, "pages of {n}");
            assert!(pages >= want.len() / n, "{pages} pages of {n}");
        }
        // A page after a name that is not a tag starts at the next tag.
        let after = ra.get("/v2/paged/app/tags/list?n=2&last=v1-r").await;
        assert_eq!(after.json()["tags"], serde_json::json!(["v1-rc", "v1-rc.2"]));
    });
}
