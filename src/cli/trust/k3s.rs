//! k3s nodes: k3s's embedded containerd does not read /etc/containerd; k3s writes its hosts.toml
//! files at start from `/etc/rancher/k3s/registries.yaml`, whose `configs."HOST:PORT".tls.ca_file`
//! names the CA. So on a k3s node (/etc/rancher/k3s exists) `wharf trust` adds the registry there
//! too, pointing at the CA it wrote for containerd, and k3s has to be restarted to read it.

use anyhow::{bail, Context};
use serde_yaml_ng::{Mapping, Value};

pub const DIR: &str = "/etc/rancher/k3s";
pub const REGISTRIES: &str = "/etc/rancher/k3s/registries.yaml";
/// First line of a registries.yaml wharf wrote; a file without it is the user's.
pub const MARKER: &str = "# Written by wharf trust";
pub const RESTART: &str = "systemctl restart k3s (servers) or systemctl restart k3s-agent (agents)";

#[derive(Debug, PartialEq, Eq)]
pub enum Edit {
    Unchanged,
    Write(String),
    /// The user's own file lacks the entry: the lines to add by hand.
    NotOurs(String),
}

fn configs(doc: &mut Value) -> anyhow::Result<&mut Mapping> {
    let Value::Mapping(top) = doc else {
        bail!("{REGISTRIES} is not a YAML mapping")
    };
    let configs = top.entry("configs".into()).or_insert_with(|| Value::Mapping(Mapping::new()));
    configs
        .as_mapping_mut()
        .with_context(|| format!("{REGISTRIES}: configs is not a mapping"))
}

fn parse(text: &str) -> anyhow::Result<Value> {
    let doc: Value = serde_yaml_ng::from_str(text).with_context(|| format!("{REGISTRIES} is not valid YAML"))?;
    Ok(if doc.is_null() { Value::Mapping(Mapping::new()) } else { doc })
}

fn has_ca(doc: &Value, name: &str, ca_file: &str) -> bool {
    doc.get("configs")
        .and_then(|c| c.get(name))
        .and_then(|c| c.get("tls"))
        .and_then(|t| t.get("ca_file"))
        .and_then(Value::as_str)
        == Some(ca_file)
}

fn render(doc: &Value) -> String {
    format!(
        "{MARKER}; `wharf trust --remove` takes its registries out again.\n{}",
        serde_yaml_ng::to_string(doc).expect("YAML serializes")
    )
}

/// registries.yaml with `configs.NAME.tls.ca_file = ca_file` for every name.
pub fn with_ca(existing: Option<&str>, names: &[String], ca_file: &str) -> anyhow::Result<Edit> {
    let mut doc = parse(existing.unwrap_or(""))?;
    if names.iter().all(|n| has_ca(&doc, n, ca_file)) {
        return Ok(Edit::Unchanged);
    }
    if existing.is_some_and(|t| !t.starts_with(MARKER)) {
        let lines: String = names
            .iter()
            .map(|n| format!("  \"{n}\":\n    tls:\n      ca_file: {ca_file}\n"))
            .collect();
        return Ok(Edit::NotOurs(format!("configs:\n{lines}")));
    }
    let configs = configs(&mut doc)?;
    for n in names {
        let mut tls = Mapping::new();
        tls.insert("ca_file".into(), ca_file.into());
        let mut entry = Mapping::new();
        entry.insert("tls".into(), Value::Mapping(tls));
        configs.insert(n.as_str().into(), Value::Mapping(entry));
    }
    Ok(Edit::Write(render(&doc)))
}

/// wharf's registries.yaml without these names: None when it is not wharf's or does not name
/// them, Some("") when nothing is left (delete the file).
pub fn without(existing: &str, names: &[String]) -> anyhow::Result<Option<String>> {
    if !existing.starts_with(MARKER) {
        return Ok(None);
    }
    let mut doc = parse(existing)?;
    let configs = configs(&mut doc)?;
    let before = configs.len();
    for n in names {
        configs.remove(n.as_str());
    }
    if configs.len() == before {
        return Ok(None);
    }
    let empty = configs.is_empty() && doc.as_mapping().is_some_and(|m| m.len() == 1);
    Ok(Some(if empty { String::new() } else { render(&doc) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &str = "/etc/containerd/certs.d/10.0.0.5:5000/ca.crt";

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn written_read_back_and_removed() {
        let Edit::Write(text) = with_ca(None, &names(&["10.0.0.5:5000"]), CA).unwrap() else {
            panic!()
        };
        assert!(text.starts_with(MARKER));
        let doc: Value = serde_yaml_ng::from_str(&text).unwrap();
        assert_eq!(doc["configs"]["10.0.0.5:5000"]["tls"]["ca_file"].as_str(), Some(CA));
        assert_eq!(with_ca(Some(&text), &names(&["10.0.0.5:5000"]), CA).unwrap(), Edit::Unchanged);
        let Edit::Write(two) = with_ca(Some(&text), &names(&["reg.lan:443", "reg.lan"]), "/x.crt").unwrap() else {
            panic!()
        };
        let left = without(&two, &names(&["reg.lan:443", "reg.lan"])).unwrap().unwrap();
        assert_eq!(left, text);
        assert_eq!(without(&text, &names(&["10.0.0.5:5000"])).unwrap().unwrap(), "");
        assert_eq!(without(&text, &names(&["other:1"])).unwrap(), None);
    }

    #[test]
    fn the_users_file_is_not_rewritten() {
        let theirs = "mirrors:\n  docker.io:\n    endpoint:\n      - \"https://mirror.lan\"\n";
        let Edit::NotOurs(add) = with_ca(Some(theirs), &names(&["10.0.0.5:5000"]), CA).unwrap() else {
            panic!()
        };
        assert!(
            add.contains("\"10.0.0.5:5000\":\n    tls:\n      ca_file: /etc/containerd/certs.d/"),
            "{add}"
        );
        assert_eq!(without(theirs, &names(&["docker.io"])).unwrap(), None);
        let done = format!("{theirs}configs:\n  \"10.0.0.5:5000\":\n    tls:\n      ca_file: {CA}\n");
        assert_eq!(with_ca(Some(&done), &names(&["10.0.0.5:5000"]), CA).unwrap(), Edit::Unchanged);
    }
}
