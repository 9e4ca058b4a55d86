//! An in-memory index in front of the metadata store: the repository list, each repository's
//! tags, and the links read most (tags, revisions, layers), so the catalog, tag lists and
//! manifest lookups by tag do not touch the store on every request.
//!
//! The index is only ever a cache of what the store holds, in one of two coherence modes:
//! - [`Coherence::SingleWriter`]: this process is the only writer while it runs (registry:2
//!   assumes the same of its caches). The repository list is read at start, tag lists and links
//!   on first use, absent links are remembered too, and every write through this wrapper updates
//!   or drops what it changes.
//! - [`Coherence::Shared`]: other processes (replicas) write the same store. Nothing that another
//!   writer can make untrue is answered from memory: no links at all (not even those naming
//!   content by digest: another replica's delete makes them untrue), no repository existence,
//!   no tag lists. The one
//!   exception, stated as such: catalog pages come from a listing of the repositories at most
//!   [`CATALOG_STALE_FOR`] old (what this process writes is applied to it at once), since a
//!   listing costs one request per 1,000 keys of the bucket. `repositories()` itself, which
//!   garbage collection and retention read, always lists the store.
//!
//! Caches are bounded and evict what is used least (quick_cache's S3-FIFO) instead of starting
//! over when full.
//!
//! A read that misses races with writes: the value read from the store may already be stale when
//! it is stored. Every write bumps a generation counter, and a value read from the store is kept
//! only if no write happened while it was being read.
//!
//! Writes race with each other too: two pushes of one tag rename their links in one order and
//! could update the index in the other, leaving the index on the digest the disk no longer holds.
//! So every write to a link, a tag's swap and a tag's deletion holds a lock for that tag or link
//! from the store write until the index is updated: the index changes in the order the store did.

use super::usage::UsageIndex;
use super::{BlobStore, Link, LinkInfo, LinkSet, MetadataStore, StoreErrorKind, StoreResult};
use crate::oci::{Digest, RepoName, Tag};
use async_trait::async_trait;
use bytes::Bytes;
use quick_cache::sync::Cache;
use std::collections::BTreeSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::ops::Bound;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Locks that serialise writes to one tag or link (store write, then index update); a key maps
/// to one of them by hash, so unrelated writes rarely wait for each other.
const WRITE_LOCK_SHARDS: usize = 64;

/// Links remembered at most.
const LINK_CACHE_MAX: usize = 16 * 1024;

/// Repositories whose tag list is remembered at most (each the whole list of one repository).
const TAG_SETS_MAX: usize = 1024;

/// Repository names copied out of the index at a time for a catalog page, so that the caller's
/// filter runs without the index locked.
const CATALOG_CHUNK: usize = 256;

/// How old the repository listing behind a catalog page may be in [`Coherence::Shared`] mode: a
/// repository another replica creates or deletes shows in this replica's catalog within this
/// time (registry:2's catalog, a walk of the bucket per request, gives no snapshot either).
pub const CATALOG_STALE_FOR: Duration = Duration::from_secs(5);

/// Shared mode: the repositories as listed from the store, and when that listing began.
struct CatalogSnapshot {
    listed_at: Instant,
    repos: Arc<BTreeSet<String>>,
}

/// Who else may write the store the index caches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coherence {
    /// Nobody: every write goes through this index.
    SingleWriter,
    /// Other processes too: only what they cannot make untrue is cached.
    Shared,
}

type TagSet = Arc<Mutex<BTreeSet<String>>>;

struct Index {
    generation: u64,
    /// Every repository (single writer only).
    repos: BTreeSet<String>,
    tags: Cache<RepoName, TagSet>,
    links: Cache<Link, Option<Digest>>,
}

fn set_of(set: &TagSet) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
    set.lock().unwrap_or_else(|e| e.into_inner())
}

pub struct IndexedStore {
    inner: Arc<dyn MetadataStore>,
    coherence: Coherence,
    index: RwLock<Index>,
    write_locks: Vec<tokio::sync::Mutex<()>>,
    /// Per-repository usage (single writer only: another writer's changes would go unseen).
    usage: Option<Arc<UsageIndex>>,
    /// Shared mode: the listing catalog pages are answered from (see [`CATALOG_STALE_FOR`]).
    catalog: Mutex<Option<CatalogSnapshot>>,
    /// [`CATALOG_STALE_FOR`], shorter in tests.
    catalog_stale_for: Duration,
    /// Held while the catalog is listed again, so that requests arriving meanwhile wait for that
    /// one listing instead of each starting its own.
    catalog_listing: tokio::sync::Mutex<()>,
}

