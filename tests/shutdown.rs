//! Graceful shutdown and configuration reload: SIGTERM stops accepting, lets an in-flight
//! upload finish within `http.draintimeout` and exits 0, cutting what runs past the deadline;
//! SIGHUP reloads the configuration and refuses a bad one, keeping the running one.

mod common;

use common::api::{self, Registry};
use common::images::{pid_alive, signal_pid, wait_until};
use common::Wharf;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn config(dir: &Path, extra: &str) -> String {
    let path = dir.join("config.yml");
    std::fs::write(
        &path,
        format!("version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /unused\n{extra}"),
    )
    .unwrap();
    path.display().to_string()
}

/// Starts a PATCH whose body (`total` bytes) trickles in over the returned stream; the caller
/// sends the rest. Returns the open connection after the headers and a first piece were sent.
async fn slow_patch(w: &Wharf, reg: &Registry, repo: &str, total: usize) -> (tokio::net::TcpStream, String) {
    let started = reg.start_upload(repo).await;
    let url = reg.url(started.location());
    let path = api::relative(&url);
    let mut s = tokio::net::TcpStream::connect(&w.addr).await.unwrap();
    let head = format!(
        "PATCH {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/octet-stream\r\nContent-Length: {total}\r\n\r\n",
        w.addr
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&vec![7u8; 1000]).await.unwrap();
    (s, path)
}

/// Reads an HTTP/1.1 answer's status line (or None when the connection was cut first).
async fn read_status(s: &mut tokio::net::TcpStream) -> Option<u16> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(20), s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return None,
        }
    }
    String::from_utf8_lossy(&buf).split_whitespace().nth(1)?.parse().ok()
}

fn wait_exit(w: &mut Wharf, limit: Duration) -> std::process::ExitStatus {
    let mut child = w.child.take().expect("server child");
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("wharf did not exit within {limit:?} of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_an_inflight_upload_finish_and_refuses_new_connections() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), "http:\n  draintimeout: 20s\n");
    let mut w = Wharf::start_with(&[&cfg], &[]);
    let reg = Registry::new(&w);
    let total = 3000;
    let (mut s, location) = slow_patch(&w, &reg, "drain/app", total).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    signal_pid(w.pid(), libc::SIGTERM);
    // New connections are refused once the listener is closed.
    let addr = w.addr.clone();
    let refused = wait_until(Duration::from_secs(5), || std::net::TcpStream::connect(&addr).is_err());
    assert!(refused, "wharf still accepts connections after SIGTERM");
    assert!(pid_alive(w.pid()), "wharf exited with an upload in flight");

    // The upload in flight finishes, slowly, and is answered.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        s.write_all(&[7u8; 500]).await.unwrap();
    }
    assert_eq!(
        read_status(&mut s).await,
        Some(202),
        "the in-flight PATCH {location} was not answered"
    );
    drop(s);
    let status = wait_exit(&mut w, Duration::from_secs(15));
    assert_eq!(status.code(), Some(0), "exit status after a graceful shutdown");

    // What the drained request wrote is there after a restart.
    let w2 = Wharf::start_on_root(&w.root, &[], &[]);
    let reg2 = Registry::new(&w2);
    let resp = reg2.get(&location).await;
    resp.expect(204);
    api::assert_upload_range(&resp, total);
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_past_the_drain_deadline_are_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), "http:\n  draintimeout: 1s\n");
    let mut w = Wharf::start_with(&[&cfg], &[]);
    let reg = Registry::new(&w);
    let (mut s, location) = slow_patch(&w, &reg, "cut/app", 1_000_000).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let began = Instant::now();
    signal_pid(w.pid(), libc::SIGTERM);
    let status = wait_exit(&mut w, Duration::from_secs(10));
    let took = began.elapsed();
    assert_eq!(status.code(), Some(0), "exit status after the drain deadline");
    assert!(took >= Duration::from_millis(900), "exited after {took:?}, before the 1s deadline");
    assert!(took < Duration::from_secs(5), "took {took:?} to exit with a 1s deadline");
    // The cut connection is closed without an answer.
    let _ = s.write_all(&[0u8; 1000]).await;
    assert_eq!(read_status(&mut s).await, None, "the cut PATCH {location} got an answer");

    // Nothing of the cut chunk is kept: the session holds what it held before the PATCH.
    let w2 = Wharf::start_on_root(&w.root, &[], &[]);
    let resp = Registry::new(&w2).get(&location).await;
    resp.expect(204);
    api::assert_upload_range(&resp, 0);
}

