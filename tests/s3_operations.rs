//! Operating wharf on storage, on a real Garage: the storage metrics per driver and action
//! (distribution's `registry_storage_action_seconds{driver,action}`, wharf's
//! `wharf_storage_errors_total`) moving with pushes and pulls on the filesystem and on S3;
//! `/debug/health` and `wharf doctor --debug-addr` following the bucket as Garage stops and
//! comes back; `wharf config check` telling good settings from a wrong secret, a missing
//! bucket, a key that may not write and an endpoint that does not answer.

mod common;

use common::api::Registry;
use common::garage::{runtime, Garage, BUCKET};
use common::images::wait_until;
use common::{free_port, wharf_bin, Wharf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The debug server's settings, with metrics.
fn debug_env(debug: &str) -> Vec<(String, String)> {
    [
        ("REGISTRY_HTTP_DEBUG_ADDR", debug),
        ("REGISTRY_HTTP_DEBUG_PROMETHEUS_ENABLED", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Blob GETs streamed by wharf (no redirect to the bucket), so that pulls are storage actions.
fn streamed() -> Vec<(String, String)> {
    vec![("REGISTRY_STORAGE_REDIRECT_DISABLE".to_string(), "true".to_string())]
}

/// A config file enabling registry:2's storage health check, often.
fn health_config(dir: &std::path::Path) -> String {
    let path = dir.join("config.yml");
    std::fs::write(
        &path,
        "version: 0.1\nhealth:\n  storagedriver:\n    enabled: true\n    interval: 300ms\n    threshold: 1\n",
    )
    .unwrap();
    path.display().to_string()
}

fn serve(config: &str, env: &[(String, String)]) -> Wharf {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Wharf::launch_args(&[], &[config, "--addr", "127.0.0.1:0"], &env)
}

fn scrape(debug: &str) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", &format!("http://{debug}/metrics")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The value of one series in a scrape (0 when absent).
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

fn action_count(text: &str, driver: &str, action: &str) -> f64 {
    value(
        text,
        &format!("registry_storage_action_seconds_count{{driver=\"{driver}\",action=\"{action}\"}}"),
    )
}

fn errors(text: &str, driver: &str, action: &str) -> f64 {
    value(
        text,
        &format!("wharf_storage_errors_total{{driver=\"{driver}\",action=\"{action}\"}}"),
    )
}

/// Storage errors of `driver` summed over every action (which one a failed request meets first
/// depends on what the index has cached).
fn all_errors(text: &str, driver: &str) -> f64 {
    let prefix = format!("wharf_storage_errors_total{{driver=\"{driver}\",");
    text.lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// Pushes an image, pulls its layer `pulls` times, and checks what the storage metrics of
/// `driver` say about it.
fn push_pull_and_check(w: &Wharf, debug: &str, driver: &str) {
    let reg = Registry::new(w);
    let rt = runtime();
    let pushed = rt.block_on(reg.push_image("ops/app", "v1"));
    let after_push = scrape(debug);
    assert!(
        after_push.contains("# TYPE registry_storage_action_seconds histogram"),
        "{after_push}"
    );
    // Two blobs uploaded (config, layer) and the manifest, each stored once: a blob that arrives
    // whole in the request closing its session is one `blob_put`, a streamed one an
    // `upload_commit`.
    let stored = action_count(&after_push, driver, "upload_commit") + action_count(&after_push, driver, "blob_put");
    assert!(stored >= 3.0, "{after_push}");
    assert!(
        after_push.contains(&format!(
            "registry_storage_action_seconds_bucket{{driver=\"{driver}\",action=\"blob_put\",le=\"0.005\"}}"
        )),
        "distribution's buckets:\n{after_push}"
    );
    let opened_before = action_count(&after_push, driver, "blob_open");
    let pulls = 3;
    rt.block_on(async {
        reg.get_manifest("ops/app", "v1").await.expect(200);
        for _ in 0..pulls {
            let got = reg.get(&format!("/v2/ops/app/blobs/{}", pushed.layer.digest)).await;
            got.expect(200);
            assert_eq!(got.body, pushed.layer_bytes);
        }
    });
    let after_pull = scrape(debug);
    assert_eq!(
        action_count(&after_pull, driver, "blob_open") - opened_before,
        pulls as f64,
        "one storage open per blob GET:\n{after_pull}"
    );
    // A sum of latencies that grew, on series of this driver only.
    let sum = value(
        &after_pull,
        &format!("registry_storage_action_seconds_sum{{driver=\"{driver}\",action=\"blob_open\"}}"),
    );
    assert!(sum > 0.0, "{after_pull}");
    let other = if driver == "s3aws" { "filesystem" } else { "s3aws" };
    assert!(!after_pull.contains(&format!("driver=\"{other}\"")), "{after_pull}");
    assert_eq!(errors(&after_pull, driver, "blob_open"), 0.0, "{after_pull}");
}

#[test]
fn storage_metrics_count_pushes_and_pulls_on_filesystem_and_on_garage() {
    if !common::require_tool("curl") {
        return;
    }
    let debug = format!("127.0.0.1:{}", free_port());
    let owned = debug_env(&debug);
    let env: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let fs = Wharf::start_with(&[], &env);
    push_pull_and_check(&fs, &debug, "filesystem");
    drop(fs);

    let Some(g) = Garage::single() else { return };
    let debug = format!("127.0.0.1:{}", free_port());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yml");
    std::fs::write(&config, "version: 0.1\n").unwrap();
    let mut env = g.wharf_env(0, "/metrics-test");
    env.extend(debug_env(&debug));
    env.extend(streamed());
    let s3 = serve(config.to_str().unwrap(), &env);
    push_pull_and_check(&s3, &debug, "s3aws");
}

/// `/debug/health`'s status and body.
fn health(debug: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-w",
            "\n%{http_code}",
            &format!("http://{debug}/debug/health"),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn wait_health(debug: &str, want: u16, limit: Duration) -> (u16, String) {
    let mut last = (0, String::new());
    let ok = wait_until(limit, || {
        last = health(debug);
        if last.0 != want {
            std::thread::sleep(Duration::from_millis(200));
        }
        last.0 == want
    });
    assert!(ok, "/debug/health never answered {want}; last {last:?}");
    last
}

fn doctor(w: &Wharf, debug: &str) -> Output {
    let host = w.url.trim_start_matches("http://");
    Command::new(wharf_bin())
        .args(["doctor", host, "--timeout", "5", "--debug-addr", debug])
        .env("HOME", "/nonexistent")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn health_and_doctor_follow_the_bucket_as_garage_stops_and_restarts() {
    if !common::require_tool("curl") {
        return;
    }
    let Some(mut g) = Garage::single() else { return };
    let dir = tempfile::tempdir().unwrap();
    let debug = format!("127.0.0.1:{}", free_port());
    let mut env = g.wharf_env(0, "/health-test");
    env.extend(debug_env(&debug));
    env.extend(streamed());
    let w = serve(&health_config(dir.path()), &env);
    let reg = Registry::new(&w);
    let rt = runtime();
    let pushed = rt.block_on(reg.push_image("ops/health", "v1"));

    assert_eq!(wait_health(&debug, 200, Duration::from_secs(10)).1, "{}");
    let up = doctor(&w, &debug);
    let out = text(&up);
    assert!(out.contains("the server reaches its storage"), "{out}");

    g.nodes[0].stop();
    let started = Instant::now();
    let (_, body) = wait_health(&debug, 503, Duration::from_secs(30));
    eprintln!("/debug/health turned 503 {:?} after Garage stopped: {body}", started.elapsed());
    let parsed: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    let error = parsed["storagedriver_s3"].as_str().unwrap_or_else(|| panic!("{body}"));
    assert!(error.contains("cannot be reached"), "{error}");
    assert!(error.contains(&g.nodes[0].s3_addr), "the error names the endpoint: {error}");
    let down = doctor(&w, &debug);
    let out = text(&down);
    assert!(!down.status.success(), "doctor passed with the bucket down:\n{out}");
    assert!(
        out.contains("cannot reach its storage") && out.contains("storagedriver_s3"),
        "{out}"
    );
    assert!(!out.contains(&g.secret), "doctor printed the secret key:\n{out}");

    // A pull while the bucket is down fails in the storage, and is counted there.
    let before = all_errors(&scrape(&debug), "s3aws");
    rt.block_on(async {
        let got = reg.get(&format!("/v2/ops/health/blobs/{}", pushed.layer.digest)).await;
        assert!(got.status >= 500, "{}", got.show());
    });
    let after = scrape(&debug);
    assert!(
        all_errors(&after, "s3aws") > before,
        "the failed pull is not counted as a storage error:\n{after}"
    );

    g.restart(0);
    let started = Instant::now();
    assert_eq!(wait_health(&debug, 200, Duration::from_secs(60)).1, "{}");
    eprintln!("/debug/health back to 200 {:?} after Garage restarted", started.elapsed());
    let back = doctor(&w, &debug);
    let out = text(&back);
    assert!(out.contains("the server reaches its storage"), "{out}");
    rt.block_on(async {
        let got = reg.get(&format!("/v2/ops/health/blobs/{}", pushed.layer.digest)).await;
        got.expect(200);
        assert_eq!(got.body, pushed.layer_bytes);
    });
}

/// `wharf config check` on `config` with the storage set by `env`.
fn config_check(config: &str, env: &[(String, String)]) -> (Output, Duration) {
    let mut cmd = Command::new(wharf_bin());
    cmd.args(["config", "check", config]);
    for (k, _) in std::env::vars() {
        if k.starts_with("REGISTRY_") || k.starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let started = Instant::now();
    let out = cmd.output().unwrap();
    (out, started.elapsed())
}

/// A server's or a command's environment.
type Env = Vec<(String, String)>;

fn with(env: &[(String, String)], key: &str, value: &str) -> Env {
    let mut env: Vec<_> = env.iter().filter(|(k, _)| k != key).cloned().collect();
    env.push((key.to_string(), value.to_string()));
    env
}

#[test]
fn config_check_reaches_the_bucket_and_names_what_is_wrong() {
    let Some(g) = Garage::single() else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yml");
    std::fs::write(&config, "version: 0.1\n").unwrap();
    let config = config.to_str().unwrap();
    let good = g.wharf_env(0, "/check-test");

    let (ok, took) = config_check(config, &good);
    let out = text(&ok);
    assert!(ok.status.success(), "{out}");
    assert!(
        out.contains("listed, wrote, read back and deleted check-test/wharf-config-check-"),
        "{out}"
    );
    assert!(!out.contains(&g.secret), "config check printed the secret:\n{out}");
    eprintln!("config check against Garage took {took:?}");
    // The probe object is gone: the bucket holds nothing under the root.
    let listed = g.cli(0, &["bucket", "info", BUCKET]);
    assert!(
        listed.lines().any(|l| l.contains("Objects:") && l.trim_end().ends_with(" 0")),
        "{listed}"
    );

    let mut cases: Vec<(&str, Env, &str)> = vec![
        (
            "a wrong secret",
            with(&good, "REGISTRY_STORAGE_S3_SECRETKEY", &"0".repeat(64)),
            "refuses the credentials",
        ),
        (
            "a missing bucket",
            with(&good, "REGISTRY_STORAGE_S3_BUCKET", "no-such-bucket"),
            "the bucket does not exist",
        ),
        (
            "an endpoint nobody listens on",
            with(
                &good,
                "REGISTRY_STORAGE_S3_REGIONENDPOINT",
                &format!("http://127.0.0.1:{}", free_port()),
            ),
            "the endpoint cannot be reached",
        ),
    ];
    // A key allowed to read only.
    let created = g.cli(0, &["key", "create", "read-only"]);
    let field = |name: &str| {
        created
            .lines()
            .find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim_start_matches(':').trim().to_string()))
            .unwrap_or_else(|| panic!("no {name} in:\n{created}"))
    };
    let (ro_id, ro_secret) = (field("Key ID"), field("Secret key"));
    g.cli(0, &["bucket", "allow", "--read", BUCKET, "--key", "read-only"]);
    let read_only = with(
        &with(&good, "REGISTRY_STORAGE_S3_ACCESSKEY", &ro_id),
        "REGISTRY_STORAGE_S3_SECRETKEY",
        &ro_secret,
    );
    cases.push(("a key that may only read", read_only, "may not write to the bucket"));

    for (what, env, want) in &cases {
        let (failed, took) = config_check(config, env);
        let out = text(&failed);
        assert!(!failed.status.success(), "config check passed with {what}:\n{out}");
        let line = out
            .lines()
            .find(|l| l.starts_with("wharf: error: storage:"))
            .unwrap_or_else(|| panic!("no storage error for {what}:\n{out}"));
        assert!(line.contains(want), "{what}: {line}");
        assert!(took < Duration::from_secs(30), "{what}: took {took:?}");
        let secret = &env.iter().find(|(k, _)| k == "REGISTRY_STORAGE_S3_SECRETKEY").unwrap().1;
        assert!(!out.contains(secret.as_str()), "{what}: the secret was printed:\n{out}");
        eprintln!("{what} ({took:?}): {line}");
    }
    // Four distinct messages.
    let distinct: std::collections::BTreeSet<_> = cases.iter().map(|c| c.2).collect();
    assert_eq!(distinct.len(), cases.len());

    // On a filesystem: a root under a regular file cannot be made.
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let fs_env = vec![(
        "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY".to_string(),
        file.join("data").display().to_string(),
    )];
    let (failed, _) = config_check(config, &fs_env);
    let out = text(&failed);
    assert!(!failed.status.success() && out.contains("is not a directory"), "{out}");
    let fs_env = vec![(
        "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY".to_string(),
        dir.path().join("data").display().to_string(),
    )];
    let (ok, _) = config_check(config, &fs_env);
    let out = text(&ok);
    assert!(ok.status.success() && out.contains("is writable"), "{out}");
}
