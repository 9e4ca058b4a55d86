//! `GET /v2/_wharf/usage` (a page of repositories, `n` / `last` and a `Link` header as the
//! catalog) and `GET /v2/<name>/_wharf/usage` (one repository).

use super::{auth::Caller, catalog::paged_response, request, AppState, HttpResult};
use crate::oci::{ErrorCode, RegistryError, RepoName};
use crate::registry::usage::{usage_json, USAGE_DEFAULT_PAGE};
use axum::extract::Request;
use axum::http::header;
use axum::response::IntoResponse;

/// Only repositories the caller may pull from are listed.
pub async fn page(state: &AppState, caller: &Caller, req: Request) -> HttpResult {
    let params = request::query(req.uri().query());
    let n = request::page_size(&params)?.unwrap_or(USAGE_DEFAULT_PAGE);
    let last = request::param(&params, "last");
    // One more than asked for tells whether another page follows.
    let mut repos = state
        .registry
        .usage_page(last, n.saturating_add(1), |repo| state.may_pull(caller, repo))
        .await?;
    let more = repos.len() > n;
    repos.truncate(n);
    let next_last = more.then(|| repos.last().map(|u| u.name.clone())).flatten();
    let body = serde_json::json!({ "repositories": repos.iter().map(usage_json).collect::<Vec<_>>() });
    Ok(paged_response("/v2/_wharf/usage", Some(n), next_last, body))
}

pub async fn repo(state: &AppState, name: &RepoName) -> HttpResult {
    let usage = state
        .registry
        .repo_usage(name)
        .await?
        .ok_or_else(|| RegistryError::new(ErrorCode::NameUnknown, format!("repository {name} is not known to this registry")))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], usage_json(&usage).to_string()).into_response())
}
