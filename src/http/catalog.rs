//! `GET /v2/_catalog` with `n` / `last` pagination.

use super::{auth::Caller, request, AppState, HttpResult};
use crate::registry::listing::CATALOG_DEFAULT_PAGE;
use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

/// Lists only the repositories the caller may pull from.
pub async fn get(state: &AppState, caller: &Caller, req: Request) -> HttpResult {
    let params = request::query(req.uri().query());
    let n = request::page_size(&params)?;
    let page = state
        .registry
        .catalog(request::param(&params, "last"), n, |repo| state.may_pull(caller, repo))
        .await?;
    let body = serde_json::json!({ "repositories": page.items });
    Ok(paged_response(
        "/v2/_catalog",
        Some(n.unwrap_or(CATALOG_DEFAULT_PAGE)),
        page.next_last,
        body,
    ))
}

/// A JSON page, with the RFC 5988 `Link` header pointing at the next one when there is more.
pub fn paged_response(path: &str, n: Option<usize>, next_last: Option<String>, body: serde_json::Value) -> Response {
    let mut resp = ([(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response();
    if let Some(last) = next_last {
        let n = n.map(|n| format!("n={n}&")).unwrap_or_default();
        let link = format!("<{path}?{n}last={}>; rel=\"next\"", encode_query(&last));
        if let Ok(v) = HeaderValue::from_str(&link) {
            resp.headers_mut().insert(header::LINK, v);
        }
    }
    resp
}

/// Names and tags only hold `[a-zA-Z0-9._/-]`, but encode anything else to be safe.
fn encode_query(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"._-/".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
