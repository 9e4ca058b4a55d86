//! Certificate generation: a small private CA, server and client certificates it signs, and
//! certificate signing requests for an outside CA. Keys are ECDSA P-256 signed with SHA-256.
//!
//! What clients require, and so what every server certificate here carries: the names clients
//! connect to as subjectAltName entries (Go ignores the Common Name), extendedKeyUsage serverAuth
//! (Go and macOS check it), keyUsage digitalSignature (OpenSSL checks it; TLS 1.3 needs it), and
//! a validity of at most 825 days by default (macOS rejects longer ones).

use super::keys;
use super::{Result, TlsError};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType, SerialNumber,
};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

/// Default lifetime of a CA certificate.
pub const CA_VALIDITY_DAYS: u32 = 3650;
/// Default lifetime of a server or client certificate: the most macOS and iOS accept.
pub const SERVER_VALIDITY_DAYS: u32 = 825;

/// A PEM certificate (or chain, leaf first) and its PEM private key.
#[derive(Clone, PartialEq, Eq)]
pub struct CertKey {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for CertKey {
    // The key never reaches logs or panics messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertKey")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"[redacted]")
            .finish()
    }
}

impl CertKey {
    /// `<dir>/<stem>.crt`
    pub fn cert_path(dir: &Path, stem: &str) -> PathBuf {
        dir.join(format!("{stem}.crt"))
    }

    /// `<dir>/<stem>.key`
    pub fn key_path(dir: &Path, stem: &str) -> PathBuf {
        dir.join(format!("{stem}.key"))
    }

    /// Reads `<dir>/<stem>.crt` and `<dir>/<stem>.key`.
    pub fn load(dir: &Path, stem: &str) -> Result<CertKey> {
        Self::load_files(&Self::cert_path(dir, stem), &Self::key_path(dir, stem))
    }

    /// Reads a certificate file and a key file, checking that both hold what they should.
    pub fn load_files(cert_path: &Path, key_path: &Path) -> Result<CertKey> {
        let cert_pem = std::fs::read_to_string(cert_path).map_err(|e| TlsError::io(cert_path, e))?;
        let key_pem = std::fs::read_to_string(key_path).map_err(|e| TlsError::io(key_path, e))?;
        keys::certificates(&cert_pem).map_err(|p| TlsError::file(cert_path, p))?;
        keys::private_key(&key_pem).map_err(|p| TlsError::file(key_path, p))?;
        Ok(CertKey { cert_pem, key_pem })
    }

    /// Writes `<dir>/<stem>.crt` (mode 0644) and `<dir>/<stem>.key` (mode 0600), each atomically
    /// (temporary file, fsync, rename), creating `dir` if needed. Returns (cert path, key path).
    pub fn save(&self, dir: &Path, stem: &str) -> Result<(PathBuf, PathBuf)> {
        std::fs::create_dir_all(dir).map_err(|e| TlsError::io(dir, e))?;
        let (cert_path, key_path) = (Self::cert_path(dir, stem), Self::key_path(dir, stem));
        write_atomic(&key_path, self.key_pem.as_bytes(), 0o600)?;
        write_atomic(&cert_path, self.cert_pem.as_bytes(), 0o644)?;
        Ok((cert_path, key_path))
    }

    /// The first certificate of `cert_pem` alone, as PEM.
    pub fn leaf_pem(&self) -> Result<String> {
        let first = first_cert_der(&self.cert_pem)?;
        Ok(pem_block("CERTIFICATE", &first))
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory, so a reader (or a
/// reloading server) sees either the old or the new content, never a partial file.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp-{:016x}", rand::random::<u64>()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        std::fs::File::open(dir)?.sync_all()
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        TlsError::io(path, e)
    })
}

