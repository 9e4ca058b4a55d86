//! The storage port: registry operations on content, upload sessions, links and listings.
//! Backends implement [`Store`]; nothing above this module knows which backend it talks to.

mod append;
pub mod durable;
pub mod error;
pub mod fs;
pub mod index;
pub mod paths;
mod streams;

use crate::oci::{Digest, RepoName, Tag};
use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use std::io;
use std::time::SystemTime;

pub use error::{StoreError, StoreErrorKind, StoreResult};
pub use paths::{Link, LinkSet};

/// A stream of body chunks coming from (or going to) the network.
pub type ByteStream = BoxStream<'static, io::Result<Bytes>>;

/// An opened blob: its total size and the bytes of the requested range.
pub struct BlobRead {
    pub size: u64,
    pub body: ByteStream,
}

/// An upload session as stored: how many bytes it holds and when it started.
#[derive(Debug, Clone, Copy)]
pub struct UploadInfo {
    pub size: u64,
    pub started: SystemTime,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Size of a committed blob, if present.
    async fn blob_size(&self, digest: &Digest) -> StoreResult<Option<u64>>;
    /// Opens a committed blob; `range` is an inclusive byte range already checked against the size.
    async fn blob_read(&self, digest: &Digest, range: Option<(u64, u64)>) -> StoreResult<Option<BlobRead>>;
    /// Reads a small committed blob (a manifest) whole.
    async fn blob_bytes(&self, digest: &Digest) -> StoreResult<Option<Bytes>>;
    /// Stores small content whose digest the caller has verified (manifests).
    async fn blob_put(&self, digest: &Digest, content: Bytes) -> StoreResult<()>;

    /// Starts an upload session under a new id.
    async fn upload_create(&self, repo: &RepoName, id: &str) -> StoreResult<()>;
    async fn upload_info(&self, repo: &RepoName, id: &str) -> StoreResult<Option<UploadInfo>>;
    /// Appends a stream at the end of the session's data and returns the new size. On error the
    /// session is truncated back to where it was, so a retry can resend the same chunk.
    async fn upload_append(&self, repo: &RepoName, id: &str, body: ByteStream) -> StoreResult<u64>;
    /// Reads back what the session holds (to resume hashing after a restart).
    async fn upload_read(&self, repo: &RepoName, id: &str) -> StoreResult<ByteStream>;
    /// Makes the session's data durable and moves it into place as the blob `digest`, which the
    /// caller has verified. Removes the session.
    async fn upload_commit(&self, repo: &RepoName, id: &str, digest: &Digest) -> StoreResult<()>;
    /// Removes a session; false if it did not exist.
    async fn upload_delete(&self, repo: &RepoName, id: &str) -> StoreResult<bool>;
    /// Every session id in the store, with its repository, for purging.
    async fn uploads_all(&self) -> StoreResult<Vec<(RepoName, String)>>;
    /// Removes leftovers of writes a crash interrupted (staged files and sessions being
    /// committed) older than `older_than`; returns how many.
    async fn purge_temporary(&self, older_than: std::time::Duration) -> StoreResult<usize>;

    async fn link_read(&self, link: &Link) -> StoreResult<Option<Digest>>;
    /// Writes a link durably; what it points at must already be durable.
    async fn link_write(&self, link: &Link, target: &Digest) -> StoreResult<()>;
    async fn link_delete(&self, link: &Link) -> StoreResult<bool>;
    /// The digests in a set of links (a tag's history, a subject's referrers).
    async fn link_set(&self, set: &LinkSet) -> StoreResult<Vec<Digest>>;

    /// Removes a tag with its history; false if it did not exist.
    async fn tag_delete(&self, repo: &RepoName, tag: &Tag) -> StoreResult<bool>;
    /// Tags of a repository in lexical order; None if the repository does not exist.
    async fn tags(&self, repo: &RepoName) -> StoreResult<Option<Vec<String>>>;
    /// Whether anything (blobs, manifests, uploads) exists under the repository.
    async fn repo_exists(&self, repo: &RepoName) -> StoreResult<bool>;
    /// All repository names in lexical order.
    async fn repositories(&self) -> StoreResult<Vec<String>>;

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
