//! Certificate inspection: what is in a certificate chain, and what about it will make Docker,
//! containerd, podman, skopeo, curl or macOS refuse to connect — with the error text those
//! clients print and the wharf command that fixes it.
//!
//! The checks follow Go's crypto/x509 (Docker, containerd, skopeo and podman all use it), plus
//! what OpenSSL (curl), rustls and macOS add on top.

use super::certs::fingerprint_der;
use super::keys;
use super::{Result, TlsError};
use ::time::{Duration, OffsetDateTime, UtcOffset};
use std::fmt;
use std::net::IpAddr;
use x509_parser::certificate::X509Certificate;
use x509_parser::der_parser::oid::Oid;
use x509_parser::error::X509Error;
use x509_parser::extensions::{ExtendedKeyUsage, GeneralName, KeyUsage};
use x509_parser::parse_x509_certificate;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

/// Certificates expiring sooner than this are flagged.
pub const EXPIRY_WARNING_DAYS: i64 = 30;
/// The longest server certificate lifetime macOS and iOS accept.
pub const APPLE_MAX_VALIDITY_DAYS: i64 = 825;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Clients will refuse the certificate.
    Error,
    /// Some clients, or clients later, will refuse it; or it is inconvenient to operate.
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    /// What is wrong, with the message clients print for it.
    pub problem: String,
    /// The command (or step) that fixes it.
    pub fix: String,
}

/// What the file was taken to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainKind {
    /// A server certificate, possibly followed by its issuers.
    Server,
    /// A lone CA certificate (keyCertSign and no digitalSignature): what clients install as ca.crt.
    Ca,
}

/// The fields of one certificate that matter to TLS clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    /// Hex, colon-separated, as openssl prints it.
    pub serial: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    /// True when the certificate has a subjectAltName extension at all (even without DNS/IP).
    pub has_san_extension: bool,
    /// The subject's Common Name, if any.
    pub common_name: Option<String>,
    /// "RSA", "ECDSA", "Ed25519", or the algorithm OID.
    pub key_type: String,
    /// Key size in bits (curve size for ECDSA); 0 when unknown.
    pub key_bits: usize,
    /// Curve name for ECDSA keys ("P-256", ...).
    pub curve: Option<String>,
    pub signature_algorithm: String,
    /// extendedKeyUsage entries (`serverAuth`, ...); None when the extension is absent.
    pub ext_key_usage: Option<Vec<String>>,
    /// keyUsage bits (`digitalSignature`, ...); None when the extension is absent.
    pub key_usage: Option<Vec<String>>,
    /// basicConstraints cA; None when the extension is absent.
    pub is_ca: Option<bool>,
    pub path_len: Option<u32>,
    /// Issuer equals subject and the certificate verifies with its own key.
    pub self_signed: bool,
    /// SHA-256 fingerprint, `AB:CD:...`.
    pub fingerprint_sha256: String,
}

impl CertInfo {
    pub fn has_ext_key_usage(&self, usage: &str) -> bool {
        self.ext_key_usage.as_ref().is_some_and(|u| u.iter().any(|x| x == usage))
    }

    pub fn has_key_usage(&self, usage: &str) -> bool {
        self.key_usage.as_ref().is_some_and(|u| u.iter().any(|x| x == usage))
    }

    /// Would a Go client accept this certificate for TLS server authentication, EKU-wise?
    pub fn eku_allows_server_auth(&self) -> bool {
        self.ext_key_usage.is_none() || self.has_ext_key_usage("serverAuth") || self.has_ext_key_usage("anyExtendedKeyUsage")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The host (IP or DNS name, without port) the certificate was checked against.
    pub host: Option<String>,
    pub kind: ChainKind,
    /// In file order: the server certificate first, then its issuers.
    pub certificates: Vec<CertInfo>,
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn has_errors(&self) -> bool {
        self.findings.iter().any(|f| f.severity == Severity::Error)
    }
}

/// Inspects a PEM chain (server certificate first). `host` is what clients connect to, as
/// `HOST`, `HOST:PORT`, `[IPv6]:PORT` or a URL; its port is ignored.
pub fn inspect(chain_pem: &str, host: Option<&str>) -> Result<Report> {
    inspect_at(chain_pem, host, OffsetDateTime::now_utc())
}

/// [`inspect`] as if the current time were `now`.
pub fn inspect_at(chain_pem: &str, host: Option<&str>, now: OffsetDateTime) -> Result<Report> {
    let ders = keys::certificates(chain_pem).map_err(TlsError::Invalid)?;
    let mut parsed = Vec::with_capacity(ders.len());
    for (i, der) in ders.iter().enumerate() {
        let (_, cert) = parse_x509_certificate(der)
            .map_err(|e| TlsError::Invalid(format!("certificate {} of {}: unreadable: {e}", i + 1, ders.len())))?;
        parsed.push(cert);
    }
    let certificates = parsed
        .iter()
        .zip(&ders)
        .map(|(c, der)| cert_info(c, der))
        .collect::<Result<Vec<_>>>()?;
    let host = host.map(host_only).filter(|h| !h.is_empty());
    let kind = if host.is_none() && certificates.len() == 1 && is_pure_ca(&certificates[0]) {
        ChainKind::Ca
    } else {
        ChainKind::Server
    };
    let mut findings = Vec::new();
    let ctx = Ctx {
        certs: &certificates,
        parsed: &parsed,
        host: host.as_deref(),
        now,
    };
    match kind {
        ChainKind::Server => ctx.check_server(&mut findings),
        ChainKind::Ca => ctx.check_issuer(0, &mut findings),
    }
    for i in 0..certificates.len() {
        ctx.check_common(i, &mut findings);
    }
    // Errors first, keeping the order of discovery within each severity.
    findings.sort_by_key(|f| f.severity != Severity::Error);
    Ok(Report {
        host,
        kind,
        certificates,
        findings,
    })
}

/// A CA certificate that cannot serve TLS itself: the shape `wharf cert ca` produces.
fn is_pure_ca(c: &CertInfo) -> bool {
    c.is_ca == Some(true) && c.has_key_usage("keyCertSign") && !c.has_key_usage("digitalSignature")
}

/// Strips a scheme, path, port and IPv6 brackets: `https://[::1]:5000/v2/` → `::1`.
pub fn host_only(s: &str) -> String {
    let s = s.trim();
    let s = s.split_once("://").map_or(s, |(_, rest)| rest);
    let s = s.split('/').next().unwrap_or_default();
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default().to_string();
    }
    if s.parse::<IpAddr>().is_ok() {
        return s.to_string();
    }
    s.rsplit_once(':').map_or(s, |(h, _)| h).trim_end_matches('.').to_ascii_lowercase()
}

