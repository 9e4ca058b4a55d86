//! The rustls server side: loading a certificate chain and key with errors that say what to fix,
//! a certificate resolver that picks up replaced files without a restart, and the
//! `ServerConfig` (TLS 1.2 and 1.3, ALPN h2 and http/1.1, optional client certificates).

use super::keys;
use super::{provider, Result, TlsError};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{InconsistentKeys, RootCertStore, ServerConfig};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Loads a PEM certificate chain (server certificate first) and its PEM private key (RSA in
/// PKCS#1 or PKCS#8, ECDSA in SEC1 or PKCS#8, Ed25519), and checks that they belong together.
pub fn load_cert_key(cert_path: &Path, key_path: &Path) -> Result<CertifiedKey> {
    load_with(cert_path, key_path, &provider())
}

fn load_with(cert_path: &Path, key_path: &Path, provider: &CryptoProvider) -> Result<CertifiedKey> {
    let cert_text = read_text(cert_path)?;
    let chain = keys::certificates(&cert_text).map_err(|p| TlsError::file(cert_path, p))?;
    let key_text = read_text(key_path)?;
    let key_der = keys::private_key(&key_text).map_err(|p| TlsError::file(key_path, p))?;
    let key = provider.key_provider.load_private_key(key_der).map_err(|e| {
        TlsError::file(
            key_path,
            format!("unsupported private key ({e}); wharf serves RSA (2048 to 8192 bits), ECDSA P-256/P-384 and Ed25519 keys"),
        )
    })?;
    let certified = CertifiedKey::new(chain, key);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => Err(mismatch_error(&certified, cert_path, key_path)),
        Err(e) => Err(TlsError::file(cert_path, format!("the first certificate is unusable: {e}"))),
    }
}

/// Says whether the key belongs to another certificate of the file (wrong order) or to none.
fn mismatch_error(certified: &CertifiedKey, cert_path: &Path, key_path: &Path) -> TlsError {
    let position = certified
        .cert
        .iter()
        .skip(1)
        .position(|c| CertifiedKey::new(vec![c.clone()], certified.key.clone()).keys_match().is_ok());
    match position {
        Some(i) => TlsError::file(
            cert_path,
            format!(
                "the private key {} matches certificate {} of this file, not the first one: put the server certificate \
                 first, then its issuers",
                key_path.display(),
                i + 2
            ),
        ),
        None => TlsError::file(
            key_path,
            format!(
                "this private key does not match the certificate in {} (their public keys differ): the key belongs to \
                 another certificate",
                cert_path.display()
            ),
        ),
    }
}

fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| TlsError::io(path, e))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// How often, at most, a handshake looks at the files' metadata.
pub const RELOAD_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// A failed reload of files modified less than this long ago is retried before it is reported:
/// renewals replace the certificate and the key one after the other, and in between the pair
/// does not match.
const SETTLE_TIME: Duration = Duration::from_secs(2);

/// Identity of a file's content as far as `stat` can tell; None when it cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    modified_ns: i128,
    changed_ns: i128,
    size: u64,
    inode: u64,
    device: u64,
}

impl FileStamp {
    /// Follows symlinks, so a Kubernetes secret volume swapping its `..data` link counts as a change.
    fn of(path: &Path) -> Option<FileStamp> {
        let m = std::fs::metadata(path).ok()?;
        Some(FileStamp {
            modified_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            changed_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
            size: m.size(),
            inode: m.ino(),
            device: m.dev(),
        })
    }
}

type Stamps = (Option<FileStamp>, Option<FileStamp>);

/// True while either file was modified within [`SETTLE_TIME`].
fn settling(stamps: &Stamps) -> bool {
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0);
    let recent = |s: &Option<FileStamp>| s.is_some_and(|s| now_ns - s.modified_ns.max(s.changed_ns) < SETTLE_TIME.as_nanos() as i128);
    recent(&stamps.0) || recent(&stamps.1)
}

