//! Slows password guessing: per (client address, user name), at most `max_failures` failed
//! logins within `window`; after that, every attempt is refused until `window` has passed since
//! the last failure, and the caller answers `429 TOOMANYREQUESTS` with `Retry-After`.
//!
//! - The count starts at a pair's first failure and is forgotten once `window` passes without
//!   the limit being reached; a success forgets the pair at once.
//! - IPv6 clients are counted per /64 network, since one host can trivially use every address
//!   of its /64; IPv4-mapped IPv6 addresses count as their IPv4 address.
//! - Memory is bounded: at most `capacity` pairs (100 000 by default) are remembered. When the
//!   table is full, expired pairs go first, then the least recently failed tenth.
//! - `max_failures == 0` disables the limiter.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Pairs remembered at most, unless [`LoginLimiter::with_capacity`] says otherwise.
pub const DEFAULT_CAPACITY: usize = 100_000;
/// Longer user names are cut to this many bytes for counting: enough to tell real names apart,
/// and a hostile client cannot make the table large.
const MAX_USER_KEY: usize = 256;

#[derive(Debug)]
pub struct LoginLimiter {
    max_failures: u32,
    window: Duration,
    capacity: usize,
    pairs: Mutex<HashMap<(IpAddr, String), Failures>>,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    /// When the current counting window started (the first failure in it).
    first: Instant,
    last: Instant,
    /// Set when `count` reached the maximum: attempts are refused until then.
    locked_until: Option<Instant>,
}

impl Failures {
    /// Nothing about this pair matters any more at `now`.
    fn expired(&self, now: Instant, window: Duration) -> bool {
        match self.locked_until {
            Some(until) => now >= until,
            None => now.duration_since(self.first) >= window,
        }
    }
}

impl LoginLimiter {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self::with_capacity(max_failures, window, DEFAULT_CAPACITY)
    }

    /// As [`LoginLimiter::new`], remembering at most `capacity` pairs (at least 1).
    pub fn with_capacity(max_failures: u32, window: Duration, capacity: usize) -> Self {
        LoginLimiter {
            max_failures,
            window,
            capacity: capacity.max(1),
            pairs: Mutex::new(HashMap::new()),
        }
    }

    /// `Ok` when `user` may try to log in from `client` now; otherwise how long until it may.
    pub fn check(&self, client: IpAddr, user: &str) -> Result<(), Duration> {
        if self.max_failures == 0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut pairs = self.lock();
        let key = key(client, user);
        match pairs.get(&key).copied() {
            Some(f) if f.expired(now, self.window) => {
                pairs.remove(&key);
                Ok(())
            }
            // Round up: a client told "0 seconds" would retry at once and be refused again.
            Some(Failures {
                locked_until: Some(until), ..
            }) => Err((until - now).max(Duration::from_millis(1))),
            _ => Ok(()),
        }
    }

    /// Records a failed login of `user` from `client`.
    pub fn failed(&self, client: IpAddr, user: &str) {
        if self.max_failures == 0 {
            return;
        }
        let now = Instant::now();
        let mut pairs = self.lock();
        let key = key(client, user);
        if !pairs.contains_key(&key) && pairs.len() >= self.capacity {
            self.make_room(&mut pairs, now);
        }
        let fresh = Failures {
            count: 0,
            first: now,
            last: now,
            locked_until: None,
        };
        let f = pairs.entry(key).or_insert(fresh);
        if f.expired(now, self.window) {
            *f = fresh;
        }
        f.count = f.count.saturating_add(1);
        f.last = now;
        if f.count >= self.max_failures {
            f.locked_until = Some(now + self.window);
        }
    }

    /// Records a successful login: the pair starts afresh.
    pub fn succeeded(&self, client: IpAddr, user: &str) {
        self.lock().remove(&key(client, user));
    }

    /// Pairs currently remembered.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(IpAddr, String), Failures>> {
        // The map stays consistent even if a holder panicked: every update is a single insert.
        self.pairs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Frees at least one slot: expired pairs first, then the least recently failed tenth, so a
    /// flood of new pairs costs one scan per `capacity / 10` insertions.
    fn make_room(&self, pairs: &mut HashMap<(IpAddr, String), Failures>, now: Instant) {
        pairs.retain(|_, f| !f.expired(now, self.window));
        if pairs.len() < self.capacity {
            return;
        }
        let evict = (self.capacity / 10).max(1);
        let mut by_age: Vec<(Instant, (IpAddr, String))> = pairs.iter().map(|(k, f)| (f.last, k.clone())).collect();
        by_age.select_nth_unstable_by_key(evict - 1, |(last, _)| *last);
        for (_, k) in by_age.into_iter().take(evict) {
            pairs.remove(&k);
        }
    }
}