/// Go's hostname rule: an IP matches IP SANs only; a name matches DNS SANs case-insensitively,
/// with `*` standing for exactly one leftmost label.
pub fn matches_host(c: &CertInfo, host: &str) -> bool {
    match host.parse::<IpAddr>() {
        Ok(ip) => c.ip_addresses.contains(&ip),
        Err(_) => c.dns_names.iter().any(|pattern| dns_matches(pattern, host)),
    }
}

pub fn dns_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.trim_end_matches('.').to_ascii_lowercase();
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let (p, h): (Vec<&str>, Vec<&str>) = (pattern.split('.').collect(), host.split('.').collect());
    p.len() == h.len()
        && p.iter()
            .zip(&h)
            .enumerate()
            .all(|(i, (pl, hl))| (i == 0 && *pl == "*" && !hl.is_empty()) || pl == hl)
}

/// The error Go's crypto/x509 reports when `host` does not match `c` (HostnameError).
pub fn go_hostname_error(c: &CertInfo, host: &str) -> String {
    if !c.has_san_extension && c.common_name.as_deref().is_some_and(|cn| dns_matches(cn, host)) {
        return "x509: certificate relies on legacy Common Name field, use SANs instead".into();
    }
    let valid = if host.parse::<IpAddr>().is_ok() {
        if c.ip_addresses.is_empty() {
            return format!("x509: cannot validate certificate for {host} because it doesn't contain any IP SANs");
        }
        c.ip_addresses.iter().map(|ip| ip.to_string()).collect::<Vec<_>>().join(", ")
    } else {
        c.dns_names.join(", ")
    };
    if valid.is_empty() {
        return format!("x509: certificate is not valid for any names, but wanted to match {host}");
    }
    format!("x509: certificate is valid for {valid}, not {host}")
}

struct Ctx<'a> {
    certs: &'a [CertInfo],
    parsed: &'a [X509Certificate<'a>],
    host: Option<&'a str>,
    now: OffsetDateTime,
}

