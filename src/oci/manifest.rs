//! Manifest and index parsing: just enough to validate what a client sent and to learn what it
//! references. The bytes themselves are never re-serialized; the digest is over what was sent.

use super::digest::Digest;
use super::media;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Manifests larger than this are refused (the limit registries commonly apply; the spec says
/// registries should accept at least 4 MiB).
pub const MAX_MANIFEST_SIZE: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<serde_json::Value>,
}

impl Descriptor {
    /// Layers that name external URLs (foreign / non-distributable) need not be in the registry.
    pub fn is_external(&self) -> bool {
        self.urls.as_ref().is_some_and(|u| !u.is_empty())
    }
}

/// The fields wharf reads; everything else is kept only in the original bytes.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<i64>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    annotations: Option<BTreeMap<String, String>>,
}

/// What a validated manifest tells the registry.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub media_type: String,
    pub artifact_type: Option<String>,
    pub config: Option<Descriptor>,
    /// Blobs an image manifest references (config first, then layers).
    pub blobs: Vec<Descriptor>,
    /// Manifests an index references.
    pub children: Vec<Descriptor>,
    pub subject: Option<Descriptor>,
    pub annotations: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ManifestError(pub String);

fn invalid(msg: impl Into<String>) -> ManifestError {
    ManifestError(msg.into())
}

impl Manifest {
    /// Validates a manifest as received with its `Content-Type` (if any).
    pub fn parse_upload(bytes: &[u8], content_type: Option<&str>) -> Result<Manifest, ManifestError> {
        let raw: RawManifest = serde_json::from_slice(bytes).map_err(|e| invalid(format!("manifest is not valid JSON: {e}")))?;
        let content_type = content_type
            .map(strip_params)
            .filter(|ct| media::is_supported_manifest(ct) || is_schema1(ct));
        if let (Some(ct), Some(body)) = (content_type, raw.media_type.as_deref()) {
            if ct != body {
                return Err(invalid(format!("Content-Type {ct} does not match the manifest's mediaType {body}")));
            }
        }
        let media_type = raw
            .media_type
            .clone()
            .or_else(|| content_type.map(str::to_string))
            .unwrap_or_else(|| infer_media_type(&raw).to_string());
        if is_schema1(&media_type) || raw.schema_version == Some(1) {
            return Err(invalid(
                "Docker schema1 manifests are not supported; push with a current client (schema2 or OCI)",
            ));
        }
        if !media::is_supported_manifest(&media_type) {
            return Err(invalid(format!("unsupported manifest media type {media_type:?}")));
        }
        // Docker's formats always carry mediaType; requiring it keeps GET's inference exact.
        if raw.media_type.is_none() && !media_type.starts_with("application/vnd.oci.") {
            return Err(invalid("Docker manifests must carry their mediaType field"));
        }
        if raw.schema_version != Some(2) {
            return Err(invalid("schemaVersion must be 2"));
        }
        Self::from_raw(raw, media_type)
    }

    /// Parses a manifest already stored (validated when it was pushed, or written by registry:2).
    pub fn parse_stored(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let raw: RawManifest = serde_json::from_slice(bytes).map_err(|e| invalid(format!("stored manifest is not valid JSON: {e}")))?;
        let media_type = raw.media_type.clone().unwrap_or_else(|| infer_media_type(&raw).to_string());
        Self::from_raw(raw, media_type)
    }

    fn from_raw(raw: RawManifest, media_type: String) -> Result<Manifest, ManifestError> {
        let mut blobs = Vec::new();
        let mut children = Vec::new();
        if media::is_index(&media_type) {
            if raw.config.is_some() || raw.layers.is_some() {
                return Err(invalid("an index has manifests, not config or layers"));
            }
            children = raw.manifests.ok_or_else(|| invalid("an index needs a manifests array"))?;
        } else {
            if raw.manifests.is_some() {
                return Err(invalid("an image manifest has config and layers, not manifests"));
            }
            let config = raw
                .config
                .clone()
                .ok_or_else(|| invalid("an image manifest needs a config descriptor"))?;
            let layers = raw.layers.ok_or_else(|| invalid("an image manifest needs a layers array"))?;
            blobs.push(config);
            blobs.extend(layers);
        }
        Ok(Manifest {
            media_type,
            artifact_type: raw.artifact_type,
            config: raw.config,
            blobs,
            children,
            subject: raw.subject,
            annotations: raw.annotations,
        })
    }

