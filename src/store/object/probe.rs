//! Reaching the bucket to check the settings, apart from serving: `wharf config check` lists,
//! writes, reads back and deletes a probe object; `/debug/health` lists. Each failure says
//! which of the usual causes it is (endpoint, credentials, bucket, permission), from what the
//! store answered, with a client whose requests end within seconds.

use super::client::Client;
use super::keys::Keys;
use crate::config::ObjectStorage;
use object_store::path::Path as Key;
use object_store::PutPayload;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// What a check found wrong, each with its own message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No answer from the endpoint: refused, timed out, a name that does not resolve, TLS.
    Unreachable,
    /// The store refused the access key or its signature (a wrong secret).
    Credentials,
    /// The endpoint answers but has no such bucket.
    NoBucket,
    /// The key may list but not write (or delete) objects.
    NoWrite,
    /// The key may list and write but not read objects back.
    NoRead,
    /// Anything else the store answered.
    Other,
}

/// A failed check: what it was, at which step, and the store's own words.
#[derive(Debug)]
pub struct ProbeError {
    pub failure: Failure,
    pub step: &'static str,
    detail: String,
    /// The driver's key (`s3`, `azure`): the message names its settings.
    driver: &'static str,
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let azure = self.driver == "azure";
        let what = match self.failure {
            Failure::Unreachable if azure => "the endpoint cannot be reached (storage.azure.serviceurl, or accountname and realm)",
            Failure::Unreachable => "the endpoint cannot be reached (storage.s3.regionendpoint, storage.s3.secure)",
            Failure::Credentials if azure => "the store refuses the credentials (storage.azure.accountname and accountkey)",
            Failure::Credentials => {
                "the store refuses the credentials (storage.s3.accesskey and secretkey, or the environment's AWS_* credentials)"
            }
            Failure::NoBucket if azure => "the container does not exist (storage.azure.container)",
            Failure::NoBucket => "the bucket does not exist (storage.s3.bucket)",
            Failure::NoWrite => "the credentials may not write to the bucket",
            Failure::NoRead => "the credentials may not read from the bucket",
            Failure::Other => "the store failed",
        };
        write!(f, "{what}: {} failed: {}", self.step, self.detail)
    }
}

impl std::error::Error for ProbeError {}

/// The error with its causes, on one line.
fn chain(e: &object_store::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// Which failure `e`, met at `step`, is. Listing errors reach us as text (object_store keeps
/// their status inside a generic error), so the S3 and Azure error codes and statuses are read
/// from it.
fn classify(step: &'static str, e: &object_store::Error) -> ProbeError {
    let detail = chain(e);
    let has = |s: &str| detail.contains(s);
    let refused = matches!(
        e,
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. }
    ) || [
        "403 Forbidden",
        "401 Unauthorized",
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AuthenticationFailed",
        "AuthorizationFailure",
    ]
    .iter()
    .any(|s| has(s));
    let failure = if has("NoSuchBucket") || has("ContainerNotFound") || (step == "list" && has("404 Not Found")) {
        Failure::NoBucket
    } else if refused {
        match step {
            "list" => Failure::Credentials,
            "read" => Failure::NoRead,
            _ => Failure::NoWrite,
        }
    } else if [
        "error sending request",
        "onnection refused",
        "dns error",
        "timed out",
        "deadline has elapsed",
    ]
    .iter()
    .any(|s| has(s))
    {
        Failure::Unreachable
    } else {
        Failure::Other
    };
    ProbeError {
        failure,
        step,
        detail,
        driver: "",
    }
}

/// A client for checks of the bucket (or container) `settings` name.
pub struct BucketProbe {
    s3: Arc<dyn Client>,
    keys: Keys,
    root: String,
    driver: &'static str,
}

impl BucketProbe {
    /// Each request (with its one retry) ends within `limit`.
    pub fn new(settings: ObjectStorage<'_>, limit: Duration) -> anyhow::Result<BucketProbe> {
        let (s3, tuning) = super::client::connect(settings, true, Some(limit))?;
        Ok(BucketProbe {
            s3,
            keys: Keys::new(&tuning.rootdirectory),
            root: tuning.rootdirectory.trim_matches('/').to_string(),
            driver: settings.key(),
        })
    }

    /// `classify`, naming this probe's driver's settings.
    fn failed(&self, step: &'static str, e: &object_store::Error) -> ProbeError {
        ProbeError {
            driver: self.driver,
            ..classify(step, e)
        }
    }

    /// One listing of the repositories, the request `serve` makes at start.
    pub async fn reachable(&self) -> Result<(), ProbeError> {
        self.s3
            .list_with_delimiter(Some(&self.keys.repositories()))
            .await
            .map(drop)
            .map_err(|e| self.failed("list", &e))
    }

    /// Lists, then writes, reads back and deletes an object of its own beside registry:2's
    /// tree (`<rootdirectory>/wharf-config-check-<random>`, outside `docker/registry/v2`, where
    /// neither registry looks). Returns the probe object's key.
    pub async fn read_write(&self) -> Result<String, ProbeError> {
        self.reachable().await?;
        let name = format!("wharf-config-check-{}", hex::encode(rand::random::<[u8; 8]>()));
        let key = if self.root.is_empty() {
            Key::from(name.as_str())
        } else {
            Key::from(format!("{}/{name}", self.root))
        };
        let content = format!("written by wharf config check, deleted right after: {name}\n");
        self.s3
            .put(&key, PutPayload::from(content.clone().into_bytes()))
            .await
            .map_err(|e| self.failed("write", &e))?;
        let read = async {
            let got = self.s3.get(&key).await?;
            got.bytes().await
        };
        let checked = match read.await {
            Ok(bytes) if bytes == content.as_bytes() => Ok(()),
            Ok(_) => Err(ProbeError {
                failure: Failure::Other,
                step: "read",
                detail: format!("{key} read back other bytes than were written"),
                driver: self.driver,
            }),
            Err(e) => Err(self.failed("read", &e)),
        };
        // Deleted even when the read failed: the probe leaves nothing behind.
        let deleted = self.s3.delete(&key).await.map_err(|e| self.failed("delete", &e));
        checked?;
        deleted?;
        Ok(key.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generic(text: &str) -> object_store::Error {
        object_store::Error::Generic {
            store: "S3",
            source: text.to_string().into(),
        }
    }

    #[test]
    fn failures_are_told_apart_by_step_and_answer() {
        let no_bucket =
            generic("Error performing list request: Server returned non-2xx status code: 404 Not Found: <Code>NoSuchBucket</Code>");
        assert_eq!(classify("list", &no_bucket).failure, Failure::NoBucket);
        let forbidden = generic("Server returned non-2xx status code: 403 Forbidden: <Code>AccessDenied</Code>");
        assert_eq!(classify("list", &forbidden).failure, Failure::Credentials);
        assert_eq!(classify("write", &forbidden).failure, Failure::NoWrite);
        assert_eq!(classify("read", &forbidden).failure, Failure::NoRead);
        let refused = generic("HTTP error: error sending request: tcp connect error: Connection refused (os error 111)");
        assert_eq!(classify("list", &refused).failure, Failure::Unreachable);
        assert_eq!(classify("list", &generic("500 Internal Server Error")).failure, Failure::Other);
    }
}
