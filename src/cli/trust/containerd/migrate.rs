//! containerd's old registry settings in config.toml — `registry.mirrors."HOST".endpoint` and
//! `registry.configs."HOST".tls` — moved into hosts.toml files. containerd refuses both together
//! with `config_path` ("`mirrors` cannot be set when `config_path` is provided"), so setting
//! config_path means moving them, with the meaning they had:
//! - a mirror's endpoints were tried in order, then the registry itself: `[host."ENDPOINT"]`
//!   tables (pull and resolve) in that order, and `server` for the registry;
//! - a `tls` block applied to every endpoint on that host: `ca`, `client` and `skip_verify` on
//!   the server or host entry with that host.
//!
//! `configs."HOST".auth` stays in config.toml: containerd still reads it with config_path.

use std::collections::BTreeMap;
use toml_edit::{Array, DocumentMut, Item, Table, TableLike};

/// A hosts.toml to write under certs.d.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostsFile {
    /// The directory name under certs.d: the registry's `HOST[:PORT]`, or `_default`.
    pub dir: String,
    pub content: String,
    /// The config.toml tables it replaces, for the report.
    pub from: Vec<String>,
}

/// First line of a moved file. It is the user's configuration, not wharf's: no MARKER, so
/// `wharf trust --remove` leaves it.
const MOVED: &str = "# Moved here by wharf trust from /etc/containerd/config.toml: containerd refuses\n\
                     # registry.mirrors / registry.configs.*.tls there once config_path is set.\n";

#[derive(Debug, Default, Clone)]
struct Tls {
    ca: Option<String>,
    cert: Option<String>,
    key: Option<String>,
    skip_verify: Option<bool>,
}

/// Removes the old-style blocks from the CRI `registry` table and returns their hosts.toml
/// files; empty when there are none (empty `mirrors` / `configs` tables are no conflict).
pub fn take(registry: &mut dyn TableLike) -> Vec<HostsFile> {
    let mirrors = take_mirrors(registry);
    let tls = take_tls(registry);
    let mut dirs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (host, (_, tables)) in &mirrors {
        dirs.entry(dir_name(host)).or_default().extend(tables.iter().cloned());
    }
    for (host, (_, table)) in &tls {
        dirs.entry(dir_name(host)).or_default().push(table.clone());
    }
    dirs.into_iter()
        .map(|(dir, from)| {
            let host = if dir == "_default" { "*".to_string() } else { dir.clone() };
            let endpoints = mirrors.get(&host).map(|(e, _)| e.as_slice()).unwrap_or_default();
            HostsFile {
                content: hosts_toml(&host, endpoints, &tls),
                dir,
                from,
            }
        })
        .collect()
}

type Mirrors = BTreeMap<String, (Vec<String>, Vec<String>)>;

/// `mirrors."HOST".endpoint` lists, by HOST, with the table names they came from.
fn take_mirrors(registry: &mut dyn TableLike) -> Mirrors {
    let mut out = Mirrors::new();
    let Some(mirrors) = registry.get_mut("mirrors").and_then(Item::as_table_like_mut) else {
        return out;
    };
    let hosts: Vec<String> = mirrors.iter().map(|(k, _)| k.to_string()).collect();
    for host in hosts {
        let item = mirrors.remove(&host).expect("listed above");
        let endpoints = item
            .get("endpoint")
            .and_then(Item::as_array)
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        out.insert(host.clone(), (endpoints, vec![format!("registry.mirrors.{host:?}")]));
    }
    out
}

/// `configs."HOST".tls` blocks, by HOST, removed from config.toml (the rest of a config stays).
fn take_tls(registry: &mut dyn TableLike) -> BTreeMap<String, (Tls, String)> {
    let mut out = BTreeMap::new();
    let Some(configs) = registry.get_mut("configs").and_then(Item::as_table_like_mut) else {
        return out;
    };
    let hosts: Vec<String> = configs.iter().map(|(k, _)| k.to_string()).collect();
    for host in hosts {
        let Some(config) = configs.get_mut(&host).and_then(Item::as_table_like_mut) else {
            continue;
        };
        let Some(tls) = config.remove("tls") else { continue };
        let s = |k: &str| tls.get(k).and_then(Item::as_str).filter(|v| !v.is_empty()).map(str::to_owned);
        let block = Tls {
            ca: s("ca_file"),
            cert: s("cert_file"),
            key: s("key_file"),
            skip_verify: tls.get("insecure_skip_verify").and_then(Item::as_bool),
        };
        if config.is_empty() {
            configs.remove(&host);
        }
        out.insert(host.clone(), (block, format!("registry.configs.{host:?}.tls")));
    }
    out
}

/// certs.d's directory for a registry host; `*` (every registry) is `_default`.
fn dir_name(host: &str) -> String {
    if host == "*" {
        "_default".to_string()
    } else {
        host.to_string()
    }
}

/// The registry's own URL as containerd's CRI plugin defaulted it: Docker Hub's real host for
/// docker.io, plain HTTP for localhost, HTTPS otherwise.
fn server_url(host: &str) -> String {
    if host == "docker.io" {
        return "https://registry-1.docker.io".to_string();
    }
    let name = host
        .rsplit_once(':')
        .filter(|(_, p)| p.parse::<u16>().is_ok())
        .map_or(host, |(h, _)| h);
    let local = name == "localhost" || name == "[::1]" || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    format!("{}://{host}", if local { "http" } else { "https" })
}

/// `https://host:port/path` → `host:port`.
fn authority(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().unwrap_or_default()
}

