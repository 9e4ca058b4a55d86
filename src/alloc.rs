//! Memory allocator settings: how glibc's malloc is tuned for a registry's buffers, and when
//! freed memory is handed back to the kernel.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// glibc's malloc defaults suit a few long-lived threads, not a server whose blocking pool
/// comes and goes with the load: every thread may get an arena of its own (up to eight per
/// core), and the mmap threshold climbs to the size of whatever large buffer was freed last, so
/// resident memory creeps up for minutes under a mix of pushes and pulls. Two arenas keep
/// contention low on the async workers. The fixed mmap threshold sends every buffer larger than
/// the HTTP read buffer straight back to the kernel when freed, so big buffers never fragment
/// the arenas. The trim threshold is what lets a push stream cheaply: its working set of read
/// buffers (the hashing queue and a write batch, a few MiB) stays in the arena between reads
/// instead of being returned and faulted in again page by page; `LargeBody` hands it back once
/// the push is over. `MALLOC_ARENA_MAX` etc. in the environment are applied by glibc before this
/// runs and are overridden here only where unset.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn tune() {
    const ARENAS: libc::c_int = 2;
    const MMAP_THRESHOLD: libc::c_int = 128 * 1024;
    const TRIM_THRESHOLD: libc::c_int = 4 * 1024 * 1024;
    let unset = |var: &str| std::env::var_os(var).is_none();
    // mallopt only fails for an unknown parameter or an out-of-range value; either way the
    // defaults stay, which is correct, just hungrier.
    // SAFETY: mallopt only sets malloc parameters; it is called before any other thread starts.
    unsafe {
        if unset("MALLOC_ARENA_MAX") {
            libc::mallopt(libc::M_ARENA_MAX, ARENAS);
        }
        if unset("MALLOC_MMAP_THRESHOLD_") {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        }
        if unset("MALLOC_TRIM_THRESHOLD_") {
            libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn tune() {}

/// How long after the last large request body ends its buffers are handed back, so that a
/// client pushing chunk after chunk keeps reusing them rather than faulting them in again.
const GIVE_BACK_AFTER: Duration = Duration::from_secs(1);

static LARGE_BODIES_IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
static LARGE_BODIES_ENDED: AtomicU64 = AtomicU64::new(0);

/// Held while a large request body streams in. When the last one ends and no other starts for
/// a moment, the memory malloc kept for its read buffers goes back to the kernel.
pub struct LargeBody(());

impl LargeBody {
    pub fn begin() -> LargeBody {
        LARGE_BODIES_IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
        LargeBody(())
    }
}

impl Drop for LargeBody {
    fn drop(&mut self) {
        LARGE_BODIES_IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
        let ended = LARGE_BODIES_ENDED.fetch_add(1, Ordering::SeqCst) + 1;
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            tokio::time::sleep(GIVE_BACK_AFTER).await;
            let quiet = LARGE_BODIES_IN_FLIGHT.load(Ordering::SeqCst) == 0 && LARGE_BODIES_ENDED.load(Ordering::SeqCst) == ended;
            if quiet {
                let _ = tokio::task::spawn_blocking(give_back_free_memory).await;
            }
        });
    }
}

/// Hands memory that is free inside malloc's arenas back to the kernel.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn give_back_free_memory() {
    // SAFETY: malloc_trim only walks and trims malloc's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn give_back_free_memory() {}