/// A self-signed CA: basicConstraints CA:true pathlen:0, keyUsage keyCertSign + cRLSign,
/// subject key identifier.
pub fn new_ca(common_name: &str, validity_days: u32) -> Result<CertKey> {
    let key = KeyPair::generate()?;
    let mut params = base_params(common_name, validity_days)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = params.self_signed(&key)?;
    Ok(CertKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A server certificate signed by `ca`, valid for every address in `ips` and name in `dns`.
///
/// The returned `cert_pem` is the full chain (server certificate, then the CA's), ready to be
/// served. The lifetime is cut to the CA's own expiry, since clients reject anything after it.
pub fn issue_server(ca: &CertKey, ips: &[IpAddr], dns: &[String], validity_days: u32) -> Result<CertKey> {
    issue_server_for_key(ca, ips, dns, validity_days, KeyPair::generate()?)
}

/// [`issue_server`] for an existing private key (PEM): a renewal that keeps the key keeps
/// the public key clients pin (`curl --pinnedpubkey`).
pub fn renew_server(ca: &CertKey, ips: &[IpAddr], dns: &[String], validity_days: u32, key_pem: &str) -> Result<CertKey> {
    issue_server_for_key(ca, ips, dns, validity_days, keys::rcgen_key_pair(key_pem)?)
}

fn issue_server_for_key(ca: &CertKey, ips: &[IpAddr], dns: &[String], validity_days: u32, key: KeyPair) -> Result<CertKey> {
    let sans = subject_alt_names(ips, dns)?;
    let mut params = base_params(&common_name_for(&sans), validity_days)?;
    params.subject_alt_names = sans;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    sign_with_ca(ca, params, key)
}

/// A client certificate (extendedKeyUsage clientAuth) for registries that require one
/// (`http.tls.clientcas`). Docker reads it as `certs.d/HOST:PORT/client.cert` + `client.key`.
pub fn issue_client(ca: &CertKey, common_name: &str, validity_days: u32) -> Result<CertKey> {
    let key = KeyPair::generate()?;
    let mut params = base_params(common_name, validity_days)?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    sign_with_ca(ca, params, key)
}

/// A certificate signing request for a server certificate, for an outside CA (a company CA, the
/// Kubernetes CSR API, ...). Returns (CSR PEM, private key PEM).
pub fn csr(ips: &[IpAddr], dns: &[String]) -> Result<(String, String)> {
    csr_with_subject(ips, dns, None)
}

/// The subject a signer requires, instead of a Common Name taken from the first name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub organization: String,
    pub common_name: String,
}

/// A signing request like [`csr`]'s, with `subject` (when given) as its distinguished name:
/// Kubernetes' `kubelet-serving` signer, for one, requires `O=system:nodes, CN=system:node:NAME`.
pub fn csr_with_subject(ips: &[IpAddr], dns: &[String], subject: Option<&Subject>) -> Result<(String, String)> {
    let sans = subject_alt_names(ips, dns)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = match subject {
        None => common_name_dn(&common_name_for(&sans)),
        Some(s) => {
            let mut dn = DistinguishedName::new();
            dn.push(DnType::OrganizationName, s.organization.as_str());
            dn.push(DnType::CommonName, s.common_name.as_str());
            dn
        }
    };
    params.subject_alt_names = sans;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let request = params.serialize_request(&key)?;
    Ok((request.pem()?, key.serialize_pem()))
}

/// Whether the first certificate of `cert_pem` is for the private key `key_pem` (a signed
/// certificate coming back for the request this key made, not another's).
pub fn key_matches_cert(cert_pem: &str, key_pem: &str) -> Result<bool> {
    use rcgen::PublicKeyData;
    let der = first_cert_der(cert_pem)?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| TlsError::Invalid(format!("certificate: {e}")))?;
    let key = keys::rcgen_key_pair(key_pem)?;
    Ok(cert.public_key().subject_public_key.data.as_ref() == key.der_bytes())
}

