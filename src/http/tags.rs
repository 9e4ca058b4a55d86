//! `GET /v2/<name>/tags/list` with `n` / `last` pagination.

use super::{catalog::paged_response, request, AppState, HttpResult};
use crate::oci::RepoName;
use axum::extract::Request;

pub async fn get(state: &AppState, name: &RepoName, req: Request) -> HttpResult {
    let params = request::query(req.uri().query());
    let n = request::page_size(&params)?;
    let page = state.registry.tags_list(name, request::param(&params, "last"), n).await?;
    let body = serde_json::json!({ "name": name.as_str(), "tags": page.items });
    Ok(paged_response(&format!("/v2/{name}/tags/list"), n, page.next_last, body))
}
