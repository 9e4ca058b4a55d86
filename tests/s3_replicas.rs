//! wharf replicas on a three-node Garage cluster (each node in its own network namespace,
//! replication factor 3), driven by real clients: docker pushes through one replica and pulls
//! through the other, skopeo copies a multi-arch index in through one and out through the other,
//! an upload session begun on one is finished on the other,
//! a Garage node is stopped in the middle of a docker push, and nginx balances the two replicas
//! with the configuration the README shows (deploy/replicas/nginx.conf), while one of them is
//! killed with SIGKILL in the middle of a push. The replicas serve the configuration the README
//! shows (deploy/replicas/config.yml). Every image is compared by digest: the manifest's, the
//! config's (the image ID) and every layer's.

mod common;

use common::dockerd::{pushed_digest, Dockerd};
use common::garage::{Garage, BUCKET, REGION};
use common::images::{
    docker_context_sized, http_get, http_request, referenced_digests, registry_blob, registry_catalog, registry_manifest, registry_tags,
    run, signal_pid, stop_child, wait_until, HttpResp, Skopeo, ACCEPT_ALL_MANIFESTS,
};
use common::netns::TestSwitch;
use common::{sha256_digest, Wharf};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;
const REPLICA_CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/replicas/config.yml");
const NGINX_CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/replicas/nginx.conf");
/// A push never takes longer than this here; a test that waits longer has found a hang.
const PUSH_LIMIT: Duration = Duration::from_secs(150);

/// Garage's three nodes, each in a namespace of its own on one switch; the nodes stop before
/// the namespaces go.
struct Cluster {
    garage: Garage,
    _switch: TestSwitch,
}

fn cluster() -> Option<Cluster> {
    let switch = TestSwitch::create(3)?;
    let hosts: Vec<(Vec<String>, String)> = (0..3)
        .map(|i| {
            (
                switch.prefix(i).into_iter().map(String::from).collect(),
                switch.machines[i].1.clone(),
            )
        })
        .collect();
    let garage = Garage::start(&hosts)?;
    Some(Cluster { garage, _switch: switch })
}

/// `wharf serve deploy/replicas/config.yml --addr ADDR`, through Garage node `node`: only the
/// endpoint and the key are this cluster's (the variables override the file, as registry:2's do).
fn replica(g: &Garage, node: usize, addr: &str, extra: &[(&str, &str)]) -> Wharf {
    let config = std::fs::read_to_string(REPLICA_CONFIG).unwrap();
    assert!(config.contains(&format!("bucket: {BUCKET}")) && config.contains(&format!("region: {REGION}")));
    let endpoint = g.nodes[node].endpoint();
    let mut env = vec![
        ("REGISTRY_STORAGE_S3_REGIONENDPOINT", endpoint.as_str()),
        ("REGISTRY_STORAGE_S3_ACCESSKEY", g.key_id.as_str()),
        ("REGISTRY_STORAGE_S3_SECRETKEY", g.secret.as_str()),
    ];
    env.extend_from_slice(extra);
    let w = Wharf::launch_args(&[], &[REPLICA_CONFIG, "--addr", addr], &env);
    assert!(w.output().contains("storage: s3 bucket registry"), "{}", w.output());
    w
}

/// The port of `HOST:PORT`.
fn port_of(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {addr}"))
}

/// The most bytes any established connection into local port `port` has received so far
/// (`ss -i`): above a few MiB, a layer's body is on its way in.
fn most_received_on(port: u16) -> u64 {
    let filter = format!("( sport = :{port} )");
    let out = Command::new("ss")
        .args(["-Htin", "state", "established", &filter])
        .output()
        .expect("ss");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("bytes_received:"))
        .filter_map(|n| n.parse().ok())
        .max()
        .unwrap_or(0)
}

/// Builds a `FROM scratch` image of random layers of `sizes` bytes as `tag`; its image ID.
fn build(d: &Dockerd, tag: &str, sizes: &[usize]) -> String {
    let ctx = tempfile::tempdir().unwrap();
    docker_context_sized(ctx.path(), sizes);
    d.docker(&["build", "-q", "-t", tag, &ctx.path().to_string_lossy()]);
    d.inspect(tag, "{{.Id}}")
}

/// A `docker push` left running, its output in files, so the test can act in the middle of it.
struct PushInProgress {
    child: Child,
    out: PathBuf,
    err: PathBuf,
    started: Instant,
}

