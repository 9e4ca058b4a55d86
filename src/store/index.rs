//! An in-memory index in front of a store: the repository list, each repository's tags, and the
//! links read most (tags, revisions, layers), so the catalog, tag lists and manifest lookups by
//! tag do not touch the filesystem on every request.
//!
//! The index is only ever a copy of what the store holds: the repository list is read from the
//! layout at start, tag lists and links are read on first use, and every write that goes through
//! this wrapper updates or drops what it changes. It assumes this process is the only writer
//! while it runs (another wharf or a registry:2 may share the root only while this one is
//! stopped), which is what registry:2 assumes of its own caches too.
//!
//! A read that misses races with writes: the value read from the store may already be stale when
//! it is stored. Every write bumps a generation counter, and a value read from the store is kept
//! only if no write happened while it was being read.
//!
//! Writes race with each other too: two pushes of one tag rename their links in one order and
//! could update the index in the other, leaving the index on the digest the disk no longer holds.
//! So every write to a link (and a tag's deletion) holds a lock for that tag or link from the
//! store write until the index is updated: the index is changed in the order the disk was.

use super::{Link, LinkInfo, LinkSet, MetadataStore, StoreResult};
use crate::oci::{Digest, RepoName, Tag};
use async_trait::async_trait;
use std::collections::{BTreeSet, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::ops::Bound;
use std::sync::{Arc, RwLock};

/// Locks that serialise writes to one tag or link (store write, then index update); a key maps
/// to one of them by hash, so unrelated writes rarely wait for each other.
const WRITE_LOCK_SHARDS: usize = 64;

/// Links remembered at most; past that the link cache starts over (a tag set is not bounded: it
/// is the index of a repository someone listed).
const LINK_CACHE_MAX: usize = 16 * 1024;

#[derive(Default)]
struct Index {
    generation: u64,
    repos: BTreeSet<String>,
    tags: HashMap<RepoName, BTreeSet<String>>,
    links: HashMap<Link, Option<Digest>>,
}

impl Index {
    fn remember_link(&mut self, link: Link, value: Option<Digest>) {
        if self.links.len() >= LINK_CACHE_MAX && !self.links.contains_key(&link) {
            self.links.clear();
        }
        self.links.insert(link, value);
    }
}

pub struct IndexedStore {
    inner: Arc<dyn MetadataStore>,
    index: RwLock<Index>,
    write_locks: Vec<tokio::sync::Mutex<()>>,
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
    /// Reads the repository list from `inner` once; tags and links are read on first use.
    pub async fn load(inner: Arc<dyn MetadataStore>) -> StoreResult<IndexedStore> {
        let repos = inner.repositories().await?.into_iter().collect();
        Ok(IndexedStore {
            inner,
            index: RwLock::new(Index { repos, ..Index::default() }),
            write_locks: (0..WRITE_LOCK_SHARDS).map(|_| tokio::sync::Mutex::new(())).collect(),
        })
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
                if let Some(r) = repo {
                    if self.inner.repo_exists(&r).await.unwrap_or(false) {
                        self.write().repos.insert(r.as_str().to_string());
                    }
                }
                Err(e)
            }
        }
    }

    /// The repository's tag set, read from the store the first time it is asked for.
    async fn tag_set<R>(&self, repo: &RepoName, view: impl Fn(&BTreeSet<String>) -> R) -> StoreResult<Option<R>> {
        let generation = {
            let ix = self.read();
            if !ix.repos.contains(repo.as_str()) {
                return Ok(None);
            }
            if let Some(set) = ix.tags.get(repo) {
                return Ok(Some(view(set)));
            }
            ix.generation
        };
        let Some(tags) = self.inner.tags(repo).await? else {
            return Ok(None);
        };
        let set: BTreeSet<String> = tags.into_iter().collect();
        let out = view(&set);
        let mut ix = self.write();
        if ix.generation == generation {
            ix.tags.insert(repo.clone(), set);
        }
        Ok(Some(out))
    }
}

/// What the index learns from a write of `target` to `link` the store acknowledged.
fn remember_written(ix: &mut Index, link: &Link, target: &Digest) {
    if let Some(repo) = creates_repository(link) {
        if !ix.repos.contains(repo.as_str()) {
            ix.repos.insert(repo.as_str().to_string());
        }
    }
    if let Link::TagCurrent(repo, tag) = link {
        if let Some(set) = ix.tags.get_mut(repo) {
            set.insert(tag.as_str().to_string());
        }
    }
    ix.remember_link(link.clone(), Some(target.clone()));
}

