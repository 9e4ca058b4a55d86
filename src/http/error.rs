//! The one place domain errors become HTTP responses: the spec's status codes and its JSON body
//! `{"errors":[{"code","message","detail"}]}`.

use crate::oci::{ErrorCode, RegistryError};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

fn body(code: &str, message: &str, detail: Option<&serde_json::Value>) -> String {
    let mut entry = serde_json::json!({ "code": code, "message": message });
    if let Some(d) = detail {
        entry["detail"] = d.clone();
    }
    serde_json::json!({ "errors": [entry] }).to_string()
}

pub fn json_error(status: StatusCode, code: &str, message: &str) -> Response {
    let mut resp = (status, body(code, message, None)).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

impl IntoResponse for RegistryError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, body(self.code.as_str(), &self.message, self.detail.as_ref())).into_response();
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let retry_after = match self.code {
            ErrorCode::TooManyRequests => Some(self.retry_after.unwrap_or(5)),
            _ => self.retry_after,
        };
        if let Some(secs) = retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

/// Shorthand for request errors the HTTP layer detects itself (bad headers, bad paths).
pub fn bad(code: ErrorCode, message: impl Into<String>) -> RegistryError {
    RegistryError::new(code, message)
}
