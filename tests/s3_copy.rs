//! The commit of large blobs on S3 object storage, on a real Garage: above
//! `multipartcopythresholdsize` the assembled upload is copied to the blob's key in parts
//! (UploadPartCopy of `multipartcopychunksize` ranges), below it with one CopyObject, both
//! with `storageclass`; a copy that fails part-way leaves nothing at the blob's key and the
//! retried commit succeeds. The requests wharf sends are read off a relay in front of Garage
//! (Garage ignores storage classes, so only the wire shows them); the objects are read from
//! the bucket directly with curl's SigV4, and served by distribution on the same bucket.

mod common;

use common::api::{random_bytes, Registry};
use common::distribution::Distribution;
use common::garage::{runtime, Garage, BUCKET, REGION};
use common::images::{layout_blob, run, run_unchecked, wait_until, OciLayout, Skopeo};
use common::recorder::Recorder;
use common::sha256_digest;
use std::process::{Command, Output};
use std::time::Duration;

const MIB: usize = 1 << 20;
/// wharf's part size: S3's smallest, so that small blobs make several parts.
const PART: &str = "5242880";
/// The copy's: another size, so that the blob's part count (in its ETag) tells the copy's
/// parts from the upload's (Garage's CopyObject keeps the source's ETag).
const COPY_PART: usize = 6 * MIB;
const COPY_PART_SETTING: &str = "6291456";

/// curl against the bucket itself (not through the relay), signed with the test's key.
fn bucket_curl(g: &Garage, args: &[&str], key: &str) -> Output {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "60", "--aws-sigv4", &format!("aws:amz:{REGION}:s3")])
        .args(["--user", &format!("{}:{}", g.key_id, g.secret)])
        // S3 wants the payload's hash, which this curl does not send itself: these requests
        // have no body.
        .args([
            "-H",
            "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ])
        .args(args)
        .arg(format!("{}/{BUCKET}/{key}", g.nodes[0].endpoint()));
    run_unchecked(&mut cmd)
}

/// The bucket's key of a blob under rootdirectory `root` (no leading slash).
fn blob_key(root: &str, digest: &str) -> String {
    let hex = digest.trim_start_matches("sha256:");
    format!("{root}/docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2])
}

/// A HEAD of `key` in the bucket: the status and the headers, lower-cased names.
fn bucket_head(g: &Garage, key: &str) -> (u16, Vec<(String, String)>) {
    let out = bucket_curl(g, &["-I", "-o", "/dev/null", "-D", "-"], key);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in HEAD {key}: {text}{}", String::from_utf8_lossy(&out.stderr)));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// The object's bytes, read from the bucket directly.
fn bucket_get(g: &Garage, key: &str) -> Vec<u8> {
    let out = bucket_curl(g, &["--fail"], key);
    assert!(out.status.success(), "GET {key}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// The multipart uploads in progress in the bucket under `prefix` (ListMultipartUploads).
fn uploads_in_progress(g: &Garage, prefix: &str) -> usize {
    // The query in SigV4's canonical order and encoding: curl signs it as written.
    let prefix: String = prefix
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let out = bucket_curl(g, &["--fail"], &format!("?prefix={prefix}&uploads="));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("ListMultipartUploadsResult"), "{text}");
    text.matches("<Upload>").count()
}

/// One curl request as docker sends it; the status and the `Location` answered.
fn curl(method: &str, url: &str, headers: &[&str], body: Option<&[u8]>) -> (u16, Option<String>) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "300", "-X", method, "-o", "/dev/null", "-D", "-"]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    let file = dir.path().join("body");
    std::fs::write(&file, body.unwrap_or_default()).unwrap();
    cmd.arg("--data-binary").arg(format!("@{}", file.display())).arg(url);
    let text = String::from_utf8_lossy(&run(&mut cmd).stdout).into_owned();
    // The last response's head (curl prints a 100 Continue's too).
    let last = text.rsplit("HTTP/1.1 ").next().unwrap_or_default();
    let status = last.split(' ').next().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
    let location = last.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("location").then(|| v.trim().to_string())
    });
    (status, location)
}

/// The registry's `Location` as an absolute URL.
fn absolute(base: &str, location: &str) -> String {
    if location.starts_with('/') {
        format!("{base}{location}")
    } else {
        location.to_string()
    }
}

