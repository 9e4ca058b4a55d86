//! The `Authorization` request header: RFC 7235's `credentials = auth-scheme [ 1*SP token68 ]`,
//! with the Basic scheme of RFC 7617 and the Bearer scheme of RFC 6750.
//!
//! The header is hostile input: any byte sequence yields a value or an error, never a panic, and
//! errors say what is wrong without quoting what was sent (it may hold a password).

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use std::fmt;

/// Longer headers are refused before any decoding: real credentials are far shorter, and a
/// bound keeps a hostile header from costing memory or time.
pub const MAX_HEADER_LEN: usize = 8 * 1024;

/// Standard alphabet; padding optional (RFC 7617 requires it, but nothing is gained by refusing
/// a client that drops it).
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// What a request claims to be. `Debug` never shows a password or a token.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// No `Authorization` header.
    None,
    /// `Basic base64(user:password)`; the password may contain `:`.
    Basic { user: String, password: String },
    /// `Bearer <token68>`, for token authentication.
    Bearer(String),
}

impl Credentials {
    /// The user name the credentials claim, if any (for logs and rate limiting).
    pub fn user(&self) -> Option<&str> {
        match self {
            Credentials::Basic { user, .. } => Some(user),
            _ => None,
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::None => f.write_str("None"),
            Credentials::Basic { user, .. } => f
                .debug_struct("Basic")
                .field("user", user)
                .field("password", &"<redacted>")
                .finish(),
            Credentials::Bearer(_) => f.write_str("Bearer(<redacted>)"),
        }
    }
}

/// Why an `Authorization` header cannot be used. The messages never quote the header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    #[error("Authorization header is longer than {MAX_HEADER_LEN} bytes")]
    TooLong,
    #[error("Authorization header is empty")]
    Empty,
    #[error("Authorization header contains bytes other than visible ASCII, space and tab")]
    NotAscii,
    #[error("unsupported authorization scheme {0:?} (expected Basic or Bearer)")]
    UnsupportedScheme(String),
    #[error("{0} credentials are missing")]
    MissingCredentials(&'static str),
    #[error("{0} credentials are not a single token68 value")]
    NotToken68(&'static str),
    #[error("Basic credentials are not valid base64")]
    InvalidBase64,
    #[error("Basic credentials are not valid UTF-8")]
    NotUtf8,
    #[error("Basic credentials have no ':' between user and password")]
    MissingColon,
    #[error("Basic credentials have a control character in the user name")]
    ControlInUser,
}

/// Parses an `Authorization` header value (`None`: the header is absent).
pub fn parse_authorization(header: Option<&[u8]>) -> Result<Credentials, CredentialsError> {
    let Some(raw) = header else {
        return Ok(Credentials::None);
    };
    if raw.len() > MAX_HEADER_LEN {
        return Err(CredentialsError::TooLong);
    }
    if !raw.iter().all(|&b| b == b' ' || b == b'\t' || b.is_ascii_graphic()) {
        return Err(CredentialsError::NotAscii);
    }
    // Checked just above: every byte is ASCII.
    let text = std::str::from_utf8(raw).map_err(|_| CredentialsError::NotAscii)?;
    let text = text.trim_matches([' ', '\t']);
    if text.is_empty() {
        return Err(CredentialsError::Empty);
    }
    let (scheme, rest) = text.split_once([' ', '\t']).unwrap_or((text, ""));
    let rest = rest.trim_start_matches([' ', '\t']);
    if scheme.eq_ignore_ascii_case("basic") {
        basic(token68(rest, "Basic")?)
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Ok(Credentials::Bearer(token68(rest, "Bearer")?.to_string()))
    } else {
        Err(CredentialsError::UnsupportedScheme(scheme.chars().take(32).collect()))
    }
}

/// RFC 7235 token68: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn token68<'a>(value: &'a str, scheme: &'static str) -> Result<&'a str, CredentialsError> {
    if value.is_empty() {
        return Err(CredentialsError::MissingCredentials(scheme));
    }
    let body = value.trim_end_matches('=');
    let body_ok = !body.is_empty() && body.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b));
    if !body_ok {
        return Err(CredentialsError::NotToken68(scheme));
    }
    Ok(value)
}

