//! Repository names, tags, references and digests as they arrive in request paths, and the
//! route parser that cuts a `/v2/...` path into them. Whatever parses must print back to the
//! same text (the text becomes a storage path) and must not hold `..` or a leading `/`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf::http::request;
use wharf::oci::{Digest, Reference, RepoName, Tag};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        // Paths reach the router as text; raw bytes still go through the lossy decoder.
        let _ = request::percent_decode(&String::from_utf8_lossy(data));
        return;
    };
    if let Some(name) = RepoName::parse(s) {
        assert_eq!(name.as_str(), s);
        assert!(name.as_str().len() <= wharf::oci::name::MAX_NAME_LEN);
        assert!(!name.as_str().split('/').any(|c| c == ".." || c == "." || c.is_empty()));
    }
    if let Some(tag) = Tag::parse(s) {
        assert_eq!(tag.as_str(), s);
        assert!(!tag.as_str().contains('/'));
    }
    if let Ok(d) = s.parse::<Digest>() {
        assert_eq!(d.to_string(), s);
        assert!(d.hex().bytes().all(|b| b.is_ascii_hexdigit()));
    }
    if let Ok(r) = Reference::parse(s) {
        assert_eq!(r.to_string(), s);
    }
    if let Ok(route) = request::route(s) {
        let _ = format!("{route:?}");
    }
    let _ = request::route(&format!("/v2/{s}"));
    let decoded = request::percent_decode(s);
    assert!(decoded.len() <= s.len() + 2 * s.len());
    let params = request::query(Some(s));
    let _ = request::page_size(&params);
});