fn sign_with_ca(ca: &CertKey, mut params: CertificateParams, key: KeyPair) -> Result<CertKey> {
    let ca_der = first_cert_der(&ca.cert_pem)?;
    let ca_key = keys::rcgen_key_pair(&ca.key_pem)?;
    let ca_not_after = check_usable_ca(&ca_der, &ca_key)?;
    params.not_after = params.not_after.min(ca_not_after);
    params.use_authority_key_identifier_extension = true;
    let issuer = Issuer::from_ca_cert_der(&ca_der.clone().into(), ca_key)?;
    let cert = params.signed_by(&key, &issuer)?;
    let chain = format!("{}{}", cert.pem(), pem_block("CERTIFICATE", &ca_der));
    Ok(CertKey {
        cert_pem: chain,
        key_pem: key.serialize_pem(),
    })
}

/// Refuses a CA whose certificates no client would accept; returns its notAfter.
fn check_usable_ca(ca_der: &[u8], ca_key: &KeyPair) -> Result<OffsetDateTime> {
    use rcgen::PublicKeyData;
    let (_, ca) = x509_parser::parse_x509_certificate(ca_der).map_err(|e| TlsError::Invalid(format!("CA certificate: {e}")))?;
    if ca.public_key().subject_public_key.data.as_ref() != ca_key.der_bytes() {
        return Err(TlsError::Invalid("the CA key does not belong to the CA certificate".into()));
    }
    if !ca.is_ca() {
        return Err(TlsError::Invalid(format!(
            "{} is not a CA certificate (basicConstraints CA:true missing); create a CA with: wharf cert ca --out DIR",
            ca.subject()
        )));
    }
    let not_after = ca.validity().not_after.to_datetime();
    if not_after <= OffsetDateTime::now_utc() {
        return Err(TlsError::Invalid(format!(
            "the CA certificate expired on {not_after}; create a new CA"
        )));
    }
    Ok(not_after)
}

/// Validity starts a minute in the past so a client whose clock lags slightly still accepts a
/// fresh certificate; it lasts exactly `validity_days` (macOS counts notAfter - notBefore).
fn base_params(common_name: &str, validity_days: u32) -> Result<CertificateParams> {
    if validity_days == 0 {
        return Err(TlsError::Invalid("the validity must be at least one day".into()));
    }
    let mut params = CertificateParams::default();
    params.distinguished_name = common_name_dn(common_name);
    params.not_before = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| OffsetDateTime::now_utc())
        - Duration::minutes(1);
    params.not_after = params.not_before + Duration::days(i64::from(validity_days));
    params.serial_number = Some(random_serial());
    Ok(params)
}

fn common_name_dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

/// 16 random bytes, positive and without a leading zero byte (RFC 5280: at most 20 octets).
fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] = (bytes[0] & 0x7f).max(1);
    SerialNumber::from_slice(&bytes)
}

fn common_name_for(sans: &[SanType]) -> String {
    let dns = sans.iter().find_map(|s| match s {
        SanType::DnsName(n) => Some(n.as_str().to_owned()),
        _ => None,
    });
    let ip = sans.iter().find_map(|s| match s {
        SanType::IpAddress(ip) => Some(ip.to_string()),
        _ => None,
    });
    dns.or(ip).unwrap_or_default()
}

/// IP and DNS subjectAltNames, deduplicated, in the order given. A DNS "name" that parses as an
/// IP address becomes an IP entry, since Go never matches an IP against DNS entries.
fn subject_alt_names(ips: &[IpAddr], dns: &[String]) -> Result<Vec<SanType>> {
    let mut all_ips: Vec<IpAddr> = ips.to_vec();
    let mut names: Vec<String> = Vec::new();
    for name in dns {
        let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
        match name.trim_matches(|c| c == '[' || c == ']').parse::<IpAddr>() {
            Ok(ip) => all_ips.push(ip),
            Err(_) => {
                validate_dns_name(&name)?;
                names.push(name);
            }
        }
    }
    let mut sans = Vec::new();
    for name in names {
        let san = SanType::DnsName(name.try_into()?);
        if !sans.contains(&san) {
            sans.push(san);
        }
    }
    for ip in all_ips {
        if !sans.contains(&SanType::IpAddress(ip)) {
            sans.push(SanType::IpAddress(ip));
        }
    }
    if sans.is_empty() {
        return Err(TlsError::Invalid(
            "a server certificate needs at least one IP address or DNS name".into(),
        ));
    }
    Ok(sans)
}

