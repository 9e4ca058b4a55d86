//! The copy that puts an assembled upload at its blob's key, as registry:2's `Move` does on S3
//! (distribution's `s3-aws` driver, `copy`): up to `multipartcopythresholdsize` one CopyObject,
//! above it a multipart upload at the blob's key filled by UploadPartCopy of
//! `multipartcopychunksize` ranges, at most `multipartcopymaxconcurrency` at once. S3's
//! CopyObject takes sources of at most 5 GiB, so only the multipart copy commits larger layers.
//!
//! object_store 0.12 has neither UploadPartCopy nor a way to give CopyObject or
//! CreateMultipartUpload a storage class, so these requests are sent here, signed with the
//! client's own credential provider (the file's keys or the environment's, refreshed as
//! object_store refreshes them) by object_store's SigV4 signer, over an HTTP client made from
//! the same client options (skipverify, plain HTTP, timeouts). Completion goes through
//! object_store.
//!
//! A blob key holds complete bytes or nothing: a multipart upload is no object until it is
//! completed, which S3 does atomically, and a failed copy aborts it.

use super::{store_error, ObjectBackend};
use crate::store::{StoreError, StoreErrorKind, StoreResult};
use axum::http::{HeaderName, HeaderValue, Method, Request};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::AwsAuthorizer;
use object_store::client::{HttpClient, HttpRequestBody};
use object_store::multipart::PartId;
use object_store::path::Path as Key;
use std::time::Duration;

/// S3 accepts at most this many parts in one multipart upload.
const MAX_PARTS: u64 = 10_000;
/// Attempts of one request (the first and its retries) when the store does not answer or
/// answers 5xx/429, waiting [`FIRST_BACKOFF`] doubled each time: about 6 s in all. Fewer than
/// object_store's, so a commit against a store that is down fails in seconds with its session
/// intact, and the client's retry of the commit starts the copy anew.
const ATTEMPTS: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(200);

/// `multipartcopy*` and what wharf's own requests to the bucket need.
#[derive(Debug, Clone)]
pub struct CopySettings {
    pub chunk_size: u64,
    pub max_concurrency: usize,
    /// Sources up to this size are copied with one CopyObject.
    pub threshold: u64,
    pub http: HttpClient,
    /// The bucket's URL, keys are appended to it.
    pub bucket_endpoint: String,
    pub bucket: String,
    pub region: String,
    /// Sent on the requests that make an object (storage class, server-side encryption).
    pub object_headers: Vec<(String, String)>,
}

