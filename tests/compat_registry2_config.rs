//! registry:2's configuration gives registry:2's behaviour: a registry:2 file or `REGISTRY_*`
//! variables mean plain HTTP without `http.tls`, `:5000` by default and no generated account;
//! Debian's own config file starts and answers as distribution answers with it; sections wharf
//! does not implement warn; requests are logged with registry:2's fields; `http.headers`,
//! `http.prefix` and the debug server (`/debug/health`, `/metrics`) work; a failed start never
//! leaves an account whose password nobody saw.

mod common;

use common::api::Registry;
use common::distribution::Distribution;
use common::images::wait_until;
use common::netns::TestHost;
use common::{free_port, require_tool, wharf_bin, Wharf};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const DEBIAN_CONFIG: &str = "/etc/docker/registry/config.yml";
const AUTO_TLS_HINT: &str = "WHARF_AUTO_TLS=true";

fn write_config(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("config.yml");
    std::fs::write(&path, format!("version: 0.1\n{body}")).unwrap();
    path
}

/// A plain-HTTP client that trusts nothing but also needs no certificate.
fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap()
}

/// An HTTPS GET with curl trusting exactly the CA in `ca`: (status, lower-cased head, body).
fn curl_https(ca: &Path, url: &str, creds: Option<&str>) -> (u16, String, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "20", "-D", "/dev/stderr", "-w", "\n%{http_code}", "--cacert"])
        .arg(ca)
        .arg(url);
    if let Some(c) = creds {
        cmd.args(["-u", c]);
    }
    let out = cmd.output().expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    let status = status
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("curl {url}: {}", String::from_utf8_lossy(&out.stderr)));
    (status, String::from_utf8_lossy(&out.stderr).to_lowercase(), body.to_string())
}

/// Waits until `addr` accepts TCP connections (a server in a namespace is not probed by `Wharf`).
fn wait_listening(addr: &str) {
    assert!(
        wait_until(Duration::from_secs(20), || std::net::TcpStream::connect(addr).is_ok()),
        "nothing listens on {addr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn registry_http_addr_port_only_serves_plain_http_on_every_address_without_an_account() {
    let Some(host) = TestHost::create() else { return };
    let data = tempfile::tempdir().unwrap();
    let root = data.path().join("data");
    let root_var = root.display().to_string();
    // The README's example: REGISTRY_HTTP_ADDR=:5000 on a host (the namespace) where 5000 is free.
    let w = Wharf::launch_args(
        &host.prefix(),
        &[],
        &[
            ("REGISTRY_HTTP_ADDR", ":5000"),
            ("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", &root_var),
        ],
    );
    assert_eq!(w.url, "http://0.0.0.0:5000", "plain HTTP on every address, as registry:2");
    let addr = host.addr(5000);
    wait_listening(&addr);
    let resp = http().get(format!("http://{addr}/v2/")).send().await.unwrap();
    assert_eq!(resp.status(), 200, "no account: the API is open, as registry:2's is");
    assert!(!w.output().contains("created user"), "{}", w.output());
    assert!(!root.join("wharf").exists(), "no CA, certificate or account was made");
    wait_until(Duration::from_secs(5), || w.errors().contains(AUTO_TLS_HINT));
    let warning: Vec<String> = w
        .stderr
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(AUTO_TLS_HINT))
        .cloned()
        .collect();
    assert_eq!(
        warning.len(),
        1,
        "one warning line names how to turn on wharf's TLS: {}",
        w.errors()
    );
    assert!(warning[0].contains("plain HTTP"), "{}", warning[0]);
}

