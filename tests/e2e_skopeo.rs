//! skopeo against wharf: copy OCI images and multi-arch indexes from an on-disk OCI layout into
//! the registry and back, and check that every manifest and blob returns byte for byte; inspect,
//! list tags, and delete (refused unless deletes are enabled, as with registry:2).

mod common;

use common::images::{
    layout_blob, registry_blob, registry_manifest, registry_tags, OciLayout, PulledContent, Skopeo, OCI_INDEX, OCI_MANIFEST,
};
use common::Wharf;

/// Ends the test early outside CI when skopeo is missing (require_tool panics in CI).
macro_rules! skopeo_or_skip {
    () => {
        match Skopeo::new() {
            Some(s) => s,
            None => return,
        }
    };
}

#[test]
fn image_round_trip_keeps_manifest_and_every_blob() {
    let sk = skopeo_or_skip!();
    let w = Wharf::start();
    let tmp = tempfile::tempdir().unwrap();
    let mut src = OciLayout::create(&tmp.path().join("src"));
    // One layer large enough to need several reads and writes on the server.
    let img = src.add_image_sized("amd64", &[3000, 5 * 1024 * 1024, 700, 12_000]);
    src.tag_image("v1", &img);
    let dest = format!("docker://{}/team/app:v1", w.addr);

    sk.copy(&src.reference("v1"), &dest, &[]);

    assert_eq!(sk.inspect_raw(&dest), img.manifest, "inspect --raw returns the pushed manifest");
    let served = registry_manifest(&w.url, "team/app", "v1");
    assert_eq!(served.body, img.manifest);
    assert_eq!(served.header("Content-Type"), Some(OCI_MANIFEST));
    for d in img.blob_digests() {
        assert_eq!(registry_blob(&w.url, "team/app", &d), layout_blob(&src.dir, &d));
    }

    let back = tmp.path().join("back");
    sk.copy(&dest, &format!("oci:{}:v1", back.display()), &[]);
    let pulled = PulledContent::read_oci_layout(&back, "v1");
    assert_eq!(pulled.tags["v1"], img.digest);
    pulled.assert_same_tree(&img.manifest, &|d| layout_blob(&src.dir, d));
}

#[test]
fn multi_arch_index_round_trip_with_all() {
    let sk = skopeo_or_skip!();
    let w = Wharf::start();
    let tmp = tempfile::tempdir().unwrap();
    let mut src = OciLayout::create(&tmp.path().join("src"));
    let idx = src.add_index(&["amd64", "arm64"], 3);
    src.tag_index("latest", &idx);
    let dest = format!("docker://{}/team/multi:latest", w.addr);

    sk.copy(&src.reference("latest"), &dest, &["--all"]);

    assert_eq!(sk.inspect_raw(&dest), idx.bytes, "the index is served as pushed");
    let served = registry_manifest(&w.url, "team/multi", "latest");
    assert_eq!(served.header("Content-Type"), Some(OCI_INDEX));
    for img in &idx.images {
        let child = registry_manifest(&w.url, "team/multi", &img.digest);
        assert_eq!(child.body, img.manifest, "child {} by digest", img.digest);
        for d in img.blob_digests() {
            assert_eq!(registry_blob(&w.url, "team/multi", &d), layout_blob(&src.dir, &d));
        }
    }
    // Children pushed by digest must not appear as tags.
    assert_eq!(registry_tags(&w.url, "team/multi"), vec!["latest"]);

    let back = tmp.path().join("back");
    sk.copy(&dest, &format!("oci:{}:latest", back.display()), &["--all"]);
    let pulled = PulledContent::read_oci_layout(&back, "latest");
    assert_eq!(pulled.tags["latest"], idx.digest);
    pulled.assert_same_tree(&idx.bytes, &|d| layout_blob(&src.dir, d));
}

#[test]
fn inspect_and_list_tags() {
    let sk = skopeo_or_skip!();
    let w = Wharf::start();
    let tmp = tempfile::tempdir().unwrap();
    let mut src = OciLayout::create(&tmp.path().join("src"));
    let img = src.add_image("arm64", 2);
    src.tag_image("v1", &img);
    let repo = format!("docker://{}/library/tools", w.addr);
    // The second and third copies find every blob present already.
    for tag in ["v1", "v2", "latest"] {
        sk.copy(&src.reference("v1"), &format!("{repo}:{tag}"), &[]);
    }

    assert_eq!(sk.list_tags(&repo), vec!["latest", "v1", "v2"]);
    assert_eq!(registry_tags(&w.url, "library/tools"), vec!["latest", "v1", "v2"]);
    assert_eq!(sk.inspect_raw(&format!("{repo}:v2")), img.manifest);
    assert_eq!(sk.inspect_raw(&format!("{repo}@{}", img.digest)), img.manifest);

    // Plain inspect reads the config blob through the registry as well.
    let out = common::images::run(sk.cmd("inspect").arg(format!("{repo}:latest")));
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).expect("inspect JSON");
    assert_eq!(info["Digest"], img.digest.as_str());
    assert_eq!(info["Architecture"], "arm64");
    assert_eq!(info["Os"], "linux");
    let layers: Vec<&str> = info["Layers"]
        .as_array()
        .expect("Layers")
        .iter()
        .filter_map(|l| l.as_str())
        .collect();
    assert_eq!(layers, img.layers.iter().map(String::as_str).collect::<Vec<_>>());
}

#[test]
fn delete_removes_the_manifest_when_enabled() {
    let sk = skopeo_or_skip!();
    let w = Wharf::start_with(&[], &[("REGISTRY_STORAGE_DELETE_ENABLED", "true")]);
    let tmp = tempfile::tempdir().unwrap();
    let mut src = OciLayout::create(&tmp.path().join("src"));
    let doomed = src.add_image("amd64", 2);
    let kept = src.add_image("amd64", 2);
    src.tag_image("doomed", &doomed);
    src.tag_image("kept", &kept);
    let repo = format!("docker://{}/team/app", w.addr);
    sk.copy(&src.reference("doomed"), &format!("{repo}:v1"), &[]);
    sk.copy(&src.reference("kept"), &format!("{repo}:keep"), &[]);
    assert_eq!(sk.list_tags(&repo), vec!["keep", "v1"]);

    let out = sk.delete(&format!("{repo}:v1"));
    assert!(
        out.status.success(),
        "skopeo delete failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    assert!(!sk.inspect_unchecked(&format!("{repo}:v1")).status.success(), "tag v1 is gone");
    assert!(
        !sk.inspect_unchecked(&format!("{repo}@{}", doomed.digest)).status.success(),
        "the deleted manifest is not served by digest"
    );
    assert_eq!(sk.list_tags(&repo), vec!["keep"]);
    assert_eq!(sk.inspect_raw(&format!("{repo}:keep")), kept.manifest, "other tags survive");
}

#[test]
fn delete_is_refused_when_deletes_are_disabled() {
    let sk = skopeo_or_skip!();
    let w = Wharf::start();
    let tmp = tempfile::tempdir().unwrap();
    let mut src = OciLayout::create(&tmp.path().join("src"));
    let img = src.add_image("amd64", 1);
    src.tag_image("v1", &img);
    let image = format!("docker://{}/team/app:v1", w.addr);
    sk.copy(&src.reference("v1"), &image, &[]);

    let out = sk.delete(&image);
    assert!(!out.status.success(), "delete must fail while storage.delete is off");
    assert_eq!(sk.inspect_raw(&image), img.manifest, "the manifest is still there");
}