impl Ctx<'_> {
    fn check_server(&self, out: &mut Vec<Finding>) {
        self.check_names(out);
        self.check_leaf_usage(out);
        self.check_leaf_shape(out);
        for i in 1..self.certs.len() {
            self.check_link(i, out);
            self.check_issuer(i, out);
        }
    }

    /// subjectAltName presence and the host match.
    fn check_names(&self, out: &mut Vec<Finding>) {
        let leaf = &self.certs[0];
        if leaf.dns_names.is_empty() && leaf.ip_addresses.is_empty() {
            let cn = leaf.common_name.as_deref().unwrap_or("");
            out.push(error(
                format!(
                    "the server certificate has no subjectAltName (DNS or IP); Docker and every Go client ignore the \
                     Common Name {cn:?} and fail with \"x509: certificate relies on legacy Common Name field, use SANs instead\""
                ),
                self.reissue_fix(),
            ));
            return;
        }
        let Some(host) = self.host else { return };
        if !matches_host(leaf, host) {
            out.push(error(
                format!(
                    "{host} is not among the certificate's names; clients fail with \"{}\"",
                    go_hostname_error(leaf, host)
                ),
                self.reissue_fix(),
            ));
        }
    }

    /// extendedKeyUsage and keyUsage of the server certificate.
    fn check_leaf_usage(&self, out: &mut Vec<Finding>) {
        let leaf = &self.certs[0];
        match &leaf.ext_key_usage {
            Some(ekus) if !leaf.eku_allows_server_auth() => out.push(error(
                format!(
                    "the server certificate's extendedKeyUsage ({}) lacks serverAuth; clients fail with \
                     \"x509: certificate specifies an incompatible key usage\"",
                    ekus.join(", ")
                ),
                self.reissue_fix(),
            )),
            Some(_) => {}
            None => out.push(warning(
                "the server certificate has no extendedKeyUsage; macOS and iOS (Docker Desktop for Mac) require serverAuth".into(),
                self.reissue_fix(),
            )),
        }
        if leaf.key_usage.is_some() && !leaf.has_key_usage("digitalSignature") {
            out.push(error(
                format!(
                    "the server certificate's keyUsage ({}) lacks digitalSignature, which TLS 1.3 and ECDSA need; \
                     OpenSSL clients (curl) fail with \"unsuitable certificate purpose\"",
                    leaf.key_usage.as_deref().unwrap_or_default().join(", ")
                ),
                self.reissue_fix(),
            ));
        }
    }

    /// Self-signed, CA-as-server and lifetime problems of the server certificate.
    fn check_leaf_shape(&self, out: &mut Vec<Finding>) {
        let leaf = &self.certs[0];
        if leaf.self_signed {
            out.push(warning(
                "the server certificate is self-signed: every client must install this very file as its CA \
                 (/etc/docker/certs.d/HOST:PORT/ca.crt) and again each time it is replaced"
                    .into(),
                format!(
                    "use a CA that outlives server certificates: wharf cert ca --out CA_DIR, then {}",
                    self.reissue_command()
                ),
            ));
        }
        if leaf.is_ca == Some(true) {
            out.push(warning(
                "the server certificate is also a CA (basicConstraints CA:true); Go clients (Docker, containerd, podman, \
                 skopeo) accept it where this very certificate is their CA, but rustls-based clients and Firefox reject a CA \
                 certificate presented as a server certificate (CaUsedAsEndEntity)"
                    .into(),
                self.reissue_fix(),
            ));
        }
        let lifetime = (leaf.not_after - leaf.not_before).whole_days();
        if lifetime > APPLE_MAX_VALIDITY_DAYS {
            out.push(warning(
                format!(
                    "the server certificate is valid for {lifetime} days; macOS and iOS reject server certificates valid for \
                     more than {APPLE_MAX_VALIDITY_DAYS} days"
                ),
                format!("{} --days {APPLE_MAX_VALIDITY_DAYS}", self.reissue_command()),
            ));
        }
    }

    /// Certificate `i` must have issued certificate `i - 1`.
    fn check_link(&self, i: usize, out: &mut Vec<Finding>) {
        let (child, parent) = (&self.parsed[i - 1], &self.parsed[i]);
        if child.issuer().as_raw() != parent.subject().as_raw() {
            out.push(error(
                format!(
                    "certificate {} ({}) was not issued by certificate {} ({}): the chain is out of order or holds an \
                     unrelated certificate; clients fail with \"x509: certificate signed by unknown authority\"",
                    i,
                    self.certs[i - 1].subject,
                    i + 1,
                    self.certs[i].subject
                ),
                "put the server certificate first, then its issuer, then the issuer's issuer; drop unrelated certificates".into(),
            ));
        } else if child.verify_signature(Some(parent.public_key())).is_err() {
            out.push(error(
                format!(
                    "certificate {i}'s signature does not verify with the key of certificate {} ({}): a different CA with the \
                     same name signed it; clients fail with \"x509: certificate signed by unknown authority\"",
                    i + 1,
                    self.certs[i].subject
                ),
                format!("re-issue with the CA actually in use: {}", self.reissue_command()),
            ));
        }
    }

    /// Certificate `i` is used as a CA.
    fn check_issuer(&self, i: usize, out: &mut Vec<Finding>) {
        let c = &self.certs[i];
        let new_ca = "create a proper CA with: wharf cert ca --out CA_DIR, re-issue the server certificate with it \
                      and give clients CA_DIR/ca.crt";
        let cannot_sign = "clients fail with \"x509: certificate signed by unknown authority (possibly because of \
                           \\\"x509: invalid signature: parent certificate cannot sign this kind of certificate\\\" ...)\"";
        if c.is_ca != Some(true) {
            let why = if c.is_ca.is_none() {
                "has no basicConstraints extension"
            } else {
                "has basicConstraints CA:false"
            };
            out.push(error(
                format!("certificate {} ({}) is used as a CA but {why}; {cannot_sign}", i + 1, c.subject),
                new_ca.into(),
            ));
        }
        if c.key_usage.is_some() && !c.has_key_usage("keyCertSign") {
            out.push(error(
                format!(
                    "certificate {} ({}) is used as a CA but its keyUsage lacks keyCertSign; {cannot_sign}",
                    i + 1,
                    c.subject
                ),
                new_ca.into(),
            ));
        }
        if !c.eku_allows_server_auth() {
            out.push(error(
                format!(
                    "CA certificate {} ({}) restricts extendedKeyUsage to {} without serverAuth; Go clients fail with \
                     \"x509: certificate specifies an incompatible key usage\"",
                    i + 1,
                    c.subject,
                    c.ext_key_usage.as_deref().unwrap_or_default().join(", ")
                ),
                new_ca.into(),
            ));
        }
        // pathLenConstraint counts the CA certificates below this one (the server certificate excluded).
        let cas_below = i.saturating_sub(1) as u32;
        if let Some(limit) = c.path_len.filter(|l| cas_below > *l) {
            out.push(error(
                format!(
                    "CA certificate {} ({}) allows {limit} intermediate CA(s) below it but the chain has {cas_below}",
                    i + 1,
                    c.subject
                ),
                new_ca.into(),
            ));
        }
    }

    /// Validity period, key strength and signature algorithm, for every certificate.
    fn check_common(&self, i: usize, out: &mut Vec<Finding>) {
        let c = &self.certs[i];
        let what = self.describe(i);
        let fix = if i == 0 && self.kind_is_server() {
            self.reissue_fix()
        } else {
            self.new_ca_fix()
        };
        if self.now > c.not_after {
            out.push(error(
                format!(
                    "{what} expired on {}; clients fail with \"x509: certificate has expired or is not yet valid: current time {} \
                     is after {}\"",
                    fmt_time(c.not_after),
                    go_time(self.now),
                    go_time(c.not_after)
                ),
                fix.clone(),
            ));
        } else if self.now < c.not_before {
            out.push(error(
                format!(
                    "{what} is not valid before {} (is a clock wrong?); clients fail with \"x509: certificate has expired or is \
                     not yet valid: current time {} is before {}\"",
                    fmt_time(c.not_before),
                    go_time(self.now),
                    go_time(c.not_before)
                ),
                "check the clock of the machine that made it and of the clients (timedatectl), or re-issue it".into(),
            ));
        } else if c.not_after - self.now < Duration::days(EXPIRY_WARNING_DAYS) {
            out.push(warning(
                format!(
                    "{what} expires in {} day(s), on {}",
                    (c.not_after - self.now).whole_days(),
                    fmt_time(c.not_after)
                ),
                fix.clone(),
            ));
        }
        self.check_key(i, &what, &fix, out);
    }

    fn check_key(&self, i: usize, what: &str, fix: &str, out: &mut Vec<Finding>) {
        let c = &self.certs[i];
        match c.key_type.as_str() {
            "RSA" if c.key_bits < 2048 => out.push(error(
                format!(
                    "{what} has a {}-bit RSA key; OpenSSL (curl), macOS and recent Go reject RSA keys under 2048 bits",
                    c.key_bits
                ),
                fix.to_string(),
            )),
            "RSA" | "ECDSA" | "Ed25519" => {}
            other => out.push(error(format!("{what} has an unsupported key type ({other})"), fix.to_string())),
        }
        let weak = ["sha1", "md5", "md2"]
            .iter()
            .any(|h| c.signature_algorithm.to_ascii_lowercase().contains(h));
        // A trust anchor's own signature is never checked, so only non-self-signed ones matter.
        if weak && !c.self_signed {
            out.push(error(
                format!(
                    "{what} is signed with {}; clients fail with \"x509: cannot verify signature: insecure algorithm\"",
                    c.signature_algorithm
                ),
                fix.to_string(),
            ));
        }
    }

    fn kind_is_server(&self) -> bool {
        !(self.certs.len() == 1 && self.host.is_none() && is_pure_ca(&self.certs[0]))
    }

    fn describe(&self, i: usize) -> String {
        let role = if i == 0 && self.kind_is_server() {
            "the server certificate"
        } else {
            "the CA certificate"
        };
        if self.certs.len() == 1 {
            format!("{role} ({})", self.certs[i].subject)
        } else {
            format!("certificate {} of {}, {role} ({})", i + 1, self.certs.len(), self.certs[i].subject)
        }
    }

    /// `wharf cert issue` with the certificate's current names plus the host being checked.
    fn reissue_command(&self) -> String {
        let leaf = &self.certs[0];
        let mut ips: Vec<String> = leaf.ip_addresses.iter().map(|ip| ip.to_string()).collect();
        let mut dns: Vec<String> = leaf.dns_names.clone();
        if dns.is_empty() && ips.is_empty() {
            if let Some(cn) = leaf.common_name.as_deref().filter(|cn| !cn.is_empty()) {
                push_name(cn, &mut ips, &mut dns);
            }
        }
        if let Some(host) = self.host {
            push_name(host, &mut ips, &mut dns);
        }
        let mut cmd = String::from("wharf cert issue --ca CA_DIR --out CERT_DIR");
        for ip in ips {
            cmd.push_str(&format!(" --ip {ip}"));
        }
        for name in dns {
            cmd.push_str(&format!(" --dns {name}"));
        }
        if self.host.is_none() && leaf.dns_names.is_empty() && leaf.ip_addresses.is_empty() {
            cmd.push_str(" --local");
        }
        cmd
    }

    fn reissue_fix(&self) -> String {
        format!(
            "{} (CA_DIR holds ca.crt and ca.key; make one with: wharf cert ca --out CA_DIR), then point \
             REGISTRY_HTTP_TLS_CERTIFICATE / REGISTRY_HTTP_TLS_KEY at CERT_DIR/server.crt and CERT_DIR/server.key",
            self.reissue_command()
        )
    }

    fn new_ca_fix(&self) -> String {
        format!(
            "wharf cert ca --out CA_DIR, then {}, and install CA_DIR/ca.crt on every client \
             (/etc/docker/certs.d/HOST:PORT/ca.crt)",
            self.reissue_command()
        )
    }
}

