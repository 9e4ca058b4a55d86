//! Running wharf in Kubernetes: the manifests (`wharf kube manifests`, and the kustomize base in
//! `deploy/kubernetes/` rendered by the same code), `imagePullSecrets` Secrets, and the
//! node-trust loop the DaemonSet runs on every node.
//!
//! Everything a cluster needs is rendered from one [`Options`] value, so the printed manifests
//! and the files in the repository cannot drift apart (a test renders both and compares).

pub mod csr;
pub mod hosts;
pub mod pull_secret;
mod resources;
pub mod secrets;

pub use resources::{documents, kustomization, stream, Document};

use anyhow::bail;

/// The port the registry listens on in its container and the Service exposes: registry:2's.
pub const REGISTRY_PORT: u16 = 5000;
/// Where the node-trust container sees the node's root filesystem (its `/etc`, mounted).
pub const HOST_ROOT: &str = "/host";
/// Where the node-trust container sees the CA (the `ca.crt` key of the TLS Secret, alone).
pub const CA_MOUNT: &str = "/etc/wharf/ca";

/// What to deploy. Every field is validated by [`Options::validate`] before it reaches YAML,
/// so the rendered text never needs quoting beyond what the templates do.
#[derive(Debug, Clone)]
pub struct Options {
    /// Base name of every object (`wharf`, `wharf-tls`, `wharf-node-trust`, ...).
    pub name: String,
    pub namespace: String,
    /// The wharf container image (the same image runs the registry and the node-trust loop).
    pub image: String,
    /// Extra host names clients use, beyond the Service's own DNS names (in the certificate
    /// and trusted on every node).
    pub extra_hosts: Vec<String>,
    /// Expose the registry on this port of every node (a NodePort Service), for machines
    /// outside the cluster.
    pub node_port: Option<u16>,
    pub storage_class: Option<String>,
    /// Size of the data volume, as a Kubernetes quantity (`10Gi`).
    pub storage_size: String,
    /// `Some((kind, name))`: a cert-manager Certificate from this issuer makes the TLS Secret.
    pub cert_manager_issuer: Option<(String, String)>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            name: "wharf".into(),
            namespace: "wharf".into(),
            image: "wharf:latest".into(),
            extra_hosts: Vec::new(),
            node_port: None,
            storage_class: None,
            storage_size: "10Gi".into(),
            cert_manager_issuer: None,
        }
    }
}

impl Options {
    pub fn validate(&self) -> anyhow::Result<()> {
        // The longest derived name is NAME-node-trust; object names are DNS labels (63).
        check_label("--name", &self.name, 63 - "-node-trust".len())?;
        check_label("--namespace", &self.namespace, 63)?;
        for host in &self.extra_hosts {
            crate::tls::certs::validate_dns_name(host).map_err(|e| anyhow::anyhow!("--host: {e}"))?;
            if host.starts_with("*.") {
                bail!("--host {host}: name one host; a node cannot pull from a wildcard");
            }
        }
        if self.image.is_empty() || !self.image.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\') {
            bail!("--image {:?}: not an image reference", self.image);
        }
        if let Some(port) = self.node_port {
            // The API server's default --service-node-port-range.
            if !(30000..=32767).contains(&port) {
                bail!("--node-port {port}: must be in 30000-32767, Kubernetes' default node port range");
            }
        }
        if let Some(class) = &self.storage_class {
            check_subdomain("--storage-class", class)?;
        }
        if !is_quantity(&self.storage_size) {
            bail!(
                "--storage-size {:?}: not a Kubernetes quantity (e.g. 10Gi, 500Mi)",
                self.storage_size
            );
        }
        if let Some((kind, name)) = &self.cert_manager_issuer {
            if kind != "Issuer" && kind != "ClusterIssuer" {
                bail!("--cert-manager-issuer {kind}/{name}: the kind is Issuer or ClusterIssuer");
            }
            check_subdomain("--cert-manager-issuer", name)?;
        }
        Ok(())
    }

    /// The Service's DNS names, most specific first; the first is the one nodes and pods use.
    pub fn service_hosts(&self) -> Vec<String> {
        let (n, ns) = (&self.name, &self.namespace);
        vec![format!("{n}.{ns}.svc.cluster.local"), format!("{n}.{ns}.svc"), format!("{n}.{ns}")]
    }

    /// Every host name the certificate covers.
    pub fn cert_hosts(&self) -> Vec<String> {
        let mut hosts = self.service_hosts();
        for h in &self.extra_hosts {
            if !hosts.contains(h) {
                hosts.push(h.clone());
            }
        }
        hosts
    }

    /// The name nodes pull by: the first `--host`, else the Service's full DNS name.
    pub fn node_host(&self) -> String {
        self.extra_hosts.first().cloned().unwrap_or_else(|| self.service_hosts()[0].clone())
    }

    /// The registry names (`HOST:PORT`) the node-trust DaemonSet trusts on every node. Nodes
    /// reach the registry on its Service port (their /etc/hosts maps every name to the
    /// Service's cluster IP); the node port is for machines outside the cluster.
    pub fn trusted_registries(&self) -> Vec<String> {
        let mut hosts = vec![self.service_hosts()[0].clone()];
        hosts.extend(self.extra_hosts.iter().cloned());
        hosts.dedup();
        hosts.into_iter().map(|h| format!("{h}:{REGISTRY_PORT}")).collect()
    }

    /// The environment variable Kubernetes sets in pods of the namespace to the Service's
    /// cluster IP (`WHARF_SERVICE_HOST`).
    pub fn service_ip_variable(&self) -> String {
        format!("{}_SERVICE_HOST", self.name.to_ascii_uppercase().replace('-', "_"))
    }

    pub fn tls_secret(&self) -> String {
        format!("{}-tls", self.name)
    }

    pub fn auth_secret(&self) -> String {
        format!("{}-htpasswd", self.name)
    }
}

