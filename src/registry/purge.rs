//! Upload purging (registry:2's `storage.maintenance.uploadpurging`): sessions abandoned for
//! longer than `age` are removed, so crashed or interrupted pushes do not fill the disk.

use super::Registry;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

impl Registry {
    /// Removes sessions older than `age`; returns how many were (or, with `dry_run`, would be).
    pub async fn purge_uploads(&self, age: Duration, dry_run: bool) -> super::Result<usize> {
        let now = SystemTime::now();
        let mut purged = 0;
        for (repo, id) in self.store.uploads_all().await? {
            if !super::uploads::valid_upload_id(&id) {
                continue;
            }
            // Sessions are created whole, so one without its data is the remnant of a crash
            // (or of an older version's interrupted delete): nothing can resume it.
            let Some(info) = self.store.upload_info(&repo, &id).await? else {
                if !dry_run {
                    self.store.upload_delete(&repo, &id).await?;
                    tracing::info!(repository = %repo, upload = %id, "removed the remnant of an interrupted upload");
                }
                continue;
            };
            let old = now.duration_since(info.started).map(|a| a > age).unwrap_or(false);
            if !old {
                continue;
            }
            if dry_run {
                purged += 1;
                tracing::info!(repository = %repo, upload = %id, "would purge abandoned upload (dry run)");
                continue;
            }
            // A session a request is appending to is not abandoned, however old: skip it rather
            // than remove it under the request (which would then answer for a session gone).
            let session = self.uploads.get(&repo, &id);
            let Ok(_held) = session.try_lock() else { continue };
            purged += 1;
            self.store.upload_delete(&repo, &id).await?;
            self.uploads.forget(&repo, &id);
            tracing::info!(repository = %repo, upload = %id, "purged abandoned upload");
        }
        // Staging leftovers of interrupted writes age like sessions do; a dry run only counts
        // sessions, as registry:2's does.
        if !dry_run {
            let leftovers = self.store.purge_temporary(age).await?;
            if leftovers > 0 {
                tracing::info!(count = leftovers, "removed leftovers of interrupted writes");
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