fn push_name(name: &str, ips: &mut Vec<String>, dns: &mut Vec<String>) {
    let name = name.to_ascii_lowercase();
    let list = if name.parse::<IpAddr>().is_ok() { ips } else { dns };
    if !list.contains(&name) {
        list.push(name);
    }
}

fn error(problem: String, fix: String) -> Finding {
    Finding {
        severity: Severity::Error,
        problem,
        fix,
    }
}

fn warning(problem: String, fix: String) -> Finding {
    Finding {
        severity: Severity::Warning,
        problem,
        fix,
    }
}

/// The facts of one DER certificate (as [`inspect`] reports them for each of a chain).
pub fn cert_info_der(der: &[u8]) -> Result<CertInfo> {
    let (_, c) = parse_x509_certificate(der).map_err(|e| TlsError::Invalid(format!("unreadable certificate: {e}")))?;
    cert_info(&c, der)
}

fn cert_info(c: &X509Certificate<'_>, der: &[u8]) -> Result<CertInfo> {
    let bad = |e: X509Error| TlsError::Invalid(format!("certificate {}: {e}", c.subject()));
    let mut info = CertInfo {
        subject: c.subject().to_string(),
        issuer: c.issuer().to_string(),
        serial: c.raw_serial_as_string(),
        not_before: c.validity().not_before.to_datetime(),
        not_after: c.validity().not_after.to_datetime(),
        dns_names: Vec::new(),
        ip_addresses: Vec::new(),
        has_san_extension: false,
        common_name: c
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned),
        key_type: String::new(),
        key_bits: 0,
        curve: None,
        signature_algorithm: signature_name(&c.signature_algorithm.algorithm),
        ext_key_usage: c.extended_key_usage().map_err(bad)?.map(|e| eku_names(e.value)),
        key_usage: c.key_usage().map_err(bad)?.map(|k| key_usage_names(k.value)),
        is_ca: None,
        path_len: None,
        self_signed: c.subject().as_raw() == c.issuer().as_raw() && c.verify_signature(None).is_ok(),
        fingerprint_sha256: fingerprint_der(der),
    };
    if let Some(san) = c.subject_alternative_name().map_err(bad)? {
        info.has_san_extension = true;
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => info.dns_names.push(d.to_string()),
                GeneralName::IPAddress(b) => info.ip_addresses.extend(ip_from_bytes(b)),
                _ => {}
            }
        }
    }
    if let Some(bc) = c.basic_constraints().map_err(bad)? {
        info.is_ca = Some(bc.value.ca);
        info.path_len = bc.value.path_len_constraint;
    }
    (info.key_type, info.key_bits, info.curve) = key_description(c.public_key());
    Ok(info)
}