fn check_label(flag: &str, value: &str, max: usize) -> anyhow::Result<()> {
    let ok = !value.is_empty()
        && value.len() <= max
        && value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && value.as_bytes()[0].is_ascii_lowercase()
        && !value.ends_with('-');
    if !ok {
        bail!("{flag} {value:?}: must be lower-case letters, digits and '-', start with a letter, at most {max} characters");
    }
    Ok(())
}

/// Kubernetes object names (and StorageClass, Issuer names): DNS subdomains.
pub fn check_subdomain(flag: &str, value: &str) -> anyhow::Result<()> {
    let ok = !value.is_empty()
        && value.len() <= 253
        && value.split('.').all(|l| {
            !l.is_empty()
                && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
    if !ok {
        bail!("{flag} {value:?}: must be a DNS subdomain (lower-case letters, digits, '-' and '.')");
    }
    Ok(())
}

/// Kubernetes quantities as volume sizes are written: a decimal number and an optional suffix.
fn is_quantity(s: &str) -> bool {
    const SUFFIXES: [&str; 13] = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "k", "M", "G", "T", "P", "E", ""];
    let Some(number) = SUFFIXES.iter().find_map(|suffix| s.strip_suffix(suffix)) else {
        return false;
    };
    let mut parts = number.splitn(2, '.');
    let whole = parts.next().unwrap_or("");
    let frac = parts.next();
    !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked_before_they_reach_yaml() {
        assert!(Options::default().validate().is_ok());
        let bad = [
            Options {
                name: "Wharf".into(),
                ..Options::default()
            },
            Options {
                namespace: "a b".into(),
                ..Options::default()
            },
            Options {
                image: "wharf\"; rm".into(),
                ..Options::default()
            },
            Options {
                node_port: Some(5000),
                ..Options::default()
            },
            Options {
                storage_class: Some("Fast SSD".into()),
                ..Options::default()
            },
            Options {
                storage_size: "10 GB".into(),
                ..Options::default()
            },
            Options {
                extra_hosts: vec!["*.lan".into()],
                ..Options::default()
            },
            Options {
                cert_manager_issuer: Some(("Secret".into(), "x".into())),
                ..Options::default()
            },
        ];
        for o in bad {
            assert!(o.validate().is_err(), "{o:?}");
        }
        for q in ["10Gi", "500Mi", "1.5Ti", "100"] {
            assert!(is_quantity(q), "{q}");
        }
        for q in ["", "Gi", "1.Gi", "1e3x", "-1Gi"] {
            assert!(!is_quantity(q), "{q}");
        }
    }

    #[test]
    fn names_nodes_and_clients_use() {
        let o = Options {
            extra_hosts: vec!["registry.lan".into()],
            node_port: Some(30500),
            ..Options::default()
        };
        assert_eq!(o.node_host(), "registry.lan");
        assert_eq!(o.trusted_registries(), ["wharf.wharf.svc.cluster.local:5000", "registry.lan:5000"]);
        assert_eq!(o.service_ip_variable(), "WHARF_SERVICE_HOST");
        assert_eq!(Options::default().node_host(), "wharf.wharf.svc.cluster.local");
    }
}
