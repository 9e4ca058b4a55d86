//! The object-storage backend: registry:2's S3 layout in a bucket (S3) or a container (Azure
//! Blob Storage, the same layout), through the `object_store` crate, so that distribution and
//! wharf can serve the same bucket, one after the other. Which service it is stays in
//! [`client`]: everything else here is written once for both.
//!
//! Everything a request needs is in the bucket (upload sessions included), so any number of
//! replicas can share it; `wharf serve` puts the index in front of it in
//! [`Coherence::Shared`](super::index::Coherence::Shared) mode.
//!
//! No correctness argument here relies on conditional puts: Garage ignores `If-None-Match` and
//! `If-Match` on PutObject. Blobs are content-addressed, so concurrent writes of one key write
//! the same bytes; what remains is said where it happens (`metadata::tag_swap`, `uploads`).

pub mod azure;
mod blobs;
pub mod client;
mod coordination;
mod copy;
mod keys;
mod metadata;
mod parts;
pub mod probe;
pub mod settings;
mod uploads;

use super::{StoreError, StoreErrorKind, StoreResult};
use crate::config::ObjectStorage;
use bytes::Bytes;
use client::Client;
use futures::{StreamExt, TryStreamExt};
use keys::Keys;
use object_store::path::Path as Key;
use object_store::{ObjectMeta, PutOptions, PutPayload};
use settings::Tuning;
use std::sync::Arc;

#[derive(Clone)]
pub struct ObjectBackend {
    /// The bucket's client: S3's or Azure's (named for the first, as the code using it was).
    s3: Arc<dyn Client>,
    keys: Arc<Keys>,
    tuning: Arc<Tuning>,
}

/// How an object-store failure reads as a port error. Anything that is not a definite answer
/// about the object is the backend's failure (retried already by the client), never the
/// client's.
fn store_error(e: object_store::Error) -> StoreError {
    let kind = match &e {
        object_store::Error::NotFound { .. } => StoreErrorKind::NotFound,
        object_store::Error::AlreadyExists { .. } => StoreErrorKind::AlreadyExists,
        object_store::Error::Precondition { .. } | object_store::Error::NotModified { .. } => StoreErrorKind::PreconditionFailed,
        _ => StoreErrorKind::Backend,
    };
    StoreError::new(kind, e.to_string())
}

impl ObjectBackend {
    pub fn new(settings: ObjectStorage<'_>, redirect_disabled: bool) -> anyhow::Result<ObjectBackend> {
        let (s3, tuning) = client::connect(settings, redirect_disabled, None)?;
        Ok(ObjectBackend {
            s3,
            keys: Arc::new(Keys::new(&tuning.rootdirectory)),
            tuning: Arc::new(tuning),
        })
    }

    /// Reaches the bucket once (a listing of the root): `serve` fails at start, not at the
    /// first push, when the bucket or the credentials are wrong.
    pub async fn check_reachable(&self) -> StoreResult<()> {
        self.s3
            .list_with_delimiter(Some(&self.keys.repositories()))
            .await
            .map(drop)
            .map_err(store_error)
    }

    async fn head(&self, key: &Key) -> StoreResult<Option<ObjectMeta>> {
        match self.s3.head(key).await {
            Ok(m) => Ok(Some(m)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(store_error(e)),
        }
    }

    /// A small object whole, with its metadata; None if absent.
    async fn get_small(&self, key: &Key) -> StoreResult<Option<(Bytes, ObjectMeta)>> {
        let got = match self.s3.get(key).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(store_error(e)),
        };
        let meta = got.meta.clone();
        Ok(Some((got.bytes().await.map_err(store_error)?, meta)))
    }

    async fn put(&self, key: &Key, content: Bytes) -> StoreResult<()> {
        let opts = PutOptions {
            attributes: self.tuning.attributes.clone(),
            ..Default::default()
        };
        self.s3
            .put_opts(key, PutPayload::from(content), opts)
            .await
            .map(drop)
            .map_err(store_error)
    }

    async fn delete(&self, key: &Key) -> StoreResult<()> {
        match self.s3.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_error(e)),
        }
    }

    /// Every object under `prefix`.
    async fn list_all(&self, prefix: &Key) -> StoreResult<Vec<ObjectMeta>> {
        self.s3.list(Some(prefix)).try_collect().await.map_err(store_error)
    }

    /// Deletes every object under `prefix` (a "directory" of registry:2's layout); false if
    /// there was none.
    async fn delete_all(&self, prefix: &Key) -> StoreResult<bool> {
        let objects = self.list_all(prefix).await?;
        if objects.is_empty() {
            return Ok(false);
        }
        let locations = futures::stream::iter(objects.into_iter().map(|m| Ok(m.location))).boxed();
        let mut deleted = self.s3.delete_stream(locations);
        while let Some(r) = deleted.next().await {
            match r {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(store_error(e)),
            }
        }
        Ok(true)
    }

    /// The names one level below `prefix` ("subdirectories").
    async fn children(&self, prefix: &Key) -> StoreResult<Vec<String>> {
        let listed = self.s3.list_with_delimiter(Some(prefix)).await.map_err(store_error)?;
        Ok(listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect())
    }
}