struct ReloadState {
    current: Arc<CertifiedKey>,
    /// The file stamps `current` was loaded from.
    loaded: Stamps,
    /// The stamps of the last failed attempt, so one broken change is reported once.
    failed: Option<Stamps>,
    last_error: Option<String>,
    /// How many failed reloads were logged as errors.
    reported: u64,
    last_check: Instant,
}

/// Serves the certificate and key from two files and re-reads them when they change on disk
/// (modification time, size, inode), checked at most once per interval during a handshake. A
/// replaced certificate is served from the next new connection on; if the new files are broken
/// the previous certificate stays in use and the error is logged once per change.
pub struct ReloadingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    interval: Duration,
    provider: Arc<CryptoProvider>,
    state: Mutex<ReloadState>,
}

impl std::fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

impl ReloadingCert {
    /// Loads the files now; fails if they are unusable (a server must not start without a certificate).
    pub fn new(cert_path: &Path, key_path: &Path) -> Result<ReloadingCert> {
        Self::with_interval(cert_path, key_path, RELOAD_CHECK_INTERVAL)
    }

    /// Like [`ReloadingCert::new`] with another check interval.
    pub fn with_interval(cert_path: &Path, key_path: &Path, interval: Duration) -> Result<ReloadingCert> {
        let provider = provider();
        let loaded = (FileStamp::of(cert_path), FileStamp::of(key_path));
        let current = Arc::new(load_with(cert_path, key_path, &provider)?);
        Ok(ReloadingCert {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            interval,
            provider,
            state: Mutex::new(ReloadState {
                current,
                loaded,
                failed: None,
                last_error: None,
                reported: 0,
                last_check: Instant::now(),
            }),
        })
    }

    /// The certificate to serve now, after re-reading the files if the interval has passed and
    /// they changed.
    pub fn current(&self) -> Arc<CertifiedKey> {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if state.last_check.elapsed() >= self.interval {
            state.last_check = Instant::now();
            self.reload_if_changed(&mut state);
        }
        state.current.clone()
    }

    /// The error of the last failed reload, cleared by a successful one.
    pub fn last_error(&self) -> Option<String> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .last_error
            .clone()
    }

    #[cfg(test)]
    fn reported_failures(&self) -> u64 {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).reported
    }

    fn reload_if_changed(&self, state: &mut ReloadState) {
        // Stat before reading: a change during the read is then seen again at the next check.
        let stamps = (FileStamp::of(&self.cert_path), FileStamp::of(&self.key_path));
        if stamps == state.loaded || state.failed == Some(stamps) {
            return;
        }
        match load_with(&self.cert_path, &self.key_path, &self.provider) {
            Ok(certified) => {
                let fingerprint = certified.cert.first().map(|c| super::certs::fingerprint_der(c)).unwrap_or_default();
                tracing::info!(certificate = %self.cert_path.display(), sha256 = %fingerprint, "TLS certificate reloaded");
                state.current = Arc::new(certified);
                state.loaded = stamps;
                state.failed = None;
                state.last_error = None;
            }
            Err(e) if settling(&stamps) => {
                // Possibly half-way through a replacement: look again at the next check.
                tracing::debug!(error = %e, "TLS certificate or key changing on disk; not yet usable");
                state.last_error = Some(e.to_string());
            }
            Err(e) => {
                tracing::error!(error = %e, "the TLS certificate or key changed on disk but cannot be used; still serving the previous certificate");
                state.failed = Some(stamps);
                state.last_error = Some(e.to_string());
                state.reported += 1;
            }
        }
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// The lowest TLS version accepted (registry:2's `http.tls.minimumtls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MinimumTls {
    #[default]
    Tls12,
    Tls13,
}

impl MinimumTls {
    /// Parses registry:2's values. `tls1.0` and `tls1.1` are accepted for compatibility but
    /// served as TLS 1.2 (rustls has no older versions); the second value then says so.
    pub fn parse(value: &str) -> Result<(MinimumTls, Option<String>)> {
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "tls1.2" => Ok((MinimumTls::Tls12, None)),
            "tls1.3" => Ok((MinimumTls::Tls13, None)),
            old @ ("tls1.0" | "tls1.1") => Ok((
                MinimumTls::Tls12,
                Some(format!("http.tls.minimumtls {old} is not supported: TLS 1.2 is the minimum")),
            )),
            other => Err(TlsError::Invalid(format!(
                "http.tls.minimumtls: unknown TLS version {other:?} (use tls1.2 or tls1.3)"
            ))),
        }
    }
}

