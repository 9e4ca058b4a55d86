//! `Authorization` headers and token-request scopes. Parsed Basic credentials never carry a
//! user name with `:` or a control character.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf::auth::token::Scope;
use wharf::auth::{parse_authorization, Credentials};

fuzz_target!(|data: &[u8]| {
    match parse_authorization(Some(data)) {
        Ok(Credentials::Basic { user, .. }) => {
            assert!(!user.contains(':') && !user.chars().any(char::is_control));
        }
        Ok(Credentials::Bearer(token)) => assert!(!token.is_empty()),
        Ok(Credentials::None) => panic!("a present header is never None"),
        Err(e) => {
            let _ = e.to_string();
        }
    }
    let text = String::from_utf8_lossy(data);
    for scope in Scope::parse_all(text.split('&')) {
        if let Scope::Repository { name, .. } = scope {
            assert!(wharf::oci::RepoName::parse(&name).is_some());
        }
    }
});
