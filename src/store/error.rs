//! The one error the storage port returns. Backends say what kind of failure happened; the
//! layers above decide what it means for a request from the kind alone, never from errno (an
//! object store has none, and its failures are not the client's fault).

use std::fmt;
use std::io;
use std::time::Duration;

/// What went wrong, as far as a caller of the port needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// What the operation needs is not there (a session's data, a blob being moved).
    NotFound,
    /// A create-if-absent found the object already there.
    AlreadyExists,
    /// A conditional write found another value than the one expected (compare-and-swap).
    PreconditionFailed,
    /// Out of space or over a quota: retry once space is freed.
    Full,
    /// The storage refuses writes (a read-only mount); reads go on.
    ReadOnly,
    /// The backend cannot answer now (throttled, unreachable); retry, after `retry_after` if
    /// the backend said.
    Unavailable { retry_after: Option<Duration> },
    /// The bytes to store stopped coming: the client went away or sent a broken body.
    ClientAborted,
    /// Anything else the backend failed at: the registry's fault, not the client's.
    Backend,
}

#[derive(Debug)]
pub struct StoreError {
    kind: StoreErrorKind,
    source: io::Error,
}

pub type StoreResult<T> = Result<T, StoreError>;

impl StoreError {
    pub fn new(kind: StoreErrorKind, message: impl Into<String>) -> StoreError {
        StoreError {
            kind,
            source: io::Error::other(message.into()),
        }
    }

    /// A failure of the stream carrying the client's bytes: its cause is kept for the log, the
    /// kind says whose fault it is.
    pub fn client_aborted(cause: io::Error) -> StoreError {
        StoreError {
            kind: StoreErrorKind::ClientAborted,
            source: cause,
        }
    }

    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }

    pub fn is_not_found(&self) -> bool {
        self.kind == StoreErrorKind::NotFound
    }
}

/// How a filesystem error reads as a port error: the only place errno is looked at.
fn kind_of(e: &io::Error) -> StoreErrorKind {
    match e.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => return StoreErrorKind::Full,
        Some(libc::EROFS) => return StoreErrorKind::ReadOnly,
        _ => {}
    }
    match e.kind() {
        io::ErrorKind::NotFound => StoreErrorKind::NotFound,
        io::ErrorKind::AlreadyExists => StoreErrorKind::AlreadyExists,
        _ => StoreErrorKind::Backend,
    }
}

impl From<io::Error> for StoreError {
    fn from(source: io::Error) -> StoreError {
        StoreError {
            kind: kind_of(&source),
            source,
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.source, f)
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filesystem_errors_read_as_their_kind() {
        let of = |e: io::Error| StoreError::from(e).kind();
        assert_eq!(of(io::Error::from_raw_os_error(libc::ENOSPC)), StoreErrorKind::Full);
        assert_eq!(of(io::Error::from_raw_os_error(libc::EDQUOT)), StoreErrorKind::Full);
        assert_eq!(of(io::Error::from_raw_os_error(libc::EROFS)), StoreErrorKind::ReadOnly);
        assert_eq!(of(io::Error::from_raw_os_error(libc::ENOENT)), StoreErrorKind::NotFound);
        assert_eq!(of(io::Error::from_raw_os_error(libc::EACCES)), StoreErrorKind::Backend);
        // An error without an errno is no longer taken for the client's fault.
        assert_eq!(of(io::Error::other("disk said no")), StoreErrorKind::Backend);
        assert_eq!(
            StoreError::client_aborted(io::Error::other("reset")).kind(),
            StoreErrorKind::ClientAborted
        );
    }
}