/// Up to `limit` items of `set` strictly after `last`, in order.
fn page_after<'a>(set: impl IntoIterator<Item = &'a String>, limit: usize, keep: impl Fn(&str) -> bool) -> Vec<String> {
    set.into_iter().filter(|s| keep(s)).take(limit).cloned().collect()
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
                return Ok(v.clone());
            }
            ix.generation
        };
        let value = self.inner.link_read(link).await?;
        let mut ix = self.write();
        if ix.generation == generation {
            ix.remember_link(link.clone(), value.clone());
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
        self.after_write(result, Some(link), |ix| remember_written(ix, link, target)).await
    }

    async fn tag_swap(&self, repo: &RepoName, tag: &Tag, expected: Option<&Digest>, new: &Digest) -> StoreResult<()> {
        let current = Link::TagCurrent(repo.clone(), tag.clone());
        let _ordered = self.lock_writes_to(&current).await;
        let result = self.inner.tag_swap(repo, tag, expected, new).await;
        if result
            .as_ref()
            .is_err_and(|e| e.kind() == super::StoreErrorKind::PreconditionFailed)
        {
            // Refused: nothing changed on the store, so the index keeps what it knows.
            return result;
        }
        self.after_write(result, Some(&current), |ix| remember_written(ix, &current, new))
            .await
    }

    async fn link_delete(&self, link: &Link) -> StoreResult<bool> {
        let _ordered = self.lock_writes_to(link).await;
        let result = self.inner.link_delete(link).await;
        self.after_write(result, Some(link), |ix| {
            // Without `current/link` a tag is no longer listed.
            if let Link::TagCurrent(repo, tag) = link {
                if let Some(set) = ix.tags.get_mut(repo) {
                    set.remove(tag.as_str());
                }
            }
            ix.remember_link(link.clone(), None);
        })
        .await
    }

    async fn link_set(&self, set: &LinkSet) -> StoreResult<Vec<Digest>> {
        self.inner.link_set(set).await
    }

    async fn tag_delete(&self, repo: &RepoName, tag: &Tag) -> StoreResult<bool> {
        let current = Link::TagCurrent(repo.clone(), tag.clone());
        let _ordered = self.lock_writes_to(&current).await;
        let result = self.inner.tag_delete(repo, tag).await;
        self.after_write(result, Some(&current), |ix| {
            if let Some(set) = ix.tags.get_mut(repo) {
                set.remove(tag.as_str());
            }
            ix.links
                .retain(|l, _| !matches!(l, Link::TagIndex(r, t, _) if r == repo && t == tag));
            ix.remember_link(current.clone(), None);
        })
        .await
    }

    async fn tags(&self, repo: &RepoName) -> StoreResult<Option<Vec<String>>> {
        self.tag_set(repo, |set| set.iter().cloned().collect()).await
    }

    async fn tags_page(&self, repo: &RepoName, last: Option<&str>, limit: usize) -> StoreResult<Option<Vec<String>>> {
        self.tag_set(repo, |set| page_after(set.range::<str, _>(after(last)), limit, |_| true))
            .await
    }

    async fn repo_exists(&self, repo: &RepoName) -> StoreResult<bool> {
        Ok(self.read().repos.contains(repo.as_str()))
    }

    async fn repositories(&self) -> StoreResult<Vec<String>> {
        Ok(self.read().repos.iter().cloned().collect())
    }

    async fn repositories_page(
        &self,
        last: Option<&str>,
        limit: usize,
        keep: &(dyn for<'s> Fn(&'s str) -> bool + Send + Sync),
    ) -> StoreResult<Vec<String>> {
        let ix = self.read();
        Ok(page_after(ix.repos.range::<str, _>(after(last)), limit, keep))
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
        let ix = IndexedStore::load(fs.clone()).await.unwrap();
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
        slow: Digest,
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
            if *target == self.slow {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
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
            self.inner.tag_delete(r, t).await
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
            slow: a.clone(),
        });
        let ix = Arc::new(IndexedStore::load(slow).await.unwrap());
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
        assert_eq!(
            refused.kind(),
            super::super::StoreErrorKind::PreconditionFailed,
            "the tag exists now"
        );
        ix.tag_swap(&app, &v1, Some(&a), &b).await.unwrap();
        // `a` is what a writer read before the swap to `b`: stale.
        let stale = ix.tag_swap(&app, &v1, Some(&a), &c).await.unwrap_err();
        assert_eq!(stale.kind(), super::super::StoreErrorKind::PreconditionFailed);
        assert_eq!(fs.link_read(&current).await.unwrap(), Some(b.clone()), "the disk kept b");
        assert_eq!(ix.link_read(&current).await.unwrap(), Some(b), "the index kept b");
        assert_eq!(ix.tags(&app).await.unwrap(), Some(vec!["v1".to_string()]));
    }
}
