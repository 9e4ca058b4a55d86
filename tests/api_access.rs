//! Access control through the HTTP API: the `access` section decides who may pull, push and
//! delete where, with htpasswd logins. Every right is shown allowed for someone and denied for
//! someone else, on each kind of request that needs it (blob, upload, manifest, tags, referrers,
//! delete, mount), and `/v2/_catalog` lists only what the caller may pull, page by page.

mod common;

use common::api::{sha256, Registry, Resp, OCI_MANIFEST};
use common::Wharf;
use reqwest::Method;
use std::path::Path;

const ACCESS: &str = "access:
  anonymous: {allow: [pull], repositories: ['public/**']}
  groups:
    devs: [alice, bob]
  rules:
    - {repositories: ['team/**'], groups: [devs], allow: [pull, push, delete]}
    - {repositories: ['team/**'], users: [reader], allow: [pull]}
    - {repositories: ['secret/**'], users: ['*'], allow: []}
    - {repositories: ['carol/*'], users: [carol], allow: [pull, push]}
    - {repositories: ['**'], users: [alice], allow: [pull, push]}
";

const USERS: [(&str, &str); 4] = [
    ("alice", "alice-pw"),
    ("bob", "bob-pw"),
    ("carol", "carol-pw"),
    ("reader", "reader-pw"),
];

struct Setup {
    wharf: Wharf,
    _dir: tempfile::TempDir,
}

impl Setup {
    fn start() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let htpasswd = dir.path().join("htpasswd");
        write_htpasswd(&htpasswd);
        let config = dir.path().join("config.yml");
        let yaml = format!(
            "version: 0.1\nstorage:\n  delete: {{enabled: true}}\nauth:\n  htpasswd:\n    realm: wharf-test\n    path: {}\n{ACCESS}",
            htpasswd.display()
        );
        std::fs::write(&config, yaml).unwrap();
        let wharf = Wharf::start_with(&[config.to_str().unwrap()], &[]);
        Setup { wharf, _dir: dir }
    }

    fn user(&self, name: &str) -> Registry {
        let (_, pw) = USERS.iter().find(|(u, _)| *u == name).expect("known user");
        Registry::with_basic(&self.wharf, name, pw)
    }

    fn anonymous(&self) -> Registry {
        Registry::new(&self.wharf)
    }
}

fn write_htpasswd(path: &Path) {
    let lines: String = USERS
        .iter()
        .map(|(u, p)| format!("{u}:{}\n", bcrypt::hash(p, 4).expect("bcrypt")))
        .collect();
    std::fs::write(path, lines).unwrap();
}

/// A refusal of an authenticated caller: 403 DENIED.
fn denied(resp: &Resp) {
    resp.expect_error(403, &["DENIED"]);
}

/// A refusal of an anonymous caller: 401 UNAUTHORIZED with the Basic challenge.
fn challenged(resp: &Resp) {
    resp.expect_error(401, &["UNAUTHORIZED"]);
    assert_eq!(
        resp.header("WWW-Authenticate"),
        Some("Basic realm=\"wharf-test\""),
        "{}",
        resp.show()
    );
}

async fn open_upload(reg: &Registry, repo: &str) -> Resp {
    let url = reg.url(&format!("/v2/{repo}/blobs/uploads/"));
    reg.call(Method::POST, url, &[("Content-Length", "0")], vec![]).await
}

async fn catalog(reg: &Registry) -> Vec<String> {
    reg.collect_pages("/v2/_catalog?n=1", "repositories").await.0
}

