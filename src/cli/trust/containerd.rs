//! containerd: the per-registry `hosts.toml`, and the one setting in `config.toml` without
//! which the CRI plugin (Kubernetes, crictl) never looks at it: `config_path`.
//!
//! containerd 1.x leaves `config_path` empty by default; 2.x defaults to
//! `/etc/containerd/certs.d:/etc/docker/certs.d` unless a config file overrides it. `ctr`
//! ignores all of it unless given `--hosts-dir`.

use super::target::Target;
use anyhow::bail;
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
         server = \"{url}\"\n\
         \n\
         [host.\"{url}\"]\n  capabilities = [\"pull\", \"resolve\", \"push\"]\n  ca = \"{ca}\"\n",
        name = target.name(),
        ca = toml_escape(&ca_path.display().to_string()),
    )
}

fn toml_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The tables holding the CRI registry settings: config version 1 (short plugin name),
/// version 2 (containerd 1.x) and version 3 (containerd 2.x).
const REGISTRY_TABLES: [&[&str]; 3] = [
    &["plugins", "cri", "registry"],
    &["plugins", "io.containerd.grpc.v1.cri", "registry"],
    &["plugins", "io.containerd.cri.v1.images", "registry"],
];

/// What config.toml says about `config_path`, from a line scan good enough for the files
/// `containerd config default` and distributions write.
#[derive(Debug, Default)]
pub struct Scan {
    pub version: Option<i64>,
    /// Line index, the value, and the value's byte span (quotes included) in that line.
    pub config_path: Option<(usize, String, std::ops::Range<usize>)>,
    /// Line index of the first CRI registry table header.
    pub registry_table: Option<usize>,
    /// Old-style `mirrors` / `configs.*.tls` tables: containerd refuses them alongside config_path.
    pub conflicts: Vec<String>,
    pub uses_long_names: bool,
}

pub fn scan(text: &str) -> Scan {
    let mut out = Scan::default();
    let mut table: Vec<String> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("[[") {
            table = key_path(trimmed.trim_start_matches('[').split(']').next().unwrap_or_default());
            continue;
        }
        if let Some(inner) = trimmed.strip_prefix('[') {
            table = key_path(inner.rsplit_once(']').map_or(inner, |(h, _)| h));
            note_table(&table, i, &mut out);
            continue;
        }
        if trimmed.starts_with('#') || trimmed.is_empty() {
            continue;
        }
        let Some(eq) = find_unquoted(trimmed, '=') else { continue };
        let mut full = table.clone();
        full.extend(key_path(&trimmed[..eq]));
        let value_at = line.len() - trimmed.len() + eq + 1;
        if full == ["version"] {
            out.version = trimmed[eq + 1..].split('#').next().and_then(|v| v.trim().parse().ok());
        } else if is_config_path(&full) && out.config_path.is_none() {
            if let Some((value, span)) = string_value(line, value_at) {
                out.config_path = Some((i, value, span));
            }
        }
    }
    out
}

fn note_table(table: &[String], line: usize, out: &mut Scan) {
    if table.get(1).is_some_and(|p| p.starts_with("io.containerd.")) {
        out.uses_long_names = true;
    }
    for reg in REGISTRY_TABLES {
        if table == reg {
            out.registry_table.get_or_insert(line);
        }
        let Some(rest) = table.strip_prefix(reg.iter().map(|s| s.to_string()).collect::<Vec<_>>().as_slice()) else {
            continue;
        };
        let conflicting = match rest {
            [kind, _host] if kind == "mirrors" => true,
            [kind, _host, tls] if kind == "configs" && tls == "tls" => true,
            _ => false,
        };
        if conflicting {
            out.conflicts.push(format!("[{}]", table.join(".")));
        }
    }
}

fn is_config_path(full: &[String]) -> bool {
    REGISTRY_TABLES
        .iter()
        .any(|reg| full.len() == reg.len() + 1 && full[..reg.len()] == **reg && full[reg.len()] == "config_path")
}

