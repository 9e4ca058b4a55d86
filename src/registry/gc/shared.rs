//! Garbage collection on shared storage: several replicas serve one bucket while one of them
//! (or `wharf garbage-collect`) collects.
//!
//! The local fence (`fence`) sees only its own process's requests, and the store gives no
//! conditional puts to lock with (Garage ignores `If-None-Match`/`If-Match`). So a collection
//! announces what it may delete and gives every replica a window to object, measured so that an
//! objection either reaches the collector or is never acknowledged. What it needs of the store:
//! read-after-write consistency of objects and listings (a write that returned is seen by every
//! later read and list; AWS S3 gives it, Garage with its default quorums does), and of the
//! machines: clocks that tick at nearly one rate (durations are measured on each machine's
//! monotonic clock, never compared across machines), and no process paused for longer than
//! `maxrunage` minus `margin`.
//!
//! # The protocol
//! - The collector takes the lease (`lease`; it only saves work, nothing below rests on it),
//!   marks from the bucket (in shared mode the index answers links and listings from the store)
//!   and publishes the run's *candidates* as one object, `wharf/gc/runs/<run>`: every blob
//!   nothing marked and every manifest revision `deleteuntagged` would drop, by digest (a layer
//!   link is removed only with its blob, so a blob's digest stands for its links too). Let `P`
//!   be the moment that put returned.
//! - Every replica (the collector's own process too) lists `wharf/gc/runs/` every `poll`
//!   ([`watch`](super::watch)). For each run it keeps the candidates and a *deadline* on its own
//!   clock: `q + window − margin`, where `q` is the start of its last complete poll that did not
//!   list the run. A poll that lists a run for the first time with no earlier complete poll
//!   (just started) gives it no deadline: it is treated as passed.
//! - An operation about to rely on content (a blob HEAD or GET, a mount, an upload's commit, a
//!   manifest PUT's own digest and its references: where the fence's `enter` is) first asks its
//!   replica's view ([`Watch::admit`](super::watch::Watch::admit)):
//!   a. if the last complete poll started `window − margin` ago or more, the view may miss a run
//!   that is near its end: wait for a fresh poll, at most a minute, then 503;
//!   b. for a digest that is a candidate of a run in the view: before the run's deadline, write a
//!   rescue marker `wharf/gc/rescued/<run>/<alg>/<hex>` and go on only if the put returned before
//!   the deadline; otherwise wait until the run is withdrawn (at most a minute, then 503) and go
//!   on as if it had never been. Then the operation checks that the content exists, as before.
//!   c. An operation that writes links (manifest PUT, mount, commit) writes its first link
//!   (the revision, the layer link) only if its view's window, `q_last + window − margin`, is
//!   still open, and is acknowledged only if that write returned before the window closed;
//!   otherwise 503 (retrying is safe: it checks again).
//! - The collector waits until `P + window`, reads the rescue markers, marks again from the
//!   bucket with the same cut, and deletes only phase-one candidates that are neither rescued
//!   nor marked now (nor younger than the cut: the sweep's rules stand), checking its lease and
//!   its run's age before each batch. Then it withdraws the run (deletes `runs/<run>`, then the
//!   markers).
//!
//! # Why an acknowledged push never loses content
//! Take an acknowledged operation that relied on digest `d` and a run `r` that deletes `d`.
//! Deletions happen after the collector's second mark, which starts after `P + window`.
//! - If the operation's view listed `r` with `d` a candidate, it either wrote a marker that
//!   returned before the deadline `q + window − margin`, or waited until `r` was withdrawn.
//!   `q` started before the listing that missed `r` was served, and that listing was served
//!   before `P` (a listing after the put returned would show it): `q < P`, so the marker was
//!   stored before `P + window − margin`, before the collector read the markers, and `d` was
//!   spared. Having waited for the withdrawal instead, the operation checked `d`'s existence after
//!   `r` had deleted all it would: it saw `d` gone, or `r` never deleted it.
//! - If its view listed `r` without `d` among the candidates, `r` never deletes `d`.
//! - If its view did not list `r`, `r`'s put returned after the view's last poll started
//!   (`P > q_last`). The operation checked `d` exists (so no deletion had happened yet) and
//!   its first link returned before `q_last + window − margin < P + window`, so before the
//!   second mark began: that mark reads the link, a revision (a root, or recent with
//!   `deleteuntagged`) or a layer link younger than the cut, and keeps `d`.
//!   For a HEAD alone nothing is acknowledged that a deletion could break: the manifest PUT that
//!   follows checks again.
//!
//! The margin covers the time between a check and the write it allows, and the drift of two
//! clocks over one window. A run older than `maxrunage` is abandoned by its collector (checked
//! before each batch, with the margin) before any replica ignores it (replicas count from when
//! they first listed it, after `P`). A second collector running at the same time (a lost lease)
//! is one more run, safe by the same argument.

