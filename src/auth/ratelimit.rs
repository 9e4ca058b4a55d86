//! Slows password guessing with two counters, both consulted *before* a password is checked:
//!
//! - per (client address, user name), the strict one: at most `per_client` failed logins within
//!   `window`, then every attempt from that address for that user is refused until `window` has
//!   passed since the failure that reached the limit;
//! - per user name across all addresses, the generous one: at most `per_user` failures within
//!   `window`, then attempts for that user are refused the same way, except from an address the
//!   user logged in from successfully in the last [`KNOWN_ADDRESS_TTL`] (at most
//!   [`KNOWN_ADDRESSES`] per user), so guesses spread over many addresses cannot lock the
//!   user's own machines out.
//!
//! An attempt holds a slot from [`LoginLimiter::begin`] until its outcome is known, and a counter
//! refuses while its failures *plus its attempts in flight* reach the limit: parallel guesses are
//! counted as they start, not as bcrypt finishes with them, so a burst gets no more checks than a
//! sequence. The caller answers a refusal with `429 TOOMANYREQUESTS` and `Retry-After`.
//!
//! - A counter starts at its first failure and is forgotten once `window` passes without the
//!   limit being reached; a success clears the (address, user) counter, not the user's.
//! - IPv6 clients are counted per /64 network, since one host can trivially use every address
//!   of its /64; IPv4-mapped IPv6 addresses count as their IPv4 address.
//! - Memory is bounded: at most `capacity` entries per table (100 000 by default). When a
//!   table is full, expired entries go first, then the least recently used tenth.
//! - A limit of 0 disables that counter.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Entries remembered at most per table, unless [`LoginLimiter::with_capacity`] says otherwise.
pub const DEFAULT_CAPACITY: usize = 100_000;
/// How long an address a user logged in from stays exempt from that user's own lockout.
pub const KNOWN_ADDRESS_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Addresses remembered per user for that exemption; the oldest is replaced.
pub const KNOWN_ADDRESSES: usize = 16;
/// Longer user names are cut to this many bytes for counting: enough to tell real names apart,
/// and a hostile client cannot make the table large.
const MAX_USER_KEY: usize = 256;
/// What a client waits for when only attempts in flight (not yet failures) fill its limit:
/// they finish within about a bcrypt run.
const IN_FLIGHT_RETRY: Duration = Duration::from_secs(1);

/// Why an attempt is refused now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Failures reached the limit: no attempt until this long has passed.
    Locked(Duration),
    /// Only attempts still being checked (no failures yet) fill the limit: they end within
    /// about a bcrypt run, and a caller may wait for them instead of refusing.
    InFlight,
}

impl Refusal {
    /// What `Retry-After` says.
    pub fn retry_after(self) -> Duration {
        match self {
            Refusal::Locked(wait) => wait,
            Refusal::InFlight => IN_FLIGHT_RETRY,
        }
    }

    /// The refusal that holds when both the address's and the user's counts refuse.
    fn or_worse(self, other: Refusal) -> Refusal {
        match (self, other) {
            (Refusal::Locked(a), Refusal::Locked(b)) => Refusal::Locked(a.max(b)),
            (Refusal::Locked(a), _) | (_, Refusal::Locked(a)) => Refusal::Locked(a),
            _ => Refusal::InFlight,
        }
    }
}

/// How many failures are allowed, and over how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Failures per (address, user) within `window` (0: no limit).
    pub per_client: u32,
    /// Failures per user across all addresses within `window` (0: no limit).
    pub per_user: u32,
    pub window: Duration,
}

#[derive(Debug)]
pub struct LoginLimiter {
    capacity: usize,
    tables: Mutex<Tables>,
}

#[derive(Debug)]
struct Tables {
    /// Under the same lock as the counts: a reload may change them while logins go on.
    limits: Limits,
    pairs: HashMap<(IpAddr, String), Counter>,
    users: HashMap<String, UserEntry>,
}

#[derive(Debug, Clone, Copy)]
struct Counter {
    failures: u32,
    in_flight: u32,
    /// When the current counting window started (the first failure in it).
    first: Instant,
    last: Instant,
    /// Set when `failures` reached the maximum: attempts are refused until then.
    locked_until: Option<Instant>,
}

