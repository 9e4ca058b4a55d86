//! Checks the merged configuration tree against the schema before it becomes a `Config`.
//!
//! Unknown keys of known sections only warn (registry:2 ignores them); a value of the wrong
//! type, a bad duration, log level or listen address, or a storage/auth setup wharf cannot
//! serve is an error naming the dotted key and the value. Along the way values are brought to
//! the form `Config` deserializes: scalars in string fields become strings, YAML 1.1 booleans
//! (`yes`, `off`) become booleans as Go's YAML decoder reads them, and null leaves are dropped so
//! defaults apply.

use super::duration_str::parse_go;
use super::env::join;
use super::schema::{field, Field, Kind, ROOT};
use super::ConfigError;
use serde_yaml_ng::{Mapping, Value};

const LOG_LEVELS: &[&str] = &["error", "warn", "info", "debug"];
const FORMATTERS: &[&str] = &["text", "json", "logstash"];

/// Validates and normalizes `tree` in place; returns the warnings. `origins` maps dotted keys
/// to the environment variables that set them, so an error can name its variable.
pub(crate) fn check(tree: &mut Value, origins: &[(String, String)]) -> Result<Vec<String>, ConfigError> {
    let mut cx = Cx {
        warnings: Vec::new(),
        origins,
    };
    cx.node(tree, &ROOT, "")?;
    cx.cross_checks(tree)?;
    Ok(cx.warnings)
}

/// Whether a key holds a secret that must never be printed.
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "secret",
        "password",
        "apikey",
        "accountkey",
        "licensekey",
        "authorization",
        "connectionstring",
    ]
    .iter()
    .any(|s| key.contains(s))
}

/// Splits `host:port`, `:port` or `[v6]:port` into host (brackets removed) and port.
pub(crate) fn split_host_port(addr: &str) -> Option<(&str, u16)> {
    let (host, port) = addr.rsplit_once(':')?;
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let port = port.parse().ok()?;
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.strip_suffix(']').filter(|h| h.parse::<std::net::Ipv6Addr>().is_ok())?,
        None if host.contains(':') => return None,
        None => host,
    };
    let hostname_ok = host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b));
    hostname_ok.then_some((host, port))
}

struct Cx<'a> {
    warnings: Vec<String>,
    origins: &'a [(String, String)],
}

