//! Which clients are installed on the machine doctor judges: only those are judged, and a
//! missing one is "not installed", not a failure — a Docker-only host (a balena device) has
//! no containerd of its own to refuse anything, even when a `/etc/containerd` directory was
//! left behind (by a removed package, or emptied certs.d directories).

use super::clients::ClientFs;

/// What doctor looked for, for the step that says containerd is not installed.
pub const CONTAINERD_MISSING: &str =
    "not installed (no containerd or ctr on PATH, no /etc/containerd/config.toml, no /run/containerd/containerd.sock)";

/// containerd is installed when its binary or `ctr` is on PATH, or its configuration file or
/// socket exists; all looked up below `--root` when one is given.
pub fn containerd(fs: &ClientFs) -> bool {
    ["/etc/containerd/config.toml", "/run/containerd/containerd.sock"]
        .iter()
        .any(|f| fs.exists(f))
        || ["containerd", "ctr"].iter().any(|b| on_path(fs, b))
}

/// A program named `name` in a directory of `$PATH` (read below `--root`).
fn on_path(fs: &ClientFs, name: &str) -> bool {
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    path.split(':')
        .filter(|d| d.starts_with('/'))
        .any(|d| fs.path(&format!("{d}/{name}")).is_file())
}
