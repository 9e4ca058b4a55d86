//! containerd: the per-registry `hosts.toml`, and the one setting in `config.toml` without
//! which the CRI plugin (Kubernetes, crictl) never looks at it: `config_path`.
//!
//! containerd 1.x leaves `config_path` empty by default; 2.x defaults to
//! `/etc/containerd/certs.d:/etc/docker/certs.d` unless a config file overrides it. `ctr`
//! ignores all of it unless given `--hosts-dir`.

pub mod config;
mod migrate;
pub mod restart;

use super::target::Target;
use std::path::Path;

pub const CERTS_D: &str = "/etc/containerd/certs.d";
pub const CONFIG: &str = "/etc/containerd/config.toml";
/// First line of every hosts.toml wharf writes; files without it belong to someone else.
pub const MARKER: &str = "# Written by wharf trust";

/// `server` is the registry itself; the `host` entry lists what it may do and which CA to
/// trust (an absolute path, so it holds wherever containerd resolves relative ones from).
pub fn hosts_toml(target: &Target, ca_path: &Path) -> String {
    let url = target.url();
    format!(
        "{MARKER} for {name}; `wharf trust --remove {name}` deletes it.\n\
         server = {url_value}\n\
         \n\
         [host.{url_value}]\n  capabilities = [\"pull\", \"resolve\", \"push\"]\n  ca = {ca}\n",
        name = target.name(),
        url_value = toml_string(&url),
        ca = toml_string(&ca_path.display().to_string()),
    )
}

/// `s` as a TOML basic string, quotes and escapes included.
pub fn toml_string(s: &str) -> String {
    toml_edit::Value::from(s).to_string().trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_toml_content() {
        let t = Target::parse("10.0.0.5:5000").unwrap();
        let text = hosts_toml(&t, Path::new("/etc/containerd/certs.d/10.0.0.5:5000/ca.crt"));
        assert!(text.starts_with(MARKER));
        assert!(text.contains("\nserver = \"https://10.0.0.5:5000\"\n"));
        assert!(text.contains("[host.\"https://10.0.0.5:5000\"]\n  capabilities = [\"pull\", \"resolve\", \"push\"]\n"));
        assert!(text.contains("  ca = \"/etc/containerd/certs.d/10.0.0.5:5000/ca.crt\"\n"));
        let doc: toml_edit::DocumentMut = text.parse().expect("valid TOML");
        assert_eq!(doc["host"]["https://10.0.0.5:5000"]["capabilities"].as_array().unwrap().len(), 3);
        let tricky = "/a\"b\\c";
        let doc: toml_edit::DocumentMut = format!("k = {}", toml_string(tricky)).parse().unwrap();
        assert_eq!(doc["k"].as_str(), Some(tricky));
    }
}
