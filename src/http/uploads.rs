//! Blob uploads: `POST /v2/<name>/blobs/uploads/` (session, monolithic, or mount), and
//! `GET`/`PATCH`/`PUT`/`DELETE /v2/<name>/blobs/uploads/<id>`.

use super::{auth::Caller, body_stream, request, AppState, HttpResult};
use crate::oci::digest::DigestError;
use crate::oci::{Algorithm, ErrorCode, RegistryError, RepoName};
use crate::registry::upload_state::{go_time, UploadState};
use crate::registry::{LastChunk, RequestContext, UploadStatus};
use axum::extract::Request;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

/// 202 with where to send the next chunk and how much has arrived.
fn session_response(state: &AppState, headers: &HeaderMap, name: &RepoName, status: StatusCode, s: &UploadStatus) -> Response {
    let mut location = state.urls.location(headers, &format!("/v2/{name}/blobs/uploads/{}", s.id));
    if let Some(key) = &state.upload_states {
        let token = key.pack(&UploadState {
            name: name.to_string(),
            uuid: s.id.clone(),
            offset: s.size,
            started_at: go_time(s.started),
        });
        // URL-safe base64 but for its padding, which a query value must escape.
        location = format!("{location}?_state={}", token.replace('=', "%3D"));
    }
    // registry:2 reports an empty session as 0-0; clients only read the end.
    let end = s.size.saturating_sub(1);
    (
        status,
        [
            (header::LOCATION, location),
            (header::RANGE, format!("0-{end}")),
            (header::CONTENT_LENGTH, "0".to_string()),
            (header::HeaderName::from_static("docker-upload-uuid"), s.id.clone()),
        ],
    )
        .into_response()
}

fn blob_created(state: &AppState, headers: &HeaderMap, name: &RepoName, digest: &crate::oci::Digest) -> Response {
    let location = state.urls.location(headers, &format!("/v2/{name}/blobs/{digest}"));
    (
        StatusCode::CREATED,
        [
            (header::LOCATION, location),
            (header::CONTENT_LENGTH, "0".to_string()),
            (header::HeaderName::from_static("docker-content-digest"), digest.to_string()),
        ],
    )
        .into_response()
}

pub async fn start(state: &AppState, ctx: &RequestContext, caller: &Caller, name: &RepoName, req: Request) -> HttpResult {
    let params = request::query(req.uri().query());
    let headers = req.headers().clone();
    let algorithm = session_algorithm(&params)?;
    if let Some(mount) = request::param(&params, "mount") {
        let digest = request::parse_digest(mount)?;
        let mounted = match request::param(&params, "from") {
            Some(f) => {
                let from = RepoName::parse(f)
                    .ok_or_else(|| RegistryError::new(ErrorCode::NameInvalid, format!("invalid repository name {f:?} in from")))?;
                // Mounting from a repository the caller cannot read would leak its content:
                // fall back to an ordinary upload instead, as for an absent blob.
                state.may_pull(caller, from.as_str()) && state.registry.blob_mount(ctx, name, &digest, &from).await?
            }
            None => {
                state
                    .registry
                    .blob_mount_from_any(ctx, name, &digest, |repo| state.may_pull(caller, repo))
                    .await?
            }
        };
        if mounted {
            return Ok(blob_created(state, &headers, name, &digest));
        }
    } else if let Some(d) = request::param(&params, "digest") {
        let digest = request::parse_digest(d)?;
        let length = request::content_length(&headers)?;
        state
            .registry
            .upload_monolithic(ctx, name, &digest, length, body_stream(req))
            .await?;
        return Ok(blob_created(state, &headers, name, &digest));
    }
    let status = state.registry.upload_start(name, algorithm).await?;
    Ok(session_response(state, &headers, name, StatusCode::ACCEPTED, &status))
}