#[test]
fn a_bad_draintimeout_is_refused_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), "http:\n  draintimeout: soon\n");
    let out = std::process::Command::new(common::wharf_bin())
        .args(["serve", "--addr", "127.0.0.1:0", "--root"])
        .arg(tmp.path().join("data"))
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success(), "wharf started with draintimeout: soon");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("http.draintimeout"), "the error names the key: {err}");
}

fn htpasswd(dir: &Path, name: &str, user: &str, password: &str) -> String {
    let path = dir.join(name);
    let hash = bcrypt::hash(password, 4).unwrap();
    std::fs::write(&path, format!("{user}:{hash}\n")).unwrap();
    path.display().to_string()
}

fn auth_yaml(htpasswd: &str, level: &str) -> String {
    format!("log:\n  level: {level}\nauth:\n  htpasswd:\n    realm: test\n    path: {htpasswd}\n")
}

/// Waits until the server printed `line` `n` times.
fn wait_output(w: &Wharf, line: &str, n: usize) -> bool {
    wait_until(Duration::from_secs(10), || w.output().matches(line).count() >= n)
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_htpasswd_path_and_keeps_the_old_config_when_the_new_one_is_bad() {
    let tmp = tempfile::tempdir().unwrap();
    let first = htpasswd(tmp.path(), "first.htpasswd", "alice", "apple");
    let second = htpasswd(tmp.path(), "second.htpasswd", "bob", "banana");
    let cfg = config(tmp.path(), &auth_yaml(&first, "info"));
    let w = Wharf::start_with(&[&cfg], &[]);
    Registry::with_basic(&w, "alice", "apple").get("/v2/").await.expect(200);
    Registry::with_basic(&w, "bob", "banana").get("/v2/").await.expect(401);

    // A new password file and log level: bob gets in, alice no longer does.
    config(tmp.path(), &auth_yaml(&second, "debug"));
    signal_pid(w.pid(), libc::SIGHUP);
    assert!(wait_output(&w, "configuration reloaded", 1), "no reload reported: {}", w.output());
    Registry::with_basic(&w, "bob", "banana").get("/v2/").await.expect(200);
    Registry::with_basic(&w, "alice", "apple").get("/v2/").await.expect(401);

    // A configuration that does not parse, then one naming a missing file: both refused, bob
    // keeps working, and the server stays up.
    std::fs::write(&cfg, "version: 0.1\nhttp: [not, a, map\n").unwrap();
    signal_pid(w.pid(), libc::SIGHUP);
    let missing = tmp.path().join("missing.htpasswd").display().to_string();
    tokio::time::sleep(Duration::from_millis(500)).await;
    config(tmp.path(), &auth_yaml(&missing, "info"));
    signal_pid(w.pid(), libc::SIGHUP);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(pid_alive(w.pid()), "a bad configuration stopped the server");
    assert_eq!(
        w.output().matches("configuration reloaded").count(),
        1,
        "a bad configuration was applied"
    );
    Registry::with_basic(&w, "bob", "banana").get("/v2/").await.expect(200);
    Registry::with_basic(&w, "alice", "apple").get("/v2/").await.expect(401);

    // Fixed again: applied.
    config(tmp.path(), &auth_yaml(&first, "info"));
    signal_pid(w.pid(), libc::SIGHUP);
    assert!(
        wait_output(&w, "configuration reloaded", 2),
        "the fixed configuration was not applied"
    );
    Registry::with_basic(&w, "alice", "apple").get("/v2/").await.expect(200);
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_applies_access_rules_to_open_connections() {
    let tmp = tempfile::tempdir().unwrap();
    let pw = htpasswd(tmp.path(), "users.htpasswd", "alice", "apple");
    let open = format!(
        "{}access:\n  anonymous:\n    allow: [pull]\n    repositories: ['rules/**']\n",
        auth_yaml(&pw, "info")
    );
    let cfg = config(tmp.path(), &open);
    let w = Wharf::start_with(&[&cfg], &[]);
    let alice = Registry::with_basic(&w, "alice", "apple");
    alice.push_image("rules/app", "v1").await;
    let anonymous = Registry::new(&w);
    anonymous.get_manifest("rules/app", "v1").await.expect(200);

    // Anonymous pulls are withdrawn; the same client (same keep-alive connection) is refused.
    config(tmp.path(), &auth_yaml(&pw, "info"));
    signal_pid(w.pid(), libc::SIGHUP);
    assert!(wait_output(&w, "configuration reloaded", 1), "no reload reported: {}", w.output());
    anonymous.get_manifest("rules/app", "v1").await.expect(401);
    alice.get_manifest("rules/app", "v1").await.expect(200);
}
