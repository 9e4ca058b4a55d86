//! The mark phase: what every tag and manifest revision still needs.
//!
//! As registry:2's collector (distribution's `garbagecollect.go`): the roots are the manifest
//! revisions of every repository, or with `deleteuntagged` only those a tag currently points
//! at; a tag's history (`tags/<t>/index`) is not a root, and entries in it for deleted
//! manifests are removed. wharf differs where registry:2 loses data: an index keeps its
//! children (registry:2 before 3.0 deleted the children of a tagged index), a referrer lives as
//! long as its subject does, and an untagged revision written after the cut (a push under way)
//! is kept with everything it references.

use super::super::{Registry, Result};
use super::sweep::PARALLEL;
use crate::oci::{Digest, RegistryError, RepoName, Tag};
use crate::store::{Link, LinkSet};
use futures::{StreamExt, TryStreamExt};
use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

/// What the mark found.
#[derive(Default)]
pub(super) struct Marked {
    /// Every manifest and blob something live needs.
    pub live: HashSet<Digest>,
    /// Manifest revisions nothing keeps (only with `deleteuntagged`).
    pub manifests: Vec<(RepoName, Digest)>,
    /// The repositories linking each blob as a layer, for the blobs that are not live.
    pub layer_links: HashMap<Digest, Vec<RepoName>>,
    /// Blobs a repository linked after the cut: a push under way may still reference them.
    pub recent: HashSet<Digest>,
    /// The tags of each repository with a manifest to delete (their history is cleaned).
    pub tags: HashMap<RepoName, Vec<Tag>>,
    pub repositories: usize,
    /// Shared storage: only these blobs may go (the run's published candidates).
    pub only: Option<HashSet<Digest>>,
    /// Shared storage: what each batch of the sweep checks first.
    pub going: Option<super::shared::Going>,
}

/// One repository's part of the mark.
struct RepoMarked {
    repo: RepoName,
    /// Manifests it keeps and what they reference.
    live: HashSet<Digest>,
    /// Its revisions nothing keeps, in order.
    doomed: Vec<Digest>,
    tags: Vec<Tag>,
    layers: Vec<Digest>,
}

impl Registry {
    /// Marks the repositories `PARALLEL` at a time: on a filesystem each link read is a
    /// blocking call, and many in flight keep both the disk and the cores busy.
    pub(super) async fn gc_mark(&self, delete_untagged: bool, cut: SystemTime) -> Result<Marked> {
        let repos: Vec<RepoName> = self
            .store
            .metadata
            .repositories()
            .await?
            .iter()
            .filter_map(|name| RepoName::parse(name))
            .collect();
        let found: Vec<RepoMarked> = futures::stream::iter(repos.clone())
            .map(|repo| async move { self.gc_mark_repository(&repo, delete_untagged, cut).await })
            .buffered(PARALLEL)
            .try_collect()
            .await?;
        let mut marked = Marked {
            repositories: repos.len(),
            ..Marked::default()
        };
        let mut layers = Vec::new();
        for f in found {
            marked.live.extend(f.live);
            if !f.doomed.is_empty() {
                marked.tags.insert(f.repo.clone(), f.tags);
                marked.manifests.extend(f.doomed.into_iter().map(|d| (f.repo.clone(), d)));
            }
            layers.extend(f.layers.into_iter().map(|d| (f.repo.clone(), d)));
        }
        let unmarked: Vec<(RepoName, Digest)> = layers.into_iter().filter(|(_, d)| !marked.live.contains(d)).collect();
        let times: Vec<(RepoName, Digest, bool)> = futures::stream::iter(unmarked)
            .map(|(repo, d)| async move {
                let link = self.store.metadata.link_info(&Link::Layer(repo.clone(), d.clone())).await?;
                let recent = link.is_some_and(|l| l.modified >= cut);
                Ok::<_, RegistryError>((repo, d, recent))
            })
            .buffered(PARALLEL)
            .try_collect()
            .await?;
        for (repo, d, recent) in times {
            if recent {
                marked.recent.insert(d.clone());
            }
            marked.layer_links.entry(d).or_default().push(repo);
        }
        Ok(marked)
    }

    async fn gc_mark_repository(&self, repo: &RepoName, delete_untagged: bool, cut: SystemTime) -> Result<RepoMarked> {
        let revisions: HashSet<Digest> = self
            .store
            .metadata
            .link_set(&LinkSet::Revisions(repo.clone()))
            .await?
            .into_iter()
            .collect();
        let tags: Vec<Tag> = self
            .store
            .metadata
            .tags(repo)
            .await?
            .unwrap_or_default()
            .iter()
            .filter_map(|t| Tag::parse(t))
            .collect();
        let mut roots = Vec::new();
        for tag in &tags {
            if let Some(d) = self.store.metadata.link_read(&Link::TagCurrent(repo.clone(), tag.clone())).await? {
                roots.push(d);
            }
        }
        if delete_untagged {
            let tagged: HashSet<Digest> = roots.iter().cloned().collect();
            for d in revisions.iter().filter(|d| !tagged.contains(*d)) {
                let link = self.store.metadata.link_info(&Link::Revision(repo.clone(), d.clone())).await?;
                if link.is_some_and(|l| l.modified >= cut) {
                    roots.push(d.clone());
                }
            }
        } else {
            roots.extend(revisions.iter().cloned());
        }
        let mut live_here = HashSet::new();
        let mut live = HashSet::new();
        while let Some(m) = roots.pop() {
            if !live_here.insert(m.clone()) {
                continue;
            }
            live.insert(m.clone());
            match self.manifest_load(&m).await? {
                Some(manifest) => {
                    let manifest = &manifest.manifest;
                    live.extend(manifest.blobs.iter().filter(|b| !b.is_external()).map(|b| b.digest.clone()));
                    roots.extend(manifest.children.iter().map(|c| c.digest.clone()));
                }
                None => {
                    tracing::warn!(repository = %repo, manifest = %m, "garbage collection: a tag or revision names a manifest whose content is missing")
                }
            }
            if delete_untagged {
                let referrers = self.store.metadata.link_set(&LinkSet::Referrers(repo.clone(), m.clone())).await?;
                roots.extend(referrers.into_iter().filter(|r| revisions.contains(r)));
            }
        }
        let mut doomed: Vec<Digest> = revisions.into_iter().filter(|d| !live_here.contains(d)).collect();
        doomed.sort();
        let layers = self.store.metadata.link_set(&LinkSet::Layers(repo.clone())).await?;
        Ok(RepoMarked {
            repo: repo.clone(),
            live,
            doomed,
            tags,
            layers,
        })
    }
}