fn start_push(d: &Dockerd, image: &str, dir: &Path) -> PushInProgress {
    let (out, err) = (dir.join("push.out"), dir.join("push.err"));
    let child = d
        .cmd()
        .args(["push", image])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("docker push");
    PushInProgress {
        child,
        out,
        err,
        started: Instant::now(),
    }
}

impl PushInProgress {
    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits until `port` has received `bytes` on one connection; false if the push ended first.
    fn wait_for_upload_into(&mut self, port: u16, bytes: u64) -> bool {
        wait_until(PUSH_LIMIT, || !self.running() || most_received_on(port) >= bytes) && self.running()
    }

    /// Waits for the push to end: its exit status and everything it printed.
    fn finish(mut self) -> (bool, String) {
        let ended = wait_until(PUSH_LIMIT, || !self.running());
        if !ended {
            stop_child(&mut self.child, Duration::from_secs(5));
        }
        let ok = ended && self.child.wait().map(|s| s.success()).unwrap_or(false);
        let text = format!(
            "{}{}",
            std::fs::read_to_string(&self.out).unwrap_or_default(),
            std::fs::read_to_string(&self.err).unwrap_or_default()
        );
        eprintln!("[{:.1}s] docker push (ok: {ok}):\n{text}", self.started.elapsed().as_secs_f64());
        (ok, text)
    }
}

/// Removes every name of the image `id` here (its layers go with it), then pulls `image`:
/// docker verifies each layer against its digest; the pull must give the same image ID (the
/// config's digest, which names every layer's content) and the manifest digest `manifest`.
fn pull_fresh_and_compare(d: &Dockerd, image: &str, id: &str, manifest: &str) {
    d.docker(&["rmi", "-f", id]);
    assert!(!d.has_image(id), "{id} is gone before the pull");
    let out = d.docker(&["pull", image]);
    let said = String::from_utf8_lossy(&out.stdout);
    let digest = said
        .lines()
        .find_map(|l| l.strip_prefix("Digest: "))
        .unwrap_or_else(|| panic!("no digest in docker pull output:\n{said}"));
    assert_eq!(digest.trim(), manifest, "pulled {image}: the manifest pushed");
    assert_eq!(d.inspect(image, "{{.Id}}"), id, "pulled {image}: the image pushed");
}

/// The manifest of `repo:tag` through `base_url` hashes to `manifest`, and every blob it names
/// (config and layers) comes back with the bytes of its digest.
fn assert_served_whole(base_url: &str, repo: &str, tag: &str, manifest: &str) {
    let got = registry_manifest(base_url, repo, tag);
    assert_eq!(sha256_digest(&got.body), manifest, "{base_url}: {repo}:{tag}");
    let blobs = referenced_digests(&got.body);
    assert!(blobs.len() >= 2, "a config and layers: {}", String::from_utf8_lossy(&got.body));
    for digest in blobs {
        registry_blob(base_url, repo, &digest);
    }
}

/// What curl gets for `url`, following redirects (to a presigned URL on a Garage node).
fn curl_follow(url: &str) -> Vec<u8> {
    run(Command::new("curl").args(["-sS", "--fail", "-L", "--max-time", "60", url])).stdout
}