#[tokio::test(flavor = "multi_thread")]
async fn seed_004_environment_without_an_address_listens_on_port_5000_everywhere() {
    if !require_tool("curl") {
        return;
    }
    let Some(host) = TestHost::create() else { return };
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let ca = dir.path().join("ca");
    let ok = |c: &mut Command| assert!(c.status().unwrap().success(), "{c:?}");
    ok(Command::new(wharf_bin()).args(["cert", "ca", "--out"]).arg(&ca));
    ok(Command::new(wharf_bin())
        .args(["cert", "issue", "--ca"])
        .arg(&ca)
        .arg("--out")
        .arg(&certs)
        .args(["--ip", &host.ip]));
    let auth = dir.path().join("registry.password");
    ok(Command::new(wharf_bin())
        .args(["htpasswd", "add", "--password", "secret"])
        .arg(&auth)
        .arg("admin"));
    let v = |p: PathBuf| p.display().to_string();
    let (auth_s, data_s, crt_s, key_s) = (
        v(auth),
        v(dir.path().join("data")),
        v(certs.join("server.crt")),
        v(certs.join("server.key")),
    );
    // Seed 004's `environment:` block, paths aside.
    let env = [
        ("REGISTRY_AUTH", "htpasswd"),
        ("REGISTRY_AUTH_HTPASSWD_REALM", "Registry"),
        ("REGISTRY_AUTH_HTPASSWD_PATH", auth_s.as_str()),
        ("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", data_s.as_str()),
        ("REGISTRY_HTTP_TLS_CERTIFICATE", crt_s.as_str()),
        ("REGISTRY_HTTP_TLS_KEY", key_s.as_str()),
    ];
    let w = Wharf::launch_args(&host.prefix(), &[], &env);
    assert_eq!(w.url, "https://0.0.0.0:5000");
    let addr = host.addr(5000);
    wait_listening(&addr);
    let url = format!("https://{addr}/v2/_catalog");
    let (status, head, _) = curl_https(&ca.join("ca.crt"), &url, None);
    assert_eq!(status, 401);
    assert!(head.contains("www-authenticate: basic realm=\"registry\""), "{head}");
    let (status, _, body) = curl_https(&ca.join("ca.crt"), &url, Some("admin:secret"));
    assert_eq!(status, 200);
    assert_eq!(body, "{\"repositories\":[]}");
    w.wait_for_start_messages();
    assert!(!w.errors().contains(AUTO_TLS_HINT), "TLS is configured: no warning");
}

#[tokio::test(flavor = "multi_thread")]
async fn wharf_started_its_own_way_stays_secure_and_auto_tls_is_one_variable_away() {
    if !require_tool("curl") {
        return;
    }
    let Some(host) = TestHost::create() else { return };
    // No configuration at all: wharf's automatic TLS and account (see also tests/e2e_secure.rs).
    let own = tempfile::tempdir().unwrap();
    let w = Wharf::launch(&host.prefix(), "0.0.0.0:5000", &own.path().join("data"), &[], &[]);
    assert_eq!(w.url, "https://0.0.0.0:5000");
    assert!(w.output().contains("created user admin with password"), "{}", w.output());
    drop(w);

    // registry:2's variables plus WHARF_AUTO_TLS and the names clients use (a container
    // cannot see the host's): TLS, an account, and the client commands name the given host.
    let data = tempfile::tempdir().unwrap();
    let root = data.path().join("data").display().to_string();
    let names = format!("registry.test,{}", host.ip);
    let env = [
        ("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", root.as_str()),
        ("WHARF_AUTO_TLS", "true"),
        ("WHARF_TLS_NAMES", names.as_str()),
    ];
    let w = Wharf::launch_args(&host.prefix(), &[], &env);
    assert_eq!(w.url, "https://0.0.0.0:5000", "registry:2's :5000, with wharf's TLS");
    let out = w.output();
    let password = out
        .lines()
        .find_map(|l| l.split("created user admin with password ").nth(1))
        .unwrap_or_else(|| panic!("no password shown: {out}"))
        .trim()
        .to_string();
    assert!(out.contains("wharf trust registry.test:5000 --fingerprint"), "{out}");
    w.wait_for_start_messages();
    assert!(!w.errors().contains(AUTO_TLS_HINT), "asked for TLS: no plain-HTTP warning");
    let ca = Path::new(&root).join("wharf/ca.crt");
    let addr = host.addr(5000);
    wait_listening(&addr);
    let (status, _, _) = curl_https(&ca, &format!("https://{addr}/v2/"), Some(&format!("admin:{password}")));
    assert_eq!(status, 200, "the certificate covers the given address");
}