fn ip_from_bytes(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(b).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(b).ok()?)),
        _ => None,
    }
}

fn key_description(spki: &SubjectPublicKeyInfo<'_>) -> (String, usize, Option<String>) {
    match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => ("RSA".into(), rsa.key_size(), None),
        Ok(PublicKey::EC(point)) => {
            let curve_oid = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string());
            let (curve, bits) = match curve_oid.as_deref() {
                Some("1.2.840.10045.3.1.7") => ("P-256".to_string(), 256),
                Some("1.3.132.0.34") => ("P-384".to_string(), 384),
                Some("1.3.132.0.35") => ("P-521".to_string(), 521),
                other => (other.unwrap_or("unknown curve").to_string(), point.key_size()),
            };
            ("ECDSA".into(), bits, Some(curve))
        }
        _ => match spki.algorithm.algorithm.to_id_string().as_str() {
            "1.3.101.112" => ("Ed25519".into(), 256, None),
            oid => (format!("unknown ({oid})"), 0, None),
        },
    }
}

fn signature_name(oid: &Oid<'_>) -> String {
    let id = oid.to_id_string();
    let name = match id.as_str() {
        "1.2.840.113549.1.1.4" => "md5WithRSAEncryption",
        "1.2.840.113549.1.1.5" => "sha1WithRSAEncryption",
        "1.2.840.113549.1.1.10" => "rsassaPss",
        "1.2.840.113549.1.1.11" => "sha256WithRSAEncryption",
        "1.2.840.113549.1.1.12" => "sha384WithRSAEncryption",
        "1.2.840.113549.1.1.13" => "sha512WithRSAEncryption",
        "1.2.840.10045.4.1" => "ecdsa-with-SHA1",
        "1.2.840.10045.4.3.2" => "ecdsa-with-SHA256",
        "1.2.840.10045.4.3.3" => "ecdsa-with-SHA384",
        "1.2.840.10045.4.3.4" => "ecdsa-with-SHA512",
        "1.3.101.112" => "ED25519",
        _ => return id,
    };
    name.to_string()
}

fn eku_names(e: &ExtendedKeyUsage<'_>) -> Vec<String> {
    let known = [
        (e.any, "anyExtendedKeyUsage"),
        (e.server_auth, "serverAuth"),
        (e.client_auth, "clientAuth"),
        (e.code_signing, "codeSigning"),
        (e.email_protection, "emailProtection"),
        (e.time_stamping, "timeStamping"),
        (e.ocsp_signing, "OCSPSigning"),
    ];
    let mut names: Vec<String> = known.iter().filter(|(set, _)| *set).map(|(_, n)| n.to_string()).collect();
    names.extend(e.other.iter().map(|o| o.to_id_string()));
    names
}

