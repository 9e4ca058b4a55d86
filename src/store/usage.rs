//! What each repository holds, kept in memory by the index: the blobs it links (layers, configs,
//! manifests) with their sizes, its tags with their last push and pull, its last push and pull.
//! Built once at start from the store's link sets and blob sizes, then kept current by every
//! link write and delete going through the index, so a usage page never walks the store.
//!
//! A repository's bytes are split by who else holds them: `unique` counts blobs no other
//! repository links (what deleting the repository would free once collected), `shared` those
//! at least one other repository links too. Both are summed over the repository's own links
//! when asked, from a blob table that counts how many repositories link each blob.
//!
//! Pull times are kept across restarts in a small file per repository (the store's
//! `activity`), written at most once a minute per tag, so pulls do not cost a disk write each.
//! Push times come from the tag links' write times, which the store keeps anyway.

use super::{BlobStore, Link, LinkSet, MetadataStore, StoreResult};
use crate::oci::{Digest, RepoName};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A pull of a tag is written to disk at most this often.
pub const PULL_PERSIST_EVERY: Duration = Duration::from_secs(60);

/// Repositories read at once while the index is built.
const LOAD_PARALLELISM: usize = 16;

/// Names copied out at a time for a page, so the caller's filter runs without the lock.
const PAGE_CHUNK: usize = 256;

/// One repository's figures, as the usage API reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoUsage {
    pub name: String,
    pub tags: usize,
    pub manifests: usize,
    pub unique_bytes: u64,
    pub shared_bytes: u64,
    pub last_push: Option<SystemTime>,
    pub last_pull: Option<SystemTime>,
}

/// When a tag was last moved and last pulled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TagTimes {
    pub pushed: Option<SystemTime>,
    pub pulled: Option<SystemTime>,
}

#[derive(Default)]
struct RepoEntry {
    layers: HashSet<Digest>,
    revisions: HashSet<Digest>,
    tags: HashMap<String, TagTimes>,
    last_push: Option<SystemTime>,
    last_pull: Option<SystemTime>,
    /// When each tag's pull ("" for pulls by digest) was last written to disk.
    persisted: HashMap<String, SystemTime>,
}

impl RepoEntry {
    fn links(&self, d: &Digest) -> bool {
        self.layers.contains(d) || self.revisions.contains(d)
    }
}

struct BlobEntry {
    size: u64,
    /// Repositories linking the blob (as a layer, a manifest revision or both).
    holders: u32,
}

#[derive(Default)]
struct State {
    repos: BTreeMap<String, RepoEntry>,
    blobs: HashMap<Digest, BlobEntry>,
}

/// The on-disk form of a repository's pull times (seconds since the epoch).
#[derive(Serialize, Deserialize, Default)]
struct ActivityFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lastpull: Option<u64>,
    #[serde(default)]
    tags: BTreeMap<String, u64>,
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn from_secs(s: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(s)
}

/// Which of a repository's link sets a link belongs to.
enum Kind {
    Layer,
    Revision,
}

pub struct UsageIndex {
    blobs: Arc<dyn BlobStore>,
    state: Mutex<State>,
}

/// A repository as read from the store at start.
struct Loaded {
    name: String,
    entry: RepoEntry,
}

