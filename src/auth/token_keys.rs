//! Which key signed a token, as distribution 2.8 finds it (`registry/auth/token/token.go`,
//! `VerifySigningKey`): the header's `x5c` certificate chain first, then a `jwk`, then `kid`.
//!
//! - `x5c`: the leaf (first) certificate must chain, through the other certificates of the
//!   header, to a certificate of the `rootcertbundle`, every certificate valid at the time of
//!   the check; the leaf's key signs the token. Like Go's `ExtKeyUsageAny`, any extended key
//!   usage is accepted. A leaf that *is* a bundle certificate is trusted as it stands.
//! - `jwk`: accepted when its key is one of the bundle's keys; a JWK carrying its own `x5c`
//!   must chain to the bundle as above and have the leaf's key.
//!
//! This module checks chains and reads JWKs; `token` matches keys and checks signatures.

use super::token::TokenError;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use rustls_pki_types::{CertificateDer, UnixTime};
use std::time::Duration;

/// Longer chains are refused unread: real ones are two or three certificates.
const MAX_CHAIN: usize = 8;

/// The certificates of an `x5c` header (standard base64 DER, leaf first).
pub fn decode_chain(x5c: &[String]) -> Result<Vec<Vec<u8>>, TokenError> {
    if x5c.len() > MAX_CHAIN {
        return Err(TokenError::UntrustedChain("the x5c chain is too long"));
    }
    x5c.iter()
        .map(|c| STANDARD.decode(c).map_err(|_| TokenError::Malformed("x5c is not base64")))
        .collect()
}

/// Checks that `chain[0]` is valid at `now` and chains (through `chain[1..]`) to one of
/// `roots`; returns the leaf's DER.
pub fn verify_chain(chain: &[Vec<u8>], roots: &[&[u8]], now: i64) -> Result<Vec<u8>, TokenError> {
    let (leaf, intermediates) = chain.split_first().ok_or(TokenError::UntrustedChain("the x5c chain is empty"))?;
    let time = UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(now).unwrap_or(0)));
    if roots.contains(&leaf.as_slice()) {
        // Trusted as it stands, as Go's verifier does with a leaf found among the roots; its
        // validity period still counts.
        return within_validity(leaf, now).map(|()| leaf.clone());
    }
    let root_ders: Vec<CertificateDer<'_>> = roots.iter().map(|r| CertificateDer::from(*r)).collect();
    let anchors: Vec<_> = root_ders.iter().filter_map(|r| webpki::anchor_from_trusted_cert(r).ok()).collect();
    let intermediates: Vec<CertificateDer<'_>> = intermediates.iter().map(|c| CertificateDer::from(c.as_slice())).collect();
    let leaf_der = CertificateDer::from(leaf.as_slice());
    let end_entity =
        webpki::EndEntityCert::try_from(&leaf_der).map_err(|_| TokenError::Malformed("x5c leaf is not an X.509 certificate"))?;
    end_entity
        .verify_for_usage(webpki::ALL_VERIFICATION_ALGS, &anchors, &intermediates, time, AnyUsage, None, None)
        .map_err(|e| TokenError::UntrustedChain(reason(&e)))?;
    Ok(leaf.clone())
}

/// Go's `ExtKeyUsageAny`: a token signing certificate may carry any extended key usage.
struct AnyUsage;

impl webpki::ExtendedKeyUsageValidator for AnyUsage {
    fn validate(&self, mut iter: webpki::KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        // Malformed extensions still fail.
        iter.try_for_each(|id| id.map(|_| ()))
    }
}

fn reason(e: &webpki::Error) -> &'static str {
    match e {
        webpki::Error::CertExpired { .. } => "a certificate of the x5c chain has expired",
        webpki::Error::CertNotValidYet { .. } => "a certificate of the x5c chain is not valid yet",
        webpki::Error::UnknownIssuer => "the x5c chain does not lead to a certificate of the rootcertbundle",
        webpki::Error::CaUsedAsEndEntity => "the x5c leaf is a CA certificate",
        webpki::Error::InvalidSignatureForPublicKey | webpki::Error::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => {
            "a certificate of the x5c chain has a bad signature"
        }
        _ => "the x5c chain is not valid",
    }
}

fn within_validity(der: &[u8], now: i64) -> Result<(), TokenError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|_| TokenError::Malformed("x5c leaf is not an X.509 certificate"))?;
    let v = cert.validity();
    if now > v.not_after.timestamp() {
        return Err(TokenError::UntrustedChain("a certificate of the x5c chain has expired"));
    }
    if now < v.not_before.timestamp() {
        return Err(TokenError::UntrustedChain("a certificate of the x5c chain is not valid yet"));
    }
    Ok(())
}

/// The key material of a `jwk` header, for comparison with trusted keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwkKey {
    /// The uncompressed point `04 || x || y`, and the curve.
    Ec { p384: bool, point: Vec<u8> },
    /// Modulus and exponent, leading zeros stripped.
    Rsa { n: Vec<u8>, e: Vec<u8> },
}

/// A `jwk` header: its key and the `x5c` chain it may carry.
pub fn parse_jwk(value: &serde_json::Value) -> Result<(JwkKey, Option<Vec<String>>), TokenError> {
    let malformed = || TokenError::Malformed("jwk is not a supported JSON Web Key");
    let field = |name: &str| -> Result<Vec<u8>, TokenError> {
        let text = value.get(name).and_then(|v| v.as_str()).ok_or_else(malformed)?;
        URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).map_err(|_| malformed())
    };
    let key = match value.get("kty").and_then(|v| v.as_str()) {
        Some("EC") => {
            let (p384, len) = match value.get("crv").and_then(|v| v.as_str()) {
                Some("P-256") => (false, 32),
                Some("P-384") => (true, 48),
                _ => return Err(malformed()),
            };
            let (x, y) = (field("x")?, field("y")?);
            if x.len() != len || y.len() != len {
                return Err(malformed());
            }
            JwkKey::Ec {
                p384,
                point: [&[4u8][..], &x, &y].concat(),
            }
        }
        Some("RSA") => JwkKey::Rsa {
            n: strip_zeros(&field("n")?),
            e: strip_zeros(&field("e")?),
        },
        _ => return Err(malformed()),
    };
    let x5c = match value.get("x5c") {
        None => None,
        Some(list) => {
            let items = list.as_array().ok_or_else(malformed)?;
            let strings: Option<Vec<String>> = items
                .iter()
                .map(|i| i.as_str().filter(|s| !s.is_empty()).map(str::to_string))
                .collect();
            Some(strings.ok_or(TokenError::Malformed("jwk x5c is not a list of certificates"))?)
        }
    };
    Ok((key, x5c))
}

pub fn strip_zeros(b: &[u8]) -> Vec<u8> {
    b[b.iter().position(|&x| x != 0).unwrap_or(b.len())..].to_vec()
}
