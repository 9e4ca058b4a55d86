//! htpasswd files: every line, every hash kind. Parsing must never panic, and the users it
//! finds are exactly those of well-formed `user:hash` lines.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf::auth::htpasswd::{self, HashKind, Line};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for line in text.lines() {
        if let Line::Entry { user, hash } = htpasswd::parse_line(line) {
            assert!(!user.contains(':'));
            if let HashKind::Bcrypt { cost } = HashKind::of(hash) {
                assert!((4..=31).contains(&cost));
            }
        }
    }
    if let Ok(users) = htpasswd::parse_users(&text) {
        for user in users {
            assert!(!user.is_empty() && !user.contains(':'));
        }
    }
});