    /// The artifact type the referrers API reports: `artifactType`, else the config's media type.
    pub fn effective_artifact_type(&self) -> Option<String> {
        self.artifact_type
            .clone()
            .or_else(|| self.config.as_ref().map(|c| c.media_type.clone()))
    }
}

/// OCI manifests may omit mediaType; their shape says which kind they are.
fn infer_media_type(raw: &RawManifest) -> &'static str {
    if raw.manifests.is_some() {
        media::OCI_INDEX
    } else {
        media::OCI_MANIFEST
    }
}

fn is_schema1(ct: &str) -> bool {
    ct == media::DOCKER_SCHEMA1 || ct == media::DOCKER_SCHEMA1_SIGNED
}

/// `application/json; charset=utf-8` → `application/json`.
pub fn strip_params(ct: &str) -> &str {
    ct.split(';').next().unwrap_or("").trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(data: &[u8]) -> String {
        Digest::sha256_of(data).to_string()
    }

    fn image(extra: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":1}}]{extra}}}"#,
            media::OCI_MANIFEST,
            d(b"{}"),
            d(b"a")
        )
    }

    #[test]
    fn image_manifest_lists_config_then_layers() {
        let m = Manifest::parse_upload(image("").as_bytes(), Some(media::OCI_MANIFEST)).unwrap();
        assert_eq!(m.media_type, media::OCI_MANIFEST);
        assert_eq!(m.blobs.len(), 2);
        assert_eq!(m.blobs[0].digest.to_string(), d(b"{}"));
        assert_eq!(
            m.effective_artifact_type().as_deref(),
            Some("application/vnd.oci.image.config.v1+json")
        );
    }

    #[test]
    fn content_type_must_match_body() {
        let err = Manifest::parse_upload(image("").as_bytes(), Some(media::OCI_INDEX)).unwrap_err();
        assert!(err.0.contains("does not match"), "{err}");
    }

    #[test]
    fn subject_and_artifact_type_are_read() {
        let extra = format!(
            r#","artifactType":"application/x.sig","subject":{{"mediaType":"{}","digest":"{}","size":3}}"#,
            media::OCI_MANIFEST,
            d(b"m")
        );
        let m = Manifest::parse_upload(image(&extra).as_bytes(), None).unwrap();
        assert_eq!(m.subject.as_ref().unwrap().digest.to_string(), d(b"m"));
        assert_eq!(m.effective_artifact_type().as_deref(), Some("application/x.sig"));
    }

    #[test]
    fn rejects_bad_input() {
        assert!(Manifest::parse_upload(b"not json", None).is_err());
        assert!(Manifest::parse_upload(br#"{"schemaVersion":1,"name":"x"}"#, None).is_err());
        let dup = r#"{"schemaVersion":2,"schemaVersion":2,"manifests":[]}"#;
        assert!(Manifest::parse_upload(dup.as_bytes(), None).is_err());
        let no_mt_docker = r#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":1},"layers":[]}"#;
        assert!(Manifest::parse_upload(no_mt_docker.as_bytes(), Some(media::DOCKER_MANIFEST)).is_err());
        let bad_digest = image("").replace(&d(b"a"), "sha256:nothex");
        assert!(Manifest::parse_upload(bad_digest.as_bytes(), None).is_err());
    }

    #[test]
    fn index_without_media_type_is_inferred() {
        let idx = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{}","digest":"{}","size":5}}]}}"#,
            media::OCI_MANIFEST,
            d(b"x")
        );
        let m = Manifest::parse_upload(idx.as_bytes(), Some(media::OCI_INDEX)).unwrap();
        assert_eq!(m.media_type, media::OCI_INDEX);
        assert_eq!(m.children.len(), 1);
        assert_eq!(Manifest::parse_stored(idx.as_bytes()).unwrap().media_type, media::OCI_INDEX);
    }
}
