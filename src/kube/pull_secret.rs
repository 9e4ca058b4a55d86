//! The `kubernetes.io/dockerconfigjson` Secret pods name in `imagePullSecrets`, byte for byte
//! what `kubectl create secret docker-registry` makes (so either can replace the other), and
//! without the password on a command line.

use anyhow::bail;
use base64::Engine;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
pub struct PullSecret {
    pub name: String,
    pub namespace: Option<String>,
    /// The registry as image references name it (`HOST:PORT`): the key kubelet looks up.
    pub server: String,
    pub username: String,
    pub password: String,
    pub email: Option<String>,
}

// kubectl's types, fields in its order: the JSON it encodes is what the Secret holds.
#[derive(Serialize)]
struct DockerConfigJson<'a> {
    auths: BTreeMap<&'a str, Entry<'a>>,
}

#[derive(Serialize)]
struct Entry<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    username: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    password: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    auth: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Secret<'a> {
    kind: &'static str,
    api_version: &'static str,
    metadata: Metadata<'a>,
    data: BTreeMap<&'static str, String>,
    #[serde(rename = "type")]
    kind_of_secret: &'static str,
}

#[derive(Serialize)]
struct Metadata<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<&'a str>,
}

impl PullSecret {
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.server.is_empty() || self.server.contains(char::is_whitespace) {
            bail!("--server {:?}: give the registry as HOST:PORT", self.server);
        }
        if self.server.contains("://") {
            bail!(
                "--server {:?}: kubelet looks credentials up by the image reference's registry (HOST:PORT), without https://",
                self.server
            );
        }
        if self.username.is_empty() || self.password.is_empty() {
            bail!("the user name and the password must not be empty");
        }
        Ok(())
    }

    /// The `.dockerconfigjson` document.
    pub fn docker_config_json(&self) -> String {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut auths = BTreeMap::new();
        auths.insert(
            self.server.as_str(),
            Entry {
                username: &self.username,
                password: &self.password,
                email: self.email.as_deref(),
                auth: b64.encode(format!("{}:{}", self.username, self.password)),
            },
        );
        go_json(&serde_json::to_string(&DockerConfigJson { auths }).expect("strings serialise"))
    }

    fn secret(&self) -> Secret<'_> {
        let b64 = base64::engine::general_purpose::STANDARD;
        Secret {
            kind: "Secret",
            api_version: "v1",
            metadata: Metadata {
                name: &self.name,
                namespace: self.namespace.as_deref(),
            },
            data: BTreeMap::from([(".dockerconfigjson", b64.encode(self.docker_config_json()))]),
            kind_of_secret: "kubernetes.io/dockerconfigjson",
        }
    }

    /// The Secret as `kubectl ... -o json` prints it.
    pub fn to_json(&self) -> String {
        let mut out = Vec::new();
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
        let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
        self.secret().serialize(&mut ser).expect("strings serialise");
        let mut text = String::from_utf8(out).expect("JSON is UTF-8");
        text.push('\n');
        text
    }

    /// The Secret as YAML, for `kubectl apply -f -` beside the other manifests.
    pub fn to_yaml(&self) -> String {
        serde_yaml_ng::to_string(&self.secret()).expect("strings serialise")
    }
}

/// Go's encoding/json escapes `<`, `>`, `&`, U+2028 and U+2029 inside strings; kubectl's
/// bytes (and so its base64) differ from serde_json's without the same escapes. They can only
/// occur inside strings here, so replacing them everywhere is exact.
fn go_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// A password read from standard input loses its line end, as `docker login --password-stdin`'s does.
pub fn trim_password(input: &str) -> &str {
    let s = input.strip_suffix('\n').unwrap_or(input);
    s.strip_suffix('\r').unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_config_json_is_kubectls() {
        let s = PullSecret {
            name: "regcred".into(),
            namespace: None,
            server: "reg.lan:5000".into(),
            username: "u".into(),
            password: "p<&>".into(),
            email: None,
        };
        assert_eq!(
            s.docker_config_json(),
            r#"{"auths":{"reg.lan:5000":{"username":"u","password":"p\u003c\u0026\u003e","auth":"dTpwPCY+"}}}"#
        );
        assert!(s
            .to_json()
            .starts_with("{\n    \"kind\": \"Secret\",\n    \"apiVersion\": \"v1\",\n"));
        assert_eq!(trim_password("pw\r\n"), "pw");
        assert_eq!(trim_password("pw\n\n"), "pw\n");
    }
}
