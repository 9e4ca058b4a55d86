//! Who the server runs as in the container. Started as root (the image's default, as
//! registry:2's), it switches for good to the owner of the storage root when that owner is not
//! root and can do everything the configuration asks: write the root, read the configuration,
//! certificate, key and password files, and bind the port. Otherwise it stays root and says
//! why, so seed-style set-ups (a host directory Docker created as root, a key file only root
//! may read) keep working exactly as with registry:2.
//!
//! The checks run with the owner's effective IDs (the saved root IDs bring the process back),
//! before any thread exists, so what they find is what the server will meet.

use crate::cli::serve::ServeArgs;
use crate::config::{self, Config};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The image's `wharf` user, which owns /var/lib/registry there (and so every named volume
/// Docker makes from it).
pub const UNPRIVILEGED_UID: u32 = 65532;
pub const UNPRIVILEGED_GID: u32 = 65532;

/// Switches to the storage root's owner where possible; prints who the server runs as.
pub fn settle(args: &ServeArgs) {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return;
    }
    // A configuration that does not load is reported by `serve` itself.
    let Ok(loaded) = config::load(args.config.as_deref()) else { return };
    let mut cfg = loaded.config;
    if let Some(addr) = &args.addr {
        cfg.http.addr = addr.clone();
    }
    let root = args.root.clone().unwrap_or_else(|| cfg.root_directory());
    match unprivileged_owner(&cfg, &root, loaded.source.as_deref()) {
        Ok((uid, gid)) => match switch_for_good(uid, gid) {
            Ok(()) => eprintln!("wharf: running as user {uid}:{gid}, the owner of {}", root.display()),
            Err(e) => eprintln!("wharf: running as root: cannot switch to user {uid}:{gid}: {e}"),
        },
        Err(why) => eprintln!("wharf: running as root: {why}"),
    }
}

/// The owner of the storage root, when it is not root and can run the server; else why not.
fn unprivileged_owner(cfg: &Config, root: &Path, config_file: Option<&Path>) -> Result<(u32, u32), String> {
    let existing = nearest_existing(root);
    let meta = std::fs::metadata(&existing).map_err(|e| format!("cannot inspect {}: {e}", existing.display()))?;
    let (uid, gid) = (meta.uid(), meta.gid());
    if uid == 0 {
        return Err(format!(
            "the storage root {} belongs to root (to run unprivileged, give the host directory to another user, \
             e.g. chown -R {UNPRIVILEGED_UID}:{UNPRIVILEGED_GID}, the image's wharf user)",
            existing.display()
        ));
    }
    if let Ok(addr) = cfg.listen_addr() {
        let lowest = unprivileged_port_start();
        if addr.port() != 0 && u32::from(addr.port()) < lowest {
            return Err(format!(
                "port {} needs root here (unprivileged ports start at {lowest})",
                addr.port()
            ));
        }
    }
    let files = files_read(cfg, config_file);
    as_effective(uid, gid, || {
        if !may_write(&existing) {
            return Err(format!("user {uid} cannot write {}", existing.display()));
        }
        for (key, path) in &files {
            if let Err(e) = std::fs::File::open(path) {
                return Err(format!("user {uid} cannot read {} ({key}): {e}", path.display()));
            }
        }
        Ok(())
    })?;
    Ok((uid, gid))
}

/// `path`, or the closest ancestor that exists (the server creates the rest).
fn nearest_existing(path: &Path) -> PathBuf {
    let mut p = path.to_path_buf();
    while !p.exists() {
        match p.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => p = parent.to_path_buf(),
            _ => return PathBuf::from("."),
        }
    }
    p
}

