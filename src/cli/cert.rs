//! `wharf cert`: make a private CA and the registry's certificates, and explain what is wrong
//! with an existing certificate — the openssl steps every registry guide repeats, done right
//! (subjectAltNames, serverAuth, full chain, private key mode 0600).

use crate::tls::certs::{self, CertKey};
use crate::tls::inspect;
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

#[derive(Subcommand, Debug)]
pub enum CertCommand {
    /// Create a certificate authority: DIR/ca.crt (for clients) and DIR/ca.key (keep it secret).
    Ca(CaArgs),
    /// Issue the registry's server certificate, signed by a CA made with `wharf cert ca`.
    Issue(IssueArgs),
    /// Issue a client certificate, for registries that require one (http.tls.clientcas).
    Client(ClientArgs),
    /// Create a private key and a certificate signing request for an outside CA.
    Csr(CsrArgs),
    /// Install the certificate an outside CA signed for `wharf cert csr` (from `kubectl get csr -o json`, PEM or base64).
    InstallSigned(InstallSignedArgs),
    /// Show a certificate chain and everything about it that clients will reject.
    Inspect(InspectArgs),
}

#[derive(Args, Debug)]
pub struct CaArgs {
    /// Directory to write ca.crt and ca.key to (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Common Name of the CA (default: "wharf registry CA (<host name>)").
    #[arg(long, value_name = "CN")]
    pub name: Option<String>,
    /// Validity in days.
    #[arg(long, value_name = "N", default_value_t = certs::CA_VALIDITY_DAYS)]
    pub days: u32,
    /// Replace existing files.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct Names {
    /// An IP address clients connect to (repeatable).
    #[arg(long = "ip", value_name = "IP")]
    pub ips: Vec<IpAddr>,
    /// A DNS name clients connect to, `*.` wildcards allowed (repeatable).
    #[arg(long = "dns", value_name = "NAME")]
    pub dns: Vec<String>,
    /// Add every address of this machine's interfaces, its host name and localhost.
    #[arg(long)]
    pub local: bool,
}

impl Names {
    fn collect(&self) -> anyhow::Result<(Vec<IpAddr>, Vec<String>)> {
        let mut ips = self.ips.clone();
        let mut dns = self.dns.clone();
        if self.local {
            ips.extend(certs::local_addresses());
            dns.extend(certs::hostname());
            dns.push("localhost".into());
        }
        if ips.is_empty() && dns.is_empty() {
            bail!("name the addresses clients use: --ip IP, --dns NAME (repeatable), or --local for this machine's");
        }
        Ok((ips, dns))
    }
}

