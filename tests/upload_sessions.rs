//! Upload sessions that outlive the process serving them: resumed after a restart without
//! reading their data back (the hash state is stored like registry:2's), handed over between
//! wharf and distribution on one root in both directions, signed with `http.secret`; one
//! `wharf serve` per root; and a cancel that waits for the chunk being appended.

mod common;

use common::distribution::{v2, Distribution};
use common::images::{http_request, start_pending_upload, HttpResp};
use common::{sha256_digest, Wharf};
use std::path::Path;
use std::time::{Duration, Instant};

const SECRET: &str = "wharf-compat-test-secret";

/// Bytes that do not repeat within a block, so a hash state over them is not a special case.
fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Bytes the process has read through read(2) and friends so far (`rchar` of /proc/PID/io):
/// files and sockets alike, page cache or not. Re-reading a session's data shows here in full.
fn bytes_read_by(pid: u32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).expect("/proc/PID/io");
    io.lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("rchar in /proc/PID/io")
}

/// The path and query of a Location, resolved against another server's base URL: the session
/// moves, the URL the client was given keeps its `_state`.
fn at(base_url: &str, location: &str) -> String {
    let rest = match location.find("/v2/") {
        Some(i) => &location[i..],
        None => panic!("not an upload Location: {location}"),
    };
    format!("{base_url}{rest}")
}

fn with_digest(location: &str, digest: &str) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}digest={digest}")
}

fn ok(r: &HttpResp, status: u16, what: &str) {
    assert_eq!(r.status, status, "{what}: {}", String::from_utf8_lossy(&r.body));
}

fn patch(location: &str, chunk: &[u8]) -> HttpResp {
    http_request("PATCH", location, &[("Content-Type", "application/octet-stream")], chunk.to_vec())
}

fn session_dir(root: &Path, repo: &str, location: &str) -> std::path::PathBuf {
    let id = location.split('?').next().unwrap().rsplit('/').next().unwrap();
    v2(root).join("repositories").join(repo).join("_uploads").join(id)
}

fn sigkill(w: &mut Wharf) {
    if let Some(mut child) = w.child.take() {
        child.kill().expect("SIGKILL wharf");
        child.wait().expect("reap wharf");
    }
}

fn blob_served(base_url: &str, repo: &str, digest: &str, data: &[u8], who: &str) {
    let r = http_request("GET", &format!("{base_url}/v2/{repo}/blobs/{digest}"), &[], Vec::new());
    ok(&r, 200, &format!("{who} serves {digest}"));
    assert!(r.body == data, "{who} serves the bytes pushed for {digest}");
}

/// Resumes `location` on `w` with `rest` then finishes it; returns what the server read
/// meanwhile (request bodies arrive through recv(2), which `rchar` may or may not count, so
/// they are not subtracted: the bound below leaves room for them).
fn finish_counting_reads(w: &Wharf, location: &str, rest: &[u8], digest: &str) -> u64 {
    let before = bytes_read_by(w.pid());
    let r = patch(&at(&w.url, location), rest);
    ok(&r, 202, "PATCH after the restart");
    let next = r.header("Location").expect("Location").to_string();
    let r = http_request("PUT", &with_digest(&at(&w.url, &next), digest), &[], Vec::new());
    ok(&r, 201, "PUT after the restart");
    bytes_read_by(w.pid()) - before
}

#[test]
fn a_session_resumed_after_a_restart_completes_without_reading_its_data_back() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data");
    let (first, rest) = (content(6 << 20, 1), content(300 << 10, 2));
    let whole: Vec<u8> = [first.clone(), rest.clone()].concat();
    let digest = sha256_digest(&whole);

    let mut w = Wharf::start_on_root(&root, &[], &[]);
    let resumed = start_pending_upload(&w.url, "app", &first);
    // The control: the same session, but its hash state lost, so the digest must come from the
    // data. It shows the measure below sees a re-read when there is one.
    let control = start_pending_upload(&w.url, "app", &first);
    let state = session_dir(&root, "app", &resumed).join(format!("hashstates/sha256/{}", first.len()));
    assert_eq!(std::fs::metadata(&state).expect("hash state after the PATCH").len(), 108);
    sigkill(&mut w);
    std::fs::remove_dir_all(session_dir(&root, "app", &control).join("hashstates")).unwrap();

    let w = Wharf::start_on_root(&root, &[], &[]);
    w.wait_for_start_messages();
    let extra = finish_counting_reads(&w, &resumed, &rest, &digest);
    let extra_control = finish_counting_reads(&w, &control, &rest, &digest);
    eprintln!(
        "bytes read by the server while resuming and finishing: {extra} with the hash state, {extra_control} without (session data {} bytes)",
        first.len()
    );
    assert!(
        extra < (rest.len() + (256 << 10)) as u64,
        "resuming read {extra} bytes: the session's {} bytes were read back",
        first.len()
    );
    assert!(
        extra_control >= first.len() as u64,
        "without a hash state the data must be read back, and the measure must see it ({extra_control} bytes)"
    );
    blob_served(&w.url, "app", &digest, &whole, "wharf");
}