/// `location` with `?digest=` (or `&digest=`) added: the URL of the closing PUT.
fn with_digest(location: &str, digest: &str) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}digest={digest}")
}

/// POST and one PATCH per piece of `data` between `cuts`, as docker pushes a layer; the
/// Location of the closing PUT, which is not sent.
fn curl_patches(base: &str, repo: &str, data: &[u8], cuts: &[usize]) -> String {
    let (status, location) = curl("POST", &format!("{base}/v2/{repo}/blobs/uploads/"), &[], None);
    assert_eq!(status, 202);
    let mut location = absolute(base, &location.expect("POST answers a Location"));
    let octets = "Content-Type: application/octet-stream";
    for w in cuts.windows(2) {
        let range = format!("Content-Range: {}-{}", w[0], w[1] - 1);
        let (status, next) = curl("PATCH", &location, &[octets, &range], Some(&data[w[0]..w[1]]));
        assert_eq!(status, 202, "PATCH {range}");
        location = absolute(base, &next.expect("PATCH answers a Location"));
    }
    location
}

/// The closing PUT with no body, as docker sends it after its PATCHes.
fn curl_close(location: &str, digest: &str) -> u16 {
    curl(
        "PUT",
        &with_digest(location, digest),
        &["Content-Type: application/octet-stream"],
        None,
    )
    .0
}

/// The requests the relay saw that name `key`.
fn requests_for(recorder: &Recorder, key: &str) -> Vec<String> {
    let path = format!("/{BUCKET}/{key}");
    recorder
        .requests()
        .into_iter()
        .filter(|r| r.split(' ').nth(1).is_some_and(|t| t.split('?').next() == Some(path.as_str())))
        .collect()
}

fn has_header(request: &str, name: &str, value: &str) -> bool {
    request.lines().any(|l| {
        l.split_once(':')
            .is_some_and(|(k, v)| k.eq_ignore_ascii_case(name) && v.trim() == value)
    })
}

/// wharf on the bucket through `relay`, with `PART` and `COPY_PART` sizes, the copy's
/// `threshold` and `concurrency`, and `extra` settings; blob GETs streamed.
fn serve_through(g: &Garage, relay: &Recorder, root: &str, threshold: &str, concurrency: &str, extra: &[(&str, &str)]) -> common::Wharf {
    let endpoint = relay.endpoint();
    let mut settings = vec![
        ("REGISTRY_STORAGE_S3_REGIONENDPOINT", endpoint.as_str()),
        ("REGISTRY_STORAGE_S3_CHUNKSIZE", PART),
        ("REGISTRY_STORAGE_S3_MULTIPARTCOPYCHUNKSIZE", COPY_PART_SETTING),
        ("REGISTRY_STORAGE_S3_MULTIPARTCOPYTHRESHOLDSIZE", threshold),
        ("REGISTRY_STORAGE_S3_MULTIPARTCOPYMAXCONCURRENCY", concurrency),
        ("REGISTRY_STORAGE_REDIRECT_DISABLE", "true"),
    ];
    settings.extend_from_slice(extra);
    g.serve(0, root, &settings)
}