/// What a write to `link` must be ordered with: everything of its tag (the `current` link, the
/// tag's history, its deletion), or else the link itself.
fn write_key(link: &Link) -> u64 {
    let mut h = DefaultHasher::new();
    match link {
        Link::TagCurrent(repo, tag) | Link::TagIndex(repo, tag, _) => (repo, tag).hash(&mut h),
        other => other.hash(&mut h),
    }
    h.finish()
}

/// The repository a link makes exist: links under `_layers` and `_manifests` do (registry:2's
/// rule), wharf's own referrer links do not.
fn creates_repository(link: &Link) -> Option<&RepoName> {
    match link {
        Link::Layer(r, _) | Link::Revision(r, _) | Link::TagCurrent(r, _) | Link::TagIndex(r, _, _) => Some(r),
        Link::Referrer { .. } => None,
    }
}

impl IndexedStore {
    /// With a single writer, reads the repository list from `inner` once; tags and links are
    /// read on first use.
    pub async fn load(inner: Arc<dyn MetadataStore>, coherence: Coherence) -> StoreResult<IndexedStore> {
        let repos = match coherence {
            Coherence::SingleWriter => inner.repositories().await?.into_iter().collect(),
            Coherence::Shared => BTreeSet::new(),
        };
        Ok(IndexedStore {
            inner,
            coherence,
            index: RwLock::new(Index {
                generation: 0,
                repos,
                tags: Cache::new(TAG_SETS_MAX),
                links: Cache::new(LINK_CACHE_MAX),
            }),
            write_locks: (0..WRITE_LOCK_SHARDS).map(|_| tokio::sync::Mutex::new(())).collect(),
            usage: None,
            catalog: Mutex::new(None),
            catalog_stale_for: CATALOG_STALE_FOR,
            catalog_listing: tokio::sync::Mutex::new(()),
        })
    }

    /// Also keeps per-repository usage, built now from the store's links and `blobs`' sizes.
    /// Only a single writer can keep it true; a shared index keeps none.
    pub async fn with_usage(mut self, blobs: Arc<dyn BlobStore>) -> StoreResult<IndexedStore> {
        if self.single_writer() {
            self.usage = Some(Arc::new(UsageIndex::load(self.inner.as_ref(), blobs).await?));
        }
        Ok(self)
    }

    fn single_writer(&self) -> bool {
        self.coherence == Coherence::SingleWriter
    }

    /// Whether a link's value may be answered from memory in this mode. Never when the store is
    /// shared: even a link naming content by digest, true as long as it exists, is made untrue
    /// by another replica's delete (a manifest or layer deleted by digest), and a replica must
    /// see that at once. Reading the link costs one small GET; the content behind it is still
    /// cached by digest above the store.
    fn cacheable(&self) -> bool {
        self.single_writer()
    }

    fn remember_link(&self, ix: &Index, link: &Link, value: Option<Digest>) {
        if self.cacheable() {
            ix.links.insert(link.clone(), value);
        } else {
            ix.links.remove(link);
        }
    }

    /// Held across a store write and the index update that follows it.
    async fn lock_writes_to(&self, link: &Link) -> tokio::sync::MutexGuard<'_, ()> {
        self.write_locks[(write_key(link) % WRITE_LOCK_SHARDS as u64) as usize].lock().await
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies `change` to the index after a write to the store, whatever its outcome; on
    /// failure the store may hold the old or the new state, so what it touched is forgotten.
    async fn after_write<T>(&self, result: StoreResult<T>, link: Option<&Link>, change: impl FnOnce(&mut Index)) -> StoreResult<T> {
        match result {
            Ok(v) => {
                let mut ix = self.write();
                ix.generation += 1;
                change(&mut ix);
                Ok(v)
            }
            Err(e) => {
                let repo = link.and_then(creates_repository).cloned();
                {
                    let mut ix = self.write();
                    ix.generation += 1;
                    if let Some(l) = link {
                        ix.links.remove(l);
                    }
                    if let Some(r) = &repo {
                        ix.tags.remove(r);
                    }
                }
                // Directories may have been created before the failure.
                if let Some(r) = repo.filter(|_| self.single_writer()) {
                    if self.inner.repo_exists(&r).await.unwrap_or(false) {
                        self.write().repos.insert(r.as_str().to_string());
                    }
                }
                Err(e)
            }
        }
    }

