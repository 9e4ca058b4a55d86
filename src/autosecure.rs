//! Secure by default: when `wharf serve` listens beyond loopback and nothing configures TLS or
//! auth, wharf makes what the seeds make by hand with openssl and htpasswd — a local CA, a
//! server certificate whose SANs cover every local address and name, and an `admin` account —
//! keeps them under the storage root, and renews the certificate before it expires.

use crate::tls::certs::{self, CertKey};
use crate::tls::inspect;
use anyhow::Context;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Server certificates are short-lived and renewed this long before they expire.
pub const SERVER_CERT_DAYS: u32 = 90;
pub const RENEW_BEFORE_DAYS: u32 = 30;
/// The unauthenticated path clients fetch the CA from (`wharf trust` uses it).
pub const CA_PATH: &str = "/.well-known/wharf/ca.crt";
/// Beside it, the `wharf trust --script` installer for clients without wharf (the one-liner
/// `wharf serve` prints fetches it with curl, pinned to the server's key).
pub const TRUST_SCRIPT_PATH: &str = "/.well-known/wharf/trust.sh";
pub const ADMIN_USER: &str = "admin";

/// What was set up, for the server to use and for the operator to read once.
pub struct Provisioned {
    pub dir: PathBuf,
    pub ca_pem: String,
    pub ca_fingerprint: String,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub htpasswd_path: PathBuf,
    /// Set only on the start that created the account: shown once, never stored in clear.
    pub new_admin_password: Option<String>,
    pub names: Names,
}

/// Every name and address the server certificate must cover.
#[derive(Debug, Clone)]
pub struct Names {
    pub ips: Vec<IpAddr>,
    pub dns: Vec<String>,
    /// The first name given by the operator (`--tls-name`, `WHARF_TLS_NAMES`): what clients
    /// are told to use, since in a container the local addresses are the container's own.
    pub given: Option<String>,
}

impl Names {
    /// Local interface addresses, the host name, `localhost`, and names given on the command line.
    pub fn local(extra: &[String]) -> Names {
        let mut ips = certs::local_addresses();
        let mut dns = vec!["localhost".to_string()];
        if let Some(h) = certs::hostname() {
            dns.push(h);
        }
        for e in extra.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
            match e.parse::<IpAddr>() {
                Ok(ip) => ips.push(ip),
                Err(_) => dns.push(e.to_ascii_lowercase()),
            }
        }
        ips.sort();
        ips.dedup();
        dns.sort();
        dns.dedup();
        let given = extra.iter().map(|e| e.trim()).find(|e| !e.is_empty()).map(str::to_string);
        Names { ips, dns, given }
    }
}

/// The directory everything lives in: beside registry:2's tree, which never looks there.
pub fn dir_for(root: &Path) -> PathBuf {
    root.join("wharf")
}

/// Creates (first start) or refreshes (later starts) the CA, certificate and admin account.
pub fn provision(root: &Path, names: Names) -> anyhow::Result<Provisioned> {
    let dir = dir_for(root);
    create_private_dir(&dir)?;
    let ca = match CertKey::load(&dir, "ca") {
        Ok(ca) => ca,
        Err(_) if !certs::CertKey::cert_path(&dir, "ca").exists() => {
            let ca = certs::new_ca("wharf local CA", certs::CA_VALIDITY_DAYS)?;
            ca.save(&dir, "ca")?;
            ca
        }
        Err(e) => return Err(e).with_context(|| format!("the CA in {} is unreadable; fix or remove it", dir.display())),
    };
    renew_server_cert_if_needed(&dir, &ca, &names)?;
    let htpasswd_path = dir.join("htpasswd");
    let new_admin_password = if htpasswd_path.exists() {
        unseen_password(&dir, &htpasswd_path)
    } else {
        Some(create_admin_kept(&dir, &htpasswd_path)?)
    };
    Ok(Provisioned {
        ca_fingerprint: certs::fingerprint_sha256(&ca.cert_pem)?,
        ca_pem: ca.cert_pem,
        cert_path: CertKey::cert_path(&dir, "server"),
        key_path: CertKey::key_path(&dir, "server"),
        htpasswd_path,
        new_admin_password,
        names,
        dir,
    })
}