#[test]
fn large_blobs_are_copied_in_parts_small_ones_whole_both_with_the_storage_class() {
    let Some(g) = Garage::single() else { return };
    if !common::require_tool("curl") || !Distribution::available() {
        return;
    }
    let relay = Recorder::start(&g.nodes[0].s3_addr);
    // registry:2 takes the class in any case.
    let class = ("REGISTRY_STORAGE_S3_STORAGECLASS", "reduced_redundancy");
    let w = serve_through(&g, &relay, "/copy", "8388608", "2", &[class]);

    // 23 MiB in three PATCHes: four 5 MiB parts and the tail at `_uploads/<id>/data`, then
    // above the 8 MiB threshold four UploadPartCopy of 6 MiB (the last 5 MiB).
    let big = random_bytes(23 * MIB);
    let d_big = sha256_digest(&big);
    let location = curl_patches(&w.url, "copy/big", &big, &[0, 8 * MIB, 16 * MIB, big.len()]);
    assert_eq!(curl_close(&location, &d_big), 201, "{}", w.errors());
    // 7 MiB in one PATCH: one 5 MiB part and the tail, under the threshold: one CopyObject.
    let small = random_bytes(7 * MIB);
    let d_small = sha256_digest(&small);
    let location = curl_patches(&w.url, "copy/small", &small, &[0, small.len()]);
    assert_eq!(curl_close(&location, &d_small), 201, "{}", w.errors());

    let (k_big, k_small) = (blob_key("copy", &d_big), blob_key("copy", &d_small));
    // The bytes at the blob keys, read from the bucket straight.
    assert_eq!(sha256_digest(&bucket_get(&g, &k_big)), d_big);
    assert_eq!(sha256_digest(&bucket_get(&g, &k_small)), d_small);
    let (status, big_head) = bucket_head(&g, &k_big);
    assert_eq!(status, 200);
    let (_, small_head) = bucket_head(&g, &k_small);
    eprintln!("HEAD of the multipart-copied blob: {big_head:?}\nHEAD of the CopyObject blob: {small_head:?}");
    // A multipart object's ETag counts its parts: four copied, not the upload's five.
    let etag = header(&big_head, "etag").expect("ETag");
    assert!(etag.trim_matches('"').ends_with("-4"), "ETag {etag}: not four parts");
    assert_eq!(header(&big_head, "content-length"), Some(big.len().to_string().as_str()));
    assert_eq!(header(&small_head, "content-length"), Some(small.len().to_string().as_str()));

    // What wharf sent for each blob key.
    let big_requests = requests_for(&relay, &k_big);
    let creates: Vec<&String> = big_requests
        .iter()
        .filter(|r| r.starts_with("POST ") && r.contains("?uploads"))
        .collect();
    assert_eq!(creates.len(), 1, "one CreateMultipartUpload at the blob key: {big_requests:#?}");
    assert!(
        has_header(creates[0], "x-amz-storage-class", "REDUCED_REDUNDANCY"),
        "{}",
        creates[0]
    );
    let part_copies: Vec<&String> = big_requests
        .iter()
        .filter(|r| r.starts_with("PUT ") && r.contains("partNumber=") && r.to_ascii_lowercase().contains("x-amz-copy-source-range:"))
        .collect();
    let mut ranges: Vec<String> = part_copies
        .iter()
        .filter_map(|r| {
            r.lines().find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("x-amz-copy-source-range:")
                    .map(|v| v.trim().to_string())
            })
        })
        .collect();
    ranges.sort_by_key(|r| r.trim_start_matches("bytes=").split('-').next().and_then(|n| n.parse::<u64>().ok()));
    let expected: Vec<String> = (0..4)
        .map(|i| format!("bytes={}-{}", i * COPY_PART, ((i + 1) * COPY_PART).min(big.len()) - 1))
        .collect();
    assert_eq!(ranges, expected, "UploadPartCopy of 6 MiB ranges covering the blob");
    assert!(
        !big_requests.iter().any(|r| r.starts_with("PUT ") && !r.contains("partNumber=")),
        "no CopyObject of the large blob: {big_requests:#?}"
    );
    let small_requests = requests_for(&relay, &k_small);
    let copies: Vec<&String> = small_requests.iter().filter(|r| r.starts_with("PUT ")).collect();
    assert_eq!(copies.len(), 1, "one CopyObject for the small blob: {small_requests:#?}");
    assert!(!copies[0].contains("partNumber="), "{}", copies[0]);
    assert!(copies[0].to_ascii_lowercase().contains("x-amz-copy-source:"), "{}", copies[0]);
    assert!(has_header(copies[0], "x-amz-storage-class", "REDUCED_REDUNDANCY"), "{}", copies[0]);
    assert_eq!(
        uploads_in_progress(&g, "copy/docker/registry/v2/blobs/"),
        0,
        "no copy left unfinished"
    );

    // skopeo pushes a 16 MiB layer in one PATCH: four parts of 5 MiB uploaded, three of 6 MiB
    // copied.
    let Some(sk) = Skopeo::new() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut layout = OciLayout::create(dir.path());
    let image = layout.add_image_sized("amd64", &[16 * MIB]);
    layout.tag_image("v1", &image);
    sk.copy(&layout.reference("v1"), &format!("docker://{}/copy/skopeo:v1", w.addr), &[]);
    let layer = &image.layers[0];
    let (_, head) = bucket_head(&g, &blob_key("copy", layer));
    let etag = header(&head, "etag").expect("ETag");
    assert!(etag.trim_matches('"').ends_with("-3"), "ETag {etag}: not three parts");

    // Served by wharf and by distribution on the same bucket, byte for byte.
    let dist = Distribution::start_on_storage(&g.distribution_storage(0, "/copy"), "", &["AWS_CA_BUNDLE"]);
    let (rw, rd) = (Registry::at_url(&w.url), Registry::at_url(&dist.url));
    let layer_bytes = layout_blob(dir.path(), layer);
    runtime().block_on(async {
        for r in [&rw, &rd] {
            for (repo, digest, bytes) in [
                ("copy/big", &d_big, &big),
                ("copy/small", &d_small, &small),
                ("copy/skopeo", layer, &layer_bytes),
            ] {
                let got = r.get(&format!("/v2/{repo}/blobs/{digest}")).await;
                got.expect(200);
                assert!(got.body == *bytes, "{repo} {digest} through {}", r.url("/"));
            }
        }
        let manifest = rd.get_manifest("copy/skopeo", "v1").await;
        manifest.expect(200);
    });
}