/// Splits a TOML key (`plugins."io.containerd.grpc.v1.cri".registry`) into its parts.
fn key_path(key: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    for c in key.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => current.push(c),
            (None, '"' | '\'') => quote = Some(c),
            (None, '.') => parts.push(std::mem::take(&mut current)),
            (None, c) if c.is_whitespace() => {}
            (None, c) => current.push(c),
        }
    }
    parts.push(current);
    parts
}

fn find_unquoted(s: &str, target: char) -> Option<usize> {
    let mut quote: Option<char> = None;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (None, '"' | '\'') => quote = Some(c),
            (None, c) if c == target => return Some(i),
            _ => {}
        }
    }
    None
}

/// A basic ("...") or literal ('...') string starting after byte `from` of `line`.
fn string_value(line: &str, from: usize) -> Option<(String, std::ops::Range<usize>)> {
    let start = from + line[from..].find(|c: char| !c.is_whitespace())?;
    let quote = line[start..].chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let body_start = start + 1;
    let mut value = String::new();
    let mut escaped = false;
    for (i, c) in line[body_start..].char_indices() {
        match c {
            _ if escaped => {
                value.push(c);
                escaped = false;
            }
            '\\' if quote == '"' => escaped = true,
            c if c == quote => return Some((value, start..body_start + i + 1)),
            c => value.push(c),
        }
    }
    None
}

/// What a config_path value means for our hosts.toml files.
#[derive(Debug, PartialEq, Eq)]
pub enum Status {
    NoFile,
    Includes(String),
    Unset,
    Elsewhere(String),
}

pub fn status(text: Option<&str>) -> Status {
    let Some(text) = text else { return Status::NoFile };
    match scan(text).config_path {
        None => Status::Unset,
        Some((_, v, _)) if v.trim().is_empty() => Status::Unset,
        Some((_, v, _)) if includes_certs_d(&v) => Status::Includes(v),
        Some((_, v, _)) => Status::Elsewhere(v),
    }
}

fn includes_certs_d(value: &str) -> bool {
    value.split(':').any(|p| p.trim().trim_end_matches('/') == CERTS_D)
}

