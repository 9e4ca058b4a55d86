//! Small objects replicas coordinate through, in a place of the store that registry:2 never
//! reads (`<rootdirectory>/wharf/`, beside its `docker/registry/v2/`): garbage collection's lease,
//! the candidates of a running collection and the rescue markers replicas write against it
//! (`registry::gc::shared`). Only shared backends (object storage) have one; a single writer's
//! store coordinates in memory.

use super::StoreResult;
use async_trait::async_trait;
use bytes::Bytes;
use std::time::SystemTime;

#[async_trait]
pub trait CoordinationStore: Send + Sync + 'static {
    /// Writes `content` under `name` (`/`-separated, relative to wharf's own prefix), replacing
    /// what was there. Once it returns, every reader and listing sees it (the read-after-write
    /// consistency the README asks of the store).
    async fn coord_put(&self, name: &str, content: Bytes) -> StoreResult<()>;
    /// The content under `name`; None if absent.
    async fn coord_get(&self, name: &str) -> StoreResult<Option<Bytes>>;
    /// Every name under `prefix` (recursively), with when it was written.
    async fn coord_list(&self, prefix: &str) -> StoreResult<Vec<(String, SystemTime)>>;
    /// Removes `name`; absent is not an error.
    async fn coord_delete(&self, name: &str) -> StoreResult<()>;
}
