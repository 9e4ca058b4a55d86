//! `GET`/`HEAD`/`PUT`/`DELETE /v2/<name>/manifests/<reference>`.

use super::{request, AppState, HttpResult};
use crate::oci::manifest::MAX_MANIFEST_SIZE;
use crate::oci::{ErrorCode, Reference, RegistryError, RepoName};
use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

pub async fn get(state: &AppState, name: &RepoName, reference: &Reference, _req: Request) -> HttpResult {
    let m = state.registry.manifest_get(name, reference).await?;
    // Served as stored, whatever the Accept header lists: every current client accepts the
    // OCI and Docker v2 types, and rewriting manifests would change their digests.
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, m.media_type.as_str())
        .header(header::CONTENT_LENGTH, m.bytes.len())
        .header(header::ETAG, format!("\"{}\"", m.digest))
        .header("docker-content-digest", m.digest.to_string())
        .body(axum::body::Body::from(m.bytes.clone()))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()))
}

pub async fn put(state: &AppState, name: &RepoName, reference: &Reference, req: Request) -> HttpResult {
    let headers = req.headers().clone();
    let too_large = || RegistryError::new(ErrorCode::TooLarge, format!("manifest exceeds the {MAX_MANIFEST_SIZE}-byte limit"));
    let bytes = request::read_bounded_body(req.into_body(), MAX_MANIFEST_SIZE)
        .await
        .map_err(|e| match e {
            request::BodyError::TooLarge => too_large(),
            request::BodyError::Incomplete(e) => RegistryError::new(
                ErrorCode::ManifestInvalid,
                format!("manifest body was not received completely: {e}"),
            ),
        })?;
    // A Content-Type that is not text cannot be compared with the manifest's mediaType.
    if headers.get("content-type").is_some_and(|v| v.to_str().is_err()) {
        return Err(RegistryError::new(ErrorCode::ManifestInvalid, "Content-Type is not valid text"));
    }
    let content_type = request::header_str(&headers, "content-type");
    let put = state.registry.manifest_put(name, reference, content_type, bytes).await?;
    let location = state.urls.location(&headers, &format!("/v2/{name}/manifests/{}", put.digest));
    let mut resp = Response::builder()
        .status(StatusCode::CREATED)
        .header(header::LOCATION, location)
        .header(header::CONTENT_LENGTH, 0)
        .header("docker-content-digest", put.digest.to_string());
    if let Some(subject) = put.subject {
        resp = resp.header("oci-subject", subject.to_string());
    }
    Ok(resp
        .body(axum::body::Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()))
}

pub async fn delete(state: &AppState, name: &RepoName, reference: &Reference) -> HttpResult {
    state.registry.manifest_delete(name, reference).await?;
    Ok((StatusCode::ACCEPTED, [(header::CONTENT_LENGTH, "0")]).into_response())
}