fn key_usage_names(k: &KeyUsage) -> Vec<String> {
    let bits = [
        (k.digital_signature(), "digitalSignature"),
        (k.non_repudiation(), "nonRepudiation"),
        (k.key_encipherment(), "keyEncipherment"),
        (k.data_encipherment(), "dataEncipherment"),
        (k.key_agreement(), "keyAgreement"),
        (k.key_cert_sign(), "keyCertSign"),
        (k.crl_sign(), "cRLSign"),
        (k.encipher_only(), "encipherOnly"),
        (k.decipher_only(), "decipherOnly"),
    ];
    bits.iter().filter(|(set, _)| *set).map(|(_, n)| n.to_string()).collect()
}

/// `2025-01-31 12:00:00 UTC`
pub fn fmt_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Go's RFC 3339 rendering in its x509 expiry error: `2025-01-31T12:00:00Z`.
pub fn go_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.certificates.len();
        for (i, c) in self.certificates.iter().enumerate() {
            let role = match (i, self.kind) {
                (0, ChainKind::Server) => "server certificate",
                (0, ChainKind::Ca) => "CA certificate",
                _ => "issuer",
            };
            writeln!(f, "Certificate {} of {n} ({role})", i + 1)?;
            write_cert(f, c)?;
            writeln!(f)?;
        }
        let against = self.host.as_deref().map(|h| format!(" for {h}")).unwrap_or_default();
        if self.findings.is_empty() {
            let hint = if self.host.is_none() && self.kind == ChainKind::Server {
                " (names not checked: add --host HOST[:PORT] to check the address clients use)"
            } else {
                ""
            };
            return writeln!(f, "No problems found{against}{hint}.");
        }
        writeln!(f, "Findings{against}:")?;
        let mut shown_fixes: Vec<&str> = Vec::new();
        for finding in &self.findings {
            let tag = match finding.severity {
                Severity::Error => "ERROR  ",
                Severity::Warning => "WARNING",
            };
            writeln!(f, "  {tag} {}", finding.problem)?;
            if shown_fixes.contains(&finding.fix.as_str()) {
                writeln!(f, "          fix: the same command as above")?;
            } else {
                writeln!(f, "          fix: {}", finding.fix)?;
                shown_fixes.push(&finding.fix);
            }
        }
        Ok(())
    }
}

