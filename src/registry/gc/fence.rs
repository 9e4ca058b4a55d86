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
//!    A collection deletes a digest only inside [`Fence::unless_touched`], which holds the
//!    touched set locked while it checks the digest and deletes it. Both sides take the same
//!    lock, so one of them goes first: either the touch lands first and the sweep spares the
//!    digest, or the deletion lands first and the operation's existence check, which comes
//!    after its touch, finds the digest gone and answers an error the client retries
//!    (`BLOB_UNKNOWN`, `MANIFEST_BLOB_UNKNOWN`, or a mount that falls back to an upload). Never
//!    an acknowledgement for deleted content.
//! 2. **Touches are only recorded while a collection runs, so a collection waits for the
//!    operations already past their check when it starts.** Each operation holds the gate
//!    ([`Pass`]) shared from its touch until its links are written; a collection takes it
//!    exclusively for an instant to switch recording on. An operation that checked its blobs
//!    before the collection started has therefore written its links before the mark reads them.
//!
//! The sweep also spares every blob and link newer than its start minus the delay, so content
//! uploaded for a push that has not sent its manifest yet survives; upload sessions themselves
//! are never looked at.

use crate::oci::Digest;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::{Mutex, RwLock, RwLockReadGuard};

#[derive(Default)]
pub(crate) struct Fence {
    gate: RwLock<()>,
    recording: AtomicBool,
    touched: Mutex<HashSet<Digest>>,
}

/// Held by an operation from its touch until its links are written.
pub(crate) struct Pass<'a> {
    _gate: RwLockReadGuard<'a, ()>,
}

impl Fence {
    /// Touches `digests` (recorded only while a collection runs) and lets the operation go on.
    pub(crate) async fn enter<'d>(&self, digests: impl IntoIterator<Item = &'d Digest>) -> Pass<'_> {
        let gate = self.gate.read().await;
        if self.recording.load(Ordering::SeqCst) {
            let mut touched = self.touched.lock().await;
            touched.extend(digests.into_iter().cloned());
        }
        Pass { _gate: gate }
    }

    /// Starts recording touches, once every operation already under way has finished.
    pub(crate) async fn begin(&self) {
        let _alone = self.gate.write().await;
        self.touched.lock().await.clear();
        self.recording.store(true, Ordering::SeqCst);
    }

    /// Stops recording (the collection is over).
    pub(crate) async fn end(&self) {
        let mut touched = self.touched.lock().await;
        self.recording.store(false, Ordering::SeqCst);
        touched.clear();
    }

    /// Runs `delete` for `digest` unless an operation touched it since the collection began;
    /// no operation can touch it while `delete` runs. None: spared.
    pub(crate) async fn unless_touched<R>(&self, digest: &Digest, delete: impl AsyncFnOnce() -> R) -> Option<R> {
        let touched = self.touched.lock().await;
        if touched.contains(digest) {
            return None;
        }
        let result = delete().await;
        drop(touched);
        Some(result)
    }
}