/// The new config.toml, or None when config_path already covers certs.d. Only the
/// `config_path` line is added or changed; every other byte stays as it was.
pub fn configure(text: Option<&str>) -> anyhow::Result<Option<String>> {
    let Some(text) = text else {
        return Ok(Some(format!(
            "version = 2\n\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"{CERTS_D}\"\n"
        )));
    };
    let s = scan(text);
    if !s.conflicts.is_empty() {
        bail!(
            "{CONFIG} configures registries the old way ({}); containerd refuses those together with config_path. \
             Move them to hosts.toml files under {CERTS_D} first, then run again",
            s.conflicts.join(", ")
        );
    }
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    match (&s.config_path, s.registry_table) {
        (Some((_, value, _)), _) if includes_certs_d(value) => return Ok(None),
        (Some((i, value, span)), _) => {
            let quote = lines[*i][span.start..span.start + 1].to_string();
            let new = if value.trim().is_empty() {
                CERTS_D.to_string()
            } else {
                format!("{CERTS_D}:{value}")
            };
            lines[*i].replace_range(span.clone(), &format!("{quote}{new}{quote}"));
        }
        (None, Some(header)) => {
            let indent: String = lines[header].chars().take_while(|c| c.is_whitespace()).collect();
            lines.insert(header + 1, format!("{indent}  config_path = \"{CERTS_D}\""));
        }
        (None, None) => {
            let table = match s.version {
                Some(3) => "plugins.\"io.containerd.cri.v1.images\".registry",
                Some(2) => "plugins.\"io.containerd.grpc.v1.cri\".registry",
                _ if s.uses_long_names => "plugins.\"io.containerd.grpc.v1.cri\".registry",
                _ => "plugins.cri.registry",
            };
            lines.push(String::new());
            lines.push(format!("[{table}]"));
            lines.push(format!("  config_path = \"{CERTS_D}\""));
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The relevant part of `containerd config default` (containerd 1.6).
    const V2_DEFAULT: &str = r#"version = 2

[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = ""

      [plugins."io.containerd.grpc.v1.cri".registry.auths]

      [plugins."io.containerd.grpc.v1.cri".registry.mirrors]

    [plugins."io.containerd.grpc.v1.cri".x509_key_pair_streaming]
      tls_cert_file = ""
"#;

    #[test]
    fn hosts_toml_content() {
        let t = Target::parse("10.0.0.5:5000").unwrap();
        let text = hosts_toml(&t, Path::new("/etc/containerd/certs.d/10.0.0.5:5000/ca.crt"));
        assert!(text.starts_with(MARKER));
        assert!(text.contains("\nserver = \"https://10.0.0.5:5000\"\n"));
        assert!(text.contains("[host.\"https://10.0.0.5:5000\"]\n  capabilities = [\"pull\", \"resolve\", \"push\"]\n"));
        assert!(text.contains("  ca = \"/etc/containerd/certs.d/10.0.0.5:5000/ca.crt\"\n"));
    }

    #[test]
    fn default_v2_config_gets_its_empty_value_replaced() {
        assert_eq!(status(Some(V2_DEFAULT)), Status::Unset);
        let new = configure(Some(V2_DEFAULT)).unwrap().unwrap();
        assert!(new.contains("    [plugins.\"io.containerd.grpc.v1.cri\".registry]\n      config_path = \"/etc/containerd/certs.d\"\n"));
        assert_eq!(new.lines().count(), V2_DEFAULT.lines().count(), "only one line changes");
        assert_eq!(status(Some(&new)), Status::Includes(CERTS_D.into()));
        assert!(configure(Some(&new)).unwrap().is_none(), "second run changes nothing");
    }

    #[test]
    fn v3_literal_strings_and_existing_lists() {
        let v3 = "version = 3\n[plugins.'io.containerd.cri.v1.images'.registry]\n  config_path = '/etc/containerd/certs.d:/etc/docker/certs.d'\n";
        assert!(matches!(status(Some(v3)), Status::Includes(_)));
        assert!(configure(Some(v3)).unwrap().is_none());
        let other = "version = 3\n[plugins.\"io.containerd.cri.v1.images\".registry]\n  config_path = '/etc/registries' # site\n";
        assert_eq!(status(Some(other)), Status::Elsewhere("/etc/registries".into()));
        let new = configure(Some(other)).unwrap().unwrap();
        assert!(
            new.contains("  config_path = '/etc/containerd/certs.d:/etc/registries' # site\n"),
            "{new}"
        );
    }

    #[test]
    fn missing_key_or_table_is_added_in_the_right_dialect() {
        let header_only = "version = 2\n  [plugins.\"io.containerd.grpc.v1.cri\".registry]\n  other = 1\n";
        let new = configure(Some(header_only)).unwrap().unwrap();
        assert!(
            new.contains("registry]\n    config_path = \"/etc/containerd/certs.d\"\n  other = 1\n"),
            "{new}"
        );
        let v3 = configure(Some("version = 3\n[grpc]\n  address = '/run/containerd/containerd.sock'\n"))
            .unwrap()
            .unwrap();
        assert!(v3.ends_with("[plugins.\"io.containerd.cri.v1.images\".registry]\n  config_path = \"/etc/containerd/certs.d\"\n"));
        let v1 = configure(Some("[plugins.cri]\n  sandbox_image = \"pause\"\n")).unwrap().unwrap();
        assert!(v1.ends_with("[plugins.cri.registry]\n  config_path = \"/etc/containerd/certs.d\"\n"));
        let dotted = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  registry.config_path = \"/etc/containerd/certs.d\"\n";
        assert!(matches!(status(Some(dotted)), Status::Includes(_)));
        assert_eq!(status(None), Status::NoFile);
        assert!(configure(None)
            .unwrap()
            .unwrap()
            .contains("config_path = \"/etc/containerd/certs.d\""));
    }

    #[test]
    fn old_style_mirrors_block_the_edit() {
        let text =
            format!("{V2_DEFAULT}\n[plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"docker.io\"]\n  endpoint = [\"https://m\"]\n");
        let e = configure(Some(&text)).unwrap_err().to_string();
        assert!(e.contains("mirrors.docker.io"), "{e}");
    }
}