#[test]
fn docker_pushes_through_one_replica_and_pulls_through_the_other_also_with_a_node_stopped() {
    let Some(mut c) = cluster() else { return };
    let Some(d) = Dockerd::start() else { return };
    let Some(sk) = Skopeo::new() else { return };
    if !common::require_tool("curl") {
        return;
    }
    // A streams blobs; B redirects to presigned URLs on its Garage node, registry:2's default
    // on S3, which docker and skopeo follow into the node's namespace.
    let a = replica(&c.garage, 0, "127.0.0.1:0", &[]);
    let b = replica(&c.garage, 1, "127.0.0.1:0", &[("REGISTRY_STORAGE_REDIRECT_DISABLE", "false")]);

    let id = build(&d, &format!("{}/team/app:v1", a.addr), &[3 * MIB, 2 * MIB + 7, 100_000]);
    let t = Instant::now();
    let v1 = pushed_digest(&d.docker(&["push", &format!("{}/team/app:v1", a.addr)]).stdout);
    eprintln!("docker push through A: {:.1}s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    pull_fresh_and_compare(&d, &format!("{}/team/app:v1", b.addr), &id, &v1);
    eprintln!("docker pull through B (redirected to Garage): {:.1}s", t.elapsed().as_secs_f64());
    assert_served_whole(&a.url, "team/app", "v1", &v1);
    let manifest = registry_manifest(&a.url, "team/app", "v1").body;
    for digest in referenced_digests(&manifest) {
        let via_b = curl_follow(&format!("{}/v2/team/app/blobs/{digest}", b.url));
        assert_eq!(sha256_digest(&via_b), digest, "B's presigned URL for {digest}");
    }

    // A multi-arch index: in through A, out through B, the same tree of digests.
    let (into, out_of) = (
        format!("docker://{}/team/multi:v1", a.addr),
        format!("docker://{}/team/multi:v1", b.addr),
    );
    sk.copy_index_through(&into, &out_of);
    upload_begun_on_one_finished_on_the_other(&a.url, &b.url);
    let tmp = tempfile::tempdir().unwrap();

    // Garage node 2 (neither replica's endpoint) stops while docker pushes through B: with
    // replication factor 3 every write needs 2 of 3 nodes, so the push goes on.
    let image = format!("{}/team/app:v2", b.addr);
    let id = build(&d, &image, &[6 * MIB, 6 * MIB + 1, 6 * MIB + 2]);
    let mut push = start_push(&d, &image, tmp.path());
    assert!(
        push.wait_for_upload_into(port_of(&b.addr), MIB as u64),
        "the push ended before a layer reached B"
    );
    eprintln!("[{:.1}s] stopping Garage node 2 mid-push", push.started.elapsed().as_secs_f64());
    c.garage.nodes[2].stop();
    let (ok, said) = push.finish();
    assert!(ok, "docker push through B with a Garage node stopped:\n{said}");
    let pushed = pushed_digest(said.as_bytes());
    pull_fresh_and_compare(&d, &format!("{}/team/app:v2", a.addr), &id, &pushed);
    assert_served_whole(&a.url, "team/app", "v2", &pushed);
    assert_eq!(registry_tags(&b.url, "team/app"), ["v1", "v2"]);

    // v1 deleted through A (the Garage node still stopped): B serves it no more, at once, by
    // tag or by digest (B has just read it by digest: what a replica read is not kept).
    let by_digest_url = format!("{}/v2/team/app/manifests/{v1}", b.url);
    assert_eq!(
        http_get(&by_digest_url, &[("Accept", ACCEPT_ALL_MANIFESTS)]).status,
        200,
        "B before the delete"
    );
    let deleted = http_request("DELETE", &format!("{}/v2/team/app/manifests/{v1}", a.url), &[], Vec::new());
    assert_eq!(deleted.status, 202, "{}", String::from_utf8_lossy(&deleted.body));
    let by_tag = http_get(&format!("{}/v2/team/app/manifests/v1", b.url), &[("Accept", ACCEPT_ALL_MANIFESTS)]);
    assert_eq!(by_tag.status, 404, "B after v1 was deleted through A");
    let by_digest = http_get(&by_digest_url, &[("Accept", ACCEPT_ALL_MANIFESTS)]);
    assert_eq!(by_digest.status, 404, "B by digest after v1 was deleted through A");
    assert_eq!(registry_tags(&b.url, "team/app"), ["v2"]);
    assert_eq!(registry_catalog(&b.url), ["team/app", "team/multi", "team/session"]);
}

/// A chunked upload as the spec describes it: begun and sent its first two chunks (more than
/// a part) through `a`, its third through `b`, and closed through `b`; the blob then streams whole
/// from `a` and redirects from `b`, its bytes equal to its digest either way.
fn upload_begun_on_one_finished_on_the_other(a: &str, b: &str) {
    let blob = common::api::random_bytes(13 * MIB + 5);
    let digest = sha256_digest(&blob);
    let path_of = |r: &HttpResp| {
        let location = r
            .header("Location")
            .unwrap_or_else(|| panic!("no Location: {}", r.status))
            .to_string();
        match location.find("/v2/") {
            Some(i) => location[i..].to_string(),
            None => panic!("Location {location}"),
        }
    };
    let started = http_request("POST", &format!("{a}/v2/team/session/blobs/uploads/"), &[], Vec::new());
    assert_eq!(started.status, 202, "{}", String::from_utf8_lossy(&started.body));
    let mut path = path_of(&started);
    let cuts = [0, 6 * MIB, 11 * MIB, blob.len() - 100];
    for (i, w) in cuts.windows(2).enumerate() {
        let via = if i < 2 { a } else { b };
        let range = format!("{}-{}", w[0], w[1] - 1);
        let sent = http_request(
            "PATCH",
            &format!("{via}{path}"),
            &[("Content-Type", "application/octet-stream"), ("Content-Range", &range)],
            blob[w[0]..w[1]].to_vec(),
        );
        assert_eq!(sent.status, 202, "chunk {i} via {via}: {}", String::from_utf8_lossy(&sent.body));
        assert_eq!(sent.header("Range"), Some(format!("0-{}", w[1] - 1).as_str()), "chunk {i}");
        path = path_of(&sent);
    }
    let sep = if path.contains('?') { '&' } else { '?' };
    let closed = http_request(
        "PUT",
        &format!("{b}{path}{sep}digest={digest}"),
        &[("Content-Type", "application/octet-stream")],
        blob[cuts[3]..].to_vec(),
    );
    assert_eq!(closed.status, 201, "closing through B: {}", String::from_utf8_lossy(&closed.body));
    let via_a = http_get(&format!("{a}/v2/team/session/blobs/{digest}"), &[]);
    assert_eq!((via_a.status, sha256_digest(&via_a.body)), (200, digest.clone()), "streamed by A");
    let via_b = curl_follow(&format!("{b}/v2/team/session/blobs/{digest}"));
    assert_eq!(sha256_digest(&via_b), digest, "redirected by B");
}

/// nginx as its own process, with deploy/replicas/nginx.conf included as shipped but for the
/// replicas' addresses and its port, and its pid, logs and temp files in a directory of its own.
struct Nginx {
    child: Option<Child>,
    dir: tempfile::TempDir,
    addr: String,
}

impl Nginx {
    fn start(replicas: [&str; 2]) -> Option<Nginx> {
        if !common::require_tool("nginx") {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let addr = format!("127.0.0.1:{}", common::free_port());
        let mut site = std::fs::read_to_string(NGINX_CONFIG).unwrap();
        for (shipped, here) in [
            ("server 127.0.0.1:5001 ", format!("server {} ", replicas[0])),
            ("server 127.0.0.1:5002 ", format!("server {} ", replicas[1])),
            ("listen 5000;", format!("listen {addr};")),
        ] {
            assert_eq!(site.matches(shipped).count(), 1, "{NGINX_CONFIG} has {shipped:?} once");
            site = site.replace(shipped, &here);
        }
        let p = |name: &str| dir.path().join(name).display().to_string();
        std::fs::write(p("wharf-replicas.conf"), site).unwrap();
        let user = if common::is_root() { "user root;\n" } else { "" };
        let main = format!(
            "daemon off;\n{user}worker_processes 1;\npid {pid};\nerror_log {err} info;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n  log_format replicas '$request_method $uri $status upstream=$upstream_addr \
             upstream_status=$upstream_status in=$request_length time=$request_time';\n  \
             access_log {access} replicas;\n  client_body_temp_path {t}/body;\n  proxy_temp_path {t}/proxy;\n  \
             fastcgi_temp_path {t}/fastcgi;\n  uwsgi_temp_path {t}/uwsgi;\n  scgi_temp_path {t}/scgi;\n  \
             include {site};\n}}\n",
            pid = p("nginx.pid"),
            err = p("error.log"),
            access = p("access.log"),
            t = p("tmp"),
            site = p("wharf-replicas.conf"),
        );
        std::fs::create_dir(p("tmp")).unwrap();
        std::fs::write(p("nginx.conf"), main).unwrap();
        let child = Command::new("nginx")
            .args(["-e", &p("error.log"), "-p", &p(""), "-c", &p("nginx.conf")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nginx");
        let mut n = Nginx {
            child: Some(child),
            dir,
            addr,
        };
        let up = wait_until(Duration::from_secs(10), || {
            n.running() && std::net::TcpStream::connect(&n.addr).is_ok()
        });
        assert!(up, "nginx did not start:\n{}", n.error_log());
        Some(n)
    }

    fn running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    /// Sends `GET /v2/` through the balancer until one more is logged answered 200 by
    /// `upstreams` (nginx's `$upstream_addr`: `A, B` when A failed and B answered) with
    /// `statuses` (`$upstream_status`), at most 30 s; how long that took.
    fn wait_for_answer_from(&self, upstreams: &str, statuses: &str) -> Duration {
        let answered = format!("GET /v2/ 200 upstream={upstreams} upstream_status={statuses} ");
        let before = self.access_log().matches(&answered).count();
        let started = Instant::now();
        let seen = wait_until(Duration::from_secs(30), || {
            let got = http_get(&format!("{}/v2/", self.url()), &[]);
            assert_eq!(got.status, 200, "GET /v2/ through nginx:\n{}", self.access_log());
            std::thread::sleep(Duration::from_millis(200));
            self.access_log().matches(&answered).count() > before
        });
        assert!(seen, "no {answered:?} in nginx's log:\n{}", self.access_log());
        started.elapsed()
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM: nginx's fast shutdown; its worker goes with the master.
            stop_child(&mut child, Duration::from_secs(10));
        }
    }
}

/// `docker push`, once more if the first did not succeed (as a user would): whether a second
/// run was needed, and the output of the one that succeeded.
fn push_completing(d: &Dockerd, image: &str, first: (bool, String)) -> (bool, String) {
    match first {
        (true, said) => (false, said),
        (false, said) => {
            eprintln!("docker push failed once; pushing again as a user would:\n{said}");
            let out: Output = d.docker_unchecked(&["push", image]);
            let again = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            assert!(out.status.success(), "docker push, run twice, failed:\n{said}\n---\n{again}");
            (true, again)
        }
    }
}

#[test]
fn behind_nginx_a_push_survives_a_replica_killed_mid_push() {
    let Some(c) = cluster() else { return };
    let Some(d) = Dockerd::start() else { return };
    let mut a = replica(&c.garage, 0, "127.0.0.1:0", &[]);
    let mut b = replica(&c.garage, 1, "127.0.0.1:0", &[]);
    let Some(lb) = Nginx::start([&a.addr, &b.addr]) else { return };
    let (a_addr, b_addr) = (a.addr.clone(), b.addr.clone());

    // Four layers of 10 MiB, random so gzip cannot shrink them: docker streams each in one
    // PATCH, several at once, round-robin over A and B.
    let image = format!("{}/team/big:v1", lb.addr);
    let id = build(&d, &image, &[10 * MIB, 10 * MIB + 1, 10 * MIB + 2, 10 * MIB + 3]);
    let tmp = tempfile::tempdir().unwrap();
    let mut push = start_push(&d, &image, tmp.path());
    assert!(
        push.wait_for_upload_into(port_of(&a_addr), 2 * MIB as u64),
        "the push ended before a layer reached A:\n{}",
        lb.access_log()
    );
    let killed_at = push.started.elapsed();
    signal_pid(a.pid(), libc::SIGKILL);
    a.stop();
    eprintln!("[{:.1}s] replica A killed with SIGKILL mid-upload", killed_at.as_secs_f64());
    let first = push.finish();
    let (retried, said) = push_completing(&d, &image, first);
    let pushed = pushed_digest(said.as_bytes());
    let log = lb.access_log();
    eprintln!("nginx access log:\n{log}\nnginx error log:\n{}", lb.error_log());

    // The request A was reading when it died failed (502 from nginx); the manifest, last of
    // the push, was written through B.
    let on_a = format!("upstream={a_addr} upstream_status=502");
    assert!(
        log.lines().any(|l| l.contains(&on_a)),
        "no request was cut on A: the kill was not mid-upload"
    );
    let manifest_put = format!("PUT /v2/team/big/manifests/v1 201 upstream={b_addr}");
    assert!(log.contains(&manifest_put), "the manifest was not written through B");
    let cut = log.lines().filter(|l| l.contains(&on_a)).count();
    eprintln!(
        "push through nginx: A killed at {:.1}s, {cut} request(s) cut on A; docker needed a second run: {retried}",
        killed_at.as_secs_f64()
    );

    // Once fail_timeout is over nginx tries A again: refused, the request goes on to B and
    // the client gets its answer all the same.
    let waited = lb.wait_for_answer_from(&format!("{a_addr}, {b_addr}"), "502, 200");
    eprintln!(
        "nginx tried the dead A again and moved the request to B after {:.1}s",
        waited.as_secs_f64()
    );

    // Everything back, by digest, through the balancer and through B directly.
    pull_fresh_and_compare(&d, &image, &id, &pushed);
    assert_served_whole(&lb.url(), "team/big", "v1", &pushed);
    pull_fresh_and_compare(&d, &format!("{b_addr}/team/big:v1"), &id, &pushed);

    // A again, on its old address: it serves what B finished; then B stops, and the balancer
    // sends everything to A, once it has seen A answer again (nginx skips a replica for
    // fail_timeout after a failure and checks it only with real requests).
    let a = replica(&c.garage, 0, &a_addr, &[]);
    pull_fresh_and_compare(&d, &format!("{}/team/big:v1", a.addr), &id, &pushed);
    let waited = lb.wait_for_answer_from(&a_addr, "200");
    eprintln!("nginx sent a request to A again {:.1}s after A was back", waited.as_secs_f64());
    b.stop();
    pull_fresh_and_compare(&d, &image, &id, &pushed);
    assert_served_whole(&lb.url(), "team/big", "v1", &pushed);
}