/// Issues a new server certificate when there is none, it expires within
/// [`RENEW_BEFORE_DAYS`], or it no longer covers every local name. Returns whether it did.
pub fn renew_server_cert_if_needed(dir: &Path, ca: &CertKey, names: &Names) -> anyhow::Result<bool> {
    let current = CertKey::load(dir, "server").ok();
    if current.as_ref().is_some_and(|c| !needs_renewal(&c.cert_pem, names)) {
        return Ok(false);
    }
    // The key stays: clients that pinned it (the curl one-liner) keep working after a renewal.
    let kept = current.and_then(|c| certs::renew_server(ca, &names.ips, &names.dns, SERVER_CERT_DAYS, &c.key_pem).ok());
    let cert = match kept {
        Some(cert) => cert,
        None => certs::issue_server(ca, &names.ips, &names.dns, SERVER_CERT_DAYS)?,
    };
    cert.save(dir, "server")?;
    tracing::info!(dir = %dir.display(), "issued a new server certificate");
    Ok(true)
}

fn needs_renewal(cert_pem: &str, names: &Names) -> bool {
    if certs::expires_within(cert_pem, RENEW_BEFORE_DAYS).unwrap_or(true) {
        return true;
    }
    let Ok(report) = inspect::inspect(cert_pem, None) else {
        return true;
    };
    let Some(leaf) = report.certificates.first() else { return true };
    let hosts = names.ips.iter().map(|ip| ip.to_string()).chain(names.dns.iter().cloned());
    hosts.into_iter().any(|h| !inspect::matches_host(leaf, &h))
}

/// Where a new admin password waits (mode 0600, in the 0700 directory) until a start has
/// shown it: a start that fails between creating the account and printing the password shows
/// it on the next start instead of losing it.
fn unseen_password_path(dir: &Path) -> PathBuf {
    dir.join("admin-password.unseen")
}

/// Writes an htpasswd file with the `admin` user and a random password; returns the password.
pub fn create_admin(path: &Path) -> anyhow::Result<String> {
    let password = new_password();
    write_admin(path, &password)?;
    Ok(password)
}

/// [`create_admin`] for the server's own account: the password is kept (see
/// [`unseen_password_path`]) before the account exists, so there is never an account whose
/// password is neither shown nor kept.
fn create_admin_kept(dir: &Path, path: &Path) -> anyhow::Result<String> {
    let password = new_password();
    certs::write_atomic(&unseen_password_path(dir), password.as_bytes(), 0o600)?;
    write_admin(path, &password)?;
    Ok(password)
}

fn new_password() -> String {
    use rand::distributions::{Alphanumeric, DistString};
    Alphanumeric.sample_string(&mut rand::thread_rng(), 24)
}

fn write_admin(path: &Path, password: &str) -> anyhow::Result<()> {
    let hash = bcrypt::hash_with_result(password, bcrypt::DEFAULT_COST)?.format_for_version(bcrypt::Version::TwoY);
    certs::write_atomic(path, format!("{ADMIN_USER}:{hash}\n").as_bytes(), 0o600)?;
    Ok(())
}

/// A password created by an earlier start that never showed it, if it is still the admin's.
fn unseen_password(dir: &Path, htpasswd: &Path) -> Option<String> {
    let kept = std::fs::read_to_string(unseen_password_path(dir)).ok()?;
    let file = crate::auth::Htpasswd::open(htpasswd).ok()?;
    if file.verify(ADMIN_USER, &kept) {
        Some(kept)
    } else {
        // Changed since (`wharf htpasswd set`): the kept one is void.
        let _ = std::fs::remove_file(unseen_password_path(dir));
        None
    }
}

/// Called once the password has been printed: nothing keeps it any more.
pub fn password_shown(p: &Provisioned) {
    if p.new_admin_password.is_some() {
        if let Err(e) = std::fs::remove_file(unseen_password_path(&p.dir)) {
            tracing::warn!(error = %e, "cannot remove the shown admin password file");
        }
    }
}

pub fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).with_context(|| format!("securing {}", dir.display()))?;
    Ok(())
}

/// Whether an address only reaches this machine (then plain HTTP stays the default, as Docker
/// itself trusts plain HTTP on loopback).
pub fn is_loopback_only(addr: &std::net::SocketAddr) -> bool {
    addr.ip().is_loopback()
}

/// Checks the certificate twice a day and renews it in place; the TLS layer reloads it.
pub fn spawn_renewal(p: &Provisioned) {
    let (dir, names) = (p.dir.clone(), p.names.clone());
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(12 * 3600)).await;
            let dir = dir.clone();
            let names = names.clone();
            let result = tokio::task::spawn_blocking(move || -> anyhow::Result<bool> {
                let ca = CertKey::load(&dir, "ca")?;
                renew_server_cert_if_needed(&dir, &ca, &names)
            })
            .await;
            match result {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "certificate renewal failed; will retry"),
                Err(e) => tracing::error!(error = %e, "certificate renewal task failed"),
            }
        }
    });
}