#[test]
fn sessions_move_between_wharf_and_distribution_on_one_root() {
    if !Distribution::available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data");
    let env = [("REGISTRY_HTTP_SECRET", SECRET)];
    let (first, rest) = (content(1 << 20, 3), content(100_003, 4));
    let whole: Vec<u8> = [first.clone(), rest.clone()].concat();
    let digest = sha256_digest(&whole);

    // Started by distribution, finished by wharf.
    let mut d = Distribution::start(&root);
    let from_distribution = start_pending_upload(&d.url, "dist/started", &first);
    d.stop();
    let theirs = session_dir(&root, "dist/started", &from_distribution).join(format!("hashstates/sha256/{}", first.len()));
    let theirs = std::fs::read(&theirs).expect("distribution's hash state after its PATCH");
    let mut ours = wharf::oci::hashstate::Sha256::default();
    ours.update(&first);
    assert!(
        ours.save() == theirs,
        "wharf's hash state is byte for byte the one Go's sha256 wrote"
    );

    let mut w = Wharf::start_on_root(&root, &[], &env);
    w.wait_for_start_messages();
    let extra = finish_counting_reads(&w, &from_distribution, &rest, &digest);
    assert!(
        extra < (rest.len() + (256 << 10)) as u64,
        "wharf resumed distribution's session from its hash state, not its data ({extra} bytes read)"
    );
    blob_served(&w.url, "dist/started", &digest, &whole, "wharf");

    // Started by wharf, finished by distribution, which checks wharf's signed _state.
    let other = content(700_001, 5);
    let other_digest = sha256_digest(&[first.clone(), other.clone()].concat());
    let from_wharf = start_pending_upload(&w.url, "wharf/started", &first);
    assert!(
        from_wharf.contains("_state="),
        "with http.secret, Location carries _state: {from_wharf}"
    );
    w.stop();

    let d = Distribution::start(&root);
    let r = patch(&at(&d.url, &from_wharf), &other);
    ok(&r, 202, "distribution continues wharf's session");
    let next = at(&d.url, r.header("Location").expect("Location"));
    let r = http_request("PUT", &with_digest(&next, &other_digest), &[], Vec::new());
    ok(&r, 201, "distribution finishes wharf's session");
    let other_whole = [first.clone(), other].concat();
    blob_served(&d.url, "wharf/started", &other_digest, &other_whole, "distribution");
    blob_served(&d.url, "dist/started", &digest, &whole, "distribution");
    drop(d);

    let w = Wharf::start_on_root(&root, &[], &env);
    blob_served(&w.url, "wharf/started", &other_digest, &other_whole, "wharf");
}

/// Flips one character of the signed JSON's base64 (past the 32-byte MAC), keeping the MAC.
fn tampered(location: &str) -> String {
    let (head, state) = location.split_once("_state=").expect("_state in Location");
    let state = state.split('&').next().unwrap().replace("%3D", "=");
    let mut chars: Vec<char> = state.chars().collect();
    let i = 60;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    format!("{head}_state={}", chars.into_iter().collect::<String>().replace('=', "%3D"))
}

fn refused_as_invalid(r: &HttpResp, what: &str) {
    ok(r, 400, what);
    let body = String::from_utf8_lossy(&r.body);
    assert!(body.contains("BLOB_UPLOAD_INVALID"), "{what}: {body}");
}

