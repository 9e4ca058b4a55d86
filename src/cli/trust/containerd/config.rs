//! `config.toml`: what its CRI registry `config_path` says, and setting it. Edited with
//! toml_edit, which keeps every other line, comment and the file's layout as they were.
//!
//! The CRI plugin's table depends on the config's `version`: 1 (no `version`, containerd
//! 1.x) `plugins.cri`, 2 (containerd 1.x) `plugins."io.containerd.grpc.v1.cri"`, 3
//! (containerd 2.x) `plugins."io.containerd.cri.v1.images"`.

use super::migrate;
pub use super::migrate::HostsFile;
use super::CERTS_D;
use anyhow::Context;
use toml_edit::{DocumentMut, InlineTable, Item, Table, TableLike, Value};

/// containerd 2.x's `config_path` when a version 3 config.toml does not set one.
const V3_DEFAULT: &str = "/etc/containerd/certs.d:/etc/docker/certs.d";

/// What a config_path value means for our hosts.toml files.
#[derive(Debug, PartialEq, Eq)]
pub enum Status {
    NoFile,
    Includes(String),
    Unset,
    Elsewhere(String),
    /// config.toml does not parse: containerd itself would not start with it.
    Invalid(String),
}

pub fn status(text: Option<&str>) -> Status {
    let Some(text) = text else { return Status::NoFile };
    match text.parse::<DocumentMut>() {
        Ok(doc) => status_of(&doc),
        Err(e) => Status::Invalid(e.to_string()),
    }
}

fn status_of(doc: &DocumentMut) -> Status {
    let mut path = registry_path(doc).to_vec();
    path.push("config_path");
    match lookup(doc, &path).and_then(Item::as_str) {
        Some(v) if v.trim().is_empty() => Status::Unset,
        Some(v) if includes_certs_d(v) => Status::Includes(v.to_string()),
        Some(v) => Status::Elsewhere(v.to_string()),
        None if version(doc) >= 3 => Status::Includes(V3_DEFAULT.to_string()),
        None => Status::Unset,
    }
}

fn version(doc: &DocumentMut) -> i64 {
    doc.get("version").and_then(Item::as_integer).unwrap_or(1)
}

/// The keys from the top of config.toml to the CRI registry table.
fn registry_path(doc: &DocumentMut) -> [&'static str; 3] {
    let plugin = match version(doc) {
        3 => "io.containerd.cri.v1.images",
        2 => "io.containerd.grpc.v1.cri",
        _ => "cri",
    };
    ["plugins", plugin, "registry"]
}

fn lookup<'a>(doc: &'a DocumentMut, path: &[&str]) -> Option<&'a Item> {
    path.iter().try_fold(doc.as_item(), |item, key| item.get(key))
}

fn includes_certs_d(value: &str) -> bool {
    value.split(':').any(|p| p.trim().trim_end_matches('/') == CERTS_D)
}

/// A changed config.toml.
#[derive(Debug)]
pub struct Edit {
    pub text: String,
    /// Whether `config_path` was set (otherwise only old-style blocks were moved out).
    pub config_path_set: bool,
    /// hosts.toml files for the old-style registry blocks moved out of config.toml.
    pub moved: Vec<HostsFile>,
}

/// The new config.toml, or None when config_path already covers certs.d and nothing old-style
/// is left that containerd would refuse alongside it.
pub fn configure(text: &str) -> anyhow::Result<Option<Edit>> {
    let mut doc: DocumentMut = text
        .parse()
        .context("it is not valid TOML (containerd would not start with it either); nothing was changed")?;
    let path = registry_path(&doc);
    let new_value = match status_of(&doc) {
        Status::Includes(_) => None,
        Status::Elsewhere(v) => Some(format!("{CERTS_D}:{v}")),
        _ => Some(CERTS_D.to_string()),
    };
    let moved = match table_like_mut(&mut doc, &path) {
        Some(registry) => migrate::take(registry),
        None => Vec::new(),
    };
    if new_value.is_none() && moved.is_empty() {
        return Ok(None);
    }
    if let Some(value) = &new_value {
        set_config_path(&mut doc, &path, value, Layout::of(text));
    }
    Ok(Some(Edit {
        text: doc.to_string(),
        config_path_set: new_value.is_some(),
        moved,
    }))
}

