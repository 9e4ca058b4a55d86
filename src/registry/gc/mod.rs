//! Online garbage collection: mark what tags and revisions reach (`mark`), sweep the rest
//! (`sweep`), while the registry serves pushes and pulls (`fence` says how they stay safe),
//! on a schedule (`schedule`), on demand (`POST /v2/_wharf/gc`) or from `wharf garbage-collect`.

pub(crate) mod fence;
mod lease;
mod mark;
pub mod schedule;
pub mod shared;
mod sweep;
pub(crate) mod watch;

use super::{Registry, Result};
use serde::{Deserialize, Serialize};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// registry:2 has no delay (it must run offline); zot's `gcDelay` default.
pub const DEFAULT_DELAY: Duration = Duration::from_secs(3600);

/// How one collection runs.
#[derive(Debug, Clone, Copy)]
pub struct GcOptions {
    /// Report what would go, delete nothing.
    pub dry_run: bool,
    /// Also delete manifests no tag reaches (never the children of a tagged index, never a
    /// referrer whose subject lives).
    pub delete_untagged: bool,
    /// Content and links younger than this are kept (`storage.maintenance.gc.delay`).
    pub delay: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ManifestRemoval {
    pub repository: String,
    pub digest: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BlobRemoval {
    pub digest: String,
    pub size: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LayerLinkRemoval {
    pub repository: String,
    pub digest: String,
}

/// What a collection deleted (or, in a dry run, would delete).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GcReport {
    pub dryrun: bool,
    pub deleteuntagged: bool,
    /// RFC 3339.
    pub started: String,
    pub duration_seconds: f64,
    pub repositories: usize,
    /// Manifests and blobs found in use.
    pub marked: usize,
    pub manifests_deleted: Vec<ManifestRemoval>,
    pub blobs_deleted: Vec<BlobRemoval>,
    pub layer_links_deleted: Vec<LayerLinkRemoval>,
    pub bytes_freed: u64,
    /// What the retention policies deleted (or would) before the mark; None without policies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<super::retention::RetentionReport>,
    /// Unreferenced content kept because it is younger than the delay or a request used it
    /// during the run.
    pub spared: usize,
}

/// `GET /v2/_wharf/gc`: the collection running now, if any, and the last one finished.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GcStatus {
    pub running: bool,
    /// RFC 3339 start of the running collection.
    pub running_since: Option<String>,
    pub runs: u64,
    pub last: Option<GcReport>,
    pub last_error: Option<String>,
}

/// Totals for the metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct GcTotals {
    pub runs: u64,
    pub bytes_freed: u64,
    pub last_duration_seconds: f64,
    /// Seconds since the Unix epoch at the end of the last run (0: none yet).
    pub last_run_unix: f64,
}

/// The registry's collection state.
#[derive(Default)]
pub(crate) struct Gc {
    pub(crate) fence: fence::Fence,
    /// Shared storage: this replica's view of the collections running anywhere (`shared`).
    pub(crate) watch: std::sync::OnceLock<std::sync::Arc<watch::Watch>>,
    /// One collection at a time.
    running: tokio::sync::Mutex<()>,
    status: Mutex<(GcStatus, GcTotals)>,
}

