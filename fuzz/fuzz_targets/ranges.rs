//! `Content-Range` of upload chunks, `Content-Length`, and `Range` of blob reads. A satisfiable
//! range always lies inside the blob.
#![no_main]

use axum::http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use wharf::http::request;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let (size, value) = data.split_at(8);
    let size = u64::from_le_bytes(size.try_into().unwrap_or_default());
    let Ok(header) = HeaderValue::from_bytes(value) else { return };
    let mut headers = HeaderMap::new();
    headers.insert("content-range", header.clone());
    headers.insert("content-length", header.clone());
    if let Ok(Some(r)) = request::content_range(&headers) {
        let _ = (r.start, r.end);
    }
    let _ = request::content_length(&headers);
    if let Ok(text) = header.to_str() {
        for size in [size, size % 4096, 0, 1] {
            if let Ok(Some((start, end))) = request::byte_range(Some(text), size) {
                assert!(start <= end, "{text:?} on {size}: {start}-{end}");
                assert!(end < size, "{text:?} on {size}: {start}-{end}");
            }
        }
    }
});
