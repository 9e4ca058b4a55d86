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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::{Algorithm, RepoName};
    use crate::registry::Options;
    use crate::store::fs::FsStore;

    /// A request appending to a session holds its lock; the purge must not remove the session
    /// under it (the request would then answer 202 for a session gone), however old it is.
    #[tokio::test]
    async fn a_session_a_request_holds_is_not_purged() {
        let t = tempfile::tempdir().unwrap();
        let reg = Registry::new(Arc::new(FsStore::new(t.path()).unwrap()), Options::default());
        let repo = RepoName::parse("app").unwrap();
        let idle = reg.upload_start(&repo, Algorithm::Sha256).await.unwrap();
        let busy = reg.upload_start(&repo, Algorithm::Sha256).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let session = reg.uploads.get(&repo, &busy.id);
        let held = session.lock().await;
        assert_eq!(reg.purge_uploads(Duration::from_millis(1), false).await.unwrap(), 1);
        assert!(reg.upload_status(&repo, &idle.id).await.is_err(), "the idle session is purged");
        assert!(reg.upload_status(&repo, &busy.id).await.is_ok(), "the held one is kept");
        drop(held);
        assert_eq!(reg.purge_uploads(Duration::from_millis(1), false).await.unwrap(), 1);
        assert!(reg.upload_status(&repo, &busy.id).await.is_err(), "once released it goes too");
    }
}