#[test]
fn a_copy_that_fails_part_way_leaves_no_blob_and_the_retried_commit_finishes_it() {
    let Some(mut g) = Garage::single() else { return };
    if !common::require_tool("curl") {
        return;
    }
    let relay = Recorder::start(&g.nodes[0].s3_addr);
    let w = serve_through(&g, &relay, "/fail", PART, "1", &[]);
    let big = random_bytes(23 * MIB);
    let digest = sha256_digest(&big);
    let key = blob_key("fail", &digest);
    let location = curl_patches(&w.url, "fail/app", &big, &[0, 12 * MIB, big.len()]);

    // 23 MiB: five parts uploaded, four copied. The second UploadPartCopy is held; meanwhile Garage stops, so it and every retry fail.
    let hex = digest.trim_start_matches("sha256:");
    relay.hold_on(&format!("{hex}/data?partNumber=2&"));
    let closing = {
        let location = location.clone();
        let digest = digest.clone();
        std::thread::spawn(move || curl_close(&location, &digest))
    };
    assert!(
        relay.wait_holding(Duration::from_secs(120)),
        "the copy never reached its second part"
    );
    g.nodes[0].stop();
    relay.release();
    let status = closing.join().unwrap();
    assert!(status >= 500, "a commit whose copy failed answers a server error, not {status}");

    g.restart(0);
    assert!(
        wait_until(Duration::from_secs(60), || bucket_curl(
            &g,
            &["--fail", "-o", "/dev/null"],
            "?prefix=x&uploads="
        )
        .status
        .success()),
        "Garage did not come back:\n{}",
        g.nodes[0].log()
    );
    // Nothing at the blob key: the copy was a multipart upload never completed (its abort
    // failed too, with the store down, so it is still in progress).
    assert_eq!(bucket_head(&g, &key).0, 404, "a failed copy left an object at the blob key");
    assert_eq!(uploads_in_progress(&g, &key), 1, "the failed copy's multipart upload");
    runtime().block_on(async {
        let r = Registry::at_url(&w.url);
        assert_eq!(r.head(&format!("/v2/fail/app/blobs/{digest}")).await.status, 404);
    });

    // The client retries its PUT: the session is intact, the copy runs again and the earlier
    // one is aborted.
    assert_eq!(curl_close(&location, &digest), 201, "{}", w.errors());
    assert_eq!(sha256_digest(&bucket_get(&g, &key)), digest);
    let (_, head) = bucket_head(&g, &key);
    let etag = header(&head, "etag").expect("ETag");
    assert!(etag.trim_matches('"').ends_with("-4"), "ETag {etag}: not the copy's four parts");
    assert_eq!(
        uploads_in_progress(&g, &key),
        0,
        "the failed copy's upload was aborted by the retry"
    );
    runtime().block_on(async {
        let got = Registry::at_url(&w.url).get(&format!("/v2/fail/app/blobs/{digest}")).await;
        got.expect(200);
        assert!(got.body == big);
    });
}
