//! registry:2's `storage.s3` settings turned into an S3 client and the backend's knobs, with
//! registry:2's defaults (distribution's `registry/storage/driver/s3-aws`).

use super::copy::CopySettings;
use crate::config::S3Storage;
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::client::{HttpConnector, ReqwestConnector};
use object_store::{Attribute, Attributes, ClientOptions};
use serde_yaml_ng::Value;
use std::time::Duration;

/// registry:2's `minChunkSize`: S3 refuses parts smaller than this (but the last).
pub const MIN_CHUNK_SIZE: u64 = 5 << 20;
/// registry:2's `defaultChunkSize`.
pub const DEFAULT_CHUNK_SIZE: u64 = 2 * MIN_CHUNK_SIZE;
/// registry:2's `maxChunkSize`: S3's largest part (and CopyObject's largest source).
pub const MAX_CHUNK_SIZE: u64 = 5 << 30;
/// registry:2's `defaultMultipartCopyChunkSize`, `defaultMultipartCopyMaxConcurrency` and
/// `defaultMultipartCopyThresholdSize` ("empirically, 32 MB is optimal").
pub const DEFAULT_COPY_CHUNK_SIZE: u64 = 32 << 20;
pub const DEFAULT_COPY_MAX_CONCURRENCY: u64 = 100;
pub const DEFAULT_COPY_THRESHOLD: u64 = 32 << 20;
/// registry:2's storage classes (distribution's main branch lists the instant-retrieval ones;
/// 2.8 only the first three). `NONE` sends no class, for stores that have none.
const STORAGE_CLASSES: &[&str] = &[
    "NONE",
    "STANDARD",
    "REDUCED_REDUNDANCY",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "OUTPOSTS",
    "GLACIER_IR",
    "EXPRESS_ONEZONE",
];
/// How long a presigned blob URL stays valid (registry:2's RedirectURL uses 20 minutes).
pub const REDIRECT_VALID_FOR: Duration = Duration::from_secs(20 * 60);

/// What the backend needs besides the client.
#[derive(Debug, Clone)]
pub struct Tuning {
    pub rootdirectory: String,
    /// Parts are at least this large; an upload buffers at most this much (plus one network
    /// chunk) in memory per request.
    pub chunk_size: u64,
    /// Attributes of every object written with a PUT (the storage class). A blob made from a
    /// multipart upload gets the class from the copy that puts it at its key
    /// ([`CopySettings::object_headers`]); the session's own `_uploads/<id>/data` keeps the
    /// bucket's default (object_store's resumable multipart API takes no attributes, and a
    /// class with a minimum storage duration would bill the short-lived upload for it).
    pub attributes: Attributes,
    /// How a commit copies the assembled upload to the blob's key (`multipartcopy*`).
    pub copy: Option<CopySettings>,
    /// Answer blob GETs with presigned URLs (`storage.redirect.disable` unset).
    pub redirect: bool,
}

fn number(v: Option<&Value>, key: &str, default: u64) -> anyhow::Result<u64> {
    match v {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Number(n)) => n
            .as_u64()
            .ok_or_else(|| anyhow::anyhow!("storage.s3.{key} must be a positive integer")),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("storage.s3.{key} must be a positive integer, not {s:?}")),
        Some(_) => anyhow::bail!("storage.s3.{key} must be a positive integer"),
    }
}

/// `number`, refused outside `min..=max` as registry:2 refuses it.
fn number_within(v: Option<&Value>, key: &str, default: u64, min: u64, max: u64) -> anyhow::Result<u64> {
    let n = number(v, key, default)?;
    if !(min..=max).contains(&n) {
        anyhow::bail!("storage.s3.{key} must be between {min} and {max}, not {n}");
    }
    Ok(n)
}

/// `storageclass` as registry:2 reads it (any case, one of its classes); None for `NONE`.
/// Unset, wharf sends no class, which S3 reads as STANDARD (registry:2 sends STANDARD).
fn storage_class(s: &S3Storage) -> anyhow::Result<Option<String>> {
    let class = s.storageclass.trim().to_ascii_uppercase();
    if class.is_empty() || class == "NONE" {
        return Ok(None);
    }
    if !STORAGE_CLASSES.contains(&class.as_str()) {
        anyhow::bail!(
            "storage.s3.storageclass must be one of {}, not {:?}",
            STORAGE_CLASSES.join(", "),
            s.storageclass
        );
    }
    Ok(Some(class))
}

/// The endpoint URL: `regionendpoint` as given, with a scheme from `secure` when it has none.
fn endpoint(s: &S3Storage, secure: bool) -> Option<String> {
    let e = s.regionendpoint.trim();
    if e.is_empty() {
        return None;
    }
    if e.contains("://") {
        return Some(e.trim_end_matches('/').to_string());
    }
    let scheme = if secure { "https" } else { "http" };
    Some(format!("{scheme}://{}", e.trim_end_matches('/')))
}

