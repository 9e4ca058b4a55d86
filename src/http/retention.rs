//! `DELETE /v2/<name>/_wharf/repository` (a whole repository), `GET /v2/_wharf/retention`
//! (what retention would delete: always a dry run, listing only repositories the caller may
//! pull) and `POST /v2/_wharf/retention[?dryrun=true]` (a run, for whoever may delete
//! everywhere).

use super::{auth::Caller, request, AppState, HttpResult};
use crate::oci::RepoName;
use crate::registry::RequestContext;
use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;

pub async fn delete_repository(state: &AppState, ctx: &RequestContext, name: &RepoName) -> HttpResult {
    state.registry.repository_delete(ctx, name).await?;
    Ok((StatusCode::ACCEPTED, [(header::CONTENT_LENGTH, "0")]).into_response())
}

pub async fn report(state: &AppState, caller: &Caller, req: Request) -> HttpResult {
    let params = request::query(req.uri().query());
    let run = *req.method() == axum::http::Method::POST;
    let dry_run = !run || request::param(&params, "dryrun").is_some_and(|v| v == "true" || v == "1");
    let mut report = state.registry.apply_retention(dry_run).await?;
    if !run {
        report.tags.retain(|t| state.may_pull(caller, &t.repository));
        report.manifests.retain(|m| state.may_pull(caller, &m.repository));
    }
    let body =
        serde_json::to_string(&report).map_err(|e| crate::oci::RegistryError::new(crate::oci::ErrorCode::Internal, e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}
