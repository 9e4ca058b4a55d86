//! `notifications`: registry:2's webhook endpoints (`configuration.Notifications` /
//! `configuration.Endpoint`, same keys and defaults), plus wharf's own per-endpoint keys, which
//! registry:2 ignores: `queue` (the on-disk queue) and `signing` (an HMAC of each body).

use super::duration_str;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// registry:2's defaults for a zero `timeout`, `threshold` and `backoff` (notifications/endpoint.go).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
pub const DEFAULT_THRESHOLD: u32 = 10;
pub const DEFAULT_BACKOFF: Duration = Duration::from_secs(1);
/// Events an endpoint's queue holds before new ones are dropped (and the drop logged).
pub const DEFAULT_QUEUE_MAX_EVENTS: u64 = 100_000;
/// The header the body's HMAC goes in unless `signing.header` names another.
pub const DEFAULT_SIGNATURE_HEADER: &str = "X-Wharf-Signature";

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default)]
pub struct Notifications {
    pub events: EventOptions,
    pub endpoints: Vec<Endpoint>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default)]
pub struct EventOptions {
    /// Manifest events carry the descriptors the manifest references (`target.references`).
    pub includereferences: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default)]
pub struct Endpoint {
    pub name: String,
    pub disabled: bool,
    pub url: String,
    /// Go's http.Header: each name with its values, sent with every request.
    pub headers: BTreeMap<String, Vec<String>>,
    /// Zero means registry:2's default (1 s).
    #[serde(with = "duration_str")]
    pub timeout: Duration,
    /// Failures in a row before the endpoint is backed off; zero means 10.
    pub threshold: u32,
    /// How long a backed-off endpoint waits before the next try; zero means 1 s.
    #[serde(with = "duration_str")]
    pub backoff: Duration,
    pub ignoredmediatypes: Vec<String>,
    pub ignore: Ignore,
    /// wharf: where and how many events are queued.
    pub queue: Queue,
    /// wharf: an HMAC-SHA256 of each body in a header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing: Option<Signing>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default)]
pub struct Ignore {
    pub mediatypes: Vec<String>,
    pub actions: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Queue {
    /// The queue's directory; empty means `<root>/docker/registry/v2/_wharf/notifications/<name>`.
    pub path: PathBuf,
    pub maxevents: u64,
}

impl Default for Queue {
    fn default() -> Queue {
        Queue {
            path: PathBuf::new(),
            maxevents: DEFAULT_QUEUE_MAX_EVENTS,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default)]
pub struct Signing {
    /// The key itself; `keyfile` instead keeps it out of the configuration.
    pub key: String,
    pub keyfile: PathBuf,
    /// Defaults to `X-Wharf-Signature`; the value is `sha256=<hex>`.
    pub header: String,
}

impl Endpoint {
    pub fn timeout_or_default(&self) -> Duration {
        if self.timeout.is_zero() {
            DEFAULT_TIMEOUT
        } else {
            self.timeout
        }
    }

    pub fn threshold_or_default(&self) -> u32 {
        if self.threshold == 0 {
            DEFAULT_THRESHOLD
        } else {
            self.threshold
        }
    }

    pub fn backoff_or_default(&self) -> Duration {
        if self.backoff.is_zero() {
            DEFAULT_BACKOFF
        } else {
            self.backoff
        }
    }

    /// registry:2 joins `ignore.mediatypes` and the older `ignoredmediatypes`.
    pub fn ignored_media_types(&self) -> impl Iterator<Item = &str> {
        self.ignore.mediatypes.iter().chain(&self.ignoredmediatypes).map(String::as_str)
    }
}

impl Signing {
    /// The key bytes: the file's content (without a final newline) or the value.
    pub fn key_bytes(&self) -> std::io::Result<Vec<u8>> {
        if self.keyfile.as_os_str().is_empty() {
            return Ok(self.key.as_bytes().to_vec());
        }
        let mut bytes = std::fs::read(&self.keyfile)?;
        while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            bytes.pop();
        }
        Ok(bytes)
    }

    pub fn header_name(&self) -> &str {
        if self.header.is_empty() {
            DEFAULT_SIGNATURE_HEADER
        } else {
            &self.header
        }
    }
}
