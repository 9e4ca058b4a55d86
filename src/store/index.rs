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

use super::{BlobRead, ByteStream, Link, LinkSet, Store, UploadInfo};
use crate::oci::{Digest, RepoName, Tag};
use async_trait::async_trait;
use bytes::Bytes;
use std::collections::{BTreeSet, HashMap};
use std::io;
use std::ops::Bound;
use std::sync::{Arc, RwLock};
use std::time::Duration;

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
    inner: Arc<dyn Store>,
    index: RwLock<Index>,
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
    pub async fn load(inner: Arc<dyn Store>) -> io::Result<IndexedStore> {
        let repos = inner.repositories().await?.into_iter().collect();
        Ok(IndexedStore {
            inner,
            index: RwLock::new(Index { repos, ..Index::default() }),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies `change` to the index after a write to the store, whatever its outcome; on
    /// failure the store may hold the old or the new state, so what it touched is forgotten.
    async fn after_write<T>(&self, result: io::Result<T>, link: Option<&Link>, change: impl FnOnce(&mut Index)) -> io::Result<T> {
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
    async fn tag_set<R>(&self, repo: &RepoName, view: impl Fn(&BTreeSet<String>) -> R) -> io::Result<Option<R>> {
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
impl Store for IndexedStore {
    async fn blob_size(&self, digest: &Digest) -> io::Result<Option<u64>> {
        self.inner.blob_size(digest).await
    }

    async fn blob_read(&self, digest: &Digest, range: Option<(u64, u64)>) -> io::Result<Option<BlobRead>> {
        self.inner.blob_read(digest, range).await
    }

    async fn blob_bytes(&self, digest: &Digest) -> io::Result<Option<Bytes>> {
        self.inner.blob_bytes(digest).await
    }

    async fn blob_put(&self, digest: &Digest, content: Bytes) -> io::Result<()> {
        self.inner.blob_put(digest, content).await
    }

    async fn upload_create(&self, repo: &RepoName, id: &str) -> io::Result<()> {
        self.inner.upload_create(repo, id).await
    }

    async fn upload_info(&self, repo: &RepoName, id: &str) -> io::Result<Option<UploadInfo>> {
        self.inner.upload_info(repo, id).await
    }

    async fn upload_append(&self, repo: &RepoName, id: &str, body: ByteStream) -> io::Result<u64> {
        self.inner.upload_append(repo, id, body).await
    }

    async fn upload_read(&self, repo: &RepoName, id: &str) -> io::Result<ByteStream> {
        self.inner.upload_read(repo, id).await
    }

    async fn upload_commit(&self, repo: &RepoName, id: &str, digest: &Digest) -> io::Result<()> {
        self.inner.upload_commit(repo, id, digest).await
    }

    async fn upload_delete(&self, repo: &RepoName, id: &str) -> io::Result<bool> {
        self.inner.upload_delete(repo, id).await
    }

    async fn uploads_all(&self) -> io::Result<Vec<(RepoName, String)>> {
        self.inner.uploads_all().await
    }

    async fn purge_temporary(&self, older_than: Duration) -> io::Result<usize> {
        self.inner.purge_temporary(older_than).await
    }

    async fn link_read(&self, link: &Link) -> io::Result<Option<Digest>> {
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

    async fn link_write(&self, link: &Link, target: &Digest) -> io::Result<()> {
        let result = self.inner.link_write(link, target).await;
        self.after_write(result, Some(link), |ix| {
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
        })
        .await
    }

    async fn link_delete(&self, link: &Link) -> io::Result<bool> {
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

    async fn link_set(&self, set: &LinkSet) -> io::Result<Vec<Digest>> {
        self.inner.link_set(set).await
    }

    async fn tag_delete(&self, repo: &RepoName, tag: &Tag) -> io::Result<bool> {
        let result = self.inner.tag_delete(repo, tag).await;
        let current = Link::TagCurrent(repo.clone(), tag.clone());
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

    async fn tags(&self, repo: &RepoName) -> io::Result<Option<Vec<String>>> {
        self.tag_set(repo, |set| set.iter().cloned().collect()).await
    }

    async fn tags_page(&self, repo: &RepoName, last: Option<&str>, limit: usize) -> io::Result<Option<Vec<String>>> {
        self.tag_set(repo, |set| page_after(set.range::<str, _>(after(last)), limit, |_| true))
            .await
    }

    async fn repo_exists(&self, repo: &RepoName) -> io::Result<bool> {
        Ok(self.read().repos.contains(repo.as_str()))
    }

    async fn repositories(&self) -> io::Result<Vec<String>> {
        Ok(self.read().repos.iter().cloned().collect())
    }

    async fn repositories_page(
        &self,
        last: Option<&str>,
        limit: usize,
        keep: &(dyn for<'s> Fn(&'s str) -> bool + Send + Sync),
    ) -> io::Result<Vec<String>> {
        let ix = self.read();
        Ok(page_after(ix.repos.range::<str, _>(after(last)), limit, keep))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fs::FsStore;

    fn repo(s: &str) -> RepoName {
        RepoName::parse(s).unwrap()
    }

    fn tag(s: &str) -> Tag {
        Tag::parse(s).unwrap()
    }

    async fn indexed(root: &std::path::Path) -> (Arc<dyn Store>, IndexedStore) {
        let fs: Arc<dyn Store> = Arc::new(FsStore::new(root).unwrap());
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
}