/// A server configuration serving `cert_path`/`key_path` with reload (see [`ReloadingCert`]):
/// TLS 1.2 and 1.3 with the ring provider's default suites, ALPN h2 and http/1.1. With
/// `client_cas`, every client must present a certificate issued by one of those CAs.
pub fn server_config(cert_path: &Path, key_path: &Path, client_cas: &[PathBuf]) -> Result<Arc<ServerConfig>> {
    server_config_with(cert_path, key_path, client_cas, MinimumTls::Tls12)
}

/// [`server_config`] with a minimum TLS version.
pub fn server_config_with(cert_path: &Path, key_path: &Path, client_cas: &[PathBuf], minimum: MinimumTls) -> Result<Arc<ServerConfig>> {
    let provider = provider();
    let versions: &[&'static rustls::SupportedProtocolVersion] = match minimum {
        MinimumTls::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        MinimumTls::Tls13 => &[&rustls::version::TLS13],
    };
    let builder = ServerConfig::builder_with_provider(provider.clone()).with_protocol_versions(versions)?;
    let builder = if client_cas.is_empty() {
        builder.with_no_client_auth()
    } else {
        let roots = Arc::new(client_ca_roots(client_cas)?);
        let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider)
            .build()
            .map_err(|e| TlsError::Invalid(format!("client CA certificates: {e}")))?;
        builder.with_client_cert_verifier(verifier)
    };
    let mut config = builder.with_cert_resolver(Arc::new(ReloadingCert::new(cert_path, key_path)?));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn client_ca_roots(paths: &[PathBuf]) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for path in paths {
        let text = read_text(path)?;
        for der in keys::certificates(&text).map_err(|p| TlsError::file(path, p))? {
            roots
                .add(der)
                .map_err(|e| TlsError::file(path, format!("not a usable CA certificate: {e}")))?;
        }
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::certs::{self, write_atomic, CertKey};

    fn issue(dir: &Path, name: &str) -> CertKey {
        let ca = certs::new_ca("CA", 10).unwrap();
        let s = certs::issue_server(&ca, &["127.0.0.1".parse().unwrap()], &[name.to_string()], 10).unwrap();
        s.save(dir, "server").unwrap();
        s
    }

    fn served_fingerprint(r: &ReloadingCert) -> String {
        certs::fingerprint_der(&r.current().cert[0])
    }

    #[test]
    fn loads_chain_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let s = issue(dir.path(), "a.test");
        let ck = load_cert_key(&dir.path().join("server.crt"), &dir.path().join("server.key")).unwrap();
        assert_eq!(ck.cert.len(), 2);
        assert_eq!(certs::fingerprint_der(&ck.cert[0]), certs::fingerprint_sha256(&s.cert_pem).unwrap());
    }

    #[test]
    fn errors_name_the_file_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        issue(d, "a.test");
        let (crt, key) = (d.join("server.crt"), d.join("server.key"));
        let err = load_cert_key(&d.join("missing.crt"), &key).unwrap_err().to_string();
        assert!(err.contains("missing.crt") && err.contains("No such file"), "{err}");
        let err = load_cert_key(&key, &crt).unwrap_err().to_string();
        assert!(err.contains("server.key") && err.contains("swapped"), "{err}");
        // A key from another certificate.
        let other = tempfile::tempdir().unwrap();
        issue(other.path(), "b.test");
        let err = load_cert_key(&crt, &other.path().join("server.key")).unwrap_err().to_string();
        assert!(
            err.contains("does not match the certificate") && err.contains("server.crt"),
            "{err}"
        );
        // The CA's key with the chain: the key matches certificate 2.
        let ca = certs::new_ca("CA", 10).unwrap();
        let s = certs::issue_server(&ca, &[], &["c.test".into()], 10).unwrap();
        let reversed = CertKey {
            cert_pem: format!("{}{}", ca.cert_pem, s.leaf_pem().unwrap()),
            key_pem: s.key_pem.clone(),
        };
        reversed.save(d, "rev").unwrap();
        let err = load_cert_key(&d.join("rev.crt"), &d.join("rev.key")).unwrap_err().to_string();
        assert!(err.contains("matches certificate 2") && err.contains("first"), "{err}");
        std::fs::write(d.join("junk.key"), "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").unwrap();
        let err = load_cert_key(&crt, &d.join("junk.key")).unwrap_err().to_string();
        assert!(err.contains("junk.key") && err.contains("unsupported private key"), "{err}");
    }

    #[test]
    fn reload_picks_up_replaced_files_and_survives_broken_ones() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let a = issue(d, "a.test");
        let r = ReloadingCert::with_interval(&d.join("server.crt"), &d.join("server.key"), Duration::from_millis(300)).unwrap();
        let fp_a = certs::fingerprint_sha256(&a.cert_pem).unwrap();
        assert_eq!(served_fingerprint(&r), fp_a);

        let b = issue(d, "b.test");
        let fp_b = certs::fingerprint_sha256(&b.cert_pem).unwrap();
        // Within the interval the files are not even looked at.
        assert_eq!(served_fingerprint(&r), fp_a);
        std::thread::sleep(Duration::from_millis(350));
        assert_eq!(served_fingerprint(&r), fp_b);

        // A broken certificate keeps B in service and is reported.
        write_atomic(&d.join("server.crt"), b"garbage", 0o644).unwrap();
        std::thread::sleep(Duration::from_millis(350));
        assert_eq!(served_fingerprint(&r), fp_b);
        assert!(r.last_error().unwrap().contains("no certificate found"), "{:?}", r.last_error());
        // Once the change has settled it is reported, once, however many handshakes follow.
        std::thread::sleep(SETTLE_TIME);
        for _ in 0..4 {
            assert_eq!(served_fingerprint(&r), fp_b);
            std::thread::sleep(Duration::from_millis(350));
        }
        assert_eq!(r.reported_failures(), 1);

        // A certificate whose key has not been replaced yet is a mismatch until the key arrives.
        let c_dir = tempfile::tempdir().unwrap();
        let c = issue(c_dir.path(), "c.test");
        write_atomic(&d.join("server.crt"), c.cert_pem.as_bytes(), 0o644).unwrap();
        std::thread::sleep(Duration::from_millis(350));
        assert_eq!(served_fingerprint(&r), fp_b);
        assert!(r.last_error().unwrap().contains("does not match"), "{:?}", r.last_error());
        write_atomic(&d.join("server.key"), c.key_pem.as_bytes(), 0o600).unwrap();
        std::thread::sleep(Duration::from_millis(350));
        assert_eq!(served_fingerprint(&r), certs::fingerprint_sha256(&c.cert_pem).unwrap());
        assert_eq!(r.last_error(), None);
    }

    #[test]
    fn config_has_alpn_and_optional_client_auth() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        issue(d, "a.test");
        let cfg = server_config(&d.join("server.crt"), &d.join("server.key"), &[]).unwrap();
        assert_eq!(cfg.alpn_protocols, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
        let ca = certs::new_ca("clients", 10).unwrap();
        ca.save(d, "clients").unwrap();
        server_config(&d.join("server.crt"), &d.join("server.key"), &[d.join("clients.crt")]).unwrap();
        let err = server_config(&d.join("server.crt"), &d.join("server.key"), &[d.join("server.key")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("server.key"), "{err}");
    }

    #[test]
    fn minimum_tls_values() {
        assert_eq!(MinimumTls::parse("").unwrap(), (MinimumTls::Tls12, None));
        assert_eq!(MinimumTls::parse("TLS1.3").unwrap().0, MinimumTls::Tls13);
        assert!(MinimumTls::parse("tls1.0").unwrap().1.is_some());
        assert!(MinimumTls::parse("ssl3").is_err());
    }
}
