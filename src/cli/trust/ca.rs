//! The CA certificate being installed: exactly one certificate, re-encoded so that what is
//! installed is byte for byte what was fingerprinted, and the user's confirmation of it.

use crate::tls::{certs, inspect};
use anyhow::{bail, Context};
use base64::Engine;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use std::io::{BufRead, IsTerminal, Write};

#[derive(Debug)]
pub struct Ca {
    pub der: CertificateDer<'static>,
    /// Canonical PEM of `der` alone: what every trust store receives.
    pub pem: String,
    /// `AB:CD:...`, as `wharf serve` and `openssl x509 -fingerprint -sha256` print it.
    pub fingerprint: String,
    pub subject: String,
    pub not_after: String,
}

impl Ca {
    /// Parses a PEM that must hold exactly one certificate. A second certificate is refused
    /// rather than installed: only the first would be covered by the fingerprint check.
    pub fn from_pem(pem: &str, origin: &str) -> anyhow::Result<Ca> {
        let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("{origin}: malformed PEM: {e}"))?;
        if certs.is_empty() {
            bail!("{origin} holds no certificate (expected a PEM block starting with -----BEGIN CERTIFICATE-----)");
        }
        if certs.len() != 1 {
            bail!(
                "{origin} holds {} certificates; wharf trust installs exactly one CA (the one whose fingerprint you check)",
                certs.len()
            );
        }
        let der = certs.into_iter().next().expect("one certificate");
        let pem = pem_encode(&der);
        let report = inspect::inspect(&pem, None).with_context(|| format!("{origin}: unreadable certificate"))?;
        let info = &report.certificates[0];
        if info.is_ca != Some(true) && !info.self_signed {
            bail!(
                "{origin} is not a CA certificate: it is issued by {}; install the CA that signed it instead",
                info.issuer
            );
        }
        if info.not_after < time::OffsetDateTime::now_utc() {
            bail!("{origin}: the CA certificate expired on {}", inspect::fmt_time(info.not_after));
        }
        Ok(Ca {
            fingerprint: certs::fingerprint_der(&der),
            subject: info.subject.clone(),
            not_after: inspect::fmt_time(info.not_after),
            der,
            pem,
        })
    }
}

/// PEM with 64-column base64, the form openssl writes.
pub fn pem_encode(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// Accepts a fingerprint as `wharf serve` prints it, as openssl prints it
/// (`sha256 Fingerprint=AB:CD:..`), as `sha256:abcd..` or bare hex, in any case.
/// Returns the canonical `AB:CD:...` form.
pub fn normalize_fingerprint(input: &str) -> anyhow::Result<String> {
    let s = input.trim();
    let s = s.rsplit_once('=').map_or(s, |(_, v)| v).trim();
    let s = if s.len() > 7 && s[..7].eq_ignore_ascii_case("sha256:") {
        &s[7..]
    } else {
        s
    };
    let hex: String = s.chars().filter(|c| *c != ':' && !c.is_whitespace()).collect();
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        bail!("--fingerprint {input:?} is not a SHA-256 fingerprint (64 hex digits, colons optional)");
    }
    let upper = hex.to_ascii_uppercase();
    let pairs: Vec<&str> = (0..32).map(|i| &upper[2 * i..2 * i + 2]).collect();
    Ok(pairs.join(":"))
}

/// How the CA came to be trusted, for the summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Approval {
    Fingerprint,
    Terminal,
    Yes,
}

/// The fingerprint must match `--fingerprint`; without it the user confirms on the terminal,
/// or passes `--yes`. With neither and no terminal, nothing is trusted.
pub fn approve(ca: &Ca, registry: &str, fingerprint: Option<&str>, yes: bool) -> anyhow::Result<Approval> {
    if let Some(expected) = fingerprint {
        let expected = normalize_fingerprint(expected)?;
        if expected != ca.fingerprint {
            bail!(
                "fingerprint mismatch: the CA of {registry} is\n  {}\nbut --fingerprint says\n  {expected}\n\
                 Nothing was installed. Someone may be intercepting the connection, or the registry made a new CA: \
                 compare with the fingerprint `wharf serve` printed on the registry host.",
                ca.fingerprint
            );
        }
        return Ok(Approval::Fingerprint);
    }
    if yes {
        eprintln!("wharf: warning: --yes: trusting this CA without checking its fingerprint");
        return Ok(Approval::Yes);
    }
    if !std::io::stdin().is_terminal() {
        bail!(
            "refusing to trust the CA of {registry} unchecked: no terminal to ask on. Pass --fingerprint {} \
             after comparing it with the one `wharf serve` printed on the registry host (or --yes to skip the check).",
            ca.fingerprint
        );
    }
    if ask(&format!("Trust this CA for {registry}? [y/N] "))? {
        Ok(Approval::Terminal)
    } else {
        bail!("not trusted: nothing was installed")
    }
}

/// Prompts on stderr (stdout may be a script being piped elsewhere) and reads one line.
fn ask(question: &str) -> anyhow::Result<bool> {
    eprint!("{question}");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes"))
}

/// The lines shown before asking, so the user can compare with the server's output.
pub fn describe(ca: &Ca) -> String {
    format!(
        "wharf: CA {}\nwharf:   expires  {}\nwharf:   SHA-256  {}",
        ca.subject, ca.not_after, ca.fingerprint
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_forms() {
        let canon = "AB:".repeat(31) + "AB";
        assert_eq!(normalize_fingerprint(&canon).unwrap(), canon);
        assert_eq!(normalize_fingerprint(&"ab".repeat(32)).unwrap(), canon);
        assert_eq!(normalize_fingerprint(&format!("sha256 Fingerprint={canon}")).unwrap(), canon);
        assert_eq!(normalize_fingerprint(&format!("SHA256:{}", "ab".repeat(32))).unwrap(), canon);
        assert!(normalize_fingerprint("AB:CD").is_err());
        assert!(normalize_fingerprint(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn one_ca_only() {
        let a = certs::new_ca("a", 30).unwrap();
        let b = certs::new_ca("b", 30).unwrap();
        let ca = Ca::from_pem(&a.cert_pem, "test").unwrap();
        assert_eq!(ca.fingerprint, certs::fingerprint_sha256(&a.cert_pem).unwrap());
        assert_eq!(certs::fingerprint_sha256(&ca.pem).unwrap(), ca.fingerprint);
        let two = format!("{}{}", a.cert_pem, b.cert_pem);
        assert!(Ca::from_pem(&two, "test").unwrap_err().to_string().contains("2 certificates"));
        let leaf = certs::issue_server(&a, &["10.0.0.5".parse().unwrap()], &[], 30).unwrap();
        let leaf_only = leaf.leaf_pem().unwrap();
        assert!(Ca::from_pem(&leaf_only, "test").unwrap_err().to_string().contains("not a CA"));
    }

    #[test]
    fn mismatch_is_refused() {
        let a = certs::new_ca("a", 30).unwrap();
        let ca = Ca::from_pem(&a.cert_pem, "test").unwrap();
        let wrong = "00:".repeat(31) + "00";
        let e = approve(&ca, "r:5000", Some(&wrong), true).unwrap_err().to_string();
        assert!(e.contains("fingerprint mismatch"), "{e}");
        let right = ca.fingerprint.to_lowercase().replace(':', "");
        assert_eq!(approve(&ca, "r:5000", Some(&right), false).unwrap(), Approval::Fingerprint);
    }
}
