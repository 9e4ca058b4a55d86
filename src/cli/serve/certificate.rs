//! The start-up check of a certificate the user configured (`http.tls.certificate`): what
//! `wharf cert inspect` would say about it, printed before the first client meets it.
//!
//! registry:2 serves whatever certificate it is given and the user learns from a client's
//! x509 error, on another machine, later. A drop-in must still serve what registry:2 serves,
//! so the findings are warnings; `--refuse-bad-certificate` (WHARF_REFUSE_BAD_CERTIFICATE)
//! turns the ones clients refuse into a failed start.

use crate::config::Config;
use crate::tls::inspect::{self, Report, Severity};
use std::net::{IpAddr, SocketAddr};

/// Docker's rule, from its registry code: a registry on a loopback address is treated as
/// insecure, so Docker does not verify its certificate at all.
const LOOPBACK_NOTE: &str = "Docker skips certificate verification for registries on loopback addresses \
     (127.0.0.0/8, ::1, localhost), so docker push/pull to 127.0.0.1 still work with it; on every other \
     address Docker refuses it, and containerd (Kubernetes), podman, skopeo and curl refuse it everywhere";

/// The host clients are expected to use: `http.host`'s, else the address bound when it names
/// one machine address. A wildcard bind (`:5000`) leaves it open, and only checks that do not
/// depend on the name run.
pub fn served_host(cfg: &Config, local: SocketAddr) -> Option<String> {
    let from_url = cfg.http.host.trim();
    if !from_url.is_empty() {
        return Some(inspect::host_only(from_url)).filter(|h| !h.is_empty());
    }
    let ip = local.ip();
    (!ip.is_unspecified()).then(|| ip.to_string())
}

/// The findings for the certificate file at `path` as clients at `host` will meet it, or None
/// when there is nothing to say. An unreadable file is left to the TLS set-up, which names it.
pub fn check(path: &str, host: Option<&str>) -> Option<Report> {
    let pem = std::fs::read_to_string(path).ok()?;
    let report = inspect::inspect(&pem, host).ok()?;
    (!report.findings.is_empty()).then_some(report)
}

/// The lines to print for a report: errors (clients refuse) first, then warnings.
pub fn describe(path: &str, report: &Report) -> String {
    let mut out = String::new();
    let against = report.host.as_deref().map(|h| format!(" for {h}")).unwrap_or_default();
    if report.has_errors() {
        out.push_str(&format!(
            "wharf: warning: clients will refuse the certificate in {path}{against}:\n"
        ));
    } else {
        out.push_str(&format!("wharf: note: about the certificate in {path}{against}:\n"));
    }
    for f in &report.findings {
        let tag = match f.severity {
            Severity::Error => "refused",
            Severity::Warning => "warning",
        };
        out.push_str(&format!("wharf:   {tag}: {}\n", f.problem));
        out.push_str(&format!("wharf:     fix: {}\n", f.fix));
    }
    if report.has_errors() {
        let loopback = report
            .host
            .as_deref()
            .and_then(|h| h.parse::<IpAddr>().ok())
            .is_none_or(|ip| ip.is_loopback());
        if loopback {
            out.push_str(&format!("wharf:   {LOOPBACK_NOTE}.\n"));
        } else {
            out.push_str("wharf:   Docker, containerd (Kubernetes), podman, skopeo and curl all refuse it at this address.\n");
        }
        out.push_str(&format!(
            "wharf:   serving it anyway, as registry:2 does; --refuse-bad-certificate (or {REFUSE_VAR}=true) refuses to start instead.\n"
        ));
    }
    out
}

/// The switch that makes a certificate clients refuse a failed start.
pub const REFUSE_VAR: &str = "WHARF_REFUSE_BAD_CERTIFICATE";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_comes_from_http_host_then_a_specific_bind() {
        let mut cfg = Config::default();
        let any: SocketAddr = "0.0.0.0:5000".parse().unwrap();
        let one: SocketAddr = "10.1.2.3:5000".parse().unwrap();
        assert_eq!(served_host(&cfg, any), None);
        assert_eq!(served_host(&cfg, one).as_deref(), Some("10.1.2.3"));
        cfg.http.host = "https://registry.example:5000".into();
        assert_eq!(served_host(&cfg, one).as_deref(), Some("registry.example"));
    }
}