/// The S3 client and tuning for `s`. Credentials not in the file come from the environment
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`...), as registry:2's
/// default credential chain does. With `probe`, a client for short checks (see [`connect`](super::client::connect)).
pub fn build(s: &S3Storage, redirect_disabled: bool, probe: Option<Duration>) -> anyhow::Result<(AmazonS3, Tuning)> {
    let (mut b, tuning) = builder(s, redirect_disabled, probe)?;
    if let Some(limit) = probe {
        b = b.with_retry(super::client::probe_retry(limit));
    }
    Ok((b.build().map_err(|e| anyhow::anyhow!("storage.s3: {e}"))?, tuning))
}

/// The client's builder for `s`, requests limited to `request_timeout` when given.
fn builder(s: &S3Storage, redirect_disabled: bool, request_timeout: Option<Duration>) -> anyhow::Result<(AmazonS3Builder, Tuning)> {
    if s.bucket.is_empty() {
        anyhow::bail!("storage.s3.bucket is required");
    }
    let chunk_size = number(s.chunksize.as_ref(), "chunksize", DEFAULT_CHUNK_SIZE)?;
    if chunk_size < MIN_CHUNK_SIZE {
        anyhow::bail!("storage.s3.chunksize must be at least {MIN_CHUNK_SIZE} bytes (S3's smallest part), not {chunk_size}");
    }
    let secure = s.secure.unwrap_or(true);
    let region = if s.region.is_empty() { "us-east-1" } else { s.region.as_str() };
    let mut b = AmazonS3Builder::from_env().with_bucket_name(&s.bucket).with_region(region);
    if !s.accesskey.is_empty() {
        b = b.with_access_key_id(&s.accesskey).with_secret_access_key(&s.secretkey);
    }
    if !s.sessiontoken.is_empty() {
        b = b.with_token(&s.sessiontoken);
    }
    let endpoint = endpoint(s, secure);
    let plain_http = !secure || endpoint.as_deref().is_some_and(|e| e.starts_with("http://"));
    if let Some(e) = &endpoint {
        b = b.with_endpoint(e);
    }
    // registry:2 2.8 uses path-style requests whenever a regionendpoint is set (virtual hosts
    // on AWS itself); 3.0's `forcepathstyle` says so explicitly.
    let path_style = s.forcepathstyle.unwrap_or(endpoint.is_some());
    b = b.with_virtual_hosted_style_request(!path_style);
    if s.encrypt {
        b = match s.keyid.as_str() {
            // SSE-S3, registry:2's `encrypt` without a `keyid`.
            "" => {
                let sse: AmazonS3ConfigKey = "aws_server_side_encryption".parse().map_err(|e| anyhow::anyhow!("{e}"))?;
                b.with_config(sse, "AES256")
            }
            key => b.with_sse_kms_encryption(key),
        };
    }
    // No overall request timeout: a blob GET streams for as long as the client reads. Connects
    // fail fast so that retries (object_store's backoff) reach a node that is up.
    let client = ClientOptions::new()
        .with_allow_http(plain_http)
        .with_allow_invalid_certificates(s.skipverify)
        .with_connect_timeout(Duration::from_secs(5));
    let client = match request_timeout {
        Some(limit) => client.with_timeout(limit),
        None => client.with_timeout_disabled(),
    };
    let class = storage_class(s)?;
    let mut attributes = Attributes::new();
    if let Some(class) = &class {
        attributes.insert(Attribute::StorageClass, class.clone().into());
    }
    let copy = CopySettings {
        chunk_size: number_within(
            s.multipartcopychunksize.as_ref(),
            "multipartcopychunksize",
            DEFAULT_COPY_CHUNK_SIZE,
            MIN_CHUNK_SIZE,
            MAX_CHUNK_SIZE,
        )?,
        max_concurrency: number_within(
            s.multipartcopymaxconcurrency.as_ref(),
            "multipartcopymaxconcurrency",
            DEFAULT_COPY_MAX_CONCURRENCY,
            1,
            u32::MAX as u64,
        )? as usize,
        threshold: number_within(
            s.multipartcopythresholdsize.as_ref(),
            "multipartcopythresholdsize",
            DEFAULT_COPY_THRESHOLD,
            0,
            MAX_CHUNK_SIZE,
        )?,
        // The same connection settings (skipverify, plain HTTP, timeouts) as the client's.
        http: ReqwestConnector::default()
            .connect(&client)
            .map_err(|e| anyhow::anyhow!("storage.s3: {e}"))?,
        bucket_endpoint: bucket_endpoint(&b)?,
        bucket: s.bucket.clone(),
        region: b.get_config_value(&AmazonS3ConfigKey::Region).unwrap_or_else(|| region.to_string()),
        object_headers: object_headers(class.as_deref(), s),
    };
    b = b.with_allow_http(plain_http).with_client_options(client);
    Ok((
        b,
        Tuning {
            rootdirectory: s.rootdirectory.clone(),
            chunk_size,
            attributes,
            copy: Some(copy),
            redirect: !redirect_disabled,
        },
    ))
}

/// The URL of the bucket, as object_store makes it from the same builder (an endpoint from
/// the file or the environment, path or virtual-host style), for the requests wharf signs
/// itself.
fn bucket_endpoint(b: &AmazonS3Builder) -> anyhow::Result<String> {
    let get = |k: AmazonS3ConfigKey| b.get_config_value(&k).filter(|v| !v.is_empty());
    let bucket = get(AmazonS3ConfigKey::Bucket).ok_or_else(|| anyhow::anyhow!("storage.s3.bucket is required"))?;
    let region = get(AmazonS3ConfigKey::Region).unwrap_or_else(|| "us-east-1".into());
    let virtual_hosted = get(AmazonS3ConfigKey::VirtualHostedStyleRequest).is_some_and(|v| v == "true");
    Ok(match (get(AmazonS3ConfigKey::Endpoint), virtual_hosted) {
        (Some(endpoint), true) => endpoint,
        (Some(endpoint), false) => format!("{}/{bucket}", endpoint.trim_end_matches('/')),
        (None, true) => format!("https://{bucket}.s3.{region}.amazonaws.com"),
        (None, false) => format!("https://s3.{region}.amazonaws.com/{bucket}"),
    })
}

/// The headers of the requests that make a blob at its key (CopyObject,
/// CreateMultipartUpload): the storage class and server-side encryption, as object_store
/// sends them on its own PUTs.
fn object_headers(class: Option<&str>, s: &S3Storage) -> Vec<(String, String)> {
    let mut headers = Vec::new();
    if let Some(class) = class {
        headers.push(("x-amz-storage-class".to_string(), class.to_string()));
    }
    if s.encrypt {
        match s.keyid.as_str() {
            "" => headers.push(("x-amz-server-side-encryption".to_string(), "AES256".to_string())),
            key => {
                headers.push(("x-amz-server-side-encryption".to_string(), "aws:kms".to_string()));
                headers.push(("x-amz-server-side-encryption-aws-kms-key-id".to_string(), key.to_string()));
            }
        }
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_size_accepts_numbers_and_strings_and_keeps_s3s_minimum() {
        assert_eq!(number(None, "chunksize", 7).unwrap(), 7);
        assert_eq!(number(Some(&Value::from(6291456u64)), "chunksize", 7).unwrap(), 6291456);
        assert_eq!(number(Some(&Value::from("6291456")), "chunksize", 7).unwrap(), 6291456);
        assert!(number(Some(&Value::from("6M")), "chunksize", 7).is_err());
        let small = S3Storage {
            bucket: "b".into(),
            chunksize: Some(Value::from(1024u64)),
            ..Default::default()
        };
        assert!(build(&small, false, None).unwrap_err().to_string().contains("at least"));
    }

    #[test]
    fn multipart_copy_keys_take_registry2s_defaults_and_bounds() {
        let base = S3Storage {
            bucket: "b".into(),
            regionendpoint: "http://127.0.0.1:3900".into(),
            ..Default::default()
        };
        let (_, t) = build(&base, false, None).unwrap();
        let copy = |t: Tuning| t.copy.expect("S3 copies by its own requests");
        let t = copy(t);
        assert_eq!((t.chunk_size, t.max_concurrency, t.threshold), (32 << 20, 100, 32 << 20));
        assert_eq!(t.bucket_endpoint, "http://127.0.0.1:3900/b", "path style with an endpoint");
        assert!(t.object_headers.is_empty(), "no class unless one is set");
        let set = |f: fn(&mut S3Storage)| {
            let mut s = base.clone();
            f(&mut s);
            build(&s, false, None).map(|(_, t)| copy(t))
        };
        assert!(
            set(|s| s.multipartcopychunksize = Some(Value::from(1u64 << 20))).is_err(),
            "below S3's 5 MiB part"
        );
        assert!(set(|s| s.multipartcopymaxconcurrency = Some(Value::from(0u64))).is_err());
        assert!(
            set(|s| s.multipartcopythresholdsize = Some(Value::from(6u64 << 30))).is_err(),
            "above CopyObject's 5 GiB"
        );
        assert_eq!(set(|s| s.multipartcopythresholdsize = Some(Value::from("0"))).unwrap().threshold, 0);
        let t = set(|s| s.storageclass = "reduced_redundancy".into()).unwrap();
        assert_eq!(
            t.object_headers,
            vec![("x-amz-storage-class".to_string(), "REDUCED_REDUNDANCY".to_string())]
        );
        assert!(set(|s| s.storageclass = "none".into()).unwrap().object_headers.is_empty());
        assert!(
            set(|s| s.storageclass = "GLACIER".into()).is_err(),
            "not an instant-retrieval class"
        );
    }

    #[test]
    fn an_endpoint_without_scheme_takes_it_from_secure() {
        let s = S3Storage {
            regionendpoint: "127.0.0.1:3900".into(),
            ..Default::default()
        };
        assert_eq!(endpoint(&s, false).as_deref(), Some("http://127.0.0.1:3900"));
        assert_eq!(endpoint(&s, true).as_deref(), Some("https://127.0.0.1:3900"));
    }
}
