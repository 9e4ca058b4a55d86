//! Bounds the password checks running at once. bcrypt is slow on purpose, and a burst of logins
//! (many users, many addresses: nothing the per-user limits stop) would otherwise put one check
//! on every blocking thread tokio has and take all the CPU from pushes and pulls. Checks beyond
//! the bound wait their turn; one that waits too long is refused, and the client is told to
//! come back (429).

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// How long a check may wait for a free slot before the login is refused as busy.
pub const MAX_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct BcryptPool {
    slots: Arc<Semaphore>,
    size: usize,
    max_wait: Duration,
}

impl BcryptPool {
    /// At most `size` checks at once (at least one).
    pub fn new(size: usize) -> BcryptPool {
        let size = size.max(1);
        BcryptPool {
            slots: Arc::new(Semaphore::new(size)),
            size,
            max_wait: MAX_WAIT,
        }
    }

    /// One check per core: enough to use the machine for logins when nothing else runs, never
    /// more than it has.
    pub fn for_this_machine() -> BcryptPool {
        BcryptPool::new(std::thread::available_parallelism().map_or(2, |n| n.get()))
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// Runs `check` on a blocking thread once a slot is free; `None` when none came free in
    /// time (`check` is then dropped unrun). The slot is held until `check` returns, also when
    /// the caller stops waiting for it.
    pub async fn run<T: Send + 'static>(&self, check: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let permit = tokio::time::timeout(self.max_wait, self.slots.clone().acquire_owned())
            .await
            .ok()?
            .ok()?;
        tokio::task::spawn_blocking(move || {
            let out = check();
            drop(permit);
            out
        })
        .await
        .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_more_than_size_checks_run_at_once() {
        let pool = Arc::new(BcryptPool::new(2));
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..12)
            .map(|_| {
                let (pool, running, most) = (pool.clone(), running.clone(), most.clone());
                tokio::spawn(async move {
                    pool.run(move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(20));
                        running.fetch_sub(1, Ordering::SeqCst);
                    })
                    .await
                })
            })
            .collect();
        for t in tasks {
            assert!(t.await.unwrap().is_some());
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_check_that_waits_too_long_is_refused_unrun() {
        let mut pool = BcryptPool::new(1);
        pool.max_wait = Duration::from_millis(50);
        let pool = Arc::new(pool);
        let busy = pool.clone();
        let holder = tokio::spawn(async move { busy.run(|| std::thread::sleep(Duration::from_millis(500))).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let ran = Arc::new(AtomicUsize::new(0));
        let flag = ran.clone();
        assert!(pool.run(move || flag.fetch_add(1, Ordering::SeqCst)).await.is_none());
        assert_eq!(ran.load(Ordering::SeqCst), 0);
        assert!(holder.await.unwrap().is_some());
    }
}
