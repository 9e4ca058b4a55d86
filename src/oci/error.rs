//! The distribution-spec error codes and the one error type the registry layer returns.
//! `http::error` turns it into a status and the spec's JSON body.

use crate::store::{StoreError, StoreErrorKind};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    TooManyRequests,
    /// A chunk or range that does not line up (BLOB_UPLOAD_INVALID on the wire, status 416).
    RangeInvalid,
    /// A body over a limit (SIZE_INVALID on the wire, status 413).
    TooLarge,
    /// More `tag` parameters than one manifest push may carry (UNSUPPORTED on the wire, status
    /// 414, which the spec names for this).
    TooManyTags,
    /// Storage failed underneath us (UNKNOWN on the wire, status 500).
    Internal,
    /// Storage is out of space or read-only (UNAVAILABLE on the wire, status 503): retry later.
    Unavailable,
    /// Another instance of an exclusive operation holds it (a garbage collection running on
    /// another replica): UNAVAILABLE on the wire, status 409, retry once it has finished.
    Conflict,
}

impl ErrorCode {
    /// The code string clients see.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BlobUnknown => "BLOB_UNKNOWN",
            ErrorCode::BlobUploadInvalid | ErrorCode::RangeInvalid => "BLOB_UPLOAD_INVALID",
            ErrorCode::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            ErrorCode::DigestInvalid => "DIGEST_INVALID",
            ErrorCode::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            ErrorCode::ManifestInvalid => "MANIFEST_INVALID",
            ErrorCode::ManifestUnknown => "MANIFEST_UNKNOWN",
            ErrorCode::NameInvalid => "NAME_INVALID",
            ErrorCode::NameUnknown => "NAME_UNKNOWN",
            ErrorCode::SizeInvalid | ErrorCode::TooLarge => "SIZE_INVALID",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Denied => "DENIED",
            ErrorCode::Unsupported | ErrorCode::TooManyTags => "UNSUPPORTED",
            ErrorCode::TooManyRequests => "TOOMANYREQUESTS",
            ErrorCode::Internal => "UNKNOWN",
            ErrorCode::Unavailable | ErrorCode::Conflict => "UNAVAILABLE",
        }
    }

    /// The HTTP status the spec pairs with the code.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::BlobUnknown | ErrorCode::BlobUploadUnknown | ErrorCode::ManifestUnknown | ErrorCode::NameUnknown => 404,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Denied => 403,
            ErrorCode::Unsupported => 405,
            ErrorCode::TooManyRequests => 429,
            ErrorCode::RangeInvalid => 416,
            ErrorCode::TooLarge => 413,
            ErrorCode::TooManyTags => 414,
            ErrorCode::Internal => 500,
            ErrorCode::Unavailable => 503,
            ErrorCode::Conflict => 409,
            _ => 400,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RegistryError {
    pub code: ErrorCode,
    pub message: String,
    pub detail: Option<serde_json::Value>,
    /// Seconds the client should wait before retrying (a `Retry-After` header), when known.
    pub retry_after: Option<u64>,
}

impl RegistryError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        RegistryError {
            code,
            message: message.into(),
            detail: None,
            retry_after: None,
        }
    }

    pub fn with_detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = Some(detail);
        self
    }

    /// A storage failure, told apart by its kind alone. A full or read-only store and a
    /// backend asking for patience are worth a retry; a body that stopped coming is the
    /// client's doing; everything else is an internal error. The cause stays in the server log,
    /// not in the response.
    pub fn storage(err: StoreError) -> Self {
        Self::storage_when(err, "nothing was committed")
    }

    /// A storage failure after part of an operation was committed: `state` says what the
    /// client can rely on (instead of "nothing was committed").
    pub fn storage_when(err: StoreError, state: &str) -> Self {
        let (code, message) = match err.kind() {
            StoreErrorKind::ClientAborted => {
                return RegistryError::new(
                    ErrorCode::BlobUploadInvalid,
                    format!("upload body was not received completely: {err}"),
                )
            }
            StoreErrorKind::Full => (ErrorCode::Unavailable, format!("storage is full; {state}, retry later")),
            StoreErrorKind::ReadOnly => (ErrorCode::Unavailable, format!("storage is read-only; {state}, retry later")),
            StoreErrorKind::Unavailable { .. } => (ErrorCode::Unavailable, format!("storage is unavailable; {state}, retry later")),
            StoreErrorKind::NotFound | StoreErrorKind::AlreadyExists | StoreErrorKind::PreconditionFailed | StoreErrorKind::Backend => {
                (ErrorCode::Internal, format!("storage error; {state}"))
            }
        };
        tracing::error!(error = %err, kind = ?err.kind(), "storage error");
        let mut out = RegistryError::new(code, message);
        if let StoreErrorKind::Unavailable { retry_after: Some(after) } = err.kind() {
            out.retry_after = Some(after.as_secs().max(1));
        }
        out
    }
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for RegistryError {}

impl From<StoreError> for RegistryError {
    fn from(e: StoreError) -> Self {
        RegistryError::storage(e)
    }
}

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;
