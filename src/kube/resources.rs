//! The Kubernetes objects, as YAML text. Templates rather than a data structure: they read like
//! the manifests people write by hand, and every value put into them has been validated
//! ([`super::Options::validate`]) or is base64.

use super::secrets::SecretFiles;
use super::{Options, CA_MOUNT, HOST_ROOT, REGISTRY_PORT};
use base64::Engine;
use std::fmt::Write;

/// One object (or, for the base, one file of the kustomize base).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// Its file name in the kustomize base.
    pub file: &'static str,
    pub yaml: String,
}

/// Where the registry container reads its configuration: registry:2's own path.
const CONFIG_DIR: &str = "/etc/docker/registry";
const TLS_DIR: &str = "/etc/wharf/tls";
const AUTH_DIR: &str = "/etc/wharf/auth";
const DATA_DIR: &str = "/var/lib/registry";
/// The unprivileged user the registry runs as (the data volume is made writable for its group).
const REGISTRY_UID: u32 = 65532;

/// Every object, in the order `kubectl apply` should create them. `secrets` are the files
/// the Secrets carry; without them (the kustomize base) the Secrets are left to the
/// kustomization's secretGenerator.
pub fn documents(o: &Options, secrets: Option<&SecretFiles>) -> Vec<Document> {
    let mut docs = vec![doc("namespace.yaml", namespace(o))];
    if let Some(s) = secrets {
        docs.push(doc("htpasswd-secret.yaml", htpasswd_secret(o, s)));
        if o.cert_manager_issuer.is_none() {
            docs.push(doc("tls-secret.yaml", tls_secret(o, s)));
        }
    }
    if let Some((kind, name)) = &o.cert_manager_issuer {
        docs.push(doc("certificate.yaml", certificate(o, kind, name)));
    }
    docs.push(doc("config.yaml", config_map(o)));
    docs.push(doc("service.yaml", service(o)));
    docs.push(doc("statefulset.yaml", stateful_set(o)));
    docs.push(doc("local-registry-hosting.yaml", local_registry_hosting(o)));
    docs.push(doc("node-trust.yaml", node_trust(o)));
    docs
}

/// The multi-document stream `kubectl apply -f -` reads.
pub fn stream(docs: &[Document]) -> String {
    docs.iter().map(|d| format!("---\n{}", d.yaml)).collect()
}

/// `kustomization.yaml` for the base: the objects above, and the Secrets generated from files
/// in `secrets/` (names kept as they are, so the StatefulSet and DaemonSet find them).
pub fn kustomization(o: &Options, docs: &[Document]) -> String {
    let mut k = String::from(
        "# The kustomize base `wharf kube base` writes; `wharf kube manifests` prints the same objects.\n\
         # Put the Secrets' files in secrets/ first (`wharf kube secrets --dir secrets` makes them),\n\
         # then: kubectl apply -k .\n\
         apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n",
    );
    for d in docs {
        let _ = writeln!(k, "- {}", d.file);
    }
    let ns = &o.namespace;
    let _ = write!(
        k,
        "generatorOptions:\n  disableNameSuffixHash: true\nsecretGenerator:\n\
         - name: {auth}\n  namespace: {ns}\n  files:\n  - htpasswd=secrets/htpasswd\n",
        auth = o.auth_secret()
    );
    if o.cert_manager_issuer.is_none() {
        let _ = write!(
            k,
            "- name: {tls}\n  namespace: {ns}\n  type: kubernetes.io/tls\n  files:\n\
             \x20 - tls.crt=secrets/tls.crt\n  - tls.key=secrets/tls.key\n  - ca.crt=secrets/ca.crt\n",
            tls = o.tls_secret()
        );
    }
    k
}

fn doc(file: &'static str, yaml: String) -> Document {
    Document { file, yaml }
}

fn labels(o: &Options, component: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    format!(
        "{pad}app.kubernetes.io/name: wharf\n{pad}app.kubernetes.io/instance: {}\n{pad}app.kubernetes.io/component: {component}\n",
        o.name
    )
}

fn namespace(o: &Options) -> String {
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {}\n  labels:\n    app.kubernetes.io/name: wharf\n",
        o.namespace
    )
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn htpasswd_secret(o: &Options, s: &SecretFiles) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {}\n  namespace: {}\ntype: Opaque\ndata:\n  htpasswd: {}\n",
        o.auth_secret(),
        o.namespace,
        b64(&s.htpasswd)
    )
}

