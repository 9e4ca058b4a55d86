//! wharf on Azure Blob Storage (registry:2's `storage.azure`), on Azurite, Microsoft's
//! emulator: two replicas on one container (an upload begun on one and finished on the other,
//! a chunked upload across several PATCHes bigger than a block, a manifest deleted through one
//! gone from the other at once), blob GETs redirected to SAS URLs or streamed, skopeo copying a
//! multi-arch index in through one and out through the other, the storage metrics and health
//! check under registry:2's names, and `wharf config check` telling a wrong key from a missing
//! container. Every byte is compared by digest.

mod common;

use common::api::{random_bytes, Registry};
use common::azurite::{Azurite, ACCOUNT, CONTAINER};
use common::garage::runtime;
use common::images::{curl_follow, on_any_replica, wait_until, Skopeo};
use common::{sha256_digest, wharf_bin, Wharf};
use std::process::{Command, Output};
use std::time::Duration;

const MIB: usize = 1 << 20;

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn curl_text(url: &str) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-w", "\n%{http_code}", url])
        .output()
        .unwrap();
    let body = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = body.rsplit_once('\n').unwrap_or((&body, ""));
    (code.to_string(), body.to_string())
}

#[test]
fn replicas_share_a_container_sessions_deletes_and_redirects() {
    let Some(az) = Azurite::start() else { return };
    if !common::require_tool("curl") {
        return;
    }
    let debug = format!("127.0.0.1:{}", common::free_port());
    let a = az.serve(
        "/wharf",
        &[
            ("REGISTRY_STORAGE_REDIRECT_DISABLE", "true"),
            ("REGISTRY_STORAGE_DELETE_ENABLED", "true"),
            ("REGISTRY_HTTP_DEBUG_ADDR", &debug),
            ("REGISTRY_HTTP_DEBUG_PROMETHEUS_ENABLED", "true"),
        ],
    );
    let b = az.serve("/wharf", &[("REGISTRY_STORAGE_DELETE_ENABLED", "true")]);
    let (ra, rb) = (Registry::at_url(&a.url), Registry::at_url(&b.url));
    let rt = runtime();

    // 23 MiB in four PATCHes alternating between the replicas, then the last bytes with the
    // PUT: blocks of 10 MiB (the part size), the tails between them carried in the container.
    let big = random_bytes(23 * MIB + 123);
    let d_big = sha256_digest(&big);
    let cuts = [0, 4 * MIB, 11 * MIB, 17 * MIB, 21 * MIB, big.len()];
    rt.block_on(async {
        let mut location = on_any_replica(ra.start_upload("team/app").await.location());
        for (i, w) in cuts.windows(2).take(4).enumerate() {
            let via = if i % 2 == 0 { &ra } else { &rb };
            let resp = via.patch(&location, &big[w[0]..w[1]], Some((w[0], w[1] - 1))).await;
            resp.expect(202);
            assert_eq!(resp.header("Range"), Some(format!("0-{}", w[1] - 1).as_str()), "{}", resp.show());
            location = on_any_replica(resp.location());
        }
        // Begun on A, its state asked of and finished on B.
        let status = rb.get(&location).await;
        status.expect(204);
        assert_eq!(status.header("Range"), Some(format!("0-{}", cuts[4] - 1).as_str()));
        rb.finish_upload(&location, &d_big, &big[cuts[4]..]).await.expect(201);

        // Streamed by A (redirects off), whole and by range.
        let whole = ra.get(&format!("/v2/team/app/blobs/{d_big}")).await;
        assert_eq!(whole.status, 200, "{}", whole.show());
        assert_eq!(sha256_digest(&whole.body), d_big);
        let part = ra
            .get_with(&format!("/v2/team/app/blobs/{d_big}"), &[("Range", "bytes=100-199")])
            .await;
        assert_eq!((part.status, part.body.as_slice()), (206, &big[100..200]));
        let head = rb.head(&format!("/v2/team/app/blobs/{d_big}")).await;
        head.expect(200);
        assert_eq!(head.header("Content-Length"), Some(big.len().to_string().as_str()));
        // B redirects to a SAS URL of the blob, at registry:2's key under the root.
        let got = rb.get(&format!("/v2/team/app/blobs/{d_big}")).await;
        assert!(matches!(got.status, 307 | 302), "{}", got.show());
        let hex = &d_big["sha256:".len()..];
        let key = format!(
            "{}/{CONTAINER}/wharf/docker/registry/v2/blobs/sha256/{}/{hex}/data?",
            az.service_url(),
            &hex[..2]
        );
        assert!(got.location().starts_with(&key), "{} is not {key}...", got.location());
        assert!(got.location().contains("sig="), "{}", got.location());
    });
    let via_b = format!("{}/v2/team/app/blobs/{d_big}", b.url);
    assert_eq!(sha256_digest(&curl_follow(&via_b, None)), d_big, "curl follows the SAS URL");
    assert_eq!(
        curl_follow(&via_b, Some("1000-1999")),
        big[1000..2000].to_vec(),
        "a range through the redirect"
    );

    rt.block_on(async {
        // A tag pushed through A is served by tag through B at once; deleted by digest through
        // B, the manifest is gone from A at once, by digest and by tag.
        let pushed = ra.push_image("team/app", "latest").await;
        let by_b = rb.get_manifest("team/app", "latest").await;
        by_b.expect(200);
        assert_eq!(by_b.body, pushed.manifest);
        rb.delete(&format!("/v2/team/app/manifests/{}", pushed.digest)).await.expect(202);
        ra.get_manifest("team/app", &pushed.digest).await.expect(404);
        ra.get_manifest("team/app", "latest").await.expect(404);
        let layer = ra.get(&format!("/v2/team/app/blobs/{}", pushed.layer.digest)).await;
        assert_eq!(layer.body, pushed.layer_bytes, "blobs stay until garbage collection");
    });

    // registry:2's names in the metrics: the driver label is distribution's `azure` (A took two
    // of the PATCHes).
    let (code, metrics) = curl_text(&format!("http://{debug}/metrics"));
    assert_eq!(code, "200");
    assert!(
        metrics.contains("registry_storage_action_seconds_count{driver=\"azure\",action=\"upload_append\"} 2"),
        "{metrics}"
    );
    assert!(!metrics.contains("driver=\"s3aws\""), "{metrics}");

    // Memory stays bounded by the block size, not the blob's: 48 MiB pushed in one request grows
    // A's peak by at most the blocks an upload holds (one being sent, one filling, 10 MiB each)
    // and some slack.
    let huge = random_bytes(48 * MIB);
    let before = a.peak_rss_kib();
    let started = std::time::Instant::now();
    rt.block_on(async { assert_eq!(ra.push_blob("team/huge", &huge).await, sha256_digest(&huge)) });
    let (took, peak) = (started.elapsed(), a.peak_rss_kib());
    eprintln!("replica A: a 48 MiB monolithic push took {took:?}; peak RSS before and after {before} / {peak} KiB");
    let grown = peak.saturating_sub(before);
    assert!(
        grown < 40 * 1024,
        "a 48 MiB push grew the peak by {grown} KiB: the blob was held in memory"
    );

    // A multi-arch index copied in through A and out through B (which redirects its blobs).
    let Some(sk) = Skopeo::new() else { return };
    sk.copy_index_through(
        &format!("docker://{}/team/multi:v1", a.addr),
        &format!("docker://{}/team/multi:v1", b.addr),
    );
}