fn write_cert(f: &mut fmt::Formatter<'_>, c: &CertInfo) -> fmt::Result {
    let join = |v: &[String]| if v.is_empty() { "(none)".to_string() } else { v.join(", ") };
    writeln!(f, "  Subject:        {}", c.subject)?;
    writeln!(
        f,
        "  Issuer:         {}{}",
        c.issuer,
        if c.self_signed { " (self-signed)" } else { "" }
    )?;
    writeln!(f, "  Serial:         {}", c.serial)?;
    writeln!(f, "  Valid from:     {}", fmt_time(c.not_before))?;
    writeln!(f, "  Valid until:    {}", fmt_time(c.not_after))?;
    writeln!(f, "  DNS names:      {}", join(&c.dns_names))?;
    let ips: Vec<String> = c.ip_addresses.iter().map(|ip| ip.to_string()).collect();
    writeln!(f, "  IP addresses:   {}", join(&ips))?;
    let key = match &c.curve {
        Some(curve) => format!("{} {curve}", c.key_type),
        None => format!("{} {} bits", c.key_type, c.key_bits),
    };
    writeln!(f, "  Key:            {key}")?;
    writeln!(f, "  Signature:      {}", c.signature_algorithm)?;
    let absent = "(extension absent)".to_string();
    writeln!(f, "  Key usage:      {}", c.key_usage.as_deref().map_or(absent.clone(), join))?;
    writeln!(f, "  Ext. key usage: {}", c.ext_key_usage.as_deref().map_or(absent.clone(), join))?;
    let ca = match (c.is_ca, c.path_len) {
        (None, _) => absent,
        (Some(true), Some(n)) => format!("CA:true, pathlen {n}"),
        (Some(true), None) => "CA:true".into(),
        (Some(false), _) => "CA:false".into(),
    };
    writeln!(f, "  Constraints:    {ca}")?;
    writeln!(f, "  SHA-256:        {}", c.fingerprint_sha256)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::certs::{self, CertKey};
    use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};

    fn ca() -> CertKey {
        certs::new_ca("Test CA", 365).unwrap()
    }

    fn server(ips: &[&str], dns: &[&str]) -> CertKey {
        let ips: Vec<IpAddr> = ips.iter().map(|s| s.parse().unwrap()).collect();
        let dns: Vec<String> = dns.iter().map(|s| s.to_string()).collect();
        certs::issue_server(&ca(), &ips, &dns, 90).unwrap()
    }

    /// A self-signed certificate built from `edit`ed parameters, like `openssl req -x509` makes.
    fn self_signed(edit: impl FnOnce(&mut CertificateParams)) -> String {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::default();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, "registry.lan");
        p.not_before = OffsetDateTime::now_utc() - Duration::days(1);
        p.not_after = OffsetDateTime::now_utc() + Duration::days(300);
        edit(&mut p);
        p.self_signed(&key).unwrap().pem()
    }

    fn problems(r: &Report, sev: Severity) -> Vec<&str> {
        r.findings
            .iter()
            .filter(|f| f.severity == sev)
            .map(|f| f.problem.as_str())
            .collect()
    }

    #[test]
    fn good_chain_has_no_findings() {
        let s = server(&["10.0.0.5"], &["registry.lan"]);
        for host in ["10.0.0.5", "10.0.0.5:5000", "REGISTRY.lan:443", "https://registry.lan/v2/"] {
            let r = inspect(&s.cert_pem, Some(host)).unwrap();
            assert!(r.findings.is_empty(), "{host}: {r}");
        }
        let r = inspect(&s.cert_pem, None).unwrap();
        assert_eq!(r.kind, ChainKind::Server);
        assert_eq!(r.certificates.len(), 2);
        let leaf = &r.certificates[0];
        assert_eq!(leaf.dns_names, vec!["registry.lan"]);
        assert_eq!(leaf.ip_addresses, vec!["10.0.0.5".parse::<IpAddr>().unwrap()]);
        assert_eq!(
            (leaf.key_type.as_str(), leaf.key_bits, leaf.curve.as_deref()),
            ("ECDSA", 256, Some("P-256"))
        );
        assert_eq!(leaf.signature_algorithm, "ecdsa-with-SHA256");
        assert_eq!(leaf.ext_key_usage.as_deref(), Some(&["serverAuth".to_string()][..]));
        assert_eq!(leaf.is_ca, Some(false));
        assert!(!leaf.self_signed && r.certificates[1].self_signed);
        assert_eq!(leaf.fingerprint_sha256, certs::fingerprint_sha256(&s.cert_pem).unwrap());
        let text = r.to_string();
        assert!(
            text.contains("No problems found") && text.contains("IP addresses:   10.0.0.5"),
            "{text}"
        );
    }

    #[test]
    fn host_mismatch_uses_go_messages() {
        let s = server(&["10.0.0.5"], &["registry.lan"]);
        let r = inspect(&s.cert_pem, Some("10.0.0.6:5000")).unwrap();
        let errs = problems(&r, Severity::Error);
        assert_eq!(errs.len(), 1, "{r}");
        assert!(
            errs[0].contains("x509: certificate is valid for 10.0.0.5, not 10.0.0.6"),
            "{}",
            errs[0]
        );
        assert!(
            r.findings[0].fix.contains("--ip 10.0.0.5 --ip 10.0.0.6 --dns registry.lan"),
            "{}",
            r.findings[0].fix
        );
        assert!(r.has_errors());

        let dns_only = server(&[], &["registry.lan"]);
        let r = inspect(&dns_only.cert_pem, Some("192.168.1.2")).unwrap();
        assert!(r.findings[0]
            .problem
            .contains("cannot validate certificate for 192.168.1.2 because it doesn't contain any IP SANs"));
        let r = inspect(&dns_only.cert_pem, Some("other.lan")).unwrap();
        assert!(r.findings[0]
            .problem
            .contains("x509: certificate is valid for registry.lan, not other.lan"));
    }

    #[test]
    fn wildcard_matches_one_label() {
        let s = server(&[], &["*.example.com"]);
        assert!(inspect(&s.cert_pem, Some("reg.example.com")).unwrap().findings.is_empty());
        assert!(inspect(&s.cert_pem, Some("a.reg.example.com")).unwrap().has_errors());
        assert!(inspect(&s.cert_pem, Some("example.com")).unwrap().has_errors());
    }

    #[test]
    fn no_san_is_the_legacy_common_name_error() {
        // What `openssl req -x509 -subj /CN=registry.lan` produces: CA:true, no SAN, no EKU.
        let pem = self_signed(|p| p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained));
        let r = inspect(&pem, Some("registry.lan")).unwrap();
        let errs = problems(&r, Severity::Error);
        assert_eq!(errs.len(), 1, "{r}");
        assert!(errs[0].contains("relies on legacy Common Name field"), "{}", errs[0]);
        assert!(
            r.findings[0]
                .fix
                .contains("wharf cert issue --ca CA_DIR --out CERT_DIR --dns registry.lan"),
            "{}",
            r.findings[0].fix
        );
        let warns = problems(&r, Severity::Warning);
        assert!(warns.iter().any(|w| w.contains("self-signed")), "{warns:?}");
        assert!(warns.iter().any(|w| w.contains("CaUsedAsEndEntity")), "{warns:?}");
        assert!(warns.iter().any(|w| w.contains("no extendedKeyUsage")), "{warns:?}");
        // Without --host the missing SAN is still an error.
        assert!(inspect(&pem, None).unwrap().has_errors());
    }

    #[test]
    fn eku_without_server_auth() {
        let pem = self_signed(|p| {
            p.subject_alt_names = vec![rcgen::SanType::DnsName("registry.lan".try_into().unwrap())];
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        });
        let r = inspect(&pem, Some("registry.lan")).unwrap();
        assert!(
            problems(&r, Severity::Error)[0].contains("x509: certificate specifies an incompatible key usage"),
            "{r}"
        );
    }

    #[test]
    fn key_usage_without_digital_signature() {
        let pem = self_signed(|p| {
            p.subject_alt_names = vec![rcgen::SanType::DnsName("registry.lan".try_into().unwrap())];
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            p.key_usages = vec![KeyUsagePurpose::KeyEncipherment];
        });
        let r = inspect(&pem, Some("registry.lan")).unwrap();
        assert!(
            problems(&r, Severity::Error).iter().any(|p| p.contains("lacks digitalSignature")),
            "{r}"
        );
    }

    #[test]
    fn expiry_and_not_yet_valid() {
        let s = server(&["10.0.0.5"], &[]);
        let later = OffsetDateTime::now_utc() + Duration::days(100);
        let r = inspect_at(&s.cert_pem, Some("10.0.0.5"), later).unwrap();
        let errs = problems(&r, Severity::Error);
        assert!(
            errs.iter()
                .any(|e| e.contains("expired") && e.contains("x509: certificate has expired or is not yet valid")),
            "{r}"
        );
        let soon = OffsetDateTime::now_utc() + Duration::days(75);
        let r = inspect_at(&s.cert_pem, Some("10.0.0.5"), soon).unwrap();
        assert!(!r.has_errors());
        assert!(problems(&r, Severity::Warning)[0].contains("expires in"), "{r}");
        let before = OffsetDateTime::now_utc() - Duration::days(2);
        let r = inspect_at(&s.cert_pem, Some("10.0.0.5"), before).unwrap();
        assert!(problems(&r, Severity::Error).iter().any(|e| e.contains("not valid before")), "{r}");
    }

    #[test]
    fn long_lifetime_warns_for_macos() {
        let c = certs::new_ca("Long-lived CA", 3650).unwrap();
        let s = certs::issue_server(&c, &["10.0.0.5".parse().unwrap()], &[], 1000).unwrap();
        let r = inspect(&s.cert_pem, Some("10.0.0.5")).unwrap();
        assert!(!r.has_errors());
        assert!(problems(&r, Severity::Warning).iter().any(|w| w.contains("825")), "{r}");
    }

    #[test]
    fn issuer_that_is_not_a_ca() {
        // Sign a server certificate with a leaf (CA:false) certificate's key.
        let not_ca = server(&[], &["fake-ca.lan"]);
        let leaf_key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec!["registry.lan".to_string()]).unwrap();
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.not_before = OffsetDateTime::now_utc() - Duration::days(1);
        p.not_after = OffsetDateTime::now_utc() + Duration::days(30 + 5);
        let issuer_key = KeyPair::from_pem(&not_ca.key_pem).unwrap();
        let issuer = rcgen::Issuer::from_ca_cert_pem(&not_ca.cert_pem, issuer_key).unwrap();
        let leaf = p.signed_by(&leaf_key, &issuer).unwrap();
        let chain = format!("{}{}", leaf.pem(), not_ca.leaf_pem().unwrap());
        let r = inspect(&chain, Some("registry.lan")).unwrap();
        let errs = problems(&r, Severity::Error);
        assert!(
            errs.iter().any(|e| e.contains("used as a CA but has basicConstraints CA:false")),
            "{r}"
        );
        assert!(errs.iter().any(|e| e.contains("lacks keyCertSign")), "{r}");
    }

    #[test]
    fn chain_out_of_order() {
        let s = server(&["10.0.0.5"], &[]);
        let other_ca = ca();
        let chain = format!("{}{}", s.leaf_pem().unwrap(), other_ca.cert_pem);
        let r = inspect(&chain, Some("10.0.0.5")).unwrap();
        assert!(
            problems(&r, Severity::Error)
                .iter()
                .any(|e| e.contains("signature does not verify")),
            "{r}"
        );
        let unrelated = format!("{}{}", s.leaf_pem().unwrap(), certs::new_ca("Another", 10).unwrap().cert_pem);
        let r = inspect(&unrelated, Some("10.0.0.5")).unwrap();
        assert!(problems(&r, Severity::Error).iter().any(|e| e.contains("was not issued by")), "{r}");
    }

    #[test]
    fn lone_ca_is_recognised() {
        let r = inspect(&ca().cert_pem, None).unwrap();
        assert_eq!(r.kind, ChainKind::Ca);
        assert!(r.findings.is_empty(), "{r}");
        assert!(r.to_string().contains("(CA certificate)"));
    }

    #[test]
    fn weak_rsa_key() {
        // A 1024-bit RSA key would need an RSA generator; check the rule on the parsed data instead.
        let s = server(&["10.0.0.5"], &[]);
        let mut r = inspect(&s.cert_pem, None).unwrap();
        r.certificates[0].key_type = "RSA".into();
        r.certificates[0].key_bits = 1024;
        let ctx = Ctx {
            certs: &r.certificates,
            parsed: &[],
            host: None,
            now: OffsetDateTime::now_utc(),
        };
        let mut out = Vec::new();
        ctx.check_key(0, "the server certificate", "fix", &mut out);
        assert!(out[0].problem.contains("1024-bit RSA"), "{out:?}");
    }

    #[test]
    fn host_only_forms() {
        assert_eq!(host_only("[::1]:5000"), "::1");
        assert_eq!(host_only("::1"), "::1");
        assert_eq!(host_only("10.0.0.5:5000"), "10.0.0.5");
        assert_eq!(host_only("https://Reg.Lan:5000/v2/"), "reg.lan");
        assert_eq!(host_only("reg.lan."), "reg.lan");
    }

    #[test]
    fn rejects_non_certificates() {
        assert!(inspect("not pem", None).is_err());
        let key = KeyPair::generate().unwrap().serialize_pem();
        assert!(inspect(&key, None).unwrap_err().to_string().contains("swapped"));
    }
}
