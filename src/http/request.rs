//! Reading what a request says: the route under `/v2/`, query parameters and headers.
//! Everything here treats its input as hostile and fails with a spec error, never a panic.

use super::error::bad;
use crate::oci::{Digest, ErrorCode, Reference, RegistryError, RepoName};
use crate::registry::ChunkRange;
use axum::http::HeaderMap;

/// Which API area a `/v2/...` path addresses. Names may contain slashes (and even the words
/// `blobs` or `manifests`), so the route is read from the right.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Base,
    Catalog,
    Tags(RepoName),
    Blob(RepoName, Digest),
    /// `None`: the collection (`/blobs/uploads/`), to start a session.
    Upload(RepoName, Option<String>),
    Manifest(RepoName, Reference),
    /// `/manifests/<x>` where `x` is neither a digest nor a valid tag. Nothing can be stored
    /// under it, so reads and deletes find nothing (404, as distribution answers); only a push
    /// must refuse the name.
    ManifestNotATag(RepoName, String),
    Referrers(RepoName, Digest),
    /// `/v2/_wharf/usage`: every repository's usage, a page at a time.
    Usage,
    /// `/v2/<name>/_wharf/usage`: one repository's usage.
    RepoUsage(RepoName),
    /// `/v2/<name>/_wharf/repository`: the repository as a whole (DELETE removes it).
    Repository(RepoName),
    /// `/v2/_wharf/retention`: the retention report (GET: what a run would delete; POST: run).
    Retention,
    /// `/v2/_wharf/gc`: garbage collection's status (GET) and runs (POST). wharf's extension
    /// endpoints use `_`-prefixed components, which no repository name can contain.
    Gc,
    NotFound,
}

pub fn route(path: &str) -> Result<Route, RegistryError> {
    let Some(rest) = path.strip_prefix("/v2/").or_else(|| (path == "/v2").then_some("")) else {
        return Ok(Route::NotFound);
    };
    if rest.is_empty() {
        return Ok(Route::Base);
    }
    if rest == "_catalog" {
        return Ok(Route::Catalog);
    }
    // wharf's extensions: `_`-prefixed components, which no repository name can contain.
    match rest {
        "_wharf/usage" => return Ok(Route::Usage),
        "_wharf/retention" => return Ok(Route::Retention),
        "_wharf/gc" => return Ok(Route::Gc),
        _ => {}
    }
    let segs: Vec<&str> = rest.split('/').collect();
    let n = segs.len();
    let name_of = |count: usize| -> Result<RepoName, RegistryError> {
        let raw = segs[..n - count].join("/");
        RepoName::parse(&raw).ok_or_else(|| bad(ErrorCode::NameInvalid, format!("invalid repository name {:?}", truncate(&raw))))
    };
    if n >= 3 && segs[n - 3] == "blobs" && segs[n - 2] == "uploads" {
        let id = segs[n - 1];
        return Ok(Route::Upload(name_of(3)?, (!id.is_empty()).then(|| id.to_string())));
    }
    if n >= 3 && segs[n - 2] == "blobs" && segs[n - 1] == "uploads" {
        return Ok(Route::Upload(name_of(2)?, None));
    }
    if n >= 3 && segs[n - 2] == "tags" && segs[n - 1] == "list" {
        return Ok(Route::Tags(name_of(2)?));
    }
    if n >= 3 && segs[n - 2] == "_wharf" {
        match segs[n - 1] {
            "usage" => return Ok(Route::RepoUsage(name_of(2)?)),
            "repository" => return Ok(Route::Repository(name_of(2)?)),
            _ => {}
        }
    }
    if n >= 3 {
        let last = percent_decode(segs[n - 1]);
        match segs[n - 2] {
            "blobs" => return Ok(Route::Blob(name_of(2)?, parse_digest(&last)?)),
            "referrers" => return Ok(Route::Referrers(name_of(2)?, parse_digest(&last)?)),
            "manifests" => {
                let name = name_of(2)?;
                return match Reference::parse(&last) {
                    Ok(reference) => Ok(Route::Manifest(name, reference)),
                    Err(crate::oci::name::ReferenceError::Digest(d)) => Err(bad(ErrorCode::DigestInvalid, d.to_string())),
                    Err(crate::oci::name::ReferenceError::Tag(_)) => Ok(Route::ManifestNotATag(name, truncate(&last))),
                };
            }
            _ => {}
        }
    }
    Ok(Route::NotFound)
}