fn basic(encoded: &str) -> Result<Credentials, CredentialsError> {
    let decoded = BASE64.decode(encoded).map_err(|_| CredentialsError::InvalidBase64)?;
    let decoded = String::from_utf8(decoded).map_err(|_| CredentialsError::NotUtf8)?;
    // RFC 7617: the user-id cannot contain ':', so the first one ends it.
    let (user, password) = decoded.split_once(':').ok_or(CredentialsError::MissingColon)?;
    if user.chars().any(char::is_control) {
        return Err(CredentialsError::ControlInUser);
    }
    Ok(Credentials::Basic {
        user: user.to_string(),
        password: password.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE};

    fn parse(s: &str) -> Result<Credentials, CredentialsError> {
        parse_authorization(Some(s.as_bytes()))
    }

    fn basic_header(userpass: &str) -> String {
        format!("Basic {}", STANDARD.encode(userpass))
    }

    fn creds(user: &str, password: &str) -> Credentials {
        Credentials::Basic {
            user: user.into(),
            password: password.into(),
        }
    }

    #[test]
    fn absent_header_is_anonymous() {
        assert_eq!(parse_authorization(None), Ok(Credentials::None));
    }

    #[test]
    fn basic_credentials() {
        assert_eq!(parse(&basic_header("moby:gordon")), Ok(creds("moby", "gordon")));
        // What curl -u testuser:testpassword sends.
        assert_eq!(parse("Basic dGVzdHVzZXI6dGVzdHBhc3N3b3Jk"), Ok(creds("testuser", "testpassword")));
    }

    #[test]
    fn password_may_contain_colons_and_be_empty() {
        assert_eq!(parse(&basic_header("alice:a:b::c")), Ok(creds("alice", "a:b::c")));
        assert_eq!(parse(&basic_header("alice:")), Ok(creds("alice", "")));
        assert_eq!(parse(&basic_header(":pw")), Ok(creds("", "pw")));
    }

    #[test]
    fn utf8_user_and_password() {
        assert_eq!(parse(&basic_header("jürgen:pässwörd✓")), Ok(creds("jürgen", "pässwörd✓")));
    }

    #[test]
    fn scheme_is_case_insensitive_and_whitespace_tolerated() {
        let enc = STANDARD.encode("u:p");
        for h in [
            format!("basic {enc}"),
            format!("BASIC {enc}"),
            format!("  Basic \t {enc}  "),
            format!("Basic\t{enc}"),
        ] {
            assert_eq!(parse(&h), Ok(creds("u", "p")), "{h:?}");
        }
    }

    #[test]
    fn padding_is_optional() {
        let unpadded = format!("Basic {}", STANDARD_NO_PAD.encode("user:pw"));
        assert!(!unpadded.ends_with('='));
        assert_eq!(parse(&unpadded), Ok(creds("user", "pw")));
    }

    #[test]
    fn bearer_tokens() {
        let jwt = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln-_~+/==";
        assert_eq!(parse(&format!("Bearer {jwt}")), Ok(Credentials::Bearer(jwt.into())));
        assert_eq!(parse("bearer abc"), Ok(Credentials::Bearer("abc".into())));
    }

    #[test]
    fn hostile_headers_are_errors_not_panics() {
        use CredentialsError::*;
        let cases: Vec<(Vec<u8>, CredentialsError)> = vec![
            (b"".to_vec(), Empty),
            (b"   ".to_vec(), Empty),
            (b"Basic".to_vec(), MissingCredentials("Basic")),
            (b"Basic    ".to_vec(), MissingCredentials("Basic")),
            (b"Bearer".to_vec(), MissingCredentials("Bearer")),
            (b"Basic !!!!".to_vec(), NotToken68("Basic")),
            (b"Basic ====".to_vec(), NotToken68("Basic")),
            (b"Basic abc=def".to_vec(), NotToken68("Basic")),
            (b"Basic abc def".to_vec(), NotToken68("Basic")),
            (b"Bearer a b".to_vec(), NotToken68("Bearer")),
            (b"Bearer a,b=c".to_vec(), NotToken68("Bearer")),
            (b"Basic a".to_vec(), InvalidBase64),
            (b"Basic abcde".to_vec(), InvalidBase64),
            (format!("Basic {}", URL_SAFE.encode([0xfb, 0xff, 0xfe])).into_bytes(), InvalidBase64),
            (format!("Basic {}", STANDARD.encode([0xff, 0xfe, b':', b'x'])).into_bytes(), NotUtf8),
            (format!("Basic {}", STANDARD.encode("nocolon")).into_bytes(), MissingColon),
            (format!("Basic {}", STANDARD.encode("")).into_bytes(), MissingCredentials("Basic")),
            (format!("Basic {}", STANDARD.encode("a\0b:pw")).into_bytes(), ControlInUser),
            (format!("Basic {}", STANDARD.encode("a\nb:pw")).into_bytes(), ControlInUser),
            (b"Basic dXNlcjpwdw==\r\n".to_vec(), NotAscii),
            (b"Basic dXNlcjpw\x00dw==".to_vec(), NotAscii),
            ("Basic dXNlcjpwdw==é".as_bytes().to_vec(), NotAscii),
            (vec![0xff; 10], NotAscii),
            (b"Digest username=\"x\"".to_vec(), UnsupportedScheme("Digest".into())),
            (b"Negotiate abc".to_vec(), UnsupportedScheme("Negotiate".into())),
            (b"dXNlcjpwdw==".to_vec(), UnsupportedScheme("dXNlcjpwdw==".into())),
        ];
        for (header, want) in cases {
            assert_eq!(
                parse_authorization(Some(&header)),
                Err(want),
                "{:?}",
                String::from_utf8_lossy(&header)
            );
        }
    }

    #[test]
    fn oversized_headers_are_refused_before_decoding() {
        let big = format!("Basic {}", STANDARD.encode(format!("u:{}", "x".repeat(MAX_HEADER_LEN))));
        assert_eq!(parse(&big), Err(CredentialsError::TooLong));
        let scheme = "X".repeat(1000);
        let e = parse(&scheme).unwrap_err();
        assert!(e.to_string().len() < 100, "error quotes at most a short scheme name: {e}");
    }

    #[test]
    fn every_byte_prefix_and_mutation_is_handled() {
        // A cheap exhaustive sweep: every single-byte value in every position of a valid header.
        let valid = basic_header("user:pass:word").into_bytes();
        for i in 0..valid.len() {
            for b in 0..=255u8 {
                let mut h = valid.clone();
                h[i] = b;
                let _ = parse_authorization(Some(&h));
                let _ = parse_authorization(Some(&h[..i]));
            }
        }
    }

    #[test]
    fn debug_and_errors_never_show_secrets() {
        let c = parse(&basic_header("alice:s3cr3t-pw")).unwrap();
        let shown = format!("{c:?}");
        assert!(shown.contains("alice") && !shown.contains("s3cr3t"), "{shown}");
        let t = parse("Bearer tok3n-secret").unwrap();
        assert!(!format!("{t:?}").contains("tok3n"));
        let e = parse(&format!("Basic {}", STANDARD.encode("s3cr3t"))).unwrap_err();
        assert!(!e.to_string().contains("s3cr3t") && !e.to_string().contains(&STANDARD.encode("s3cr3t")));
        assert_eq!(c.user(), Some("alice"));
        assert_eq!(t.user(), None);
    }
}
