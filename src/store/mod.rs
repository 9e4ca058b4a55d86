//! The storage port, split by what it stores: content-addressed blobs ([`BlobStore`]), upload
//! sessions ([`UploadStore`]) and metadata: tags, links, listings ([`MetadataStore`]). Backends
//! implement all three; nothing above this module knows which backend it talks to.

mod append;
pub mod coordination;
pub mod durable;
pub mod error;
pub mod fs;
mod hashstates;
pub mod index;
pub mod metered;
pub mod object;
pub mod paths;
pub mod root_lock;
mod streams;
pub mod usage;

use crate::oci::{Algorithm, Digest, RepoName, Tag};
use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub use error::{StoreError, StoreErrorKind, StoreResult};
pub use paths::{Link, LinkSet};

/// A stream of body chunks coming from (or going to) the network.
pub type ByteStream = BoxStream<'static, io::Result<Bytes>>;

/// An opened blob: its total size and the bytes of the requested range.
pub struct BlobRead {
    pub size: u64,
    pub body: ByteStream,
}

/// A committed blob: its size and when it was stored (what garbage collection ages it by).
#[derive(Debug, Clone, Copy)]
pub struct BlobInfo {
    pub size: u64,
    pub created: SystemTime,
}

/// How a blob is served: streamed from the backend, or a URL the client fetches it from
/// itself (a presigned object-storage URL), which a backend may offer instead.
pub enum BlobOpen {
    Stream(BlobRead),
    Redirect(String),
}

/// An upload session as stored: how many bytes it holds and when it started.
#[derive(Debug, Clone, Copy)]
pub struct UploadInfo {
    pub size: u64,
    pub started: SystemTime,
}

/// A link as stored: what it points at and when it was last written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub target: Digest,
    pub modified: SystemTime,
}

/// Refuses content that does not hash to `digest`: what every backend's `blob_put` checks
/// before it stores anything under that name.
pub(crate) fn check_content_digest(digest: &Digest, content: &[u8]) -> StoreResult<()> {
    let actual = Digest::of(digest.algorithm(), content);
    if &actual != digest {
        return Err(StoreError::new(
            StoreErrorKind::PreconditionFailed,
            format!("content has digest {actual}, not {digest}"),
        ));
    }
    Ok(())
}

/// Content-addressed blobs. Committed blobs are immutable, and a delete always unlinks (the
/// memory-mapped pull path relies on both).
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    async fn blob_stat(&self, digest: &Digest) -> StoreResult<Option<BlobInfo>>;
    /// Opens a committed blob; `range` is an inclusive byte range already checked against the size.
    async fn blob_open(&self, digest: &Digest, range: Option<(u64, u64)>) -> StoreResult<Option<BlobOpen>>;
    /// Reads a small committed blob (a manifest) whole.
    async fn blob_bytes(&self, digest: &Digest) -> StoreResult<Option<Bytes>>;
    /// Stores small content under `digest` unless it is there already (true if it was stored
    /// now). Content that does not hash to `digest` is refused as a failed precondition.
    async fn blob_put(&self, digest: &Digest, content: Bytes) -> StoreResult<bool>;
    /// Deletes a blob stored before `cut`; false if it is absent or newer (a push may be about
    /// to link it, so a sweep spares what appeared after it started).
    async fn blob_delete_if_older_than(&self, digest: &Digest, cut: SystemTime) -> StoreResult<bool>;
    /// Up to `limit` blob digests strictly after `after`, in order: the sweep of a collection.
    async fn blobs_page(&self, after: Option<&Digest>, limit: usize) -> StoreResult<Vec<Digest>>;
}