    /// The shared catalog snapshot, if there is one, to change in place.
    fn catalog(&self) -> std::sync::MutexGuard<'_, Option<CatalogSnapshot>> {
        self.catalog.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fresh_catalog(&self) -> Option<Arc<BTreeSet<String>>> {
        let snapshot = self.catalog();
        let s = snapshot.as_ref()?;
        (s.listed_at.elapsed() < self.catalog_stale_for).then(|| s.repos.clone())
    }

    /// Shared mode: the repositories as listed at most [`CATALOG_STALE_FOR`] ago. The age counts
    /// from when the listing began, so nothing older than that is ever answered.
    async fn catalog_snapshot(&self) -> StoreResult<Arc<BTreeSet<String>>> {
        if let Some(repos) = self.fresh_catalog() {
            return Ok(repos);
        }
        let _one = self.catalog_listing.lock().await;
        if let Some(repos) = self.fresh_catalog() {
            return Ok(repos);
        }
        let listed_at = Instant::now();
        let repos = Arc::new(self.inner.repositories().await?.into_iter().collect::<BTreeSet<_>>());
        *self.catalog() = Some(CatalogSnapshot {
            listed_at,
            repos: repos.clone(),
        });
        Ok(repos)
    }

    /// What the index learns from a write of `target` to `link` the store acknowledged.
    fn remember_written(&self, ix: &mut Index, link: &Link, target: &Digest) {
        if let Some(repo) = creates_repository(link) {
            if self.single_writer() {
                if !ix.repos.contains(repo.as_str()) {
                    ix.repos.insert(repo.as_str().to_string());
                }
            } else if let Some(s) = self.catalog().as_mut() {
                // This replica's own pushes are in its catalog at once.
                if !s.repos.contains(repo.as_str()) {
                    Arc::make_mut(&mut s.repos).insert(repo.as_str().to_string());
                }
            }
        }
        if let Link::TagCurrent(repo, tag) = link {
            if let Some(set) = ix.tags.get(repo) {
                set_of(&set).insert(tag.as_str().to_string());
            }
        }
        self.remember_link(ix, link, Some(target.clone()));
    }

    /// The repository's tag set, read from the store the first time it is asked for (every
    /// time when the store is shared).
    async fn tag_set<R>(&self, repo: &RepoName, view: impl Fn(&BTreeSet<String>) -> R) -> StoreResult<Option<R>> {
        if !self.single_writer() {
            let Some(tags) = self.inner.tags(repo).await? else {
                return Ok(None);
            };
            return Ok(Some(view(&tags.into_iter().collect())));
        }
        let generation = {
            let ix = self.read();
            if !ix.repos.contains(repo.as_str()) {
                return Ok(None);
            }
            if let Some(set) = ix.tags.get(repo) {
                return Ok(Some(view(&set_of(&set))));
            }
            ix.generation
        };
        let Some(tags) = self.inner.tags(repo).await? else {
            return Ok(None);
        };
        let set: BTreeSet<String> = tags.into_iter().collect();
        let out = view(&set);
        let ix = self.write();
        if ix.generation == generation {
            ix.tags.insert(repo.clone(), Arc::new(Mutex::new(set)));
        }
        Ok(Some(out))
    }
}

/// Up to `limit` items of `set` strictly after `last`, in order.
fn page_after<'a>(set: impl IntoIterator<Item = &'a String>, limit: usize) -> Vec<String> {
    set.into_iter().take(limit).cloned().collect()
}

fn after(last: Option<&str>) -> (Bound<&str>, Bound<&str>) {
    match last {
        Some(l) => (Bound::Excluded(l), Bound::Unbounded),
        None => (Bound::Unbounded, Bound::Unbounded),
    }
}

#[async_trait]
impl MetadataStore for IndexedStore {
    async fn link_read(&self, link: &Link) -> StoreResult<Option<Digest>> {
        let generation = {
            let ix = self.read();
            if let Some(v) = ix.links.get(link) {
                return Ok(v);
            }
            ix.generation
        };
        let value = self.inner.link_read(link).await?;
        let ix = self.write();
        if ix.generation == generation {
            self.remember_link(&ix, link, value.clone());
        }
        Ok(value)
    }

    async fn link_info(&self, link: &Link) -> StoreResult<Option<LinkInfo>> {
        // Times are not cached: only garbage collection asks for them.
        self.inner.link_info(link).await
    }

    async fn link_write(&self, link: &Link, target: &Digest) -> StoreResult<()> {
        let _ordered = self.lock_writes_to(link).await;
        let result = self.inner.link_write(link, target).await;
        self.after_write(result, Some(link), |ix| self.remember_written(ix, link, target))
            .await?;
        if let Some(u) = &self.usage {
            u.link_written(link, target).await;
        }
        Ok(())
    }

