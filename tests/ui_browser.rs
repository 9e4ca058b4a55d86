//! The web UI in a real browser: Debian's Chromium, headless, driven by playwright-core
//! (tests/ui/browser.js, one scenario per run) against `wharf serve` with htpasswd users, one
//! with the delete right (`admin`) and one without (`viewer`). The store holds 10,000
//! repositories written straight into registry:2's layout before the server starts, plus
//! images pushed with skopeo: `app/web` (two tags of one image, with a config history) and
//! `app/multi` (a two-platform index).
//!
//! Shown: the first page of the list is served in under 200 ms (its `Server-Timing`), paging
//! and the name filter, a repository's tags with an index's platforms, the index's children,
//! a manifest's layers, platform and history, the copy button putting the exact pull command
//! on the clipboard, deleting a tag after the confirmation (dismissing it deletes nothing;
//! the tag is gone through the API afterwards, the other tag of the image stays), and for the
//! user without the right: no delete button, and the form posted anyway refused with 403;
//! then deleting the whole repository, which leaves the list, the catalog and the API.
//! Screenshots of the pages go to docs/ui/ (the README shows them).

mod common;

use common::api::Registry;
use common::images::{gzip, tar_archive, OciImage, OciLayout, Skopeo, OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST};
use common::{sha256_digest, Wharf};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const BULK_REPOSITORIES: usize = 10_000;
const USERS: [(&str, &str); 2] = [("admin", "admin-pw"), ("viewer", "viewer-pw")];
const ACCESS: &str = "access:
  rules:
    - {repositories: ['**'], users: [admin], allow: [pull, push, delete]}
    - {repositories: ['**'], users: [viewer], allow: [pull]}
";

/// Where scripts/test.sh installs playwright-core (`WHARF_NODE_MODULES` overrides it).
fn node_modules() -> PathBuf {
    std::env::var_os("WHARF_NODE_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-node/node_modules"))
}

/// Whether Chromium, node and playwright-core are there; in CI they must be.
fn browser_available() -> bool {
    if !common::require_tool("chromium") || !common::require_tool("node") {
        return false;
    }
    let found = node_modules().join("playwright-core/package.json").exists();
    if !found {
        assert!(
            !common::in_ci(),
            "playwright-core is required in CI: scripts/test.sh installs it into {}",
            node_modules().display()
        );
        eprintln!("SKIP: playwright-core not in {} (run scripts/test.sh)", node_modules().display());
    }
    found
}

/// Runs one scenario of tests/ui/browser.js as `user` and returns what it printed.
fn browse(scenario: &str, base: &str, user: &str, shots: &Path) -> Value {
    let password = USERS.iter().find(|(u, _)| *u == user).map(|(_, p)| *p).expect("known user");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui/browser.js");
    let started = Instant::now();
    let out = Command::new("node")
        .arg(&script)
        .args([scenario, base, user, password])
        .arg(shots)
        .env("NODE_PATH", node_modules())
        .output()
        .expect("run node");
    eprintln!("[{:.1}s] browser scenario {scenario} as {user}", started.elapsed().as_secs_f64());
    assert!(
        out.status.success(),
        "scenario {scenario} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().expect("the scenario prints its result");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("scenario {scenario} printed {line:?}: {e}"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap_or_default().to_string())
        .collect()
}

/// Writes `count` repositories `bulk/repo-NNNNN`, each with tag `v1` of one small shared image,
/// directly in registry:2's layout: what a registry that has been used for years looks like,
/// made in seconds.
fn write_bulk_repositories(root: &Path, count: usize) {
    let v2 = root.join("docker/registry/v2");
    let blob = |bytes: &[u8]| -> String {
        let digest = sha256_digest(bytes);
        let hex = digest.trim_start_matches("sha256:");
        let dir = v2.join("blobs/sha256").join(&hex[..2]).join(hex);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("data"), bytes).unwrap();
        digest
    };
    let layer = gzip(&tar_archive(&[("hello.txt", b"hello from a bulk repository\n")]));
    let layer_digest = blob(&layer);
    let config =
        serde_json::to_vec(&json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}})).unwrap();
    let config_digest = blob(&config);
    let manifest = manifest_of((&config_digest, config.len()), (&layer_digest, layer.len()));
    let manifest_digest = blob(&manifest);
    let link = |path: PathBuf, digest: &str| {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, digest).unwrap();
    };
    let hex = |d: &str| d.trim_start_matches("sha256:").to_string();
    for i in 0..count {
        let repo = v2.join(format!("repositories/bulk/repo-{i:05}"));
        for d in [&layer_digest, &config_digest] {
            link(repo.join("_layers/sha256").join(hex(d)).join("link"), d);
        }
        let m = repo.join("_manifests");
        link(
            m.join("revisions/sha256").join(hex(&manifest_digest)).join("link"),
            &manifest_digest,
        );
        link(m.join("tags/v1/current/link"), &manifest_digest);
        link(
            m.join("tags/v1/index/sha256").join(hex(&manifest_digest)).join("link"),
            &manifest_digest,
        );
    }
}