/// Starts a server process on `config` with `env`, its output in a file.
struct Proc {
    child: std::process::Child,
    log: PathBuf,
}

impl Proc {
    fn start(program: &str, config: &str, env: &[(&str, &str)], log: PathBuf) -> Proc {
        let out = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(program);
        cmd.args(["serve", config]).stdout(out.try_clone().unwrap()).stderr(out);
        for (k, _) in std::env::vars() {
            if k.starts_with("REGISTRY_") || k.starts_with("WHARF_") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(env.iter().copied());
        Proc {
            child: cmd.spawn().unwrap(),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        common::images::stop_child(&mut self.child, Duration::from_secs(10));
    }
}

/// What a client sees of an answer: status, the challenge, the content-type option, the code.
async fn answer(resp: reqwest::Response) -> (u16, Option<String>, Option<String>, Option<String>) {
    let header = |n: &str| resp.headers().get(n).map(|v| v.to_str().unwrap().to_string());
    let (status, challenge, nosniff) = (resp.status().as_u16(), header("www-authenticate"), header("x-content-type-options"));
    let body = resp.text().await.unwrap();
    let code = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["errors"][0]["code"].as_str().map(str::to_string));
    (status, challenge, nosniff, code)
}

#[tokio::test(flavor = "multi_thread")]
async fn debian_config_file_starts_and_answers_as_distribution_does() {
    if !Distribution::available() {
        return;
    }
    let config = std::fs::read_to_string(DEBIAN_CONFIG).expect("docker-registry installs its config file");
    assert!(
        config.contains("path: /etc/docker/registry\n"),
        "the file names a directory as htpasswd"
    );
    let dir = tempfile::tempdir().unwrap();
    let (wharf_port, dist_port) = (free_port(), free_port());
    let servers = [("wharf", wharf_bin(), wharf_port), ("distribution", "docker-registry", dist_port)];
    let mut procs = Vec::new();
    for (name, program, port) in servers {
        let addr = format!("127.0.0.1:{port}");
        let root = dir.path().join(name).display().to_string();
        let env = [
            ("REGISTRY_HTTP_ADDR", addr.as_str()),
            ("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", root.as_str()),
        ];
        procs.push(Proc::start(program, DEBIAN_CONFIG, &env, dir.path().join(format!("{name}.log"))));
        let p = procs.last().unwrap();
        assert!(
            wait_until(Duration::from_secs(20), || std::net::TcpStream::connect(&addr).is_ok()),
            "{name} did not start on Debian's config file:\n{}",
            p.log()
        );
    }
    for path in [
        "/v2/",
        "/v2/_catalog",
        "/v2/library/app/manifests/latest",
        "/v2/library/app/tags/list",
    ] {
        let wharf = answer(http().get(format!("http://127.0.0.1:{wharf_port}{path}")).send().await.unwrap()).await;
        let dist = answer(http().get(format!("http://127.0.0.1:{dist_port}{path}")).send().await.unwrap()).await;
        assert_eq!(wharf, dist, "GET {path}: wharf and distribution answer alike");
        assert_eq!(wharf.0, 401, "GET {path}");
        assert_eq!(wharf.1.as_deref(), Some("Basic realm=\"basic-realm\""));
        assert_eq!(wharf.2.as_deref(), Some("nosniff"), "the file's http.headers");
    }
    let log = procs[0].log();
    assert!(
        log.lines().any(|l| l.contains("/etc/docker/registry") && l.contains("htpasswd")),
        "wharf's log names the bad htpasswd path:\n{log}"
    );
    // Nobody can log in while the file is a directory (distribution answers 400 here, wharf 401).
    let resp = http()
        .get(format!("http://127.0.0.1:{wharf_port}/v2/"))
        .basic_auth("admin", Some("x"))
        .send()
        .await
        .unwrap();
    assert!(resp.status() == 401 || resp.status() == 400, "{}", resp.status());
}

#[test]
fn unimplemented_sections_warn_at_start_and_in_config_check() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "proxy:\n  remoteurl: https://registry-1.docker.io\n\
         middleware:\n  registry:\n    - name: redirect\n\
         redis:\n  addr: localhost:6379\n",
    );
    // `notifications` is implemented (tests/notifications.rs), so no longer here.
    let sections = ["proxy", "middleware", "redis"];
    let check = Command::new(wharf_bin()).args(["config", "check"]).arg(&config).output().unwrap();
    let err = String::from_utf8_lossy(&check.stderr);
    assert!(check.status.success(), "{err}");
    let root = dir.path().join("data").display().to_string();
    let w = Wharf::launch_args(&[], &[config.to_str().unwrap(), "--addr", "127.0.0.1:0", "--root", &root], &[]);
    w.wait_for_start_messages();
    for section in sections {
        let named = |text: &str| {
            text.lines()
                .any(|l| l.contains("warning") && l.contains(&format!("setting {section} is not implemented")))
        };
        assert!(named(&err), "config check does not warn about {section}:\n{err}");
        assert!(named(&w.errors()), "serve does not warn about {section}:\n{}", w.errors());
    }
}