/// A client's string cut to a length fit for an error message.
pub fn truncate(s: &str) -> String {
    s.chars().take(300).collect()
}

pub fn parse_digest(s: &str) -> Result<Digest, RegistryError> {
    s.parse()
        .map_err(|e: crate::oci::digest::DigestError| bad(ErrorCode::DigestInvalid, e.to_string()))
}

/// Decodes `%XX` escapes (clients differ on whether they escape the `:` in digests). Invalid
/// escapes are kept literally and then fail validation.
pub fn percent_decode(s: &str) -> String {
    decode(s, false)
}

fn decode(s: &str, plus_is_space: bool) -> String {
    let hex = |c: u8| (c as char).to_digit(16).map(|v| v as u8);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(if plus_is_space && b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Query parameters, decoded, in order.
pub fn query(q: Option<&str>) -> Vec<(String, String)> {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k, true), decode(v, true))
        })
        .collect()
}

pub fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// The `n` of list endpoints: a non-negative integer.
pub fn page_size(params: &[(String, String)]) -> Result<Option<usize>, RegistryError> {
    match param(params, "n") {
        None | Some("") => Ok(None),
        Some(v) => v.parse::<u64>().map(|n| Some(n.min(usize::MAX as u64) as usize)).map_err(|_| {
            bad(
                ErrorCode::SizeInvalid,
                format!("n must be a non-negative integer, not {:?}", truncate(v)),
            )
        }),
    }
}

pub fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

pub fn content_length(headers: &HeaderMap) -> Result<Option<u64>, RegistryError> {
    match headers.get("content-length") {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .map(Some)
            .ok_or_else(|| bad(ErrorCode::SizeInvalid, "Content-Length is not a number")),
    }
}

/// `Content-Range` of an upload chunk: `<start>-<end>` as the spec writes it, also accepting
/// the RFC form `bytes <start>-<end>/<total>`.
pub fn content_range(headers: &HeaderMap) -> Result<Option<ChunkRange>, RegistryError> {
    let Some(v) = headers.get("content-range") else { return Ok(None) };
    let invalid = || bad(ErrorCode::RangeInvalid, "Content-Range must be <start>-<end>");
    let s = v.to_str().map_err(|_| invalid())?.trim();
    let s = s.strip_prefix("bytes ").unwrap_or(s);
    let s = s.split('/').next().unwrap_or("");
    let (a, b) = s.split_once('-').ok_or_else(invalid)?;
    let start: u64 = a.trim().parse().map_err(|_| invalid())?;
    let end: u64 = b.trim().parse().map_err(|_| invalid())?;
    // A chunk's length is end - start + 1: an end of u64::MAX would overflow it, and no
    // body is that long.
    if end == u64::MAX {
        return Err(invalid());
    }
    Ok(Some(ChunkRange { start, end }))
}

/// `Range: bytes=a-b` (also `a-` and `-suffix`) for a blob of `size` bytes. Several ranges or a
/// unit other than bytes: the header is ignored and the whole blob is sent, as HTTP allows.
pub fn byte_range(header: Option<&str>, size: u64) -> Result<Option<(u64, u64)>, RegistryError> {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let unsatisfiable = || {
        bad(
            ErrorCode::RangeInvalid,
            format!("range {spec:?} cannot be satisfied for a blob of {size} bytes"),
        )
    };
    let (a, b) = spec.split_once('-').ok_or_else(unsatisfiable)?;
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        let suffix: u64 = b.parse().map_err(|_| unsatisfiable())?;
        if suffix == 0 || size == 0 {
            return Err(unsatisfiable());
        }
        (size.saturating_sub(suffix), size - 1)
    } else {
        let start: u64 = a.parse().map_err(|_| unsatisfiable())?;
        let end: u64 = if b.is_empty() {
            size.saturating_sub(1)
        } else {
            b.parse().map_err(|_| unsatisfiable())?
        };
        if start >= size || end < start {
            return Err(unsatisfiable());
        }
        (start, end.min(size - 1))
    };
    Ok(Some(range))
}

/// Why a bounded request body could not be read.
pub enum BodyError {
    TooLarge,
    Incomplete(String),
}

