//! Pulling and deleting blobs within a repository.

use super::events::{Action, Kind, Target};
use super::{Registry, RequestContext, Result};
use crate::oci::{Digest, ErrorCode, RegistryError, RepoName};
use crate::store::{BlobOpen, ByteStream, Link};

/// A blob on its way out: the full size, and the body of the requested range.
pub struct BlobBody {
    pub size: u64,
    pub range: Option<(u64, u64)>,
    pub body: Option<ByteStream>,
    /// Where the client fetches the bytes itself, when the store offers that instead of a body.
    pub redirect: Option<String>,
}

fn blob_unknown(digest: &Digest) -> RegistryError {
    RegistryError::new(ErrorCode::BlobUnknown, format!("blob {digest} is not in this repository"))
}

impl Registry {
    /// A blob is visible in a repository when the repository links it (as a layer or as a
    /// manifest revision, so manifests can also be fetched through the blob API).
    pub(super) async fn blob_linked(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        if self
            .store
            .metadata
            .link_read(&Link::Layer(repo.clone(), digest.clone()))
            .await?
            .is_some()
        {
            return Ok(true);
        }
        Ok(self
            .store
            .metadata
            .link_read(&Link::Revision(repo.clone(), digest.clone()))
            .await?
            .is_some())
    }

    /// Size of a blob in the repository (HEAD). A blob asked about while a collection runs is
    /// spared by it: the client may be about to push a manifest naming it (`gc::fence`).
    pub async fn blob_stat(&self, repo: &RepoName, digest: &Digest) -> Result<u64> {
        let _pass = self.gc_enter([digest], false).await?;
        if !self.blob_linked(repo, digest).await? {
            return Err(blob_unknown(digest));
        }
        self.store
            .blobs
            .blob_stat(digest)
            .await?
            .map(|info| info.size)
            .ok_or_else(|| blob_unknown(digest))
    }

    /// Opens a blob, optionally a byte range of it, resolved by `pick_range` once the size is
    /// known. A pull, with or without its body (GET, HEAD) or as a redirect, as registry:2 reports.
    pub async fn blob_get(
        &self,
        ctx: &RequestContext,
        repo: &RepoName,
        digest: &Digest,
        pick_range: impl FnOnce(u64) -> Result<Option<(u64, u64)>>,
        with_body: bool,
    ) -> Result<BlobBody> {
        let size = self.blob_stat(repo, digest).await?;
        let range = pick_range(size)?;
        let body = self.blob_body(digest, size, range, with_body).await?;
        self.events.emit(ctx, Action::Pull, || Target::blob(repo, digest, size));
        Ok(body)
    }

    async fn blob_body(&self, digest: &Digest, size: u64, range: Option<(u64, u64)>, with_body: bool) -> Result<BlobBody> {
        if !with_body {
            return Ok(BlobBody {
                size,
                range,
                body: None,
                redirect: None,
            });
        }
        match self
            .store
            .blobs
            .blob_open(digest, range)
            .await?
            .ok_or_else(|| blob_unknown(digest))?
        {
            BlobOpen::Stream(read) => Ok(BlobBody {
                size: read.size,
                range,
                body: Some(read.body),
                redirect: None,
            }),
            BlobOpen::Redirect(url) => Ok(BlobBody {
                size,
                range,
                body: None,
                redirect: Some(url),
            }),
        }
    }

    /// Unlinks a blob from a repository. The bytes stay until garbage collection, since other
    /// repositories may link the same content.
    pub async fn blob_delete(&self, ctx: &RequestContext, repo: &RepoName, digest: &Digest) -> Result<()> {
        self.check_delete_enabled()?;
        if !self.store.metadata.link_delete(&Link::Layer(repo.clone(), digest.clone())).await? {
            return Err(blob_unknown(digest));
        }
        self.events.emit(ctx, Action::Delete, || Target::deleted(Kind::Blob, repo, digest));
        Ok(())
    }
}