/// Accepts host names and `*.` wildcards in the leftmost label, as certificate verifiers do.
pub fn validate_dns_name(name: &str) -> Result<()> {
    let bad = |why: &str| Err(TlsError::Invalid(format!("invalid DNS name {name:?}: {why}")));
    if name.contains(':') {
        return bad("a certificate names hosts, not ports (drop the :PORT)");
    }
    if name.is_empty() || name.len() > 253 {
        return bad("must be 1 to 253 characters");
    }
    let body = name.strip_prefix("*.").unwrap_or(name);
    for label in body.split('.') {
        if label.is_empty() || label.len() > 63 {
            return bad("every dot-separated label must be 1 to 63 characters");
        }
        if !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return bad("only letters, digits, '-' and '_' are allowed (use punycode for other characters)");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return bad("a label cannot start or end with '-'");
        }
    }
    Ok(())
}

/// Every address of every local interface (IPv4 and IPv6, loopback included), sorted and
/// deduplicated. IPv6 link-local addresses are left out: clients cannot use them without a zone.
pub fn local_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we only read and then free exactly once; each
    // ifa_addr is checked for null and read with the struct its family announces.
    unsafe {
        if libc::getifaddrs(&mut head) != 0 {
            return out;
        }
        let mut cur = head;
        while !cur.is_null() {
            let ifa = &*cur;
            if !ifa.ifa_addr.is_null() {
                match i32::from((*ifa.ifa_addr).sa_family) {
                    libc::AF_INET => {
                        let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                        out.push(IpAddr::from(u32::from_be(sin.sin_addr.s_addr).to_be_bytes()));
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                        out.push(IpAddr::from(sin6.sin6_addr.s6_addr));
                    }
                    _ => {}
                }
            }
            cur = ifa.ifa_next;
        }
        libc::freeifaddrs(head);
    }
    out.retain(|ip| !matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80));
    out.sort();
    out.dedup();
    out
}

/// The machine's host name, when it is usable as a DNS name.
pub fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    let name = std::str::from_utf8(&buf[..end]).ok()?.trim().to_ascii_lowercase();
    validate_dns_name(&name).ok()?;
    Some(name)
}

/// SHA-256 fingerprint of the first certificate in `cert_pem`, as openssl prints it:
/// `AB:CD:...` (upper-case hex, colon-separated).
pub fn fingerprint_sha256(cert_pem: &str) -> Result<String> {
    Ok(fingerprint_der(&first_cert_der(cert_pem)?))
}

/// SHA-256 fingerprint of a DER certificate, `AB:CD:...`.
pub fn fingerprint_der(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    digest.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

/// The public key pin of the first certificate in `cert_pem`, as `curl --pinnedpubkey`
/// takes it: `sha256//` + base64 of the SHA-256 of its SubjectPublicKeyInfo (DER).
pub fn public_key_pin(cert_pem: &str) -> Result<String> {
    use base64::Engine;
    let der = first_cert_der(cert_pem)?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| TlsError::Invalid(format!("unreadable certificate: {e}")))?;
    let digest = Sha256::digest(cert.tbs_certificate.subject_pki.raw);
    Ok(format!("sha256//{}", base64::engine::general_purpose::STANDARD.encode(digest)))
}

/// notAfter of the first certificate in `cert_pem`.
pub fn not_after(cert_pem: &str) -> Result<OffsetDateTime> {
    let der = first_cert_der(cert_pem)?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| TlsError::Invalid(format!("unreadable certificate: {e}")))?;
    Ok(cert.validity().not_after.to_datetime())
}

