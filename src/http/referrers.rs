//! `GET /v2/<name>/referrers/<digest>`: an OCI image index of the manifests that refer to it.

use super::{request, AppState, HttpResult};
use crate::oci::{media, Digest, RepoName};
use axum::extract::Request;
use axum::http::header;
use axum::response::IntoResponse;

pub async fn get(state: &AppState, name: &RepoName, subject: &Digest, req: Request) -> HttpResult {
    let params = request::query(req.uri().query());
    let filter = request::param(&params, "artifactType").filter(|t| !t.is_empty());
    let manifests = state.registry.referrers(name, subject, filter).await?;
    let body = serde_json::json!({ "schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": manifests });
    let mut resp = ([(header::CONTENT_TYPE, media::OCI_INDEX)], body.to_string()).into_response();
    if filter.is_some() {
        resp.headers_mut()
            .insert("oci-filters-applied", header::HeaderValue::from_static("artifactType"));
    }
    Ok(resp)
}