#[test]
fn config_check_names_files_that_are_missing_or_unreadable() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.crt");
    let config = write_config(
        dir.path(),
        &format!(
            "http:\n  tls:\n    certificate: {}\n    key: {}\nauth:\n  htpasswd:\n    realm: r\n    path: {}\n",
            missing.display(),
            dir.path().join("missing.key").display(),
            dir.path().display()
        ),
    );
    let check = Command::new(wharf_bin()).args(["config", "check"]).arg(&config).output().unwrap();
    let err = String::from_utf8_lossy(&check.stderr);
    assert!(
        !check.status.success(),
        "config check passed a configuration naming missing files:\n{err}"
    );
    for key in ["http.tls.certificate", "http.tls.key", "auth.htpasswd.path"] {
        assert!(err.lines().any(|l| l.contains(key)), "no error names {key}:\n{err}");
    }
    assert!(err.contains("is a directory"), "{err}");

    // Debian's own file: its htpasswd path is a directory.
    if std::path::Path::new(DEBIAN_CONFIG).exists() {
        let check = Command::new(wharf_bin()).args(["config", "check", DEBIAN_CONFIG]).output().unwrap();
        let err = String::from_utf8_lossy(&check.stderr);
        assert!(!check.status.success() && err.contains("auth.htpasswd.path"), "{err}");
    }
}

