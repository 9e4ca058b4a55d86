//! `GET /v2/`: the API version check clients make first.

use axum::http::header;
use axum::response::{IntoResponse, Response};

pub fn get() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], "{}").into_response()
}
