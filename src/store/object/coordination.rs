//! The coordination objects (`store::coordination`) under `<rootdirectory>/wharf/`: outside
//! `docker/registry/v2/`, so registry:2's catalog walk, its garbage collector and its upload
//! purge never see them.

use super::keys::below;
use super::ObjectBackend;
use crate::store::coordination::CoordinationStore;
use crate::store::StoreResult;
use async_trait::async_trait;
use bytes::Bytes;
use object_store::path::Path as Key;

impl ObjectBackend {
    fn coord_key(&self, name: &str) -> Key {
        let root = self.tuning.rootdirectory.trim_matches('/');
        let name = name.trim_matches('/');
        match root.is_empty() {
            true => Key::from(format!("wharf/{name}")),
            false => Key::from(format!("{root}/wharf/{name}")),
        }
    }
}

#[async_trait]
impl CoordinationStore for ObjectBackend {
    async fn coord_put(&self, name: &str, content: Bytes) -> StoreResult<()> {
        self.put(&self.coord_key(name), content).await
    }

    async fn coord_get(&self, name: &str) -> StoreResult<Option<Bytes>> {
        Ok(self.get_small(&self.coord_key(name)).await?.map(|(bytes, _)| bytes))
    }

    async fn coord_list(&self, prefix: &str) -> StoreResult<Vec<(String, std::time::SystemTime)>> {
        let base = self.coord_key("");
        let listed = self.list_all(&self.coord_key(prefix)).await?;
        Ok(listed
            .iter()
            .filter_map(|m| Some((below(&m.location, &base)?.join("/"), m.last_modified.into())))
            .collect())
    }

    async fn coord_delete(&self, name: &str) -> StoreResult<()> {
        self.delete(&self.coord_key(name)).await
    }
}
