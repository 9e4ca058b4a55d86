//! `GET`/`HEAD`/`PUT`/`DELETE /v2/<name>/manifests/<reference>`.

use super::{request, AppState, HttpResult};
use crate::oci::manifest::MAX_MANIFEST_SIZE;
use crate::oci::name::ReferenceError;
use crate::oci::{Digest, ErrorCode, Reference, RegistryError, RepoName, Tag};
use crate::registry::RequestContext;
use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

pub async fn get(state: &AppState, ctx: &RequestContext, name: &RepoName, reference: &Reference, _req: Request) -> HttpResult {
    let m = state.registry.manifest_get(ctx, name, reference).await?;
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

pub async fn put(state: &AppState, ctx: &RequestContext, name: &RepoName, reference: &Reference, req: Request) -> HttpResult {
    let headers = req.headers().clone();
    let target = push_target(reference, &request::query(req.uri().query()))?;
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
    let put = state
        .registry
        .manifest_put(ctx, name, target.expected.as_ref(), &target.tags, content_type, bytes)
        .await?;
    let location = state.urls.location(&headers, &format!("/v2/{name}/manifests/{}", put.digest));
    let mut resp = Response::builder()
        .status(StatusCode::CREATED)
        .header(header::LOCATION, location)
        .header(header::CONTENT_LENGTH, 0)
        .header("docker-content-digest", put.digest.to_string());
    if let Some(subject) = put.subject {
        resp = resp.header("oci-subject", subject.to_string());
    }
    // One header per tag: RFC 9110 reads repeated fields as one comma-separated list.
    for tag in &target.tags {
        resp = resp.header("oci-tag", tag.as_str());
    }
    Ok(resp
        .body(axum::body::Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()))
}

/// Most tags one push may set. The spec asks for at least 10 and lets a registry answer 414
/// past its limit; each tag costs two durable link writes, so the bound keeps one request's
/// work small.
const MAX_TAGS_PER_PUSH: usize = 100;

/// What a push asks for besides its body: the digest the manifest must have, if the client
/// named one, and the tags to point at it.
struct PushTarget {
    expected: Option<Digest>,
    tags: Vec<Tag>,
}

/// Reads the push's reference and its query parameters: `tag` (the spec's main branch: tags
/// set by a push by digest; on a push by tag they add to the path's tag) and `digest`, with
/// which a push by tag chooses the manifest's digest and so its algorithm (regclient sends it
/// for sha512 manifests to registries without `tag` parameters). Everything is checked before
/// the body is read, so a refused push changes nothing.
fn push_target(reference: &Reference, params: &[(String, String)]) -> Result<PushTarget, RegistryError> {
    let mut tags = Vec::new();
    if let Reference::Tag(tag) = reference {
        tags.push(tag.clone());
    }
    for (_, value) in params.iter().filter(|(key, _)| key == "tag") {
        let tag = Tag::parse(value).ok_or_else(|| not_a_tag_refused(&request::truncate(value)))?;
        if tags.contains(&tag) {
            continue;
        }
        if tags.len() == MAX_TAGS_PER_PUSH {
            return Err(RegistryError::new(
                ErrorCode::TooManyTags,
                format!("a push sets at most {MAX_TAGS_PER_PUSH} tags; push the rest in another request"),
            ));
        }
        tags.push(tag);
    }
    let named = request::param(params, "digest").map(request::parse_digest).transpose()?;
    let expected = match (reference, named) {
        (Reference::Digest(path), Some(named)) if named != *path => {
            return Err(RegistryError::new(
                ErrorCode::DigestInvalid,
                format!("the digest parameter {named} differs from the digest {path} in the path"),
            ))
        }
        (Reference::Digest(path), _) => Some(path.clone()),
        (Reference::Tag(_), named) => named,
    };
    Ok(PushTarget { expected, tags })
}

/// A read or delete under a name no tag can have: nothing is stored there.
pub fn not_a_tag_unknown(name: &str) -> RegistryError {
    RegistryError::new(
        ErrorCode::ManifestUnknown,
        format!("manifest {name:?} is not in this repository: it is not a valid tag"),
    )
}

/// A push under a name no tag can have, in the path or a `tag` parameter.
pub fn not_a_tag_refused(name: &str) -> RegistryError {
    RegistryError::new(ErrorCode::ManifestInvalid, ReferenceError::Tag(name.to_string()).to_string())
}

pub async fn delete(state: &AppState, ctx: &RequestContext, name: &RepoName, reference: &Reference) -> HttpResult {
    state.registry.manifest_delete(ctx, name, reference).await?;
    Ok((StatusCode::ACCEPTED, [(header::CONTENT_LENGTH, "0")]).into_response())
}
