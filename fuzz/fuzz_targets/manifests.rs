//! Manifests and indexes as pushed (with a Content-Type chosen by the first byte) and as read
//! back from storage. A manifest that validates must also parse as stored, with the same kind.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf::oci::manifest::Manifest;
use wharf::oci::media;

const TYPES: [Option<&str>; 7] = [
    None,
    Some(media::OCI_MANIFEST),
    Some(media::OCI_INDEX),
    Some(media::DOCKER_MANIFEST),
    Some(media::DOCKER_MANIFEST_LIST),
    Some("application/json; charset=utf-8"),
    Some("application/vnd.docker.distribution.manifest.v1+prettyjws"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let content_type = TYPES[selector as usize % TYPES.len()];
    if let Ok(m) = Manifest::parse_upload(body, content_type) {
        assert!(media::is_supported_manifest(&m.media_type));
        let stored = Manifest::parse_stored(body).expect("an accepted manifest parses as stored");
        assert_eq!(media::is_index(&stored.media_type), media::is_index(&m.media_type));
        assert_eq!(stored.blobs.len(), m.blobs.len());
        assert_eq!(stored.children.len(), m.children.len());
        let _ = m.effective_artifact_type();
    }
    let _ = Manifest::parse_stored(body);
});
