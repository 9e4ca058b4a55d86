//! Would a client with these CA certificates accept the server's chain?
//!
//! Docker, containerd and podman/skopeo are Go programs: their answer is Go's crypto/x509's
//! (see `go_x509`), not rustls's — webpki refuses a self-signed CA:TRUE server certificate
//! even when it is the trusted root, which every Go client accepts.

use super::clients::Root;
use super::go_x509;
use rustls::pki_types::CertificateDer;
use time::OffsetDateTime;
use x509_parser::parse_x509_certificate;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Anchored in a CA from this file.
    Trusted { by: String },
    /// "x509: certificate signed by unknown authority".
    UnknownAuthority,
}

#[derive(Debug, Clone)]
pub struct Check {
    pub verdict: Verdict,
    /// Go's refusal for a reason other than the issuer (dates, name, key usage).
    pub refusal: Option<String>,
}

impl Check {
    /// Anchored, and Go accepts the whole chain for the name (dates, usages) too.
    pub fn fully_verified(&self) -> bool {
        matches!(self.verdict, Verdict::Trusted { .. }) && self.refusal.is_none()
    }
}

/// Go's verdict for `host` (an IP address or DNS name, without port).
#[cfg(test)]
pub fn check(chain: &[CertificateDer<'static>], roots: &[Root], host: &str) -> Check {
    check_names(chain, roots, host, go_x509::Names::Go)
}

/// The verdict with the host name matched by `names`' rules (OpenSSL's for curl).
pub fn check_names(chain: &[CertificateDer<'static>], roots: &[Root], host: &str, names: go_x509::Names) -> Check {
    let go = go_x509::verify_names(chain, roots, host, OffsetDateTime::now_utc(), names);
    Check {
        verdict: go.anchor.map_or(Verdict::UnknownAuthority, |by| Verdict::Trusted { by }),
        refusal: go.refusal,
    }
}

/// The file of the pool certificate that anchors the chain, Go's way: a presented
/// certificate that is itself in the pool, or one whose issuer in the pool signed it.
pub fn anchor(chain: &[CertificateDer<'static>], roots: &[Root]) -> Option<String> {
    for cert in chain {
        if let Some(r) = roots.iter().find(|r| r.der.as_ref() == cert.as_ref()) {
            return Some(r.source.clone());
        }
    }
    let parsed_roots: Vec<_> = roots
        .iter()
        .filter_map(|r| parse_x509_certificate(&r.der).ok().map(|(_, c)| (r, c)))
        .collect();
    for cert in chain {
        let Ok((_, c)) = parse_x509_certificate(cert) else { continue };
        for (root, rc) in &parsed_roots {
            if rc.subject().as_raw() == c.issuer().as_raw() && c.verify_signature(Some(rc.public_key())).is_ok() {
                return Some(root.source.clone());
            }
        }
    }
    None
}

/// The certificate a client should add to trust this chain: the last one presented (the
/// root when the server sends it, as `wharf cert issue` chains do).
pub fn top_of_chain<'a>(chain: &'a [CertificateDer<'static>]) -> Option<&'a CertificateDer<'static>> {
    chain.last()
}

/// Whether a certificate is self-issued and self-signed (a root).
pub fn is_self_signed(der: &[u8]) -> bool {
    parse_x509_certificate(der)
        .map(|(_, c)| c.subject().as_raw() == c.issuer().as_raw() && c.verify_signature(None).is_ok())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::certs;
    use rustls::pki_types::pem::PemObject;

    fn ders(pem: &str) -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_slice_iter(pem.as_bytes()).collect::<Result<_, _>>().unwrap()
    }

    fn roots(pem: &str, source: &str) -> Vec<Root> {
        ders(pem)
            .into_iter()
            .map(|der| Root {
                source: source.into(),
                der,
            })
            .collect()
    }

    #[test]
    fn trusted_only_with_the_issuing_ca() {
        let ca = certs::new_ca("A", 10).unwrap();
        let other = certs::new_ca("B", 10).unwrap();
        let server = certs::issue_server(&ca, &["10.0.0.5".parse().unwrap()], &[], 10).unwrap();
        let chain = ders(&server.cert_pem);
        let good = check(&chain, &roots(&ca.cert_pem, "/ca.crt"), "10.0.0.5");
        assert_eq!(good.verdict, Verdict::Trusted { by: "/ca.crt".into() });
        assert!(good.fully_verified());
        assert_eq!(
            check(&chain, &roots(&other.cert_pem, "/b.crt"), "10.0.0.5").verdict,
            Verdict::UnknownAuthority
        );
        assert_eq!(check(&chain, &[], "10.0.0.5").verdict, Verdict::UnknownAuthority);
        // Anchored, but not for this address: the anchor is still found, Go's refusal kept.
        let c = check(&chain, &roots(&ca.cert_pem, "/ca.crt"), "10.0.0.6");
        assert_eq!(c.verdict, Verdict::Trusted { by: "/ca.crt".into() });
        assert_eq!(c.refusal.as_deref(), Some("x509: certificate is valid for 10.0.0.5, not 10.0.0.6"));
        assert!(is_self_signed(top_of_chain(&chain).unwrap()));
        assert!(!is_self_signed(&chain[0]));
    }

    /// `openssl req -x509` certificates: self-signed and CA:TRUE (OpenSSL's default
    /// v3_ca extensions), used as the server certificate.
    fn self_signed_ca(edit: impl FnOnce(&mut rcgen::CertificateParams)) -> Vec<CertificateDer<'static>> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::default();
        p.distinguished_name.push(rcgen::DnType::CommonName, "registry.test");
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.subject_alt_names = vec![rcgen::SanType::DnsName("registry.test".try_into().unwrap())];
        p.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(1);
        p.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(365);
        edit(&mut p);
        ders(&p.self_signed(&key).unwrap().pem())
    }

    fn as_roots(chain: &[CertificateDer<'static>]) -> Vec<Root> {
        vec![Root {
            source: "/etc/docker/certs.d/registry.test/ca.crt".into(),
            der: chain[0].clone(),
        }]
    }

    #[test]
    fn go_accepts_a_self_signed_ca_server_certificate_that_is_the_root() {
        let chain = self_signed_ca(|_| {});
        let c = check(&chain, &as_roots(&chain), "registry.test");
        assert!(c.fully_verified(), "{c:?}");
        assert_eq!(check(&chain, &[], "registry.test").verdict, Verdict::UnknownAuthority);
    }

    #[test]
    fn go_refuses_cn_only_client_auth_only_and_expired() {
        let cn_only = self_signed_ca(|p| p.subject_alt_names.clear());
        let c = check(&cn_only, &as_roots(&cn_only), "registry.test");
        assert_eq!(
            c.refusal.as_deref(),
            Some("x509: certificate relies on legacy Common Name field, use SANs instead")
        );
        // OpenSSL (curl) compares the Common Name of a certificate without subjectAltName.
        let curl = check_names(&cn_only, &as_roots(&cn_only), "registry.test", go_x509::Names::CommonNameFallback);
        assert!(curl.fully_verified(), "{curl:?}");
        let other = check_names(&cn_only, &as_roots(&cn_only), "other.test", go_x509::Names::CommonNameFallback);
        assert!(other.refusal.is_some(), "{other:?}");
        let client_auth = self_signed_ca(|p| p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth]);
        let c = check(&client_auth, &as_roots(&client_auth), "registry.test");
        assert_eq!(c.refusal.as_deref(), Some("x509: certificate specifies an incompatible key usage"));
        let expired = self_signed_ca(|p| {
            p.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(30);
            p.not_after = time::OffsetDateTime::now_utc() - time::Duration::days(1);
        });
        let c = check(&expired, &as_roots(&expired), "registry.test");
        assert!(
            c.refusal
                .as_deref()
                .is_some_and(|r| r.starts_with("x509: certificate has expired or is not yet valid")),
            "{c:?}"
        );
    }
}