    async fn link_delete(&self, link: &Link) -> StoreResult<bool> {
        let _ordered = self.lock_writes_to(link).await;
        let result = self.inner.link_delete(link).await;
        let result = self
            .after_write(result, Some(link), |ix| {
                // Without `current/link` a tag is no longer listed.
                if let Link::TagCurrent(repo, tag) = link {
                    if let Some(set) = ix.tags.get(repo) {
                        set_of(&set).remove(tag.as_str());
                    }
                }
                self.remember_link(ix, link, None);
            })
            .await;
        if let (Ok(true), Some(u)) = (&result, &self.usage) {
            u.link_deleted(link);
        }
        result
    }

    async fn link_set(&self, set: &LinkSet) -> StoreResult<Vec<Digest>> {
        self.inner.link_set(set).await
    }

    async fn tag_swap(&self, repo: &RepoName, tag: &Tag, expected: Option<&Digest>, new: &Digest) -> StoreResult<()> {
        let current = Link::TagCurrent(repo.clone(), tag.clone());
        let _ordered = self.lock_writes_to(&current).await;
        let result = self.inner.tag_swap(repo, tag, expected, new).await;
        if result.as_ref().is_err_and(|e| e.kind() == StoreErrorKind::PreconditionFailed) {
            // Refused: nothing changed in the store, so the index keeps what it knows.
            return result;
        }
        self.after_write(result, Some(&current), |ix| self.remember_written(ix, &current, new))
            .await?;
        if let Some(u) = &self.usage {
            u.link_written(&current, new).await;
        }
        Ok(())
    }

    async fn tag_delete(&self, repo: &RepoName, tag: &Tag) -> StoreResult<bool> {
        let current = Link::TagCurrent(repo.clone(), tag.clone());
        let _ordered = self.lock_writes_to(&current).await;
        let history = self.inner.link_set(&LinkSet::TagIndex(repo.clone(), tag.clone())).await;
        let result = self.inner.tag_delete(repo, tag).await;
        let result = self
            .after_write(result, Some(&current), |ix| {
                if let Some(set) = ix.tags.get(repo) {
                    set_of(&set).remove(tag.as_str());
                }
                // The tag's history went with it; what could not be listed is dropped wholesale.
                match &history {
                    Ok(digests) => {
                        for d in digests {
                            ix.links.remove(&Link::TagIndex(repo.clone(), tag.clone(), d.clone()));
                        }
                    }
                    Err(_) => ix
                        .links
                        .retain(|l, _| !matches!(l, Link::TagIndex(r, t, _) if r == repo && t == tag)),
                }
                self.remember_link(ix, &current, None);
            })
            .await;
        if let (Ok(true), Some(u)) = (&result, &self.usage) {
            u.tag_deleted(repo, tag.as_str());
        }
        result
    }

    async fn repo_delete(&self, repo: &RepoName) -> StoreResult<bool> {
        let result = self.inner.repo_delete(repo).await;
        // Whatever the outcome, nothing cached of the repository is trusted any more.
        {
            let mut ix = self.write();
            ix.generation += 1;
            ix.tags.remove(repo);
            ix.links.retain(|l, _| {
                creates_repository(l).or(match l {
                    Link::Referrer { repo, .. } => Some(repo),
                    _ => None,
                }) != Some(repo)
            });
        }
        if !self.single_writer() {
            if let (Ok(_), Some(s)) = (&result, self.catalog().as_mut()) {
                if s.repos.contains(repo.as_str()) {
                    Arc::make_mut(&mut s.repos).remove(repo.as_str());
                }
            }
        }
        if self.single_writer() {
            let still_there = match &result {
                Ok(_) => false,
                Err(_) => self.inner.repo_exists(repo).await.unwrap_or(true),
            };
            if !still_there {
                self.write().repos.remove(repo.as_str());
                if let Some(u) = &self.usage {
                    u.repo_deleted(repo);
                }
            }
        }
        result
    }

    async fn activity_read(&self, repo: &RepoName) -> StoreResult<Option<Bytes>> {
        self.inner.activity_read(repo).await
    }

    async fn activity_write(&self, repo: &RepoName, content: Bytes) -> StoreResult<()> {
        self.inner.activity_write(repo, content).await
    }

    fn usage(&self) -> Option<Arc<UsageIndex>> {
        self.usage.clone()
    }