fn hosts_toml(host: &str, endpoints: &[String], tls: &BTreeMap<String, (Tls, String)>) -> String {
    let mut doc = DocumentMut::new();
    let server = (host != "*").then(|| server_url(host));
    if let Some(server) = &server {
        doc.insert("server", toml_edit::value(server.as_str()));
        if let Some((t, _)) = tls.get(host) {
            apply_tls(doc.as_table_mut(), t);
        }
    }
    let mut hosts = Table::new();
    hosts.set_implicit(true);
    for endpoint in endpoints.iter().filter(|e| server.as_deref() != Some(e.trim_end_matches('/'))) {
        let mut t = Table::new();
        t.insert("capabilities", toml_edit::value(Array::from_iter(["pull", "resolve"])));
        if let Some((block, _)) = tls.get(authority(endpoint)) {
            apply_tls(&mut t, block);
        }
        hosts.insert(endpoint, Item::Table(t));
    }
    if !hosts.is_empty() {
        doc.insert("host", Item::Table(hosts));
    }
    format!("{MOVED}{doc}")
}

fn apply_tls(table: &mut Table, tls: &Tls) {
    if let Some(ca) = &tls.ca {
        table.insert("ca", toml_edit::value(ca.as_str()));
    }
    match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => {
            let pair = Array::from_iter([cert.as_str(), key.as_str()]);
            let mut pairs = Array::new();
            pairs.push(pair);
            table.insert("client", toml_edit::value(pairs));
        }
        (Some(cert), None) => {
            table.insert("client", toml_edit::value(cert.as_str()));
        }
        _ => {}
    }
    if let Some(skip) = tls.skip_verify {
        table.insert("skip_verify", toml_edit::value(skip));
    }
}

#[cfg(test)]
mod tests {
    use super::super::config;

    /// `containerd config default` with the mirror and TLS blocks guides told users to add.
    fn with_mirrors() -> String {
        let default = include_str!("../../../../tests/fixtures/containerd/config-default-1.6.toml");
        default
            .replace(
                "      [plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors]\n",
                "      [plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors]\n\
             \x20       [plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"docker.io\"]\n\
             \x20         endpoint = [\"https://mirror.lan:5000\", \"https://registry-1.docker.io\"]\n\
             \x20       [plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"10.0.0.5:5000\"]\n\
             \x20         endpoint = [\"https://10.0.0.5:5000\"]\n",
            )
            .replace(
                "      [plugins.\"io.containerd.grpc.v1.cri\".registry.configs]\n",
                "      [plugins.\"io.containerd.grpc.v1.cri\".registry.configs]\n\
             \x20       [plugins.\"io.containerd.grpc.v1.cri\".registry.configs.\"mirror.lan:5000\".tls]\n\
             \x20         ca_file = \"/etc/ssl/mirror-ca.crt\"\n\
             \x20       [plugins.\"io.containerd.grpc.v1.cri\".registry.configs.\"10.0.0.5:5000\".tls]\n\
             \x20         ca_file = \"/etc/ssl/reg-ca.crt\"\n\
             \x20         cert_file = \"/etc/ssl/client.crt\"\n\
             \x20         key_file = \"/etc/ssl/client.key\"\n\
             \x20       [plugins.\"io.containerd.grpc.v1.cri\".registry.configs.\"10.0.0.5:5000\".auth]\n\
             \x20         username = \"ci\"\n",
            )
    }

    #[test]
    fn mirrors_and_tls_move_to_hosts_toml_and_auth_stays() {
        let text = with_mirrors();
        let edit = config::configure(&text).unwrap().unwrap();
        let dirs: Vec<&str> = edit.moved.iter().map(|m| m.dir.as_str()).collect();
        assert_eq!(dirs, ["10.0.0.5:5000", "docker.io", "mirror.lan:5000"]);

        let hub: toml_edit::DocumentMut = edit.moved[1].content.parse().unwrap();
        assert_eq!(hub["server"].as_str(), Some("https://registry-1.docker.io"));
        let hosts: Vec<&str> = hub["host"].as_table().unwrap().iter().map(|(k, _)| k).collect();
        assert_eq!(hosts, ["https://mirror.lan:5000"], "in order, without the server itself");
        assert_eq!(
            hub["host"]["https://mirror.lan:5000"]["ca"].as_str(),
            Some("/etc/ssl/mirror-ca.crt")
        );

        let reg: toml_edit::DocumentMut = edit.moved[0].content.parse().unwrap();
        assert_eq!(reg["server"].as_str(), Some("https://10.0.0.5:5000"));
        assert_eq!(reg["ca"].as_str(), Some("/etc/ssl/reg-ca.crt"));
        assert_eq!(
            reg["client"].to_string().trim(),
            r#"[["/etc/ssl/client.crt", "/etc/ssl/client.key"]]"#
        );
        assert_eq!(
            edit.moved[0].from,
            ["registry.mirrors.\"10.0.0.5:5000\"", "registry.configs.\"10.0.0.5:5000\".tls"]
        );

        // config.toml: the blocks are gone, the auth and the empty tables stay, and containerd's
        // own reading of it finds nothing left to refuse.
        assert!(!edit.text.contains("endpoint") && !edit.text.contains("ca_file"), "{}", edit.text);
        assert!(edit
            .text
            .contains("registry.configs.\"10.0.0.5:5000\".auth]\n          username = \"ci\"\n"));
        assert!(edit
            .text
            .contains("      [plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors]\n"));
        assert!(edit.text.contains("config_path = \"/etc/containerd/certs.d\""));
        assert!(config::configure(&edit.text).unwrap().is_none());
    }

    #[test]
    fn server_urls() {
        assert_eq!(super::server_url("localhost:5000"), "http://localhost:5000");
        assert_eq!(super::server_url("127.0.0.1:5000"), "http://127.0.0.1:5000");
        assert_eq!(super::server_url("reg.lan"), "https://reg.lan");
    }
}
