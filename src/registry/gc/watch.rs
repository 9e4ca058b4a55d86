//! Every replica's side of a collection on shared storage (the argument is in `shared`): a
//! poll of the published runs every `poll`, and the check each operation makes before it relies
//! on content ([`Watch::admit`]).

use super::shared::{Timing, RESCUED, RUNS};
use crate::oci::{Digest, ErrorCode, RegistryError};
use crate::registry::Result;
use crate::store::coordination::CoordinationStore;
use crate::store::StoreResult;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// How long an operation waits for a run that has passed its deadline to be withdrawn (or for a
/// fresh poll) before it answers 503.
const WAIT_LIMIT: Duration = Duration::from_secs(60);

/// A published run as this replica knows it.
struct Run {
    candidates: Arc<HashSet<Digest>>,
    /// Until when a rescue marker written now is certain to be read by the collector. None:
    /// the run was there at this replica's first poll, so its window may be over already.
    deadline: Option<Instant>,
    first_seen: Instant,
    /// Rescue markers this replica has written for it.
    rescued: HashSet<Digest>,
    /// Seen for longer than `max_run_age`: its collector has given up on it.
    ignored: bool,
}

#[derive(Default)]
struct View {
    /// When the last successful poll started (its listing was served after that).
    last_ok: Option<Instant>,
    runs: HashMap<String, Run>,
}

pub(crate) struct Watch {
    store: Arc<dyn CoordinationStore>,
    timing: Timing,
    view: Mutex<View>,
    /// Counts successful polls; waiters wake on each.
    polls: tokio::sync::watch::Sender<u64>,
}

/// A run touching some of an operation's digests, as the view had it.
struct Hit {
    run: String,
    deadline: Option<Instant>,
    digests: Vec<Digest>,
}

fn unavailable(message: String) -> RegistryError {
    let mut e = RegistryError::new(ErrorCode::Unavailable, message);
    e.retry_after = Some(5);
    e
}

impl Watch {
    pub(crate) fn new(store: Arc<dyn CoordinationStore>, timing: Timing) -> Watch {
        Watch {
            store,
            timing,
            view: Mutex::new(View::default()),
            polls: tokio::sync::watch::channel(0).0,
        }
    }

    fn view(&self) -> std::sync::MutexGuard<'_, View> {
        self.view.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Polls every `poll` for as long as the process runs.
    pub(crate) fn spawn(self: &Arc<Self>) {
        let watch = self.clone();
        tokio::spawn(async move {
            loop {
                let started = Instant::now();
                if let Err(e) = watch.poll_once(started).await {
                    tracing::warn!(error = %e, "cannot list the running garbage collections; operations on content wait for the next poll");
                }
                tokio::time::sleep_until(started + watch.timing.poll).await;
            }
        });
    }

    /// One poll: the runs listed now, the candidates of those not seen before. A poll counts
    /// (moves `last_ok`) only if everything in it was read, so a run first seen by a poll had
    /// not been published when the previous counted poll started.
    async fn poll_once(&self, started: Instant) -> StoreResult<()> {
        let prefix = format!("{RUNS}/");
        let listed: HashSet<String> = self
            .store
            .coord_list(&prefix)
            .await?
            .into_iter()
            .filter_map(|(name, _)| name.strip_prefix(&prefix).map(str::to_string))
            .collect();
        let (previous, known): (Option<Instant>, HashSet<String>) = {
            let v = self.view();
            (v.last_ok, v.runs.keys().cloned().collect())
        };
        let mut fresh = HashMap::new();
        for run in listed.iter().filter(|r| !known.contains(*r)) {
            // Absent now: withdrawn between the listing and this read, so it deletes no more.
            let Some(bytes) = self.store.coord_get(&format!("{RUNS}/{run}")).await? else {
                continue;
            };
            let candidates: HashSet<Digest> = String::from_utf8_lossy(&bytes).lines().filter_map(|l| l.parse().ok()).collect();
            let deadline = previous.map(|q| q + self.timing.window - self.timing.margin);
            tracing::info!(
                run,
                candidates = candidates.len(),
                first_poll = previous.is_none(),
                "garbage collection run published"
            );
            fresh.insert(
                run.clone(),
                Run {
                    candidates: Arc::new(candidates),
                    deadline,
                    first_seen: started,
                    rescued: HashSet::new(),
                    ignored: false,
                },
            );
        }
        {
            let mut v = self.view();
            v.runs.retain(|name, _| listed.contains(name));
            v.runs.extend(fresh);
            for (name, run) in v.runs.iter_mut() {
                if !run.ignored && run.first_seen.elapsed() > self.timing.max_run_age {
                    tracing::warn!(run = %name, "garbage collection run older than maxrunage: ignored");
                    run.ignored = true;
                }
            }
            v.last_ok = Some(started);
        }
        self.polls.send_modify(|n| *n += 1);
        Ok(())
    }

