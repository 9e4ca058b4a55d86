//! The stylesheet and script, compiled into the binary: nothing to build or fetch at install time.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

const STYLE: &str = include_str!("assets/style.css");
const SCRIPT: &str = include_str!("assets/ui.js");

pub fn serve(name: &str) -> Response {
    let (body, kind) = match name {
        "style.css" => (STYLE, "text/css; charset=utf-8"),
        "ui.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such asset").into_response(),
    };
    // They change with the binary only: an hour of caching, revalidated after a restart at worst.
    (
        [(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "public, max-age=3600")],
        body,
    )
        .into_response()
}
