//! Just enough of S3 for the bench: path-style PUT, GET and DELETE of one object, signed with
//! AWS Signature Version 4 over plain HTTP on loopback. Bodies are sent as `UNSIGNED-PAYLOAD`
//! (as S3 clients do for streamed bodies), so signing costs no pass over the bytes and the raw
//! 1 GiB transfer measures the store, not the client's sha256.

use crate::client::{Conn, ContentBody, Reply, Result};
use hyper::Method;
use sha2::{Digest, Sha256};

#[derive(Clone)]
pub struct Credentials {
    pub key_id: String,
    pub secret: String,
    pub region: String,
}

/// HMAC-SHA256 (RFC 2104), the only MAC SigV4 uses.
fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| k.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new().chain_update(pad(0x36)).chain_update(message).finalize();
    Sha256::new().chain_update(pad(0x5c)).chain_update(inner).finalize().into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `YYYYMMDDTHHMMSSZ` for Unix seconds `t` (days to civil date: Howard Hinnant's algorithm).
fn amz_date(t: u64) -> String {
    let (days, secs) = ((t / 86_400) as i64, t % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The headers that sign `method path` (path-style, already URI-safe, no query) to `host`.
pub fn sign(c: &Credentials, method: &Method, host: &str, path: &str, now: u64) -> Vec<(&'static str, String)> {
    assert!(
        path.bytes().all(|b| b.is_ascii_alphanumeric() || b"/-_.".contains(&b)),
        "{path}: the bench signs only paths that need no URI encoding"
    );
    let date = amz_date(now);
    let day = &date[..8];
    let payload = "UNSIGNED-PAYLOAD";
    let signed = "host;x-amz-content-sha256;x-amz-date";
    let canonical = format!("{method}\n{path}\n\nhost:{host}\nx-amz-content-sha256:{payload}\nx-amz-date:{date}\n\n{signed}\n{payload}");
    let scope = format!("{day}/{}/s3/aws4_request", c.region);
    let to_sign = format!("AWS4-HMAC-SHA256\n{date}\n{scope}\n{}", hex(&Sha256::digest(canonical.as_bytes())));
    let mut key = hmac(format!("AWS4{}", c.secret).as_bytes(), day.as_bytes());
    for part in [c.region.as_str(), "s3", "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let signature = hex(&hmac(&key, to_sign.as_bytes()));
    vec![
        ("x-amz-date", date.clone()),
        ("x-amz-content-sha256", payload.to_string()),
        (
            "authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={signature}",
                c.key_id
            ),
        ),
    ]
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// One connection to one bucket of an S3 endpoint (`HOST:PORT`).
pub struct Bucket {
    pub conn: Conn,
    pub host: String,
    pub bucket: String,
    pub creds: Credentials,
}

impl Bucket {
    pub async fn open(host: &str, bucket: &str, creds: &Credentials) -> Result<Bucket> {
        Ok(Bucket {
            conn: Conn::open(host, None).await?,
            host: host.to_string(),
            bucket: bucket.to_string(),
            creds: creds.clone(),
        })
    }

    fn headers(&self, method: &Method, key: &str) -> (String, Vec<(&'static str, String)>) {
        let path = format!("/{}/{}", self.bucket, key.trim_start_matches('/'));
        let headers = sign(&self.creds, method, &self.host, &path, now());
        (path, headers)
    }

    async fn expect_ok(&mut self, method: Method, key: &str, extra: &[(&'static str, String)], body: ContentBody) -> Result<Reply> {
        let (path, mut headers) = self.headers(&method, key);
        headers.extend_from_slice(extra);
        let r = self.conn.send(method.clone(), &path, &headers, body, false).await?;
        if !r.status.is_success() {
            return Err(format!("S3 {method} {path}: status {}", r.status).into());
        }
        Ok(r)
    }

    pub async fn put(&mut self, key: &str, body: ContentBody, len: u64) -> Result<()> {
        self.expect_ok(Method::PUT, key, &[("content-length", len.to_string())], body)
            .await
            .map(drop)
    }

    /// GETs `key`, handing its bytes to `sink`; returns how many there were.
    pub async fn get_into(&mut self, key: &str, sink: &mut (dyn FnMut(&bytes::Bytes) + Send)) -> Result<u64> {
        let (path, headers) = self.headers(&Method::GET, key);
        let r = self.conn.get_into(&path, &headers, sink).await?;
        if !r.status.is_success() {
            return Err(format!("S3 GET {path}: status {}", r.status).into());
        }
        Ok(r.len)
    }

    pub async fn delete(&mut self, key: &str) -> Result<()> {
        self.expect_ok(Method::DELETE, key, &[], crate::client::Content::empty().body())
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_macs_match_known_values() {
        assert_eq!(amz_date(0), "19700101T000000Z");
        assert_eq!(amz_date(1_440_938_160), "20150830T123600Z");
        assert_eq!(amz_date(1_709_251_199), "20240229T235959Z");
        // RFC 4231, test case 2.
        assert_eq!(
            hex(&hmac(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn the_signing_key_follows_the_aws_example() {
        // AWS's documented derivation example (secret wJalr..., 20120215, us-east-1, iam).
        let mut key = hmac(b"AWS4wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", b"20120215");
        for part in ["us-east-1", "iam", "aws4_request"] {
            key = hmac(&key, part.as_bytes());
        }
        assert_eq!(hex(&key), "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d");
    }
}
