//! Which clients are installed on the machine doctor judges: only those are judged, and a
//! missing one is "not installed", not a failure — a Docker-only host (a balena device) has
//! no containerd or podman of its own to refuse anything, even when a `/etc/containerd` or
//! `/etc/containers` directory was left behind (by a removed package, or emptied certs.d
//! directories, which `wharf trust` and the trust script also make).

use super::clients::ClientFs;

/// What doctor looked for, for the step that says containerd is not installed.
pub const CONTAINERD_MISSING: &str =
    "not installed (no containerd or ctr on PATH, no /etc/containerd/config.toml, no /run/containerd/containerd.sock)";

/// What doctor looked for, for the step that says podman and its kin are not installed.
pub const CONTAINERS_MISSING: &str =
    "not installed (no podman, skopeo or buildah on PATH, no /etc/containers/registries.conf or policy.json)";

/// containerd is installed when its binary or `ctr` is on PATH, or its configuration file or
/// socket exists; all looked up below `--root` when one is given.
pub fn containerd(fs: &ClientFs) -> bool {
    any_of(
        fs,
        &["/etc/containerd/config.toml", "/run/containerd/containerd.sock"],
        &["containerd", "ctr"],
    )
}

/// podman, skopeo or buildah (containers/image, which reads /etc/containers/certs.d) is
/// installed when one of them is on PATH, or the configuration containers-common installs for
/// them exists; looked up below `--root` when one is given.
pub fn containers(fs: &ClientFs) -> bool {
    any_of(
        fs,
        &["/etc/containers/registries.conf", "/etc/containers/policy.json"],
        &["podman", "skopeo", "buildah"],
    )
}

/// One of `files` exists, or one of `programs` is on PATH.
fn any_of(fs: &ClientFs, files: &[&str], programs: &[&str]) -> bool {
    files.iter().any(|f| fs.exists(f)) || programs.iter().any(|p| on_path(fs, p))
}

/// A program named `name` in a directory of `$PATH` (read below `--root`).
fn on_path(fs: &ClientFs, name: &str) -> bool {
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    path.split(':')
        .filter(|d| d.starts_with('/'))
        .any(|d| fs.path(&format!("{d}/{name}")).is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fs_with(files: &[&str]) -> (tempfile::TempDir, ClientFs) {
        let dir = tempfile::tempdir().unwrap();
        for f in files {
            let p = dir.path().join(f.trim_start_matches('/'));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "").unwrap();
        }
        let fs = ClientFs::new(Some(dir.path().to_path_buf()));
        (dir, fs)
    }

    #[test]
    fn podman_is_installed_by_its_binary_or_its_configuration_not_by_an_empty_certs_d() {
        let (_d, left_behind) = fs_with(&["/etc/containers/certs.d/reg.lan:5000/ca.crt"]);
        assert!(!containers(&left_behind));
        let (_d, configured) = fs_with(&["/etc/containers/policy.json"]);
        assert!(containers(&configured));
        let (_d, binary) = fs_with(&["/usr/bin/skopeo"]);
        // Found when /usr/bin is on PATH, as on every Linux system.
        let on_usr_bin = std::env::var("PATH").unwrap_or_default().split(':').any(|d| d == "/usr/bin");
        assert_eq!(containers(&binary), on_usr_bin);
    }
}
