//! wharf's container image as registry:2's users run theirs, on a private Docker daemon with a
//! bridge network (so `-p` and docker-compose publish ports): built with `scripts/image.sh`,
//! then the seeds' own commands with only the image name changed — seed 001's
//! `docker run -d -p 5000:5000` and a plain push, seed 003's TLS-and-htpasswd `docker run` with
//! `docker login`, push, pull and `curl --cacert`, seed 004's compose file under Debian's
//! `docker-compose up -d` on port 5001 — and what the containers wrote is then served by
//! distribution (Debian's docker-registry). Also: the image's `htpasswd` makes lines that both
//! wharf and distribution accept.
//!
//! Docker treats 127.0.0.0/8 (and `localhost`) as insecure-allowed, so the seeds' registries
//! are reached there, as their write-ups do. Where a seed's host port (5000, 5001) is taken on
//! this machine (Debian's docker-registry service uses 5000), a free port stands in and the
//! test says so.

mod common;

use common::distribution::{assert_tag_links, Distribution};
use common::dockerd::Dockerd;
use common::images::{docker_context, registry_catalog, registry_manifest, run, run_unchecked, run_with_input, wait_until};
use common::{require_tool, Wharf};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const IMAGE: &str = "wharf:latest";

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Builds the image with `scripts/image.sh` on this daemon; prints its size and how the binary
/// is linked, and checks both.
fn build_image(d: &Dockerd) {
    let out = run(Command::new(repo_root().join("scripts/image.sh"))
        .arg(IMAGE)
        .current_dir(repo_root())
        .env("DOCKER", common::dockerd::DOCKER)
        .env("DOCKER_HOST", &d.host)
        .env("DOCKER_CONFIG", &d.client_config));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), IMAGE, "{}", text(&out));
    let size: u64 = d.inspect(IMAGE, "{{.Size}}").parse().expect("image size");
    let binary = static_binary();
    let file = String::from_utf8_lossy(&run(Command::new("file").arg(&binary)).stdout).into_owned();
    let ldd = text(&run_unchecked(Command::new("ldd").arg(&binary)));
    println!("image {IMAGE}: {size} bytes ({:.1} MiB)", size as f64 / 1048576.0);
    println!("file: {}", file.trim());
    println!("ldd: {}", ldd.trim());
    assert!(file.contains("static"), "the image's binary must be statically linked: {file}");
    assert!(!file.contains("interpreter"), "no dynamic loader: {file}");
    assert!(
        ldd.contains("not a dynamic executable") || ldd.contains("statically linked"),
        "ldd: {ldd}"
    );
    assert!(size < 40 << 20, "the image should stay small: {size} bytes");
    assert_eq!(
        d.inspect(IMAGE, "{{json .Config.Healthcheck.Test}}"),
        r#"["CMD","/usr/bin/wharf","healthcheck"]"#
    );
    assert_eq!(d.inspect(IMAGE, "{{json .Config.ExposedPorts}}"), r#"{"5000/tcp":{}}"#);
    assert_eq!(d.inspect(IMAGE, "{{json .Config.Volumes}}"), r#"{"/var/lib/registry":{}}"#);
}

/// The binary `scripts/image.sh` put in the image.
fn static_binary() -> PathBuf {
    let host = String::from_utf8_lossy(&run(Command::new("rustc").arg("-vV")).stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .expect("rustc host");
    repo_root().join("target").join(host).join("image/wharf")
}

/// `wanted` when nothing on this machine listens there, else a free port (and the test says so).
fn host_port(wanted: u16, seed: &str) -> u16 {
    if std::net::TcpListener::bind(("0.0.0.0", wanted)).is_ok() {
        return wanted;
    }
    let port = common::free_port();
    println!("port {wanted} is taken on this machine; {seed}'s commands run with -p {port}:5000 instead");
    port
}

/// Waits until the registry behind a published port answers `GET /v2/` (over `curl ARGS`)
/// with `status`.
fn wait_for_registry(d: &Dockerd, container: &str, url: &str, curl_args: &[&str], status: &str) {
    let answered = wait_until(Duration::from_secs(60), || {
        let out = run_unchecked(
            Command::new("curl")
                .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5"])
                .args(curl_args)
                .arg(format!("{url}/v2/")),
        );
        String::from_utf8_lossy(&out.stdout) == status
    });
    if !answered {
        let logs = text(&d.docker_unchecked(&["logs", container]));
        panic!(
            "{url}/v2/ never answered {status}; container logs:\n{logs}\ndockerd:\n{}",
            d.log_tail()
        );
    }
}

/// Builds a small `FROM scratch` image as `tag`; returns its ID.
fn local_image(d: &Dockerd, tag: &str, layers: usize) -> String {
    let ctx = tempfile::tempdir().unwrap();
    docker_context(ctx.path(), layers);
    d.docker(&["build", "-q", "-t", tag, &ctx.path().to_string_lossy()]);
    d.inspect(tag, "{{.Id}}")
}

/// `docker push` and the manifest digest it reports.
fn push(d: &Dockerd, image: &str) -> String {
    let out = String::from_utf8_lossy(&d.docker(&["push", image]).stdout).into_owned();
    out.lines()
        .find_map(|l| l.split("digest: ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no digest in push output:\n{out}"))
        .to_string()
}

/// rmi, then pull: the same image ID comes back.
fn pull_back(d: &Dockerd, image: &str, id: &str, digest: &str) {
    d.docker(&["rmi", image]);
    assert!(!d.has_image(id), "rmi removed {image}");
    let pulled = String::from_utf8_lossy(&d.docker(&["pull", image]).stdout).into_owned();
    assert!(pulled.contains(&format!("Digest: {digest}")), "{pulled}");
    assert_eq!(d.inspect(image, "{{.Id}}"), id, "same image ID after push and pull");
}

/// `curl --cacert CA [-u USER:PASS] URL`: the body, after checking the status is 200.
fn curl_ok(ca: &Path, user: Option<&str>, url: &str) -> String {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--fail", "--max-time", "20", "--cacert"]).arg(ca);
    if let Some(u) = user {
        cmd.args(["-u", u]);
    }
    String::from_utf8_lossy(&run(cmd.arg(url)).stdout).into_owned()
}

/// The user the container's main process runs as (`Uid:` of its /proc status, real ID).
fn container_uid(d: &Dockerd, container: &str) -> String {
    let pid = d.docker(&["inspect", "--format", "{{.State.Pid}}", container]).stdout;
    let pid = String::from_utf8_lossy(&pid).trim().to_string();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("container process status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().next())
        .expect("Uid line")
        .to_string()
}

/// Distribution on the directory a container wrote: it lists the repository and serves the
/// manifest docker pushed, with registry:2's tag links.
fn distribution_serves(root: &Path, repo: &str, tag: &str, digest: &str) {
    let dist = Distribution::start(root);
    assert!(registry_catalog(&dist.url).contains(&repo.to_string()), "{}", dist.log());
    let manifest = registry_manifest(&dist.url, repo, tag);
    assert_eq!(common::sha256_digest(&manifest.body), digest);
    assert_tag_links(root, repo, tag, digest);
}

fn sh(dir: &Path, script: &str) {
    run(Command::new("sh").arg("-ec").arg(script).current_dir(dir));
}

/// The seeds publish the same host ports: one test at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A bridged daemon with the image built, once the tools the seeds use are there; None (after
/// SKIP) outside CI when something is missing.
fn daemon_with_image(tools: &[&str]) -> Option<(std::sync::MutexGuard<'static, ()>, Dockerd)> {
    for tool in ["curl", "file", "ldd"].iter().chain(tools) {
        if !require_tool(tool) {
            return None;
        }
    }
    if !Distribution::available() {
        return None;
    }
    let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let d = Dockerd::start_bridged()?;
    build_image(&d);
    Some((turn, d))
}

#[test]
fn seed_001_docker_run_publishes_port_5000_and_a_plain_push_works() {
    let Some((_turn, d)) = daemon_with_image(&[]) else { return };
    // Seed 001: `docker run --rm -d --name registry -p 5000:5000 registry:2`, then a plain
    // push to localhost:5000. No volume: Docker makes one from the image, which belongs to the
    // image's wharf user, so the server runs unprivileged.
    let port = host_port(5000, "seed 001");
    d.docker(&["run", "--rm", "-d", "--name", "registry", "-p", &format!("{port}:5000"), IMAGE]);
    wait_for_registry(&d, "registry", &format!("http://127.0.0.1:{port}"), &[], "200");
    let image = format!("localhost:{port}/ubuntu");
    let id = local_image(&d, &image, 2);
    let digest = push(&d, &image);
    pull_back(&d, &image, &id, &digest);
    let logs = text(&d.docker(&["logs", "registry"]));
    assert!(logs.contains("running as user 65532:65532"), "{logs}");
    assert_eq!(container_uid(&d, "registry"), "65532");
    // The HEALTHCHECK's command, run as Docker runs it.
    let health = d.docker(&["exec", "registry", "/usr/bin/wharf", "healthcheck"]);
    assert!(text(&health).contains("answered 200"), "{}", text(&health));
    d.docker(&["stop", "registry"]);
}

#[test]
fn seed_003_docker_run_with_tls_and_htpasswd_variables_login_push_pull_curl() {
    let Some((_turn, d)) = daemon_with_image(&["openssl"]) else {
        return;
    };
    // Seed 003: a certificate from openssl, a password file from the image's htpasswd, and
    // the write-up's last `docker run`, with TLS and auth from REGISTRY_* variables.
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let port = host_port(5000, "seed 003");
    // The seed answers openssl's prompts with CN 127.0.0.1; curl (like Go clients) ignores
    // the CN, so the address also goes into subjectAltName, as seed 000 does.
    sh(
        dir,
        "mkdir -p certs && openssl req -newkey rsa:4096 -nodes -sha256 -keyout certs/domain.key -x509 -days 365 \
         -out certs/domain.crt -subj '/C=CO/O=xXDrackleroXx/CN=127.0.0.1' -addext 'subjectAltName = IP:127.0.0.1' 2>/dev/null",
    );
    std::fs::create_dir(dir.join("auth")).unwrap();
    let htpasswd = d.docker(&["run", "--rm", "--entrypoint", "htpasswd", IMAGE, "-Bbn", "moby", "gordon"]);
    std::fs::write(dir.join("auth/htpasswd"), &htpasswd.stdout).unwrap();
    let v = |sub: &str| format!("{}:/{sub}", dir.join(sub).display());
    let data = dir.join("registry-data");
    d.docker(&[
        "run",
        "-d",
        "-p",
        &format!("{port}:5000"),
        "--name",
        "registry",
        "--restart",
        "unless-stopped",
        "-v",
        &format!("{}:/var/lib/registry", data.display()),
        "-v",
        &v("certs"),
        "-v",
        &v("auth"),
        "-e",
        "REGISTRY_HTTP_TLS_CERTIFICATE=/certs/domain.crt",
        "-e",
        "REGISTRY_HTTP_TLS_KEY=/certs/domain.key",
        "-e",
        "REGISTRY_AUTH=htpasswd",
        "-e",
        "REGISTRY_AUTH_HTPASSWD_REALM=Registry Realm",
        "-e",
        "REGISTRY_AUTH_HTPASSWD_PATH=/auth/htpasswd",
        IMAGE,
    ]);
    let ca = dir.join("certs/domain.crt");
    let url = format!("https://127.0.0.1:{port}");
    wait_for_registry(&d, "registry", &url, &["--cacert", &ca.to_string_lossy()], "401");
    let challenge = text(&run(Command::new("curl")
        .args(["-sS", "-i", "--cacert"])
        .arg(&ca)
        .arg(format!("{url}/v2/"))));
    assert!(
        challenge
            .to_ascii_lowercase()
            .contains("www-authenticate: basic realm=\"registry realm\""),
        "{challenge}"
    );
    let registry = format!("127.0.0.1:{port}");
    run_with_input(d.cmd().args(["login", &registry, "-u", "moby", "--password-stdin"]), "gordon");
    let image = format!("{registry}/hello-world");
    let id = local_image(&d, &image, 3);
    let digest = push(&d, &image);
    pull_back(&d, &image, &id, &digest);
    let catalog = curl_ok(&ca, Some("moby:gordon"), &format!("{url}/v2/_catalog"));
    assert_eq!(catalog.trim(), r#"{"repositories":["hello-world"]}"#);
    // Docker created registry-data as root: the server stays root, and says so.
    let logs = text(&d.docker(&["logs", "registry"]));
    assert!(logs.contains("running as root"), "{logs}");
    let health = d.docker(&["exec", "registry", "/usr/bin/wharf", "healthcheck"]);
    assert!(text(&health).contains("answered 401"), "{}", text(&health));
    d.docker(&["rm", "-f", "registry"]);
    distribution_serves(&data, "hello-world", "latest", &digest);
}

#[test]
fn seed_004_compose_file_with_tls_and_htpasswd_under_docker_compose_on_port_5001() {
    let Some((_turn, d)) = daemon_with_image(&["openssl", "htpasswd", "docker-compose"]) else {
        return;
    };
    // Seed 004: its directory layout, its openssl key and CSR (signed here by a CA standing in
    // for the Kubernetes one), an htpasswd file from Apache's htpasswd, and its compose file with
    // only the image changed, under `docker-compose up -d`. The directory belongs to a user
    // (uid 1000), as it would on the author's machine: the server runs as that user.
    let work = tempfile::tempdir().unwrap();
    let base = work.path().join("docker-registry");
    std::fs::create_dir(&base).unwrap();
    let port = host_port(5001, "seed 004");
    sh(
        &base,
        "mkdir -p auth certs data
         openssl ecparam -name prime256v1 -genkey -out repo-key.pem
         openssl req -new -sha256 -key repo-key.pem -subj '/C=CA/ST=QC/L=Montreal/O=system:nodes/OU=IT/CN=system:node:' \
           -addext 'subjectAltName = DNS:localhost,DNS:*.localhost,DNS:dkr-registry.kloud.lan' \
           -addext 'keyUsage = digitalSignature, keyEncipherment' \
           -addext 'basicConstraints = CA:FALSE' -addext 'extendedKeyUsage = serverAuth' -addext 'subjectKeyIdentifier = hash' -out repo-csr.pem
         openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.crt -days 30 -subj /CN=kubernetes 2>/dev/null
         openssl x509 -req -in repo-csr.pem -CA ca.crt -CAkey ca.key -CAcreateserial -copy_extensions copy -days 30 -out repo-crt.pem 2>/dev/null
         cp repo-crt.pem repo-key.pem certs/
         htpasswd -Bbc auth/registry.password admin lfdmea7h
         chown -R 1000:1000 .",
    );
    let compose = format!(
        "version: '3'
services:
  registry:
    image: {IMAGE}
    ports:
    - \"{port}:5000\"
    environment:
      REGISTRY_AUTH: htpasswd
      REGISTRY_AUTH_HTPASSWD_REALM: Registry
      REGISTRY_AUTH_HTPASSWD_PATH: /auth/registry.password
      REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: /data
      REGISTRY_HTTP_TLS_CERTIFICATE: /certs/repo-crt.pem
      REGISTRY_HTTP_TLS_KEY: /certs/repo-key.pem
    volumes:
      - ./auth:/auth
      - ./certs:/certs
      - ./data:/data
"
    );
    std::fs::write(base.join("docker-compose.yml"), compose).unwrap();
    let compose_cmd = |args: &[&str]| {
        let mut c = d.compose();
        c.args(["-f", "docker-compose.yml", "--project-name", "registry"])
            .args(args)
            .current_dir(&base);
        c
    };
    run(&mut compose_cmd(&["up", "-d"]));
    let _down = ComposeDown(compose_cmd(&["down"]));
    let container = "registry_registry_1";
    let ca = base.join("ca.crt");
    let url = format!("https://localhost:{port}");
    wait_for_registry(&d, container, &url, &["--cacert", &ca.to_string_lossy()], "401");
    let registry = format!("localhost:{port}");
    run_with_input(d.cmd().args(["login", &registry, "-u", "admin", "--password-stdin"]), "lfdmea7h");
    let catalog = curl_ok(&ca, Some("admin:lfdmea7h"), &format!("{url}/v2/_catalog"));
    assert_eq!(catalog.trim(), r#"{"repositories":[]}"#);
    let image = format!("{registry}/dnsutils2:2.0.0");
    let id = local_image(&d, &image, 2);
    let digest = push(&d, &image);
    let catalog = curl_ok(&ca, Some("admin:lfdmea7h"), &format!("{url}/v2/_catalog"));
    assert_eq!(catalog.trim(), r#"{"repositories":["dnsutils2"]}"#);
    pull_back(&d, &image, &id, &digest);
    let logs = text(&d.docker(&["logs", container]));
    assert!(logs.contains("running as user 1000:1000"), "{logs}");
    assert_eq!(container_uid(&d, container), "1000");
    run(&mut compose_cmd(&["down"]));
    let blob_dir = base.join("data/docker/registry/v2/blobs");
    let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&blob_dir).unwrap());
    assert_eq!(owner, 1000, "the data belongs to the directory's user");
    distribution_serves(&base.join("data"), "dnsutils2", "2.0.0", &digest);
}

/// `docker-compose down` when the test ends, also on failure (removes the network's bridge).
struct ComposeDown(Command);

impl Drop for ComposeDown {
    fn drop(&mut self) {
        let _ = self.0.stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}

#[test]
fn image_htpasswd_line_is_accepted_by_wharf_and_distribution() {
    if !require_tool("curl") || !require_tool("file") || !require_tool("ldd") || !Distribution::available() {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(d) = Dockerd::start() else { return };
    build_image(&d);
    let out = d.docker(&["run", "--rm", "--entrypoint", "htpasswd", IMAGE, "-Bbn", "user", "pass"]);
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(printed.starts_with("user:$2y$05$"), "{printed:?}");
    assert!(printed.ends_with("\n\n"), "Apache's -n output ends with an empty line: {printed:?}");
    // The same from the wharf binary: `wharf htpasswd -Bbn`.
    let own = run(Command::new(common::wharf_bin()).args(["htpasswd", "-Bbn", "user", "pass"]));
    assert!(String::from_utf8_lossy(&own.stdout).starts_with("user:$2y$05$"));

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("htpasswd");
    std::fs::write(&file, &printed).unwrap();
    let auth = format!("auth:\n  htpasswd:\n    realm: Registry Realm\n    path: {}\n", file.display());
    let status = |url: &str, user: &str| {
        let out = run(Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-u", user])
            .arg(format!("{url}/v2/")));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };

    let config = dir.path().join("wharf.yml");
    std::fs::write(&config, format!("version: 0.1\n{auth}")).unwrap();
    let w = Wharf::start_with(&[config.to_str().unwrap()], &[]);
    assert_eq!(status(&w.url, "user:pass"), "200", "wharf accepts the line");
    assert_eq!(status(&w.url, "user:wrong"), "401");

    let root = dir.path().join("dist");
    let dist = Distribution::start_with(&root, &auth);
    assert_eq!(
        status(&dist.url, "user:pass"),
        "200",
        "distribution accepts the line:\n{}",
        dist.log()
    );
    assert_eq!(status(&dist.url, "user:wrong"), "401");
}
