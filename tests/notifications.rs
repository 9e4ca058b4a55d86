//! registry:2's webhook notifications from the real `wharf serve` binary to a real HTTP
//! receiver run by the test (an axum server on 127.0.0.1 that records every request and
//! answers with the status the test sets): the events of a skopeo push, a pull, a
//! cross-repository mount and a delete with registry:2's fields, the endpoint filters, the
//! HMAC signature, the on-disk queue across a receiver outage with a SIGTERM and a SIGKILL
//! restart, and the same field paths as Debian's distribution sends for the same config.

mod common;

use common::api::*;
use common::distribution::Distribution;
use common::images::{signal_pid, wait_until};
use common::Wharf;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const USER: &str = "alice";
const PASSWORD: &str = "wonderland";
const AGENT: &str = "notifications-test/1.0";
const EVENTS_TYPE: &str = "application/vnd.docker.distribution.events.v2+json";
const HOOK_TOKEN: &str = "Bearer hook-t0ken";
const HMAC_KEY: &str = "webhook-signing-key";

/// One request the receiver got, and what it answered.
#[derive(Clone, Debug)]
struct Received {
    status: u16,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

impl Received {
    fn event(&self) -> Value {
        let envelope: Value = serde_json::from_slice(&self.body).expect("the body is JSON");
        let events = envelope["events"].as_array().expect("an events array");
        assert_eq!(events.len(), 1, "one event per request, as registry:2 sends them");
        events[0].clone()
    }
}

/// The webhook receiver: a real HTTP server on a loopback port that records every request.
struct Receiver {
    port: u16,
    log: Arc<Mutex<Vec<Received>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Receiver {
    async fn start(status: u16) -> Receiver {
        Self::start_on(0, Arc::default(), status).await
    }

    async fn start_on(port: u16, log: Arc<Mutex<Vec<Received>>>, status: u16) -> Receiver {
        let status = Arc::new(AtomicU16::new(status));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind the receiver");
        let port = listener.local_addr().unwrap().port();
        let (seen, answer) = (log.clone(), status);
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let (seen, answer) = (seen.clone(), answer.clone());
                async move {
                    let status = answer.load(Ordering::SeqCst);
                    let headers = headers
                        .iter()
                        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or_default().to_string()))
                        .collect();
                    seen.lock().unwrap().push(Received {
                        status,
                        headers,
                        body: body.to_vec(),
                    });
                    axum::http::StatusCode::from_u16(status).unwrap()
                }
            }),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Receiver {
            port,
            log,
            stop: Some(stop),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    fn all(&self) -> Vec<Received> {
        self.log.lock().unwrap().clone()
    }

    /// The events the receiver accepted (answered 2xx), in arrival order.
    fn accepted(&self) -> Vec<Value> {
        self.all().iter().filter(|r| r.status < 300).map(Received::event).collect()
    }

    /// Waits (bounded) until an accepted event matches `pred`.
    async fn wait_for(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..300 {
            if let Some(e) = self.accepted().into_iter().find(|e| pred(e)) {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no {what} event within 30 s; got: {:#?}", self.accepted());
    }

    /// Stops listening: connections are refused until it starts again.
    async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Bounded: until the port no longer accepts.
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the receiver kept listening");
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn is(e: &Value, action: &str, digest: &str) -> bool {
    e["action"] == action && e["target"]["digest"] == digest
}

/// A root with an htpasswd file and `config.yml` whose notifications section is `endpoints`.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(notifications: &str) -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        let htpasswd = dir.path().join("htpasswd");
        common::write_htpasswd(&htpasswd, &[(USER, PASSWORD)]);
        std::fs::write(dir.path().join("hmac.key"), format!("{HMAC_KEY}\n")).unwrap();
        let yaml = format!(
            "version: 0.1\nlog:\n  level: debug\nstorage:\n  delete:\n    enabled: true\n\
             auth:\n  htpasswd:\n    realm: hooks\n    path: {}\n{notifications}",
            htpasswd.display()
        );
        std::fs::write(dir.path().join("config.yml"), yaml).unwrap();
        Setup { dir }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn key_file(dir: &Path) -> PathBuf {
        dir.join("hmac.key")
    }

    fn start(&self) -> Wharf {
        let config = self.dir.path().join("config.yml").display().to_string();
        Wharf::start_on_root(&self.root(), &[&config], &[])
    }

    /// The events waiting in an endpoint's queue on disk, oldest first.
    fn queued(&self, endpoint: &str) -> Vec<Value> {
        let dir = self.root().join("docker/registry/v2/_wharf/notifications").join(endpoint);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.retain(|p| p.extension().is_some_and(|x| x == "json"));
        files.sort();
        files
            .iter()
            .filter_map(|p| std::fs::read(p).ok())
            .map(|body| serde_json::from_slice::<Value>(&body).unwrap()["events"][0].clone())
            .collect()
    }
}

fn verify_signature(r: &Received) {
    let header = r.headers.get("x-wharf-signature").expect("X-Wharf-Signature on every request");
    let hex = header.strip_prefix("sha256=").expect("sha256=<hex>");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, HMAC_KEY.as_bytes());
    let tag = hex::decode(hex).expect("hex");
    ring::hmac::verify(&key, &r.body, &tag).expect("the HMAC of the body verifies with the shared key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_pull_mount_and_delete_arrive_with_registry2_fields() {
    if !common::require_tool("skopeo") {
        return;
    }
    let all = Receiver::start(200).await;
    let filtered = Receiver::start(200).await;
    let setup = Setup::new("");
    let notifications = format!(
        "notifications:\n  endpoints:\n\
         \x20   - name: all\n      url: {}\n      headers: {{Authorization: ['{HOOK_TOKEN}']}}\n      timeout: 2s\n\
         \x20     signing: {{keyfile: {}}}\n\
         \x20   - name: filtered\n      url: {}\n      ignoredmediatypes: [application/octet-stream]\n\
         \x20     ignore: {{actions: [pull]}}\n\
         \x20   - name: off\n      disabled: true\n      url: http://127.0.0.1:9/never\n",
        all.url(),
        Setup::key_file(setup.dir.path()).display(),
        filtered.url()
    );
    let config = std::fs::read_to_string(setup.dir.path().join("config.yml")).unwrap() + &notifications;
    std::fs::write(setup.dir.path().join("config.yml"), config).unwrap();
    let w = setup.start();
    let port = w.addr.rsplit_once(':').unwrap().1.to_string();

    // A push by a real client.
    let config_digest = common::images::push_one_layer_image(
        &format!("docker://{}/team/app:v1", w.addr),
        &format!("{USER}:{PASSWORD}"),
        &["--dest-tls-verify=false"],
    );
    let client = Registry::basic_at(&w.url, USER, PASSWORD, AGENT);
    let manifest = client.get_manifest("team/app", "v1").await;
    manifest.expect(200);
    let manifest_digest = manifest.must("Docker-Content-Digest").to_string();
    let doc = manifest.json();
    let layer = doc["layers"][0]["digest"].as_str().unwrap().to_string();
    let pushed = all.wait_for("manifest push", |e| is(e, "push", &manifest_digest)).await;
    for blob in [&config_digest, &layer] {
        all.wait_for("blob push", |e| is(e, "push", blob)).await;
    }
    assert_eq!(pushed["target"]["tag"], "v1");
    assert_eq!(pushed["target"]["repository"], "team/app");
    assert_eq!(pushed["target"]["mediaType"], doc["mediaType"]);
    assert_eq!(pushed["target"]["size"], pushed["target"]["length"]);
    assert_eq!(
        pushed["target"]["url"],
        format!("http://{}/v2/team/app/manifests/{manifest_digest}", w.addr)
    );
    assert!(pushed["request"]["useragent"]
        .as_str()
        .is_some_and(|ua| !ua.is_empty() && ua != AGENT));
    assert_eq!(pushed["request"]["method"], "PUT");
    assert!(
        pushed["target"].get("references").is_none(),
        "references only with includereferences"
    );

    // A pull, a mount into another repository, a delete: each as this client.
    client.get(&format!("/v2/team/app/blobs/{layer}")).await.expect(200);
    let mount = client
        .call(
            reqwest::Method::POST,
            client.url_with("/v2/other/blobs/uploads/", &[("mount", &layer), ("from", "team/app")]),
            &[],
            vec![],
        )
        .await;
    mount.expect(201);
    client
        .delete(&format!("/v2/team/app/manifests/{manifest_digest}"))
        .await
        .expect(202);

    let manifest_pull = all.wait_for("manifest pull", |e| is(e, "pull", &manifest_digest)).await;
    let blob_pull = all.wait_for("blob pull", |e| is(e, "pull", &layer)).await;
    let mounted = all.wait_for("mount", |e| is(e, "mount", &layer)).await;
    let deleted = all.wait_for("delete", |e| is(e, "delete", &manifest_digest)).await;
    assert_eq!(manifest_pull["target"]["tag"], "v1");
    assert_eq!(blob_pull["target"]["mediaType"], "application/octet-stream");
    assert_eq!(blob_pull["target"]["url"], format!("http://{}/v2/team/app/blobs/{layer}", w.addr));
    assert_eq!(mounted["target"]["repository"], "other");
    assert_eq!(mounted["target"]["fromRepository"], "team/app");
    assert_eq!(deleted["target"]["repository"], "team/app");
    assert_eq!(deleted["request"]["method"], "DELETE");
    for (e, method) in [
        (&manifest_pull, "GET"),
        (&blob_pull, "GET"),
        (&mounted, "POST"),
        (&deleted, "DELETE"),
    ] {
        assert_eq!(e["request"]["useragent"], AGENT, "{e}");
        assert_eq!(e["request"]["method"], method, "{e}");
    }

    let received = all.all();
    let ids: Vec<String> = received.iter().map(|r| r.event()["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids.len(), ids.iter().collect::<BTreeSet<_>>().len(), "each event id once");
    let instance = received[0].event()["source"]["instanceID"].clone();
    for r in &received {
        let e = r.event();
        assert_eq!(e["actor"]["name"], USER, "the authenticated user is the actor: {e}");
        assert!(e["request"]["addr"].as_str().unwrap().starts_with("127.0.0.1:"), "{e}");
        assert_eq!(e["request"]["host"], w.addr.as_str(), "{e}");
        assert!(e["request"]["id"].as_str().is_some_and(|id| !id.is_empty()), "{e}");
        assert!(e["source"]["addr"].as_str().unwrap().ends_with(&format!(":{port}")), "{e}");
        assert_eq!(e["source"]["instanceID"], instance);
        time::OffsetDateTime::parse(e["timestamp"].as_str().unwrap(), &time::format_description::well_known::Rfc3339).expect("RFC 3339");
        assert_eq!(r.headers["content-type"], EVENTS_TYPE);
        assert_eq!(r.headers["authorization"], HOOK_TOKEN, "the configured headers are sent");
        verify_signature(r);
    }
    let log = w.errors();
    assert!(!log.contains("hook-t0ken"), "header values are never logged");

    // The filtered endpoint: no pulls, no blob events; what is left, in order.
    filtered.wait_for("delete", |e| is(e, "delete", &manifest_digest)).await;
    let kept: Vec<(String, String)> = filtered
        .accepted()
        .iter()
        .map(|e| (e["action"].as_str().unwrap().into(), e["target"]["digest"].as_str().unwrap().into()))
        .collect();
    assert_eq!(
        kept,
        [
            ("push".to_string(), manifest_digest.clone()),
            ("delete".to_string(), manifest_digest.clone())
        ]
    );
    assert!(filtered.all().iter().all(|r| !r.headers.contains_key("x-wharf-signature")));
    assert!(
        !setup.root().join("docker/registry/v2/_wharf/notifications/off").exists(),
        "a disabled endpoint has no queue"
    );
}

/// (action, digest, tag) of an event: what identifies it apart from its id.
fn key(e: &Value) -> (String, String, String) {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    (s(&e["action"]), s(&e["target"]["digest"]), s(&e["target"]["tag"]))
}

fn pushed_keys(p: &Pushed, tag: &str) -> Vec<(String, String, String)> {
    vec![
        ("push".into(), p.config.digest.clone(), String::new()),
        ("push".into(), p.layer.digest.clone(), String::new()),
        ("push".into(), p.digest.clone(), tag.into()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_outage_and_restarts_lose_no_event_and_repeat_none() {
    let mut receiver = Receiver::start(503).await;
    let setup = Setup::new(&format!(
        "notifications:\n  endpoints:\n    - name: hook\n      url: http://127.0.0.1:{}/hook\n      threshold: 2\n      backoff: 200ms\n\
         \x20     signing: {{key: {HMAC_KEY}}}\n",
        receiver.port
    ));
    let mut expected = Vec::new();

    // Round 1: the receiver answers 503; the server stops with SIGTERM.
    let mut w = setup.start();
    let client = Registry::basic_at(&w.url, USER, PASSWORD, AGENT);
    let r1 = client.push_image("app", "r1").await;
    expected.extend(pushed_keys(&r1, "r1"));
    client.get_manifest("app", "r1").await.expect(200);
    expected.push(("pull".into(), r1.digest.clone(), "r1".into()));
    assert!(
        wait_until(Duration::from_secs(20), || receiver.all().len() >= 3),
        "wharf retries the refused event"
    );
    w.stop();

    // Round 2: restarted; the receiver goes away (connections refused), then SIGKILL once the
    // new events are queued.
    let mut w = setup.start();
    let client = Registry::basic_at(&w.url, USER, PASSWORD, AGENT);
    let r2 = client.push_image("app", "r2").await;
    expected.extend(pushed_keys(&r2, "r2"));
    receiver.stop().await;
    let r3 = client.push_image("app", "r3").await;
    expected.extend(pushed_keys(&r3, "r3"));
    assert!(
        wait_until(Duration::from_secs(20), || setup
            .queued("hook")
            .iter()
            .any(|e| key(e) == ("push".into(), r3.digest.clone(), "r3".into()))),
        "the last event reaches the queue on disk"
    );
    signal_pid(w.pid(), libc::SIGKILL);
    let _ = w.child.take().map(|mut c| c.wait());
    let before_restart = setup.queued("hook");
    assert_eq!(
        before_restart.iter().map(key).collect::<Vec<_>>(),
        expected,
        "everything, in order, is queued on disk while the receiver is away"
    );

    // Round 3: restarted after SIGKILL, one more push, then the receiver comes back.
    let w = setup.start();
    let client = Registry::basic_at(&w.url, USER, PASSWORD, AGENT);
    let r4 = client.push_image("app", "r4").await;
    expected.extend(pushed_keys(&r4, "r4"));
    let failed_ids: BTreeSet<String> = receiver
        .all()
        .iter()
        .map(|r| r.event()["id"].as_str().unwrap().to_string())
        .collect();
    let receiver = Receiver::start_on(receiver.port, receiver.log.clone(), 200).await;
    receiver
        .wait_for("the last push", |e| key(e) == ("push".into(), r4.digest.clone(), "r4".into()))
        .await;
    assert!(
        wait_until(Duration::from_secs(10), || setup.queued("hook").is_empty()),
        "the queue empties"
    );

    let accepted = receiver.accepted();
    assert_eq!(accepted.iter().map(key).collect::<Vec<_>>(), expected, "every event, in order");
    let ids: BTreeSet<String> = accepted.iter().map(|e| e["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids.len(), accepted.len(), "each event id delivered once");
    assert!(
        failed_ids.is_subset(&ids),
        "the events refused earlier are the ones delivered later"
    );
    let instances: BTreeSet<String> = accepted.iter().map(|e| e["source"]["instanceID"].to_string()).collect();
    assert_eq!(instances.len(), 3, "three server runs sent events");
    for r in receiver.all().iter().filter(|r| r.status == 200) {
        verify_signature(r);
    }
    println!(
        "outage: {} events delivered once each after {} refused attempts, a SIGTERM and a SIGKILL restart",
        accepted.len(),
        receiver.all().len() - accepted.len()
    );
}

/// Every JSON path in `v` (array positions left out), e.g. `target.mediaType`.
fn paths(v: &Value, at: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let p = if at.is_empty() { k.clone() } else { format!("{at}.{k}") };
                paths(child, &p, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| paths(i, &format!("{at}[]"), out)),
        _ => {
            out.insert(at.to_string());
        }
    }
}

/// The field paths of the push and pull events of a manifest and of a blob.
fn shapes(events: &[Value], manifest: &str, blob: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    for (what, action, digest) in [
        ("manifest push", "push", manifest),
        ("manifest pull", "pull", manifest),
        ("blob push", "push", blob),
    ] {
        let mut set = BTreeSet::new();
        for e in events.iter().filter(|e| is(e, action, digest)) {
            paths(e, "", &mut set);
        }
        out.insert(what.to_string(), set);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wharf_and_distribution_send_the_same_field_paths() {
    if !Distribution::available() {
        return;
    }
    let to_distribution = Receiver::start(200).await;
    let to_wharf = Receiver::start(200).await;
    let section = |url: String| {
        format!("notifications:\n  events:\n    includereferences: true\n  endpoints:\n    - name: compare\n      url: {url}\n      timeout: 2s\n")
    };
    let dist_root = tempfile::tempdir().unwrap();
    let dist = Distribution::start_with(dist_root.path(), &section(to_distribution.url()));
    let setup = Setup::new(&section(to_wharf.url()));
    let w = setup.start();

    let config = config_blob();
    let layer = random_bytes(4096);
    let mut digests = Vec::new();
    for (url, auth) in [(&dist.url, false), (&w.url, true)] {
        let client = match auth {
            true => Registry::basic_at(url, USER, PASSWORD, AGENT),
            false => Registry::basic_at(url, "", "", AGENT),
        };
        client.push_blob("same", &config).await;
        client.push_blob("same", &layer).await;
        let doc = image_manifest(OCI_MANIFEST, &Desc::of(OCI_CONFIG, &config), &[Desc::of(OCI_LAYER, &layer)]);
        let resp = client.push_manifest("same", Some("v1"), OCI_MANIFEST, &to_bytes(&doc)).await;
        resp.expect(201);
        client.get_manifest("same", "v1").await.expect(200);
        digests.push(sha256(&to_bytes(&doc)));
    }
    assert_eq!(digests[0], digests[1], "the same image");
    let (manifest, blob) = (digests[0].clone(), sha256(&layer));
    for r in [&to_distribution, &to_wharf] {
        r.wait_for("manifest pull", |e| is(e, "pull", &manifest)).await;
        r.wait_for("blob push", |e| is(e, "push", &blob)).await;
    }
    let mut theirs = shapes(&to_distribution.accepted(), &manifest, &blob);
    let mut ours = shapes(&to_wharf.accepted(), &manifest, &blob);
    // Only wharf was given credentials: distribution's actor is anonymous, so it leaves the
    // (omitempty) name out. Everything else must match.
    for shape in ours.values_mut() {
        assert!(shape.remove("actor.name"), "wharf names the actor");
    }
    for shape in theirs.values_mut() {
        shape.remove("actor.name");
    }
    assert_eq!(ours, theirs, "wharf's events have distribution's field paths");
    assert!(ours["manifest push"].contains("target.references[].digest"), "includereferences");
    // The media type is the main branch's (registry:3); distribution 2.8 still says v1.
    let envelope_type = |r: &Receiver| r.all()[0].headers["content-type"].clone();
    assert_eq!(envelope_type(&to_wharf), EVENTS_TYPE);
    assert_eq!(
        envelope_type(&to_distribution),
        "application/vnd.docker.distribution.events.v1+json"
    );
    println!("same field paths: {ours:#?}");
}
