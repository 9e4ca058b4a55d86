//! registry:2's `storage.azure` settings turned into an Azure Blob Storage client and the
//! backend's knobs (distribution's `registry/storage/driver/azure`, 2.8 and main).
//!
//! - The account is `accountname`, signed with `accountkey` (a shared key: 2.8's only way, and
//!   main's `credentials.type: shared_key`). main's `client_secret` and `default_credentials`
//!   (Azure AD tokens) are refused at start: no emulator here issues such tokens, so they are
//!   not wired untested.
//! - The service is `serviceurl` (main), else `https://<accountname>.blob.<realm>`, `realm`
//!   defaulting to `core.windows.net`. An emulator's URL names the account in its path
//!   (Azurite: `http://127.0.0.1:10000/devstoreaccount1`).
//! - Keys are registry:2's paths under `rootdirectory` (distribution's `blobName`:
//!   `TrimLeft(TrimRight(root, "/") + path, "/")`), the S3 layout exactly.
//! - Uploads are block blobs whose blocks are the parts: Azure takes blocks of any size up to
//!   4000 MiB and at most 50,000 committed blocks a blob, so with the S3 backend's part size
//!   (10 MiB) a blob may reach 488 GiB. There is no `chunksize` key in registry:2's Azure
//!   driver; the part size is the S3 default.
//! - Blob GETs redirect to a service SAS signed with the account key, valid 20 minutes, as
//!   registry:2's `RedirectURL` does, unless `storage.redirect.disable`.
//! - `max_retries` and `retry_delay` are the client's retries and first backoff (registry:2
//!   uses them for its copy polling and writes).

use super::client::http_options;
use super::settings::{Tuning, DEFAULT_CHUNK_SIZE};
use crate::config::AzureStorage;
use object_store::azure::{MicrosoftAzure, MicrosoftAzureBuilder};
use object_store::{Attributes, BackoffConfig, RetryConfig};
use serde_yaml_ng::Value;
use std::time::Duration;

/// registry:2's `defaultRealm`.
pub const DEFAULT_REALM: &str = "core.windows.net";
/// registry:2's `defaultMaxRetries`.
const DEFAULT_MAX_RETRIES: usize = 5;

/// The service URL: `serviceurl` as given (no trailing `/`, which would make an empty path
/// segment before the container), else the account's host in `realm`.
pub fn service_url(a: &AzureStorage) -> String {
    let given = a.serviceurl.trim().trim_end_matches('/');
    if !given.is_empty() {
        return given.to_string();
    }
    let realm = match a.realm.trim() {
        "" => DEFAULT_REALM,
        r => r,
    };
    format!("https://{}.blob.{realm}", a.accountname)
}

/// `max_retries`: a number (or its text); -1 is no retry at all, as in registry:2.
fn max_retries(v: Option<&Value>) -> anyhow::Result<usize> {
    let n = match v {
        None | Some(Value::Null) => return Ok(DEFAULT_MAX_RETRIES),
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        Some(_) => None,
    };
    match n {
        Some(0) => Ok(DEFAULT_MAX_RETRIES),
        Some(-1) => Ok(0),
        Some(n) if n > 0 => Ok(n as usize),
        _ => anyhow::bail!("storage.azure.max_retries must be a whole number (-1 for none)"),
    }
}

fn retry(a: &AzureStorage) -> anyhow::Result<RetryConfig> {
    let init_backoff = match a.retry_delay.as_deref().map(str::trim) {
        None | Some("") => Duration::from_millis(100),
        Some(d) => crate::config::duration_str::parse_go(d).map_err(|e| anyhow::anyhow!("storage.azure.retry_delay: {e}"))?,
    };
    Ok(RetryConfig {
        backoff: BackoffConfig {
            init_backoff,
            ..Default::default()
        },
        max_retries: max_retries(a.max_retries.as_ref())?,
        ..Default::default()
    })
}

/// The client and tuning for `a`; with `probe_limit`, every request (and its one retry) ends
/// within it, for the checks of `wharf config check` and `/debug/health`.
pub fn build(a: &AzureStorage, redirect_disabled: bool, probe_limit: Option<Duration>) -> anyhow::Result<(MicrosoftAzure, Tuning)> {
    if a.accountname.is_empty() {
        anyhow::bail!("storage.azure.accountname is required");
    }
    if a.container.is_empty() {
        anyhow::bail!("storage.azure.container is required");
    }
    match a.credentials.kind.as_str() {
        "" | "shared_key" => {}
        other => anyhow::bail!(
            "storage.azure.credentials.type {other:?} is not supported by wharf: only shared_key (storage.azure.accountkey) is"
        ),
    }
    if a.accountkey.is_empty() {
        anyhow::bail!("storage.azure.accountkey is required (the storage account's shared key)");
    }
    let url = service_url(a);
    let plain_http = url.starts_with("http://");
    let retry = match probe_limit {
        Some(limit) => super::client::probe_retry(limit),
        None => retry(a)?,
    };
    let azure = MicrosoftAzureBuilder::new()
        .with_account(&a.accountname)
        .with_access_key(&a.accountkey)
        .with_container_name(&a.container)
        .with_endpoint(url)
        .with_allow_http(plain_http)
        .with_retry(retry)
        .with_client_options(http_options(plain_http, a.skipverify, probe_limit))
        .build()
        .map_err(|e| anyhow::anyhow!("storage.azure: {e}"))?;
    let tuning = Tuning {
        rootdirectory: a.rootdirectory.clone(),
        chunk_size: DEFAULT_CHUNK_SIZE,
        attributes: Attributes::new(),
        redirect: !redirect_disabled,
        copy: None,
    };
    Ok((azure, tuning))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_url_comes_from_serviceurl_or_the_account_and_realm() {
        let mut a = AzureStorage {
            accountname: "acct".into(),
            ..Default::default()
        };
        assert_eq!(service_url(&a), "https://acct.blob.core.windows.net");
        a.realm = "core.chinacloudapi.cn".into();
        assert_eq!(service_url(&a), "https://acct.blob.core.chinacloudapi.cn");
        a.serviceurl = "http://127.0.0.1:10000/devstoreaccount1/".into();
        assert_eq!(service_url(&a), "http://127.0.0.1:10000/devstoreaccount1");
    }

    #[test]
    fn settings_wharf_cannot_serve_are_refused_by_name() {
        let mut a = AzureStorage {
            accountname: "acct".into(),
            container: "c".into(),
            accountkey: "a2V5".into(),
            ..Default::default()
        };
        assert!(build(&a, false, None).is_ok());
        a.credentials.kind = "client_secret".into();
        let e = build(&a, false, None).unwrap_err().to_string();
        assert!(e.contains("credentials.type") && e.contains("client_secret"), "{e}");
        a.credentials.kind = String::new();
        a.container = String::new();
        assert!(build(&a, false, None).unwrap_err().to_string().contains("storage.azure.container"));
        assert_eq!(max_retries(Some(&Value::from(-1))).unwrap(), 0);
        assert_eq!(max_retries(Some(&Value::from("3"))).unwrap(), 3);
        assert!(max_retries(Some(&Value::from("x"))).is_err());
    }
}
