//! Just enough TOML to read containerd's `hosts.toml` and containers' `registries.conf`: tables,
//! arrays of tables, strings, booleans and (multi-line) arrays. Other values are kept as text;
//! malformed lines are skipped, since a diagnosis should read what it can rather than stop.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Str(String),
    Bool(bool),
    Array(Vec<Value>),
    Other(String),
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// A string, or the strings of an array (containerd accepts both for `ca`).
    pub fn strings(&self) -> Vec<String> {
        match self {
            Value::Str(s) => vec![s.clone()],
            Value::Array(items) => items.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
            _ => Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    /// The header's keys, unquoted: `[host."https://r:5000"]` → `["host", "https://r:5000"]`.
    /// Empty for the top of the file.
    pub path: Vec<String>,
    /// `[[...]]`: one element of an array of tables.
    pub array: bool,
    pub entries: Vec<(String, Value)>,
}

impl Table {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

/// The tables of a document in file order; the first is the top level.
pub fn parse(text: &str) -> Vec<Table> {
    let mut tables = vec![Table::default()];
    let mut pending = String::new();
    for raw in text.lines() {
        let line = strip_comment(raw);
        if pending.is_empty() && line.trim().is_empty() {
            continue;
        }
        pending.push_str(line);
        pending.push('\n');
        // A value may continue over several lines while an array is open.
        if bracket_depth(&pending) > 0 && !pending.trim_start().starts_with('[') {
            continue;
        }
        let logical = std::mem::take(&mut pending);
        let logical = logical.trim();
        if let Some(header) = logical.strip_prefix("[[").and_then(|h| h.strip_suffix("]]")) {
            tables.push(Table {
                path: split_key(header),
                array: true,
                entries: Vec::new(),
            });
        } else if let Some(header) = logical.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            tables.push(Table {
                path: split_key(header),
                array: false,
                entries: Vec::new(),
            });
        } else if let Some((key, value)) = split_assignment(logical) {
            if let Some(table) = tables.last_mut() {
                table.entries.push((unquote(key.trim()), parse_value(value.trim())));
            }
        }
    }
    tables
}

/// Removes a `#` comment that is not inside a string.
fn strip_comment(line: &str) -> &str {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match quote {
            Some('"') if escaped => escaped = false,
            Some('"') if c == '\\' => escaped = true,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '#' => return &line[..i],
            None => {}
        }
    }
    line
}

/// Open `[` minus closed `]` outside strings.
fn bracket_depth(s: &str) -> i32 {
    let mut depth = 0;
    for_each_unquoted(s, |c| match c {
        '[' => depth += 1,
        ']' => depth -= 1,
        _ => {}
    });
    depth
}

fn for_each_unquoted(s: &str, mut f: impl FnMut(char)) {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in s.chars() {
        match quote {
            Some('"') if escaped => escaped = false,
            Some('"') if c == '\\' => escaped = true,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None => f(c),
        }
    }
}

/// Splits `key = value` at the first `=` outside quotes.
fn split_assignment(s: &str) -> Option<(&str, &str)> {
    let mut quote: Option<char> = None;
    for (i, c) in s.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '=' => return Some((&s[..i], &s[i + 1..])),
            None => {}
        }
    }
    None
}

/// Splits a dotted key at dots outside quotes, unquoting each part.
fn split_key(s: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    for c in s.chars() {
        match quote {
            Some(q) if c == q => {
                quote = None;
                current.push(c);
            }
            Some(_) => current.push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                current.push(c);
            }
            None if c == '.' => parts.push(unquote(std::mem::take(&mut current).trim())),
            None => current.push(c),
        }
    }
    parts.push(unquote(current.trim()));
    parts
}

fn unquote(s: &str) -> String {
    if s.len() >= 2 && s.starts_with('"') && s.ends_with('"') {
        unescape(&s[1..s.len() - 1])
    } else if s.len() >= 2 && s.starts_with('\'') && s.ends_with('\'') {
        s[1..s.len() - 1].to_string()
    } else {
        s.to_string()
    }
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

fn parse_value(s: &str) -> Value {
    match s {
        "true" => return Value::Bool(true),
        "false" => return Value::Bool(false),
        _ => {}
    }
    if (s.starts_with('"') && s.ends_with('"') || s.starts_with('\'') && s.ends_with('\'')) && s.len() >= 2 {
        return Value::Str(unquote(s));
    }
    if let Some(inner) = s.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
        return Value::Array(split_items(inner).iter().map(|item| parse_value(item)).collect());
    }
    Value::Other(s.to_string())
}

/// Splits array items at commas outside quotes and nested brackets.
fn split_items(s: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut current = String::new();
    let mut depth = 0;
    let mut quote: Option<char> = None;
    for c in s.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '[' => depth += 1,
            None if c == ']' => depth -= 1,
            None if c == ',' && depth == 0 => {
                items.push(std::mem::take(&mut current).trim().to_string());
                continue;
            }
            None => {}
        }
        current.push(c);
    }
    items.push(current.trim().to_string());
    items.retain(|i| !i.is_empty());
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containerd_hosts_toml() {
        let doc = r#"
server = "https://10.0.0.5:5000"   # the upstream

[host."https://10.0.0.5:5000"]
  capabilities = ["pull", "resolve",
                  "push"]
  ca = "/etc/containerd/certs.d/10.0.0.5:5000/ca.crt"
  skip_verify = false

[host.'http://mirror.lan#1']
  ca = ['/a.crt', "/b.crt"]
"#;
        let t = parse(doc);
        assert_eq!(t.len(), 3);
        assert_eq!(t[0].get("server").and_then(Value::as_str), Some("https://10.0.0.5:5000"));
        assert_eq!(t[1].path, vec!["host", "https://10.0.0.5:5000"]);
        assert_eq!(
            t[1].get("capabilities").map(Value::strings).unwrap(),
            vec!["pull", "resolve", "push"]
        );
        assert_eq!(
            t[1].get("ca").map(Value::strings).unwrap(),
            vec!["/etc/containerd/certs.d/10.0.0.5:5000/ca.crt"]
        );
        assert_eq!(t[1].get("skip_verify").and_then(Value::as_bool), Some(false));
        assert_eq!(t[2].path, vec!["host", "http://mirror.lan#1"]);
        assert_eq!(t[2].get("ca").map(Value::strings).unwrap(), vec!["/a.crt", "/b.crt"]);
    }

    #[test]
    fn registries_conf() {
        let doc = "unqualified-search-registries = [\"docker.io\"]\n\n[[registry]]\nlocation = \"10.0.0.5:5000\"\ninsecure = true\n\n[registries.insecure]\nregistries = ['a:1', 'b:2']\n";
        let t = parse(doc);
        assert!(t[1].array);
        assert_eq!(t[1].path, vec!["registry"]);
        assert_eq!(t[1].get("insecure").and_then(Value::as_bool), Some(true));
        assert_eq!(t[2].path, vec!["registries", "insecure"]);
        assert_eq!(t[2].get("registries").map(Value::strings).unwrap(), vec!["a:1", "b:2"]);
    }
}