impl Cx<'_> {
    fn node(&mut self, v: &mut Value, kind: &Kind, at: &str) -> Result<(), ConfigError> {
        match *kind {
            Kind::Struct(fields) => self.fields(v, at, |k| field(fields, k).map(|f| &f.kind), true),
            Kind::Params(fields) => self.fields(v, at, |k| Some(param_kind(fields, k)), false),
            Kind::Map(elem) => self.fields(v, at, |_| Some(elem), false),
            Kind::Drivers { what, sections, drivers } => self.drivers(v, at, what, sections, drivers),
            Kind::List(elem) => self.list(v, elem, at),
            Kind::Any => Ok(()),
            Kind::Str => self.string(v, at),
            Kind::Bool => self.boolean(v, at),
            Kind::Duration => self.duration(v, at),
            Kind::LogLevel => {
                self.string(v, at)?;
                let level = v.as_str().unwrap_or_default().to_ascii_lowercase();
                if !LOG_LEVELS.contains(&level.as_str()) {
                    return Err(self.invalid(at, v, "must be one of error, warn, info, debug"));
                }
                *v = Value::String(level);
                Ok(())
            }
            Kind::Formatter => {
                self.string(v, at)?;
                match FORMATTERS.contains(&v.as_str().unwrap_or_default()) {
                    true => Ok(()),
                    false => Err(self.invalid(at, v, "must be one of text, json, logstash")),
                }
            }
            Kind::Addr => {
                self.string(v, at)?;
                match split_host_port(v.as_str().unwrap_or_default()) {
                    Some(_) => Ok(()),
                    None => Err(self.invalid(at, v, "expected host:port or :port")),
                }
            }
        }
    }

    /// A mapping whose keys have kinds given by `kind_of`; keys without one are unknown and warn
    /// (`warn_unknown`) or are kept silently.
    fn fields(
        &mut self,
        v: &mut Value,
        at: &str,
        kind_of: impl Fn(&str) -> Option<&'static Kind>,
        warn_unknown: bool,
    ) -> Result<(), ConfigError> {
        let map = self.mapping(v, at)?;
        let mut unset = Vec::new();
        for (key, child) in map.iter_mut() {
            let name = key_text(key);
            let child_at = join(at, &name);
            match kind_of(&name) {
                Some(kind) if child.is_null() && kind.is_leaf() => unset.push(key.clone()),
                Some(kind) => self.node(child, kind, &child_at)?,
                None if warn_unknown => self.warnings.push(format!("ignoring unknown configuration key {child_at}")),
                None => {}
            }
        }
        for key in unset {
            map.shift_remove(&key);
        }
        Ok(())
    }

    fn drivers(
        &mut self,
        v: &mut Value,
        at: &str,
        what: &str,
        sections: &'static [Field],
        drivers: &'static [Field],
    ) -> Result<(), ConfigError> {
        let map = self.mapping(v, at)?;
        let chosen: Vec<String> = map.keys().map(key_text).filter(|k| field(sections, k).is_none()).collect();
        if chosen.len() > 1 {
            let value = Value::from(chosen.join(", "));
            return Err(self.invalid(at, &value, &format!("more than one {what} configured")));
        }
        if let Some(name) = chosen.first() {
            if field(drivers, name).is_none() {
                let supported: Vec<&str> = drivers.iter().map(|d| d.name).collect();
                let reason = format!("{what} is not supported by wharf (supported: {})", supported.join(", "));
                return Err(self.invalid(at, &Value::from(name.as_str()), &reason));
            }
        }
        self.fields(v, at, |k| field(sections, k).or_else(|| field(drivers, k)).map(|f| &f.kind), false)
    }

    fn list(&mut self, v: &mut Value, elem: &Kind, at: &str) -> Result<(), ConfigError> {
        let Some(items) = v.as_sequence_mut() else {
            return Err(self.invalid(at, v, "expected a list"));
        };
        for (i, item) in items.iter_mut().enumerate() {
            self.node(item, elem, &join(at, &i.to_string()))?;
        }
        Ok(())
    }

    fn string(&mut self, v: &mut Value, at: &str) -> Result<(), ConfigError> {
        match v {
            Value::String(_) => Ok(()),
            Value::Number(n) => {
                *v = Value::String(n.to_string());
                Ok(())
            }
            Value::Bool(b) => {
                *v = Value::String(b.to_string());
                Ok(())
            }
            _ => Err(self.invalid(at, v, "expected a string")),
        }
    }

    fn boolean(&mut self, v: &mut Value, at: &str) -> Result<(), ConfigError> {
        if v.is_bool() {
            return Ok(());
        }
        // Go's YAML 1.1 decoder reads these as booleans too.
        let yaml11 = match v.as_str() {
            Some("y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON") => Some(true),
            Some("True" | "TRUE") => Some(true),
            Some("n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF") => Some(false),
            Some("False" | "FALSE") => Some(false),
            _ => None,
        };
        match yaml11 {
            Some(b) => {
                *v = Value::Bool(b);
                Ok(())
            }
            None => Err(self.invalid(at, v, "expected true or false")),
        }
    }

    fn duration(&mut self, v: &mut Value, at: &str) -> Result<(), ConfigError> {
        let ok = match v {
            Value::Number(n) => n.as_u64().is_some(),
            Value::String(s) => parse_go(s).is_ok(),
            _ => false,
        };
        match ok {
            true => Ok(()),
            false => Err(self.invalid(at, v, "expected a duration such as 90s, 30m or 168h")),
        }
    }

    fn mapping<'v>(&self, v: &'v mut Value, at: &str) -> Result<&'v mut Mapping, ConfigError> {
        if v.is_null() {
            *v = Value::Mapping(Mapping::new());
        }
        if !v.is_mapping() {
            return Err(self.invalid(at, v, "expected a mapping"));
        }
        Ok(v.as_mapping_mut().expect("checked above"))
    }

    /// Rules that involve more than one key.
    fn cross_checks(&mut self, tree: &mut Value) -> Result<(), ConfigError> {
        let root = tree.as_mapping_mut().expect("root is a mapping after node()");
        // registry:2 reads the deprecated top-level `loglevel` only when log.level is unset.
        if let Some(level) = root.shift_remove("loglevel") {
            let log = root.entry(Value::from("log")).or_insert(Value::Mapping(Mapping::new()));
            if let Some(log) = log.as_mapping_mut() {
                log.entry(Value::from("level")).or_insert(level);
            }
        }
        let tls = root.get("http").and_then(|h| h.get("tls"));
        let tls_str = |k: &str| tls.and_then(|t| t.get(k)).and_then(Value::as_str).unwrap_or("");
        if !tls_str("certificate").is_empty() && tls_str("key").is_empty() {
            let reason = "required when http.tls.certificate is set";
            return Err(self.invalid("http.tls.key", &Value::from(""), reason));
        }
        Ok(())
    }

    fn invalid(&self, key: &str, value: &Value, reason: &str) -> ConfigError {
        let last = key.rsplit('.').next().unwrap_or(key);
        let value = if is_secret_key(last) {
            "<redacted>".to_string()
        } else {
            show(value)
        };
        let origin = self
            .origins
            .iter()
            .rev()
            .find(|(set, _)| key == set || key.starts_with(&format!("{set}.")))
            .map(|(_, var)| var.clone());
        ConfigError::Invalid {
            key: key.to_string(),
            value,
            reason: reason.to_string(),
            origin,
        }
    }
}

