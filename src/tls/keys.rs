//! PEM parsing with diagnostics, and conversion of private keys to PKCS#8 (the only encoding
//! rcgen accepts with the ring backend), so a CA key made by openssl in SEC1 or PKCS#1 form can
//! still sign.

use super::{Result, TlsError};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The labels of every PEM block in `text`, in order (`CERTIFICATE`, `EC PRIVATE KEY`, ...).
pub(crate) fn pem_labels(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("-----BEGIN ")?.strip_suffix("-----").map(str::to_owned))
        .collect()
}

/// Every `CERTIFICATE` block, in file order. Other blocks are skipped.
pub(crate) fn certificates(pem: &str) -> std::result::Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| format!("malformed PEM: {e}"))?;
    if certs.is_empty() {
        return Err(no_certificate_problem(pem));
    }
    Ok(certs)
}

fn no_certificate_problem(pem: &str) -> String {
    let labels = pem_labels(pem);
    if labels.iter().any(|l| l.contains("PRIVATE KEY")) {
        "no certificate found: this file holds a private key (are the certificate and key paths swapped?)".into()
    } else if labels.iter().any(|l| l == "CERTIFICATE REQUEST") {
        "no certificate found: this file holds a certificate signing request; have it signed by a CA first".into()
    } else if labels.is_empty() {
        "no certificate found: expected a PEM block starting with -----BEGIN CERTIFICATE----- \
         (a DER file converts with: openssl x509 -inform der -in FILE -out FILE.pem)"
            .into()
    } else {
        format!("no certificate found (PEM blocks present: {})", labels.join(", "))
    }
}

/// The first private key block (`PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY`).
pub(crate) fn private_key(pem: &str) -> std::result::Result<PrivateKeyDer<'static>, String> {
    match PrivateKeyDer::from_pem_slice(pem.as_bytes()) {
        Ok(key) => Ok(key),
        Err(rustls_pki_types::pem::Error::NoItemsFound) => Err(no_key_problem(pem)),
        Err(e) => Err(format!("malformed PEM: {e}")),
    }
}

fn no_key_problem(pem: &str) -> String {
    let labels = pem_labels(pem);
    if labels.iter().any(|l| l == "ENCRYPTED PRIVATE KEY") || pem.contains("Proc-Type: 4,ENCRYPTED") {
        "the private key is encrypted with a passphrase; the server needs it unencrypted: \
         openssl pkey -in KEY -out KEY.plain (then chmod 600 KEY.plain)"
            .into()
    } else if labels.iter().any(|l| l == "CERTIFICATE") {
        "no private key found: this file holds a certificate (are the certificate and key paths swapped?)".into()
    } else if labels.is_empty() {
        "no private key found: expected a PEM block such as -----BEGIN PRIVATE KEY-----".into()
    } else {
        format!("no private key found (PEM blocks present: {})", labels.join(", "))
    }
}

/// Loads a private key from PEM for signing with rcgen, converting SEC1 and PKCS#1 to PKCS#8.
pub(crate) fn rcgen_key_pair(pem: &str) -> Result<rcgen::KeyPair> {
    let key = private_key(pem).map_err(TlsError::Invalid)?;
    for pkcs8 in pkcs8_candidates(&key) {
        if let Ok(pair) = rcgen::KeyPair::try_from(pkcs8.as_slice()) {
            return Ok(pair);
        }
    }
    Err(TlsError::Invalid(
        "unsupported private key: use ECDSA P-256/P-384, RSA or Ed25519 (unencrypted PEM)".into(),
    ))
}

const OID_RSA_ENCRYPTION: &[u8] = &[0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
const DER_NULL: &[u8] = &[0x05, 0x00];

/// PKCS#8 encodings that may hold `key`. A SEC1 key does not always name its curve, so it
/// yields one candidate per supported curve and the parser rejects the wrong one.
fn pkcs8_candidates(key: &PrivateKeyDer<'_>) -> Vec<Vec<u8>> {
    match key {
        PrivateKeyDer::Pkcs8(k) => vec![k.secret_pkcs8_der().to_vec()],
        PrivateKeyDer::Pkcs1(k) => vec![wrap_pkcs8(&[OID_RSA_ENCRYPTION, DER_NULL].concat(), k.secret_pkcs1_der())],
        PrivateKeyDer::Sec1(k) => [OID_P256, OID_P384]
            .iter()
            .map(|curve| wrap_pkcs8(&[OID_EC_PUBLIC_KEY, curve].concat(), k.secret_sec1_der()))
            .collect(),
        _ => Vec::new(),
    }
}

/// PrivateKeyInfo ::= SEQUENCE { version INTEGER 0, algorithm AlgorithmIdentifier, key OCTET STRING }
fn wrap_pkcs8(algorithm_fields: &[u8], inner_key: &[u8]) -> Vec<u8> {
    let version = [0x02, 0x01, 0x00];
    let body = [&version[..], &der(0x30, algorithm_fields), &der(0x04, inner_key)].concat();
    der(0x30, &body)
}

/// One DER TLV with definite length.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_lengths() {
        assert_eq!(der(0x04, &[1, 2]), vec![0x04, 2, 1, 2]);
        let long = der(0x04, &[0u8; 300]);
        assert_eq!(&long[..4], &[0x04, 0x82, 0x01, 0x2c]);
        assert_eq!(long.len(), 304);
    }

    #[test]
    fn labels_and_problems() {
        let key = rcgen::KeyPair::generate().unwrap().serialize_pem();
        assert_eq!(pem_labels(&key), vec!["PRIVATE KEY"]);
        assert!(certificates(&key).unwrap_err().contains("swapped"));
        assert!(certificates("hello").unwrap_err().contains("BEGIN CERTIFICATE"));
        let enc = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
        assert!(private_key(enc).unwrap_err().contains("passphrase"));
    }

    #[test]
    fn sec1_key_converts_for_signing() {
        // A PKCS#8 P-256 key's inner ECPrivateKey is exactly what `openssl ecparam -genkey` writes.
        let pair = rcgen::KeyPair::generate().unwrap();
        let pkcs8 = pair.serialize_der();
        let inner = extract_octet_string_payload(&pkcs8);
        let sec1_pem = pem_encode("EC PRIVATE KEY", inner);
        let back = rcgen_key_pair(&sec1_pem).unwrap();
        assert_eq!(back.public_key_raw(), pair.public_key_raw());
    }

    /// The OCTET STRING holding the inner key follows the fixed-size header of a P-256 PKCS#8 document.
    fn extract_octet_string_payload(pkcs8: &[u8]) -> &[u8] {
        let pos = pkcs8.windows(2).position(|w| w[0] == 0x04 && w[1] == 0x6d).expect("octet string");
        &pkcs8[pos + 2..pos + 2 + 0x6d]
    }

    fn pem_encode(label: &str, der: &[u8]) -> String {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
        format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
    }
}