#[derive(Args, Debug)]
pub struct IssueArgs {
    /// Directory holding the CA's ca.crt and ca.key.
    #[arg(long, value_name = "DIR")]
    pub ca: PathBuf,
    /// Directory to write server.crt (certificate then CA: the full chain) and server.key to.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    #[command(flatten)]
    pub names: Names,
    /// Validity in days (macOS rejects more than 825).
    #[arg(long, value_name = "N", default_value_t = certs::SERVER_VALIDITY_DAYS)]
    pub days: u32,
    /// Replace existing files (a running wharf serves the new certificate without a restart).
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct ClientArgs {
    /// Directory holding the CA's ca.crt and ca.key.
    #[arg(long, value_name = "DIR")]
    pub ca: PathBuf,
    /// Directory to write client.cert and client.key to (the names Docker's certs.d expects).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Common Name identifying the client.
    #[arg(long, value_name = "CN")]
    pub name: String,
    /// Validity in days.
    #[arg(long, value_name = "N", default_value_t = certs::SERVER_VALIDITY_DAYS)]
    pub days: u32,
    /// Replace existing files.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct CsrArgs {
    /// Directory to write server.csr and server.key to.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    #[command(flatten)]
    pub names: Names,
    /// For Kubernetes' kubernetes.io/kubelet-serving signer (the cluster CA every node trusts):
    /// subject O=system:nodes, CN=system:node:NAME, and DIR/csr.yaml, the CertificateSigningRequest to create.
    #[arg(long, value_name = "NAME")]
    pub kubelet_serving: Option<String>,
    /// Replace existing files.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct InstallSignedArgs {
    /// The directory `wharf cert csr --out` wrote server.key to; server.crt is written there.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// The signed certificate: `kubectl get csr NAME -o json` output, .status.certificate, or PEM; `-` reads standard input.
    #[arg(default_value = "-")]
    pub input: PathBuf,
    /// The signing CA's certificate, appended so server.crt is the full chain
    /// (the cluster CA: kubectl get configmap kube-root-ca.crt -o jsonpath='{.data.ca\.crt}').
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Replace an existing server.crt.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// PEM certificate or chain (server certificate first); `-` reads standard input.
    pub file: PathBuf,
    /// The address clients use (HOST, HOST:PORT or [IPv6]:PORT), checked against the certificate's names.
    #[arg(long, value_name = "HOST[:PORT]")]
    pub host: Option<String>,
}

pub fn run(cmd: CertCommand) -> anyhow::Result<()> {
    match cmd {
        CertCommand::Ca(args) => ca(args),
        CertCommand::Issue(args) => issue(args),
        CertCommand::Client(args) => client(args),
        CertCommand::Csr(args) => csr(args),
        CertCommand::InstallSigned(args) => install_signed(args),
        CertCommand::Inspect(args) => inspect_cmd(args),
    }
}

fn ca(args: CaArgs) -> anyhow::Result<()> {
    let (crt, key) = (CertKey::cert_path(&args.out, "ca"), CertKey::key_path(&args.out, "ca"));
    refuse_overwrite(
        &[&crt, &key],
        args.force,
        "clients that trust the old ca.crt will reject certificates from the new CA",
    )?;
    let name = args
        .name
        .unwrap_or_else(|| format!("wharf registry CA ({})", certs::hostname().unwrap_or_else(|| "localhost".into())));
    let ca = certs::new_ca(&name, args.days)?;
    ca.save(&args.out, "ca")?;
    let (crt, key, out) = (absolute(&crt), absolute(&key), absolute(&args.out));
    // The server certificate goes next to the CA directory, not into it.
    let certs_dir = out.parent().map_or_else(|| out.join("certs"), |parent| parent.join("certs"));
    println!("Created the certificate authority {name:?}:");
    println!("  {}   CA certificate: install it on every client", crt.display());
    println!("  {}   CA private key: keep it secret (mode 0600)", key.display());
    print_identity(&ca.cert_pem)?;
    println!();
    println!("Next steps:");
    println!("  1. Issue the registry's certificate (add --ip/--dns for every other address clients use):");
    println!(
        "       wharf cert issue --ca {} --out {} --local",
        out.display(),
        certs_dir.display()
    );
    println!("  2. On each client, trust this CA for the registry's address:");
    print_trust_steps(&crt, "HOST:PORT");
    Ok(())
}

fn issue(args: IssueArgs) -> anyhow::Result<()> {
    let (ips, dns) = args.names.collect()?;
    let (crt, key) = (CertKey::cert_path(&args.out, "server"), CertKey::key_path(&args.out, "server"));
    refuse_overwrite(&[&crt, &key], args.force, "a running wharf would switch to the new certificate")?;
    let ca = load_ca(&args.ca)?;
    let server = certs::issue_server(&ca, &ips, &dns, args.days)?;
    server.save(&args.out, "server")?;
    let report = inspect::inspect(&server.cert_pem, None)?;
    let names = names_of(&report);
    let (crt, key) = (absolute(&crt), absolute(&key));
    println!("Issued a server certificate for: {}", names.join(", "));
    println!("  {}   certificate chain (server certificate, then the CA)", crt.display());
    println!("  {}   private key (mode 0600)", key.display());
    print_identity(&server.cert_pem)?;
    let example = example_host(&report);
    println!();
    println!("Next steps:");
    println!("  1. Serve it (wharf and registry:2 read the same variables):");
    println!("       REGISTRY_HTTP_TLS_CERTIFICATE={} \\", crt.display());
    println!("       REGISTRY_HTTP_TLS_KEY={} \\", key.display());
    println!("       wharf serve --addr 0.0.0.0:5000");
    println!("     A running wharf serves a replaced certificate from the next connection on: no restart.");
    println!("  2. On each client, trust the CA for every address it uses, e.g.:");
    print_trust_steps(&absolute(&CertKey::cert_path(&args.ca, "ca")), &format!("{example}:5000"));
    println!("  3. Check from a client:");
    println!("       curl --cacert ca.crt https://{example}:5000/v2/");
    Ok(())
}

fn client(args: ClientArgs) -> anyhow::Result<()> {
    let (crt, key) = (args.out.join("client.cert"), args.out.join("client.key"));
    refuse_overwrite(&[&crt, &key], args.force, "")?;
    let ca = load_ca(&args.ca)?;
    let cert = certs::issue_client(&ca, &args.name, args.days)?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    certs::write_atomic(&key, cert.key_pem.as_bytes(), 0o600)?;
    certs::write_atomic(&crt, cert.leaf_pem()?.as_bytes(), 0o644)?;
    let (crt, key) = (absolute(&crt), absolute(&key));
    println!("Issued a client certificate for {:?}:", args.name);
    println!("  {}   client certificate", crt.display());
    println!("  {}   private key (mode 0600)", key.display());
    print_identity(&cert.cert_pem)?;
    println!();
    println!("Next steps:");
    println!("  1. Make the registry require client certificates from this CA:");
    println!(
        "       REGISTRY_HTTP_TLS_CLIENTCAS_0={}",
        absolute(&CertKey::cert_path(&args.ca, "ca")).display()
    );
    println!("  2. On the client, next to ca.crt (Docker and podman read *.cert + *.key pairs there):");
    println!("       sudo cp {} {} /etc/docker/certs.d/HOST:PORT/", crt.display(), key.display());
    Ok(())
}

fn csr(args: CsrArgs) -> anyhow::Result<()> {
    use crate::kube::csr as kcsr;
    let (ips, dns) = args.names.collect()?;
    let (csr_path, key) = (args.out.join("server.csr"), CertKey::key_path(&args.out, "server"));
    let manifest_path = args.out.join("csr.yaml");
    let mut outputs = vec![csr_path.as_path(), key.as_path()];
    if args.kubelet_serving.is_some() {
        outputs.push(&manifest_path);
    }
    refuse_overwrite(&outputs, args.force, "")?;
    let subject = match &args.kubelet_serving {
        Some(node) => {
            // It names the CertificateSigningRequest object too.
            crate::kube::check_subdomain("--kubelet-serving", node)?;
            Some(kcsr::kubelet_serving_subject(node))
        }
        None => None,
    };
    let (csr_pem, key_pem) = certs::csr_with_subject(&ips, &dns, subject.as_ref())?;
    if subject.is_some() {
        // Checked here rather than by a signer that only logs why it refused.
        kcsr::check_kubelet_serving(&csr_pem, &kcsr::USAGES)?;
    }
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    certs::write_atomic(&key, key_pem.as_bytes(), 0o600)?;
    certs::write_atomic(&csr_path, csr_pem.as_bytes(), 0o644)?;
    let (csr_path, key, crt) = (
        absolute(&csr_path),
        absolute(&key),
        absolute(&CertKey::cert_path(&args.out, "server")),
    );
    let mut names: Vec<String> = dns.clone();
    names.extend(ips.iter().map(|ip| ip.to_string()));
    println!("Created a private key and a certificate signing request for: {}", names.join(", "));
    println!("  {}   private key (mode 0600): it never leaves this machine", key.display());
    println!("  {}   signing request: send it to your CA", csr_path.display());
    let out = absolute(&args.out);
    match &args.kubelet_serving {
        Some(node) => {
            let manifest = kcsr::manifest(node, &csr_pem, kcsr::KUBELET_SERVING, &kcsr::USAGES);
            certs::write_atomic(&manifest_path, manifest.as_bytes(), 0o644)?;
            println!(
                "  {}   the CertificateSigningRequest (subject O={}, CN={}{node}; signer {})",
                absolute(&manifest_path).display(),
                kcsr::NODES_GROUP,
                kcsr::NODE_PREFIX,
                kcsr::KUBELET_SERVING
            );
            println!();
            println!("Next steps:");
            println!("  1. Have the cluster sign it (the signer never approves these by itself):");
            println!("       kubectl create -f {}", absolute(&manifest_path).display());
            println!("       kubectl certificate approve {node}");
            println!("  2. Take the certificate back, with the cluster CA after it (the full chain):");
            println!(
                "       kubectl get configmap kube-root-ca.crt -o jsonpath='{{.data.ca\\.crt}}' > {}/cluster-ca.crt",
                out.display()
            );
            println!(
                "       kubectl get csr {node} -o json | wharf cert install-signed --dir {} --ca {}/cluster-ca.crt",
                out.display(),
                out.display()
            );
            println!("       kubectl delete csr {node}");
        }
        None => {
            println!();
            println!("Next steps:");
            println!("  1. Have the CA sign it for server authentication, e.g. with an openssl CA:");
            println!(
                "       openssl x509 -req -in {} -CA ca.crt -CAkey ca.key -copy_extensions copy -days 365 -out signed.crt",
                csr_path.display()
            );
            println!("     (for the Kubernetes cluster CA, run this again with --kubelet-serving NODE-NAME)");
            println!("  2. Install what it returns, with the CA after it (the full chain):");
            println!("       wharf cert install-signed --dir {} --ca ca.crt signed.crt", out.display());
        }
    }
    println!("  3. Serve it:");
    println!(
        "       REGISTRY_HTTP_TLS_CERTIFICATE={} REGISTRY_HTTP_TLS_KEY={} wharf serve",
        crt.display(),
        key.display()
    );
    Ok(())
}

fn install_signed(args: InstallSignedArgs) -> anyhow::Result<()> {
    let input = read_input(&args.input)?;
    let mut pem = crate::kube::csr::certificate_from_status(&input)?;
    let key_path = CertKey::key_path(&args.dir, "server");
    let crt_path = CertKey::cert_path(&args.dir, "server");
    refuse_overwrite(&[&crt_path], args.force, "a running wharf would switch to the new certificate")?;
    let key_pem = std::fs::read_to_string(&key_path).with_context(|| {
        format!(
            "reading {} (the key `wharf cert csr --out {}` made)",
            key_path.display(),
            args.dir.display()
        )
    })?;
    if let Some(ca) = &args.ca {
        let ca_pem = std::fs::read_to_string(ca).with_context(|| format!("reading {}", ca.display()))?;
        if !pem.ends_with('\n') {
            pem.push('\n');
        }
        pem.push_str(ca_pem.trim_end());
        pem.push('\n');
    }
    // Loading the pair checks that the certificate is for this key (not another request's).
    let pair = CertKey { cert_pem: pem, key_pem };
    if !certs::key_matches_cert(&pair.cert_pem, &pair.key_pem)? {
        bail!(
            "the signed certificate is not for {} (it answers another signing request): nothing was installed",
            key_path.display()
        );
    }
    certs::write_atomic(&crt_path, pair.cert_pem.as_bytes(), 0o644)?;
    let crt_path = absolute(&crt_path);
    println!("Installed the signed certificate: {}", crt_path.display());
    print_identity(&pair.cert_pem)?;
    let report = inspect::inspect(&pair.cert_pem, None)?;
    println!("  names: {}", names_of(&report).join(", "));
    let errors: Vec<&inspect::Finding> = report.findings.iter().filter(|f| f.severity == inspect::Severity::Error).collect();
    if !errors.is_empty() {
        print!("{report}");
        bail!("{}: {} problem(s) that clients will reject", crt_path.display(), errors.len());
    }
    if args.ca.is_none() {
        println!("  (no --ca: server.crt holds the certificate alone; clients need the CA installed, e.g. with wharf trust --ca)");
    }
    println!();
    println!("Serve it:");
    println!(
        "  REGISTRY_HTTP_TLS_CERTIFICATE={} REGISTRY_HTTP_TLS_KEY={} wharf serve",
        crt_path.display(),
        absolute(&key_path).display()
    );
    Ok(())
}

fn read_input(path: &Path) -> anyhow::Result<String> {
    if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).context("reading standard input")?;
        Ok(s)
    } else {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

fn inspect_cmd(args: InspectArgs) -> anyhow::Result<()> {
    let pem = read_input(&args.file)?;
    let report = inspect::inspect(&pem, args.host.as_deref()).with_context(|| args.file.display().to_string())?;
    print!("{report}");
    let errors = report.findings.iter().filter(|f| f.severity == inspect::Severity::Error).count();
    if errors > 0 {
        bail!("{}: {errors} problem(s) that clients will reject", args.file.display());
    }
    Ok(())
}

fn load_ca(dir: &Path) -> anyhow::Result<CertKey> {
    CertKey::load(dir, "ca").with_context(|| {
        format!(
            "loading the CA from {} (make one with: wharf cert ca --out {})",
            dir.display(),
            dir.display()
        )
    })
}

fn refuse_overwrite(paths: &[&Path], force: bool, consequence: &str) -> anyhow::Result<()> {
    if force {
        return Ok(());
    }
    if let Some(existing) = paths.iter().find(|p| p.exists()) {
        let note = if consequence.is_empty() {
            String::new()
        } else {
            format!(" ({consequence})")
        };
        bail!("{} already exists; pass --force to replace it{note}", existing.display());
    }
    Ok(())
}

fn print_identity(cert_pem: &str) -> anyhow::Result<()> {
    println!("  SHA-256 fingerprint: {}", certs::fingerprint_sha256(cert_pem)?);
    println!("  valid until: {}", inspect::fmt_time(certs::not_after(cert_pem)?));
    Ok(())
}

fn print_trust_steps(ca_crt: &Path, host_port: &str) {
    println!("       sudo mkdir -p /etc/docker/certs.d/{host_port}");
    println!("       sudo cp {} /etc/docker/certs.d/{host_port}/ca.crt", ca_crt.display());
    println!("     (podman and skopeo read /etc/containers/certs.d/{host_port}/ca.crt; no daemon restart is needed)");
}

/// DNS names then IP addresses of the server certificate.
fn names_of(report: &inspect::Report) -> Vec<String> {
    let leaf = &report.certificates[0];
    leaf.dns_names
        .iter()
        .cloned()
        .chain(leaf.ip_addresses.iter().map(|ip| ip.to_string()))
        .collect()
}

/// The address to show in examples: a non-loopback IP (what remote clients use), else a name.
fn example_host(report: &inspect::Report) -> String {
    let leaf = &report.certificates[0];
    let remote_ip = leaf.ip_addresses.iter().find(|ip| !ip.is_loopback() && !ip.is_unspecified());
    match (remote_ip, leaf.dns_names.iter().find(|n| *n != "localhost" && !n.starts_with('*'))) {
        (Some(IpAddr::V6(v6)), _) => format!("[{v6}]"),
        (Some(ip), _) => ip.to_string(),
        (None, Some(name)) => name.clone(),
        (None, None) => leaf
            .dns_names
            .first()
            .cloned()
            .or_else(|| leaf.ip_addresses.first().map(|ip| ip.to_string()))
            .unwrap_or_default(),
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}