#[tokio::test(flavor = "multi_thread")]
async fn push_is_allowed_only_where_a_rule_grants_it() {
    let s = Setup::start();
    let (alice, bob, carol, reader, anon) = (s.user("alice"), s.user("bob"), s.user("carol"), s.user("reader"), s.anonymous());

    // Granted: through a group, a user rule, a single-component pattern, the catch-all.
    alice.push_image("team/app", "v1").await;
    bob.push_image("team/tools/lint", "v1").await;
    carol.push_image("carol/app", "v1").await;
    alice.push_image("public/base", "v1").await;

    // Refused: pull-only users, users without a rule, `*` not crossing `/`, anonymous pushes,
    // and an empty `allow` that wins over a later rule granting alice everything.
    denied(&open_upload(&reader, "team/app").await);
    denied(&open_upload(&carol, "team/app").await);
    denied(&open_upload(&carol, "carol/a/b").await);
    denied(&open_upload(&alice, "secret/keys").await);
    challenged(&open_upload(&anon, "public/base").await);

    // A manifest PUT is a push too, even when every blob it names is already there.
    let img = alice.push_image("team/app", "v2").await;
    denied(&reader.put_manifest("team/app", "v3", OCI_MANIFEST, &img.manifest).await);
    challenged(&anon.put_manifest("team/app", "v3", OCI_MANIFEST, &img.manifest).await);
    // An upload session opened by a pusher cannot be finished by someone without push.
    let session = open_upload(&alice, "team/app").await;
    session.expect(202);
    let data = b"not yours to finish";
    let url = reader.url_with(session.location(), &[("digest", &sha256(data))]);
    denied(&reader.call(Method::PUT, url, &[], data.to_vec()).await);
    denied(&reader.patch(session.location(), data, None).await);

    // Nothing the refusals touched was written.
    alice.get_manifest("team/app", "v3").await.expect(404);
    let repos = s.wharf.root.join("docker/registry/v2/repositories");
    for refused in ["secret", "carol/a"] {
        assert!(!repos.join(refused).exists(), "a refused request left {refused} behind");
    }
    alice.get_manifest("team/app", "v2").await.expect(200);
}