/// The table at `path`, if it exists. (`Item::get_mut` would create missing keys as inline
/// tables; `TableLike::get_mut` does not.)
fn table_like_mut<'a>(doc: &'a mut DocumentMut, path: &[&str]) -> Option<&'a mut dyn TableLike> {
    path.iter().try_fold(doc.as_table_mut() as &mut dyn TableLike, |table, key| {
        table.get_mut(key)?.as_table_like_mut()
    })
}

/// How the file indents, so that what is added looks like the rest: `containerd config
/// default` and Debian's file indent each table header two spaces per level and keys two
/// more than their header.
#[derive(Clone, Copy)]
struct Layout {
    /// Table headers are indented by depth.
    indented: bool,
    /// Keys are indented below their header.
    keys_indented: bool,
}

impl Layout {
    fn of(text: &str) -> Layout {
        let indented = |header: bool| {
            text.lines().any(|l| {
                let t = l.trim_start();
                l.starts_with(' ') && !t.starts_with('#') && t.starts_with('[') == header
            })
        };
        Layout {
            indented: indented(true),
            keys_indented: indented(false),
        }
    }

    /// Indentation of a table header at `depth` (1: a top-level table).
    fn header(self, depth: usize) -> String {
        if self.indented {
            " ".repeat(2 * depth.saturating_sub(1))
        } else {
            String::new()
        }
    }

    fn key(self, depth: usize) -> String {
        match (self.indented, self.keys_indented) {
            (true, _) => " ".repeat(2 * depth),
            (false, true) => "  ".to_string(),
            (false, false) => String::new(),
        }
    }
}

