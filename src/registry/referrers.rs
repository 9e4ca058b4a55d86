//! The referrers API: manifests whose `subject` is a given manifest, as an OCI image index.

use super::{Registry, Result};
use crate::oci::manifest::Descriptor;
use crate::oci::{Digest, RepoName};
use crate::store::LinkSet;

impl Registry {
    /// Descriptors of the referrers of `subject`, filtered by artifact type when one is given.
    /// A repository nothing was pushed to has none: the spec forbids a 404 from the referrers
    /// API, which clients read as a registry without it.
    pub async fn referrers(&self, repo: &RepoName, subject: &Digest, artifact_type: Option<&str>) -> Result<Vec<Descriptor>> {
        let mut out = Vec::new();
        for digest in self
            .store
            .metadata
            .link_set(&LinkSet::Referrers(repo.clone(), subject.clone()))
            .await?
        {
            let Some(m) = self.manifest_load(&digest).await? else { continue };
            let kind = m.manifest.effective_artifact_type();
            if artifact_type.is_some_and(|want| kind.as_deref() != Some(want)) {
                continue;
            }
            out.push(Descriptor {
                media_type: m.media_type.clone(),
                digest,
                size: m.bytes.len() as u64,
                urls: None,
                annotations: m.manifest.annotations.clone(),
                artifact_type: kind,
                platform: None,
            });
        }
        Ok(out)
    }
}