    async fn tags(&self, repo: &RepoName) -> StoreResult<Option<Vec<String>>> {
        self.tag_set(repo, |set| set.iter().cloned().collect()).await
    }

    async fn tags_page(&self, repo: &RepoName, last: Option<&str>, limit: usize) -> StoreResult<Option<Vec<String>>> {
        if !self.single_writer() {
            // Read through, a page at a time (the store may list less than every tag for it).
            return self.inner.tags_page(repo, last, limit).await;
        }
        self.tag_set(repo, |set| page_after(set.range::<str, _>(after(last)), limit)).await
    }

    async fn repo_exists(&self, repo: &RepoName) -> StoreResult<bool> {
        if !self.single_writer() {
            return self.inner.repo_exists(repo).await;
        }
        Ok(self.read().repos.contains(repo.as_str()))
    }

    async fn repositories(&self) -> StoreResult<Vec<String>> {
        if !self.single_writer() {
            return self.inner.repositories().await;
        }
        Ok(self.read().repos.iter().cloned().collect())
    }

    async fn repositories_page(
        &self,
        last: Option<&str>,
        limit: usize,
        keep: &(dyn for<'s> Fn(&'s str) -> bool + Send + Sync),
    ) -> StoreResult<Vec<String>> {
        if !self.single_writer() {
            let repos = self.catalog_snapshot().await?;
            return Ok(repos
                .range::<str, _>(after(last))
                .filter(|r| keep(r))
                .take(limit)
                .cloned()
                .collect());
        }
        let mut out = Vec::new();
        let mut cursor = last.map(str::to_string);
        while out.len() < limit {
            // Copied under the lock; `keep` (the caller's access check, which may be slow) runs
            // once it is released, so it never holds up writes.
            let chunk: Vec<String> = page_after(self.read().repos.range::<str, _>(after(cursor.as_deref())), CATALOG_CHUNK);
            let Some(last_of_chunk) = chunk.last().cloned() else { break };
            let room = limit - out.len();
            out.extend(chunk.into_iter().filter(|r| keep(r)).take(room));
            cursor = Some(last_of_chunk);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fs::FsStore;
    use std::time::Duration;

    fn repo(s: &str) -> RepoName {
        RepoName::parse(s).unwrap()
    }

    fn tag(s: &str) -> Tag {
        Tag::parse(s).unwrap()
    }

    async fn indexed(root: &std::path::Path) -> (Arc<dyn MetadataStore>, IndexedStore) {
        let fs: Arc<dyn MetadataStore> = Arc::new(FsStore::new(root).unwrap());
        let ix = IndexedStore::load(fs.clone(), Coherence::SingleWriter).await.unwrap();
        (fs, ix)
    }

    #[tokio::test]
    async fn index_follows_writes_and_matches_a_fresh_walk() {
        let t = tempfile::tempdir().unwrap();
        let d1 = Digest::sha256_of(b"one");
        let d2 = Digest::sha256_of(b"two");
        let (fs, _) = indexed(t.path()).await;
        fs.link_write(&Link::Layer(repo("pre/existing"), d1.clone()), &d1).await.unwrap();
        // What the layout held when the index loaded is in it.
        let (_, ix) = indexed(t.path()).await;
        assert_eq!(ix.repositories().await.unwrap(), vec!["pre/existing".to_string()]);

        let app = repo("a/app");
        assert_eq!(ix.tags(&app).await.unwrap(), None);
        ix.link_write(&Link::Revision(app.clone(), d1.clone()), &d1).await.unwrap();
        assert_eq!(ix.tags(&app).await.unwrap(), Some(vec![]));
        for (name, d) in [("v2", &d2), ("v1", &d1), ("latest", &d2)] {
            ix.link_write(&Link::TagCurrent(app.clone(), tag(name)), d).await.unwrap();
        }
        assert_eq!(ix.tags(&app).await.unwrap().unwrap(), vec!["latest", "v1", "v2"]);
        assert_eq!(ix.tags_page(&app, Some("latest"), 1).await.unwrap().unwrap(), vec!["v1"]);
        assert_eq!(
            ix.link_read(&Link::TagCurrent(app.clone(), tag("v1"))).await.unwrap(),
            Some(d1.clone())
        );
        ix.link_write(&Link::TagCurrent(app.clone(), tag("v1")), &d2).await.unwrap();
        assert_eq!(
            ix.link_read(&Link::TagCurrent(app.clone(), tag("v1"))).await.unwrap(),
            Some(d2.clone())
        );
        assert!(ix.tag_delete(&app, &tag("v2")).await.unwrap());
        assert_eq!(ix.link_read(&Link::TagCurrent(app.clone(), tag("v2"))).await.unwrap(), None);

        // What the index says is what a fresh walk of the disk says.
        let (_, fresh) = indexed(t.path()).await;
        assert_eq!(ix.repositories().await.unwrap(), fresh.repositories().await.unwrap());
        assert_eq!(ix.tags(&app).await.unwrap(), fresh.tags(&app).await.unwrap());
        assert_eq!(ix.tags(&app).await.unwrap(), fs.tags(&app).await.unwrap());
        let keep_a = |r: &str| r.starts_with("a/");
        assert_eq!(fresh.repositories_page(None, 10, &keep_a).await.unwrap(), vec!["a/app"]);
        assert_eq!(
            fresh.repositories_page(Some("a/app"), 10, &|_| true).await.unwrap(),
            vec!["pre/existing"]
        );
    }

    /// The filesystem store with the write of one digest slowed after it landed on disk: the
    /// interleaving of two pushes of one tag where the first rename finishes last in the index.
    struct SlowAfterWrite {
        inner: Arc<dyn MetadataStore>,
        slow: Slow,
    }

    /// Which writes return late.
    enum Slow {
        /// Link writes of this digest.
        WritesOf(Digest),
        /// The first write of any kind (a link write or a tag deletion), whatever comes second
        /// reaches the store while it is still returning.
        FirstWrite(std::sync::atomic::AtomicBool),
    }

    impl SlowAfterWrite {
        async fn delay_after(&self, written: Option<&Digest>) {
            let slow = match &self.slow {
                Slow::WritesOf(d) => written == Some(d),
                Slow::FirstWrite(first) => first.swap(false, std::sync::atomic::Ordering::SeqCst),
            };
            if slow {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    }

    #[async_trait]
    impl MetadataStore for SlowAfterWrite {
        async fn link_read(&self, l: &Link) -> StoreResult<Option<Digest>> {
            self.inner.link_read(l).await
        }
        async fn link_info(&self, l: &Link) -> StoreResult<Option<LinkInfo>> {
            self.inner.link_info(l).await
        }
        async fn link_write(&self, l: &Link, target: &Digest) -> StoreResult<()> {
            self.inner.link_write(l, target).await?;
            self.delay_after(Some(target)).await;
            Ok(())
        }
        async fn link_delete(&self, l: &Link) -> StoreResult<bool> {
            self.inner.link_delete(l).await
        }
        async fn link_set(&self, set: &LinkSet) -> StoreResult<Vec<Digest>> {
            self.inner.link_set(set).await
        }
        async fn tag_swap(&self, r: &RepoName, t: &Tag, expected: Option<&Digest>, new: &Digest) -> StoreResult<()> {
            self.inner.tag_swap(r, t, expected, new).await
        }
        async fn tag_delete(&self, r: &RepoName, t: &Tag) -> StoreResult<bool> {
            let deleted = self.inner.tag_delete(r, t).await?;
            self.delay_after(None).await;
            Ok(deleted)
        }
        async fn tags(&self, r: &RepoName) -> StoreResult<Option<Vec<String>>> {
            self.inner.tags(r).await
        }
        async fn repo_exists(&self, r: &RepoName) -> StoreResult<bool> {
            self.inner.repo_exists(r).await
        }
        async fn repositories(&self) -> StoreResult<Vec<String>> {
            self.inner.repositories().await
        }
    }

    #[tokio::test]
    async fn concurrent_writes_to_one_tag_leave_the_index_on_what_the_disk_holds() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (Digest::sha256_of(b"pushed first"), Digest::sha256_of(b"pushed second"));
        let fs: Arc<dyn MetadataStore> = Arc::new(FsStore::new(t.path()).unwrap());
        let slow = Arc::new(SlowAfterWrite {
            inner: fs.clone(),
            slow: Slow::WritesOf(a.clone()),
        });
        let ix = Arc::new(IndexedStore::load(slow, Coherence::SingleWriter).await.unwrap());
        let latest = Link::TagCurrent(repo("ci/app"), tag("latest"));
        // A lands on disk first but is slow to return; B is written while A is still returning.
        let first = tokio::spawn({
            let (ix, latest, a) = (ix.clone(), latest.clone(), a.clone());
            async move { ix.link_write(&latest, &a).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        ix.link_write(&latest, &b).await.unwrap();
        first.await.unwrap().unwrap();
        let on_disk = fs.link_read(&latest).await.unwrap();
        assert_eq!(on_disk, Some(b.clone()), "the second write is the last rename");
        assert_eq!(
            ix.link_read(&latest).await.unwrap(),
            on_disk,
            "the index serves what the disk holds"
        );

        // A tag deletion racing a slow write of the same tag is ordered the same way.
        let rewrite = tokio::spawn({
            let (ix, latest, a) = (ix.clone(), latest.clone(), a.clone());
            async move { ix.link_write(&latest, &a).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(ix.tag_delete(&repo("ci/app"), &tag("latest")).await.unwrap());
        rewrite.await.unwrap().unwrap();
        assert_eq!(fs.link_read(&latest).await.unwrap(), None);
        assert_eq!(ix.link_read(&latest).await.unwrap(), None);
        assert_eq!(ix.tags(&repo("ci/app")).await.unwrap(), Some(vec![]));
    }

    #[tokio::test]
    async fn a_tag_swap_with_a_stale_expected_value_is_refused_and_changes_nothing() {
        let t = tempfile::tempdir().unwrap();
        let (fs, ix) = indexed(t.path()).await;
        let (app, v1) = (repo("cas/app"), tag("v1"));
        let (a, b, c) = (Digest::sha256_of(b"a"), Digest::sha256_of(b"b"), Digest::sha256_of(b"c"));
        let current = Link::TagCurrent(app.clone(), v1.clone());
        ix.tag_swap(&app, &v1, None, &a).await.unwrap();
        let refused = ix.tag_swap(&app, &v1, None, &b).await.unwrap_err();
        assert_eq!(refused.kind(), StoreErrorKind::PreconditionFailed, "the tag exists now");
        ix.tag_swap(&app, &v1, Some(&a), &b).await.unwrap();
        // `a` is what a writer read before the swap to `b`: stale.
        let stale = ix.tag_swap(&app, &v1, Some(&a), &c).await.unwrap_err();
        assert_eq!(stale.kind(), StoreErrorKind::PreconditionFailed);
        assert_eq!(fs.link_read(&current).await.unwrap(), Some(b.clone()), "the disk kept b");
        assert_eq!(ix.link_read(&current).await.unwrap(), Some(b), "the index kept b");
        assert_eq!(ix.tags(&app).await.unwrap(), Some(vec!["v1".to_string()]));
    }

    #[tokio::test]
    async fn a_slow_tag_delete_racing_a_write_leaves_the_index_on_what_the_disk_holds() {
        let t = tempfile::tempdir().unwrap();
        let fs: Arc<dyn MetadataStore> = Arc::new(FsStore::new(t.path()).unwrap());
        let (app, latest_tag) = (repo("ci/app"), tag("latest"));
        let latest = Link::TagCurrent(app.clone(), latest_tag.clone());
        let (a, b) = (Digest::sha256_of(b"before the delete"), Digest::sha256_of(b"pushed during it"));
        fs.link_write(&latest, &a).await.unwrap();
        let slow = Arc::new(SlowAfterWrite {
            inner: fs.clone(),
            slow: Slow::FirstWrite(true.into()),
        });
        let ix = Arc::new(IndexedStore::load(slow, Coherence::SingleWriter).await.unwrap());
        assert_eq!(ix.link_read(&latest).await.unwrap(), Some(a), "cached before the race");
        // The delete lands on disk first but is slow to return; B is pushed meanwhile.
        let delete = tokio::spawn({
            let (ix, app, latest_tag) = (ix.clone(), app.clone(), latest_tag.clone());
            async move { ix.tag_delete(&app, &latest_tag).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        ix.link_write(&latest, &b).await.unwrap();
        assert!(delete.await.unwrap().unwrap());
        let on_disk = fs.link_read(&latest).await.unwrap();
        assert_eq!(on_disk, Some(b), "the write is the last change on disk");
        assert_eq!(
            ix.link_read(&latest).await.unwrap(),
            on_disk,
            "the index serves what the disk holds"
        );
        assert_eq!(ix.tags(&app).await.unwrap(), Some(vec!["latest".to_string()]));
    }

    #[tokio::test]
    async fn the_catalog_filter_runs_with_the_index_unlocked() {
        let t = tempfile::tempdir().unwrap();
        // More repositories than one chunk, made as registry:2 lays them out.
        for i in 0..(CATALOG_CHUNK + 10) {
            let layers = t.path().join(format!("docker/registry/v2/repositories/r/{i:04}/_layers"));
            std::fs::create_dir_all(layers).unwrap();
        }
        let (_, ix) = indexed(t.path()).await;
        let unlocked_every_time = std::sync::atomic::AtomicBool::new(true);
        let keep = |name: &str| {
            if ix.index.try_write().is_err() {
                unlocked_every_time.store(false, std::sync::atomic::Ordering::SeqCst);
            }
            name.ends_with('3')
        };
        // The 26 matches after r/0005 span two chunks: r/0013 to r/0253 in the first, r/0263 next.
        let page = ix.repositories_page(Some("r/0005"), 30, &keep).await.unwrap();
        assert!(
            unlocked_every_time.load(std::sync::atomic::Ordering::SeqCst),
            "keep ran under the lock"
        );
        let want: Vec<String> = (6..(CATALOG_CHUNK + 10))
            .map(|i| format!("r/{i:04}"))
            .filter(|r| r.ends_with('3'))
            .collect();
        assert_eq!(page.len(), 26);
        assert_eq!(page, want, "pages across chunks in order");
        let first_two = ix.repositories_page(Some("r/0005"), 2, &keep).await.unwrap();
        assert_eq!(first_two, want[..2].to_vec(), "stops at the limit");
    }

    #[tokio::test]
    async fn a_shared_index_answers_what_another_writer_changed() {
        let t = tempfile::tempdir().unwrap();
        let other: Arc<dyn MetadataStore> = Arc::new(FsStore::new(t.path()).unwrap());
        let ix = IndexedStore::load(other.clone(), Coherence::Shared).await.unwrap();
        let app = repo("replica/app");
        let d = Digest::sha256_of(b"manifest");
        let (revision, current) = (Link::Revision(app.clone(), d.clone()), Link::TagCurrent(app.clone(), tag("v1")));
        assert_eq!(ix.link_read(&revision).await.unwrap(), None);
        assert!(!ix.repo_exists(&app).await.unwrap());
        assert_eq!(ix.tags(&app).await.unwrap(), None);
        // Another replica pushes: nothing absent was remembered, and existence is not cached.
        other.link_write(&revision, &d).await.unwrap();
        other.link_write(&current, &d).await.unwrap();
        assert_eq!(ix.link_read(&revision).await.unwrap(), Some(d.clone()));
        assert!(ix.repo_exists(&app).await.unwrap());
        assert_eq!(ix.repositories().await.unwrap(), vec!["replica/app".to_string()]);
        assert_eq!(ix.tags(&app).await.unwrap(), Some(vec!["v1".to_string()]));
        assert_eq!(ix.link_read(&current).await.unwrap(), Some(d.clone()));
        // ... and moves the tag away: a tag is never answered from memory.
        assert!(other.tag_delete(&app, &tag("v1")).await.unwrap());
        assert_eq!(ix.link_read(&current).await.unwrap(), None);
        // ... and deletes the manifest by digest: a link this index has read is not kept either.
        assert!(other.link_delete(&revision).await.unwrap());
        assert_eq!(ix.link_read(&revision).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_shared_catalog_is_at_most_its_staleness_old_and_has_this_replicas_own_writes_at_once() {
        let t = tempfile::tempdir().unwrap();
        let other: Arc<dyn MetadataStore> = Arc::new(FsStore::new(t.path()).unwrap());
        let mut ix = IndexedStore::load(other.clone(), Coherence::Shared).await.unwrap();
        ix.catalog_stale_for = Duration::from_millis(300);
        let keep = |_: &str| true;
        let d = Digest::sha256_of(b"layer");
        other.link_write(&Link::Layer(repo("a/one"), d.clone()), &d).await.unwrap();
        assert_eq!(ix.repositories_page(None, 10, &keep).await.unwrap(), vec!["a/one".to_string()]);
        // Another replica creates a repository: not in this catalog until the listing is old...
        other.link_write(&Link::Layer(repo("b/two"), d.clone()), &d).await.unwrap();
        assert_eq!(ix.repositories_page(None, 10, &keep).await.unwrap(), vec!["a/one".to_string()]);
        // ... but in the full list at once (what collection reads), and this replica's own push
        // is in its catalog at once.
        assert_eq!(ix.repositories().await.unwrap(), vec!["a/one".to_string(), "b/two".to_string()]);
        ix.link_write(&Link::Layer(repo("c/three"), d.clone()), &d).await.unwrap();
        assert_eq!(
            ix.repositories_page(Some("a/one"), 10, &keep).await.unwrap(),
            vec!["c/three".to_string()]
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            ix.repositories_page(None, 2, &keep).await.unwrap(),
            vec!["a/one".to_string(), "b/two".to_string()],
            "listed again once older than its staleness"
        );
    }
}
