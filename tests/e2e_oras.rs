//! The ORAS Python SDK against wharf: push an artifact (two files, custom layer and config media
//! types, annotations) whole and in chunks, pull it back and compare every byte; with a `subject`,
//! find it again through the OCI 1.1 referrers API. The client side lives in
//! tests/fixtures/oras_roundtrip.py; this test runs it and checks what it reports against the
//! registry itself.

mod common;

use std::process::Command;

use common::images::{referenced_digests, registry_blob, registry_manifest, registry_tags, run_unchecked};
use common::Wharf;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/oras_roundtrip.py");

/// True when python3 can import the ORAS SDK; SKIP outside CI, panic in CI otherwise.
fn oras_sdk_available() -> bool {
    if !common::require_tool("python3") {
        return false;
    }
    let ok = Command::new("python3")
        .args(["-c", "import oras.client"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        if common::in_ci() {
            panic!("the oras Python package is required in CI (pip install oras)");
        }
        eprintln!("SKIP: the oras Python package is not installed");
    }
    ok
}

/// Runs the fixture against `w` and returns the JSON summary it prints on success.
fn round_trip(w: &Wharf, extra: &[&str]) -> serde_json::Value {
    let work = tempfile::tempdir().unwrap();
    let out = run_unchecked(Command::new("python3").arg(SCRIPT).arg(&w.addr).arg(work.path()).args(extra));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "oras round trip failed ({}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        out.status
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("ORAS-ROUNDTRIP-OK "))
        .unwrap_or_else(|| panic!("no success line in:\n{stdout}\n{stderr}"));
    serde_json::from_str(line).expect("summary is JSON")
}

/// Checks the artifacts the script reports are what wharf serves, blob by blob.
fn assert_served(w: &Wharf, summary: &serde_json::Value) {
    for tag in ["v1", "v2"] {
        let m = registry_manifest(&w.url, "artifacts/bundle", tag);
        assert_eq!(summary[tag], common::sha256_digest(&m.body), "{tag} digest");
        for d in referenced_digests(&m.body) {
            registry_blob(&w.url, "artifacts/bundle", &d);
        }
    }
}

#[test]
fn artifact_push_and_pull_round_trip() {
    if !oras_sdk_available() {
        return;
    }
    let w = Wharf::start();
    let summary = round_trip(&w, &[]);
    assert_eq!(summary["tags"], serde_json::json!(["v1", "v2"]));
    assert_eq!(registry_tags(&w.url, "artifacts/bundle"), vec!["v1", "v2"]);
    assert_served(&w, &summary);
}

#[test]
fn artifact_with_subject_is_listed_as_referrer() {
    if !oras_sdk_available() {
        return;
    }
    let w = Wharf::start();
    let summary = round_trip(&w, &["--referrers"]);
    assert_served(&w, &summary);
    let referrer = registry_manifest(&w.url, "artifacts/bundle", "sig");
    let doc: serde_json::Value = serde_json::from_slice(&referrer.body).unwrap();
    assert_eq!(doc["subject"]["digest"], summary["v1"], "the referrer names v1 as subject");
    assert_eq!(summary["referrer"], common::sha256_digest(&referrer.body));
}
