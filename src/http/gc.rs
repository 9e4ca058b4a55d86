//! `GET /v2/_wharf/gc` (status) and `POST /v2/_wharf/gc?dryrun=&deleteuntagged=` (run one now
//! and answer its report), for the delete right on every repository, the UI and the CLI.

use super::server::ControlChannel;
use super::{request, AppState, HttpResult};
use crate::registry::{GcOptions, RequestContext};
use axum::extract::Request;
use axum::http::header;
use axum::response::{IntoResponse, Response};

fn json(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

pub fn status(state: &AppState) -> Response {
    json(serde_json::to_string(&state.registry.gc_status()).unwrap_or_default())
}

/// `true`/`1` turn a flag on; absent or anything else leaves it off.
fn flag(params: &[(String, String)], key: &str) -> bool {
    matches!(request::param(params, key), Some("true" | "1"))
}

pub async fn run(state: &AppState, ctx: &RequestContext, req: Request) -> HttpResult {
    let params = request::query(req.uri().query());
    let opts = GcOptions {
        dry_run: flag(&params, "dryrun"),
        delete_untagged: flag(&params, "deleteuntagged"),
        delay: state.registry.gc_delay(),
    };
    let via = if req.extensions().get::<ControlChannel>().is_some() {
        "the control channel"
    } else {
        "the API"
    };
    drop(req);
    tracing::info!(dry_run = opts.dry_run, delete_untagged = opts.delete_untagged, actor = ctx.actor.as_deref().unwrap_or(""),
        request_id = %ctx.request_id, "garbage collection requested through {via}");
    // Its own task: a client that hangs up does not stop a run half-way (on shared storage a
    // run must withdraw what it published).
    let registry = state.registry.clone();
    let report = tokio::spawn(async move { registry.collect_garbage(opts).await })
        .await
        .map_err(|e| crate::oci::RegistryError::new(crate::oci::ErrorCode::Internal, format!("garbage collection stopped: {e}")))??;
    Ok(json(serde_json::to_string(&report).unwrap_or_default()))
}
