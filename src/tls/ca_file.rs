//! `http.tls.cafile`: the CA certificate wharf publishes, unauthenticated, at
//! `/.well-known/wharf/ca.crt` for `wharf trust`. Files people keep often hold more than the
//! certificate (the CA's key beside it, an HAProxy-style combined file), and anything in the
//! file would reach anyone who asks; so only its CERTIFICATE blocks are published, and a file
//! holding a private key is refused outright: its key may already have been copied wherever
//! the file was.

use std::path::Path;

/// The certificates of the CA file at `path`, as PEM, and nothing else from it. `Err` says
/// which file and why it cannot be published.
pub fn published_certificates(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    certificates_only(&text).map_err(|why| format!("{}: {why}", path.display()))
}

/// The CERTIFICATE blocks of `pem`, re-encoded; `Err` when it holds a private key (in any
/// PEM form, encrypted or not) or no certificate.
pub fn certificates_only(pem: &str) -> Result<String, String> {
    use rustls_pki_types::pem::{PemObject, SectionKind};
    for line in pem.lines() {
        let label = line.trim().strip_prefix("-----BEGIN ").and_then(|l| l.strip_suffix("-----"));
        if let Some(label) = label.filter(|l| l.contains("PRIVATE KEY")) {
            return Err(format!(
                "holds a private key (-----BEGIN {label}-----); this file is served to anyone at /.well-known/wharf/ca.crt, \
                 so it must hold the CA certificate only: move the key to a file of its own"
            ));
        }
    }
    let mut out = String::new();
    for section in <(SectionKind, Vec<u8>) as PemObject>::pem_slice_iter(pem.as_bytes()) {
        match section {
            Ok((SectionKind::Certificate, der)) => out.push_str(&super::certs::pem_block("CERTIFICATE", &der)),
            Ok(_) => {}
            Err(e) => return Err(format!("is not valid PEM: {e}")),
        }
    }
    if out.is_empty() {
        return Err("holds no certificate (expected -----BEGIN CERTIFICATE-----)".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca() -> crate::tls::certs::CertKey {
        crate::tls::certs::new_ca("test CA", 30).unwrap()
    }

    #[test]
    fn only_certificates_are_kept() {
        let a = ca();
        let b = ca();
        let text = format!("# a comment\n{}\nsome text\n{}", a.cert_pem, b.cert_pem);
        let out = certificates_only(&text).unwrap();
        assert_eq!(out.matches("-----BEGIN CERTIFICATE-----").count(), 2);
        assert!(!out.contains("comment") && !out.contains("some text"));
        assert_eq!(
            crate::tls::certs::fingerprint_sha256(&out).unwrap(),
            crate::tls::certs::fingerprint_sha256(&a.cert_pem).unwrap()
        );
    }

    #[test]
    fn files_with_a_private_key_are_refused() {
        let a = ca();
        for key in [
            a.key_pem.clone(),
            a.key_pem.replace("PRIVATE KEY", "EC PRIVATE KEY"),
            a.key_pem.replace("PRIVATE KEY", "RSA PRIVATE KEY"),
            a.key_pem.replace("PRIVATE KEY", "ENCRYPTED PRIVATE KEY"),
        ] {
            for text in [format!("{}{key}", a.cert_pem), format!("{key}{}", a.cert_pem)] {
                let e = certificates_only(&text).unwrap_err();
                assert!(e.contains("holds a private key"), "{e}");
                assert!(!e.contains(key.lines().nth(1).unwrap()), "the key is not quoted: {e}");
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("combined.pem");
        std::fs::write(&path, format!("{}{}", a.cert_pem, a.key_pem)).unwrap();
        let e = published_certificates(&path).unwrap_err();
        assert!(e.starts_with(&path.display().to_string()), "the file is named: {e}");
    }

    #[test]
    fn files_without_a_certificate_are_refused() {
        assert!(certificates_only("").unwrap_err().contains("no certificate"));
        assert!(certificates_only("hello\n").unwrap_err().contains("no certificate"));
    }
}
