//! `storage.maintenance.gc.enabled`: a collection every `interval` inside the server, the
//! first one an interval after the start (a restart loop must not turn into a collection loop).

use super::GcOptions;
use crate::registry::Registry;
use std::sync::Arc;
use std::time::Duration;

pub fn spawn(registry: Arc<Registry>, opts: GcOptions, interval: Duration) {
    let interval = interval.max(Duration::from_secs(1));
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            if let Err(e) = registry.collect_garbage(opts).await {
                tracing::warn!(error = %e, "scheduled garbage collection failed; will retry at the next interval");
            }
        }
    });
}