/// The spec's `digest-algorithm` parameter (main branch): the algorithm the session hashes
/// with. One wharf cannot verify is refused with 400 before anything starts, as the spec asks
/// for unsupported algorithms.
fn session_algorithm(params: &[(String, String)]) -> Result<Algorithm, RegistryError> {
    match request::param(params, "digest-algorithm").filter(|a| !a.is_empty()) {
        None => Ok(Algorithm::Sha256),
        Some(name) => Algorithm::from_name(name).map_err(|_| {
            RegistryError::new(
                ErrorCode::DigestInvalid,
                DigestError::Unsupported(request::truncate(name)).to_string(),
            )
        }),
    }
}

/// With `http.secret`, a request naming a session must bring the `_state` its last Location
/// carried, signed with the secret, for this session and its current length (registry:2's
/// checks). Anything else is BLOB_UPLOAD_INVALID; the session itself is left as it was.
async fn check_state(state: &AppState, name: &RepoName, id: &str, query: Option<&str>) -> Result<(), RegistryError> {
    let Some(key) = &state.upload_states else { return Ok(()) };
    let params = request::query(query);
    let invalid = |why: &str| {
        tracing::info!(repository = %name, upload = %id, reason = why, "refused an upload state");
        RegistryError::new(
            ErrorCode::BlobUploadInvalid,
            format!("the _state parameter of upload {id} is missing or invalid ({why}); continue from the Location of the last response"),
        )
    };
    let signed = key.unpack(request::param(&params, "_state").unwrap_or("")).map_err(invalid)?;
    if signed.name != name.as_str() || signed.uuid != id {
        return Err(invalid("it is another session's"));
    }
    let current = state.registry.upload_status(name, id).await?;
    if signed.offset != current.size {
        return Err(invalid("the session has moved on since"));
    }
    Ok(())
}

pub async fn status(state: &AppState, name: &RepoName, id: &str, req: Request) -> HttpResult {
    check_state(state, name, id, req.uri().query()).await?;
    let s = state.registry.upload_status(name, id).await?;
    Ok(session_response(state, req.headers(), name, StatusCode::NO_CONTENT, &s))
}

pub async fn patch(state: &AppState, name: &RepoName, id: &str, req: Request) -> HttpResult {
    check_state(state, name, id, req.uri().query()).await?;
    let headers = req.headers().clone();
    let range = request::content_range(&headers)?;
    let length = request::content_length(&headers)?;
    let s = state.registry.upload_patch(name, id, range, length, body_stream(req)).await?;
    Ok(session_response(state, &headers, name, StatusCode::ACCEPTED, &s))
}

pub async fn put(state: &AppState, ctx: &RequestContext, name: &RepoName, id: &str, req: Request) -> HttpResult {
    check_state(state, name, id, req.uri().query()).await?;
    let headers = req.headers().clone();
    let params = request::query(req.uri().query());
    let digest = request::param(&params, "digest")
        .ok_or_else(|| {
            RegistryError::new(
                ErrorCode::DigestInvalid,
                "the digest query parameter is required to complete an upload",
            )
        })
        .and_then(request::parse_digest)?;
    let range = request::content_range(&headers)?;
    let length = request::content_length(&headers)?;
    // A final PUT may carry the last chunk; an empty body just closes the session.
    let has_body = length.is_some_and(|l| l > 0) || (length.is_none() && headers.contains_key(header::TRANSFER_ENCODING));
    let last = has_body.then(|| LastChunk {
        range,
        content_length: length,
        body: body_stream(req),
    });
    state.registry.upload_finish(ctx, name, id, &digest, last).await?;
    Ok(blob_created(state, &headers, name, &digest))
}

pub async fn cancel(state: &AppState, name: &RepoName, id: &str, req: Request) -> HttpResult {
    check_state(state, name, id, req.uri().query()).await?;
    state.registry.upload_cancel(name, id).await?;
    Ok((StatusCode::NO_CONTENT, [(header::CONTENT_LENGTH, "0")]).into_response())
}
