//! The sweep: manifests nothing keeps first (their revision, tag-history and referrer links),
//! then blobs nothing marked, each with the layer links that name it. Every deletion goes
//! through the fence (see `fence`), and through the store's conditional delete, so nothing
//! stored or linked after the cut goes. Links go before the content they name: a sweep killed
//! half-way leaves unreferenced content for the next one, never a link to missing content.
//!
//! Deletions run in batches, each under one hold of the fence, and within a batch several at
//! once: on a filesystem every removal is made durable by an fsync of its directory, and the
//! journal commits concurrent fsyncs together, where one after the other each waits for its
//! own commit. Each deletion keeps its own order (links, then content).

use super::mark::Marked;
use super::{BlobRemoval, GcReport, LayerLinkRemoval, ManifestRemoval};
use crate::oci::{Digest, RegistryError, RepoName, Tag};
use crate::registry::{Registry, Result};
use crate::store::{Link, LinkSet};
use futures::{StreamExt, TryStreamExt};
use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

/// Blob digests read from the store at a time.
pub(super) const BLOB_PAGE: usize = 4096;

/// Digests deleted under one hold of the fence. Requests that touch content (every blob GET
/// and push) wait while a batch is deleted, so it stays small.
const BATCH: usize = 64;

/// Deletions, reads and stats in flight at once.
pub(super) const PARALLEL: usize = 16;

/// What became of one unreferenced blob.
enum BlobOutcome {
    /// Already gone (another deletion, or a listing of something that is not a blob).
    Gone,
    /// Stored after the cut, or removed from under a push: kept.
    Kept,
    Deleted(u64),
}

/// The tags whose history names each manifest to delete.
type Histories = HashMap<(RepoName, Digest), Vec<Tag>>;

impl Marked {
    /// Whether the sweep may delete this blob: unmarked, and a candidate if the run has a list.
    fn may_go(&self, d: &Digest) -> bool {
        !self.live.contains(d) && self.only.as_ref().is_none_or(|only| only.contains(d))
    }

    fn check_going(&self) -> Result<()> {
        self.going.as_ref().map_or(Ok(()), |g| g.check())
    }
}

impl Registry {
    pub(super) async fn gc_sweep_manifests(&self, marked: &Marked, cut: SystemTime, dry_run: bool, report: &mut GcReport) -> Result<()> {
        let removal = |(repo, digest): &(RepoName, Digest)| ManifestRemoval {
            repository: repo.to_string(),
            digest: digest.to_string(),
        };
        if dry_run {
            report.manifests_deleted.extend(marked.manifests.iter().map(removal));
            return Ok(());
        }
        let histories = self.gc_tag_histories(marked).await?;
        for batch in marked.manifests.chunks(BATCH) {
            marked.check_going()?;
            let held = self.gc.fence.hold().await;
            let free: Vec<(RepoName, Digest)> = batch.iter().filter(|(_, d)| !held.touched(d)).cloned().collect();
            report.spared += batch.len() - free.len();
            let deleted = self.gc_delete_manifests(free, &histories, cut).await;
            drop(held);
            for (m, deleted) in deleted? {
                match deleted {
                    true => report.manifests_deleted.push(removal(&m)),
                    false => report.spared += 1,
                }
            }
        }
        Ok(())
    }

    /// Deletes manifests `PARALLEL` at a time; each with whether it went.
    async fn gc_delete_manifests(
        &self,
        manifests: Vec<(RepoName, Digest)>,
        histories: &Histories,
        cut: SystemTime,
    ) -> Result<Vec<((RepoName, Digest), bool)>> {
        futures::stream::iter(manifests)
            .map(|m| async move {
                let tags = histories.get(&m).cloned().unwrap_or_default();
                let deleted = self.gc_delete_manifest(&m.0, &m.1, &tags, cut).await?;
                Ok::<_, RegistryError>((m, deleted))
            })
            .buffered(PARALLEL)
            .try_collect()
            .await
    }

    /// Reads the history of every tag in the repositories with manifests to delete, once,
    /// instead of trying to remove every manifest from every tag's history.
    async fn gc_tag_histories(&self, marked: &Marked) -> Result<Histories> {
        let doomed: HashSet<&(RepoName, Digest)> = marked.manifests.iter().collect();
        let tags: Vec<(RepoName, Tag)> = marked
            .tags
            .iter()
            .flat_map(|(repo, tags)| tags.iter().map(move |t| (repo.clone(), t.clone())))
            .collect();
        let read: Vec<(RepoName, Tag, Vec<Digest>)> = futures::stream::iter(tags)
            .map(|(repo, tag)| async move {
                let set = self.store.metadata.link_set(&LinkSet::TagIndex(repo.clone(), tag.clone())).await?;
                Ok::<_, RegistryError>((repo, tag, set))
            })
            .buffer_unordered(PARALLEL)
            .try_collect()
            .await?;
        let mut histories = Histories::new();
        for (repo, tag, digests) in read {
            for d in digests {
                let key = (repo.clone(), d);
                if doomed.contains(&key) {
                    histories.entry(key).or_default().push(tag.clone());
                }
            }
        }
        Ok(histories)
    }

