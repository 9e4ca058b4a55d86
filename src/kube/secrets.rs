//! The files the cluster's Secrets carry, kept in a directory on the operator's machine so a
//! second `wharf kube manifests` reuses them: the CA's key never enters the cluster, the
//! password is generated once, and the certificate is re-issued only when its names change or
//! it nears its end.

use super::Options;
use crate::tls::certs::{self, CertKey};
use crate::tls::inspect;
use anyhow::Context;
use std::path::{Path, PathBuf};

/// What the Secrets hold, as the bytes of the files.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretFiles {
    pub htpasswd: Vec<u8>,
    /// The server certificate followed by the CA: the full chain.
    pub tls_crt: Vec<u8>,
    pub tls_key: Vec<u8>,
    pub ca_crt: Vec<u8>,
}

impl std::fmt::Debug for SecretFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretFiles([redacted])")
    }
}

/// What [`prepare`] did, for the operator.
pub struct Prepared {
    pub files: SecretFiles,
    /// Lines saying what was created.
    pub notes: Vec<String>,
    /// Set when the `admin` account was created now: shown once, never stored in clear.
    pub new_password: Option<String>,
    pub ca_fingerprint: Option<String>,
}

pub fn htpasswd_path(dir: &Path) -> PathBuf {
    dir.join("htpasswd")
}

/// Loads the files from `dir`, creating what is missing. With `tls` false (cert-manager makes
/// the certificate) only the htpasswd file is needed.
pub fn prepare(dir: &Path, o: &Options, tls: bool) -> anyhow::Result<Prepared> {
    crate::autosecure::create_private_dir(dir)?;
    let mut notes = Vec::new();
    let auth = htpasswd_path(dir);
    let new_password = if auth.exists() {
        None
    } else {
        let password = crate::autosecure::create_admin(&auth)?;
        notes.push(format!("created {} with the user admin", auth.display()));
        Some(password)
    };
    let htpasswd = std::fs::read(&auth).with_context(|| format!("reading {}", auth.display()))?;
    if !tls {
        return Ok(Prepared {
            files: SecretFiles {
                htpasswd,
                tls_crt: Vec::new(),
                tls_key: Vec::new(),
                ca_crt: Vec::new(),
            },
            notes,
            new_password,
            ca_fingerprint: None,
        });
    }
    let ca = load_or_create_ca(dir, &mut notes)?;
    let hosts = o.cert_hosts();
    let (crt, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    if needs_issue(&crt, &hosts)? {
        let server = certs::issue_server(&ca, &[], &hosts, certs::SERVER_VALIDITY_DAYS)?;
        certs::write_atomic(&key, server.key_pem.as_bytes(), 0o600)?;
        certs::write_atomic(&crt, server.cert_pem.as_bytes(), 0o644)?;
        notes.push(format!("issued {} for {}", crt.display(), hosts.join(", ")));
    }
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    Ok(Prepared {
        files: SecretFiles {
            htpasswd,
            tls_crt: read(&crt)?,
            tls_key: read(&key)?,
            ca_crt: ca.cert_pem.clone().into_bytes(),
        },
        notes,
        new_password,
        ca_fingerprint: Some(certs::fingerprint_sha256(&ca.cert_pem)?),
    })
}

fn load_or_create_ca(dir: &Path, notes: &mut Vec<String>) -> anyhow::Result<CertKey> {
    if CertKey::cert_path(dir, "ca").exists() {
        return CertKey::load(dir, "ca").with_context(|| format!("loading the CA in {}", dir.display()));
    }
    let ca = certs::new_ca("wharf registry CA (Kubernetes)", certs::CA_VALIDITY_DAYS)?;
    let (crt, _) = ca.save(dir, "ca")?;
    notes.push(format!(
        "created the CA {} (its key stays here, never in the cluster)",
        crt.display()
    ));
    Ok(ca)
}

/// A certificate is re-issued when missing, expiring within a month, or missing a name.
fn needs_issue(crt: &Path, hosts: &[String]) -> anyhow::Result<bool> {
    let pem = match std::fs::read_to_string(crt) {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(e).with_context(|| format!("reading {}", crt.display())),
    };
    if certs::expires_within(&pem, crate::autosecure::RENEW_BEFORE_DAYS)? {
        return Ok(true);
    }
    let report = inspect::inspect(&pem, None)?;
    let leaf = &report.certificates[0];
    Ok(!hosts.iter().all(|h| inspect::matches_host(leaf, h)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_reused_and_reissued_for_new_names() {
        let dir = tempfile::tempdir().unwrap();
        let o = Options::default();
        let first = prepare(dir.path(), &o, true).unwrap();
        assert!(first.new_password.is_some());
        let again = prepare(dir.path(), &o, true).unwrap();
        assert!(again.new_password.is_none() && again.notes.is_empty());
        assert_eq!(first.files, again.files);
        let wider = Options {
            extra_hosts: vec!["registry.lan".into()],
            ..Options::default()
        };
        let third = prepare(dir.path(), &wider, true).unwrap();
        assert_ne!(third.files.tls_crt, first.files.tls_crt);
        assert_eq!(third.files.ca_crt, first.files.ca_crt, "the CA stays");
        let report = inspect::inspect(std::str::from_utf8(&third.files.tls_crt).unwrap(), Some("registry.lan")).unwrap();
        assert!(!report.has_errors(), "{report}");
    }
}
