//! The deliverer: posts an endpoint's oldest queued event until it is taken, then the next.
//! Failures are retried as registry:2's retrying sink with its breaker does: `threshold`
//! failures in a row are retried at once, after that one try per `backoff` until a success
//! closes the breaker again.

use super::post::Target;
use super::queue::DiskQueue;
use super::signature::Signer;
use crate::http::metrics::notifications::EndpointMetrics;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

pub(super) struct Deliverer {
    pub name: String,
    pub queue: Arc<DiskQueue>,
    pub target: Target,
    pub signer: Option<Signer>,
    pub threshold: u32,
    pub backoff: Duration,
    pub wake: Arc<Notify>,
    pub metrics: EndpointMetrics,
}

/// registry:2's breaker: open once `threshold` failures happened in a row.
struct Breaker {
    threshold: u32,
    backoff: Duration,
    failures: u32,
    last_failure: Option<Instant>,
}

impl Breaker {
    /// How long to wait before the next try.
    fn wait(&self) -> Duration {
        match self.last_failure {
            Some(last) if self.failures >= self.threshold => (last + self.backoff).saturating_duration_since(Instant::now()),
            _ => Duration::ZERO,
        }
    }

    /// Counts a failure; true when it is the one that opened the breaker.
    fn failed(&mut self) -> bool {
        self.failures = self.failures.saturating_add(1);
        self.last_failure = Some(Instant::now());
        self.failures == self.threshold
    }

    /// Closes the breaker; true when it was open.
    fn succeeded(&mut self) -> bool {
        let was_open = self.failures >= self.threshold;
        self.failures = 0;
        self.last_failure = None;
        was_open
    }
}

impl Deliverer {
    pub(super) async fn run(self) {
        let mut breaker = Breaker {
            threshold: self.threshold.max(1),
            backoff: self.backoff,
            failures: 0,
            last_failure: None,
        };
        loop {
            let queue = self.queue.clone();
            let next = tokio::task::spawn_blocking(move || queue.oldest()).await;
            let (seq, body) = match next {
                Ok(Ok(Some(next))) => next,
                // Nothing queued: wait for the enqueuer (a wake-up sent meanwhile is kept).
                Ok(Ok(None)) => {
                    self.wake.notified().await;
                    continue;
                }
                Ok(Err(e)) => {
                    tracing::error!(endpoint = %self.name, error = %e, "cannot read the notification queue");
                    tokio::time::sleep(self.backoff).await;
                    continue;
                }
                Err(_) => return,
            };
            tokio::time::sleep(breaker.wait()).await;
            let signature: Vec<_> = self.signer.iter().map(|s| s.sign(&body)).collect();
            let outcome = self.target.post(body.into(), &signature).await;
            let failure = match outcome {
                Ok(status) if (200..300).contains(&status) => {
                    self.metrics.answered(status);
                    if let Err(e) = self.queue.remove(seq) {
                        tracing::error!(endpoint = %self.name, error = %e, "cannot remove a delivered event from the queue");
                    }
                    if breaker.succeeded() {
                        tracing::info!(endpoint = %self.name, pending = self.queue.len(), "notification endpoint accepts events again");
                    }
                    continue;
                }
                Ok(status) => {
                    self.metrics.answered(status);
                    format!("response status {status} unaccepted")
                }
                Err(e) => {
                    self.metrics.errored();
                    format!("{e:#}")
                }
            };
            if breaker.failed() {
                // Header values are never logged: they hold tokens.
                tracing::warn!(endpoint = %self.name, error = %failure, pending = self.queue.len(), backoff = ?self.backoff,
                    "notification endpoint failing; retrying once per backoff, events stay queued");
            } else {
                tracing::debug!(endpoint = %self.name, error = %failure, "notification delivery failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_breaker_opens_after_threshold_failures_and_closes_on_success() {
        let mut b = Breaker {
            threshold: 2,
            backoff: Duration::from_secs(60),
            failures: 0,
            last_failure: None,
        };
        assert_eq!(b.wait(), Duration::ZERO);
        assert!(!b.failed());
        assert_eq!(b.wait(), Duration::ZERO, "below the threshold a retry goes at once");
        assert!(b.failed(), "the threshold-th failure opens it");
        assert!(b.wait() > Duration::from_secs(59));
        assert!(b.succeeded());
        assert_eq!(b.wait(), Duration::ZERO);
    }
}
