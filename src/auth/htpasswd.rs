//! Password files in Apache's htpasswd format, read the way registry:2 reads them.
//!
//! - Each line is `user:hash`; surrounding whitespace is ignored, and so are blank lines and
//!   lines starting with `#`. A line without `:` makes the file invalid (registry:2 refuses it
//!   too). A user listed twice takes the last entry, as in registry:2.
//! - Only bcrypt hashes (`$2y$`, `$2a$`, `$2b$`) are accepted, like registry:2. A user with any
//!   other kind (`{SHA}`, `$apr1$`, crypt, plain text) is reported when the file is loaded and
//!   can never log in.
//! - The file is reloaded when it changes: at most once a second a `stat` compares inode, size,
//!   and modification and change times. A file that goes missing, becomes unreadable or
//!   invalid refuses every login until it is fixed (fail closed) and logs why; with
//!   [`OnError::KeepUsers`] (`keeponerror`) the last good content stays in force instead.
//! - bcrypt is slow on purpose, so a verified password is remembered for five minutes as
//!   SHA-256(user length, user, NUL, password, per-process random salt), compared in
//!   constant time. The
//!   cache is emptied whenever the file changes, so a new password takes effect at once.
//! - A wrong password takes the same time for every user, known or not, whatever the cost of
//!   their hash: every failed check costs the work of one bcrypt run at the highest cost in the
//!   file (capped at [`MAX_PADDED_COST`]). An unknown user costs one run at that cost; a user
//!   whose hash is cheaper pays the difference in bcrypt runs of its own cost and each cost up
//!   to the highest (2^c + 2^c + 2^(c+1) + … + 2^(max-1) = 2^max), so the work, not a timer,
//!   makes the times equal, on any machine and under any load. Response times then reveal
//!   neither which users exist nor which cost their hash has.
//!
//! Neither passwords nor hashes are ever logged; user names are.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};
use std::time::{Duration, Instant};

/// How long a verified password is remembered.
pub const CACHE_TTL: Duration = Duration::from_secs(5 * 60);
/// How often, at most, the file is checked for changes.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// The cost every failed check is padded to when the file has no bcrypt entry to imitate.
const DEFAULT_COST: u32 = 10;
/// Failed checks are padded to at most this cost (about a second of CPU per failure): one
/// absurd hash in the file must not make every wrong password that expensive.
pub const MAX_PADDED_COST: u32 = 14;

/// What a file that goes missing or becomes invalid means for logins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnError {
    /// Refuse every login until the file is fixed.
    #[default]
    RefuseAll,
    /// Keep the users of the last good version (`keeponerror`).
    KeepUsers,
}

#[derive(Debug, thiserror::Error)]
pub enum HtpasswdError {
    #[error("cannot read htpasswd file {}: {error}", path.display())]
    Io { path: PathBuf, error: std::io::Error },
    #[error("htpasswd file {}: line {line}: {reason}", path.display())]
    Invalid { path: PathBuf, line: usize, reason: String },
}

/// One line of an htpasswd file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line<'a> {
    /// Blank or a `#` comment.
    Skip,
    Entry {
        user: &'a str,
        hash: &'a str,
    },
    /// Not `user:hash`.
    Invalid,
}

/// Reads one line as registry:2 does: trimmed, split at the first `:`. Like Apache, a second
/// `:` ends the hash (bcrypt hashes never contain one).
pub fn parse_line(line: &str) -> Line<'_> {
    let t = line.trim();
    if t.is_empty() || t.starts_with('#') {
        return Line::Skip;
    }
    match t.split_once(':') {
        Some((user, rest)) => Line::Entry {
            user,
            hash: rest.split(':').next().unwrap_or_default().trim(),
        },
        None => Line::Invalid,
    }
}

/// What kind of password hash an entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashKind {
    /// A well-formed `$2y$`, `$2a$` or `$2b$` hash, with its cost.
    Bcrypt { cost: u32 },
    /// Anything else, named for the user.
    Unsupported(&'static str),
}