fn access_lines(w: &Wharf) -> Vec<String> {
    w.stderr
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("response completed"))
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_request_is_logged_with_registry2_fields_in_text_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    assert!(Command::new(wharf_bin())
        .args(["htpasswd", "add", "--password", "pw"])
        .arg(&htpasswd)
        .arg("alice")
        .status()
        .unwrap()
        .success());
    let auth = format!("auth:\n  htpasswd:\n    realm: r\n    path: {}\n", htpasswd.display());
    for formatter in ["text", "json"] {
        let config = write_config(dir.path(), &format!("log:\n  formatter: {formatter}\n{auth}"));
        let w = Wharf::start_with(&[config.to_str().unwrap()], &[]);
        let reg = Registry::with_basic(&w, "alice", "pw");
        reg.get("/v2/_catalog").await.expect(200);
        http().get(format!("{}/v2/nothing/tags/list", w.url)).send().await.unwrap();
        assert!(wait_until(Duration::from_secs(5), || access_lines(&w).len() >= 2), "{}", w.errors());
        let lines = access_lines(&w);
        for line in &lines {
            assert!(!line.contains('\u{1b}'), "colour codes in a log that is not a terminal: {line:?}");
        }
        let ok = lines
            .iter()
            .find(|l| l.contains("_catalog"))
            .expect("the catalog request is logged");
        let denied = lines
            .iter()
            .find(|l| l.contains("/v2/nothing/tags/list"))
            .expect("a refused request is logged");
        if formatter == "json" {
            let v: serde_json::Value = serde_json::from_str(ok).unwrap_or_else(|e| panic!("{e}: {ok}"));
            let f = &v["fields"];
            assert_eq!(f["message"], "response completed");
            assert_eq!(f["http.request.method"], "GET");
            assert_eq!(f["http.request.uri"], "/v2/_catalog");
            assert_eq!(f["http.response.status"], 200);
            assert!(f["http.response.written"].as_u64().unwrap() > 0, "{ok}");
            assert!(f["http.request.remoteaddr"].as_str().unwrap().starts_with("127.0.0.1:"), "{ok}");
            assert!(
                f["http.request.useragent"].is_string() && f["http.response.duration"].is_string(),
                "{ok}"
            );
            assert_eq!(f["auth.user.name"], "alice");
            assert_eq!(f["http.request.id"].as_str().map(str::len), Some(36), "a UUID request id: {ok}");
            assert_eq!(v["level"], "INFO");
            let d: serde_json::Value = serde_json::from_str(denied).unwrap();
            assert_eq!(d["fields"]["http.response.status"], 401);
        } else {
            for field in [
                "http.request.method=GET",
                "http.request.uri=/v2/_catalog",
                "http.response.status=200",
                "http.request.remoteaddr=127.0.0.1:",
                "http.request.useragent=",
                "http.response.written=",
                "http.response.duration=",
                "auth.user.name=\"alice\"",
                "http.request.id=",
                "INFO",
            ] {
                assert!(ok.contains(field), "{field} missing from {ok:?}");
            }
            assert!(denied.contains("http.response.status=401"), "{denied}");
        }
    }
    // log.accesslog.disabled: no request lines.
    let config = write_config(dir.path(), "log:\n  accesslog:\n    disabled: true\n");
    let w = Wharf::start_with(&[config.to_str().unwrap()], &[]);
    http().get(format!("{}/v2/", w.url)).send().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(access_lines(&w).is_empty(), "{:?}", access_lines(&w));
}

#[tokio::test(flavor = "multi_thread")]
async fn http_headers_and_prefix_are_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "http:\n  prefix: /reg/\n  headers:\n    X-Content-Type-Options: [nosniff]\n    X-Test: [one, two]\n",
    );
    let w = Wharf::start_with(&[config.to_str().unwrap()], &[]);
    let c = http();
    let resp = c.get(format!("{}/reg/v2/", w.url)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    let tests: Vec<_> = resp
        .headers()
        .get_all("x-test")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert_eq!(tests, ["one", "two"]);
    let outside = c.get(format!("{}/v2/", w.url)).send().await.unwrap();
    assert_eq!(outside.status(), 404, "the API lives under the prefix only");
    assert_eq!(
        outside.headers()["x-content-type-options"],
        "nosniff",
        "errors carry the headers too"
    );

    // A push under the prefix: every Location stays under it.
    let blob = b"prefixed blob";
    let digest = common::sha256_digest(blob);
    let start = c.post(format!("{}/reg/v2/app/blobs/uploads/", w.url)).send().await.unwrap();
    assert_eq!(start.status(), 202);
    let location = start.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with(&format!("{}/reg/v2/app/blobs/uploads/", w.url)), "{location}");
    let sep = if location.contains('?') { '&' } else { '?' };
    let put = c
        .put(format!("{location}{sep}digest={digest}"))
        .body(blob.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    assert_eq!(put.headers()["location"], format!("{}/reg/v2/app/blobs/{digest}", w.url).as_str());
    let got = c.get(format!("{}/reg/v2/app/blobs/{digest}", w.url)).send().await.unwrap();
    assert_eq!(got.bytes().await.unwrap().as_ref(), blob);
}