/// A key as object_store encodes it in a URL: every byte but the unreserved ones and `/`.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The text of the first `<name>` element of an S3 XML answer, unescaped.
fn xml_text(body: &str, name: &str) -> Option<String> {
    let start = body.find(&format!("<{name}>"))? + name.len() + 2;
    let len = body[start..].find(&format!("</{name}>"))?;
    Some(
        body[start..start + len]
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

/// The byte ranges (first, last) of the parts a copy of `size` bytes is made of: `chunk`
/// each, made larger when S3's 10,000 parts would not cover the object.
fn part_ranges(size: u64, chunk: u64) -> Vec<(u64, u64)> {
    let chunk = chunk.max(size.div_ceil(MAX_PARTS)).max(1);
    (0..size.div_ceil(chunk))
        .map(|i| (i * chunk, ((i + 1) * chunk).min(size) - 1))
        .collect()
}

/// What went wrong with one of wharf's own requests; `retry` when another attempt may succeed.
struct Failure {
    error: StoreError,
    retry: bool,
}

/// An S3 error answer (also the one S3 may send with 200 to a copy) as a port error.
fn s3_error(status: u16, body: &str, what: &str) -> Failure {
    let code = xml_text(body, "Code").unwrap_or_default();
    let message = xml_text(body, "Message").unwrap_or_default();
    let kind = match (status, code.as_str()) {
        (_, "NoSuchKey" | "NoSuchUpload") | (404, _) => StoreErrorKind::NotFound,
        _ => StoreErrorKind::Backend,
    };
    let retry = status >= 500 || status == 429 || matches!(code.as_str(), "InternalError" | "SlowDown" | "ServiceUnavailable");
    Failure {
        error: StoreError::new(kind, format!("{what}: status {status} {code} {message}").trim().to_string()),
        retry,
    }
}

impl ObjectBackend {
    /// S3's copy settings; None on a store whose copies object_store makes itself (Azure).
    fn copy_settings(&self) -> Option<&CopySettings> {
        self.tuning.copy.as_ref()
    }

    /// Sends one signed request about `key`, retried as [`ATTEMPTS`] says; the body of its
    /// success.
    async fn s3_request(&self, method: Method, key: &Key, query: &str, headers: &[(String, String)], what: &str) -> StoreResult<String> {
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            match self.s3_attempt(method.clone(), key, query, headers, what).await {
                Ok(body) => return Ok(body),
                Err(f) if f.retry && attempt < ATTEMPTS => {
                    tracing::debug!(error = %f.error, attempt, "retrying a request to the bucket");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                    attempt += 1;
                }
                Err(f) => return Err(f.error),
            }
        }
    }

    async fn s3_attempt(
        &self,
        method: Method,
        key: &Key,
        query: &str,
        headers: &[(String, String)],
        what: &str,
    ) -> Result<String, Failure> {
        let backend = |e: String, retry: bool| Failure {
            error: StoreError::new(StoreErrorKind::Backend, format!("{what}: {e}")),
            retry,
        };
        let (Some(c), Some(s3)) = (self.copy_settings(), self.s3.as_s3()) else {
            return Err(backend("only S3 takes this request".into(), false));
        };
        let mut url = format!("{}/{}", c.bucket_endpoint, encode(key.as_ref()));
        if !query.is_empty() {
            url = format!("{url}?{query}");
        }
        let mut request = Request::builder().method(method).uri(url.as_str());
        for (name, value) in headers {
            let (name, value) = (
                HeaderName::try_from(name.as_str()).map_err(|e| backend(e.to_string(), false))?,
                HeaderValue::try_from(value.as_str()).map_err(|e| backend(e.to_string(), false))?,
            );
            request = request.header(name, value);
        }
        let mut request = request
            .body(HttpRequestBody::from(Bytes::new()))
            .map_err(|e| backend(e.to_string(), false))?;
        let credential = s3
            .credentials()
            .get_credential()
            .await
            .map_err(|e| backend(format!("credentials: {e}"), true))?;
        AwsAuthorizer::new(&credential, "s3", &c.region).authorize(&mut request, None);
        let response = c.http.execute(request).await.map_err(|e| backend(e.to_string(), true))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .bytes()
            .await
            .map_err(|e| backend(format!("reading the answer: {e}"), true))?;
        let body = String::from_utf8_lossy(&body).into_owned();
        // A copy can fail after S3 sent 200: the error is then the body.
        if !(200..300).contains(&status) || body.contains("<Error>") {
            return Err(s3_error(status, &body, what));
        }
        Ok(body)
    }

    /// `x-amz-copy-source` for `source`.
    fn copy_source(&self, c: &CopySettings, source: &Key) -> (String, String) {
        (
            "x-amz-copy-source".to_string(),
            encode(&format!("{}/{}", c.bucket, source.as_ref())),
        )
    }

    /// Whether a source of `size` bytes is copied in parts.
    pub(super) fn copies_in_parts(&self, size: u64) -> bool {
        self.copy_settings().is_some_and(|c| size > c.threshold)
    }

    /// CopyObject of `source` to `target`, with the storage class.
    pub(super) async fn copy_whole(&self, source: &Key, target: &Key) -> StoreResult<()> {
        let Some(c) = self.copy_settings() else {
            return self.s3.copy(source, target).await.map_err(store_error);
        };
        let mut headers = vec![self.copy_source(c, source)];
        headers.extend(c.object_headers.iter().cloned());
        let body = self.s3_request(Method::PUT, target, "", &headers, "CopyObject").await?;
        match xml_text(&body, "ETag") {
            Some(_) => Ok(()),
            None => Err(StoreError::new(StoreErrorKind::Backend, "CopyObject: no ETag in the answer")),
        }
    }

    /// CreateMultipartUpload at `target`, with the storage class: the upload id.
    pub(super) async fn copy_begin(&self, target: &Key) -> StoreResult<String> {
        let headers = self.copy_settings().map_or(&[][..], |c| &c.object_headers[..]);
        let body = self
            .s3_request(Method::POST, target, "uploads", headers, "CreateMultipartUpload")
            .await?;
        xml_text(&body, "UploadId")
            .ok_or_else(|| StoreError::new(StoreErrorKind::Backend, "CreateMultipartUpload: no UploadId in the answer"))
    }

    /// Fills the multipart upload `upload` at `target` with the `size` bytes of `source`
    /// (UploadPartCopy, in parts of `multipartcopychunksize`, at most
    /// `multipartcopymaxconcurrency` at once) and completes it. On failure the parts still
    /// being copied are dropped; the caller aborts the upload.
    pub(super) async fn copy_parts(&self, source: &Key, target: &Key, upload: &str, size: u64) -> StoreResult<()> {
        let Some(c) = self.copy_settings() else {
            return Err(StoreError::new(StoreErrorKind::Backend, "a copy in parts is S3's"));
        };
        let copy_source = self.copy_source(c, source);
        let parts = part_ranges(size, c.chunk_size).into_iter().enumerate().map(|(i, (first, last))| {
            let query = format!("partNumber={}&uploadId={}", i + 1, encode(upload).replace('/', "%2F"));
            let headers = vec![
                copy_source.clone(),
                ("x-amz-copy-source-range".to_string(), format!("bytes={first}-{last}")),
            ];
            async move {
                let body = self.s3_request(Method::PUT, target, &query, &headers, "UploadPartCopy").await?;
                xml_text(&body, "ETag")
                    .map(|content_id| PartId { content_id })
                    .ok_or_else(|| StoreError::new(StoreErrorKind::Backend, "UploadPartCopy: no ETag in the answer"))
            }
        });
        // In order, as CompleteMultipartUpload lists them; the first failure ends the copy.
        let etags: Vec<PartId> = futures::stream::iter(parts).buffered(c.max_concurrency).try_collect().await?;
        self.s3
            .complete_multipart(target, &upload.to_string(), etags)
            .await
            .map(drop)
            .map_err(store_error)
    }

    /// AbortMultipartUpload of a copy; an upload already gone counts as aborted.
    pub(super) async fn copy_abort(&self, target: &Key, upload: &str) -> StoreResult<()> {
        if self.copy_settings().is_none() {
            return Ok(()); // never begun there
        }
        let query = format!("uploadId={}", encode(upload).replace('/', "%2F"));
        match self.s3_request(Method::DELETE, target, &query, &[], "AbortMultipartUpload").await {
            Err(e) if e.kind() != StoreErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_the_object_exactly_and_stay_within_s3s_count() {
        assert_eq!(part_ranges(23, 5), vec![(0, 4), (5, 9), (10, 14), (15, 19), (20, 22)]);
        assert_eq!(part_ranges(10, 5), vec![(0, 4), (5, 9)]);
        let big = part_ranges(5 << 40, 32 << 20);
        assert!(big.len() as u64 <= MAX_PARTS);
        assert_eq!(big.last().unwrap().1, (5 << 40) - 1);
        assert!(big.windows(2).all(|w| w[1].0 == w[0].1 + 1));
    }

    #[test]
    fn keys_are_encoded_as_object_store_encodes_them_and_xml_is_unescaped() {
        assert_eq!(
            encode("docker/registry/v2/blobs/sha256/ab/x_y-z.~/data"),
            "docker/registry/v2/blobs/sha256/ab/x_y-z.~/data"
        );
        assert_eq!(encode("a b+c:d"), "a%20b%2Bc%3Ad");
        let body =
            "<CopyPartResult><LastModified>x</LastModified><ETag>&quot;9b2cf535f27731c974343645a3985328&quot;</ETag></CopyPartResult>";
        assert_eq!(xml_text(body, "ETag").as_deref(), Some("\"9b2cf535f27731c974343645a3985328\""));
        assert_eq!(xml_text(body, "UploadId"), None);
    }
}