    /// The runs whose candidates include some of `digests` not rescued yet, and when the last
    /// counted poll started.
    fn hits(&self, digests: &[Digest]) -> (Option<Instant>, Vec<Hit>) {
        let v = self.view();
        let hits = v
            .runs
            .iter()
            .filter(|(_, r)| !r.ignored)
            .filter_map(|(name, r)| {
                let digests: Vec<Digest> = digests
                    .iter()
                    .filter(|d| r.candidates.contains(*d) && !r.rescued.contains(*d))
                    .cloned()
                    .collect();
                (!digests.is_empty()).then(|| Hit {
                    run: name.clone(),
                    deadline: r.deadline,
                    digests,
                })
            })
            .collect();
        (v.last_ok, hits)
    }

    /// Writes rescue markers for `hit`; true if they all landed before its deadline.
    async fn rescue(&self, hit: &Hit, deadline: Instant) -> bool {
        let writes = hit.digests.iter().map(|d| {
            let name = format!("{RESCUED}/{}/{}/{}", hit.run, d.algorithm().as_str(), d.hex());
            async move { self.store.coord_put(&name, bytes::Bytes::new()).await }
        });
        let written = tokio::time::timeout_at(deadline, futures::future::try_join_all(writes)).await;
        let in_time = matches!(written, Ok(Ok(_))) && Instant::now() < deadline;
        match &written {
            Ok(Err(e)) => tracing::warn!(run = %hit.run, error = %e, "cannot write a garbage collection rescue marker"),
            Err(_) => tracing::warn!(run = %hit.run, "a garbage collection rescue marker was not written before the run's deadline"),
            Ok(Ok(_)) => {}
        }
        if in_time {
            if let Some(run) = self.view().runs.get_mut(&hit.run) {
                run.rescued.extend(hit.digests.iter().cloned());
            }
        }
        in_time
    }

    /// Lets an operation that relies on `digests` go on: each digest a running collection may
    /// delete is rescued from it, or the operation waits for that run to be withdrawn. Returns
    /// when the operation's window closes: links it writes must be written before then (None:
    /// `strict` is off and the view is stale, nothing to hold to). Without `strict` (a read that
    /// acknowledges nothing) rescues are best-effort and nothing waits.
    pub(crate) async fn admit(&self, digests: &[Digest], strict: bool) -> Result<Option<Instant>> {
        let begun = Instant::now();
        let mut polls = self.polls.subscribe();
        let usable = self.timing.window - self.timing.margin;
        loop {
            let (last_ok, hits) = self.hits(digests);
            let fresh = last_ok.filter(|q| q.elapsed() < usable);
            let mut blocked = None;
            match fresh {
                None if !strict => return Ok(None),
                None => blocked = Some("the running garbage collections cannot be listed from the store".to_string()),
                Some(_) => {
                    for hit in &hits {
                        let rescued = match hit.deadline {
                            Some(d) if Instant::now() < d => self.rescue(hit, d).await,
                            _ => false,
                        };
                        if !rescued && strict {
                            blocked = Some(format!(
                                "content this request uses is being garbage-collected (run {}); retry shortly",
                                hit.run
                            ));
                        }
                    }
                }
            }
            let Some(why) = blocked else {
                return Ok(fresh.map(|q| q + usable));
            };
            let left = WAIT_LIMIT.saturating_sub(begun.elapsed());
            if left.is_zero() {
                return Err(unavailable(why));
            }
            // The next poll may show the run withdrawn (or the store listable again).
            let wait = left.min(self.timing.poll * 2);
            let _ = tokio::time::timeout(wait, polls.changed()).await;
        }
    }
}

/// An operation's window, from [`Watch::admit`]: links written after it closes are not
/// acknowledged (the collector's re-mark may already have read past them).
pub(crate) fn check_window(window_end: Option<Instant>) -> Result<()> {
    match window_end {
        Some(end) if Instant::now() >= end => Err(unavailable(
            "this request took too long to be safe against a garbage collection on another replica; retry it".into(),
        )),
        _ => Ok(()),
    }
}
