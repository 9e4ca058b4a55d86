//! Content-addressed blobs at `blobs/<alg>/<xx>/<hex>/data`. Two writers of one key write the
//! same bytes, so plain PUTs are safe without conditional writes.

use super::keys::below;
use super::{store_error, ObjectBackend};
use crate::oci::Digest;
use crate::store::{BlobInfo, BlobOpen, BlobRead, BlobStore, StoreResult};
use async_trait::async_trait;
use axum::http::Method;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::{GetOptions, GetRange, ObjectMeta};
use std::io;
use std::time::SystemTime;

fn info(meta: &ObjectMeta) -> BlobInfo {
    BlobInfo {
        size: meta.size,
        created: SystemTime::from(meta.last_modified),
    }
}

#[async_trait]
impl BlobStore for ObjectBackend {
    async fn blob_stat(&self, digest: &Digest) -> StoreResult<Option<BlobInfo>> {
        Ok(self.head(&self.keys.blob(digest)).await?.as_ref().map(info))
    }

    async fn blob_open(&self, digest: &Digest, range: Option<(u64, u64)>) -> StoreResult<Option<BlobOpen>> {
        let key = self.keys.blob(digest);
        if self.tuning.redirect {
            // The client fetches from the bucket itself, sending its Range header there; the
            // caller has stat'ed the blob, so the URL names an object that exists.
            let url = self
                .s3
                .signed_url(Method::GET, &key, super::settings::REDIRECT_VALID_FOR)
                .await
                .map_err(store_error)?;
            return Ok(Some(BlobOpen::Redirect(url.to_string())));
        }
        let opts = GetOptions {
            range: range.map(|(a, b)| GetRange::Bounded(a..b + 1)),
            ..Default::default()
        };
        let got = match self.s3.get_opts(&key, opts).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(store_error(e)),
        };
        let size = got.meta.size;
        let body = got.into_stream().map_err(io::Error::other).boxed();
        Ok(Some(BlobOpen::Stream(BlobRead { size, body })))
    }

    async fn blob_bytes(&self, digest: &Digest) -> StoreResult<Option<Bytes>> {
        Ok(self.get_small(&self.keys.blob(digest)).await?.map(|(b, _)| b))
    }

    async fn blob_put(&self, digest: &Digest, content: Bytes) -> StoreResult<bool> {
        crate::store::check_content_digest(digest, &content)?;
        let key = self.keys.blob(digest);
        if self.head(&key).await?.is_some() {
            return Ok(false);
        }
        self.put(&key, content).await?;
        Ok(true)
    }

    async fn blob_delete_if_older_than(&self, digest: &Digest, cut: SystemTime) -> StoreResult<bool> {
        let key = self.keys.blob(digest);
        let Some(meta) = self.head(&key).await? else { return Ok(false) };
        // A push that stored the same digest again after the cut rewrote the object, and its
        // newer modification time spares it here. One landing between this HEAD and the DELETE
        // is not excluded by this call (S3 has no conditional delete that Garage honours): the
        // collector must keep pushes out of its sweep (one collector, a lease, a grace period).
        if SystemTime::from(meta.last_modified) >= cut {
            return Ok(false);
        }
        self.delete_all(&self.keys.blob_dir(digest)).await
    }

    async fn blobs_page(&self, after: Option<&Digest>, limit: usize) -> StoreResult<Vec<Digest>> {
        let prefix = self.keys.blobs();
        // Keys sort as digests do (`<alg>/<xx>/<hex>`, xx being the hex's first two digits).
        let mut listing = match after {
            Some(a) => self.s3.list_with_offset(Some(&prefix), &self.keys.blob(a)),
            None => self.s3.list(Some(&prefix)),
        };
        let mut out = Vec::new();
        while out.len() < limit {
            let Some(meta) = listing.next().await else { break };
            let meta = meta.map_err(store_error)?;
            let Some(parts) = below(&meta.location, &prefix) else { continue };
            if let [alg, _, hex, "data"] = parts.as_slice() {
                if let Ok(d) = format!("{alg}:{hex}").parse::<Digest>() {
                    if after.is_none_or(|a| &d > a) {
                        out.push(d);
                    }
                }
            }
        }
        Ok(out)
    }
}