/// The kind of a driver parameter: listed ones are typed, others are free.
fn param_kind(fields: &'static [Field], key: &str) -> &'static Kind {
    field(fields, key).map_or(&Kind::Any, |f| &f.kind)
}

fn key_text(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        other => show(other),
    }
}

/// A value as one line of YAML flow syntax, for error messages.
pub(crate) fn show(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Sequence(items) => {
            format!("[{}]", items.iter().map(show).collect::<Vec<_>>().join(", "))
        }
        Value::Mapping(map) => {
            let entries: Vec<String> = map.iter().map(|(k, v)| format!("{}: {}", key_text(k), show(v))).collect();
            format!("{{{}}}", entries.join(", "))
        }
        Value::Tagged(t) => format!("{} {}", t.tag, show(&t.value)),
    }
}

/// registry:2 sections and keys that wharf accepts but does not act on, with what registry:2
/// would have done with them: each present one is a warning at start and in `config check`, so
/// nobody believes a pull-through cache or a webhook is running when it is not.
const UNIMPLEMENTED: &[(&str, &str)] = &[
    ("proxy", "pull-through cache of a remote registry"),
    ("middleware", "registry, repository and storage middleware (CloudFront, redirects)"),
    ("redis", "the Redis blob descriptor cache"),
    ("reporting", "error reporting to Bugsnag or New Relic"),
    ("validation", "manifest URL validation rules"),
    ("policy", "repository class policy"),
    ("catalog", "catalog.maxentries (wharf pages the catalog by n, up to its own limit)"),
    ("log.hooks", "log hooks (mail on errors)"),
    ("log.reportcaller", "the caller of each log line"),
    ("http.http2", "HTTP/2 settings (wharf speaks HTTP/2 when a client asks)"),
    ("http.tls.letsencrypt", "Let's Encrypt certificates"),
    ("http.tls.ciphersuites", "a cipher suite list (wharf uses rustls' safe defaults)"),
    ("health.file", "file health checks"),
    ("health.http", "HTTP health checks"),
    ("health.tcp", "TCP health checks"),
];

/// The warnings for registry:2 settings wharf ignores (see `UNIMPLEMENTED`); `http.net` other
/// than `tcp` too, since wharf would listen on TCP instead.
pub(crate) fn unimplemented(tree: &Value) -> Vec<String> {
    let lookup = |dotted: &str| dotted.split('.').try_fold(tree, |v, key| v.get(key));
    let set = |v: &Value| match v {
        Value::Null => false,
        Value::Mapping(m) => !m.is_empty(),
        Value::Sequence(s) => !s.is_empty(),
        _ => true,
    };
    let mut out: Vec<String> = UNIMPLEMENTED
        .iter()
        .filter(|(key, _)| lookup(key).is_some_and(set))
        .map(|(key, what)| format!("registry:2 setting {key} is not implemented by wharf and is ignored ({what})"))
        .collect();
    if let Some(net) = lookup("http.net").and_then(Value::as_str).filter(|n| !n.is_empty() && *n != "tcp") {
        out.push(format!(
            "registry:2 setting http.net: {net} is not implemented by wharf and is ignored (wharf listens on TCP at http.addr)"
        ));
    }
    out
}
