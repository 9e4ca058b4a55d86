//! The registry's event stream, seen through the real HTTP server run in-process with Basic
//! authentication: a test subscribes through the library, drives the API with HTTP, and checks
//! each event's action, target and request context (actor, address, request id, user agent).

mod common;

use common::api::*;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use wharf::registry::events::{Action, Event, Subscription};
use wharf::registry::{Options, Registry as Domain};

const USER: &str = "alice";
const PASSWORD: &str = "wonderland";
const AGENT: &str = "events-test/1.0";

/// `wharf serve`'s router over a fresh root, on a loopback port, stopped when dropped.
struct InProcess {
    url: String,
    port: u16,
    domain: Arc<Domain>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _root: tempfile::TempDir,
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn start() -> InProcess {
    let root = tempfile::tempdir().expect("tempdir");
    let data = root.path().join("data");
    let htpasswd = root.path().join("htpasswd");
    common::write_htpasswd(&htpasswd, &[(USER, PASSWORD)]);
    let yaml = format!(
        "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
         auth:\n  htpasswd:\n    realm: events\n    path: {}\nhttp:\n  addr: 127.0.0.1:0\n",
        data.display(),
        htpasswd.display()
    );
    let cfg = wharf::config::load_from(Some(&yaml), &[]).expect("config").config;
    let store = wharf::store::filesystem(&data).await.expect("store");
    let options = Options {
        delete_enabled: true,
        read_only: false,
        ..Options::default()
    };
    let domain = Arc::new(Domain::new(store, options));
    let app = wharf::cli::serve::api_router(&cfg, domain.clone()).expect("router");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().unwrap().port();
    let opts = wharf::http::server::ServeOptions {
        tls: None,
        drain_deadline: Duration::from_secs(5),
        header_timeout: Duration::from_secs(30),
        body_timeout: Duration::from_secs(30),
        observe: Default::default(),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(wharf::http::server::serve(listener, app, opts, async move {
        let _ = stopped.await;
    }));
    InProcess {
        url: format!("http://127.0.0.1:{port}"),
        port,
        domain,
        stop: Some(stop),
        _root: root,
    }
}

impl InProcess {
    fn client(&self) -> Registry {
        Registry::basic_at(&self.url, USER, PASSWORD, AGENT)
    }
}

/// A server holding one image `repo:v1` (pushed before subscribing), a client, and a
/// subscription that sees what comes after.
async fn with_image(repo: &str) -> (InProcess, Registry, Pushed, Subscription) {
    let srv = start().await;
    let reg = srv.client();
    let pushed = reg.push_image(repo, "v1").await;
    let sub = srv.domain.subscribe();
    (srv, reg, pushed, sub)
}

async fn next(sub: &mut Subscription) -> Arc<Event> {
    tokio::time::timeout(Duration::from_secs(10), sub.recv())
        .await
        .expect("an event within 10 s")
        .expect("the stream is open")
}

/// Nothing more is waiting (every event is sent before the response that caused it).
fn none_left(sub: &mut Subscription) {
    if let Some(e) = sub.try_recv() {
        panic!("unexpected event {e:?}");
    }
}

/// The request fields every event of this test's client carries; returns the request id.
fn from_our_client(e: &Event, server_port: u16, method: &str) -> String {
    assert_eq!(e.actor.name, USER, "{e:?}");
    assert_eq!(e.request.useragent, AGENT, "{e:?}");
    assert_eq!(e.request.method, method, "{e:?}");
    assert_eq!(e.request.host, format!("127.0.0.1:{server_port}"), "{e:?}");
    let addr: SocketAddr = e
        .request
        .addr
        .parse()
        .unwrap_or_else(|_| panic!("addr {:?} is ip:port", e.request.addr));
    assert!(addr.ip().is_loopback() && addr.port() != server_port, "{e:?}");
    assert_eq!(e.request.id.len(), 36, "a UUID request id: {e:?}");
    assert!(!e.id.is_empty() && e.id != e.request.id, "{e:?}");
    e.request.id.clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn push_and_pull_emit_events_with_the_request_context() {
    let srv = start().await;
    let reg = srv.client();
    let mut sub = srv.domain.subscribe();

    let pushed = reg.push_image("team/app", "v1").await;
    let mut ids = Vec::new();
    for blob in [&pushed.config, &pushed.layer] {
        let e = next(&mut sub).await;
        assert_eq!(e.action, Action::Push);
        assert_eq!((e.target.digest.as_str(), e.target.size), (blob.digest.as_str(), blob.size as u64));
        assert_eq!(e.target.repository, "team/app");
        ids.push(from_our_client(&e, srv.port, "PUT"));
    }
    let e = next(&mut sub).await;
    assert_eq!(e.action, Action::Push);
    assert_eq!(e.target.digest, pushed.resp.must("Docker-Content-Digest"));
    assert_eq!(e.target.digest, pushed.digest);
    assert_eq!(e.target.media_type, OCI_MANIFEST);
    assert_eq!(e.target.size, pushed.manifest.len() as u64);
    assert_eq!(e.target.tag, "v1");
    assert_eq!(e.target.url, format!("{}/v2/team/app/manifests/{}", srv.url, pushed.digest));
    ids.push(from_our_client(&e, srv.port, "PUT"));

    let got = reg.get_manifest("team/app", "v1").await;
    got.expect(200);
    let e = next(&mut sub).await;
    assert_eq!(e.action, Action::Pull);
    assert_eq!(e.target.digest, got.must("Docker-Content-Digest"));
    assert_eq!((e.target.tag.as_str(), e.target.media_type.as_str()), ("v1", OCI_MANIFEST));
    ids.push(from_our_client(&e, srv.port, "GET"));

    reg.get(&format!("/v2/team/app/blobs/{}", pushed.layer.digest)).await.expect(200);
    let e = next(&mut sub).await;
    assert_eq!(e.action, Action::Pull);
    assert_eq!((e.target.digest.as_str(), e.target.size), (pushed.layer.digest.as_str(), 2048));
    assert_eq!(e.target.url, format!("{}/v2/team/app/blobs/{}", srv.url, pushed.layer.digest));
    ids.push(from_our_client(&e, srv.port, "GET"));
    none_left(&mut sub);

    let distinct: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "one request id per request: {ids:?}");
    assert_eq!(srv.domain.events_dropped(), 0);
}

/// registry:2 answers HEAD with the GET handler, and its listener reports a pull for both
/// (`manifestServiceListener.Get`, `blobServiceListener.ServeBlob`): so does wharf, with the
/// method in the event so a receiver can tell them apart.
#[tokio::test(flavor = "multi_thread")]
async fn head_requests_are_pulls_with_their_method_as_in_registry2() {
    let (srv, reg, pushed, mut sub) = with_image("app").await;

    reg.head_manifest("app", "v1").await.expect(200);
    let e = next(&mut sub).await;
    assert_eq!(
        (e.action, e.target.digest.as_str(), e.target.tag.as_str()),
        (Action::Pull, pushed.digest.as_str(), "v1")
    );
    from_our_client(&e, srv.port, "HEAD");

    reg.head(&format!("/v2/app/blobs/{}", pushed.config.digest)).await.expect(200);
    let e = next(&mut sub).await;
    assert_eq!((e.action, e.target.digest.as_str()), (Action::Pull, pushed.config.digest.as_str()));
    from_our_client(&e, srv.port, "HEAD");
    none_left(&mut sub);
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_pushes_and_refused_requests_emit_nothing() {
    let (srv, reg, pushed, mut sub) = with_image("app").await;

    // A manifest naming a blob the repository lacks.
    let missing = Desc::of(OCI_LAYER, &random_bytes(64));
    let doc = image_manifest(OCI_MANIFEST, &pushed.config, &[missing]);
    reg.put_manifest("app", "broken", OCI_MANIFEST, &to_bytes(&doc))
        .await
        .expect_error(400, &["MANIFEST_BLOB_UNKNOWN"]);
    // A blob whose bytes do not match its digest.
    let started = reg.start_upload("app").await;
    reg.finish_upload(started.location(), &sha256(b"other"), b"these bytes")
        .await
        .expect_error(400, &["DIGEST_INVALID"]);
    // Wrong password: refused before the registry is reached; a pull of nothing.
    let intruder = Registry::basic_at(&srv.url, USER, "wrong", AGENT);
    intruder.put_manifest("app", "v2", OCI_MANIFEST, &pushed.manifest).await.expect(401);
    reg.get_manifest("app", "absent").await.expect(404);
    none_left(&mut sub);

    // The stream still works: the next event is the next success.
    reg.push_manifest("app", Some("v2"), OCI_MANIFEST, &pushed.manifest).await;
    let e = next(&mut sub).await;
    assert_eq!((e.action, e.target.tag.as_str()), (Action::Push, "v2"));
    none_left(&mut sub);
}

#[tokio::test(flavor = "multi_thread")]
async fn mounts_and_deletes_emit_what_registry2_reports() {
    let (srv, reg, pushed, mut sub) = with_image("src").await;
    reg.push_manifest("src", Some("v2"), OCI_MANIFEST, &pushed.manifest).await;
    next(&mut sub).await;

    let mount = reg.url_with("/v2/dst/blobs/uploads/", &[("mount", &pushed.layer.digest), ("from", "src")]);
    reg.call(reqwest::Method::POST, mount, &[], vec![]).await.expect(201);
    let e = next(&mut sub).await;
    assert_eq!(e.action, Action::Mount);
    assert_eq!((e.target.repository.as_str(), e.target.from_repository.as_str()), ("dst", "src"));
    assert_eq!((e.target.digest.as_str(), e.target.size), (pushed.layer.digest.as_str(), 2048));
    from_our_client(&e, srv.port, "POST");

    reg.delete("/v2/src/manifests/v2").await.expect(202);
    let e = next(&mut sub).await;
    assert_eq!(
        (e.action, e.target.tag.as_str(), e.target.digest.as_str()),
        (Action::Delete, "v2", "")
    );

    reg.delete(&format!("/v2/src/manifests/{}", pushed.digest)).await.expect(202);
    let e = next(&mut sub).await;
    assert_eq!(
        (e.action, e.target.digest.as_str(), e.target.tag.as_str()),
        (Action::Delete, pushed.digest.as_str(), "")
    );
    assert_eq!(e.target.repository, "src");

    reg.delete(&format!("/v2/dst/blobs/{}", pushed.layer.digest)).await.expect(202);
    let e = next(&mut sub).await;
    assert_eq!((e.action, e.target.digest.as_str()), (Action::Delete, pushed.layer.digest.as_str()));
    from_our_client(&e, srv.port, "DELETE");
    none_left(&mut sub);
}
