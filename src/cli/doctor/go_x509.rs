//! Go's crypto/x509 `Certificate.Verify` for a TLS server certificate, the verifier Docker,
//! containerd (and so Kubernetes), podman, skopeo and buildah run. Its rules differ from
//! webpki's (rustls): a server certificate that is itself in the root pool is accepted as it
//! is — the seeds' `openssl req -x509` certificates are self-signed with CA:TRUE — while a
//! Common Name without subjectAltName, an extendedKeyUsage without serverAuth anywhere in the
//! chain, and an expired certificate are refused.
//!
//! The order of the checks, and so which error is reported first, is Go's: the server
//! certificate's dates, then the host name, then the chain to a root, then key usages.

use super::clients::Root;
use crate::tls::inspect::{self, CertInfo};
use rustls::pki_types::CertificateDer;
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::parse_x509_certificate;
use x509_parser::x509::X509Version;

/// Chains longer than this are not followed (Go's own limit is far above real chains).
const MAX_DEPTH: usize = 8;

/// What Go's verifier says about a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoVerdict {
    /// The file of the root the chain was built to, when one was found.
    pub anchor: Option<String>,
    /// Go's error, other than "signed by unknown authority" (told by `anchor` being None),
    /// when it refuses the certificate.
    pub refusal: Option<String>,
}

/// One certificate, parsed both ways.
struct Cert<'a> {
    der: &'a [u8],
    parsed: X509Certificate<'a>,
    info: CertInfo,
}

impl<'a> Cert<'a> {
    fn new(der: &'a [u8]) -> Option<Cert<'a>> {
        let (_, parsed) = parse_x509_certificate(der).ok()?;
        let info = inspect::cert_info_der(der).ok()?;
        Some(Cert { der, parsed, info })
    }

    /// Go's checkSignatureFrom: a v3 parent must be a CA, and a keyUsage it has must allow
    /// certificate signing; then the signature must verify.
    fn signed(&self, child: &Cert<'_>) -> bool {
        if self.parsed.subject().as_raw() != child.parsed.issuer().as_raw() {
            return false;
        }
        let v3 = self.parsed.version() == X509Version::V3;
        if v3 && self.info.is_ca != Some(true) {
            return false;
        }
        if self.info.key_usage.is_some() && !self.info.has_key_usage("keyCertSign") {
            return false;
        }
        child.parsed.verify_signature(Some(self.parsed.public_key())).is_ok()
    }

    fn current(&self, now: OffsetDateTime) -> bool {
        self.info.not_before <= now && now <= self.info.not_after
    }
}

/// How the server certificate's name is matched against the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Names {
    /// Go's: subjectAltName only; a Common Name alone is "legacy".
    Go,
    /// OpenSSL's as curl uses it: without a subjectAltName, the Common Name is compared (seed
    /// 003's CN-only certificate works with curl once trusted, with Go clients never).
    CommonNameFallback,
}

/// Go's `Verify` with `DNSName` set to `host` (an IP address or a DNS name, no port) and
/// `roots` as the pool, at time `now`, the host name matched by `names`' rules.
pub fn verify_names(chain: &[CertificateDer<'static>], roots: &[Root], host: &str, now: OffsetDateTime, names: Names) -> GoVerdict {
    let Some(leaf) = chain.first().and_then(|d| Cert::new(d)) else {
        return GoVerdict {
            anchor: None,
            refusal: Some("x509: the server's certificate cannot be parsed".into()),
        };
    };
    let intermediates: Vec<Cert<'_>> = chain[1..].iter().filter_map(|d| Cert::new(d)).collect();
    let pool: Vec<(Cert<'_>, &Root)> = roots.iter().filter_map(|r| Cert::new(&r.der).map(|c| (c, r))).collect();

    let mut refusal = validity_error(&leaf.info, now);
    let cn_matches = || !leaf.info.has_san_extension && leaf.info.common_name.as_deref().is_some_and(|cn| inspect::dns_matches(cn, host));
    let name_ok = inspect::matches_host(&leaf.info, host) || (names == Names::CommonNameFallback && cn_matches());
    if refusal.is_none() && !name_ok {
        refusal = Some(inspect::go_hostname_error(&leaf.info, host));
    }
    let path = match pool.iter().find(|(c, _)| c.der == leaf.der) {
        // The server certificate is itself trusted: Go's chain is that one certificate.
        Some((_, root)) => Some((vec![&leaf.info], root.source.clone())),
        None => build(&leaf, &intermediates, &pool, now, &mut vec![&leaf.info], 0),
    };
    let anchor = path.map(|(certs, source)| {
        if refusal.is_none() && !certs.iter().all(|c| c.eku_allows_server_auth()) {
            refusal = Some("x509: certificate specifies an incompatible key usage".into());
        }
        source
    });
    GoVerdict { anchor, refusal }
}

/// Go's buildChains: a root that signed `cert`, or else an intermediate the server sent
/// that did and that leads to one. Returns the chain's certificates and the root's file.
fn build<'c>(
    cert: &Cert<'_>,
    intermediates: &'c [Cert<'c>],
    pool: &'c [(Cert<'c>, &Root)],
    now: OffsetDateTime,
    path: &mut Vec<&'c CertInfo>,
    depth: usize,
) -> Option<(Vec<&'c CertInfo>, String)> {
    if depth >= MAX_DEPTH {
        return None;
    }
    if let Some((root, r)) = pool.iter().find(|(root, _)| root.current(now) && root.signed(cert)) {
        let mut certs = path.clone();
        certs.push(&root.info);
        return Some((certs, r.source.clone()));
    }
    for next in intermediates {
        let in_path = path.iter().any(|c| c.fingerprint_sha256 == next.info.fingerprint_sha256);
        if in_path || !next.current(now) || !next.signed(cert) {
            continue;
        }
        path.push(&next.info);
        let found = build(next, intermediates, pool, now, path, depth + 1);
        path.pop();
        if found.is_some() {
            return found;
        }
    }
    None
}

fn validity_error(c: &CertInfo, now: OffsetDateTime) -> Option<String> {
    let (relation, bound) = if now > c.not_after {
        ("after", c.not_after)
    } else if now < c.not_before {
        ("before", c.not_before)
    } else {
        return None;
    };
    Some(format!(
        "x509: certificate has expired or is not yet valid: current time {} is {relation} {}",
        inspect::go_time(now),
        inspect::go_time(bound)
    ))
}
