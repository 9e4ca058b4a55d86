//! Storage metrics: every call into a backend's port, timed and counted per operation, under
//! distribution's family `registry_storage_action_seconds{driver,action}` (its
//! `registry/storage/driver/base`, the same name and labels in v2.8 and on main) and wharf's
//! `wharf_storage_errors_total{driver,action}`.
//!
//! The wrapper sits right on the backend, under the index: what it counts is what reached the
//! filesystem or the bucket, as distribution's driver-level timer does; what the index answers
//! from memory costs no storage action. `driver` is distribution's driver name (`filesystem`,
//! `s3aws`); `action` is the port operation (`blob_stat`, `link_read`, ...), since one port call
//! is one storage action for the registry (distribution's actions are driver calls instead:
//! `GetContent`, `Stat`, ...). A call that returns a stream (`blob_open`, `upload_read`) is
//! timed until the stream is returned, as distribution times `Reader`; `upload_append` includes
//! receiving the client's bytes, which it writes as they come.
//!
//! The families are process-wide, like Go's default registry, so every store a process opens
//! reports in them; each wrapper resolves a series on first use, so a call costs two clock reads and
//! a few atomic additions.

use super::*;
use crate::http::metrics::histogram::AtomicHistogram;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use std::future::Future;
use std::sync::{LazyLock, OnceLock};
use std::time::Instant;

/// Prometheus' default buckets (client_golang's `DefBuckets`), which docker/go-metrics'
/// `NewLabeledTimer` leaves in place for `registry_storage_action_seconds`.
const ACTION_BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DriverAction {
    driver: &'static str,
    action: &'static str,
}

/// The storage families, shared by every metered store of the process.
pub struct StorageFamilies {
    actions: Family<DriverAction, AtomicHistogram>,
    errors: Family<DriverAction, Counter>,
}

static FAMILIES: LazyLock<StorageFamilies> = LazyLock::new(|| StorageFamilies {
    actions: Family::new_with_constructor(|| AtomicHistogram::new(ACTION_BUCKETS)),
    errors: Family::default(),
});

/// Registers the storage families in `registry` (the debug server's `/metrics`).
pub fn register(registry: &mut prometheus_client::registry::Registry) {
    registry.register(
        "registry_storage_action_seconds",
        "The number of seconds that the storage action takes",
        FAMILIES.actions.clone(),
    );
    registry.register(
        "wharf_storage_errors",
        "Storage actions that failed in the storage (unavailable, full, read-only, or any other backend failure)",
        FAMILIES.errors.clone(),
    );
}

/// The port operations, the `action` label.
#[derive(Clone, Copy)]
#[repr(usize)]
enum Action {
    BlobStat,
    BlobOpen,
    BlobBytes,
    BlobPut,
    BlobDelete,
    BlobsPage,
    UploadCreate,
    UploadInfo,
    UploadAppend,
    UploadRead,
    UploadHashSave,
    UploadHashLoad,
    UploadCommit,
    UploadDelete,
    UploadsExpired,
    LinkRead,
    LinkInfo,
    LinkWrite,
    LinkDelete,
    LinkSet,
    TagSwap,
    TagDelete,
    Tags,
    RepoExists,
    Repositories,
    RepoDelete,
    ActivityRead,
    ActivityWrite,
    RepositoriesPage,
    TagsPage,
}

const ACTIONS: [&str; 30] = [
    "blob_stat",
    "blob_open",
    "blob_bytes",
    "blob_put",
    "blob_delete",
    "blobs_page",
    "upload_create",
    "upload_info",
    "upload_append",
    "upload_read",
    "upload_hash_save",
    "upload_hash_load",
    "upload_commit",
    "upload_delete",
    "uploads_expired",
    "link_read",
    "link_info",
    "link_write",
    "link_delete",
    "link_set",
    "tag_swap",
    "tag_delete",
    "tags",
    "repo_exists",
    "repositories",
    "repo_delete",
    "activity_read",
    "activity_write",
    "repositories_page",
    "tags_page",
];

/// One action's series.
struct Series {
    seconds: AtomicHistogram,
    errors: Counter,
}

/// A driver's series, each resolved in its family on first use and then kept (series appear
/// only once used, as distribution's do).
struct DriverSeries {
    driver: &'static str,
    actions: [OnceLock<Series>; ACTIONS.len()],
}

impl DriverSeries {
    fn get(&self, action: Action) -> &Series {
        self.actions[action as usize].get_or_init(|| {
            let labels = DriverAction {
                driver: self.driver,
                action: ACTIONS[action as usize],
            };
            Series {
                seconds: FAMILIES.actions.get_or_create(&labels).clone(),
                errors: FAMILIES.errors.get_or_create(&labels).clone(),
            }
        })
    }
}

/// Whether an error is the storage's failure (counted), rather than an answer about the data
/// (absent, already there, a lost compare-and-swap) or the client's broken body.
fn is_storage_failure(e: &StoreError) -> bool {
    matches!(
        e.kind(),
        StoreErrorKind::Full | StoreErrorKind::ReadOnly | StoreErrorKind::Unavailable { .. } | StoreErrorKind::Backend
    )
}