/// The counting key: the client's address (IPv6 by /64) and the user name, bounded in length.
fn key(client: IpAddr, user: &str) -> (IpAddr, String) {
    let client = match client {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(v6.to_bits() & !((1u128 << 64) - 1))),
        },
        v4 => v4,
    };
    let mut end = user.len().min(MAX_USER_KEY);
    while !user.is_char_boundary(end) {
        end -= 1;
    }
    (client, user[..end].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::thread::sleep;

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn refuses_after_max_failures_until_the_window_passes() {
        let l = LoginLimiter::new(3, Duration::from_secs(1));
        for _ in 0..2 {
            assert!(l.check(A, "alice").is_ok());
            l.failed(A, "alice");
        }
        assert!(l.check(A, "alice").is_ok(), "two failures of three allowed");
        l.failed(A, "alice");
        let retry = l.check(A, "alice").unwrap_err();
        assert!(retry > Duration::from_millis(500) && retry <= Duration::from_secs(1), "{retry:?}");
        // Still refused, even with the right password: the caller must not even try.
        sleep(Duration::from_millis(100));
        let later = l.check(A, "alice").unwrap_err();
        assert!(later < retry);
        sleep(later + Duration::from_millis(20));
        assert!(l.check(A, "alice").is_ok(), "unlocked after the window");
        // The count started over.
        l.failed(A, "alice");
        assert!(l.check(A, "alice").is_ok());
    }

    #[test]
    fn pairs_are_independent() {
        let l = LoginLimiter::new(2, Duration::from_secs(60));
        l.failed(A, "alice");
        l.failed(A, "alice");
        assert!(l.check(A, "alice").is_err());
        assert!(l.check(A, "bob").is_ok(), "another user from the same client");
        assert!(l.check(B, "alice").is_ok(), "the same user from another client");
    }

    #[test]
    fn success_resets_the_pair() {
        let l = LoginLimiter::new(3, Duration::from_secs(60));
        l.failed(A, "alice");
        l.failed(A, "alice");
        l.succeeded(A, "alice");
        assert!(l.is_empty());
        l.failed(A, "alice");
        l.failed(A, "alice");
        assert!(l.check(A, "alice").is_ok(), "the earlier failures were forgotten");
    }

    #[test]
    fn failures_spread_over_more_than_a_window_do_not_lock() {
        let l = LoginLimiter::new(2, Duration::from_millis(500));
        l.failed(A, "alice");
        sleep(Duration::from_millis(550));
        l.failed(A, "alice");
        assert!(l.check(A, "alice").is_ok());
        l.failed(A, "alice");
        assert!(l.check(A, "alice").is_err());
    }

    #[test]
    fn zero_max_failures_disables() {
        let l = LoginLimiter::new(0, Duration::from_secs(60));
        for _ in 0..10 {
            l.failed(A, "alice");
        }
        assert!(l.check(A, "alice").is_ok());
        assert!(l.is_empty());
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_v4_as_v4() {
        let l = LoginLimiter::new(2, Duration::from_secs(60));
        l.failed("2001:db8:1:2::1".parse().unwrap(), "alice");
        l.failed("2001:db8:1:2:ffff::9".parse().unwrap(), "alice");
        assert!(l.check("2001:db8:1:2::77".parse().unwrap(), "alice").is_err());
        assert!(l.check("2001:db8:1:3::1".parse().unwrap(), "alice").is_ok());
        l.failed("::ffff:192.0.2.1".parse().unwrap(), "bob");
        l.failed(A, "bob");
        assert!(l.check(A, "bob").is_err());
    }

    #[test]
    fn long_user_names_are_bounded() {
        let l = LoginLimiter::new(1, Duration::from_secs(60));
        let long = "é".repeat(1000);
        l.failed(A, &long);
        assert!(l.check(A, &long).is_err());
        let stored = l.lock().keys().next().unwrap().1.len();
        assert!(stored <= MAX_USER_KEY, "{stored}");
    }

    #[test]
    fn memory_is_bounded_and_oldest_go_first() {
        let l = LoginLimiter::with_capacity(1, Duration::from_secs(60), 100);
        l.failed(A, "first");
        sleep(Duration::from_millis(5));
        for i in 0..1000 {
            l.failed(B, &format!("user{i}"));
            assert!(l.len() <= 100);
        }
        assert!(l.check(A, "first").is_ok(), "the oldest pair was evicted");
        assert!(l.check(B, "user999").is_err(), "the newest pair is still locked");
    }

    #[test]
    fn expired_pairs_are_evicted_before_live_ones() {
        let l = LoginLimiter::with_capacity(5, Duration::from_millis(300), 10);
        for i in 0..9 {
            l.failed(A, &format!("old{i}"));
        }
        l.failed(B, "live");
        l.failed(B, "live");
        sleep(Duration::from_millis(350));
        l.failed(B, "live"); // window passed: counting restarts for this pair
        l.failed(A, "new");
        assert_eq!(l.len(), 2, "the nine expired pairs made room");
    }

    #[test]
    fn concurrent_use() {
        let l = std::sync::Arc::new(LoginLimiter::new(1000, Duration::from_secs(60)));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let l = l.clone();
                std::thread::spawn(move || {
                    for _ in 0..250 {
                        let _ = l.check(A, "alice");
                        l.failed(A, "alice");
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert!(l.check(A, "alice").is_err(), "exactly 1000 failures were counted");
    }
}