fn tls_secret(o: &Options, s: &SecretFiles) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {}\n  namespace: {}\ntype: kubernetes.io/tls\ndata:\n  \
         tls.crt: {}\n  tls.key: {}\n  ca.crt: {}\n",
        o.tls_secret(),
        o.namespace,
        b64(&s.tls_crt),
        b64(&s.tls_key),
        b64(&s.ca_crt)
    )
}

fn certificate(o: &Options, kind: &str, issuer: &str) -> String {
    let mut names = String::new();
    for h in o.cert_hosts() {
        let _ = writeln!(names, "  - {h}");
    }
    format!(
        "# cert-manager issues the registry's certificate into the Secret {secret}; its ca.crt key is what\n\
         # the node-trust DaemonSet installs on every node (CA and self-signed issuers fill it in).\n\
         apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  \
         secretName: {secret}\n  dnsNames:\n{names}  usages:\n  - digital signature\n  - key encipherment\n  - server auth\n  \
         privateKey:\n    algorithm: ECDSA\n    size: 256\n    rotationPolicy: Always\n  \
         issuerRef:\n    group: cert-manager.io\n    kind: {kind}\n    name: {issuer}\n",
        name = o.name,
        ns = o.namespace,
        secret = o.tls_secret(),
    )
}

/// registry:2's configuration file, as the registry:2 image reads it: the same file runs
/// `registry:2` unchanged.
fn config_map(o: &Options) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}-config\n  namespace: {ns}\n  labels:\n{labels}data:\n  \
         config.yml: |\n    version: 0.1\n    log:\n      fields:\n        service: registry\n    \
         storage:\n      filesystem:\n        rootdirectory: {DATA_DIR}\n    \
         http:\n      addr: :{REGISTRY_PORT}\n      headers:\n        X-Content-Type-Options: [nosniff]\n      \
         tls:\n        certificate: {TLS_DIR}/tls.crt\n        key: {TLS_DIR}/tls.key\n    \
         auth:\n      htpasswd:\n        realm: wharf\n        path: {AUTH_DIR}/htpasswd\n",
        name = o.name,
        ns = o.namespace,
        labels = labels(o, "registry", 4),
    )
}

fn service(o: &Options) -> String {
    let (kind, node_port) = match o.node_port {
        Some(p) => ("NodePort", format!("    nodePort: {p}\n")),
        None => ("ClusterIP", String::new()),
    };
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: {ns}\n  labels:\n{labels}spec:\n  \
         type: {kind}\n  selector:\n{selector}  ports:\n  - name: registry\n    port: {REGISTRY_PORT}\n    \
         targetPort: registry\n    protocol: TCP\n{node_port}",
        name = o.name,
        ns = o.namespace,
        labels = labels(o, "registry", 4),
        selector = labels(o, "registry", 4),
    )
}

fn stateful_set(o: &Options) -> String {
    let class = match &o.storage_class {
        Some(c) => format!("      storageClassName: {c}\n"),
        None => String::new(),
    };
    format!(
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: {name}\n  namespace: {ns}\n  labels:\n{labels4}spec:\n  \
         # One replica: filesystem storage has one writer. More need shared object storage.\n  \
         replicas: 1\n  serviceName: {name}\n  selector:\n    matchLabels:\n{labels6}  template:\n    metadata:\n      labels:\n{labels8}    \
         spec:\n      automountServiceAccountToken: false\n      enableServiceLinks: false\n      terminationGracePeriodSeconds: 60\n      \
         securityContext:\n        runAsNonRoot: true\n        runAsUser: {REGISTRY_UID}\n        runAsGroup: {REGISTRY_UID}\n        \
         fsGroup: {REGISTRY_UID}\n        fsGroupChangePolicy: OnRootMismatch\n        seccompProfile:\n          type: RuntimeDefault\n      \
         containers:\n      - name: registry\n        image: \"{image}\"\n        imagePullPolicy: IfNotPresent\n        \
         args: [serve, {CONFIG_DIR}/config.yml]\n        ports:\n        - name: registry\n          containerPort: {REGISTRY_PORT}\n          protocol: TCP\n        \
         # TCP probes: with a password set, every /v2/ answer is 401, which an HTTP probe counts as down.\n        \
         startupProbe:\n          tcpSocket:\n            port: registry\n          periodSeconds: 2\n          failureThreshold: 30\n        \
         readinessProbe:\n          tcpSocket:\n            port: registry\n          periodSeconds: 5\n        \
         livenessProbe:\n          tcpSocket:\n            port: registry\n          periodSeconds: 20\n          failureThreshold: 3\n        \
         resources:\n          requests:\n            cpu: 100m\n            memory: 128Mi\n          limits:\n            memory: 1Gi\n        \
         securityContext:\n          allowPrivilegeEscalation: false\n          readOnlyRootFilesystem: true\n          capabilities:\n            drop: [ALL]\n        \
         volumeMounts:\n        - name: data\n          mountPath: {DATA_DIR}\n        - name: config\n          mountPath: {CONFIG_DIR}\n          readOnly: true\n        \
         - name: tls\n          mountPath: {TLS_DIR}\n          readOnly: true\n        - name: htpasswd\n          mountPath: {AUTH_DIR}\n          readOnly: true\n      \
         volumes:\n      - name: config\n        configMap:\n          name: {name}-config\n      - name: tls\n        secret:\n          secretName: {tls}\n      \
         - name: htpasswd\n        secret:\n          secretName: {auth}\n  \
         volumeClaimTemplates:\n  - metadata:\n      name: data\n      labels:\n{labels8}    spec:\n      accessModes: [ReadWriteOnce]\n{class}      \
         resources:\n        requests:\n          storage: {size}\n",
        name = o.name,
        ns = o.namespace,
        image = o.image,
        tls = o.tls_secret(),
        auth = o.auth_secret(),
        size = o.storage_size,
        labels4 = labels(o, "registry", 4),
        labels6 = labels(o, "registry", 6),
        labels8 = labels(o, "registry", 8),
    )
}