use super::lease::Lease;
use super::mark::Marked;
use super::{GcOptions, GcReport};
use crate::oci::{Digest, ErrorCode, RegistryError, RepoName};
use crate::registry::{Registry, Result};
use crate::store::coordination::CoordinationStore;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// Where the published runs live, under wharf's coordination prefix.
pub(super) const RUNS: &str = "gc/runs";
/// Where the rescue markers of each run live.
pub(super) const RESCUED: &str = "gc/rescued";

/// `storage.maintenance.gc.{window,poll,margin,maxrunage}`.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub window: Duration,
    pub poll: Duration,
    pub margin: Duration,
    pub max_run_age: Duration,
}

impl Timing {
    /// A push that touches a candidate waits at most a minute (a run's window less what polls
    /// take); a replica whose listings fail refuses pushes after 90 s.
    pub const DEFAULT: Timing = Timing {
        window: Duration::from_secs(120),
        poll: Duration::from_secs(5),
        margin: Duration::from_secs(30),
        max_run_age: Duration::from_secs(6 * 3600),
    };

    /// A window that leaves replicas time to see a run and object to it.
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.poll.is_zero() || self.margin.is_zero() {
            return Err("storage.maintenance.gc.poll and margin must be more than zero".into());
        }
        if self.window <= self.poll + self.margin * 2 {
            return Err("storage.maintenance.gc.window must be longer than poll plus twice the margin".into());
        }
        if self.max_run_age <= self.window + self.margin * 2 {
            return Err("storage.maintenance.gc.maxrunage must be longer than the window plus twice the margin".into());
        }
        Ok(())
    }
}

impl Default for Timing {
    fn default() -> Self {
        Timing::DEFAULT
    }
}

/// What a sweep on shared storage checks before each batch: its lease still held, its run
/// not too old.
#[derive(Clone)]
pub(super) struct Going {
    lost: Arc<AtomicBool>,
    until: Instant,
}

impl Going {
    pub(super) fn check(&self) -> Result<()> {
        if self.lost.load(Ordering::SeqCst) {
            return Err(RegistryError::new(
                ErrorCode::Conflict,
                "the garbage collection lease was lost; this run was abandoned",
            ));
        }
        if Instant::now() >= self.until {
            return Err(RegistryError::new(
                ErrorCode::Internal,
                "the garbage collection run outlived storage.maintenance.gc.maxrunage; abandoned",
            ));
        }
        Ok(())
    }
}

/// Names this process in the lease.
fn holder() -> &'static str {
    static HOLDER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOLDER.get_or_init(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}-{:08x}", host.trim(), std::process::id(), rand::random::<u32>())
    })
}

fn new_run() -> String {
    let millis = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("{millis}-{:08x}", rand::random::<u32>())
}

impl Registry {
    /// Starts this replica's watch of the collections other replicas run (`wharf serve` on
    /// shared storage).
    pub fn gc_watch_start(&self) {
        let Some(store) = self.store.coordination.clone() else { return };
        let watch = Arc::new(super::watch::Watch::new(store, self.options.gc_timing));
        if self.gc.watch.set(watch.clone()).is_ok() {
            watch.spawn();
        }
    }

    /// One collection on shared storage, under the lease (see the module's argument).
    pub(super) async fn gc_run_shared(&self, opts: GcOptions, cut: SystemTime) -> Result<GcReport> {
        let store = self
            .store
            .coordination
            .clone()
            .ok_or_else(|| RegistryError::new(ErrorCode::Unsupported, "this shared storage has no place for a collection lease"))?;
        let run = new_run();
        let lease = Lease::acquire(store.clone(), holder(), &run).await?;
        self.gc_clean_stale_runs(&*store).await;
        let result = self.gc_shared_phases(opts, cut, &store, &run, &lease).await;
        // Withdrawn whatever happened: the sweep, if any, has ended.
        if let Err(e) = self.gc_withdraw(&*store, &run).await {
            tracing::warn!(run, error = %e, "cannot withdraw the garbage collection run; replicas ignore it after maxrunage");
        }
        lease.release().await;
        result
    }