/// An image whose config carries a history, as `docker build` writes it.
fn image_with_history(layout: &OciLayout) -> OciImage {
    let layer = gzip(&tar_archive(&[("app/index.html", b"<h1>web</h1>\n")]));
    let layer_digest = layout.put_blob(&layer);
    let config = serde_json::to_vec(&json!({
        "architecture": "arm64",
        "os": "linux",
        "variant": "v8",
        "created": "2026-01-02T03:04:05Z",
        "rootfs": {"type": "layers", "diff_ids": [sha256_digest(&tar_archive(&[("app/index.html", b"<h1>web</h1>\n")]))]},
        "history": [
            {"created": "2026-01-02T03:04:00Z", "created_by": "/bin/sh -c #(nop) WORKDIR /app", "empty_layer": true},
            {"created": "2026-01-02T03:04:05Z", "created_by": "COPY index.html /app/ # buildkit"},
        ],
    }))
    .unwrap();
    let config_digest = layout.put_blob(&config);
    let manifest = manifest_of((&config_digest, config.len()), (&layer_digest, layer.len()));
    let digest = layout.put_blob(&manifest);
    OciImage {
        manifest,
        digest,
        config: config_digest,
        layers: vec![layer_digest],
    }
}

/// The htpasswd file with `USERS` and a configuration using it, with deletes enabled and
/// `access`; returns the configuration's path.
fn write_config(dir: &Path, access: &str) -> PathBuf {
    let htpasswd = dir.join("htpasswd");
    let lines: String = USERS
        .iter()
        .map(|(u, p)| format!("{u}:{}\n", bcrypt::hash(p, 4).unwrap()))
        .collect();
    std::fs::write(&htpasswd, lines).unwrap();
    let config = dir.join("config.yml");
    let yaml = format!(
        "version: 0.1\nstorage:\n  delete: {{enabled: true}}\nauth:\n  htpasswd:\n    realm: wharf-ui-test\n    path: {}\n{access}",
        htpasswd.display()
    );
    std::fs::write(&config, yaml).unwrap();
    config
}

/// An OCI image manifest for one config and one layer.
fn manifest_of(config: (&str, usize), layer: (&str, usize)) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config.0, "size": config.1},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": layer.0, "size": layer.1}],
    }))
    .unwrap()
}