#[test]
fn with_http_secret_the_upload_state_is_signed_and_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data");
    let env = [("REGISTRY_HTTP_SECRET", SECRET)];
    let mut w = Wharf::start_on_root(&root, &[], &env);
    let started = http_request("POST", &format!("{}/v2/app/blobs/uploads/", w.url), &[], Vec::new());
    ok(&started, 202, "POST");
    let location = at(&w.url, started.header("Location").unwrap());
    assert!(location.contains("?_state="), "{location}");

    refused_as_invalid(&patch(&tampered(&location), b"abc"), "a tampered state");
    refused_as_invalid(&patch(location.split('?').next().unwrap(), b"abc"), "no state");
    let r = patch(&location, b"abc");
    ok(&r, 202, "PATCH with the state given");
    let next = at(&w.url, r.header("Location").unwrap());
    refused_as_invalid(&patch(&location, b"def"), "the state of an earlier offset");
    refused_as_invalid(
        &http_request("GET", &location.replacen("/app/", "/other/", 1), &[], Vec::new()),
        "another repository's state",
    );
    let r = http_request("GET", &next, &[], Vec::new());
    ok(&r, 204, "GET status with the current state");
    assert_eq!(r.header("Range"), Some("0-2"));

    // Another wharf sharing the secret (the root handed over) continues the session; one with
    // another secret does not.
    w.stop();
    let w = Wharf::start_on_root(&root, &[], &[("REGISTRY_HTTP_SECRET", "another")]);
    refused_as_invalid(&patch(&at(&w.url, &next), b"def"), "a state signed with another secret");
    drop(w);
    let w = Wharf::start_on_root(&root, &[], &env);
    let r = patch(&at(&w.url, &next), b"def");
    ok(&r, 202, "a replica with the same secret continues");
    let done = with_digest(&at(&w.url, r.header("Location").unwrap()), &sha256_digest(b"abcdef"));
    ok(&http_request("PUT", &done, &[], Vec::new()), 201, "PUT");
}

#[test]
fn a_second_wharf_on_the_same_root_is_refused_naming_the_first() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data");
    let mut first = Wharf::start_on_root(&root, &[], &[]);
    let second = std::process::Command::new(common::wharf_bin())
        .args(["serve", "--addr", "127.0.0.1:0", "--root"])
        .arg(&root)
        .env_remove("REGISTRY_HTTP_ADDR")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn the second wharf");
    let out = wait_with_deadline(second, Duration::from_secs(20));
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "the second wharf must fail to start: {said}");
    assert!(said.contains("another wharf is already serving this storage root"), "{said}");
    assert!(said.contains(&format!("pid {} on ", first.pid())), "names the first by pid: {said}");
    assert!(said.contains(", serving since 20"), "says since when: {said}");
    assert!(!said.contains("listening on"), "it never served: {said}");
    // The first is unaffected, and once it dies, even by SIGKILL, the root is free again.
    ok(
        &http_request("GET", &format!("{}/v2/", first.url), &[], Vec::new()),
        200,
        "the first serves",
    );
    sigkill(&mut first);
    let third = Wharf::start_on_root(&root, &[], &[]);
    let lock = std::fs::read_to_string(v2(&root).join("_wharf/lock")).unwrap();
    assert!(lock.contains(&format!("pid: {}\n", third.pid())), "{lock}");
}

fn wait_with_deadline(mut child: std::process::Child, limit: Duration) -> std::process::Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "the second wharf was still running after {limit:?}: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

/// A DELETE sent while a PATCH is still streaming waits for it: the PATCH never answers 202
/// for a session the DELETE already reported removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_racing_a_chunk_waits_for_it() {
    let w = Wharf::start();
    let client = reqwest::Client::new();
    let r = client.post(format!("{}/v2/app/blobs/uploads/", w.url)).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let location = at(&w.url, r.headers()["location"].to_str().unwrap());
    let data = session_dir(&w.root, "app", &location).join("data");

    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let body = reqwest::Body::wrap_stream(tokio_stream_of(rx));
    let patching = {
        let (client, location) = (client.clone(), location.clone());
        tokio::spawn(async move {
            let r = client.patch(&location).body(body).send().await.unwrap();
            (r.status().as_u16(), Instant::now())
        })
    };
    // More than the store's write batch, so part of it is on disk while the body is open.
    tx.send(Ok(vec![7u8; 2 << 20])).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::metadata(&data).map(|m| m.len()).unwrap_or(0) < 1 << 20 {
        assert!(Instant::now() < deadline, "the first part of the chunk never reached the session");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let deleting = {
        let (client, location) = (client.clone(), location.clone());
        tokio::spawn(async move {
            let r = client.delete(&location).send().await.unwrap();
            (r.status().as_u16(), Instant::now())
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!deleting.is_finished(), "the DELETE answered while the PATCH was still appending");
    tx.send(Ok(vec![8u8; 64 << 10])).await.unwrap();
    drop(tx);
    let (patch_status, patched_at) = patching.await.unwrap();
    let (delete_status, deleted_at) = deleting.await.unwrap();
    assert_eq!(patch_status, 202, "the PATCH that was in progress completes");
    assert_eq!(delete_status, 204, "then the DELETE removes the session");
    assert!(deleted_at >= patched_at, "the DELETE answered before the PATCH it waited for");
    let r = client.get(&location).send().await.unwrap();
    assert_eq!(r.status(), 404, "the session is gone");
    assert!(!data.exists(), "its data is gone");
}

fn tokio_stream_of(
    mut rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