/// Every file the server reads, with the key that names it.
fn files_read(cfg: &Config, config_file: Option<&Path>) -> Vec<(&'static str, PathBuf)> {
    let mut files = Vec::new();
    if let Some(f) = config_file {
        files.push(("the configuration file", f.to_path_buf()));
    }
    if let Some(tls) = &cfg.http.tls {
        for (key, value) in [
            ("http.tls.certificate", &tls.certificate),
            ("http.tls.key", &tls.key),
            ("http.tls.cafile", &tls.cafile),
        ] {
            if !value.is_empty() {
                files.push((key, PathBuf::from(value)));
            }
        }
        files.extend(tls.clientcas.iter().map(|c| ("http.tls.clientcas", PathBuf::from(c))));
    }
    if let Some(h) = &cfg.auth.htpasswd {
        files.push(("auth.htpasswd.path", h.path.clone()));
    }
    if let Some(t) = &cfg.auth.token {
        for (key, value) in [
            ("auth.token.rootcertbundle", &t.rootcertbundle),
            ("auth.token.htpasswd", &t.htpasswd),
        ] {
            if !value.as_os_str().is_empty() {
                files.push((key, value.clone()));
            }
        }
    }
    files
}

/// The kernel's lowest port an unprivileged process may bind (Docker sets 0 in containers).
fn unprivileged_port_start() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1024)
}

/// Whether the effective user may create entries in the directory.
fn may_write(dir: &Path) -> bool {
    let Ok(c) = CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: a valid NUL-terminated path; faccessat only reads it.
    unsafe { libc::faccessat(libc::AT_FDCWD, c.as_ptr(), libc::W_OK | libc::X_OK, libc::AT_EACCESS) == 0 }
}

/// Runs `check` with effective user and group `uid`/`gid` (and no other groups), then returns
/// to root.
fn as_effective<T>(uid: u32, gid: u32, check: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    let saved = supplementary_groups();
    // SAFETY: plain system calls on IDs; each result is checked.
    unsafe {
        if libc::setgroups(1, &gid) != 0 || libc::setegid(gid) != 0 || libc::seteuid(uid) != 0 {
            restore_root(&saved);
            return Err(format!("cannot take user {uid}:{gid}: {}", std::io::Error::last_os_error()));
        }
    }
    let result = check();
    restore_root(&saved);
    result
}

fn supplementary_groups() -> Vec<libc::gid_t> {
    // SAFETY: a first call with size 0 returns the count; the second fills a buffer of that size.
    unsafe {
        let n = libc::getgroups(0, std::ptr::null_mut());
        let mut groups = vec![0; n.max(0) as usize];
        let got = libc::getgroups(n, groups.as_mut_ptr());
        groups.truncate(got.max(0) as usize);
        groups
    }
}

fn restore_root(groups: &[libc::gid_t]) {
    // SAFETY: the saved set-user-ID is still 0, so these succeed; the group list is the one read before.
    unsafe {
        libc::seteuid(0);
        libc::setegid(0);
        libc::setgroups(groups.len(), groups.as_ptr());
    }
}

/// Drops root for the rest of the process: groups, then group, then user (real, effective and
/// saved), so nothing can switch back.
fn switch_for_good(uid: u32, gid: u32) -> std::io::Result<()> {
    // SAFETY: plain system calls on IDs; each result is checked.
    unsafe {
        if libc::setgroups(1, &gid) != 0 || libc::setresgid(gid, gid, gid) != 0 || libc::setresuid(uid, uid, uid) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_existing_walks_up() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b/c");
        assert_eq!(nearest_existing(&deep), dir.path());
        assert_eq!(nearest_existing(dir.path()), dir.path());
    }

    #[test]
    fn files_read_names_every_configured_file() {
        let loaded = config::load_from(
            Some("version: 0.1\nhttp:\n  tls:\n    certificate: /c/crt\n    key: /c/key\nauth:\n  htpasswd:\n    realm: r\n    path: /a/htpasswd\n"),
            &[],
        )
        .unwrap();
        let files = files_read(&loaded.config, Some(Path::new("/etc/docker/registry/config.yml")));
        let keys: Vec<&str> = files.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            keys,
            [
                "the configuration file",
                "http.tls.certificate",
                "http.tls.key",
                "auth.htpasswd.path"
            ]
        );
        assert_eq!(files[3].1, PathBuf::from("/a/htpasswd"));
    }
}
