//! Body signing: `sha256=<hex of HMAC-SHA256(key, body)>`, the form GitHub's
//! `X-Hub-Signature-256` uses, so receivers can reuse their verification code.

use ring::hmac;

pub struct Signer {
    header: axum::http::HeaderName,
    key: hmac::Key,
}

impl Signer {
    pub fn new(header: &str, key: &[u8]) -> anyhow::Result<Signer> {
        if key.is_empty() {
            anyhow::bail!("signing: the key is empty (set signing.key or signing.keyfile)");
        }
        let header =
            axum::http::HeaderName::try_from(header).map_err(|_| anyhow::anyhow!("signing.header {header:?} is not a header name"))?;
        Ok(Signer {
            header,
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
        })
    }

    pub fn sign(&self, body: &[u8]) -> (axum::http::HeaderName, axum::http::HeaderValue) {
        let tag = hmac::sign(&self.key, body);
        let value = format!("sha256={}", hex::encode(tag.as_ref()));
        // Hex and ASCII only: always a valid header value.
        (
            self.header.clone(),
            axum::http::HeaderValue::from_str(&value).expect("hex header value"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_rfc4231_test_case_2() {
        let signer = Signer::new("X-Wharf-Signature", b"Jefe").unwrap();
        let (name, value) = signer.sign(b"what do ya want for nothing?");
        assert_eq!(name.as_str(), "x-wharf-signature");
        assert_eq!(
            value.to_str().unwrap(),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
