//! `REGISTRY_*` overrides, applied the way registry:2's configuration parser applies them.
//!
//! Variables are applied in lexical order of their names, so `REGISTRY_STORAGE` (which replaces
//! the whole storage map) comes before `REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY`. The name
//! minus the prefix is split on `_`; each segment walks one level down: a struct field matches
//! when its upper-cased name equals the segment, an existing map key when its upper-cased form
//! does, and a new map key is created lower-cased. The value is YAML, so `true`, `5s`, `[a, b]`
//! and `{k: v}` all work.

use super::schema::{field, Field, Kind, ROOT};
use super::ConfigError;
use serde_yaml_ng::{Mapping, Value};

pub(crate) const PREFIX: &str = "REGISTRY_";
/// Names the configuration file; never an override.
pub const PATH_VAR: &str = "REGISTRY_CONFIGURATION_PATH";

/// What applying the environment produced besides the changed tree.
#[derive(Debug, Default)]
pub(crate) struct Applied {
    pub warnings: Vec<String>,
    /// (dotted key set, variable that set it), in the order applied: lets errors name the
    /// variable a bad value came from.
    pub origins: Vec<(String, String)>,
}

/// Applies every `REGISTRY_*` variable of `env` to `tree` (the configuration's root mapping).
pub(crate) fn apply(tree: &mut Value, env: &[(String, String)]) -> Result<Applied, ConfigError> {
    let mut vars: Vec<&(String, String)> = env
        .iter()
        .filter(|(name, _)| name.starts_with(PREFIX) && name != PATH_VAR)
        .collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));

    let mut applied = Applied::default();
    for (name, payload) in vars {
        let path: Vec<&str> = name[PREFIX.len()..].split('_').collect();
        match set(tree, &ROOT, &path, payload, "") {
            Ok(Some(key)) => applied.origins.push((key, name.clone())),
            Ok(None) => applied.warnings.push(format!("ignoring unrecognized environment variable {name}")),
            Err(message) => {
                return Err(ConfigError::Env {
                    var: name.clone(),
                    message,
                })
            }
        }
    }
    Ok(applied)
}

/// Sets the node `path` names below `slot`, which has kind `kind` and dotted key `at`.
/// Returns the dotted key set, or `None` when the path names no known node.
fn set(slot: &mut Value, kind: &Kind, path: &[&str], payload: &str, at: &str) -> Result<Option<String>, String> {
    let Some((segment, rest)) = path.split_first() else {
        *slot = leaf(kind, payload)?;
        return Ok(Some(at.to_string()));
    };
    match kind {
        Kind::Struct(fields) => set_field(slot, fields, segment, rest, payload, at),
        Kind::Drivers { .. } | Kind::Params(_) | Kind::Map(_) => set_entry(slot, kind, segment, rest, payload, at),
        Kind::List(elem) => set_index(slot, elem, segment, rest, payload, at),
        Kind::Any if slot.is_sequence() => set_index(slot, &Kind::Any, segment, rest, payload, at),
        Kind::Any => set_entry(slot, kind, segment, rest, payload, at),
        // A leaf has nothing below it.
        _ => Ok(None),
    }
}

fn set_field(slot: &mut Value, fields: &[Field], segment: &str, rest: &[&str], payload: &str, at: &str) -> Result<Option<String>, String> {
    let Some(field) = fields.iter().find(|f| f.name.to_uppercase() == segment) else {
        return Ok(None);
    };
    let Some(map) = mapping(slot) else { return Ok(None) };
    let child = map.entry(Value::from(field.name)).or_insert(Value::Null);
    set(child, &field.kind, rest, payload, &join(at, field.name))
}

/// Map semantics: descend into an existing key whose upper-cased form is `segment`, otherwise
/// (re)create the key lower-cased. Like registry:2, a value set directly always lands on the
/// lower-cased key.
fn set_entry(slot: &mut Value, kind: &Kind, segment: &str, rest: &[&str], payload: &str, at: &str) -> Result<Option<String>, String> {
    let Some(map) = mapping(slot) else { return Ok(None) };
    if !rest.is_empty() {
        let existing = map
            .iter_mut()
            .find(|(k, v)| !v.is_null() && k.as_str().is_some_and(|k| k.to_uppercase() == segment));
        if let Some((key, child)) = existing {
            let key = key.as_str().unwrap_or_default().to_string();
            return set(child, entry_kind(kind, &key), rest, payload, &join(at, &key));
        }
    }
    let key = segment.to_lowercase();
    let mut child = Value::Null;
    let set_at = set(&mut child, entry_kind(kind, &key), rest, payload, &join(at, &key))?;
    if set_at.is_some() {
        map.insert(Value::from(key), child);
    }
    Ok(set_at)
}

/// List semantics: a numeric index into the list; one past the end appends.
fn set_index(slot: &mut Value, elem: &Kind, segment: &str, rest: &[&str], payload: &str, at: &str) -> Result<Option<String>, String> {
    if slot.is_null() {
        *slot = Value::Sequence(Vec::new());
    }
    let Some(list) = slot.as_sequence_mut() else { return Ok(None) };
    let index: usize = segment.parse().map_err(|_| format!("non-numeric index: {segment}"))?;
    if index > list.len() {
        return Err(format!("undefined index: {segment}"));
    }
    if index == list.len() {
        list.push(Value::Null);
    }
    set(&mut list[index], elem, rest, payload, &join(at, segment))
}

/// The kind of the value under `key` in a map of kind `kind`.
fn entry_kind(kind: &Kind, key: &str) -> &'static Kind {
    match kind {
        Kind::Drivers { sections, drivers, .. } => field(sections, key)
            .or_else(|| field(drivers, key))
            .map_or(&Kind::Params(&[]), |f| &f.kind),
        Kind::Params(fields) => field(fields, key).map_or(&Kind::Any, |f| &f.kind),
        Kind::Map(elem) => elem,
        _ => &Kind::Any,
    }
}

/// The mapping in `slot`, creating it when the slot is empty; `None` when it holds a scalar or
/// a list, which a variable cannot walk into as a map.
fn mapping(slot: &mut Value) -> Option<&mut Mapping> {
    if slot.is_null() {
        *slot = Value::Mapping(Mapping::new());
    }
    slot.as_mapping_mut()
}

/// Decodes a variable's value as YAML for a node of kind `kind`.
fn leaf(kind: &Kind, payload: &str) -> Result<Value, String> {
    let value: Value = serde_yaml_ng::from_str(payload).map_err(|e| e.to_string())?;
    Ok(match (kind, value) {
        // A string field takes any scalar's text as written, as Go's YAML decoder does
        // (REGISTRY_HTTP_SECRET=0123 is "0123", not 123).
        (Kind::Str, Value::Number(_) | Value::Bool(_)) => Value::from(payload.trim()),
        (Kind::Drivers { .. }, value) => driver_shorthand(value),
        (_, value) => value,
    })
}

/// `storage: filesystem` means `storage: {filesystem: {}}`; a null clears the map.
pub(crate) fn driver_shorthand(value: Value) -> Value {
    match value {
        Value::String(name) => {
            let mut map = Mapping::new();
            map.insert(Value::String(name), Value::Mapping(Mapping::new()));
            Value::Mapping(map)
        }
        Value::Null => Value::Mapping(Mapping::new()),
        other => other,
    }
}

pub(crate) fn join(at: &str, key: &str) -> String {
    if at.is_empty() {
        key.to_string()
    } else {
        format!("{at}.{key}")
    }
}
