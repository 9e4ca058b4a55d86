//! The object stores the backend runs on, behind one trait: everything above this file calls
//! the same `object_store` operations (objects, multipart uploads, presigned URLs), whichever
//! service is configured. S3's multipart uploads are parts with ETags; Azure's are blocks of a
//! block blob with ids, committed by a block list: both are `MultipartStore`'s parts, so the
//! upload sessions (`uploads`) keep one state model for both.

use super::settings::Tuning;
use crate::config::ObjectStorage;
use object_store::aws::AmazonS3;
use object_store::azure::MicrosoftAzure;
use object_store::multipart::MultipartStore;
use object_store::signer::Signer;
use object_store::{ClientOptions, ObjectStore, RetryConfig};
use std::sync::Arc;
use std::time::Duration;

/// A client of the bucket (S3) or container (Azure).
pub trait Client: ObjectStore + MultipartStore + Signer {
    /// The S3 client itself, for what only S3 has (part copies); None on other stores.
    fn as_s3(&self) -> Option<&AmazonS3> {
        None
    }
}

impl Client for AmazonS3 {
    fn as_s3(&self) -> Option<&AmazonS3> {
        Some(self)
    }
}

impl Client for MicrosoftAzure {}

/// distribution's name for the driver (the `driver` label of the storage metrics).
pub fn driver_name(settings: ObjectStorage<'_>) -> &'static str {
    match settings {
        ObjectStorage::S3(_) => "s3aws",
        ObjectStorage::Azure(_) => "azure",
    }
}

/// The client for `settings` and the backend's knobs: as `serve` runs it, or with `probe` a
/// client for short checks (`wharf config check`, `/debug/health`) whose every request, its one
/// retry included, ends within that limit, so an unreachable endpoint is reported in seconds,
/// not after the backoff a registry request rides out.
pub fn connect(settings: ObjectStorage<'_>, redirect_disabled: bool, probe: Option<Duration>) -> anyhow::Result<(Arc<dyn Client>, Tuning)> {
    Ok(match settings {
        ObjectStorage::S3(s) => {
            let (s3, tuning) = super::settings::build(s, redirect_disabled, probe)?;
            (Arc::new(s3), tuning)
        }
        ObjectStorage::Azure(a) => {
            let (azure, tuning) = super::azure::build(a, redirect_disabled, probe)?;
            (Arc::new(azure), tuning)
        }
    })
}

/// The retries of a probe: one, within `limit`.
pub fn probe_retry(limit: Duration) -> RetryConfig {
    RetryConfig {
        backoff: Default::default(),
        max_retries: 1,
        retry_timeout: limit,
    }
}

/// The HTTP client's options: connects fail fast so that retries reach a node that is up; no
/// overall request timeout unless `request_timeout` (a blob GET streams for as long as the
/// client reads).
pub fn http_options(plain_http: bool, skipverify: bool, request_timeout: Option<Duration>) -> ClientOptions {
    let client = ClientOptions::new()
        .with_allow_http(plain_http)
        .with_allow_invalid_certificates(skipverify)
        .with_connect_timeout(Duration::from_secs(5));
    match request_timeout {
        Some(limit) => client.with_timeout(limit),
        None => client.with_timeout_disabled(),
    }
}