/// `wharf config check` with the storage set by `env`.
fn config_check(env: &[(String, String)]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yml");
    std::fs::write(&config, "version: 0.1\n").unwrap();
    let mut cmd = Command::new(wharf_bin());
    cmd.args(["config", "check"]).arg(&config);
    for (k, _) in std::env::vars() {
        if k.starts_with("REGISTRY_") || k.starts_with("AZURE_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    cmd.output().unwrap()
}

fn with(env: &[(String, String)], key: &str, value: &str) -> Vec<(String, String)> {
    let mut env: Vec<_> = env.iter().filter(|(k, _)| k != key).cloned().collect();
    env.push((key.to_string(), value.to_string()));
    env
}

#[test]
fn config_check_and_health_tell_a_wrong_key_from_a_missing_container() {
    let Some(mut az) = Azurite::start() else { return };
    let good = az.wharf_env(CONTAINER, "/check");

    let ok = config_check(&good);
    let out = text(&ok);
    assert!(ok.status.success(), "{out}");
    assert!(
        out.contains(&format!("azure container {CONTAINER} of account {ACCOUNT} at {}", az.service_url()))
            && out.contains("listed, wrote, read back and deleted check/wharf-config-check-"),
        "{out}"
    );
    assert!(!out.contains(common::azurite::ACCOUNT_KEY), "config check printed the key:\n{out}");

    // Another key of the right shape (64 bytes, base64), and a container nobody made.
    let wrong_key = "d3JvbmcK".repeat(11);
    for (what, env, expected) in [
        (
            "a wrong key",
            with(&good, "REGISTRY_STORAGE_AZURE_ACCOUNTKEY", &wrong_key),
            "the store refuses the credentials (storage.azure.accountname and accountkey)",
        ),
        (
            "a missing container",
            with(&good, "REGISTRY_STORAGE_AZURE_CONTAINER", "no-such-container"),
            "the container does not exist (storage.azure.container)",
        ),
    ] {
        let failed = config_check(&env);
        let out = text(&failed);
        eprintln!("config check with {what}:\n{out}");
        assert!(!failed.status.success(), "{what} passed:\n{out}");
        assert!(out.contains(expected), "{what}: {out}");
        assert!(!out.contains(&wrong_key), "{what}: the key was printed:\n{out}");
    }
    // serve refuses to start on a missing container, and names it.
    let env = with(&good, "REGISTRY_STORAGE_AZURE_CONTAINER", "no-such-container");
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let refused = Wharf::try_launch_args(&[], &["--addr", "127.0.0.1:0"], &env)
        .err()
        .expect("serve started");
    assert!(refused.contains("cannot use azure container no-such-container"), "{refused}");
    // gcs is not wired (no GCS server to test it on): refused at start, by name.
    let gcs = Wharf::try_launch_args(
        &[],
        &["--addr", "127.0.0.1:0"],
        &[("REGISTRY_STORAGE", "gcs"), ("REGISTRY_STORAGE_GCS_BUCKET", "b")],
    )
    .err()
    .expect("serve started on gcs");
    assert!(gcs.contains("storage driver is not supported by wharf"), "{gcs}");

    // registry:2's storage health check, `storagedriver_azure`, follows the emulator.
    let debug = format!("127.0.0.1:{}", common::free_port());
    let health = [
        ("REGISTRY_HTTP_DEBUG_ADDR", debug.as_str()),
        ("REGISTRY_HEALTH_STORAGEDRIVER_ENABLED", "true"),
        ("REGISTRY_HEALTH_STORAGEDRIVER_INTERVAL", "300ms"),
        ("REGISTRY_HEALTH_STORAGEDRIVER_THRESHOLD", "1"),
    ];
    let _w = az.serve("/check", &health);
    let url = format!("http://{debug}/debug/health");
    assert!(wait_until(Duration::from_secs(10), || curl_text(&url) == ("200".into(), "{}".into())));
    az.stop();
    let mut last = (String::new(), String::new());
    let down = wait_until(Duration::from_secs(30), || {
        last = curl_text(&url);
        last.0 == "503"
    });
    assert!(down, "health stayed {last:?} with Azurite stopped");
    let parsed: serde_json::Value = serde_json::from_str(&last.1).unwrap_or_else(|e| panic!("{e}: {}", last.1));
    let error = parsed["storagedriver_azure"].as_str().unwrap_or_else(|| panic!("{}", last.1));
    assert!(error.contains("cannot be reached (storage.azure.serviceurl"), "{error}");
}