#[derive(Debug, Clone)]
struct UserEntry {
    counter: Counter,
    /// Addresses (counting keys) the user logged in from, and when last.
    known: Vec<(IpAddr, Instant)>,
}

impl Counter {
    fn new(now: Instant) -> Counter {
        Counter {
            failures: 0,
            in_flight: 0,
            first: now,
            last: now,
            locked_until: None,
        }
    }

    /// The failures no longer matter at `now` (attempts in flight may still).
    fn window_over(&self, now: Instant, window: Duration) -> bool {
        match self.locked_until {
            Some(until) => now >= until,
            None => now.duration_since(self.first) >= window,
        }
    }

    fn forget_old_failures(&mut self, now: Instant, window: Duration) {
        if self.window_over(now, window) {
            *self = Counter {
                in_flight: self.in_flight,
                ..Counter::new(now)
            };
        }
    }

    /// `Err` when a new attempt must be refused.
    fn admits(&self, limit: u32, now: Instant) -> Result<(), Refusal> {
        if limit == 0 {
            return Ok(());
        }
        if let Some(until) = self.locked_until {
            // Round up: a client told "0 seconds" would retry at once and be refused again.
            return Err(Refusal::Locked((until - now).max(Duration::from_millis(1))));
        }
        if self.failures.saturating_add(self.in_flight) >= limit {
            return Err(Refusal::InFlight);
        }
        Ok(())
    }

    fn record_failure(&mut self, limit: u32, now: Instant, window: Duration) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.forget_old_failures(now, window);
        self.failures = self.failures.saturating_add(1);
        self.last = now;
        if limit > 0 && self.failures >= limit {
            self.locked_until = Some(now + window);
        }
    }

    fn idle(&self, now: Instant, window: Duration) -> bool {
        self.in_flight == 0 && (self.failures == 0 || self.window_over(now, window))
    }
}

impl UserEntry {
    fn knows(&self, client: IpAddr, now: Instant) -> bool {
        self.known
            .iter()
            .any(|(ip, at)| *ip == client && now.duration_since(*at) < KNOWN_ADDRESS_TTL)
    }

    fn idle(&self, now: Instant, window: Duration) -> bool {
        self.counter.idle(now, window) && self.known.iter().all(|(_, at)| now.duration_since(*at) >= KNOWN_ADDRESS_TTL)
    }

    fn last_used(&self) -> Instant {
        self.known.iter().map(|(_, at)| *at).fold(self.counter.last, Instant::max)
    }
}

/// A login attempt that holds its slot in both counters until its outcome is reported. Dropping
/// it unreported (the check could not run) frees the slot without counting a failure.
#[must_use = "report the outcome with succeeded() or failed()"]
#[derive(Debug)]
pub struct Attempt {
    limiter: Arc<LoginLimiter>,
    key: (IpAddr, String),
    done: bool,
}

impl Attempt {
    pub fn succeeded(mut self) {
        self.done = true;
        self.limiter.finish(&self.key, false);
    }

    pub fn failed(mut self) {
        self.done = true;
        self.limiter.finish(&self.key, true);
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if !self.done {
            self.limiter.release(&self.key);
        }
    }
}

impl LoginLimiter {
    pub fn new(limits: Limits) -> Self {
        Self::with_capacity(limits, DEFAULT_CAPACITY)
    }

    /// As [`LoginLimiter::new`], remembering at most `capacity` entries per table (at least 1).
    pub fn with_capacity(limits: Limits, capacity: usize) -> Self {
        LoginLimiter {
            capacity: capacity.max(1),
            tables: Mutex::new(Tables {
                limits,
                pairs: HashMap::new(),
                users: HashMap::new(),
            }),
        }
    }

    pub fn limits(&self) -> Limits {
        self.lock().limits
    }

    /// Counts with `limits` from now on (a configuration reload), keeping every count and
    /// lockout: a lockout in force ends when it was due to, and failures so far count
    /// against the new limits.
    pub fn set_limits(&self, limits: Limits) {
        self.lock().limits = limits;
    }