/// The address clients should use: the first name the operator gave, else the listen address
/// when specific, else the first non-loopback interface address.
pub fn advertised_host(listen: &std::net::SocketAddr, names: &Names) -> String {
    if let Some(given) = &names.given {
        return match given.parse::<IpAddr>() {
            Ok(IpAddr::V6(v6)) => format!("[{v6}]:{}", listen.port()),
            _ => format!("{given}:{}", listen.port()),
        };
    }
    let ip = if listen.ip().is_unspecified() {
        names
            .ips
            .iter()
            .find(|ip| !ip.is_loopback() && ip.is_ipv4())
            .copied()
            .unwrap_or(listen.ip())
    } else {
        listen.ip()
    };
    match ip {
        IpAddr::V6(v6) => format!("[{v6}]:{}", listen.port()),
        IpAddr::V4(v4) => format!("{v4}:{}", listen.port()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_near_expiry_is_renewed_with_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let ca = certs::new_ca("test CA", 365).unwrap();
        let names = Names {
            ips: vec!["10.1.2.3".parse().unwrap()],
            dns: vec!["localhost".into()],
            given: None,
        };
        // Ten days left: inside RENEW_BEFORE_DAYS.
        let old = certs::issue_server(&ca, &names.ips, &names.dns, 10).unwrap();
        old.save(dir.path(), "server").unwrap();
        assert!(renew_server_cert_if_needed(dir.path(), &ca, &names).unwrap());
        let new = CertKey::load(dir.path(), "server").unwrap();
        assert_ne!(new.cert_pem, old.cert_pem);
        assert!(!certs::expires_within(&new.cert_pem, RENEW_BEFORE_DAYS).unwrap());
        assert_eq!(new.key_pem, old.key_pem);
        assert_eq!(
            certs::public_key_pin(&new.cert_pem).unwrap(),
            certs::public_key_pin(&old.cert_pem).unwrap()
        );
        // A key that cannot be read any more is replaced rather than failing the renewal.
        std::fs::write(CertKey::key_path(dir.path(), "server"), "not a key").unwrap();
        std::fs::write(
            CertKey::cert_path(dir.path(), "server"),
            certs::issue_server(&ca, &names.ips, &names.dns, 10).unwrap().cert_pem,
        )
        .unwrap();
        assert!(renew_server_cert_if_needed(dir.path(), &ca, &names).unwrap());
        assert!(CertKey::load(dir.path(), "server").is_ok());
    }

    #[test]
    fn first_start_creates_everything_and_later_starts_keep_it() {
        let root = tempfile::tempdir().unwrap();
        let names = Names {
            ips: vec!["10.1.2.3".parse().unwrap(), "127.0.0.1".parse().unwrap()],
            dns: vec!["localhost".into(), "reg.test".into()],
            given: None,
        };
        let p = provision(root.path(), names.clone()).unwrap();
        let password = p.new_admin_password.clone().expect("password on first start");
        assert_eq!(password.len(), 24);
        let htpasswd = crate::auth::Htpasswd::open(&p.htpasswd_path).unwrap();
        assert!(htpasswd.verify(ADMIN_USER, &password));
        let leaf = std::fs::read_to_string(&p.cert_path).unwrap();
        let report = inspect::inspect(&leaf, Some("10.1.2.3")).unwrap();
        assert!(!report.has_errors(), "{report}");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&p.key_path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(&p.dir).unwrap().permissions().mode() & 0o777, 0o700);

        // Not shown yet (the start failed before printing it): the next start shows it.
        let unseen = provision(root.path(), names.clone()).unwrap();
        assert_eq!(unseen.new_admin_password.as_deref(), Some(password.as_str()));
        password_shown(&unseen);
        let again = provision(root.path(), names.clone()).unwrap();
        assert!(again.new_admin_password.is_none());
        assert_eq!(again.ca_fingerprint, p.ca_fingerprint);
        assert_eq!(
            std::fs::read_to_string(&again.cert_path).unwrap(),
            leaf,
            "a valid certificate is kept"
        );

        let mut more = names;
        more.ips.push("10.9.9.9".parse().unwrap());
        let renewed = provision(root.path(), more).unwrap();
        let new_leaf = std::fs::read_to_string(&renewed.cert_path).unwrap();
        assert_ne!(new_leaf, leaf, "a new address gets a new certificate");
        assert!(!inspect::inspect(&new_leaf, Some("10.9.9.9")).unwrap().has_errors());
        assert_eq!(
            certs::public_key_pin(&new_leaf).unwrap(),
            certs::public_key_pin(&leaf).unwrap(),
            "a renewal keeps the key clients pinned"
        );
    }
}
