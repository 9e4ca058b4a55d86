//! Per-repository usage as the API, the UI and `wharf du` report it. The figures come from the
//! index in front of the store (`store::usage`), kept current by every write, so a page costs
//! memory lookups only, never a walk of the store.

use super::{Registry, Result};
use crate::oci::{ErrorCode, RegistryError, RepoName};
use crate::store::usage::UsageIndex;
use std::sync::Arc;
use std::time::SystemTime;

pub use crate::store::usage::{RepoUsage, TagTimes};

/// Repositories one usage page holds when `n` is not given (as the catalog).
pub const USAGE_DEFAULT_PAGE: usize = super::listing::CATALOG_DEFAULT_PAGE;

impl Registry {
    fn usage_index(&self) -> Result<Arc<UsageIndex>> {
        self.store.metadata.usage().ok_or_else(|| {
            RegistryError::new(
                ErrorCode::Unsupported,
                "usage is only kept when this server is the only writer of its storage",
            )
        })
    }

    /// Up to `n` repositories strictly after `last` that `visible` lets through, in lexical
    /// order, with their figures.
    pub async fn usage_page(&self, last: Option<&str>, n: usize, visible: impl Fn(&str) -> bool + Send + Sync) -> Result<Vec<RepoUsage>> {
        let n = n.min(super::listing::MAX_PAGE);
        Ok(self.usage_index()?.page(last, n, &visible))
    }

    /// One repository's figures; None if it does not exist.
    pub async fn repo_usage(&self, repo: &RepoName) -> Result<Option<RepoUsage>> {
        Ok(self.usage_index()?.repo(repo.as_str()))
    }

    /// Each tag of a repository with when it was last pushed and pulled.
    pub async fn tag_times(&self, repo: &RepoName) -> Result<Vec<(String, TagTimes)>> {
        Ok(self.usage_index()?.tag_times(repo.as_str()))
    }

    /// The number of repositories and the bytes their blobs hold (each blob once).
    pub fn stored_totals(&self) -> Option<(usize, u64)> {
        self.store.metadata.usage().map(|u| u.totals())
    }

    /// Notes a pull in memory; about once a minute per tag it is also written to the store,
    /// in the background, so it survives a restart without a disk write per pull.
    pub(super) fn record_pull(&self, repo: &RepoName, tag: Option<&str>) {
        let Some(usage) = self.store.metadata.usage() else { return };
        let Some(content) = usage.pulled(repo, tag, SystemTime::now()) else {
            return;
        };
        let (metadata, repo) = (self.store.metadata.clone(), repo.clone());
        tokio::spawn(async move {
            if let Err(e) = metadata.activity_write(&repo, content).await {
                tracing::warn!(repository = %repo, error = %e, "could not record the last pull time");
            }
        });
    }
}

/// RFC 3339 in UTC, or null: how the API, the UI and `wharf du --json` write times.
pub fn time_json(t: Option<SystemTime>) -> serde_json::Value {
    t.and_then(|t| {
        time::OffsetDateTime::from(t)
            .format(&time::format_description::well_known::Rfc3339)
            .ok()
    })
    .map_or(serde_json::Value::Null, serde_json::Value::String)
}

/// Reads back what `usage_json` wrote (a server's answer, for `wharf du`); None if it is not
/// that shape.
pub fn usage_from_json(v: &serde_json::Value) -> Option<RepoUsage> {
    let time = |key: &str| -> Option<Option<SystemTime>> {
        match &v[key] {
            serde_json::Value::Null => Some(None),
            serde_json::Value::String(s) => time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .ok()
                .map(|t| Some(t.into())),
            _ => None,
        }
    };
    Some(RepoUsage {
        name: v["name"].as_str()?.to_string(),
        tags: usize::try_from(v["tags"].as_u64()?).ok()?,
        manifests: usize::try_from(v["manifests"].as_u64()?).ok()?,
        unique_bytes: v["uniquebytes"].as_u64()?,
        shared_bytes: v["sharedbytes"].as_u64()?,
        last_push: time("lastpush")?,
        last_pull: time("lastpull")?,
    })
}

/// A repository's figures as `GET /v2/_wharf/usage` lists them.
pub fn usage_json(u: &RepoUsage) -> serde_json::Value {
    serde_json::json!({
        "name": u.name,
        "tags": u.tags,
        "manifests": u.manifests,
        "uniquebytes": u.unique_bytes,
        "sharedbytes": u.shared_bytes,
        "lastpush": time_json(u.last_push),
        "lastpull": time_json(u.last_pull),
    })
}
