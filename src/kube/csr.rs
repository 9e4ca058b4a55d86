//! Certificates from the cluster's own CA, through the CertificateSigningRequest API with the
//! `kubernetes.io/kubelet-serving` signer (the one kube-controller-manager signs with the
//! cluster CA that every node already trusts for its kubelets).
//!
//! That signer refuses, without saying much, any request that is not shaped like a kubelet's
//! serving certificate; [`check_kubelet_serving`] applies kube-controller-manager's own rules
//! (`ValidateKubeletServingCSR`) before anything is sent.

use crate::tls::certs::Subject;
use anyhow::{anyhow, bail};
use base64::Engine;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

pub const KUBELET_SERVING: &str = "kubernetes.io/kubelet-serving";
/// The organisation the signer requires: the group every node's identity is in.
pub const NODES_GROUP: &str = "system:nodes";
pub const NODE_PREFIX: &str = "system:node:";
/// One of the two usage sets the signer accepts (the other lacks key encipherment, for
/// non-RSA keys); this one is seed 004's and works for every key type.
pub const USAGES: [&str; 3] = ["digital signature", "key encipherment", "server auth"];

pub fn kubelet_serving_subject(node: &str) -> Subject {
    Subject {
        organization: NODES_GROUP.into(),
        common_name: format!("{NODE_PREFIX}{node}"),
    }
}

/// Refuses what kube-controller-manager's kubelet-serving signer would refuse.
pub fn check_kubelet_serving(csr_pem: &str, usages: &[&str]) -> anyhow::Result<()> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(csr_pem.as_bytes()).map_err(|e| anyhow!("not a PEM signing request: {e}"))?;
    if pem.label != "CERTIFICATE REQUEST" {
        bail!("the PEM block is {:?}, the signer wants \"CERTIFICATE REQUEST\"", pem.label);
    }
    let (_, req) = x509_parser::certification_request::X509CertificationRequest::from_der(&pem.contents)
        .map_err(|e| anyhow!("unreadable signing request: {e}"))?;
    let subject = &req.certification_request_info.subject;
    let orgs: Vec<&str> = subject.iter_organization().filter_map(|a| a.as_str().ok()).collect();
    if orgs != [NODES_GROUP] {
        bail!("the subject's organisation must be exactly {NODES_GROUP} (O={NODES_GROUP}), not {orgs:?}");
    }
    let (mut names, mut refused) = (0, Vec::new());
    for ext in req.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext {
            for name in &san.general_names {
                match name {
                    GeneralName::DNSName(_) | GeneralName::IPAddress(_) => names += 1,
                    GeneralName::RFC822Name(e) => refused.push(format!("email {e}")),
                    GeneralName::URI(u) => refused.push(format!("URI {u}")),
                    _ => {}
                }
            }
        }
    }
    if names == 0 {
        bail!("the signer needs at least one DNS name or IP address in subjectAltName");
    }
    if !refused.is_empty() {
        bail!("the signer refuses these subjectAltNames: {}", refused.join(", "));
    }
    let mut wanted: Vec<&str> = usages.to_vec();
    wanted.sort_unstable();
    wanted.dedup();
    let with_ke = ["digital signature", "key encipherment", "server auth"];
    let without_ke = ["digital signature", "server auth"];
    if wanted != with_ke && wanted != without_ke {
        bail!("the usages must be exactly {with_ke:?} or {without_ke:?}, not {usages:?}");
    }
    let cn = subject.iter_common_name().next().and_then(|a| a.as_str().ok()).unwrap_or("");
    if !cn.starts_with(NODE_PREFIX) {
        bail!("the subject's common name must start with {NODE_PREFIX} (CN={NODE_PREFIX}NAME), not {cn:?}");
    }
    Ok(())
}

/// The CertificateSigningRequest object for `kubectl create -f -`.
pub fn manifest(name: &str, csr_pem: &str, signer: &str, usages: &[&str]) -> String {
    let request = base64::engine::general_purpose::STANDARD.encode(csr_pem);
    let mut yaml = format!(
        "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata:\n  name: {name}\nspec:\n  \
         request: {request}\n  signerName: {signer}\n  usages:\n"
    );
    for u in usages {
        yaml.push_str(&format!("  - {u}\n"));
    }
    yaml
}