    /// Removes one manifest revision and the links that name it; false if it was written
    /// after the cut (pushed again since the mark).
    async fn gc_delete_manifest(&self, repo: &RepoName, digest: &Digest, tags: &[Tag], cut: SystemTime) -> Result<bool> {
        let meta = &self.store.metadata;
        let revision = Link::Revision(repo.clone(), digest.clone());
        if meta.link_info(&revision).await?.is_none_or(|l| l.modified >= cut) {
            return Ok(false);
        }
        for tag in tags {
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
            let mut unmarked = Vec::new();
            for digest in page.into_iter().filter(|d| marked.may_go(d)) {
                match marked.recent.contains(&digest) {
                    true => report.spared += 1,
                    false => unmarked.push(digest),
                }
            }
            for batch in unmarked.chunks(BATCH) {
                let outcomes = match dry_run {
                    true => self.gc_blob_ages(batch.to_vec(), cut).await?,
                    false => {
                        marked.check_going()?;
                        let held = self.gc.fence.hold().await;
                        let free: Vec<Digest> = batch.iter().filter(|d| !held.touched(d)).cloned().collect();
                        report.spared += batch.len() - free.len();
                        let outcomes = self.gc_delete_blobs(free, marked, cut).await;
                        drop(held);
                        outcomes?
                    }
                };
                for (digest, outcome) in outcomes {
                    let links = marked.layer_links.get(&digest).map(Vec::as_slice).unwrap_or_default();
                    match outcome {
                        BlobOutcome::Gone => {}
                        BlobOutcome::Kept => report.spared += 1,
                        BlobOutcome::Deleted(size) => self.gc_record_blob(report, &digest, size, links),
                    }
                }
            }
            after = Some(last);
        }
        Ok(())
    }

    /// What deleting each blob would do now (a dry run), `PARALLEL` at a time, in order.
    async fn gc_blob_ages(&self, digests: Vec<Digest>, cut: SystemTime) -> Result<Vec<(Digest, BlobOutcome)>> {
        futures::stream::iter(digests)
            .map(|d| async move {
                let outcome = self.gc_blob_age(&d, cut).await?;
                Ok::<_, RegistryError>((d, outcome))
            })
            .buffered(PARALLEL)
            .try_collect()
            .await
    }

    /// Deletes blobs `PARALLEL` at a time, in order.
    async fn gc_delete_blobs(&self, digests: Vec<Digest>, marked: &Marked, cut: SystemTime) -> Result<Vec<(Digest, BlobOutcome)>> {
        futures::stream::iter(digests)
            .map(|d| async move {
                let outcome = self.gc_delete_blob(&d, marked, cut).await?;
                Ok::<_, RegistryError>((d, outcome))
            })
            .buffered(PARALLEL)
            .try_collect()
            .await
    }

    /// What deleting a blob would do now (a dry run).
    async fn gc_blob_age(&self, digest: &Digest, cut: SystemTime) -> Result<BlobOutcome> {
        Ok(match self.store.blobs.blob_stat(digest).await? {
            None => BlobOutcome::Gone,
            Some(info) if info.created >= cut => BlobOutcome::Kept,
            Some(info) => BlobOutcome::Deleted(info.size),
        })
    }

    /// Removes the layer links to a blob, then the blob, unless it is newer than the cut.
    async fn gc_delete_blob(&self, digest: &Digest, marked: &Marked, cut: SystemTime) -> Result<BlobOutcome> {
        let size = match self.gc_blob_age(digest, cut).await? {
            BlobOutcome::Deleted(size) => size,
            other => return Ok(other),
        };
        for repo in marked.layer_links.get(digest).into_iter().flatten() {
            self.store.metadata.link_delete(&Link::Layer(repo.clone(), digest.clone())).await?;
        }
        if !self.store.blobs.blob_delete_if_older_than(digest, cut).await? {
            return Ok(BlobOutcome::Kept);
        }
        self.manifests.remove(digest);
        Ok(BlobOutcome::Deleted(size))
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
