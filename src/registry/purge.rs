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
            self.store.uploads.upload_delete(&repo, &id).await?;
            self.uploads.forget(&repo, &id);
            self.uploads.closed();
            tracing::info!(repository = %repo, upload = %id, "purged abandoned upload");
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
        let reg = Registry::new(crate::store::Storage::of(FsStore::new(t.path()).unwrap()), Options::default());
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
