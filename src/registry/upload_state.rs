//! registry:2's signed upload state: with `http.secret` set, every upload `Location` carries a
//! `_state` query parameter, the session's name, id, offset and start time signed with an HMAC
//! of the secret, and a request naming a session must bring a state that verifies. Replicas
//! sharing the secret (and the storage) can then take over each other's sessions, and a client
//! cannot forge or replay one from another session.
//!
//! The token is registry:2's own (registry/handlers/hmac.go): URL-safe base64, with padding, of
//! the 32-byte HMAC-SHA256 followed by the JSON it signs, `{"Name","UUID","Offset","StartedAt"}`.
//! A session started by one server is continued by the other when both share the secret.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::time::SystemTime;

/// The signed part of a session's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadState {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "UUID")]
    pub uuid: String,
    #[serde(rename = "Offset")]
    pub offset: u64,
    /// Go's `time.Time` in JSON: RFC 3339 with nanoseconds.
    #[serde(rename = "StartedAt")]
    pub started_at: String,
}

/// Signs and verifies states with `http.secret`.
pub struct UploadStateKey {
    key: ring::hmac::Key,
}

impl std::fmt::Debug for UploadStateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UploadStateKey(..)")
    }
}

const MAC_LEN: usize = 32;

impl UploadStateKey {
    /// None when no secret is configured: Locations then carry no state and none is required.
    pub fn from_secret(secret: &str) -> Option<UploadStateKey> {
        (!secret.is_empty()).then(|| UploadStateKey {
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes()),
        })
    }

    pub fn pack(&self, state: &UploadState) -> String {
        let message = serde_json::to_vec(state).unwrap_or_default();
        let mac = ring::hmac::sign(&self.key, &message);
        let mut token = mac.as_ref().to_vec();
        token.extend_from_slice(&message);
        base64::engine::general_purpose::URL_SAFE.encode(token)
    }

    /// The state a token carries, if it was signed with this secret. Why not is only for logs:
    /// the client is told the state is invalid, nothing more.
    pub fn unpack(&self, token: &str) -> Result<UploadState, &'static str> {
        let bytes = base64::engine::general_purpose::URL_SAFE.decode(token).map_err(|_| "not base64")?;
        if bytes.len() < MAC_LEN {
            return Err("too short");
        }
        let (mac, message) = bytes.split_at(MAC_LEN);
        ring::hmac::verify(&self.key, message, mac).map_err(|_| "signature does not verify")?;
        serde_json::from_slice(message).map_err(|_| "signed content is not an upload state")
    }
}

/// A start time as Go marshals a `time.Time` (RFC 3339, nanoseconds when there are any).
pub fn go_time(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> UploadState {
        UploadState {
            name: "a/b".into(),
            uuid: "0f4c2e8a-1b2c-4d5e-8f90-123456789abc".into(),
            offset: 42,
            started_at: "2026-12-02T05:18:00.123456789Z".into(),
        }
    }

    #[test]
    fn round_trips_and_refuses_tampering_or_another_secret() {
        let key = UploadStateKey::from_secret("s3cr3t").unwrap();
        let token = key.pack(&state());
        assert_eq!(key.unpack(&token).unwrap(), state());

        let mut bytes = base64::engine::general_purpose::URL_SAFE.decode(&token).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 1; // a digit of the offset
        let tampered = base64::engine::general_purpose::URL_SAFE.encode(bytes);
        assert!(key.unpack(&tampered).is_err());
        assert!(UploadStateKey::from_secret("other").unwrap().unpack(&token).is_err());
        assert!(key.unpack("").is_err());
        assert!(key.unpack("!!").is_err());
        assert!(UploadStateKey::from_secret("").is_none());
    }

    /// registry:2's layout of the token: the HMAC over exactly the JSON that follows it, the
    /// JSON with Go's field names in declaration order.
    #[test]
    fn the_token_is_registry2s() {
        let key = UploadStateKey::from_secret("s3cr3t").unwrap();
        let bytes = base64::engine::general_purpose::URL_SAFE.decode(key.pack(&state())).unwrap();
        let (mac, json) = bytes.split_at(MAC_LEN);
        assert_eq!(
            std::str::from_utf8(json).unwrap(),
            r#"{"Name":"a/b","UUID":"0f4c2e8a-1b2c-4d5e-8f90-123456789abc","Offset":42,"StartedAt":"2026-12-02T05:18:00.123456789Z"}"#
        );
        let expected = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"s3cr3t"), json);
        assert_eq!(mac, expected.as_ref());
    }
}