#[tokio::test(flavor = "multi_thread")]
async fn pull_is_allowed_only_where_a_rule_or_anonymous_access_grants_it() {
    let s = Setup::start();
    let (alice, carol, reader, anon) = (s.user("alice"), s.user("carol"), s.user("reader"), s.anonymous());
    let team = alice.push_image("team/app", "v1").await;
    let public = alice.push_image("public/base", "v1").await;
    let carols = carol.push_image("carol/app", "v1").await;

    let pulls = |repo: &str, img: &common::api::Pushed| {
        [
            format!("/v2/{repo}/manifests/v1"),
            format!("/v2/{repo}/manifests/{}", img.digest),
            format!("/v2/{repo}/blobs/{}", img.layer.digest),
            format!("/v2/{repo}/tags/list"),
            format!("/v2/{repo}/referrers/{}", img.digest),
        ]
    };
    for (i, path) in pulls("team/app", &team).into_iter().enumerate() {
        reader.get(&path).await.expect(200);
        if i < 3 {
            reader.head(&path).await.expect(200);
            assert_eq!(carol.head(&path).await.status, 403, "HEAD {path} by carol");
        }
        denied(&carol.get(&path).await);
        challenged(&anon.get(&path).await);
    }
    for path in pulls("public/base", &public) {
        // Anonymous pull, and every user keeps what anonymous requests may do.
        anon.get(&path).await.expect(200);
        carol.get(&path).await.expect(200);
        reader.get(&path).await.expect(200);
    }
    for path in pulls("carol/app", &carols) {
        carol.get(&path).await.expect(200);
        alice.get(&path).await.expect(200);
        denied(&reader.get(&path).await);
    }

    // Wrong passwords are never anonymous: a 401 with the challenge, even on public content.
    let impostor = Registry::with_basic(&s.wharf, "reader", "not-the-password");
    challenged(&impostor.get(&format!("/v2/public/base/manifests/{}", public.digest)).await);
    // `GET /v2/` tells clients to log in, and accepts a login.
    challenged(&anon.get("/v2/").await);
    reader.get("/v2/").await.expect(200);
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_needs_the_delete_right() {
    let s = Setup::start();
    let (alice, bob, carol, reader) = (s.user("alice"), s.user("bob"), s.user("carol"), s.user("reader"));
    let team = bob.push_image("team/app", "v1").await;
    let carols = carol.push_image("carol/app", "v1").await;

    let manifest = format!("/v2/team/app/manifests/{}", team.digest);
    let blob = format!("/v2/team/app/blobs/{}", team.layer.digest);
    // Pull or push rights are not delete rights.
    denied(&reader.delete(&manifest).await);
    denied(&reader.delete(&blob).await);
    denied(&carol.delete(&format!("/v2/carol/app/manifests/{}", carols.digest)).await);
    let notes = alice.push_image("misc/notes", "v1").await;
    denied(&alice.delete(&format!("/v2/misc/notes/manifests/{}", notes.digest)).await);
    challenged(&s.anonymous().delete(&manifest).await);
    reader.get(&manifest).await.expect(200);

    // The devs group may delete in team/**.
    bob.delete(&blob).await.expect(202);
    bob.delete("/v2/team/app/manifests/v1").await.expect(202);
    reader.get("/v2/team/app/manifests/v1").await.expect(404);
    bob.delete(&manifest).await.expect(202);
    reader.get(&manifest).await.expect(404);
    reader.get(&blob).await.expect(404);
}

#[tokio::test(flavor = "multi_thread")]
async fn catalog_lists_only_what_the_caller_may_pull() {
    let s = Setup::start();
    let (alice, bob, carol) = (s.user("alice"), s.user("bob"), s.user("carol"));
    alice.push_image("team/app", "v1").await;
    bob.push_image("team/tools/lint", "v1").await;
    alice.push_image("public/base", "v1").await;
    carol.push_image("carol/app", "v1").await;
    alice.push_image("misc/notes", "v1").await;

    let expect = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    // One entry per page: the filter applies before paging, so no page is empty or short, and
    // the `last` cursor never reveals a hidden name.
    assert_eq!(catalog(&s.anonymous()).await, expect(&["public/base"]));
    assert_eq!(
        catalog(&s.user("reader")).await,
        expect(&["public/base", "team/app", "team/tools/lint"])
    );
    assert_eq!(catalog(&carol).await, expect(&["carol/app", "public/base"]));
    assert_eq!(catalog(&bob).await, expect(&["public/base", "team/app", "team/tools/lint"]));
    assert_eq!(
        catalog(&alice).await,
        expect(&["carol/app", "misc/notes", "public/base", "team/app", "team/tools/lint"])
    );
    // Without `n`, the same filter.
    let page = carol.get("/v2/_catalog").await;
    page.expect(200);
    assert_eq!(
        common::api::strings(&page.json()["repositories"]),
        expect(&["carol/app", "public/base"])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn mount_needs_pull_on_the_source() {
    let s = Setup::start();
    let (alice, carol) = (s.user("alice"), s.user("carol"));
    let team = alice.push_image("team/app", "v1").await;
    let digest = team.layer.digest.clone();

    // Named as `from`, or found by the registry when `from` is left out (which the spec allows):
    // the source is a repository the caller must be able to read.
    for (from, copy) in [(Some("team/app"), "misc/copy"), (None, "misc/found")] {
        let mut query = vec![("mount", digest.as_str())];
        query.extend(from.map(|f| ("from", f)));

        // carol may push to carol/app but not read team/app, the only repository holding the
        // layer: no mount (a 201 would tell her it exists there), a plain upload session, and
        // the blob stays unreachable from her repository.
        let url = carol.url_with("/v2/carol/app/blobs/uploads/", &query);
        let resp = carol.call(Method::POST, url, &[], vec![]).await;
        resp.expect(202);
        resp.must("Docker-Upload-UUID");
        carol.get(&format!("/v2/carol/app/blobs/{digest}")).await.expect(404);

        // alice may read team/app and push to misc/*: mounted.
        let url = alice.url_with(&format!("/v2/{copy}/blobs/uploads/"), &query);
        let resp = alice.call(Method::POST, url, &[], vec![]).await;
        resp.expect(201);
        assert_eq!(resp.header("Docker-Content-Digest"), Some(digest.as_str()));
        alice.get(&format!("/v2/{copy}/blobs/{digest}")).await.expect(200);
    }

    // Without `from`, a blob carol pushed herself is found in her own repository.
    let own = carol.push_blob("carol/app", b"carol's own layer").await;
    let url = carol.url_with("/v2/carol/other/blobs/uploads/", &[("mount", &own)]);
    let resp = carol.call(Method::POST, url, &[], vec![]).await;
    resp.expect(201);
    carol.get(&format!("/v2/carol/other/blobs/{own}")).await.expect(200);
}