/// The certificate of an approved request, from `kubectl get csr NAME -o json` (or the
/// `.status.certificate` field alone, base64 or PEM).
pub fn certificate_from_status(input: &str) -> anyhow::Result<String> {
    let trimmed = input.trim();
    if trimmed.starts_with("-----BEGIN CERTIFICATE-----") {
        return Ok(format!("{trimmed}\n"));
    }
    let field = if trimmed.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(trimmed).map_err(|e| anyhow!("reading the CertificateSigningRequest JSON: {e}"))?;
        let conditions = v["status"]["conditions"].as_array().cloned().unwrap_or_default();
        if conditions.iter().any(|c| c["type"] == "Denied") {
            bail!("the request was denied: {}", v["status"]["conditions"]);
        }
        if conditions.iter().any(|c| c["type"] == "Failed") {
            bail!("the signer failed to sign it: {}", v["status"]["conditions"]);
        }
        match v["status"]["certificate"].as_str() {
            Some(c) if !c.is_empty() => c.to_string(),
            _ if conditions.iter().any(|c| c["type"] == "Approved") => {
                bail!("approved but not signed yet: run the command again in a few seconds")
            }
            _ => bail!("the request has no certificate yet: approve it first (kubectl certificate approve NAME)"),
        }
    } else {
        trimmed.to_string()
    };
    let der = base64::engine::general_purpose::STANDARD
        .decode(field.as_bytes())
        .map_err(|e| anyhow!(".status.certificate is not base64: {e}"))?;
    let pem = String::from_utf8(der).map_err(|_| anyhow!(".status.certificate does not hold PEM text"))?;
    if !pem.contains("-----BEGIN CERTIFICATE-----") {
        bail!(".status.certificate does not hold a PEM certificate");
    }
    Ok(pem)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::certs;

    #[test]
    fn the_csr_wharf_writes_passes_the_signers_rules() {
        let subject = kubelet_serving_subject("registry");
        let (pem, _) = certs::csr_with_subject(&[], &["registry.lan".into()], Some(&subject)).unwrap();
        check_kubelet_serving(&pem, &USAGES).unwrap();
        check_kubelet_serving(&pem, &["server auth", "digital signature"]).unwrap();
        let err = check_kubelet_serving(&pem, &["server auth"]).unwrap_err();
        assert!(err.to_string().contains("usages"), "{err}");
        // What `wharf cert csr` wrote before: CN from the first name, no organisation.
        let (plain, _) = certs::csr(&[], &["registry.lan".into()]).unwrap();
        let err = check_kubelet_serving(&plain, &USAGES).unwrap_err();
        assert!(err.to_string().contains("system:nodes"), "{err}");
        let wrong_cn = certs::Subject {
            organization: NODES_GROUP.into(),
            common_name: "registry".into(),
        };
        let (pem, _) = certs::csr_with_subject(&[], &["registry.lan".into()], Some(&wrong_cn)).unwrap();
        assert!(check_kubelet_serving(&pem, &USAGES)
            .unwrap_err()
            .to_string()
            .contains("common name"));
    }

    #[test]
    fn manifest_and_status() {
        let m = manifest("wharf", "PEM", KUBELET_SERVING, &USAGES);
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&m).unwrap();
        assert_eq!(v["spec"]["signerName"].as_str(), Some(KUBELET_SERVING));
        assert_eq!(v["spec"]["request"].as_str(), Some("UEVN"));
        let cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let b64 = base64::engine::general_purpose::STANDARD.encode(cert);
        let json = format!(r#"{{"status":{{"certificate":"{b64}","conditions":[{{"type":"Approved"}}]}}}}"#);
        assert_eq!(certificate_from_status(&json).unwrap(), cert);
        assert_eq!(certificate_from_status(&b64).unwrap(), cert);
        let pending = r#"{"status":{"conditions":[{"type":"Approved"}]}}"#;
        assert!(certificate_from_status(pending).unwrap_err().to_string().contains("not signed yet"));
        let denied = r#"{"status":{"conditions":[{"type":"Denied"}]}}"#;
        assert!(certificate_from_status(denied).unwrap_err().to_string().contains("denied"));
    }
}
