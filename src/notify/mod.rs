//! Webhook notifications: registry:2's `notifications.endpoints`, with the same envelope
//! (`application/vnd.docker.distribution.events.v2+json`, `{"events":[...]}`, one event per
//! request as registry:2 sends them), filters, timeout and threshold/backoff — but each
//! endpoint's events go through a queue on disk (`queue`), so a restart or a receiver that is
//! down for hours loses nothing: an event leaves the queue only once the endpoint answered 2xx,
//! and endpoints get their events in order (the oldest is retried until it is taken).
//!
//! Per endpoint two tasks run: the enqueuer, subscribed to the registry's event stream, filters
//! and writes events to the queue; the deliverer posts the oldest queued event, and on failure
//! retries as registry:2's breaker does (`threshold` tries straight away, then one try per
//! `backoff` until one succeeds).

mod delivery;
mod post;
pub mod queue;
mod signature;

use crate::config::notifications::{Endpoint, Notifications};
use crate::http::metrics::notifications::{EndpointMetrics, NotificationMetrics};
use crate::registry::events::{Event, Subscription};
use crate::registry::Registry;
use anyhow::Context;
use queue::DiskQueue;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, Notify};

pub use post::EVENTS_MEDIA_TYPE;

/// Events taken from the stream and written to the queue with one sync.
const BATCH: usize = 256;
/// How long a stop waits for the enqueuers to write what they already received.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// The running endpoints; `stop` writes what is still in flight to the queues.
pub struct Notifier {
    enqueuers: Vec<(oneshot::Sender<()>, tokio::task::JoinHandle<()>)>,
    deliverers: Vec<tokio::task::JoinHandle<()>>,
}

/// The queue directory of an endpoint without a `queue.path`: under the storage root's
/// `_wharf` directory, which registry:2 never reads.
pub fn default_queue_dir(root: &Path, endpoint_name: &str) -> PathBuf {
    let safe: String = endpoint_name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' })
        .collect();
    crate::store::paths::Layout::new(root).v2().join("_wharf/notifications").join(safe)
}

/// Starts every enabled endpoint. `source_addr` is the `source.addr` of the events
/// (`hostname:port`, as registry:2 fills it).
pub fn start(
    cfg: &Notifications,
    root: &Path,
    registry: &Registry,
    metrics: &NotificationMetrics,
    source_addr: &str,
) -> anyhow::Result<Notifier> {
    let mut notifier = Notifier {
        enqueuers: Vec::new(),
        deliverers: Vec::new(),
    };
    let mut dirs = std::collections::HashSet::new();
    for (i, endpoint) in cfg.endpoints.iter().enumerate() {
        let what = format!("notifications.endpoints[{i}] ({})", endpoint.name);
        if endpoint.disabled {
            tracing::info!(endpoint = %endpoint.name, "endpoint disabled, skipping");
            continue;
        }
        let dir = match endpoint.queue.path.as_os_str().is_empty() {
            true => default_queue_dir(root, &endpoint.name),
            false => endpoint.queue.path.clone(),
        };
        if !dirs.insert(dir.clone()) {
            anyhow::bail!(
                "{what}: its queue {} is another endpoint's too (give each endpoint its own name)",
                dir.display()
            );
        }
        let parts = Parts::new(endpoint, cfg.events.includereferences, &dir, metrics, source_addr).with_context(|| what.clone())?;
        tracing::info!(
            endpoint = %endpoint.name,
            url = %parts.target.uri,
            timeout = ?endpoint.timeout_or_default(),
            queued = parts.queue.len(),
            queue = %dir.display(),
            "configuring notification endpoint"
        );
        let (stop, stopped) = oneshot::channel();
        let enqueuer = Enqueuer {
            subscription: registry.subscribe(),
            filter: parts.filter,
            queue: parts.queue.clone(),
            wake: parts.wake.clone(),
            metrics: parts.metrics.clone(),
            name: endpoint.name.clone(),
            full_logged: false,
        };
        notifier.enqueuers.push((stop, tokio::spawn(enqueuer.run(stopped))));
        let deliverer = delivery::Deliverer {
            name: endpoint.name.clone(),
            queue: parts.queue,
            target: parts.target,
            signer: parts.signer,
            threshold: endpoint.threshold_or_default(),
            backoff: endpoint.backoff_or_default(),
            wake: parts.wake,
            metrics: parts.metrics,
        };
        notifier.deliverers.push(tokio::spawn(deliverer.run()));
    }
    Ok(notifier)
}

impl Notifier {
    /// Lets each enqueuer write the events it already received, then stops delivering (what
    /// is queued goes out after the next start).
    pub async fn stop(self) {
        for (stop, task) in self.enqueuers {
            let _ = stop.send(());
            if tokio::time::timeout(STOP_WAIT, task).await.is_err() {
                tracing::warn!("a notification queue took too long to write its last events");
            }
        }
        for task in self.deliverers {
            task.abort();
        }
    }
}