impl HashKind {
    pub fn of(hash: &str) -> HashKind {
        let unsupported = |what| HashKind::Unsupported(what);
        if ["$2y$", "$2a$", "$2b$"].iter().any(|p| hash.starts_with(p)) {
            return match hash.parse::<bcrypt::HashParts>() {
                Ok(parts) if hash.len() == 60 && (4..=31).contains(&parts.get_cost()) => HashKind::Bcrypt { cost: parts.get_cost() },
                _ => unsupported("malformed bcrypt"),
            };
        }
        let crypt64 = |s: &str| s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/');
        match hash {
            h if h.starts_with("$2x$") => unsupported("bcrypt $2x$"),
            h if h.starts_with("{SHA}") => unsupported("SHA-1 ({SHA})"),
            h if h.starts_with("$apr1$") => unsupported("Apache MD5 ($apr1$)"),
            h if h.starts_with("$1$") => unsupported("MD5-crypt ($1$)"),
            h if h.starts_with("$5$") => unsupported("SHA-256-crypt ($5$)"),
            h if h.starts_with("$6$") => unsupported("SHA-512-crypt ($6$)"),
            h if h.starts_with("$y$") => unsupported("yescrypt ($y$)"),
            h if h.len() == 13 && crypt64(h) => unsupported("DES crypt"),
            "" => unsupported("empty"),
            _ => unsupported("plain text or unknown"),
        }
    }
}

/// A password file, reloaded when it changes. Cheap to share between threads; `verify` runs
/// bcrypt on a cache miss (tens of milliseconds), so async callers should run it on a blocking
/// thread.
pub struct Htpasswd {
    path: PathBuf,
    state: RwLock<State>,
    cache: Mutex<HashMap<String, Cached>>,
    /// When the file may next be checked for changes.
    next_check: Mutex<Instant>,
    check_interval: Duration,
    /// bcrypt verifications run so far (tests check that the cache avoids them).
    bcrypt_runs: AtomicU64,
    on_error: OnError,
}

impl std::fmt::Debug for Htpasswd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Htpasswd").field("path", &self.path).finish_non_exhaustive()
    }
}

struct State {
    table: Table,
    /// The file as last read, good or not: a broken file is not re-read until it changes.
    fingerprint: Option<Fingerprint>,
    /// Bumped on every reload; cache entries from older generations are void.
    generation: u64,
    /// An error about the file has been logged and it has not been fixed since.
    failing: bool,
}

/// The users of a successfully parsed file.
struct Table {
    users: HashMap<String, Entry>,
    /// The cost every failed check is padded to: the highest in the file, at most
    /// [`MAX_PADDED_COST`].
    padded_cost: u32,
}

#[derive(Clone)]
enum Entry {
    Bcrypt(Arc<str>),
    Unsupported,
}

struct Cached {
    digest: [u8; 32],
    expires: Instant,
    generation: u64,
}