/// True when the first certificate of `cert_pem` expires within `days` days (or already has):
/// the renewal decision.
pub fn expires_within(cert_pem: &str, days: u32) -> Result<bool> {
    Ok(not_after(cert_pem)? <= OffsetDateTime::now_utc() + Duration::days(i64::from(days)))
}

fn first_cert_der(pem: &str) -> Result<Vec<u8>> {
    let certs = keys::certificates(pem).map_err(TlsError::Invalid)?;
    Ok(certs[0].to_vec())
}

pub(crate) fn pem_block(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::*;

    fn parse(pem: &str) -> Vec<Vec<u8>> {
        keys::certificates(pem).unwrap().into_iter().map(|c| c.to_vec()).collect()
    }

    #[test]
    fn ca_has_ca_extensions() {
        let ca = new_ca("test CA", 30).unwrap();
        let der = &parse(&ca.cert_pem)[0];
        let (_, cert) = parse_x509_certificate(der).unwrap();
        let bc = cert.basic_constraints().unwrap().unwrap().value;
        assert!(bc.ca);
        assert_eq!(bc.path_len_constraint, Some(0));
        let ku = cert.key_usage().unwrap().unwrap().value;
        assert!(ku.key_cert_sign() && ku.crl_sign() && !ku.digital_signature());
        assert!(cert
            .get_extension_unique(&oid_registry::OID_X509_EXT_SUBJECT_KEY_IDENTIFIER)
            .unwrap()
            .is_some());
        let days = (cert.validity().not_after.to_datetime() - cert.validity().not_before.to_datetime()).whole_days();
        assert_eq!(days, 30);
        assert!(ca.key_pem.contains("BEGIN PRIVATE KEY"));
    }

    #[test]
    fn server_cert_has_sans_eku_and_chain() {
        let ca = new_ca("test CA", 30).unwrap();
        let ips: Vec<IpAddr> = vec!["10.0.0.5".parse().unwrap(), "::1".parse().unwrap()];
        let dns = vec!["Registry.LAN".to_string(), "127.0.0.1".to_string()];
        let server = issue_server(&ca, &ips, &dns, 10).unwrap();
        let chain = parse(&server.cert_pem);
        assert_eq!(chain.len(), 2, "leaf followed by the CA");
        assert_eq!(chain[1], parse(&ca.cert_pem)[0]);
        let (_, leaf) = parse_x509_certificate(&chain[0]).unwrap();
        let san = leaf.subject_alternative_name().unwrap().unwrap().value;
        let names: Vec<String> = san.general_names.iter().map(|g| g.to_string()).collect();
        assert!(names.contains(&"DNSName(registry.lan)".to_string()), "{names:?}");
        assert_eq!(names.iter().filter(|n| n.starts_with("IPAddress")).count(), 3, "{names:?}");
        assert!(leaf.extended_key_usage().unwrap().unwrap().value.server_auth);
        assert!(!leaf.is_ca());
        assert!(!leaf.basic_constraints().unwrap().unwrap().value.ca);
        assert!(leaf.key_usage().unwrap().unwrap().value.digital_signature());
        assert_eq!(leaf.subject().to_string(), "CN=registry.lan");
        let (_, ca_cert) = parse_x509_certificate(&chain[1]).unwrap();
        assert_eq!(leaf.issuer(), ca_cert.subject());
        leaf.verify_signature(Some(ca_cert.public_key())).expect("signed by the CA");
        let aki = leaf.iter_extensions().find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(a) => a.key_identifier.clone(),
            _ => None,
        });
        let ski = ca_cert.iter_extensions().find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => Some(k.clone()),
            _ => None,
        });
        assert_eq!(aki.unwrap().0, ski.unwrap().0);
    }

    #[test]
    fn server_cert_lifetime_is_capped_by_the_ca() {
        let ca = new_ca("short CA", 2).unwrap();
        let server = issue_server(&ca, &[], &["a.test".into()], 825).unwrap();
        assert!(not_after(&server.cert_pem).unwrap() <= not_after(&ca.cert_pem).unwrap());
        assert!(expires_within(&server.cert_pem, 3).unwrap());
        assert!(!expires_within(&server.cert_pem, 0).unwrap());
    }

    #[test]
    fn refuses_non_ca_and_foreign_key() {
        let ca = new_ca("CA", 5).unwrap();
        let server = issue_server(&ca, &[], &["a.test".into()], 5).unwrap();
        let err = issue_server(&server, &[], &["b.test".into()], 5).unwrap_err().to_string();
        assert!(err.contains("not a CA"), "{err}");
        let other = new_ca("other", 5).unwrap();
        let mixed = CertKey {
            cert_pem: ca.cert_pem.clone(),
            key_pem: other.key_pem,
        };
        let err = issue_server(&mixed, &[], &["a.test".into()], 5).unwrap_err().to_string();
        assert!(err.contains("does not belong"), "{err}");
    }

    #[test]
    fn needs_a_name_and_rejects_bad_ones() {
        let ca = new_ca("CA", 5).unwrap();
        assert!(issue_server(&ca, &[], &[], 5).is_err());
        for bad in ["host:5000", "a..b", "-a.b", "ünï.test", ""] {
            assert!(issue_server(&ca, &[], &[bad.to_string()], 5).is_err(), "{bad}");
        }
        validate_dns_name("*.example.com").unwrap();
        validate_dns_name("localhost").unwrap();
    }

    #[test]
    fn csr_carries_sans_and_matches_key() {
        let (csr_pem, key_pem) = csr(&["192.168.1.9".parse().unwrap()], &["reg.example".into()]).unwrap();
        assert!(csr_pem.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
        let params = rcgen::CertificateSigningRequestParams::from_pem(&csr_pem).unwrap();
        let sans = &params.params.subject_alt_names;
        assert!(sans.contains(&SanType::IpAddress("192.168.1.9".parse().unwrap())));
        assert!(sans.contains(&SanType::DnsName("reg.example".try_into().unwrap())));
        let key = keys::rcgen_key_pair(&key_pem).unwrap();
        use rcgen::PublicKeyData;
        assert_eq!(params.public_key.der_bytes(), key.der_bytes());
    }

    #[test]
    fn save_and_load_roundtrip_with_private_key_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let ca = new_ca("CA", 5).unwrap();
        let (crt, key) = ca.save(&dir.path().join("sub"), "ca").unwrap();
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(&crt).unwrap().permissions().mode() & 0o777, 0o644);
        assert_eq!(CertKey::load(&dir.path().join("sub"), "ca").unwrap(), ca);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 2, "no temporary files left: {leftovers:?}");
        assert!(!format!("{ca:?}").contains("PRIVATE"));
    }

    #[test]
    fn fingerprint_format() {
        let ca = new_ca("CA", 5).unwrap();
        let fp = fingerprint_sha256(&ca.cert_pem).unwrap();
        assert_eq!(fp.len(), 32 * 3 - 1);
        assert!(fp
            .split(':')
            .all(|b| b.len() == 2 && b.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase())));
        assert_eq!(fp, fingerprint_der(&parse(&ca.cert_pem)[0]));
    }

    #[test]
    fn local_addresses_include_loopback() {
        let addrs = local_addresses();
        assert!(addrs.contains(&"127.0.0.1".parse().unwrap()), "{addrs:?}");
        let mut sorted = addrs.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted, addrs);
    }

    #[test]
    fn client_cert_has_client_auth() {
        let ca = new_ca("CA", 5).unwrap();
        let client = issue_client(&ca, "ci-runner", 5).unwrap();
        let der = &parse(&client.cert_pem)[0];
        let (_, cert) = parse_x509_certificate(der).unwrap();
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
    }
}