/// Upload sessions, from creation to their commit as a blob.
#[async_trait]
pub trait UploadStore: Send + Sync + 'static {
    /// Starts an upload session under a new id.
    async fn upload_create(&self, repo: &RepoName, id: &str) -> StoreResult<()>;
    async fn upload_info(&self, repo: &RepoName, id: &str) -> StoreResult<Option<UploadInfo>>;
    /// Appends a stream at the end of the session's data and returns the new size. On error the
    /// session is truncated back to where it was, so a retry can resend the same chunk.
    async fn upload_append(&self, repo: &RepoName, id: &str, body: ByteStream) -> StoreResult<u64>;
    /// Reads back what the session holds (to resume hashing after a restart).
    async fn upload_read(&self, repo: &RepoName, id: &str) -> StoreResult<ByteStream>;
    /// Keeps `state`, the running hash of the session's first `offset` bytes, so the session can
    /// be resumed by any process without reading its data back. The state is stored only once
    /// those bytes are durable, and not at all if the session no longer holds `offset` bytes.
    /// A backend that cannot keep states keeps none; the digest is then recomputed.
    async fn upload_hash_save(&self, _repo: &RepoName, _id: &str, _alg: Algorithm, _offset: u64, _state: Bytes) -> StoreResult<()> {
        Ok(())
    }
    /// The hash state saved for exactly `offset` bytes of the session, if any.
    async fn upload_hash_load(&self, _repo: &RepoName, _id: &str, _alg: Algorithm, _offset: u64) -> StoreResult<Option<Bytes>> {
        Ok(None)
    }
    /// Makes the session's data durable and moves it into place as the blob `digest`, which the
    /// caller has verified. Removes the session.
    async fn upload_commit(&self, repo: &RepoName, id: &str, digest: &Digest) -> StoreResult<()>;
    /// Removes a session; false if it did not exist.
    async fn upload_delete(&self, repo: &RepoName, id: &str) -> StoreResult<bool>;
    /// Sessions started more than `age` ago, for expiry. With `housekeeping` the backend also
    /// removes its own leftovers of interrupted writes of that age (remnants of sessions, staged
    /// files), which only it knows how to recognise.
    async fn uploads_expired(&self, age: Duration, housekeeping: bool) -> StoreResult<Vec<(RepoName, String)>>;
}

/// Tags, links and listings: what makes blobs part of repositories.
#[async_trait]
pub trait MetadataStore: Send + Sync + 'static {
    async fn link_read(&self, link: &Link) -> StoreResult<Option<Digest>>;
    /// A link with the time it was written (garbage collection spares recent links).
    async fn link_info(&self, link: &Link) -> StoreResult<Option<LinkInfo>>;
    /// Writes a link durably; what it points at must already be durable.
    async fn link_write(&self, link: &Link, target: &Digest) -> StoreResult<()>;
    async fn link_delete(&self, link: &Link) -> StoreResult<bool>;
    /// The digests in a set of links (a tag's history, a subject's referrers, a repository's
    /// layers or revisions: the references garbage collection marks from).
    async fn link_set(&self, set: &LinkSet) -> StoreResult<Vec<Digest>>;

    /// Points a tag at `new` only if it points at `expected` now (None: the tag does not
    /// exist); otherwise fails with `PreconditionFailed` and changes nothing.
    async fn tag_swap(&self, repo: &RepoName, tag: &Tag, expected: Option<&Digest>, new: &Digest) -> StoreResult<()>;
    /// Removes a tag with its history; false if it did not exist.
    async fn tag_delete(&self, repo: &RepoName, tag: &Tag) -> StoreResult<bool>;
    /// Tags of a repository in lexical order; None if the repository does not exist.
    async fn tags(&self, repo: &RepoName) -> StoreResult<Option<Vec<String>>>;
    /// Whether the repository holds manifests or layers.
    async fn repo_exists(&self, repo: &RepoName) -> StoreResult<bool>;
    /// All repository names in lexical order.
    async fn repositories(&self) -> StoreResult<Vec<String>>;

    /// Removes a whole repository: its tags, manifest revisions, layer links, referrers, upload
    /// sessions and activity, but not repositories nested under its name. False if it did not
    /// exist. Blobs stay: freeing them is garbage collection's job. Backends that keep
    /// repositories as directories override this to remove them at once.
    async fn repo_delete(&self, repo: &RepoName) -> StoreResult<bool> {
        if !self.repo_exists(repo).await? {
            return Ok(false);
        }
        for tag in self.tags(repo).await?.unwrap_or_default() {
            if let Some(tag) = Tag::parse(&tag) {
                self.tag_delete(repo, &tag).await?;
            }
        }
        for d in self.link_set(&LinkSet::Revisions(repo.clone())).await? {
            self.link_delete(&Link::Revision(repo.clone(), d)).await?;
        }
        for d in self.link_set(&LinkSet::Layers(repo.clone())).await? {
            self.link_delete(&Link::Layer(repo.clone(), d)).await?;
        }
        Ok(true)
    }

    /// wharf's own per-repository bookkeeping (last pull times), kept where registry:2 does not
    /// look; None if none was written. Backends without a place for it keep nothing.
    async fn activity_read(&self, _repo: &RepoName) -> StoreResult<Option<Bytes>> {
        Ok(None)
    }

    async fn activity_write(&self, _repo: &RepoName, _content: Bytes) -> StoreResult<()> {
        Ok(())
    }

    /// Per-repository usage, when this store keeps it current (the index in front of a single
    /// writer's store does).
    fn usage(&self) -> Option<Arc<usage::UsageIndex>> {
        None
    }

    /// Up to `limit` repository names strictly after `last`, in lexical order, counting only
    /// those `keep` accepts. Backends with an index answer without listing everything.
    async fn repositories_page(
        &self,
        last: Option<&str>,
        limit: usize,
        keep: &(dyn for<'s> Fn(&'s str) -> bool + Send + Sync),
    ) -> StoreResult<Vec<String>> {
        let all = self.repositories().await?;
        Ok(all
            .into_iter()
            .filter(|r| last.is_none_or(|l| r.as_str() > l) && keep(r))
            .take(limit)
            .collect())
    }

    /// Up to `limit` tags strictly after `last`, in lexical order; None if the repository does
    /// not exist.
    async fn tags_page(&self, repo: &RepoName, last: Option<&str>, limit: usize) -> StoreResult<Option<Vec<String>>> {
        let Some(all) = self.tags(repo).await? else { return Ok(None) };
        Ok(Some(
            all.into_iter()
                .filter(|t| last.is_none_or(|l| t.as_str() > l))
                .take(limit)
                .collect(),
        ))
    }
}