    async fn gc_shared_phases(
        &self,
        opts: GcOptions,
        cut: SystemTime,
        store: &Arc<dyn CoordinationStore>,
        run: &str,
        lease: &Lease,
    ) -> Result<GcReport> {
        let timing = self.options.gc_timing;
        let retention = self.gc_retention(opts.dry_run).await?;
        let first = self.gc_mark(opts.delete_untagged, cut).await?;
        let blobs = self.gc_unmarked_blobs(&first).await?;
        let manifests: HashSet<(RepoName, Digest)> = first.manifests.iter().cloned().collect();
        let listed: String = blobs
            .iter()
            .chain(manifests.iter().map(|(_, d)| d))
            .map(|d| format!("{d}\n"))
            .collect();
        lease.check().await?;
        let publishing = Instant::now();
        store.coord_put(&format!("{RUNS}/{run}"), listed.into()).await?;
        let published = Instant::now();
        tracing::info!(
            run,
            blobs = blobs.len(),
            manifests = manifests.len(),
            "garbage collection candidates published; deleting after the window"
        );
        tokio::time::sleep_until(published + timing.window).await;
        lease.check().await?;
        let rescued = self.gc_rescued(&**store, run).await?;
        let mut second = self.gc_mark(opts.delete_untagged, cut).await?;
        second.live.extend(rescued.iter().cloned());
        second.manifests.retain(|m| manifests.contains(m) && !second.live.contains(&m.1));
        second.only = Some(blobs);
        second.going = Some(Going {
            lost: lease.lost(),
            until: publishing + timing.max_run_age - timing.margin,
        });
        let mut report = GcReport {
            dryrun: false,
            deleteuntagged: opts.delete_untagged,
            repositories: second.repositories,
            marked: second.live.len(),
            retention,
            ..GcReport::default()
        };
        report.spared += rescued.len();
        lease.check().await?;
        self.gc_sweep_manifests(&second, cut, false, &mut report).await?;
        lease.check().await?;
        self.gc_sweep_blobs(&second, cut, false, &mut report).await?;
        Ok(report)
    }

    /// Every stored blob the mark did not reach nor find recently linked.
    async fn gc_unmarked_blobs(&self, marked: &Marked) -> Result<HashSet<Digest>> {
        let mut out = HashSet::new();
        let mut after: Option<Digest> = None;
        loop {
            let page = self.store.blobs.blobs_page(after.as_ref(), super::sweep::BLOB_PAGE).await?;
            let Some(last) = page.last().cloned() else { break };
            out.extend(page.into_iter().filter(|d| !marked.live.contains(d) && !marked.recent.contains(d)));
            after = Some(last);
        }
        Ok(out)
    }

    /// The digests replicas rescued from `run`.
    async fn gc_rescued(&self, store: &dyn CoordinationStore, run: &str) -> Result<HashSet<Digest>> {
        let prefix = format!("{RESCUED}/{run}/");
        Ok(store
            .coord_list(&prefix)
            .await?
            .into_iter()
            .filter_map(|(name, _)| {
                let (alg, hex) = name.strip_prefix(&prefix)?.split_once('/')?;
                format!("{alg}:{hex}").parse().ok()
            })
            .collect())
    }

    /// Withdraws a run: its candidates first (replicas waiting on it go on at their next poll),
    /// then its markers, which nobody reads any more.
    async fn gc_withdraw(&self, store: &dyn CoordinationStore, run: &str) -> Result<()> {
        store.coord_delete(&format!("{RUNS}/{run}")).await?;
        for (name, _) in store.coord_list(&format!("{RESCUED}/{run}/")).await? {
            store.coord_delete(&name).await?;
        }
        Ok(())
    }

    /// Removes what crashed collectors left: runs published more than twice `maxrunage` ago
    /// (by the store's clock against this one; their collectors gave up at `maxrunage`), and
    /// markers of runs no longer published, as old.
    async fn gc_clean_stale_runs(&self, store: &dyn CoordinationStore) {
        let stale = self.options.gc_timing.max_run_age * 2;
        let old = |t: SystemTime| t.elapsed().is_ok_and(|age| age > stale);
        let cleaned = async {
            let runs = store.coord_list(&format!("{RUNS}/")).await?;
            let published: HashSet<String> = runs.iter().map(|(n, _)| n.clone()).collect();
            for (name, written) in &runs {
                if old(*written) {
                    tracing::warn!(run = %name, "removing a garbage collection run its collector left behind");
                    store.coord_delete(name).await?;
                }
            }
            for (name, written) in store.coord_list(&format!("{RESCUED}/")).await? {
                let run = name.split('/').nth(2).unwrap_or_default();
                if old(written) && !published.contains(&format!("{RUNS}/{run}")) {
                    store.coord_delete(&name).await?;
                }
            }
            Ok::<(), RegistryError>(())
        };
        if let Err(e) = cleaned.await {
            tracing::warn!(error = %e, "cannot clean up old garbage collection runs");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_leave_replicas_time_and_a_too_short_window_is_refused() {
        assert_eq!(Timing::DEFAULT.check(), Ok(()));
        let s = Duration::from_secs;
        let short = Timing {
            window: s(60),
            poll: s(5),
            margin: s(30),
            max_run_age: s(3600),
        };
        assert!(
            short.check().unwrap_err().contains("window"),
            "60 s is not more than 5 s + 2 × 30 s"
        );
        let old = Timing {
            max_run_age: s(150),
            ..Timing::DEFAULT
        };
        assert!(old.check().unwrap_err().contains("maxrunage"));
        let no_margin = Timing {
            margin: Duration::ZERO,
            ..Timing::DEFAULT
        };
        assert!(no_margin.check().is_err());
    }
}