/// What identifies a version of the file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Fingerprint {
    fn of(m: &std::fs::Metadata) -> Fingerprint {
        Fingerprint {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

impl Htpasswd {
    /// Loads the file at `path`; errors name the file (and the line, for a malformed one).
    /// Should it break later, every login is refused until it is fixed.
    pub fn open(path: &Path) -> Result<Self, HtpasswdError> {
        Self::open_with(path, OnError::RefuseAll)
    }

    /// As [`Htpasswd::open`], choosing what a file broken later means.
    pub fn open_with(path: &Path, on_error: OnError) -> Result<Self, HtpasswdError> {
        let (text, fingerprint) = read(path)?;
        let table = load(path, &text)?;
        Ok(Htpasswd {
            path: path.to_path_buf(),
            state: RwLock::new(State {
                table,
                fingerprint: Some(fingerprint),
                generation: 0,
                failing: false,
            }),
            cache: Mutex::new(HashMap::new()),
            next_check: Mutex::new(Instant::now() + CHECK_INTERVAL),
            check_interval: CHECK_INTERVAL,
            bcrypt_runs: AtomicU64::new(0),
            on_error,
        })
    }

    /// Like `open_with`, but as registry:2 does, a file that cannot be read or parsed does not
    /// stop the server: the error is logged, nobody can log in, and the file is read again (at
    /// most once a second) until it can be.
    pub fn open_or_wait(path: &Path, on_error: OnError) -> Self {
        match Self::open_with(path, on_error) {
            Ok(h) => h,
            Err(e) => {
                tracing::error!("{e}; nobody can log in until it is fixed (it is read again when it changes)");
                Htpasswd {
                    path: path.to_path_buf(),
                    state: RwLock::new(State {
                        table: Table {
                            users: HashMap::new(),
                            padded_cost: DEFAULT_COST,
                        },
                        fingerprint: None,
                        generation: 0,
                        failing: true,
                    }),
                    cache: Mutex::new(HashMap::new()),
                    next_check: Mutex::new(Instant::now()),
                    check_interval: CHECK_INTERVAL,
                    bcrypt_runs: AtomicU64::new(0),
                    on_error,
                }
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The users that can log in (those with a bcrypt hash), sorted.
    pub fn users(&self) -> Vec<String> {
        let state = self.read_state();
        let mut users: Vec<String> = state
            .table
            .users
            .iter()
            .filter(|(_, e)| matches!(e, Entry::Bcrypt(_)))
            .map(|(u, _)| u.clone())
            .collect();
        users.sort();
        users
    }

    /// Whether `password` is `user`'s password.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        self.maybe_reload();
        let digest = cache_key(user, password);
        let (entry, generation, padded) = {
            let state = self.read_state();
            (state.table.users.get(user).cloned(), state.generation, state.table.padded_cost)
        };
        if matches!(entry, Some(Entry::Bcrypt(_))) && self.cached(user, &digest, generation) {
            return true;
        }
        let ok = match &entry {
            Some(Entry::Bcrypt(hash)) => self.bcrypt(password, hash),
            Some(Entry::Unsupported) | None => false,
        };
        if ok {
            self.remember(user, digest, generation);
        } else {
            // The user's own check (if any) cost 2^c; make the failure cost 2^padded in all.
            let spent = match &entry {
                Some(Entry::Bcrypt(hash)) => bcrypt_cost(hash),
                Some(Entry::Unsupported) | None => None,
            };
            pad(password, spent, padded);
        }
        ok
    }

    /// Whether `password` is `user`'s password as far as the cache of recent successes knows,
    /// without running bcrypt: `false` means "not known", and `verify` must decide.
    pub fn verify_cached(&self, user: &str, password: &str) -> bool {
        self.maybe_reload();
        let generation = {
            let state = self.read_state();
            if !matches!(state.table.users.get(user), Some(Entry::Bcrypt(_))) {
                return false;
            }
            state.generation
        };
        self.cached(user, &cache_key(user, password), generation)
    }

    /// Checks the file for changes now, regardless of when it was last checked.
    pub fn refresh(&self) {
        *lock(&self.next_check) = Instant::now() + self.check_interval;
        self.reload_if_changed();
    }

    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn bcrypt(&self, password: &str, hash: &str) -> bool {
        self.bcrypt_runs.fetch_add(1, Ordering::Relaxed);
        // An error means a hash the loader let through but bcrypt cannot use: not a match.
        bcrypt::verify(password, hash).unwrap_or(false)
    }

    fn cached(&self, user: &str, digest: &[u8; 32], generation: u64) -> bool {
        let mut cache = lock(&self.cache);
        let Some(hit) = cache.get(user) else { return false };
        if hit.generation != generation || hit.expires <= Instant::now() {
            cache.remove(user);
            return false;
        }
        constant_time_eq(&hit.digest, digest)
    }

    /// Caches a success, unless the file was reloaded while bcrypt ran (the password checked
    /// may no longer be the user's).
    fn remember(&self, user: &str, digest: [u8; 32], generation: u64) {
        if self.read_state().generation != generation {
            return;
        }
        let entry = Cached {
            digest,
            expires: Instant::now() + CACHE_TTL,
            generation,
        };
        // At most one entry per user of the file: the cache cannot outgrow it.
        lock(&self.cache).insert(user.to_string(), entry);
    }

    fn maybe_reload(&self) {
        let now = Instant::now();
        {
            let mut next = lock(&self.next_check);
            if now < *next {
                return;
            }
            *next = now + self.check_interval;
        }
        self.reload_if_changed();
    }

    fn reload_if_changed(&self) {
        let path = &self.path;
        let current = std::fs::metadata(path).map(|m| Fingerprint::of(&m));
        let known = self.read_state().fingerprint;
        match current {
            Ok(fp) if Some(fp) == known => return,
            Ok(_) => {}
            Err(e) => return self.fail(&format!("cannot read htpasswd file {}: {e}", path.display()), known),
        }
        let loaded = read(path).and_then(|(text, fp)| Ok((load(path, &text)?, fp)));
        match loaded {
            Ok((table, fp)) => {
                let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
                let users = table.users.len();
                *state = State {
                    table,
                    fingerprint: Some(fp),
                    generation: state.generation + 1,
                    failing: false,
                };
                drop(state);
                lock(&self.cache).clear();
                tracing::info!(path = %path.display(), users, "htpasswd file reloaded");
            }
            Err(e) => {
                // Remember the broken version so it is not parsed again every second.
                let fp = std::fs::metadata(path).ok().map(|m| Fingerprint::of(&m));
                self.fail(&e.to_string(), fp);
            }
        }
    }

    /// Refuses every login (or keeps the last good users, with [`OnError::KeepUsers`]); logs
    /// once per broken state of the file.
    fn fail(&self, message: &str, fingerprint: Option<Fingerprint>) {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        let changed = state.fingerprint != fingerprint;
        if !state.failing || changed {
            match self.on_error {
                OnError::KeepUsers => {
                    let users = state.table.users.len();
                    tracing::error!("{message}; keeping the {users} users loaded before (keeponerror)");
                }
                OnError::RefuseAll => tracing::error!(
                    "{message}; refusing every login until the file is fixed (keeponerror: true keeps the users loaded before)"
                ),
            }
        }
        if self.on_error == OnError::RefuseAll && !state.table.users.is_empty() {
            // Failures keep their padded cost, so a broken file shows nothing in the timing.
            state.table.users.clear();
            state.generation += 1;
            drop(state);
            lock(&self.cache).clear();
            state = self.state.write().unwrap_or_else(|e| e.into_inner());
        }
        state.failing = true;
        state.fingerprint = fingerprint;
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves its data consistent, so a panic elsewhere cannot corrupt it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Reads the file and the fingerprint of exactly what was read.
fn read(path: &Path) -> Result<(String, Fingerprint), HtpasswdError> {
    use std::io::Read;
    let io = |error| HtpasswdError::Io {
        path: path.to_path_buf(),
        error,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let fingerprint = Fingerprint::of(&file.metadata().map_err(io)?);
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(io)?;
    // Lines that are not UTF-8 cannot match a user name from a request, which is UTF-8.
    Ok((String::from_utf8_lossy(&bytes).into_owned(), fingerprint))
}

/// Parses the file's text, logging what will not work.
fn load(path: &Path, text: &str) -> Result<Table, HtpasswdError> {
    let (users, warnings) = parse(text).map_err(|line| HtpasswdError::Invalid {
        path: path.to_path_buf(),
        line,
        reason: "expected user:hash".into(),
    })?;
    for warning in warnings {
        tracing::warn!(path = %path.display(), "{warning}");
    }
    Ok(Table {
        padded_cost: padded_cost(&users),
        users: users.into_iter().map(|(user, (_, entry))| (user, entry)).collect(),
    })
}

/// The user names a file's text defines, or the number of its first malformed line: what
/// `open` checks before any hashing (the fuzz targets drive the parser through this).
pub fn parse_users(text: &str) -> Result<Vec<String>, usize> {
    parse(text).map(|(users, _)| users.into_keys().collect())
}

/// The users (with their bcrypt cost, if any) and warnings, or the number of the first
/// malformed line.
#[allow(clippy::type_complexity)]
fn parse(text: &str) -> Result<(HashMap<String, (Option<u32>, Entry)>, Vec<String>), usize> {
    let mut users: HashMap<String, (Option<u32>, Entry)> = HashMap::new();
    let mut seen_at: HashMap<String, usize> = HashMap::new();
    let mut warnings = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let (user, hash) = match parse_line(line) {
            Line::Skip => continue,
            Line::Invalid => return Err(n),
            Line::Entry { user, hash } => (user, hash),
        };
        if user.is_empty() {
            warnings.push(format!("line {n}: empty user name; entry ignored"));
            continue;
        }
        if let Some(prev) = seen_at.insert(user.to_string(), n) {
            warnings.push(format!("line {n}: user {user:?} is also on line {prev}; the last entry wins"));
        }
        let entry = match HashKind::of(hash) {
            HashKind::Bcrypt { cost } => (Some(cost), Entry::Bcrypt(hash.into())),
            HashKind::Unsupported(kind) => {
                warnings.push(format!(
                    "line {n}: user {user:?} has a {kind} password hash, but only bcrypt is supported \
                     (as in registry:2), so this user cannot log in; set a new password with \
                     `wharf htpasswd set FILE {user}` or `htpasswd -B FILE {user}`"
                ));
                (None, Entry::Unsupported)
            }
        };
        users.insert(user.to_string(), entry);
    }
    Ok((users, warnings))
}

/// The highest bcrypt cost in the file, at most [`MAX_PADDED_COST`]: what every failed check
/// costs.
fn padded_cost(users: &HashMap<String, (Option<u32>, Entry)>) -> u32 {
    users
        .values()
        .filter_map(|(c, _)| *c)
        .max()
        .unwrap_or(DEFAULT_COST)
        .min(MAX_PADDED_COST)
}

fn bcrypt_cost(hash: &str) -> Option<u32> {
    hash.parse::<bcrypt::HashParts>().ok().map(|p| p.get_cost())
}

/// Burns bcrypt work until a failed check has cost 2^`target` in all: one run at `target` when
/// nothing ran yet, else one run at each cost from the one `spent` up to `target - 1`.
fn pad(password: &str, spent: Option<u32>, target: u32) {
    let costs = match spent {
        None => target..target + 1,
        Some(c) => c..target,
    };
    for cost in costs {
        // The result is thrown away; only the work counts. The salt is fixed: it changes
        // nothing about the work, and no output of this ever leaves the function.
        std::hint::black_box(bcrypt::hash_with_salt(password, cost, [0x5a; 16]).ok());
    }
}

/// A random value fixed for the life of the process: cache keys are useless outside it.
fn salt() -> &'static [u8; 32] {
    static SALT: OnceLock<[u8; 32]> = OnceLock::new();
    SALT.get_or_init(rand::random)
}

fn cache_key(user: &str, password: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    // The length prefix makes the split between user and password unambiguous even for a user
    // name containing NUL (which the header parser refuses anyway).
    h.update((user.len() as u64).to_le_bytes());
    h.update(user.as_bytes());
    h.update([0u8]);
    h.update(password.as_bytes());
    h.update(salt());
    h.finalize().into()
}

/// Compares without an early exit, so the time taken does not depend on where they differ.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::thread::sleep;

    /// Low cost: tests run many verifications.
    fn hash(password: &str) -> String {
        bcrypt::hash_with_result(password, 4)
            .unwrap()
            .format_for_version(bcrypt::Version::TwoY)
    }

    struct Fixture {
        dir: tempfile::TempDir,
        path: PathBuf,
    }

    impl Fixture {
        fn new(text: &str) -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("htpasswd");
            std::fs::write(&path, text).unwrap();
            Fixture { dir, path }
        }

        /// Replaces the file the way editors and `wharf htpasswd` do: a new file renamed over.
        fn replace(&self, text: &str) {
            let tmp = self.dir.path().join("tmp");
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, &self.path).unwrap();
        }

        /// Checks for changes on every call rather than once a second.
        fn open(&self) -> Htpasswd {
            let mut h = Htpasswd::open(&self.path).unwrap();
            h.check_interval = Duration::ZERO;
            *h.next_check.get_mut().unwrap() = Instant::now();
            h
        }
    }

    fn runs(h: &Htpasswd) -> u64 {
        h.bcrypt_runs.load(Ordering::Relaxed)
    }

    #[test]
    fn verifies_bcrypt_variants() {
        let base = hash("pw");
        let text = format!(
            "# comment\n\n  alice:{base}  \nbob:{}\ncarol:{}\n",
            base.replacen("$2y$", "$2a$", 1),
            base.replacen("$2y$", "$2b$", 1)
        );
        let f = Fixture::new(&text);
        let h = f.open();
        for user in ["alice", "bob", "carol"] {
            assert!(h.verify(user, "pw"), "{user}");
            assert!(!h.verify(user, "wrong"), "{user}");
        }
        assert!(!h.verify("alice", "pw "), "no trimming of passwords");
        assert!(!h.verify("Alice", "pw"), "user names are case-sensitive");
        assert!(!h.verify("dave", "pw"));
        assert_eq!(h.users(), vec!["alice", "bob", "carol"]);
    }

    #[test]
    fn reads_what_apache_htpasswd_writes() {
        // `htpasswd -Bbn moby gordon` (cost 5) and `htpasswd -bBC 4 -n x y`.
        let f = Fixture::new(
            "moby:$2y$05$sJjEqQxZ5Au60MM79grz7.wBXX.pzxo1od5M17AsE4fETb.fpLx8y\n\
             x:$2y$04$x9L62wRd2dwiuzPCVF3ki.K6urPt/oX0wqtKWfQAEpGDFjDOR1QaG\n",
        );
        let h = f.open();
        assert!(h.verify("moby", "gordon"));
        assert!(!h.verify("moby", "gordon2"));
        assert!(h.verify("x", "y"));
    }

    #[test]
    fn passwords_may_contain_colons_and_unicode() {
        let f = Fixture::new(&format!("u:{}\n", hash("a:b:c✓")));
        assert!(f.open().verify("u", "a:b:c✓"));
    }

    #[test]
    fn unsupported_hashes_never_authenticate() {
        // `htpasswd -bs` (SHA-1), `-bm` (MD5), `-bd` (crypt), `-bp` (plain) of the password "pw".
        let text = "sha:{SHA}GpHWL3ymc5liWkNopqtdSjuqYHM=\n\
                    md5:$apr1$yv.hrBjM$MWHFrm4.n8.AYDyqSZzgl0\n\
                    des:muF4Cr3YTrHNE\n\
                    plain:pw\n\
                    empty:\n\
                    x2:$2x$04$x9L62wRd2dwiuzPCVF3ki.K6urPt/oX0wqtKWfQAEpGDFjDOR1QaG\n\
                    short:$2y$04$tooshort\n";
        let f = Fixture::new(text);
        let h = f.open();
        for user in ["sha", "md5", "des", "plain", "empty", "x2", "short"] {
            assert!(!h.verify(user, "pw"), "{user}");
            assert!(!h.verify(user, ""), "{user}");
        }
        assert!(h.users().is_empty());
        let (_, warnings) = parse(text).unwrap();
        let w = warnings.join("\n");
        for want in [
            "line 1: user \"sha\" has a SHA-1 ({SHA})",
            "line 2: user \"md5\" has a Apache MD5 ($apr1$)",
            "line 3: user \"des\" has a DES crypt",
            "line 4: user \"plain\" has a plain text or unknown",
            "line 5: user \"empty\" has a empty",
            "line 6: user \"x2\" has a bcrypt $2x$",
            "line 7: user \"short\" has a malformed bcrypt",
        ] {
            assert!(w.contains(want), "missing {want:?} in\n{w}");
        }
        assert!(
            !w.contains("GpHWL3") && !w.contains("yv.hrBjM") && !w.contains("muF4Cr"),
            "hashes leaked:\n{w}"
        );
    }

    #[test]
    fn failures_are_padded_to_the_highest_cost() {
        let f = Fixture::new(&format!("alice:{}\nsha:{{SHA}}GpHWL3ymc5liWkNopqtdSjuqYHM=\n", hash("pw")));
        let h = f.open();
        assert!(!h.verify("nobody", "pw"));
        assert!(!h.verify("sha", "pw"));
        assert_eq!(runs(&h), 0, "no real check for users without a bcrypt hash, only padding");
        assert_eq!(h.read_state().table.padded_cost, 4);
        let mut users = HashMap::new();
        assert_eq!(padded_cost(&users), DEFAULT_COST);
        for (i, cost) in [5, 5, 12].into_iter().enumerate() {
            users.insert(i.to_string(), (Some(cost), Entry::Unsupported));
        }
        users.insert("x".into(), (None, Entry::Unsupported));
        assert_eq!(padded_cost(&users), 12, "the highest cost, not the most common");
        users.insert("absurd".into(), (Some(31), Entry::Unsupported));
        assert_eq!(padded_cost(&users), MAX_PADDED_COST);
    }

    #[test]
    fn padding_sums_to_the_work_of_the_highest_cost() {
        // bcrypt's work doubles with each cost: the runs padding adds, plus the user's own run,
        // must add up to exactly one run at the target cost.
        let work = |spent: Option<u32>, target: u32| -> u64 {
            let own = spent.map_or(0, |c| 1u64 << c);
            let padding: u64 = match spent {
                None => 1 << target,
                Some(c) => (c..target).map(|k| 1u64 << k).sum(),
            };
            own + padding
        };
        for target in 4..=MAX_PADDED_COST {
            assert_eq!(work(None, target), 1 << target);
            for c in 4..=target {
                assert_eq!(work(Some(c), target), 1 << target, "cost {c} padded to {target}");
            }
        }
        // And the padding really runs bcrypt: cost 4 to 8 is measurably slower than cost 4.
        let timed = |spent, target| {
            let start = Instant::now();
            pad("pw", spent, target);
            start.elapsed()
        };
        assert!(timed(Some(4), 8) > timed(Some(4), 5));
    }

    #[test]
    fn duplicate_users_last_entry_wins() {
        let text = format!("alice:{}\nalice:{}\n", hash("old"), hash("new"));
        let f = Fixture::new(&text);
        let h = f.open();
        assert!(h.verify("alice", "new"));
        assert!(!h.verify("alice", "old"));
        let (_, warnings) = parse(&text).unwrap();
        assert!(warnings[0].contains("line 2: user \"alice\" is also on line 1"), "{warnings:?}");
    }

    #[test]
    fn malformed_files_are_errors_naming_file_and_line() {
        let f = Fixture::new(&format!("# ok\nalice:{}\nthis line has no colon\n", hash("pw")));
        let e = Htpasswd::open(&f.path).unwrap_err().to_string();
        assert!(e.contains(&f.path.display().to_string()) && e.contains("line 3"), "{e}");
        assert!(!e.contains("no colon"), "the line's content is not quoted: {e}");
        let missing = f.dir.path().join("nope");
        let e = Htpasswd::open(&missing).unwrap_err().to_string();
        assert!(e.contains("nope") && e.contains("cannot read"), "{e}");
    }

    #[test]
    fn line_parsing() {
        assert_eq!(parse_line("  # x:y"), Line::Skip);
        assert_eq!(parse_line("\t "), Line::Skip);
        assert_eq!(parse_line("nocolon"), Line::Invalid);
        assert_eq!(parse_line(" a:b \r"), Line::Entry { user: "a", hash: "b" });
        assert_eq!(parse_line("a:b:comment"), Line::Entry { user: "a", hash: "b" });
        assert_eq!(parse_line("a:"), Line::Entry { user: "a", hash: "" });
        let (users, w) = parse(":$2y$04$x\n").unwrap();
        assert!(users.is_empty() && w[0].contains("empty user name"));
    }

    #[test]
    fn cache_hit_avoids_bcrypt() {
        // A realistic cost, so the difference in time is plain as well as counted.
        let f = Fixture::new(&format!(
            "alice:{}\n",
            bcrypt::hash_with_result("pw", 10)
                .unwrap()
                .format_for_version(bcrypt::Version::TwoY)
        ));
        let h = f.open();
        let start = Instant::now();
        assert!(h.verify("alice", "pw"));
        let first = start.elapsed();
        assert_eq!(runs(&h), 1);
        let start = Instant::now();
        for _ in 0..100 {
            assert!(h.verify("alice", "pw"));
        }
        let hundred = start.elapsed();
        assert_eq!(runs(&h), 1, "cached: no bcrypt");
        assert!(hundred < first, "100 cached checks ({hundred:?}) beat one bcrypt ({first:?})");
        // A wrong password is never served from the cache and never cached.
        assert!(!h.verify("alice", "pw2"));
        assert!(!h.verify("alice", "pw2"));
        assert_eq!(runs(&h), 3);
        assert!(h.verify("alice", "pw"), "a failure does not evict the good entry");
        assert_eq!(runs(&h), 3);
    }

    #[test]
    fn cache_never_holds_the_password() {
        let f = Fixture::new(&format!("alice:{}\n", hash("hunter2-pw")));
        let h = f.open();
        assert!(h.verify("alice", "hunter2-pw"));
        let cache = lock(&h.cache);
        let entry = &cache["alice"];
        assert_eq!(entry.digest, cache_key("alice", "hunter2-pw"));
        assert!(!entry.digest.windows(6).any(|w| w == b"hunter"));
        // The key depends on the user as well as the password, and on the salt.
        assert_ne!(cache_key("alice", "pw"), cache_key("bob", "pw"));
        assert_ne!(cache_key("a", "\0b"), cache_key("a\0", "b"));
        let unsalted: [u8; 32] = Sha256::digest(b"\x05\0\0\0\0\0\0\0alice\0hunter2-pw").into();
        assert_ne!(entry.digest, unsalted);
    }

    #[test]
    fn cache_entries_expire() {
        let f = Fixture::new(&format!("alice:{}\n", hash("pw")));
        let h = f.open();
        assert!(h.verify("alice", "pw"));
        lock(&h.cache).get_mut("alice").unwrap().expires = Instant::now();
        assert!(h.verify("alice", "pw"));
        assert_eq!(runs(&h), 2, "expired entry: bcrypt again");
        assert!(lock(&h.cache)["alice"].expires > Instant::now() + CACHE_TTL - Duration::from_secs(5));
    }

    #[test]
    fn changed_password_takes_effect_at_once() {
        let f = Fixture::new(&format!("alice:{}\nbob:{}\n", hash("old"), hash("bobpw")));
        let h = f.open();
        assert!(h.verify("alice", "old"));
        assert!(h.verify("bob", "bobpw"));
        f.replace(&format!("alice:{}\nbob:{}\n", hash("new"), hash("bobpw")));
        assert!(!h.verify("alice", "old"), "the cached old password no longer works");
        assert!(h.verify("alice", "new"));
        let before = runs(&h);
        assert!(h.verify("bob", "bobpw"));
        assert_eq!(runs(&h), before + 1, "the whole cache was dropped");
    }

    #[test]
    fn in_place_edits_are_noticed() {
        let f = Fixture::new(&format!("alice:{}\n", hash("pw")));
        let h = f.open();
        assert!(h.verify("alice", "pw"));
        // Same inode; a different size.
        let mut file = std::fs::OpenOptions::new().append(true).open(&f.path).unwrap();
        writeln!(file, "bob:{}", hash("bobpw")).unwrap();
        drop(file);
        assert!(h.verify("bob", "bobpw"));
        // Removing a user locks them out at once, cache or not.
        f.replace("# nobody\n");
        assert!(!h.verify("alice", "pw"));
    }

    #[test]
    fn broken_or_missing_file_refuses_every_login_until_fixed() {
        let f = Fixture::new(&format!("alice:{}\n", hash("pw")));
        let h = f.open();
        assert!(h.verify("alice", "pw"));
        f.replace("garbage without colon\n");
        assert!(!h.verify("alice", "pw"), "invalid file: nobody logs in, cached or not");
        assert!(h.read_state().failing);
        f.replace(&format!("alice:{}\n", hash("pw")));
        assert!(h.verify("alice", "pw"), "fixed file is loaded");
        std::fs::remove_file(&f.path).unwrap();
        assert!(!h.verify("alice", "pw"), "missing file: nobody logs in");
        assert!(h.users().is_empty());
        f.replace(&format!("bob:{}\n", hash("bobpw")));
        assert!(h.verify("bob", "bobpw"));
        assert!(!h.read_state().failing);
    }

    #[test]
    fn broken_or_missing_file_keeps_the_last_good_users_when_asked() {
        let f = Fixture::new(&format!("alice:{}\n", hash("pw")));
        let mut h = Htpasswd::open_with(&f.path, OnError::KeepUsers).unwrap();
        h.check_interval = Duration::ZERO;
        *h.next_check.get_mut().unwrap() = Instant::now();
        f.replace("garbage without colon\n");
        assert!(h.verify("alice", "pw"), "invalid file: old content stays in force");
        assert!(h.read_state().failing);
        std::fs::remove_file(&f.path).unwrap();
        assert!(h.verify("alice", "pw"), "missing file: old content stays in force");
        f.replace(&format!("bob:{}\n", hash("bobpw")));
        assert!(h.verify("bob", "bobpw"), "fixed file is loaded");
        assert!(!h.verify("alice", "pw"));
        assert!(!h.read_state().failing);
    }

    #[test]
    fn checks_the_file_at_most_once_a_second() {
        let f = Fixture::new(&format!("alice:{}\n", hash("old")));
        let new = format!("alice:{}\n", hash("new"));
        let opened = Instant::now();
        let h = Htpasswd::open(&f.path).unwrap();
        assert!(h.verify("alice", "old"));
        f.replace(&new);
        let still_old = h.verify("alice", "old");
        // Only meaningful if the machine did not stall for a second in between.
        if opened.elapsed() < CHECK_INTERVAL {
            assert!(still_old, "not re-checked within the second");
        }
        sleep(CHECK_INTERVAL + Duration::from_millis(50));
        assert!(h.verify("alice", "new"));
        assert!(!h.verify("alice", "old"));
        // refresh() checks at once.
        f.replace(&format!("alice:{}\n", hash("newer")));
        h.refresh();
        assert!(h.verify("alice", "newer"));
    }

    #[test]
    fn a_reload_during_bcrypt_is_not_cached_as_current() {
        let f = Fixture::new(&format!("alice:{}\n", hash("pw")));
        let h = f.open();
        let generation = h.read_state().generation;
        f.replace(&format!("alice:{}\n", hash("other")));
        h.refresh();
        h.remember("alice", cache_key("alice", "pw"), generation);
        assert!(lock(&h.cache).is_empty());
    }

    #[test]
    fn concurrent_verification() {
        let f = Fixture::new(&format!("alice:{}\nbob:{}\n", hash("a"), hash("b")));
        let h = Arc::new(f.open());
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let h = h.clone();
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        assert!(h.verify("alice", "a"));
                        assert!(h.verify("bob", "b"));
                        assert!(!h.verify(if i % 2 == 0 { "alice" } else { "bob" }, "x"));
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
    }

    #[test]
    fn constant_time_comparison() {
        let a = [7u8; 32];
        let mut b = a;
        assert!(constant_time_eq(&a, &b));
        b[31] ^= 1;
        assert!(!constant_time_eq(&a, &b));
        b = a;
        b[0] ^= 0x80;
        assert!(!constant_time_eq(&a, &b));
    }
}
