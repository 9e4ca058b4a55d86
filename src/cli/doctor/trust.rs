//! Would a client with these CA certificates accept the server's chain?
//!
//! rustls's `WebPkiServerVerifier` answers first. Where it refuses for a reason other than
//! the issuer (a name, a date, a key usage, or a self-signed server certificate that is also
//! a CA, which Go accepts and webpki does not), the chain is checked for an anchor the way
//! Go's crypto/x509 finds one — a presented certificate that is in the pool, or one signed by
//! a pool certificate — because those other reasons are reported by the certificate step.

use super::clients::Root;
use crate::tls;
use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, RootCertStore};
use std::sync::Arc;
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
    /// webpki's own refusal, when it refused.
    pub rustls_error: Option<rustls::Error>,
}

impl Check {
    /// Anchored, and rustls accepts the whole chain for the name (dates, usages) too.
    pub fn fully_verified(&self) -> bool {
        matches!(self.verdict, Verdict::Trusted { .. }) && self.rustls_error.is_none()
    }
}

pub fn check(chain: &[CertificateDer<'static>], roots: &[Root], name: &ServerName<'static>) -> Check {
    let Some((leaf, intermediates)) = chain.split_first() else {
        return Check {
            verdict: Verdict::UnknownAuthority,
            rustls_error: None,
        };
    };
    let rustls_result = webpki_verifier(roots).map(|v| v.verify_server_cert(leaf, intermediates, name, &[], UnixTime::now()));
    match rustls_result {
        Some(Ok(_)) => Check {
            verdict: Verdict::Trusted {
                by: anchor(chain, roots).unwrap_or_else(|| "the trust store".into()),
            },
            rustls_error: None,
        },
        Some(Err(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer))) | None => Check {
            verdict: Verdict::UnknownAuthority,
            rustls_error: None,
        },
        Some(Err(e)) => Check {
            verdict: anchor(chain, roots).map_or(Verdict::UnknownAuthority, |by| Verdict::Trusted { by }),
            rustls_error: Some(e),
        },
    }
}

fn webpki_verifier(roots: &[Root]) -> Option<Arc<WebPkiServerVerifier>> {
    let mut store = RootCertStore::empty();
    store.add_parsable_certificates(roots.iter().map(|r| r.der.clone()));
    if store.is_empty() {
        return None;
    }
    WebPkiServerVerifier::builder_with_provider(Arc::new(store), tls::provider())
        .build()
        .ok()
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
        let name = ServerName::IpAddress("10.0.0.5".parse::<std::net::IpAddr>().unwrap().into());
        let good = check(&chain, &roots(&ca.cert_pem, "/ca.crt"), &name);
        assert_eq!(good.verdict, Verdict::Trusted { by: "/ca.crt".into() });
        assert!(good.fully_verified());
        assert_eq!(
            check(&chain, &roots(&other.cert_pem, "/b.crt"), &name).verdict,
            Verdict::UnknownAuthority
        );
        assert_eq!(check(&chain, &[], &name).verdict, Verdict::UnknownAuthority);
        // Anchored, but not for this address: the anchor is still found, rustls's refusal kept.
        let wrong = ServerName::IpAddress("10.0.0.6".parse::<std::net::IpAddr>().unwrap().into());
        let c = check(&chain, &roots(&ca.cert_pem, "/ca.crt"), &wrong);
        assert_eq!(c.verdict, Verdict::Trusted { by: "/ca.crt".into() });
        assert!(c.rustls_error.is_some() && !c.fully_verified());
        assert!(is_self_signed(top_of_chain(&chain).unwrap()));
        assert!(!is_self_signed(&chain[0]));
    }
}