/// KEP-1755: where tools (Tilt, ctlptl, skaffold) find the cluster's registry.
fn local_registry_hosting(o: &Options) -> String {
    let outside = match o.node_port {
        Some(p) => format!("{}:{p}", o.node_host()),
        None => format!("{}:{REGISTRY_PORT}", o.node_host()),
    };
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: local-registry-hosting\n  namespace: kube-public\n  labels:\n{labels}data:\n  \
         localRegistryHosting.v1: |\n    host: \"{outside}\"\n    hostFromContainerRuntime: \"{node}:{REGISTRY_PORT}\"\n    \
         hostFromClusterNetwork: \"{cluster}:{REGISTRY_PORT}\"\n",
        labels = labels(o, "registry", 4),
        node = o.node_host(),
        cluster = o.service_hosts()[0],
    )
}

/// Runs `wharf kube node-trust` on every node: the CA into containerd's, Docker's and
/// CRI-O's certs.d (and whatever else `wharf trust` configures), the registry's name into
/// /etc/hosts, again whenever the Secret changes, and all of it removed when the pod stops.
fn node_trust(o: &Options) -> String {
    let mut args = format!("        - kube\n        - node-trust\n        - --ca={CA_MOUNT}/ca.crt\n        - --root={HOST_ROOT}\n");
    // Kubernetes expands $(NAME_SERVICE_HOST) to the Service's cluster IP: nodes resolve the
    // registry's names through /etc/hosts, as seed guides do by hand, without cluster DNS.
    let mut hosts = vec![o.service_hosts()[0].clone()];
    hosts.extend(o.extra_hosts.iter().cloned());
    for h in hosts {
        let _ = writeln!(args, "        - --hosts-entry={h}=$({})", o.service_ip_variable());
    }
    for r in o.trusted_registries() {
        let _ = writeln!(args, "        - {r}");
    }
    format!(
        "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: {name}-node-trust\n  namespace: {ns}\n  labels:\n{labels4}spec:\n  \
         selector:\n    matchLabels:\n{labels6}  updateStrategy:\n    type: RollingUpdate\n  template:\n    metadata:\n      labels:\n{labels8}    \
         spec:\n      automountServiceAccountToken: false\n      # Every node, control-plane and tainted ones too: any of them may pull.\n      \
         tolerations:\n      - operator: Exists\n      terminationGracePeriodSeconds: 30\n      containers:\n      - name: node-trust\n        \
         image: \"{image}\"\n        imagePullPolicy: IfNotPresent\n        args:\n{args}        \
         resources:\n          requests:\n            cpu: 5m\n            memory: 16Mi\n          limits:\n            memory: 64Mi\n        \
         # Root, to write the node's /etc; no capabilities beyond a root-owned file's owner rights.\n        \
         securityContext:\n          runAsUser: 0\n          runAsNonRoot: false\n          allowPrivilegeEscalation: false\n          \
         readOnlyRootFilesystem: true\n          capabilities:\n            drop: [ALL]\n          seccompProfile:\n            type: RuntimeDefault\n        \
         volumeMounts:\n        - name: host-etc\n          mountPath: {HOST_ROOT}/etc\n        - name: ca\n          mountPath: {CA_MOUNT}\n          readOnly: true\n      \
         volumes:\n      - name: host-etc\n        hostPath:\n          path: /etc\n          type: Directory\n      \
         # Only ca.crt of the TLS Secret reaches the nodes, never the key. Optional: an ACME\n      \
         # certificate has no ca.crt (and needs no node trust); the loop then waits for one.\n      \
         - name: ca\n        secret:\n          secretName: {tls}\n          optional: true\n          items:\n          - key: ca.crt\n            path: ca.crt\n",
        name = o.name,
        ns = o.namespace,
        image = o.image,
        tls = o.tls_secret(),
        labels4 = labels(o, "node-trust", 4),
        labels6 = labels(o, "node-trust", 6),
        labels8 = labels(o, "node-trust", 8),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> SecretFiles {
        SecretFiles {
            htpasswd: b"admin:$2y$05$abc\n".to_vec(),
            tls_crt: b"CRT".to_vec(),
            tls_key: b"KEY".to_vec(),
            ca_crt: b"CA".to_vec(),
        }
    }

    fn parse_all(text: &str) -> Vec<serde_yaml_ng::Value> {
        use serde::Deserialize;
        serde_yaml_ng::Deserializer::from_str(text)
            .map(|d| serde_yaml_ng::Value::deserialize(d).unwrap())
            .collect()
    }

    #[test]
    fn every_document_is_yaml_with_the_options_in_it() {
        let o = Options {
            extra_hosts: vec!["registry.lan".into()],
            node_port: Some(30500),
            storage_class: Some("fast".into()),
            ..Options::default()
        };
        let docs = documents(&o, Some(&files()));
        let all = parse_all(&stream(&docs));
        assert_eq!(all.len(), docs.len());
        let kinds: Vec<&str> = all.iter().map(|d| d["kind"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "Namespace",
                "Secret",
                "Secret",
                "ConfigMap",
                "Service",
                "StatefulSet",
                "ConfigMap",
                "DaemonSet"
            ]
        );
        let svc = &all[4];
        assert_eq!(svc["spec"]["type"].as_str(), Some("NodePort"));
        assert_eq!(svc["spec"]["ports"][0]["nodePort"].as_u64(), Some(30500));
        let sts = &all[5];
        assert_eq!(
            sts["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"].as_str(),
            Some("fast")
        );
        let args: Vec<&str> = all[7]["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert!(args.contains(&"--hosts-entry=registry.lan=$(WHARF_SERVICE_HOST)"), "{args:?}");
        assert!(args.contains(&"registry.lan:5000"), "{args:?}");
        let hosting: serde_yaml_ng::Value = serde_yaml_ng::from_str(all[6]["data"]["localRegistryHosting.v1"].as_str().unwrap()).unwrap();
        assert_eq!(hosting["host"].as_str(), Some("registry.lan:30500"));
        assert_eq!(
            hosting["hostFromClusterNetwork"].as_str(),
            Some("wharf.wharf.svc.cluster.local:5000")
        );
        let config: serde_yaml_ng::Value = serde_yaml_ng::from_str(all[3]["data"]["config.yml"].as_str().unwrap()).unwrap();
        assert_eq!(config["http"]["addr"].as_str(), Some(":5000"));
    }

    #[test]
    fn cert_manager_replaces_the_tls_secret() {
        let o = Options {
            cert_manager_issuer: Some(("ClusterIssuer".into(), "lan-ca".into())),
            ..Options::default()
        };
        let all = parse_all(&stream(&documents(&o, Some(&files()))));
        let kinds: Vec<&str> = all.iter().map(|d| d["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds.iter().filter(|k| **k == "Secret").count(), 1);
        let cert = all.iter().find(|d| d["kind"].as_str() == Some("Certificate")).unwrap();
        assert_eq!(cert["spec"]["secretName"].as_str(), Some("wharf-tls"));
        assert_eq!(cert["spec"]["issuerRef"]["kind"].as_str(), Some("ClusterIssuer"));
        assert!(!kustomization(&o, &documents(&o, None)).contains("wharf-tls"));
    }
}
