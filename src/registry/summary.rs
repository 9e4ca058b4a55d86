//! What the web UI shows of a repository and its tags: counts, sizes, push times and platforms,
//! read from the index and the manifests, never by walking the store. Viewing is not pulling:
//! nothing here emits events.

use super::{Registry, Result, StoredManifest};
use crate::oci::{Digest, Reference, RepoName, Tag};
use crate::store::Link;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

/// Tags examined at most to add up a repository's size on the repository list; past it the
/// size is a lower bound (`complete` is false). Keeps a list page bounded in time.
const SIZE_TAGS_MAX: usize = 100;

/// The largest config blob read to show an image's history and platform.
const CONFIG_MAX: u64 = 4 * 1024 * 1024;

/// One row of the repository list.
#[derive(Debug, Clone)]
pub struct RepoSummary {
    pub name: String,
    pub tags: usize,
    /// Bytes of the distinct blobs and manifests the tags reach.
    pub bytes: u64,
    /// False when only the first `SIZE_TAGS_MAX` tags were added up.
    pub complete: bool,
    pub last_push: Option<SystemTime>,
}

/// One row of a repository's tag list.
#[derive(Debug, Clone)]
pub struct TagSummary {
    pub tag: String,
    pub digest: Digest,
    pub media_type: String,
    /// `os/architecture[/variant]` of each child of an index; empty for a single image.
    pub platforms: Vec<String>,
    /// The manifest, its config and layers (an index: with its children's).
    pub bytes: u64,
    pub pushed: Option<SystemTime>,
}

/// `os/architecture/variant` of an OCI platform object (or an image config, which has the same keys).
pub fn platform_of(p: &serde_json::Value) -> Option<String> {
    let os = p.get("os")?.as_str()?;
    let arch = p.get("architecture")?.as_str()?;
    let mut s = format!("{os}/{arch}");
    if let Some(v) = p.get("variant").and_then(|v| v.as_str()).filter(|v| !v.is_empty()) {
        s.push('/');
        s.push_str(v);
    }
    Some(s)
}

impl Registry {
    /// Whether DELETE requests can succeed at all (`storage.delete.enabled`, not read-only).
    pub fn deletes_enabled(&self) -> bool {
        self.options.delete_enabled && !self.options.read_only
    }

    /// A manifest of `repo` by tag or digest, for showing it: no pull event.
    pub async fn manifest_inspect(&self, repo: &RepoName, reference: &Reference) -> Result<Arc<StoredManifest>> {
        let digest = self.manifest_resolve(repo, reference).await?;
        self.manifest_load(&digest)
            .await?
            .ok_or_else(|| super::manifests::manifest_unknown(reference))
    }

    /// An image's config blob as JSON, when it is stored and of a sane size.
    pub async fn config_json(&self, digest: &Digest) -> Result<Option<serde_json::Value>> {
        match self.store.blobs.blob_stat(digest).await? {
            Some(info) if info.size <= CONFIG_MAX => {}
            _ => return Ok(None),
        }
        let Some(bytes) = self.store.blobs.blob_bytes(digest).await? else {
            return Ok(None);
        };
        Ok(serde_json::from_slice(&bytes).ok())
    }

    /// Tag count, size and last push of one repository.
    pub async fn repo_summary(&self, repo: &RepoName) -> Result<RepoSummary> {
        let tags = self.store.metadata.tags(repo).await?.unwrap_or_default();
        let mut sizes = HashMap::new();
        let mut last_push = None;
        for tag in tags.iter().take(SIZE_TAGS_MAX) {
            let Some(tag) = Tag::parse(tag) else { continue };
            let Some(info) = self.store.metadata.link_info(&Link::TagCurrent(repo.clone(), tag)).await? else {
                continue;
            };
            last_push = last_push.max(Some(info.modified));
            self.add_sizes(&info.target, &mut sizes).await?;
        }
        Ok(RepoSummary {
            name: repo.to_string(),
            tags: tags.len(),
            bytes: sizes.values().sum(),
            complete: tags.len() <= SIZE_TAGS_MAX,
            last_push,
        })
    }

    /// A page of a repository's tags with what each points at.
    pub async fn tag_summaries(&self, repo: &RepoName, last: Option<&str>, n: usize) -> Result<(Vec<TagSummary>, Option<String>)> {
        let page = self.tags_list(repo, last, Some(n)).await?;
        let mut out = Vec::with_capacity(page.items.len());
        for tag in &page.items {
            let Some(t) = Tag::parse(tag) else { continue };
            let Some(info) = self.store.metadata.link_info(&Link::TagCurrent(repo.clone(), t)).await? else {
                continue;
            };
            let Some(m) = self.manifest_load(&info.target).await? else {
                continue;
            };
            let mut sizes = HashMap::new();
            self.add_sizes(&info.target, &mut sizes).await?;
            out.push(TagSummary {
                tag: tag.clone(),
                digest: info.target.clone(),
                media_type: m.media_type.clone(),
                platforms: m
                    .manifest
                    .children
                    .iter()
                    .filter_map(|c| c.platform.as_ref().and_then(platform_of))
                    .collect(),
                bytes: sizes.values().sum(),
                pushed: Some(info.modified),
            });
        }
        Ok((out, page.next_last))
    }

    /// Adds the manifest `digest` and everything it references (one level of index children)
    /// to `sizes`, keyed by digest so shared content counts once.
    async fn add_sizes(&self, digest: &Digest, sizes: &mut HashMap<Digest, u64>) -> Result<()> {
        let Some(m) = self.manifest_load(digest).await? else {
            return Ok(());
        };
        add_manifest(&m, sizes);
        for child in &m.manifest.children {
            if sizes.contains_key(&child.digest) {
                continue;
            }
            match self.manifest_load(&child.digest).await? {
                Some(c) => add_manifest(&c, sizes),
                None => {
                    sizes.insert(child.digest.clone(), child.size);
                }
            }
        }
        Ok(())
    }
}

fn add_manifest(m: &StoredManifest, sizes: &mut HashMap<Digest, u64>) {
    sizes.insert(m.digest.clone(), m.bytes.len() as u64);
    for d in m.manifest.config.iter().chain(&m.manifest.blobs) {
        sizes.insert(d.digest.clone(), d.size);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_read_like_docker_writes_them() {
        let p = serde_json::json!({"os": "linux", "architecture": "arm", "variant": "v7"});
        assert_eq!(platform_of(&p).as_deref(), Some("linux/arm/v7"));
        let p = serde_json::json!({"os": "linux", "architecture": "amd64", "variant": ""});
        assert_eq!(platform_of(&p).as_deref(), Some("linux/amd64"));
        assert_eq!(platform_of(&serde_json::json!({"os": "linux"})), None);
    }
}