#[tokio::test(flavor = "multi_thread")]
async fn debug_server_answers_health_and_registry2_metrics() {
    if !require_tool("curl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let debug_port = free_port();
    let config = write_config(
        dir.path(),
        &format!(
            "http:\n  debug:\n    addr: 127.0.0.1:{debug_port}\n    prometheus:\n      enabled: true\n      path: /metrics\n\
             health:\n  storagedriver:\n    enabled: true\n    interval: 200ms\n    threshold: 2\n"
        ),
    );
    let w = Wharf::start_with(&[config.to_str().unwrap()], &[]);
    let c = http();
    let debug = format!("http://127.0.0.1:{debug_port}");
    let health = c.get(format!("{debug}/debug/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), "{}");

    let reg = Registry::new(&w);
    reg.get("/v2/").await.expect(200);
    for _ in 0..3 {
        reg.get("/v2/app/manifests/latest").await.expect(404);
    }
    let text = c.get(format!("{debug}/metrics")).send().await.unwrap().text().await.unwrap();
    for want in [
        "registry_http_requests_total{handler=\"base\",code=\"200\",method=\"get\"} 1",
        "registry_http_requests_total{handler=\"manifest\",code=\"404\",method=\"get\"} 3",
        "registry_http_request_duration_seconds_count{handler=\"manifest\",method=\"get\"} 3",
        "registry_http_in_flight_requests{handler=\"manifest\"} 0",
        "# TYPE registry_http_request_duration_seconds histogram",
        "process_resident_memory_bytes ",
        "process_cpu_seconds_total ",
        "process_open_fds ",
    ] {
        assert!(text.contains(want), "/metrics lacks {want:?}:\n{text}");
    }
    // The API itself does not serve the debug endpoints.
    assert_eq!(c.get(format!("{}/metrics", w.url)).send().await.unwrap().status(), 404);

    // Storage gone bad (its tree replaced by a file): unhealthy after `threshold` checks.
    let v2 = w.root.join("docker/registry/v2");
    std::fs::remove_dir_all(&v2).unwrap();
    std::fs::write(&v2, b"not a directory").unwrap();
    let unhealthy = wait_until(Duration::from_secs(10), || {
        std::process::Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", &format!("{debug}/debug/health")])
            .output()
            .map(|o| o.stdout == b"503")
            .unwrap_or(false)
    });
    assert!(unhealthy, "a broken storage root was never reported");
    let body = c.get(format!("{debug}/debug/health")).send().await.unwrap().text().await.unwrap();
    assert!(body.contains("storagedriver_filesystem"), "{body}");
}

#[test]
fn a_failed_bind_leaves_no_account_and_a_later_start_shows_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let root_s = root.display().to_string();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap().to_string();
    // wharf's automatic set-up, asked for on a port that is taken.
    let failed = Command::new(wharf_bin())
        .args(["serve", "--auto-tls", "--addr", &busy_addr, "--root", &root_s])
        .env_remove("REGISTRY_CONFIGURATION_PATH")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success(), "started on a busy port");
    assert!(err.contains("already in use"), "{err}");
    assert!(
        !root.join("wharf/htpasswd").exists(),
        "an account was created by a start that failed"
    );
    drop(busy);

    let w = Wharf::launch_args(&[], &["--auto-tls", "--addr", "127.0.0.1:0", "--root", &root_s], &[]);
    assert!(w.output().contains("created user admin with password"), "{}", w.output());
    drop(w);
    // Later starts say how to set a new password.
    let w = Wharf::launch_args(&[], &["--auto-tls", "--addr", "127.0.0.1:0", "--root", &root_s], &[]);
    let out = w.output();
    assert!(!out.contains("created user"), "{out}");
    assert!(
        out.contains(&format!("wharf htpasswd set {}/wharf/htpasswd admin", root_s)),
        "no reset command: {out}"
    );
}