/// One part of a backend, measured.
pub struct Metered<T: ?Sized> {
    inner: Arc<T>,
    series: Arc<DriverSeries>,
}

impl<T: ?Sized> Metered<T> {
    async fn time<R>(&self, action: Action, call: impl Future<Output = StoreResult<R>>) -> StoreResult<R> {
        let started = Instant::now();
        let result = call.await;
        let s = self.series.get(action);
        s.seconds.observe(started.elapsed().as_secs_f64());
        if let Err(e) = &result {
            if is_storage_failure(e) {
                s.errors.inc();
            }
        }
        result
    }
}

/// `storage` with every part measured as `driver` (distribution's name for it).
pub fn metered(storage: Storage, driver: &'static str) -> Storage {
    let series = Arc::new(DriverSeries {
        driver,
        actions: Default::default(),
    });
    Storage {
        blobs: Arc::new(Metered {
            inner: storage.blobs,
            series: series.clone(),
        }),
        uploads: Arc::new(Metered {
            inner: storage.uploads,
            series: series.clone(),
        }),
        metadata: Arc::new(Metered {
            inner: storage.metadata,
            series,
        }),
        coordination: storage.coordination,
    }
}

#[async_trait]
impl BlobStore for Metered<dyn BlobStore> {
    async fn blob_stat(&self, digest: &Digest) -> StoreResult<Option<BlobInfo>> {
        self.time(Action::BlobStat, self.inner.blob_stat(digest)).await
    }
    async fn blob_open(&self, digest: &Digest, range: Option<(u64, u64)>) -> StoreResult<Option<BlobOpen>> {
        self.time(Action::BlobOpen, self.inner.blob_open(digest, range)).await
    }
    async fn blob_bytes(&self, digest: &Digest) -> StoreResult<Option<Bytes>> {
        self.time(Action::BlobBytes, self.inner.blob_bytes(digest)).await
    }
    async fn blob_put(&self, digest: &Digest, content: Bytes) -> StoreResult<bool> {
        self.time(Action::BlobPut, self.inner.blob_put(digest, content)).await
    }
    async fn blob_delete_if_older_than(&self, digest: &Digest, cut: SystemTime) -> StoreResult<bool> {
        self.time(Action::BlobDelete, self.inner.blob_delete_if_older_than(digest, cut))
            .await
    }
    async fn blobs_page(&self, after: Option<&Digest>, limit: usize) -> StoreResult<Vec<Digest>> {
        self.time(Action::BlobsPage, self.inner.blobs_page(after, limit)).await
    }
}

#[async_trait]
impl UploadStore for Metered<dyn UploadStore> {
    async fn upload_create(&self, repo: &RepoName, id: &str) -> StoreResult<()> {
        self.time(Action::UploadCreate, self.inner.upload_create(repo, id)).await
    }
    async fn upload_info(&self, repo: &RepoName, id: &str) -> StoreResult<Option<UploadInfo>> {
        self.time(Action::UploadInfo, self.inner.upload_info(repo, id)).await
    }
    async fn upload_append(&self, repo: &RepoName, id: &str, body: ByteStream) -> StoreResult<u64> {
        self.time(Action::UploadAppend, self.inner.upload_append(repo, id, body)).await
    }
    async fn upload_read(&self, repo: &RepoName, id: &str) -> StoreResult<ByteStream> {
        self.time(Action::UploadRead, self.inner.upload_read(repo, id)).await
    }
    async fn upload_hash_save(&self, repo: &RepoName, id: &str, alg: Algorithm, offset: u64, state: Bytes) -> StoreResult<()> {
        self.time(Action::UploadHashSave, self.inner.upload_hash_save(repo, id, alg, offset, state))
            .await
    }
    async fn upload_hash_load(&self, repo: &RepoName, id: &str, alg: Algorithm, offset: u64) -> StoreResult<Option<Bytes>> {
        self.time(Action::UploadHashLoad, self.inner.upload_hash_load(repo, id, alg, offset))
            .await
    }
    async fn upload_commit(&self, repo: &RepoName, id: &str, digest: &Digest) -> StoreResult<()> {
        self.time(Action::UploadCommit, self.inner.upload_commit(repo, id, digest)).await
    }
    async fn upload_delete(&self, repo: &RepoName, id: &str) -> StoreResult<bool> {
        self.time(Action::UploadDelete, self.inner.upload_delete(repo, id)).await
    }
    async fn uploads_expired(&self, age: Duration, housekeeping: bool) -> StoreResult<Vec<(RepoName, String)>> {
        self.time(Action::UploadsExpired, self.inner.uploads_expired(age, housekeeping))
            .await
    }
}

