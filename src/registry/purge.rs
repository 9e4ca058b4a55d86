//! Upload purging (registry:2's `storage.maintenance.uploadpurging`): sessions abandoned for
//! longer than `age` are removed, so crashed or interrupted pushes do not fill the disk.

use super::Registry;
use std::sync::Arc;
use std::time::Duration;

impl Registry {
    /// Removes sessions older than `age`; returns how many were (or, with `dry_run`, would be).
    /// The store removes its own leftovers of interrupted writes on the way, except in a dry
    /// run, which only counts sessions, as registry:2's does.
    pub async fn purge_uploads(&self, age: Duration, dry_run: bool) -> super::Result<usize> {
        let mut purged = 0;
        for (repo, id) in self.store.uploads.uploads_expired(age, !dry_run).await? {
            if !super::uploads::valid_upload_id(&id) {
                continue;
            }
            purged += 1;
            if dry_run {
                tracing::info!(repository = %repo, upload = %id, "would purge abandoned upload (dry run)");
            } else {
                self.store.uploads.upload_delete(&repo, &id).await?;
                self.uploads.forget(&repo, &id);
                tracing::info!(repository = %repo, upload = %id, "purged abandoned upload");
            }
        }
        Ok(purged)
    }
}

/// Runs the purge now and then every `interval`, for as long as the server runs.
pub fn spawn(registry: Arc<Registry>, age: Duration, interval: Duration, dry_run: bool) {
    tokio::spawn(async move {
        loop {
            if let Err(e) = registry.purge_uploads(age, dry_run).await {
                tracing::warn!(error = %e, "upload purge failed; will retry at the next interval");
            }
            tokio::time::sleep(interval.max(Duration::from_secs(1))).await;
        }
    });
}
