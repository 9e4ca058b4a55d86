//! One collector at a time on shared storage: a lease object in the store (`gc/lease`) naming
//! its holder, its run and when it expires.
//!
//! The lease only saves work. Without conditional puts (Garage ignores them) two collectors
//! can both believe they hold it for a moment, and a paused holder can outlive its expiry; a
//! collection stays safe anyway, because its safety rests on its published candidates and the
//! replicas' rescue markers (`shared`), never on being alone. What the lease does: a second
//! collection asked for while one runs is refused with a clear error instead of doubling the
//! work, and a holder that finds the lease taken over stops before its next phase or batch.
//!
//! Taking it: read; refuse if another holder's lease has not expired; write ours; wait longer
//! than a store write takes (`SETTLE`), so that a rival's write racing ours has landed; read it
//! back and hold only if it is still ours. The last writer wins and every other one sees that.

use crate::oci::{ErrorCode, RegistryError};
use crate::registry::Result;
use crate::store::coordination::CoordinationStore;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

const LEASE: &str = "gc/lease";

/// How long a lease lasts unless renewed; renewed every third of it.
pub(super) const TTL: Duration = Duration::from_secs(60);

/// Longer than a store write takes: after this, a rival's write that raced ours has landed.
const SETTLE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Record {
    holder: String,
    run: String,
    /// Seconds since the Unix epoch (wall clock: holders are different machines).
    expires: u64,
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn busy(other: &Record) -> RegistryError {
    RegistryError::new(
        ErrorCode::Conflict,
        format!(
            "a garbage collection is already running on shared storage (holder {}, run {}); try again when it has finished",
            other.holder, other.run
        ),
    )
    .with_detail(serde_json::json!({ "holder": other.holder, "run": other.run }))
}

async fn read(store: &dyn CoordinationStore) -> Result<Option<Record>> {
    let Some(bytes) = store.coord_get(LEASE).await? else {
        return Ok(None);
    };
    // An unreadable lease (a torn or foreign object) is nobody's.
    Ok(serde_json::from_slice(&bytes).ok())
}

async fn write(store: &dyn CoordinationStore, record: &Record) -> Result<()> {
    let bytes = serde_json::to_vec(record).map_err(|e| RegistryError::new(ErrorCode::Internal, e.to_string()))?;
    Ok(store.coord_put(LEASE, bytes.into()).await?)
}

/// A held lease, renewed in the background until dropped (then released).
pub(super) struct Lease {
    store: Arc<dyn CoordinationStore>,
    mine: Record,
    lost: Arc<AtomicBool>,
    renewal: tokio::task::JoinHandle<()>,
}

impl Lease {
    /// Takes the lease for `run`, or says who holds it.
    pub(super) async fn acquire(store: Arc<dyn CoordinationStore>, holder: &str, run: &str) -> Result<Lease> {
        if let Some(other) = read(&*store).await? {
            if other.holder != holder && other.expires > unix_now() {
                return Err(busy(&other));
            }
        }
        let mine = Record {
            holder: holder.to_string(),
            run: run.to_string(),
            expires: unix_now() + TTL.as_secs(),
        };
        write(&*store, &mine).await?;
        tokio::time::sleep(SETTLE).await;
        match read(&*store).await? {
            Some(r) if r == mine => {}
            Some(other) => return Err(busy(&other)),
            None => {
                return Err(RegistryError::new(
                    ErrorCode::Conflict,
                    "the garbage collection lease vanished while it was taken; another collector is starting, try again later",
                ))
            }
        }
        let lost = Arc::new(AtomicBool::new(false));
        let renewal = tokio::spawn(renew(store.clone(), mine.clone(), lost.clone()));
        Ok(Lease {
            store,
            mine,
            lost,
            renewal,
        })
    }

    /// Fails if the lease is no longer ours (taken over, or not renewed in time).
    pub(super) async fn check(&self) -> Result<()> {
        let current = read(&*self.store).await?;
        let ours = current
            .as_ref()
            .is_some_and(|r| r.holder == self.mine.holder && r.run == self.mine.run);
        if !ours || self.lost.load(Ordering::SeqCst) {
            self.lost.store(true, Ordering::SeqCst);
            return Err(RegistryError::new(
                ErrorCode::Conflict,
                "the garbage collection lease was lost (another collector took it over); this run was abandoned",
            ));
        }
        Ok(())
    }

    /// Set once the renewal finds the lease gone (what a sweep checks before each batch).
    pub(super) fn lost(&self) -> Arc<AtomicBool> {
        self.lost.clone()
    }

    /// Removes the lease if it is still ours.
    pub(super) async fn release(self) {
        self.renewal.abort();
        match read(&*self.store).await {
            Ok(Some(r)) if r.holder == self.mine.holder && r.run == self.mine.run => {
                if let Err(e) = self.store.coord_delete(LEASE).await {
                    tracing::warn!(error = %e, "cannot release the garbage collection lease; it expires by itself");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read the garbage collection lease to release it; it expires by itself"),
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renewal.abort();
    }
}

/// Extends the lease every third of its life while it is still ours; marks it lost otherwise.
async fn renew(store: Arc<dyn CoordinationStore>, mine: Record, lost: Arc<AtomicBool>) {
    let mut deadline = tokio::time::Instant::now() + TTL;
    loop {
        tokio::time::sleep(TTL / 3).await;
        let renewed = async {
            let current = read(&*store).await?;
            if current.is_none_or(|r| r.holder != mine.holder || r.run != mine.run) {
                return Ok::<bool, RegistryError>(false);
            }
            let next = Record {
                expires: unix_now() + TTL.as_secs(),
                ..mine.clone()
            };
            write(&*store, &next).await?;
            Ok(true)
        };
        match renewed.await {
            Ok(true) => deadline = tokio::time::Instant::now() + TTL,
            Ok(false) => {
                lost.store(true, Ordering::SeqCst);
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot renew the garbage collection lease; retrying");
                if tokio::time::Instant::now() >= deadline {
                    lost.store(true, Ordering::SeqCst);
                    return;
                }
            }
        }
    }
}