/// `app;desc="render";dur=12.3` → 12.3
fn server_ms(header: &str) -> f64 {
    header
        .split(';')
        .find_map(|p| p.trim().strip_prefix("dur="))
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("no dur in Server-Timing {header:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ui_in_chromium_on_ten_thousand_repositories() {
    if !browser_available() {
        return;
    }
    let Some(skopeo) = Skopeo::new() else { return };
    // 10,000 repositories are some 200,000 files and directories: in memory (tmpfs) that takes
    // seconds, on a disk other builds are using it took minutes.
    let dir = match Path::new("/dev/shm").is_dir() {
        true => tempfile::tempdir_in("/dev/shm").unwrap(),
        false => tempfile::tempdir().unwrap(),
    };
    let root = dir.path().join("data");
    let started = Instant::now();
    write_bulk_repositories(&root, BULK_REPOSITORIES);
    eprintln!("wrote {BULK_REPOSITORIES} repositories in {:.1}s", started.elapsed().as_secs_f64());

    let config = write_config(dir.path(), ACCESS);
    let wharf = Wharf::start_on_root(&root, &[config.to_str().unwrap()], &[]);
    let admin = Registry::with_basic(&wharf, "admin", "admin-pw");

    let mut layout = OciLayout::create(&dir.path().join("layout"));
    let web = image_with_history(&layout);
    layout.tag_image("latest", &web);
    let index = layout.add_index(&["amd64", "arm64"], 1);
    layout.tag_index("latest-multi", &index);
    let creds = ["--dest-creds", "admin:admin-pw"];
    for tag in ["1.0", "latest"] {
        skopeo.copy(
            &layout.reference("latest"),
            &format!("docker://{}/app/web:{tag}", wharf.addr),
            &creds,
        );
    }
    skopeo.copy(
        &layout.reference("latest-multi"),
        &format!("docker://{}/app/multi:latest", wharf.addr),
        &[&creds[..], &["--all"]].concat(),
    );

    // Screenshots are taken on every run; they replace the README's (docs/ui) only when asked
    // (WHARF_UI_SCREENSHOTS=1), so a test run leaves the tree as it was.
    let shots = match std::env::var_os("WHARF_UI_SCREENSHOTS") {
        Some(_) => Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/ui"),
        None => dir.path().join("screenshots"),
    };
    std::fs::create_dir_all(&shots).unwrap();

    // Browse: list, pages, filter, a multi-arch repository, its index, a child, a manifest.
    let b = browse("browse", &wharf.url, "admin", &shots);
    assert_eq!(b["firstStatus"], 200, "{b}");
    let ms = server_ms(b["firstServerTiming"].as_str().unwrap());
    eprintln!("first page of {} repositories: {ms:.1} ms server time", BULK_REPOSITORIES + 2);
    assert!(ms < 200.0, "first page took {ms} ms on the server");
    let first = strings(&b["firstPage"]);
    assert_eq!(first.len(), 50, "{first:?}");
    assert_eq!(&first[..3], ["app/multi", "app/web", "bulk/repo-00000"]);
    let first_row = strings(&b["firstRow"]);
    assert_eq!(first_row[0], "app/multi");
    assert_eq!(first_row[1], "1", "one tag: {first_row:?}");
    assert!(
        first_row[2].ends_with("KiB"),
        "the index, its children, configs and layers: {first_row:?}"
    );
    assert_eq!(first_row[3], "0 B", "app/multi shares nothing: {first_row:?}");
    assert!(first_row[4].starts_with("20"), "a push time: {first_row:?}");
    // Every bulk repository links the same manifest, config and layer: all shared, none its own.
    let bulk_row = strings(&b["bulkRow"]);
    assert_eq!(bulk_row[0], "bulk/repo-00000");
    assert_eq!((bulk_row[1].as_str(), bulk_row[2].as_str()), ("1", "0 B"), "{bulk_row:?}");
    assert!(bulk_row[3].ends_with(" B") && bulk_row[3] != "0 B", "{bulk_row:?}");
    let second = strings(&b["secondPage"]);
    assert!(b["secondUrl"].as_str().unwrap().contains("last=bulk%2Frepo-00047"), "{b}");
    assert_eq!(second.len(), 50);
    assert_eq!(second[0], "bulk/repo-00048");
    let filtered = strings(&b["filtered"]);
    let want: Vec<String> = (4200..4210).map(|i| format!("bulk/repo-{i:05}")).collect();
    assert_eq!(filtered, want);
    assert_eq!(strings(&b["multiTags"]), ["latest"]);
    assert_eq!(strings(&b["multiPlatforms"]), ["linux/amd64", "linux/arm64"]);
    assert_eq!(strings(&b["indexPlatforms"]), ["linux/amd64", "linux/arm64"]);
    assert_eq!(b["childPlatform"], "linux/amd64");
    assert_eq!(strings(&b["childLayers"]), index.images[0].layers);
    let web_layers = b["webLayers"].as_array().unwrap();
    assert_eq!(web_layers.len(), 1);
    assert_eq!(strings(&web_layers[0])[..2], [web.layers[0].clone(), OCI_LAYER_GZIP.to_string()]);
    assert_eq!(b["webPlatform"], "linux/arm64/v8");
    assert_eq!(
        strings(&b["webHistory"]),
        ["/bin/sh -c #(nop) WORKDIR /app", "COPY index.html /app/ # buildkit"]
    );
    assert!(b["statusGc"].as_str().unwrap().contains("Runs since start"), "{b}");
    assert_eq!(b["repositoryCount"], (BULK_REPOSITORIES + 2).to_string().as_str(), "{b}");
    let status = strings(&b["statusCommands"]);
    assert!(status.contains(&format!("docker login {}", wharf.addr)), "{status:?}");

    // Copy: the clipboard holds exactly the command shown, with the host the browser used.
    let c = browse("copy", &wharf.url, "viewer", &shots);
    let docker = format!("docker pull {}/app/web:latest", wharf.addr);
    assert_eq!(c["shown"], docker.as_str());
    assert_eq!(c["copied"], docker.as_str());
    assert_eq!(c["copiedPodman"], format!("podman pull {}/app/web:latest", wharf.addr).as_str());

    // Without the delete right: no button, and the form posted anyway is refused.
    let n = browse("nodelete", &wharf.url, "viewer", &shots);
    assert_eq!(n["buttons"], 0, "{n}");
    assert_eq!(strings(&n["tags"]), ["1.0", "latest"]);
    assert_eq!(n["refused"]["status"], 403, "{n}");
    assert!(n["refused"]["text"].as_str().unwrap().contains("may not delete"), "{n}");
    assert_eq!(n["refusedRepository"], 403, "{n}");
    let tags = admin.get("/v2/app/web/tags/list").await;
    assert_eq!(tags.json()["tags"], json!(["1.0", "latest"]), "the refused delete deleted nothing");

    // With it: dismissing the confirmation keeps the tag, accepting deletes it (and only it).
    let d = browse("delete", &wharf.url, "admin", &shots);
    assert_eq!(d["buttons"], 2, "{d}");
    assert_eq!(d["repositoryButton"], 1, "{d}");
    assert!(d["asked"].as_str().unwrap().contains("Delete the tag 1.0 of app/web"), "{d}");
    assert_eq!(strings(&d["afterDismiss"]), ["1.0", "latest"]);
    assert_eq!(strings(&d["after"]), ["latest"]);
    let tags = admin.get("/v2/app/web/tags/list").await;
    assert_eq!(tags.json()["tags"], json!(["latest"]));
    admin.get("/v2/app/web/manifests/1.0").await.expect(404);
    admin.get("/v2/app/web/manifests/latest").await.expect(200);

    // The whole repository: after the confirmation it is gone from the list and the API.
    let r = browse("deleterepo", &wharf.url, "admin", &shots);
    assert!(r["asked"].as_str().unwrap().contains("Delete the repository app/web"), "{r}");
    assert!(r["url"].as_str().unwrap().ends_with("/ui/"), "{r}");
    let list = strings(&r["list"]);
    assert_eq!(&list[..2], ["app/multi", "bulk/repo-00000"]);
    admin.get("/v2/app/web/tags/list").await.expect(404);
    let catalog = admin.get("/v2/_catalog?n=5").await.json();
    assert_eq!(strings(&catalog["repositories"])[..2], ["app/multi", "bulk/repo-00000"]);
}

/// The UI's refusals without a browser: no password, another site's form, a hidden repository.
#[tokio::test]
async fn the_ui_refuses_what_the_api_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let access = "access:\n  rules:\n    - {repositories: ['team/**'], users: [viewer], allow: [pull]}\n    - {repositories: ['**'], users: [admin], allow: [pull, push, delete]}\n";
    let config = write_config(dir.path(), access);
    let wharf = Wharf::start_with(&[config.to_str().unwrap()], &[]);
    let admin = Registry::with_basic(&wharf, "admin", "admin-pw");
    admin.push_image("team/app", "v1").await;
    admin.push_image("secret/db", "v1").await;

    let anonymous = Registry::new(&wharf);
    let r = anonymous.get("/ui/").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Basic realm=\"wharf-ui-test\""));
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    anonymous.get("/").await.expect(303);

    let wrong = Registry::with_basic(&wharf, "admin", "not-the-password");
    assert_eq!(wrong.get("/ui/").await.status, 401);

    let viewer = Registry::with_basic(&wharf, "viewer", "viewer-pw");
    let list = viewer.get("/ui/").await;
    let text = String::from_utf8_lossy(&list.body).into_owned();
    assert!(text.contains("team/app") && !text.contains("secret/db"), "{text}");
    assert_eq!(
        viewer.get("/ui/repo?name=secret%2Fdb").await.status,
        404,
        "hidden like the catalog hides it"
    );
    assert_eq!(viewer.get("/ui/repo?name=team%2Fapp").await.status, 200);

    // A form posted from another site carries the admin's password but not this origin.
    let form = "name=team%2Fapp&tag=v1";
    let url = admin.url("/ui/delete");
    let headers = [
        ("content-type", "application/x-www-form-urlencoded"),
        ("origin", "http://evil.example"),
    ];
    let r = admin.call(reqwest::Method::POST, url.clone(), &headers, form.into()).await;
    assert_eq!(r.status, 403);
    admin.get("/v2/team/app/manifests/v1").await.expect(200);
    let origin = format!("http://{}", wharf.addr);
    let headers = [("content-type", "application/x-www-form-urlencoded"), ("origin", origin.as_str())];
    let r = admin.call(reqwest::Method::POST, url, &headers, form.into()).await;
    assert_eq!(r.status, 303, "{}", String::from_utf8_lossy(&r.body));
    admin.get("/v2/team/app/manifests/v1").await.expect(404);
}
