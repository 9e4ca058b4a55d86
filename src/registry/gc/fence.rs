//! How a collection and pushes running at the same time stay safe.
//!
//! The hazard: a push relies on content the collection has judged unreferenced. A client asks
//! whether a layer exists (or mounts it, or pushes a manifest naming it), the collection deletes
//! the layer, and the push is acknowledged for an image whose layer is gone. registry:2 has this
//! bug (distribution #3045); wharf closes it with two rules:
//!
//! 1. **Every operation that makes a digest reachable, or says it exists, first "touches" it**
//!    through [`Fence::enter`] and only then checks that it exists: a blob HEAD or GET, a mount,
//!    the commit of an upload, a manifest PUT (its own digest and everything it references).
//!    A collection deletes a digest only while it holds the touched set locked ([`Fence::hold`])
//!    and has found the digest untouched in it: it takes the lock, checks a batch of digests,
//!    deletes those untouched and only then lets go. Both sides take the same lock, so for
//!    each digest one of them goes first: either the touch lands first and the sweep spares the
//!    digest, or the deletion lands first and the operation's existence check, which comes
//!    after its touch, finds the digest gone and answers an error the client retries
//!    (`BLOB_UNKNOWN`, `MANIFEST_BLOB_UNKNOWN`, or a mount that falls back to an upload). Never
//!    an acknowledgement for deleted content.
//! 2. **A collection waits for the operations already past their check when it starts.** Each operation holds the gate
//!    ([`Pass`]) shared from its touch until its links are written; a collection takes it
//!    exclusively for an instant to switch recording on. An operation that checked its blobs
//!    before the collection started has therefore written its links before the mark reads them.
//!
//! Touches are kept for two collections: the one running when they happen (or the next one,
//! for touches between runs) and the one after, so a push that asked about a blob during one
//! collection has at least a whole collection's time to send its manifest, even back-to-back
//! runs with no delay. Between runs, touches are recorded only for `LINGER` after the last one
//! ended; a registry collecting once a day keeps no set in between.
//!
//! The sweep also spares every blob and link newer than its start minus the delay, so content
//! uploaded for a push that has not sent its manifest yet survives; upload sessions themselves
//! are never looked at.

use crate::oci::Digest;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard};

/// How long after a collection ends touches are still recorded for the next one.
const LINGER: Duration = Duration::from_secs(600);

#[derive(Default)]
struct Touched {
    /// Since the running (or last) collection began.
    current: HashSet<Digest>,
    /// During the collection before it.
    previous: HashSet<Digest>,
}

#[derive(Default)]
pub(crate) struct Fence {
    gate: RwLock<()>,
    running: AtomicBool,
    last_end: std::sync::Mutex<Option<Instant>>,
    touched: Mutex<Touched>,
}

/// Held by an operation from its touch until its links are written.
pub(crate) struct Pass<'a> {
    _gate: RwLockReadGuard<'a, ()>,
}

impl Fence {
    fn recording(&self) -> bool {
        self.running.load(Ordering::SeqCst)
            || self
                .last_end
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_some_and(|t| t.elapsed() < LINGER)
    }

    /// Touches `digests` (recorded while collections run) and lets the operation go on.
    pub(crate) async fn enter<'d>(&self, digests: impl IntoIterator<Item = &'d Digest>) -> Pass<'_> {
        let gate = self.gate.read().await;
        if self.recording() {
            let mut touched = self.touched.lock().await;
            touched.current.extend(digests.into_iter().cloned());
        }
        Pass { _gate: gate }
    }

    /// Starts recording touches for a new collection, once every operation already under way
    /// has finished.
    pub(crate) async fn begin(&self) {
        let _alone = self.gate.write().await;
        let mut touched = self.touched.lock().await;
        touched.previous = std::mem::take(&mut touched.current);
        self.running.store(true, Ordering::SeqCst);
    }

    /// The collection is over; touches go on being recorded for `LINGER`.
    pub(crate) async fn end(&self) {
        *self.last_end.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        self.running.store(false, Ordering::SeqCst);
    }

    /// Locks the touched set until the returned hold is dropped: no operation can touch a
    /// digest meanwhile (operations wait, so a collection deletes small batches under a hold).
    pub(crate) async fn hold(&self) -> Held<'_> {
        Held {
            touched: self.touched.lock().await,
        }
    }
}

/// The touched set, locked: what a collection deletes under.
pub(crate) struct Held<'a> {
    touched: MutexGuard<'a, Touched>,
}

impl Held<'_> {
    /// Whether an operation touched `digest` during this collection or the one before.
    pub(crate) fn touched(&self, digest: &Digest) -> bool {
        self.touched.current.contains(digest) || self.touched.previous.contains(digest)
    }
}
