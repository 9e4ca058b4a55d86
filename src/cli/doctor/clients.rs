//! What each container client on this machine is configured with for the registry: Docker's
//! daemon.json and certs.d, containerd's certs.d/hosts.toml, containers' (podman, skopeo,
//! buildah) certs.d and registries.conf, and the system trust store. Every path is read below
//! `--root` when given, and shown without it (the path to fix on a real machine).

use super::target::Target;
use ipnet_lite::Cidr;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use std::net::IpAddr;
use std::path::PathBuf;
use toml_edit::{DocumentMut, Item, TableLike};

/// Reads client-side files, optionally below a fake root directory.
pub struct ClientFs {
    root: Option<PathBuf>,
}

impl ClientFs {
    pub fn new(root: Option<PathBuf>) -> ClientFs {
        ClientFs { root }
    }

    /// The real location of `logical` (an absolute path as on a real machine).
    pub fn path(&self, logical: &str) -> PathBuf {
        match &self.root {
            Some(root) => root.join(logical.trim_start_matches('/')),
            None => PathBuf::from(logical),
        }
    }

    pub fn exists(&self, logical: &str) -> bool {
        self.path(logical).exists()
    }

    pub fn read(&self, logical: &str) -> Option<std::io::Result<String>> {
        let p = self.path(logical);
        if !p.exists() {
            return None;
        }
        Some(std::fs::read(&p).map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    /// File names in a directory, sorted; empty when it does not exist.
    pub fn list(&self, logical: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.path(logical))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// `$HOME`, as a logical path.
    pub fn home(&self) -> Option<String> {
        std::env::var("HOME").ok().filter(|h| h.starts_with('/'))
    }
}

/// A CA certificate from a file a client reads.
#[derive(Debug, Clone)]
pub struct Root {
    /// Logical path of the file it came from.
    pub source: String,
    pub der: CertificateDer<'static>,
}

/// Reads every certificate in a PEM file; `Err` says why the file cannot be used.
pub fn read_roots(fs: &ClientFs, logical: &str) -> Result<Vec<Root>, String> {
    let text = match fs.read(logical) {
        None => return Err(format!("{logical} does not exist")),
        Some(Err(e)) => return Err(format!("{logical}: {e}")),
        Some(Ok(t)) => t,
    };
    let ders = CertificateDer::pem_slice_iter(text.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{logical}: malformed PEM: {e}"))?;
    if ders.is_empty() {
        return Err(format!("{logical} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"));
    }
    Ok(ders
        .into_iter()
        .map(|der| Root {
            source: logical.to_string(),
            der,
        })
        .collect())
}

/// The system CA bundle and where it was found (Debian/Ubuntu, Fedora/RHEL, Alpine).
pub fn system_roots(fs: &ClientFs) -> Option<(String, Vec<Root>)> {
    [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/cert.pem",
    ]
    .iter()
    .find(|p| fs.exists(p))
    .map(|p| (p.to_string(), read_roots(fs, p).unwrap_or_default()))
}

/// A certs.d/HOST:PORT directory read the way Docker (and containerd without hosts.toml)
/// reads it: `*.crt` are CAs, `*.cert` + `*.key` are a client certificate.
#[derive(Debug, Default)]
pub struct CertDir {
    pub dir: String,
    pub roots: Vec<Root>,
    /// Client certificate and key files (logical paths).
    pub client_pair: Option<(String, String)>,
    /// What the client will refuse or ignore, in its own words where it has them.
    pub problems: Vec<String>,
}

pub fn read_cert_dir(fs: &ClientFs, dir: &str) -> Option<CertDir> {
    if !fs.path(dir).is_dir() {
        return None;
    }
    let names = fs.list(dir);
    let mut out = CertDir {
        dir: dir.to_string(),
        ..Default::default()
    };
    for name in &names {
        let file = format!("{dir}/{name}");
        if name.ends_with(".crt") {
            match read_roots(fs, &file) {
                Ok(r) => out.roots.extend(r),
                Err(e) => out.problems.push(e),
            }
        } else if let Some(stem) = name.strip_suffix(".cert") {
            if names.iter().any(|n| n == &format!("{stem}.key")) {
                out.client_pair.get_or_insert((file.clone(), format!("{dir}/{stem}.key")));
            } else {
                // Docker's own message: it refuses the whole directory.
                out.problems.push(format!(
                    "missing key {stem}.key for client certificate {name}. CA certificates must use the extension .crt"
                ));
            }
        } else if let Some(stem) = name.strip_suffix(".key") {
            if !names.iter().any(|n| n == &format!("{stem}.cert")) {
                out.problems.push(format!("missing client certificate {stem}.cert for key {name}"));
            }
        } else if name.ends_with(".pem") || name.ends_with(".cer") {
            out.problems.push(format!(
                "{file} is ignored: clients read CA certificates only from files named *.crt"
            ));
        }
    }
    Some(out)
}

/// certs.d directory names for the registry: `HOST:PORT`, and plain `HOST` for port 443.
pub fn host_dirs(t: &Target) -> Vec<String> {
    let mut names = vec![t.registry_name()];
    if t.port == 443 {
        names.push(t.host_port());
    }
    names
}

/// Entries of a certs.d directory that look meant for this host but are not read for it
/// (wrong or missing port).
pub fn near_misses(fs: &ClientFs, certs_d: &str, t: &Target) -> Vec<String> {
    let wanted = host_dirs(t);
    fs.list(certs_d)
        .into_iter()
        .filter(|n| !wanted.contains(n))
        .filter(|n| Target::parse(n).map(|o| o.host == t.host).unwrap_or(false))
        .map(|n| {
            format!(
                "{certs_d}/{n} exists but is not read for {}: the directory must be named {}",
                t.registry_name(),
                wanted[0]
            )
        })
        .collect()
}

/// Docker's /etc/docker/daemon.json, as far as it concerns this registry.
#[derive(Debug, Default)]
pub struct DockerDaemon {
    pub insecure_registries: Vec<String>,
    /// Why dockerd would not even start with this file.
    pub problem: Option<String>,
}

pub const DAEMON_JSON: &str = "/etc/docker/daemon.json";

pub fn docker_daemon(fs: &ClientFs) -> DockerDaemon {
    let text = match fs.read(DAEMON_JSON) {
        None => return DockerDaemon::default(),
        Some(Err(e)) => {
            return DockerDaemon {
                problem: Some(format!("{DAEMON_JSON}: {e}")),
                ..Default::default()
            }
        }
        Some(Ok(t)) => t,
    };
    if text.contains(['\u{201c}', '\u{201d}']) {
        return DockerDaemon {
            problem: Some(format!(
                "{DAEMON_JSON} contains typographic quotes (“ ”), so it is not JSON and dockerd will not start: \
                 write plain double quotes, e.g. {{\"insecure-registries\": [\"HOST:PORT\"]}}"
            )),
            ..Default::default()
        };
    }
    match serde_json::from_str::<serde_json::Value>(&text) {
        Err(e) => DockerDaemon {
            problem: Some(format!("{DAEMON_JSON} is not valid JSON ({e}), so dockerd will not start")),
            ..Default::default()
        },
        Ok(v) => DockerDaemon {
            insecure_registries: v["insecure-registries"]
                .as_array()
                .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
                .unwrap_or_default(),
            problem: None,
        },
    }
}

impl DockerDaemon {
    /// Why Docker talks to this registry without verifying TLS (and falls back to plain
    /// HTTP), if it does: listed in insecure-registries, or in 127.0.0.0/8 (always insecure).
    pub fn insecure_reason(&self, t: &Target, ips: &[IpAddr]) -> Option<String> {
        let name = t.registry_name();
        if let Some(entry) = self.insecure_registries.iter().find(|e| e.trim_end_matches('/') == name) {
            return Some(format!("{DAEMON_JSON} lists {entry:?} in insecure-registries"));
        }
        for entry in &self.insecure_registries {
            if let Some(cidr) = Cidr::parse(entry) {
                if let Some(ip) = ips.iter().find(|ip| cidr.contains(**ip)) {
                    return Some(format!("{ip} is in {entry}, listed in insecure-registries ({DAEMON_JSON})"));
                }
            }
        }
        let loopback = Cidr::parse("127.0.0.0/8").expect("valid CIDR");
        ips.iter()
            .find(|ip| loopback.contains(**ip))
            .map(|ip| format!("{ip} is in 127.0.0.0/8, which Docker treats as an insecure registry by default"))
    }
}

/// containerd's configuration for this registry.
#[derive(Debug, Default)]
pub struct Containerd {
    /// The directory used (certs.d/HOST:PORT or certs.d/_default), if any.
    pub dir: Option<String>,
    pub roots: Vec<Root>,
    pub client_pair: Option<(String, String)>,
    pub skip_verify: bool,
    /// hosts.toml sends requests for this registry over plain HTTP.
    pub plain_http: bool,
    pub problems: Vec<String>,
    /// Hints that do not block by themselves.
    pub notes: Vec<String>,
    /// Why containerd's CRI plugin (Kubernetes) does not read certs.d, when it does not.
    pub cri_ignores_certs_d: Option<String>,
    /// No hosts.toml for a loopback registry (localhost, 127.0.0.0/8, ::1): containerd then
    /// speaks plain HTTP to it, as its resolver does for local hosts.
    pub loopback_http: bool,
}

pub const CONTAINERD_CERTS_D: &str = "/etc/containerd/certs.d";

pub fn containerd(fs: &ClientFs, t: &Target) -> Containerd {
    let mut out = Containerd::default();
    if let Some(Ok(cfg)) = fs.read("/etc/containerd/config.toml") {
        use crate::cli::trust::containerd::config::{status, Status};
        let why = match status(Some(&cfg)) {
            Status::Unset => Some("does not set config_path".to_string()),
            Status::Elsewhere(v) => Some(format!("sets config_path = {v:?}, which leaves out {CONTAINERD_CERTS_D}")),
            Status::Invalid(e) => Some(format!("is not valid TOML ({e})")),
            Status::Includes(_) | Status::NoFile => None,
        };
        out.cri_ignores_certs_d = why.map(|why| format!("/etc/containerd/config.toml {why}"));
    }
    let candidates = host_dirs(t).into_iter().chain(["_default".to_string()]);
    let loopback = t.host.eq_ignore_ascii_case("localhost") || t.ip.is_some_and(|ip| ip.is_loopback());
    let Some(dir) = candidates
        .map(|n| format!("{CONTAINERD_CERTS_D}/{n}"))
        .find(|d| fs.path(d).is_dir())
    else {
        out.loopback_http = loopback;
        return out;
    };
    out.dir = Some(dir.clone());
    let hosts_toml = format!("{dir}/hosts.toml");
    match fs.read(&hosts_toml) {
        None => {
            out.loopback_http = loopback;
            // Without hosts.toml containerd reads the directory like Docker does.
            if let Some(cd) = read_cert_dir(fs, &dir) {
                out.roots = cd.roots;
                out.client_pair = cd.client_pair;
                out.problems = cd.problems;
            }
        }
        Some(Err(e)) => out.problems.push(format!("{hosts_toml}: {e}")),
        Some(Ok(text)) => read_hosts_toml(fs, t, &dir, &text, &mut out),
    }
    out
}

/// Applies the parts of hosts.toml that concern this registry's own address: the top level
/// (`server`, or the default `https://HOST:PORT`) and `[host."URL"]` tables for it.
fn read_hosts_toml(fs: &ClientFs, t: &Target, dir: &str, text: &str, out: &mut Containerd) {
    let doc: DocumentMut = match text.parse() {
        Ok(doc) => doc,
        Err(e) => {
            out.problems
                .push(format!("{dir}/hosts.toml is not valid TOML, so containerd refuses to pull: {e}"));
            return;
        }
    };
    let ours = |url: &str| url_authority(url).is_some_and(|a| a == t.host_port() || a == t.registry_name());
    let top = doc.as_table();
    let server = top.get("server").and_then(Item::as_str);
    let mut tables: Vec<(Option<&str>, &dyn TableLike)> = Vec::new();
    if server.is_none_or(ours) {
        tables.push((server, top));
    }
    if let Some(hosts) = top.get("host").and_then(Item::as_table_like) {
        for (url, item) in hosts.iter() {
            if let Some(table) = item.as_table_like().filter(|_| ours(url)) {
                tables.push((Some(url), table));
            }
        }
    }
    for (url, table) in tables {
        if url.is_some_and(|u| u.starts_with("http://")) {
            out.plain_http = true;
        }
        if table.get("skip_verify").and_then(Item::as_bool) == Some(true) {
            out.skip_verify = true;
        }
        for ca in strings(table.get("ca")) {
            let path = if ca.starts_with('/') { ca } else { format!("{dir}/{ca}") };
            match read_roots(fs, &path) {
                Ok(r) => out.roots.extend(r),
                Err(e) => out.problems.push(format!("hosts.toml names the CA {path}, but: {e}")),
            }
        }
    }
}

/// A string, or the strings of an array (containerd accepts both for `ca`).
fn strings(item: Option<&Item>) -> Vec<String> {
    match item {
        Some(i) if i.is_str() => i.as_str().map(str::to_owned).into_iter().collect(),
        Some(i) => i
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default(),
        None => Vec::new(),
    }
}

/// `https://host:port/path` → `host:port`.
fn url_authority(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().map(|a| a.to_ascii_lowercase()).filter(|a| !a.is_empty())
}

/// podman, skopeo and buildah (containers/image).
#[derive(Debug, Default)]
pub struct Containers {
    /// The certs.d/HOST:PORT directory they use: the first of the user's, /etc/containers'
    /// and /etc/docker's that exists.
    pub cert_dir: Option<CertDir>,
    /// Why TLS verification is off for this registry (registries.conf `insecure = true`).
    pub insecure: Option<String>,
}

pub fn containers(fs: &ClientFs, t: &Target) -> Containers {
    let mut bases = Vec::new();
    if let Some(home) = fs.home() {
        bases.push(format!("{home}/.config/containers/certs.d"));
    }
    bases.extend(["/etc/containers/certs.d".to_string(), "/etc/docker/certs.d".to_string()]);
    let cert_dir = bases
        .iter()
        .flat_map(|b| host_dirs(t).into_iter().map(move |n| format!("{b}/{n}")))
        .find_map(|d| read_cert_dir(fs, &d));
    Containers {
        cert_dir,
        insecure: registries_conf_insecure(fs, t),
    }
}

fn registries_conf_insecure(fs: &ClientFs, t: &Target) -> Option<String> {
    let mut files = vec!["/etc/containers/registries.conf".to_string()];
    files.extend(
        fs.list("/etc/containers/registries.conf.d")
            .into_iter()
            .map(|n| format!("/etc/containers/registries.conf.d/{n}")),
    );
    let name = t.registry_name();
    for file in files {
        let Some(Ok(text)) = fs.read(&file) else { continue };
        // containers/image refuses a file that does not parse; doctor reads what parses.
        let Ok(doc) = text.parse::<DocumentMut>() else { continue };
        let registries = doc.get("registry").and_then(Item::as_array_of_tables);
        for table in registries.iter().flat_map(|a| a.iter()) {
            let location = table.get("location").or_else(|| table.get("prefix")).and_then(Item::as_str);
            let insecure = table.get("insecure").and_then(Item::as_bool) == Some(true);
            if insecure && location.is_some_and(|l| l == name) {
                return Some(format!("{file} marks {name} insecure"));
            }
        }
        let v1 = doc
            .get("registries")
            .and_then(|r| r.get("insecure"))
            .and_then(|i| i.get("registries"));
        if strings(v1).contains(&name) {
            return Some(format!("{file} lists {name} in [registries.insecure]"));
        }
    }
    None
}

/// Credentials for the registry from a client's auth file.
#[derive(Debug, PartialEq, Eq)]
pub enum Stored {
    Password {
        user: String,
        password: String,
        file: String,
    },
    /// Kept by a credential helper (`docker-credential-NAME`), which wharf does not run.
    Helper {
        helper: String,
        file: String,
    },
    /// An OAuth identity token (Bearer registries), not a password.
    IdentityToken {
        file: String,
    },
    None {
        searched: Vec<String>,
    },
}

/// Looks the registry up in ~/.docker/config.json (or $DOCKER_CONFIG/config.json), then in
/// podman's auth.json files; Docker's own rules decide between helpers and inline entries.
pub fn stored_credentials(fs: &ClientFs, t: &Target) -> Stored {
    let mut files = Vec::new();
    match std::env::var("DOCKER_CONFIG").ok().filter(|d| d.starts_with('/')) {
        Some(dir) => files.push(format!("{}/config.json", dir.trim_end_matches('/'))),
        None => files.extend(fs.home().map(|h| format!("{h}/.docker/config.json"))),
    }
    if let Some(run) = std::env::var("XDG_RUNTIME_DIR").ok().filter(|d| d.starts_with('/')) {
        files.push(format!("{run}/containers/auth.json"));
    }
    files.extend(fs.home().map(|h| format!("{h}/.config/containers/auth.json")));
    for file in &files {
        let Some(Ok(text)) = fs.read(file) else { continue };
        let Ok(doc) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        if let Some(found) = lookup_auth(&doc, &t.registry_name(), file) {
            return found;
        }
    }
    Stored::None { searched: files }
}

fn lookup_auth(doc: &serde_json::Value, name: &str, file: &str) -> Option<Stored> {
    if let Some(helper) = doc["credHelpers"][name].as_str() {
        return Some(Stored::Helper {
            helper: helper.to_string(),
            file: file.to_string(),
        });
    }
    let entry = doc["auths"]
        .as_object()?
        .iter()
        .find(|(k, _)| normalize_key(k) == name)
        .map(|(_, v)| v);
    if let Some(store) = doc["credsStore"].as_str().filter(|s| !s.is_empty()) {
        // With a credsStore, Docker keeps every password in the helper, not in the file.
        if entry.is_some_and(|e| e["auth"].as_str().is_none_or(str::is_empty)) {
            return Some(Stored::Helper {
                helper: store.to_string(),
                file: file.to_string(),
            });
        }
    }
    let entry = entry?;
    if let Some((user, password)) = entry["auth"].as_str().and_then(decode_basic) {
        return Some(Stored::Password {
            user,
            password,
            file: file.to_string(),
        });
    }
    if let (Some(user), Some(password)) = (entry["username"].as_str(), entry["password"].as_str()) {
        return Some(Stored::Password {
            user: user.into(),
            password: password.into(),
            file: file.to_string(),
        });
    }
    if entry["identitytoken"].as_str().is_some() {
        return Some(Stored::IdentityToken { file: file.to_string() });
    }
    None
}

/// Docker's key normalisation: `https://host:port/v1/` → `host:port`.
fn normalize_key(key: &str) -> String {
    let k = key.strip_prefix("https://").or_else(|| key.strip_prefix("http://")).unwrap_or(key);
    k.split('/').next().unwrap_or_default().to_ascii_lowercase()
}

fn decode_basic(b64: &str) -> Option<(String, String)> {
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// Minimal CIDR matching for insecure-registries entries.
mod ipnet_lite {
    use std::net::IpAddr;

    pub struct Cidr {
        net: IpAddr,
        bits: u8,
    }

    impl Cidr {
        pub fn parse(s: &str) -> Option<Cidr> {
            let (ip, bits) = s.split_once('/')?;
            let net: IpAddr = ip.parse().ok()?;
            let bits: u8 = bits.parse().ok()?;
            let max = if net.is_ipv4() { 32 } else { 128 };
            (bits <= max).then_some(Cidr { net, bits })
        }

        pub fn contains(&self, ip: IpAddr) -> bool {
            match (self.net, ip) {
                (IpAddr::V4(n), IpAddr::V4(i)) => prefix_eq(&n.octets(), &i.octets(), self.bits),
                (IpAddr::V6(n), IpAddr::V6(i)) => prefix_eq(&n.octets(), &i.octets(), self.bits),
                _ => false,
            }
        }
    }

    fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
        let (full, rest) = ((bits / 8) as usize, bits % 8);
        if a[..full] != b[..full] {
            return false;
        }
        rest == 0 || {
            let mask = 0xffu8 << (8 - rest);
            a[full] & mask == b[full] & mask
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fs_with(files: &[(&str, &str)]) -> (tempfile::TempDir, ClientFs) {
        let dir = tempfile::tempdir().unwrap();
        for (path, content) in files {
            let p = dir.path().join(path.trim_start_matches('/'));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        let fs = ClientFs::new(Some(dir.path().to_path_buf()));
        (dir, fs)
    }

    fn target(s: &str) -> Target {
        Target::parse(s).unwrap()
    }

    #[test]
    fn cidr() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains("10.2.3.4".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(Cidr::parse("192.168.1.0/23").unwrap().contains("192.168.0.7".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_none());
    }

    #[test]
    fn daemon_json() {
        let (_d, fs) = fs_with(&[(DAEMON_JSON, r#"{"insecure-registries": ["reg.lan:5000", "10.0.0.0/8"]}"#)]);
        let d = docker_daemon(&fs);
        let t = target("reg.lan:5000");
        assert!(d.insecure_reason(&t, &[]).unwrap().contains("insecure-registries"));
        let t = target("10.1.1.1:5000");
        assert!(d
            .insecure_reason(&t, &["10.1.1.1".parse().unwrap()])
            .unwrap()
            .contains("10.0.0.0/8"));
        let t = target("192.168.1.1:5000");
        assert!(d.insecure_reason(&t, &["192.168.1.1".parse().unwrap()]).is_none());
        assert!(d
            .insecure_reason(&target("127.0.0.1:5000"), &["127.0.0.1".parse().unwrap()])
            .unwrap()
            .contains("127.0.0.0/8"));
        // The seed's daemon.json, typed in a word processor.
        let (_d, fs) = fs_with(&[(DAEMON_JSON, "{“insecure-registries” : [“image-registry:5000”]}")]);
        assert!(docker_daemon(&fs).problem.unwrap().contains("typographic quotes"));
    }

    #[test]
    fn docker_cert_dir_rules() {
        let ca = crate::tls::certs::new_ca("T", 10).unwrap().cert_pem;
        let (_d, fs) = fs_with(&[
            ("/etc/docker/certs.d/reg.lan:5000/ca.crt", &ca),
            ("/etc/docker/certs.d/reg.lan:5000/ca.cert", &ca),
            ("/etc/docker/certs.d/reg.lan/ca.crt", &ca),
        ]);
        let cd = read_cert_dir(&fs, "/etc/docker/certs.d/reg.lan:5000").unwrap();
        assert_eq!(cd.roots.len(), 1);
        assert!(
            cd.problems[0].contains("missing key ca.key for client certificate ca.cert"),
            "{:?}",
            cd.problems
        );
        let misses = near_misses(&fs, "/etc/docker/certs.d", &target("reg.lan:5000"));
        assert_eq!(misses.len(), 1, "{misses:?}");
        assert!(misses[0].contains("/etc/docker/certs.d/reg.lan exists"));
    }

    #[test]
    fn containerd_hosts_toml_selects_this_registry() {
        let ca = crate::tls::certs::new_ca("T", 10).unwrap().cert_pem;
        let toml = "server = \"https://reg.lan:5000\"\n[host.\"http://reg.lan:5000\"]\n  ca = \"ca.crt\"\n[host.\"https://mirror:1\"]\n  skip_verify = true\n";
        let (_d, fs) = fs_with(&[
            ("/etc/containerd/certs.d/reg.lan:5000/hosts.toml", toml),
            ("/etc/containerd/certs.d/reg.lan:5000/ca.crt", &ca),
        ]);
        let c = containerd(&fs, &target("reg.lan:5000"));
        assert_eq!(c.roots.len(), 1);
        assert!(c.plain_http);
        assert!(!c.skip_verify, "the mirror's skip_verify is not this registry's");
    }

    #[test]
    fn credentials_from_docker_config() {
        let doc: serde_json::Value = serde_json::json!({
            "auths": {"https://reg.lan:5000/v1/": {"auth": "YWxpY2U6czNjcjN0"}, "other:1": {}},
            "credHelpers": {"helped:5000": "pass"}
        });
        assert_eq!(
            lookup_auth(&doc, "reg.lan:5000", "f"),
            Some(Stored::Password {
                user: "alice".into(),
                password: "s3cr3t".into(),
                file: "f".into()
            })
        );
        assert_eq!(
            lookup_auth(&doc, "helped:5000", "f"),
            Some(Stored::Helper {
                helper: "pass".into(),
                file: "f".into()
            })
        );
        assert_eq!(lookup_auth(&doc, "missing:1", "f"), None);
        let with_store = serde_json::json!({"auths": {"reg.lan:5000": {}}, "credsStore": "desktop"});
        assert_eq!(
            lookup_auth(&with_store, "reg.lan:5000", "f"),
            Some(Stored::Helper {
                helper: "desktop".into(),
                file: "f".into()
            })
        );
    }

    #[test]
    fn podman_registries_conf() {
        let (_d, fs) = fs_with(&[(
            "/etc/containers/registries.conf",
            "[[registry]]\nlocation = \"reg.lan:5000\"\ninsecure = true\n",
        )]);
        assert!(containers(&fs, &target("reg.lan:5000")).insecure.is_some());
        assert!(containers(&fs, &target("reg.lan:5001")).insecure.is_none());
        let (_d, fs) = fs_with(&[(
            "/etc/containers/registries.conf.d/old.conf",
            "# version 1 format\n[registries.insecure]\nregistries = ['a:1', # first\n  \"reg.lan:5000\"]\n",
        )]);
        let why = containers(&fs, &target("reg.lan:5000")).insecure.unwrap();
        assert!(why.contains("[registries.insecure]"), "{why}");
    }

    #[test]
    fn containerd_hosts_toml_arrays_comments_and_errors() {
        let ca = crate::tls::certs::new_ca("T", 10).unwrap().cert_pem;
        let toml = "server = 'https://reg.lan:5000'   # the upstream\n\n[host.'https://reg.lan:5000']\n  capabilities = [\"pull\", \"resolve\",\n                  \"push\"]\n  ca = ['/etc/a.crt', \"b.crt\"]\n";
        let (_d, fs) = fs_with(&[
            ("/etc/containerd/certs.d/reg.lan:5000/hosts.toml", toml),
            ("/etc/a.crt", &ca),
            ("/etc/containerd/certs.d/reg.lan:5000/b.crt", &ca),
        ]);
        let c = containerd(&fs, &target("reg.lan:5000"));
        assert_eq!(c.roots.len(), 2, "{:?}", c.problems);
        assert!(!c.plain_http);
        let (_d, fs) = fs_with(&[(
            "/etc/containerd/certs.d/reg.lan:5000/hosts.toml",
            "server = \"https://reg.lan:5000\n",
        )]);
        let c = containerd(&fs, &target("reg.lan:5000"));
        assert!(c.problems[0].contains("not valid TOML"), "{:?}", c.problems);
    }
}