/// A request body over a client may send at most `limit` bytes of. Past the limit the rest is
/// read and dropped (up to `DISCARD_LIMIT`) before the caller answers 413: a client still
/// writing would otherwise see a reset connection ("broken pipe") instead of the error.
pub async fn read_bounded_body(body: axum::body::Body, limit: usize) -> Result<bytes::Bytes, BodyError> {
    use futures::StreamExt;
    const DISCARD_LIMIT: usize = 64 * 1024 * 1024;
    let mut stream = body.into_data_stream();
    let mut buf = bytes::BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| BodyError::Incomplete(e.to_string()))?;
        if buf.len() + chunk.len() > limit {
            let mut seen = buf.len() + chunk.len();
            while seen <= DISCARD_LIMIT {
                match stream.next().await {
                    Some(Ok(more)) => seen += more.len(),
                    _ => break,
                }
            }
            return Err(BodyError::TooLarge);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_read_from_the_right() {
        let d = Digest::sha256_of(b"x");
        assert_eq!(route("/v2/").unwrap(), Route::Base);
        assert_eq!(route("/v2/_catalog").unwrap(), Route::Catalog);
        let name = RepoName::parse("a/blobs/b").unwrap();
        assert_eq!(
            route(&format!("/v2/a/blobs/b/blobs/{d}")).unwrap(),
            Route::Blob(name.clone(), d.clone())
        );
        assert_eq!(route("/v2/a/blobs/b/blobs/uploads/").unwrap(), Route::Upload(name.clone(), None));
        assert_eq!(
            route("/v2/a/blobs/b/blobs/uploads/abc-1").unwrap(),
            Route::Upload(name.clone(), Some("abc-1".into()))
        );
        assert_eq!(route("/v2/a/blobs/b/tags/list").unwrap(), Route::Tags(name.clone()));
        let escaped = d.to_string().replace(':', "%3A");
        assert_eq!(
            route(&format!("/v2/a/blobs/b/manifests/{escaped}")).unwrap(),
            Route::Manifest(name, Reference::Digest(d))
        );
        assert_eq!(route("/other").unwrap(), Route::NotFound);
        let app = RepoName::parse("app").unwrap();
        assert_eq!(route("/v2/app/manifests/-x").unwrap(), Route::ManifestNotATag(app, "-x".into()));
        assert_eq!(route("/v2/app/manifests/sha256:zz").unwrap_err().code, ErrorCode::DigestInvalid);
    }

    #[test]
    fn hostile_names_are_refused() {
        for p in [
            "/v2/../etc/manifests/x",
            "/v2/%2e%2e/manifests/x",
            "/v2/UP/manifests/x",
            "/v2//a/manifests/x",
        ] {
            let err = route(p).unwrap_err();
            assert_eq!(err.code, ErrorCode::NameInvalid, "{p}");
        }
        assert_eq!(route("/v2/a/blobs/md5:abc").unwrap_err().code, ErrorCode::DigestInvalid);
    }

    #[test]
    fn byte_ranges() {
        assert_eq!(byte_range(Some("bytes=0-9"), 100).unwrap(), Some((0, 9)));
        assert_eq!(byte_range(Some("bytes=90-"), 100).unwrap(), Some((90, 99)));
        assert_eq!(byte_range(Some("bytes=-10"), 100).unwrap(), Some((90, 99)));
        assert_eq!(byte_range(Some("bytes=50-500"), 100).unwrap(), Some((50, 99)));
        assert!(byte_range(Some("bytes=100-"), 100).is_err());
        assert!(byte_range(Some("bytes=5-1"), 100).is_err());
        assert_eq!(byte_range(Some("bytes=0-1,5-6"), 100).unwrap(), None);
        assert_eq!(byte_range(None, 100).unwrap(), None);
    }

    #[test]
    fn chunk_ranges_whose_length_overflows_are_refused() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("content-range", v.parse().unwrap());
            content_range(&h)
        };
        assert_eq!(with("0-18446744073709551615").unwrap_err().code, ErrorCode::RangeInvalid);
        assert_eq!(
            with("18446744073709551615-18446744073709551615").unwrap_err().code,
            ErrorCode::RangeInvalid
        );
        let r = with("bytes 5-18446744073709551614/*").unwrap().unwrap();
        assert_eq!((r.start, r.end), (5, u64::MAX - 1));
    }

    #[test]
    fn percent_decoding_is_total() {
        assert_eq!(percent_decode("sha256%3Aab"), "sha256:ab");
        assert_eq!(percent_decode("%zz%"), "%zz%");
        assert_eq!(percent_decode("%4"), "%4");
    }
}