/// What an endpoint's tasks share, built (and checked) before anything runs.
struct Parts {
    filter: Filter,
    queue: Arc<DiskQueue>,
    target: post::Target,
    signer: Option<signature::Signer>,
    wake: Arc<Notify>,
    metrics: EndpointMetrics,
}

impl Parts {
    fn new(e: &Endpoint, include_references: bool, dir: &Path, metrics: &NotificationMetrics, source_addr: &str) -> anyhow::Result<Parts> {
        let target = post::Target::new(&e.url, &e.headers, e.timeout_or_default())?;
        let signer = match &e.signing {
            None => None,
            Some(s) => {
                let key = s.key_bytes().with_context(|| format!("signing.keyfile {}", s.keyfile.display()))?;
                Some(signature::Signer::new(s.header_name(), &key)?)
            }
        };
        let queue = DiskQueue::open(dir, e.queue.maxevents).with_context(|| format!("queue {}", dir.display()))?;
        let metrics = metrics.endpoint(&e.name);
        metrics.recovered(queue.len());
        Ok(Parts {
            filter: Filter {
                actions: e.ignore.actions.iter().map(|a| a.to_ascii_lowercase()).collect(),
                media_types: e.ignored_media_types().map(str::to_string).collect(),
                include_references,
                source_addr: source_addr.to_string(),
            },
            queue: Arc::new(queue),
            target,
            signer,
            wake: Arc::new(Notify::new()),
            metrics,
        })
    }
}

/// registry:2's ignoredSink, and the envelope each kept event is sent in.
struct Filter {
    actions: Vec<String>,
    media_types: Vec<String>,
    include_references: bool,
    source_addr: String,
}

#[derive(serde::Serialize)]
struct Envelope<'a> {
    events: [&'a Event; 1],
}

impl Filter {
    fn keeps(&self, event: &Event) -> bool {
        let action = serde_json::to_value(event.action).ok();
        let action = action.as_ref().and_then(|a| a.as_str()).unwrap_or_default();
        !self.actions.iter().any(|a| a == action) && !self.media_types.contains(&event.target.media_type)
    }

    /// The body sent for `event`: its envelope with `source.addr` filled in.
    fn body(&self, event: &Event) -> Vec<u8> {
        let mut event = event.clone();
        event.source.addr = self.source_addr.clone();
        if !self.include_references {
            event.target.references.clear();
        }
        // Plain data: serialising cannot fail.
        serde_json::to_vec(&Envelope { events: [&event] }).unwrap_or_default()
    }
}

struct Enqueuer {
    subscription: Subscription,
    filter: Filter,
    queue: Arc<DiskQueue>,
    wake: Arc<Notify>,
    metrics: EndpointMetrics,
    name: String,
    /// Whether the queue being full was already logged (once until it has room again).
    full_logged: bool,
}

impl Enqueuer {
    async fn run(mut self, mut stop: oneshot::Receiver<()>) {
        loop {
            let first = tokio::select! {
                event = self.subscription.recv() => event,
                _ = &mut stop => None,
            };
            let Some(first) = first else { break };
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match self.subscription.try_recv() {
                    Some(e) => batch.push(e),
                    None => break,
                }
            }
            self.write(batch).await;
        }
        // Stopping (or the registry is gone): what was received still goes to disk.
        loop {
            let batch: Vec<_> = std::iter::from_fn(|| self.subscription.try_recv()).take(BATCH).collect();
            if batch.is_empty() {
                break;
            }
            self.write(batch).await;
        }
    }

    async fn write(&mut self, batch: Vec<Arc<Event>>) {
        let bodies: Vec<Vec<u8>> = batch.iter().filter(|e| self.filter.keeps(e)).map(|e| self.filter.body(e)).collect();
        if bodies.is_empty() {
            return;
        }
        let queue = self.queue.clone();
        let count = bodies.len();
        let pushed = tokio::task::spawn_blocking(move || queue.push_batch(&bodies)).await;
        match pushed {
            Ok(Ok(pushed)) => {
                self.metrics.queued(pushed.queued);
                if pushed.refused > 0 {
                    self.metrics.dropped(pushed.refused);
                    if !self.full_logged {
                        tracing::warn!(endpoint = %self.name, dropped = pushed.refused, queued = self.queue.len(),
                            "notification queue is full: new events are dropped until the endpoint takes some (raise queue.maxevents to keep more)");
                        self.full_logged = true;
                    }
                } else {
                    self.full_logged = false;
                }
                self.wake.notify_one();
            }
            Ok(Err(e)) => {
                self.metrics.dropped(count as u64);
                tracing::error!(endpoint = %self.name, error = %e, lost = count, "cannot write events to the notification queue");
            }
            Err(e) => tracing::error!(endpoint = %self.name, error = %e, "the notification queue writer failed"),
        }
    }
}