    /// Reserves a slot for `user` logging in from `client`, or says how long until it may try.
    pub fn begin(self: &Arc<Self>, client: IpAddr, user: &str) -> Result<Attempt, Refusal> {
        let key = key(client, user);
        let now = Instant::now();
        let mut t = self.lock();
        let Limits {
            per_client,
            per_user,
            window,
        } = t.limits;
        if !t.pairs.contains_key(&key) && t.pairs.len() >= self.capacity {
            make_room(&mut t.pairs, self.capacity, |c| c.idle(now, window), |c| c.last);
        }
        if !t.users.contains_key(&key.1) && t.users.len() >= self.capacity {
            make_room(&mut t.users, self.capacity, |u| u.idle(now, window), UserEntry::last_used);
        }
        let pair = t.pairs.entry(key.clone()).or_insert_with(|| Counter::new(now));
        pair.forget_old_failures(now, window);
        let pair_ok = pair.admits(per_client, now);
        let user_entry = t.users.entry(key.1.clone()).or_insert_with(|| UserEntry {
            counter: Counter::new(now),
            known: Vec::new(),
        });
        user_entry.counter.forget_old_failures(now, window);
        let user_ok = if user_entry.knows(key.0, now) {
            Ok(())
        } else {
            user_entry.counter.admits(per_user, now)
        };
        let refused = match (pair_ok, user_ok) {
            (Ok(()), Ok(())) => None,
            (Err(a), Err(b)) => Some(a.or_worse(b)),
            (Err(r), Ok(())) | (Ok(()), Err(r)) => Some(r),
        };
        if let Some(refusal) = refused {
            t.drop_if_idle(&key, now, window);
            return Err(refusal);
        }
        if let Some(pair) = t.pairs.get_mut(&key) {
            pair.in_flight += 1;
        }
        if let Some(user) = t.users.get_mut(&key.1) {
            user.counter.in_flight += 1;
        }
        Ok(Attempt {
            limiter: self.clone(),
            key,
            done: false,
        })
    }

    fn finish(&self, key: &(IpAddr, String), failed: bool) {
        let now = Instant::now();
        let mut t = self.lock();
        let Limits {
            per_client,
            per_user,
            window,
        } = t.limits;
        if let Some(pair) = t.pairs.get_mut(key) {
            if failed {
                pair.record_failure(per_client, now, window);
            } else {
                *pair = Counter {
                    in_flight: pair.in_flight.saturating_sub(1),
                    ..Counter::new(now)
                };
            }
        }
        if let Some(user) = t.users.get_mut(&key.1) {
            if failed {
                user.counter.record_failure(per_user, now, window);
            } else {
                user.counter.in_flight = user.counter.in_flight.saturating_sub(1);
                user.known.retain(|(ip, _)| *ip != key.0);
                if user.known.len() >= KNOWN_ADDRESSES {
                    user.known.remove(0);
                }
                user.known.push((key.0, now));
            }
        }
        t.drop_if_idle(key, now, window);
    }

    fn release(&self, key: &(IpAddr, String)) {
        let now = Instant::now();
        let mut t = self.lock();
        if let Some(pair) = t.pairs.get_mut(key) {
            pair.in_flight = pair.in_flight.saturating_sub(1);
        }
        if let Some(user) = t.users.get_mut(&key.1) {
            user.counter.in_flight = user.counter.in_flight.saturating_sub(1);
        }
        let window = t.limits.window;
        t.drop_if_idle(key, now, window);
    }