async fn load_repo(store: &dyn MetadataStore, name: String) -> StoreResult<Option<Loaded>> {
    let Some(repo) = RepoName::parse(&name) else { return Ok(None) };
    let layers: HashSet<Digest> = store.link_set(&LinkSet::Layers(repo.clone())).await?.into_iter().collect();
    let mut last_push = None;
    let mut revisions = HashSet::new();
    for d in store.link_set(&LinkSet::Revisions(repo.clone())).await? {
        if let Some(info) = store.link_info(&Link::Revision(repo.clone(), d.clone())).await? {
            last_push = last_push.max(Some(info.modified));
        }
        revisions.insert(d);
    }
    let activity: ActivityFile = match store.activity_read(&repo).await? {
        Some(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
        None => ActivityFile::default(),
    };
    let mut tags = HashMap::new();
    for tag in store.tags(&repo).await?.unwrap_or_default() {
        let Some(t) = crate::oci::Tag::parse(&tag) else { continue };
        let pushed = store.link_info(&Link::TagCurrent(repo.clone(), t)).await?.map(|i| i.modified);
        last_push = last_push.max(pushed);
        let pulled = activity.tags.get(&tag).copied().map(from_secs);
        tags.insert(tag, TagTimes { pushed, pulled });
    }
    let entry = RepoEntry {
        layers,
        revisions,
        tags,
        last_push,
        last_pull: activity.lastpull.map(from_secs),
        persisted: HashMap::new(),
    };
    Ok(Some(Loaded { name, entry }))
}

impl UsageIndex {
    /// Reads every repository's links, tags and pull times, and the size of every blob linked.
    pub async fn load(store: &dyn MetadataStore, blobs: Arc<dyn BlobStore>) -> StoreResult<UsageIndex> {
        let names = store.repositories().await?;
        let loaded: Vec<Option<Loaded>> = futures::stream::iter(names)
            .map(|name| load_repo(store, name))
            .buffer_unordered(LOAD_PARALLELISM)
            .try_collect()
            .await?;
        let mut state = State::default();
        for Loaded { name, entry } in loaded.into_iter().flatten() {
            for d in entry.layers.union(&entry.revisions) {
                state.blobs.entry(d.clone()).or_insert(BlobEntry { size: 0, holders: 0 }).holders += 1;
            }
            state.repos.insert(name, entry);
        }
        let digests: Vec<Digest> = state.blobs.keys().cloned().collect();
        let sizes: Vec<(Digest, u64)> = futures::stream::iter(digests)
            .map(|d| {
                let blobs = blobs.clone();
                async move {
                    let size = blobs.blob_stat(&d).await?.map_or(0, |i| i.size);
                    StoreResult::Ok((d, size))
                }
            })
            .buffer_unordered(LOAD_PARALLELISM)
            .try_collect()
            .await?;
        for (d, size) in sizes {
            if let Some(b) = state.blobs.get_mut(&d) {
                b.size = size;
            }
        }
        Ok(UsageIndex {
            blobs,
            state: Mutex::new(state),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Learns of a link the store acknowledged.
    pub async fn link_written(&self, link: &Link, target: &Digest) {
        let now = SystemTime::now();
        let (repo, kind) = match link {
            Link::Layer(r, _) => (r, Kind::Layer),
            Link::Revision(r, _) => (r, Kind::Revision),
            Link::TagCurrent(r, t) => {
                let mut st = self.lock();
                let entry = st.repos.entry(r.to_string()).or_default();
                entry.tags.entry(t.to_string()).or_default().pushed = Some(now);
                entry.last_push = Some(now);
                return;
            }
            Link::TagIndex(r, ..) => {
                self.lock().repos.entry(r.to_string()).or_default();
                return;
            }
            Link::Referrer { .. } => return,
        };
        // The size is read before the lock is taken, and only for a blob not yet known.
        let known = self.lock().blobs.contains_key(target);
        let size = if known {
            None
        } else {
            Some(self.blobs.blob_stat(target).await.ok().flatten().map_or(0, |i| i.size))
        };
        let mut st = self.lock();
        let State { repos, blobs } = &mut *st;
        let entry = repos.entry(repo.to_string()).or_default();
        let newly_held = !entry.links(target);
        match kind {
            Kind::Layer => entry.layers.insert(target.clone()),
            Kind::Revision => {
                entry.last_push = Some(now);
                entry.revisions.insert(target.clone())
            }
        };
        let blob = blobs.entry(target.clone()).or_insert(BlobEntry {
            size: size.unwrap_or(0),
            holders: 0,
        });
        if newly_held {
            blob.holders += 1;
        }
    }

    /// Learns of a link the store removed.
    pub fn link_deleted(&self, link: &Link) {
        let mut st = self.lock();
        let State { repos, blobs } = &mut *st;
        let (repo, digest) = match link {
            Link::Layer(r, d) => (r, d),
            Link::Revision(r, d) => (r, d),
            Link::TagCurrent(r, t) => {
                if let Some(e) = repos.get_mut(r.as_str()) {
                    e.tags.remove(t.as_str());
                }
                return;
            }
            Link::TagIndex(..) | Link::Referrer { .. } => return,
        };
        let Some(entry) = repos.get_mut(repo.as_str()) else { return };
        let was_held = entry.links(digest);
        match link {
            Link::Layer(..) => entry.layers.remove(digest),
            _ => entry.revisions.remove(digest),
        };
        if was_held && !entry.links(digest) {
            release(blobs, digest);
        }
    }

    /// Learns that a tag and its history are gone.
    pub fn tag_deleted(&self, repo: &RepoName, tag: &str) {
        if let Some(e) = self.lock().repos.get_mut(repo.as_str()) {
            e.tags.remove(tag);
        }
    }

    /// Learns that a whole repository is gone.
    pub fn repo_deleted(&self, repo: &RepoName) {
        let mut st = self.lock();
        let State { repos, blobs } = &mut *st;
        let Some(entry) = repos.remove(repo.as_str()) else { return };
        for d in entry.layers.union(&entry.revisions) {
            release(blobs, d);
        }
    }

    /// Records a pull of `tag` (None: by digest). Returns what to write to the repository's
    /// activity file when this tag's pull was last written more than a minute ago.
    pub fn pulled(&self, repo: &RepoName, tag: Option<&str>, now: SystemTime) -> Option<Bytes> {
        let mut st = self.lock();
        let entry = st.repos.get_mut(repo.as_str())?;
        entry.last_pull = Some(now);
        if let Some(t) = tag.and_then(|t| entry.tags.get_mut(t)) {
            t.pulled = Some(now);
        }
        let key = tag.unwrap_or("").to_string();
        let due = entry
            .persisted
            .get(&key)
            .is_none_or(|at| now.duration_since(*at).unwrap_or_default() >= PULL_PERSIST_EVERY);
        if !due {
            return None;
        }
        entry.persisted.insert(key, now);
        let file = ActivityFile {
            lastpull: entry.last_pull.map(secs),
            tags: entry
                .tags
                .iter()
                .filter_map(|(t, times)| Some((t.clone(), secs(times.pulled?))))
                .collect(),
        };
        serde_json::to_vec(&file).ok().map(Bytes::from)
    }

    fn figures(st: &State, name: &str, entry: &RepoEntry) -> RepoUsage {
        let (mut unique, mut shared) = (0, 0);
        let held = entry
            .layers
            .iter()
            .chain(entry.revisions.iter().filter(|d| !entry.layers.contains(*d)));
        for d in held {
            if let Some(b) = st.blobs.get(d) {
                if b.holders > 1 {
                    shared += b.size;
                } else {
                    unique += b.size;
                }
            }
        }
        RepoUsage {
            name: name.to_string(),
            tags: entry.tags.len(),
            manifests: entry.revisions.len(),
            unique_bytes: unique,
            shared_bytes: shared,
            last_push: entry.last_push,
            last_pull: entry.last_pull,
        }
    }

    /// One repository's figures; None if it does not exist.
    pub fn repo(&self, repo: &str) -> Option<RepoUsage> {
        let st = self.lock();
        st.repos.get(repo).map(|e| Self::figures(&st, repo, e))
    }

    /// Each tag of a repository with its times, in lexical order.
    pub fn tag_times(&self, repo: &str) -> Vec<(String, TagTimes)> {
        let st = self.lock();
        let mut out: Vec<(String, TagTimes)> = st
            .repos
            .get(repo)
            .map(|e| e.tags.iter().map(|(t, times)| (t.clone(), *times)).collect())
            .unwrap_or_default();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Up to `limit` repositories strictly after `last` that `keep` accepts, in lexical order.
    pub fn page(&self, last: Option<&str>, limit: usize, keep: &(dyn Fn(&str) -> bool + Send + Sync)) -> Vec<RepoUsage> {
        let mut names = Vec::new();
        let mut cursor = last.map(str::to_string);
        while names.len() < limit {
            let chunk: Vec<String> = {
                let st = self.lock();
                let lower = cursor.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
                st.repos
                    .range::<str, _>((lower, Bound::Unbounded))
                    .take(PAGE_CHUNK)
                    .map(|(n, _)| n.clone())
                    .collect()
            };
            let Some(last_of_chunk) = chunk.last().cloned() else { break };
            let room = limit - names.len();
            names.extend(chunk.into_iter().filter(|r| keep(r)).take(room));
            cursor = Some(last_of_chunk);
        }
        let st = self.lock();
        names
            .iter()
            .filter_map(|n| st.repos.get(n).map(|e| Self::figures(&st, n, e)))
            .collect()
    }

    /// Every repository's figures (metrics: repository count and stored bytes).
    pub fn totals(&self) -> (usize, u64) {
        let st = self.lock();
        (st.repos.len(), st.blobs.values().map(|b| b.size).sum())
    }
}

fn release(blobs: &mut HashMap<Digest, BlobEntry>, d: &Digest) {
    if let Some(b) = blobs.get_mut(d) {
        b.holders = b.holders.saturating_sub(1);
        if b.holders == 0 {
            blobs.remove(d);
        }
    }
}