/// Sets `path.config_path = value`, creating the tables that are missing: intermediate ones
/// implicit (no header of their own), the registry table with a header placed after its
/// parent's. An existing value keeps its place, spacing and trailing comment.
fn set_config_path(doc: &mut DocumentMut, path: &[&str], value: &str, layout: Layout) {
    let mut table: &mut dyn TableLike = doc.as_table_mut();
    // Inside an inline table (`cri = { ... }`) only inline tables can be added.
    let mut inline = false;
    for (depth, key) in path.iter().enumerate() {
        let last = depth + 1 == path.len();
        if !table.contains_key(key) {
            let item = if inline {
                Item::Value(Value::InlineTable(InlineTable::new()))
            } else {
                let mut t = Table::new();
                t.set_implicit(!last);
                t.decor_mut().set_prefix(format!("\n{}", layout.header(depth + 1)));
                Item::Table(t)
            };
            table.insert(key, item);
        }
        let item = table.get_mut(key).expect("inserted above");
        inline |= item.is_inline_table();
        if item.as_table_like().is_none() {
            // `registry = "x"` is not a table: containerd would refuse the file; replace it.
            *item = Item::Table(Table::new());
        }
        table = item.as_table_like_mut().expect("a table");
    }
    match table.get_mut("config_path") {
        Some(Item::Value(old)) => {
            let decor = old.decor().clone();
            *old = Value::from(value);
            *old.decor_mut() = decor;
        }
        _ => {
            let indent = table
                .iter()
                .next()
                .and_then(|(k, _)| table.key(k))
                .and_then(|k| k.leaf_decor().prefix())
                .and_then(|p| p.as_str())
                // The prefix holds the comment lines above the key too: only its indentation.
                .map(|p| p.rsplit('\n').next().unwrap_or_default().to_owned())
                .unwrap_or_else(|| layout.key(path.len()));
            table.insert("config_path", toml_edit::value(value));
            if let Some(mut key) = table.key_mut("config_path") {
                key.leaf_decor_mut().set_prefix(indent);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// /etc/containerd/config.toml as Debian's containerd package (1.6) installs it.
    const DEBIAN: &str = include_str!("../../../../tests/fixtures/containerd/debian-default.toml");
    /// `containerd config default` of Debian's containerd 1.6.
    const DEFAULT: &str = include_str!("../../../../tests/fixtures/containerd/config-default-1.6.toml");

    /// Lines of `new` that are not in `old`, and the number of lines of `old` missing in `new`.
    fn diff(old: &str, new: &str) -> (Vec<String>, usize) {
        let added = new.lines().filter(|l| !old.lines().any(|o| o == *l)).map(str::to_owned).collect();
        let lost = old.lines().filter(|l| !new.lines().any(|n| n == *l)).count();
        (added, lost)
    }

    #[test]
    fn debian_default_gets_a_registry_table_and_keeps_every_line() {
        assert_eq!(status(Some(DEBIAN)), Status::Unset);
        let edit = configure(DEBIAN).unwrap().unwrap();
        assert!(edit.config_path_set && edit.moved.is_empty());
        let (added, lost) = diff(DEBIAN, &edit.text);
        assert_eq!(lost, 0, "{}", edit.text);
        assert_eq!(
            added,
            [
                "    [plugins.\"io.containerd.grpc.v1.cri\".registry]",
                "      config_path = \"/etc/containerd/certs.d\""
            ],
            "{}",
            edit.text
        );
        // Inside the CRI plugin's section, after its cni table, before the next plugin.
        let at = |needle: &str| edit.text.find(needle).unwrap();
        assert!(
            at(".cni]") < at(".registry]") && at(".registry]") < at("internal.v1.opt"),
            "{}",
            edit.text
        );
        assert_eq!(status(Some(&edit.text)), Status::Includes(CERTS_D.into()));
        assert!(configure(&edit.text).unwrap().is_none(), "a second run changes nothing");
    }

    #[test]
    fn config_default_output_gets_its_empty_value_replaced() {
        assert_eq!(status(Some(DEFAULT)), Status::Unset);
        let edit = configure(DEFAULT).unwrap().unwrap();
        assert!(edit.moved.is_empty(), "the empty mirrors/configs tables are no conflict");
        assert!(edit
            .text
            .contains("    [plugins.\"io.containerd.grpc.v1.cri\".registry]\n      config_path = \"/etc/containerd/certs.d\"\n"));
        let changed: Vec<_> = DEFAULT.lines().zip(edit.text.lines()).filter(|(a, b)| a != b).collect();
        assert_eq!(changed.len(), 1, "{changed:?}");
        assert_eq!(edit.text.lines().count(), DEFAULT.lines().count());
    }

    #[test]
    fn comments_and_spacing_are_kept() {
        let text = "# Managed by hand. Do not remove this line.\nversion = 2\n\n# The CRI plugin\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"pause:3.9\"   # pinned\n\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  # where the hosts.toml files live\n  config_path = ''   # was empty\n\n[metrics]\n  address = \"\" # off\n";
        let edit = configure(text).unwrap().unwrap();
        let expected = text.replace(
            "config_path = ''   # was empty",
            "config_path = \"/etc/containerd/certs.d\"   # was empty",
        );
        assert_eq!(edit.text, expected);
    }

    #[test]
    fn other_dialects_and_existing_values() {
        let v3 = "version = 3\n[plugins.'io.containerd.cri.v1.images'.registry]\n  config_path = '/etc/containerd/certs.d:/etc/docker/certs.d'\n";
        assert!(matches!(status(Some(v3)), Status::Includes(_)));
        assert!(configure(v3).unwrap().is_none());
        let v3_default = "version = 3\n[grpc]\n  address = '/run/containerd/containerd.sock'\n";
        assert_eq!(status(Some(v3_default)), Status::Includes(V3_DEFAULT.into()), "2.x's default");
        let other = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = '/etc/registries' # site\n";
        assert_eq!(status(Some(other)), Status::Elsewhere("/etc/registries".into()));
        let new = configure(other).unwrap().unwrap().text;
        assert!(
            new.contains("  config_path = \"/etc/containerd/certs.d:/etc/registries\" # site\n"),
            "{new}"
        );
        let v1 = configure("[plugins.cri]\n  sandbox_image = \"pause\"\n").unwrap().unwrap().text;
        assert_eq!(
            v1,
            "[plugins.cri]\n  sandbox_image = \"pause\"\n\n[plugins.cri.registry]\n  config_path = \"/etc/containerd/certs.d\"\n"
        );
        let dotted = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  registry.config_path = \"\"\n";
        let new = configure(dotted).unwrap().unwrap().text;
        assert!(new.contains("  registry.config_path = \"/etc/containerd/certs.d\"\n"), "{new}");
        let flat = "version = 2\n";
        let new = configure(flat).unwrap().unwrap().text;
        assert_eq!(
            new,
            "version = 2\n\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\nconfig_path = \"/etc/containerd/certs.d\"\n"
        );
        assert_eq!(status(None), Status::NoFile);
        assert!(matches!(status(Some("version = [")), Status::Invalid(_)));
        assert!(configure("version = [").is_err());
    }
}
