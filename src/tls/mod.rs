//! TLS for the registry: certificate generation (`certs`), certificate inspection that explains
//! what container clients will reject (`inspect`), and the rustls server side with certificate
//! reload (`server`), and the client side of probes (`client`).
//!
//! Every function here uses the ring provider explicitly; nothing depends on a process-default
//! rustls `CryptoProvider`.

pub mod ca_file;
pub mod certs;
pub mod client;
pub mod inspect;
mod keys;
pub mod server;

use std::path::{Path, PathBuf};

/// What went wrong, phrased for the person who has to fix it: file errors name the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file was read but its content is unusable.
    #[error("{}: {problem}", path.display())]
    File { path: PathBuf, problem: String },
    /// PEM or certificate content (not tied to a file) is unusable.
    #[error("{0}")]
    Invalid(String),
    #[error("generating the certificate failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

pub type Result<T> = std::result::Result<T, TlsError>;

impl TlsError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        TlsError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn file(path: &Path, problem: impl Into<String>) -> Self {
        TlsError::File {
            path: path.to_path_buf(),
            problem: problem.into(),
        }
    }
}

/// The crypto provider used everywhere in wharf's TLS code.
pub fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}
