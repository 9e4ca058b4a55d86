//! `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>`.

use super::{request, AppState, HttpResult};
use crate::oci::{Digest, ErrorCode, RepoName};
use crate::registry::RequestContext;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};

pub async fn get(state: &AppState, ctx: &RequestContext, name: &RepoName, digest: &Digest, req: Request) -> HttpResult {
    let range_header = request::header_str(req.headers(), "range").map(str::to_string);
    let with_body = req.method() != Method::HEAD;
    let blob = match state
        .registry
        .blob_get(
            ctx,
            name,
            digest,
            |size| request::byte_range(range_header.as_deref(), size),
            with_body,
        )
        .await
    {
        Ok(b) => b,
        Err(e) if e.code == ErrorCode::RangeInvalid => {
            // RFC 9110: a 416 names the current length so the client can ask again.
            let size = state.registry.blob_stat(name, digest).await?;
            let mut resp = e.into_response();
            resp.headers_mut().insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{size}")).expect("ascii"),
            );
            return Ok(resp);
        }
        Err(e) => return Err(e),
    };
    if let Some(url) = &blob.redirect {
        // The bytes come from where the store said (a presigned URL); the digest still names them.
        return Ok(Response::builder()
            .status(StatusCode::TEMPORARY_REDIRECT)
            .header(header::LOCATION, url.as_str())
            .header("docker-content-digest", digest.to_string())
            .body(Body::empty())
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()));
    }
    let (status, len) = match blob.range {
        Some((a, b)) => (StatusCode::PARTIAL_CONTENT, b - a + 1),
        None => (StatusCode::OK, blob.size),
    };
    let body = blob.body.map(Body::from_stream).unwrap_or_else(Body::empty);
    let mut resp = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, len)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, format!("\"{digest}\""))
        .header(header::CACHE_CONTROL, "max-age=31536000")
        .header("docker-content-digest", digest.to_string());
    if let Some((a, b)) = blob.range {
        resp = resp.header(header::CONTENT_RANGE, format!("bytes {a}-{b}/{}", blob.size));
    }
    Ok(resp
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()))
}

pub async fn delete(state: &AppState, ctx: &RequestContext, name: &RepoName, digest: &Digest) -> HttpResult {
    state.registry.blob_delete(ctx, name, digest).await?;
    Ok((StatusCode::ACCEPTED, [(header::CONTENT_LENGTH, "0")]).into_response())
}
