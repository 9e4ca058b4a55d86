//! The distribution-spec error codes and the one error type the registry layer returns.
//! `http::error` turns it into a status and the spec's JSON body.

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
            ErrorCode::Unavailable => "UNAVAILABLE",
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
            _ => 400,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RegistryError {
    pub code: ErrorCode,
    pub message: String,
    pub detail: Option<serde_json::Value>,
}

impl RegistryError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        RegistryError {
            code,
            message: message.into(),
            detail: None,
        }
    }

    pub fn with_detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = Some(detail);
        self
    }

    /// A storage failure. Out-of-space and read-only filesystems are worth a retry; everything
    /// else is an internal error. The path stays in the server log, not in the response.
    pub fn storage(err: std::io::Error) -> Self {
        tracing::error!(error = %err, "storage error");
        let code = match err.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) | Some(libc::EROFS) => ErrorCode::Unavailable,
            _ => ErrorCode::Internal,
        };
        let message = match code {
            ErrorCode::Unavailable => format!("storage is unavailable ({}); nothing was committed, retry later", err.kind()),
            _ => "storage error; nothing was committed".to_string(),
        };
        RegistryError::new(code, message)
    }
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for RegistryError {}

impl From<std::io::Error> for RegistryError {
    fn from(e: std::io::Error) -> Self {
        RegistryError::storage(e)
    }
}

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;