/// Every method is forwarded, the defaulted ones too: a backend's own `repo_delete` or
/// `repositories_page` must not be replaced by the port's generic one.
#[async_trait]
impl MetadataStore for Metered<dyn MetadataStore> {
    async fn link_read(&self, link: &Link) -> StoreResult<Option<Digest>> {
        self.time(Action::LinkRead, self.inner.link_read(link)).await
    }
    async fn link_info(&self, link: &Link) -> StoreResult<Option<LinkInfo>> {
        self.time(Action::LinkInfo, self.inner.link_info(link)).await
    }
    async fn link_write(&self, link: &Link, target: &Digest) -> StoreResult<()> {
        self.time(Action::LinkWrite, self.inner.link_write(link, target)).await
    }
    async fn link_delete(&self, link: &Link) -> StoreResult<bool> {
        self.time(Action::LinkDelete, self.inner.link_delete(link)).await
    }
    async fn link_set(&self, set: &LinkSet) -> StoreResult<Vec<Digest>> {
        self.time(Action::LinkSet, self.inner.link_set(set)).await
    }
    async fn tag_swap(&self, repo: &RepoName, tag: &Tag, expected: Option<&Digest>, new: &Digest) -> StoreResult<()> {
        self.time(Action::TagSwap, self.inner.tag_swap(repo, tag, expected, new)).await
    }
    async fn tag_delete(&self, repo: &RepoName, tag: &Tag) -> StoreResult<bool> {
        self.time(Action::TagDelete, self.inner.tag_delete(repo, tag)).await
    }
    async fn tags(&self, repo: &RepoName) -> StoreResult<Option<Vec<String>>> {
        self.time(Action::Tags, self.inner.tags(repo)).await
    }
    async fn repo_exists(&self, repo: &RepoName) -> StoreResult<bool> {
        self.time(Action::RepoExists, self.inner.repo_exists(repo)).await
    }
    async fn repositories(&self) -> StoreResult<Vec<String>> {
        self.time(Action::Repositories, self.inner.repositories()).await
    }
    async fn repo_delete(&self, repo: &RepoName) -> StoreResult<bool> {
        self.time(Action::RepoDelete, self.inner.repo_delete(repo)).await
    }
    async fn activity_read(&self, repo: &RepoName) -> StoreResult<Option<Bytes>> {
        self.time(Action::ActivityRead, self.inner.activity_read(repo)).await
    }
    async fn activity_write(&self, repo: &RepoName, content: Bytes) -> StoreResult<()> {
        self.time(Action::ActivityWrite, self.inner.activity_write(repo, content)).await
    }
    fn usage(&self) -> Option<Arc<usage::UsageIndex>> {
        self.inner.usage()
    }
    async fn repositories_page(
        &self,
        last: Option<&str>,
        limit: usize,
        keep: &(dyn for<'s> Fn(&'s str) -> bool + Send + Sync),
    ) -> StoreResult<Vec<String>> {
        self.time(Action::RepositoriesPage, self.inner.repositories_page(last, limit, keep))
            .await
    }
    async fn tags_page(&self, repo: &RepoName, last: Option<&str>, limit: usize) -> StoreResult<Option<Vec<String>>> {
        self.time(Action::TagsPage, self.inner.tags_page(repo, last, limit)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render() -> String {
        let mut registry = prometheus_client::registry::Registry::default();
        register(&mut registry);
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &registry).unwrap();
        out
    }

    fn count(text: &str, series: &str) -> u64 {
        text.lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok()).unwrap_or(0)
    }

    #[tokio::test]
    async fn calls_are_timed_and_storage_failures_counted_per_action() {
        let dir = tempfile::tempdir().unwrap();
        // A driver name of its own: the families are process-wide.
        let store = metered(Storage::of(fs::FsStore::new(dir.path()).unwrap()), "metered_test");
        let content = Bytes::from_static(b"{}");
        let digest = Digest::of(Algorithm::Sha256, &content);
        assert!(store.blobs.blob_put(&digest, content.clone()).await.unwrap());
        assert!(store.blobs.blob_stat(&digest).await.unwrap().is_some());
        let other = Digest::of(Algorithm::Sha256, b"other");
        assert!(store.blobs.blob_stat(&other).await.unwrap().is_none());
        // A refused digest is an answer, not a storage failure.
        assert!(store.blobs.blob_put(&other, content).await.is_err());
        let text = render();
        let series = |what: &str, action: &str| format!("{what}{{driver=\"metered_test\",action=\"{action}\"}}");
        assert_eq!(
            count(&text, &series("registry_storage_action_seconds_count", "blob_stat")),
            2,
            "{text}"
        );
        assert_eq!(
            count(&text, &series("registry_storage_action_seconds_count", "blob_put")),
            2,
            "{text}"
        );
        assert_eq!(count(&text, &series("wharf_storage_errors_total", "blob_put")), 0, "{text}");
        // Series appear once used.
        assert!(
            !text.contains(&series("registry_storage_action_seconds_count", "tags_page")),
            "{text}"
        );

        // A root that cannot be written any more: the failure is the storage's, and counted.
        let failing = Digest::of(Algorithm::Sha256, b"x");
        std::fs::remove_dir_all(dir.path()).unwrap();
        std::fs::write(dir.path(), b"not a directory").unwrap();
        assert!(store.blobs.blob_put(&failing, Bytes::from_static(b"x")).await.is_err());
        let text = render();
        assert_eq!(count(&text, &series("wharf_storage_errors_total", "blob_put")), 1, "{text}");
        let _ = std::fs::remove_file(dir.path());
    }
}