fn rfc3339(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl Registry {
    /// Runs one collection now (after the one running, if any) and reports what it deleted.
    pub async fn collect_garbage(&self, opts: GcOptions) -> Result<GcReport> {
        self.check_writable()?;
        let _one = self.gc.running.lock().await;
        let started = SystemTime::now();
        self.gc_status_update(|s, _| {
            s.running = true;
            s.running_since = Some(rfc3339(started));
        });
        let clock = Instant::now();
        // Recording first: from here on, whatever a request uses is spared (see `fence`).
        self.gc.fence.begin().await;
        let cut = started.checked_sub(opts.delay).unwrap_or(SystemTime::UNIX_EPOCH);
        // On shared storage a dry run deletes nothing, so it needs neither lease nor window.
        let result = match self.options.shared_storage && !opts.dry_run {
            true => self.gc_run_shared(opts, cut).await,
            false => self.gc_run(opts, cut).await,
        };
        self.gc.fence.end().await;
        let elapsed = clock.elapsed().as_secs_f64();
        self.gc_status_update(|s, totals| {
            s.running = false;
            s.running_since = None;
            s.runs += 1;
            totals.runs += 1;
            totals.last_duration_seconds = elapsed;
            totals.last_run_unix = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            match &result {
                Ok(r) => {
                    s.last_error = None;
                    s.last = Some(r.clone());
                    if !r.dryrun {
                        totals.bytes_freed += r.bytes_freed;
                    }
                }
                Err(e) => s.last_error = Some(e.to_string()),
            }
        });
        let mut report = result?;
        report.started = rfc3339(started);
        report.duration_seconds = elapsed;
        if let Some(last) = &mut self.gc.status.lock().unwrap_or_else(|e| e.into_inner()).0.last {
            *last = report.clone();
        }
        tracing::info!(
            dry_run = report.dryrun,
            delete_untagged = report.deleteuntagged,
            manifests = report.manifests_deleted.len(),
            blobs = report.blobs_deleted.len(),
            bytes = report.bytes_freed,
            spared = report.spared,
            seconds = elapsed,
            "garbage collection finished"
        );
        Ok(report)
    }

    /// Retention first, as zot runs it: the tags and untagged manifests its policies drop are
    /// then unreferenced for the mark. In a dry run nothing is dropped, so the blobs they alone
    /// hold are listed by the retention report but not counted as freed.
    async fn gc_retention(&self, dry_run: bool) -> Result<Option<super::retention::RetentionReport>> {
        let has_policies = self.options.retention.as_ref().is_some_and(|r| r.has_policies());
        Ok(match has_policies {
            true => Some(self.apply_retention(dry_run).await?),
            false => None,
        })
    }

    async fn gc_run(&self, opts: GcOptions, cut: SystemTime) -> Result<GcReport> {
        let retention = self.gc_retention(opts.dry_run).await?;
        let marked = self.gc_mark(opts.delete_untagged, cut).await?;
        let mut report = GcReport {
            dryrun: opts.dry_run,
            deleteuntagged: opts.delete_untagged,
            repositories: marked.repositories,
            marked: marked.live.len(),
            retention,
            ..GcReport::default()
        };
        self.gc_sweep_manifests(&marked, cut, opts.dry_run, &mut report).await?;
        self.gc_sweep_blobs(&marked, cut, opts.dry_run, &mut report).await?;
        Ok(report)
    }

    /// The delay collections use unless told otherwise (`storage.maintenance.gc.delay`).
    pub fn gc_delay(&self) -> Duration {
        self.options.gc_delay.unwrap_or(DEFAULT_DELAY)
    }

    /// The running and the last collection.
    pub fn gc_status(&self) -> GcStatus {
        self.gc.status.lock().unwrap_or_else(|e| e.into_inner()).0.clone()
    }

    /// Runs, bytes freed and timings since the server started.
    pub fn gc_totals(&self) -> GcTotals {
        self.gc.status.lock().unwrap_or_else(|e| e.into_inner()).1
    }

    fn gc_status_update(&self, f: impl FnOnce(&mut GcStatus, &mut GcTotals)) {
        let mut s = self.gc.status.lock().unwrap_or_else(|e| e.into_inner());
        let (status, totals) = &mut *s;
        f(status, totals);
    }
}

/// What an operation holds from its touch until its links are written (see `fence`, and
/// `shared` on shared storage).
pub(crate) struct Entered<'a> {
    _pass: fence::Pass<'a>,
    window_end: Option<tokio::time::Instant>,
}

impl Entered<'_> {
    /// Before and after the operation's first link write: links are acknowledged only when
    /// written inside the window its check was made in (`shared`, rule c).
    pub(crate) fn check_window(&self) -> Result<()> {
        watch::check_window(self.window_end)
    }
}

impl Registry {
    /// Touches `digests` before an operation relies on them. `strict` for operations that
    /// write links or acknowledge content; without it (a blob HEAD or GET) a collection on
    /// shared storage is objected to where it can be, and nothing waits or fails.
    pub(crate) async fn gc_enter<'d>(
        &self,
        digests: impl IntoIterator<Item = &'d crate::oci::Digest>,
        strict: bool,
    ) -> Result<Entered<'_>> {
        let digests: Vec<crate::oci::Digest> = digests.into_iter().cloned().collect();
        let window_end = match self.gc.watch.get() {
            Some(watch) => watch.admit(&digests, strict).await?,
            None => None,
        };
        let pass = self.gc.fence.enter(&digests).await;
        Ok(Entered { _pass: pass, window_end })
    }
}
