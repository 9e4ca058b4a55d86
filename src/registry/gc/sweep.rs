//! The sweep: manifests nothing keeps first (their revision, tag-history and referrer links),
//! then blobs nothing marked, each with the layer links that name it. Every deletion goes
//! through the fence (see `fence`), and through the store's conditional delete, so nothing
//! stored or linked after the cut goes. Links go before the content they name: a sweep killed
//! half-way leaves unreferenced content for the next one, never a link to missing content.

use super::mark::Marked;
use super::{BlobRemoval, GcReport, LayerLinkRemoval, ManifestRemoval};
use crate::oci::{Digest, RepoName};
use crate::registry::{Registry, Result};
use crate::store::Link;
use std::time::SystemTime;

/// Blob digests read from the store at a time.
const BLOB_PAGE: usize = 4096;

impl Registry {
    pub(super) async fn gc_sweep_manifests(&self, marked: &Marked, cut: SystemTime, dry_run: bool, report: &mut GcReport) -> Result<()> {
        for (repo, digest) in &marked.manifests {
            let removal = ManifestRemoval {
                repository: repo.to_string(),
                digest: digest.to_string(),
            };
            if dry_run {
                report.manifests_deleted.push(removal);
                continue;
            }
            let deleted = self
                .gc
                .fence
                .unless_touched(digest, async || self.gc_delete_manifest(marked, repo, digest, cut).await)
                .await;
            match deleted {
                Some(Ok(true)) => report.manifests_deleted.push(removal),
                Some(Ok(false)) | None => report.spared += 1,
                Some(Err(e)) => return Err(e),
            }
        }
        Ok(())
    }

    /// Removes one manifest revision and the links that name it; false if it was written
    /// after the cut (pushed again since the mark).
    async fn gc_delete_manifest(&self, marked: &Marked, repo: &RepoName, digest: &Digest, cut: SystemTime) -> Result<bool> {
        let meta = &self.store.metadata;
        let revision = Link::Revision(repo.clone(), digest.clone());
        if meta.link_info(&revision).await?.is_none_or(|l| l.modified >= cut) {
            return Ok(false);
        }
        for tag in marked.tags.get(repo).into_iter().flatten() {
            meta.link_delete(&Link::TagIndex(repo.clone(), tag.clone(), digest.clone())).await?;
        }
        if let Some(subject) = self.manifest_load(digest).await?.and_then(|m| m.manifest.subject.clone()) {
            let referrer = Link::Referrer {
                repo: repo.clone(),
                subject: subject.digest,
                referrer: digest.clone(),
            };
            meta.link_delete(&referrer).await?;
        }
        meta.link_delete(&revision).await?;
        Ok(true)
    }

    pub(super) async fn gc_sweep_blobs(&self, marked: &Marked, cut: SystemTime, dry_run: bool, report: &mut GcReport) -> Result<()> {
        let mut after: Option<Digest> = None;
        loop {
            let page = self.store.blobs.blobs_page(after.as_ref(), BLOB_PAGE).await?;
            let Some(last) = page.last().cloned() else { break };
            for digest in page.into_iter().filter(|d| !marked.live.contains(d)) {
                if marked.recent.contains(&digest) {
                    report.spared += 1;
                    continue;
                }
                let Some(info) = self.store.blobs.blob_stat(&digest).await? else {
                    continue;
                };
                if info.created >= cut {
                    report.spared += 1;
                    continue;
                }
                let links = marked.layer_links.get(&digest).map(Vec::as_slice).unwrap_or_default();
                if dry_run {
                    self.gc_record_blob(report, &digest, info.size, links);
                    continue;
                }
                let deleted = self
                    .gc
                    .fence
                    .unless_touched(&digest, async || self.gc_delete_blob(&digest, links, cut).await)
                    .await;
                match deleted {
                    Some(Ok(true)) => self.gc_record_blob(report, &digest, info.size, links),
                    Some(Ok(false)) | None => report.spared += 1,
                    Some(Err(e)) => return Err(e),
                }
            }
            after = Some(last);
        }
        Ok(())
    }

    /// Removes the layer links to a blob, then the blob; false if the blob is newer than the cut.
    async fn gc_delete_blob(&self, digest: &Digest, links: &[RepoName], cut: SystemTime) -> Result<bool> {
        for repo in links {
            self.store.metadata.link_delete(&Link::Layer(repo.clone(), digest.clone())).await?;
        }
        let deleted = self.store.blobs.blob_delete_if_older_than(digest, cut).await?;
        if deleted {
            self.manifests.remove(digest);
        }
        Ok(deleted)
    }

    fn gc_record_blob(&self, report: &mut GcReport, digest: &Digest, size: u64, links: &[RepoName]) {
        report.bytes_freed += size;
        report.blobs_deleted.push(BlobRemoval {
            digest: digest.to_string(),
            size,
        });
        report.layer_links_deleted.extend(links.iter().map(|r| LayerLinkRemoval {
            repository: r.to_string(),
            digest: digest.to_string(),
        }));
    }
}
