//! One writer per storage root. The filesystem backend's caches (the index, upload hash
//! progress) assume nothing else writes the root, so `wharf serve` holds an exclusive lock on a
//! file in it for as long as it runs. The lock is the kernel's (flock): a process that dies, even
//! by SIGKILL, releases it, so a crash never needs a manual clean-up before the next start. The
//! file also says who holds it, for the message a second server prints when it is refused.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Held for the life of the server: dropping it (or the process ending) releases the lock.
#[derive(Debug)]
pub struct RootLock {
    /// None on a read-only filesystem, which no server can write anyway.
    _file: Option<File>,
    path: PathBuf,
}

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another wharf is already serving this storage root ({holder}; lock file {}); \
         two servers writing one root would serve stale tags and lose uploads: stop the other one, \
         or give this one its own --root",
        path.display()
    )]
    Held { holder: String, path: PathBuf },
    #[error("cannot lock {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

/// The lock file of the layout under `v2` (`<root>/docker/registry/v2`): in wharf's own
/// directory, which registry:2 never reads.
pub fn lock_path(v2: &Path) -> PathBuf {
    v2.join("_wharf").join("lock")
}

impl RootLock {
    /// Takes the lock without waiting, and records this process as its holder.
    pub fn acquire(v2: &Path) -> Result<RootLock, LockError> {
        let path = lock_path(v2);
        // The lock is held through a read-only descriptor (flock does not need write access):
        // a descriptor open for writing would keep the filesystem from being remounted
        // read-only under a running server, which must then go on serving reads.
        let created = path
            .parent()
            .map_or(Ok(()), super::durable::create_dir_all)
            // Not truncated: until the lock is ours the content is the holder's.
            .and_then(|()| OpenOptions::new().write(true).create(true).truncate(false).open(&path).map(drop));
        let mut file = match (File::open(&path), created) {
            (Ok(f), _) => f,
            (Err(_), Err(e)) if e.kind() == io::ErrorKind::ReadOnlyFilesystem => {
                tracing::warn!(lock = %path.display(), "the storage root is on a read-only filesystem: serving it without the single-writer lock");
                return Ok(RootLock { _file: None, path });
            }
            (Err(_), Err(source)) | (Err(source), Ok(())) => return Err(LockError::Io { path, source }),
        };
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Err(LockError::Held {
                    holder: describe_holder(&holder),
                    path,
                });
            }
            Err(TryLockError::Error(source)) => return Err(LockError::Io { path, source }),
        }
        if let Err(e) = std::fs::write(&path, holder_record()) {
            // The lock holds all the same (a full or read-only disk must not stop a server that
            // can still serve reads); only a second server's message will not say who has it.
            tracing::warn!(lock = %path.display(), error = %e, "holding the storage root's lock, but could not record this process in it");
        }
        Ok(RootLock { _file: Some(file), path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// `pid: 123`, `host: name`, `since: <RFC 3339>`, one a line.
fn holder_record() -> String {
    let since = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let host = crate::tls::certs::hostname().unwrap_or_else(|| "unknown".into());
    format!("pid: {}\nhost: {host}\nsince: {since}\n", std::process::id())
}

/// "pid 123 on host since 2026-...", from a holder record; what is missing is said so.
fn describe_holder(record: &str) -> String {
    let field = |name: &str| {
        record
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':').map(str::trim))
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    match (field("pid"), field("host"), field("since")) {
        (Some(pid), Some(host), Some(since)) => format!("pid {pid} on {host}, serving since {since}"),
        _ => "its holder did not record itself yet".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_one_root_is_refused_naming_the_first() {
        let t = tempfile::tempdir().unwrap();
        let first = RootLock::acquire(t.path()).unwrap();
        let record = std::fs::read_to_string(first.path()).unwrap();
        assert!(record.contains(&format!("pid: {}\n", std::process::id())), "{record}");
        // flock conflicts between two open files even within one process.
        let err = RootLock::acquire(t.path()).unwrap_err().to_string();
        assert!(err.contains(&format!("pid {} on ", std::process::id())), "{err}");
        assert!(err.contains("serving since 20"), "{err}");
        drop(first);
        let again = RootLock::acquire(t.path()).unwrap();
        assert_eq!(std::fs::read_to_string(again.path()).unwrap().lines().count(), 3);
    }
}