    /// Entries currently remembered: (address, user) counters plus user counters.
    pub fn len(&self) -> usize {
        let t = self.lock();
        t.pairs.len() + t.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        // The tables stay consistent even if a holder panicked: every update is a single insert.
        self.tables.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Tables {
    /// Entries that remember nothing go at once, so the tables hold only what matters.
    fn drop_if_idle(&mut self, key: &(IpAddr, String), now: Instant, window: Duration) {
        if self.pairs.get(key).is_some_and(|c| c.idle(now, window)) {
            self.pairs.remove(key);
        }
        if self.users.get(&key.1).is_some_and(|u| u.idle(now, window)) {
            self.users.remove(&key.1);
        }
    }
}

/// Frees at least one slot: idle entries first, then the least recently used tenth, so a flood
/// of new keys costs one scan per `capacity / 10` insertions.
fn make_room<K: Hash + Eq + Clone, V>(
    map: &mut HashMap<K, V>,
    capacity: usize,
    idle: impl Fn(&V) -> bool,
    last_used: impl Fn(&V) -> Instant,
) {
    map.retain(|_, v| !idle(v));
    if map.len() < capacity {
        return;
    }
    let evict = (capacity / 10).max(1);
    let mut by_age: Vec<(Instant, K)> = map.iter().map(|(k, v)| (last_used(v), k.clone())).collect();
    by_age.select_nth_unstable_by_key(evict - 1, |(last, _)| *last);
    for (_, k) in by_age.into_iter().take(evict) {
        map.remove(&k);
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

    fn limiter(per_client: u32, per_user: u32, window: Duration) -> Arc<LoginLimiter> {
        Arc::new(LoginLimiter::new(Limits {
            per_client,
            per_user,
            window,
        }))
    }

    fn fail(l: &Arc<LoginLimiter>, client: IpAddr, user: &str) {
        l.begin(client, user).expect("admitted").failed();
    }

    fn ip(i: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))
    }

    #[test]
    fn refuses_after_max_failures_until_the_window_passes() {
        let l = limiter(3, 0, Duration::from_secs(1));
        fail(&l, A, "alice");
        fail(&l, A, "alice");
        fail(&l, A, "alice");
        let retry = l.begin(A, "alice").unwrap_err().retry_after();
        assert!(retry > Duration::from_millis(500) && retry <= Duration::from_secs(1), "{retry:?}");
        // Still refused, even with the right password: the caller must not even try.
        sleep(Duration::from_millis(100));
        let later = l.begin(A, "alice").unwrap_err().retry_after();
        assert!(later < retry);
        sleep(later + Duration::from_millis(20));
        fail(&l, A, "alice");
        assert!(l.begin(A, "alice").is_ok(), "unlocked after the window; the count started over");
    }

    #[test]
    fn attempts_in_flight_count_against_the_limit() {
        let l = limiter(3, 0, Duration::from_secs(60));
        let held: Vec<Attempt> = (0..3).map(|_| l.begin(A, "alice").unwrap()).collect();
        assert_eq!(
            l.begin(A, "alice").unwrap_err(),
            Refusal::InFlight,
            "three in flight fill the limit"
        );
        assert!(l.begin(B, "alice").is_ok(), "another address has its own slots");
        let mut held = held.into_iter();
        held.next().unwrap().succeeded();
        let again = l.begin(A, "alice").expect("a success frees its slot");
        again.failed();
        held.next().unwrap().failed();
        held.next().unwrap().failed();
        let locked = l.begin(A, "alice").unwrap_err().retry_after();
        assert!(
            locked > Duration::from_secs(50),
            "two failures after the success lock it: {locked:?}"
        );
    }

    #[test]
    fn a_burst_gets_no_more_checks_than_the_limit() {
        let l = limiter(5, 0, Duration::from_secs(60));
        let admitted: Vec<Attempt> = (0..120).filter_map(|_| l.begin(A, "alice").ok()).collect();
        assert_eq!(admitted.len(), 5);
        admitted.into_iter().for_each(Attempt::failed);
        assert!(l.begin(A, "alice").is_err());
    }

    #[test]
    fn an_unreported_attempt_frees_its_slot_without_counting() {
        let l = limiter(1, 0, Duration::from_secs(60));
        drop(l.begin(A, "alice").unwrap());
        assert!(l.begin(A, "alice").is_ok());
        assert!(l.is_empty(), "nothing left to remember");
    }

    #[test]
    fn pairs_are_independent() {
        let l = limiter(2, 0, Duration::from_secs(60));
        fail(&l, A, "alice");
        fail(&l, A, "alice");
        assert!(l.begin(A, "alice").is_err());
        assert!(l.begin(A, "bob").is_ok(), "another user from the same client");
        assert!(l.begin(B, "alice").is_ok(), "the same user from another client");
    }

    #[test]
    fn success_resets_the_pair() {
        let l = limiter(3, 0, Duration::from_secs(60));
        fail(&l, A, "alice");
        fail(&l, A, "alice");
        l.begin(A, "alice").unwrap().succeeded();
        fail(&l, A, "alice");
        fail(&l, A, "alice");
        assert!(l.begin(A, "alice").is_ok(), "the earlier failures were forgotten");
    }

    #[test]
    fn failures_spread_over_more_than_a_window_do_not_lock() {
        let l = limiter(2, 0, Duration::from_millis(500));
        fail(&l, A, "alice");
        sleep(Duration::from_millis(550));
        fail(&l, A, "alice");
        assert!(l.begin(A, "alice").is_ok());
        fail(&l, A, "alice");
        assert!(l.begin(A, "alice").is_err());
    }

    #[test]
    fn zero_limits_disable() {
        let l = limiter(0, 0, Duration::from_secs(60));
        for _ in 0..10 {
            fail(&l, A, "alice");
        }
        assert!(l.begin(A, "alice").is_ok());
    }

    #[test]
    fn per_user_limit_spans_addresses_but_spares_known_ones() {
        let l = limiter(5, 10, Duration::from_secs(60));
        // The user logs in from A; an attacker then fails from ten other addresses.
        l.begin(A, "alice").unwrap().succeeded();
        for i in 0..10 {
            fail(&l, ip(i), "alice");
        }
        let wait = l.begin(ip(100), "alice").unwrap_err().retry_after();
        assert!(wait > Duration::from_secs(50), "a new address is refused for the user: {wait:?}");
        assert!(l.begin(A, "alice").is_ok(), "the address alice logged in from is not locked out");
        assert!(l.begin(ip(100), "bob").is_ok(), "other users are unaffected");
        // The strict per-address limit still applies to a known address.
        for _ in 0..5 {
            fail(&l, A, "alice");
        }
        assert!(l.begin(A, "alice").is_err());
    }

    #[test]
    fn known_addresses_are_bounded() {
        let l = limiter(5, 1, Duration::from_secs(60));
        for i in 0..(KNOWN_ADDRESSES as u32 + 1) {
            l.begin(ip(i), "alice").unwrap().succeeded();
        }
        fail(&l, B, "alice");
        assert!(l.begin(ip(0), "alice").is_err(), "the oldest known address was replaced");
        assert!(l.begin(ip(KNOWN_ADDRESSES as u32), "alice").is_ok());
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_v4_as_v4() {
        let l = limiter(2, 0, Duration::from_secs(60));
        fail(&l, "2001:db8:1:2::1".parse().unwrap(), "alice");
        fail(&l, "2001:db8:1:2:ffff::9".parse().unwrap(), "alice");
        assert!(l.begin("2001:db8:1:2::77".parse().unwrap(), "alice").is_err());
        assert!(l.begin("2001:db8:1:3::1".parse().unwrap(), "alice").is_ok());
        fail(&l, "::ffff:192.0.2.1".parse().unwrap(), "bob");
        fail(&l, A, "bob");
        assert!(l.begin(A, "bob").is_err());
    }

    #[test]
    fn long_user_names_are_bounded() {
        let l = limiter(1, 0, Duration::from_secs(60));
        let long = "é".repeat(1000);
        fail(&l, A, &long);
        assert!(l.begin(A, &long).is_err());
        let stored = l.lock().pairs.keys().next().unwrap().1.len();
        assert!(stored <= MAX_USER_KEY, "{stored}");
    }

    #[test]
    fn memory_is_bounded_and_oldest_go_first() {
        let l = Arc::new(LoginLimiter::with_capacity(
            Limits {
                per_client: 1,
                per_user: 0,
                window: Duration::from_secs(60),
            },
            100,
        ));
        fail(&l, A, "first");
        sleep(Duration::from_millis(5));
        for i in 0..1000 {
            fail(&l, B, &format!("user{i}"));
            let t = l.lock();
            assert!(t.pairs.len() <= 100 && t.users.len() <= 100);
        }
        assert!(l.begin(A, "first").is_ok(), "the oldest pair was evicted");
        assert!(l.begin(B, "user999").is_err(), "the newest pair is still locked");
    }

    #[test]
    fn concurrent_use() {
        let l = limiter(1000, 0, Duration::from_secs(60));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let l = l.clone();
                std::thread::spawn(move || {
                    for _ in 0..250 {
                        if let Ok(a) = l.begin(A, "alice") {
                            a.failed();
                        }
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert!(l.begin(A, "alice").is_err(), "exactly 1000 failures were counted");
    }
}