/// A backend as the registry uses it: one store per kind of data. The parts may be one object
/// (the filesystem backend implements all three) or be wrapped separately (the index wraps
/// the metadata).
#[derive(Clone)]
pub struct Storage {
    pub blobs: Arc<dyn BlobStore>,
    pub uploads: Arc<dyn UploadStore>,
    pub metadata: Arc<dyn MetadataStore>,
    /// Where replicas coordinate (shared backends only; see [`coordination`]).
    pub coordination: Option<Arc<dyn coordination::CoordinationStore>>,
}

impl Storage {
    /// The three parts of a backend that implements them all.
    pub fn of<B: BlobStore + UploadStore + MetadataStore>(backend: B) -> Storage {
        let backend = Arc::new(backend);
        Storage {
            blobs: backend.clone(),
            uploads: backend.clone(),
            metadata: backend,
            coordination: None,
        }
    }
}

/// The object-storage backend on `settings`' bucket with the index in front of its metadata,
/// in the shared mode (other replicas write the same bucket), measured by [`metered`]. The
/// bucket is reached once here.
pub async fn object_storage(settings: crate::config::ObjectStorage<'_>, redirect_disabled: bool) -> anyhow::Result<Storage> {
    let backend = object::ObjectBackend::new(settings, redirect_disabled)?;
    backend.check_reachable().await?;
    let coordination: Arc<dyn coordination::CoordinationStore> = Arc::new(backend.clone());
    let storage = metered::metered(Storage::of(backend), object::client::driver_name(settings));
    let metadata = index::IndexedStore::load(storage.metadata.clone(), index::Coherence::Shared).await?;
    Ok(Storage {
        metadata: Arc::new(metadata),
        coordination: Some(coordination),
        ..storage
    })
}

/// The filesystem backend at `root` (registry:2's layout) with the index in front of its
/// metadata, measured by [`metered`], as `wharf serve` runs it.
pub async fn filesystem(root: &Path) -> StoreResult<Storage> {
    let storage = metered::metered(Storage::of(fs::FsStore::new(root)?), fs::DRIVER_NAME);
    let metadata = index::IndexedStore::load(storage.metadata.clone(), index::Coherence::SingleWriter)
        .await?
        .with_usage(storage.blobs.clone())
        .await?;
    Ok(Storage {
        metadata: Arc::new(metadata),
        ..storage
    })
}
