//! The registry's names in a node's /etc/hosts, pointing at the Service's cluster IP: how
//! container runtimes on the node resolve them (they do not use cluster DNS). Only lines
//! carrying [`MARKER`] are wharf's; everything else in the file is kept as it is.

use anyhow::{bail, Context};
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

pub const MARKER: &str = "# added by wharf kube node-trust";
pub const HOSTS: &str = "etc/hosts";

/// `text` with wharf's old lines dropped and one line per entry appended.
pub fn with_entries(text: &str, entries: &[(String, IpAddr)]) -> String {
    let mut out: String = text.lines().filter(|l| !l.ends_with(MARKER)).map(|l| format!("{l}\n")).collect();
    for (host, ip) in entries {
        out.push_str(&format!("{ip} {host} {MARKER}\n"));
    }
    out
}

/// Writes the entries into `root`'s /etc/hosts (atomically; the mode is kept). Returns
/// whether the file changed.
pub fn apply(root: &Path, entries: &[(String, IpAddr)]) -> anyhow::Result<bool> {
    let path = root.join(HOSTS);
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    if meta.as_ref().is_some_and(|m| m.file_type().is_symlink()) {
        bail!(
            "{} is a symbolic link; add the entries to the file it names by hand",
            path.display()
        );
    }
    let text = match meta {
        Some(_) => std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?,
        None => String::new(),
    };
    let new = with_entries(&text, entries);
    if new == text {
        return Ok(false);
    }
    let mode = std::fs::metadata(&path).map(|m| m.permissions().mode() & 0o7777).unwrap_or(0o644);
    crate::tls::certs::write_atomic(&path, new.as_bytes(), mode)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_wharfs_lines_change() {
        let original = "127.0.0.1 localhost\n# a comment\n10.0.0.9 other\n";
        let ip: IpAddr = "10.96.0.20".parse().unwrap();
        let added = with_entries(original, &[("wharf.wharf.svc.cluster.local".into(), ip)]);
        assert_eq!(added, format!("{original}10.96.0.20 wharf.wharf.svc.cluster.local {MARKER}\n"));
        assert_eq!(with_entries(&added, &[("wharf.wharf.svc.cluster.local".into(), ip)]), added);
        assert_eq!(with_entries(&added, &[]), original);

        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("etc")).unwrap();
        std::fs::write(root.path().join(HOSTS), original).unwrap();
        assert!(apply(root.path(), &[("a.lan".into(), ip)]).unwrap());
        assert!(!apply(root.path(), &[("a.lan".into(), ip)]).unwrap());
        assert!(apply(root.path(), &[]).unwrap());
        assert_eq!(std::fs::read_to_string(root.path().join(HOSTS)).unwrap(), original);
    }
}
