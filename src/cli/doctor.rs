//! `wharf doctor HOST[:PORT]`: walks the path a container client takes to a registry — name,
//! TCP, TLS or plain HTTP, certificate, trust per client (Docker, containerd, podman/skopeo,
//! the system store), the /v2/ API, the login — and prints, for each failure, the error text
//! the clients show and the command that fixes it. With `--debug-addr`, also the server's own
//! view of its storage, from `/debug/health`.

mod api;
mod clients;
mod go_verifier;
mod go_x509;
mod http_steps;
mod installed;
mod net;
mod probe;
mod report;
mod storage;
mod target;
mod tls_steps;
mod trust;

use anyhow::{bail, Context};
use report::{Reporter, Step};
use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use target::Target;

#[derive(clap::Args, Debug)]
pub struct DoctorArgs {
    /// The registry as clients name it: HOST[:PORT] (port 5000 when omitted), [IPv6]:PORT,
    /// an image reference (HOST:PORT/name:tag), or an https:// or http:// URL.
    #[arg(value_name = "REGISTRY")]
    pub registry: String,
    /// Check this user's login (the password is read from standard input with --password-stdin).
    /// Without it, the credentials `docker login` stored in ~/.docker/config.json are checked.
    #[arg(short, long, value_name = "USER", requires = "password_stdin")]
    pub user: Option<String>,
    /// Read the password for --user from standard input (one line).
    #[arg(long, requires = "user")]
    pub password_stdin: bool,
    /// Print the result as JSON: {"registry", "ok", "failed", "warnings", "steps": [{"step",
    /// "status", "message", "details", "fix"}]}.
    #[arg(long)]
    pub json: bool,
    /// Read client-side files (/etc/docker/certs.d, daemon.json, ~/.docker/config.json, ...)
    /// below this directory instead of /.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Time limit for each network step, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub timeout: u64,
    /// The server's debug server (its http.debug.addr, e.g. 127.0.0.1:5001): report whether the
    /// server reaches its storage, from its /debug/health.
    #[arg(long, value_name = "HOST:PORT")]
    pub debug_addr: Option<String>,
}

/// Exits with an error (status 1) when any step failed; warnings alone do not fail.
pub fn run(args: DoctorArgs) -> anyhow::Result<()> {
    let password = if args.password_stdin { Some(read_password()?) } else { None };
    let credentials = args.user.clone().zip(password);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let mut doctor = Doctor {
        target: None,
        fs: clients::ClientFs::new(args.root.clone()),
        timeout: Duration::from_secs(args.timeout),
        report: Reporter::new(args.registry.trim(), args.json),
        credentials,
    };
    runtime.block_on(doctor.diagnose(&args.registry));
    if let Some(debug) = &args.debug_addr {
        runtime.block_on(doctor.storage(debug));
    }
    let failed = doctor.report.finish();
    if failed > 0 {
        bail!("{failed} check(s) failed for {}", args.registry.trim());
    }
    Ok(())
}

fn read_password() -> anyhow::Result<String> {
    let mut input = String::new();
    std::io::stdin()
        .take(64 * 1024)
        .read_to_string(&mut input)
        .context("reading the password from standard input")?;
    let password = input.lines().next().unwrap_or_default().trim_end_matches('\r').to_string();
    if password.is_empty() {
        bail!("--password-stdin: standard input holds no password");
    }
    Ok(password)
}

/// Everything the steps share.
pub(crate) struct Doctor {
    target: Option<Target>,
    fs: clients::ClientFs,
    timeout: Duration,
    report: Reporter,
    /// From --user / --password-stdin.
    credentials: Option<(String, String)>,
}

impl Doctor {
    fn t(&self) -> &Target {
        self.target.as_ref().expect("target is parsed first")
    }

    fn push(&mut self, step: Step) {
        self.report.push(step);
    }

    async fn diagnose(&mut self, input: &str) {
        let Some(target) = self.address(input) else { return };
        self.target = Some(target);
        if let Some(outcome) = crate::mdns::diagnose(&self.t().host) {
            self.push(outcome.map_or_else(|e| Step::fail("mdns", e), |m| Step::ok("mdns", m)));
        }
        let (step, addrs) = net::resolve(self.t(), self.timeout).await;
        self.push(step);
        if addrs.is_empty() {
            return;
        }
        let ips: Vec<IpAddr> = addrs.iter().map(SocketAddr::ip).collect();
        let (step, addr) = net::connect(self.t(), &addrs, self.timeout).await;
        self.push(step);
        let Some(addr) = addr else { return };
        let identity = self.client_identity();
        let client = match probe::TlsClient::recording(self.t(), identity) {
            Ok(c) => Arc::new(c),
            Err(e) => {
                self.push(Step::fail("protocol", e));
                return;
            }
        };
        let endpoint = match self.protocol(addr, &client, &ips).await {
            tls_steps::Protocol::Tls => api::Endpoint {
                addr,
                target: self.t().clone(),
                tls: Some(client.clone()),
                timeout: self.timeout,
            },
            tls_steps::Protocol::Plain => api::Endpoint {
                addr,
                target: self.t().clone(),
                tls: None,
                timeout: self.timeout,
            },
            tls_steps::Protocol::Stop => return,
        };
        // Passwords go only where a client would send them safely: this machine, or a
        // server whose certificate a client here verifies.
        let secure = match endpoint.tls {
            Some(_) => self.certificate(&endpoint, &client, &ips).await || ips.iter().all(IpAddr::is_loopback),
            None => ips.iter().all(IpAddr::is_loopback),
        };
        let api = self.api(&endpoint, &client).await;
        self.credentials_step(&endpoint, &api, secure).await;
    }

    /// Step 1: the address, or a failed step when it cannot be parsed.
    fn address(&mut self, input: &str) -> Option<Target> {
        match Target::parse(input) {
            Ok(t) => {
                let mut step = Step::ok(
                    "address",
                    format!("registry {} (host {}, port {})", t.registry_name(), t.host, t.port),
                );
                if !t.port_given && t.scheme.is_none() {
                    step = step.detail(format!(
                        "no port given: checking port {}, as Docker, containerd and podman read an image name {}/IMAGE; \
                         a registry on port 5000 (registry:2's) is {}:5000 in image names and here",
                        t.port, t.host, t.host
                    ));
                }
                self.push(step);
                Some(t)
            }
            Err(e) => {
                self.push(Step::fail("address", e).fix("give the registry as HOST[:PORT], e.g. 192.168.1.10:5000 or registry.lan:5000"));
                None
            }
        }
    }

    /// The client certificate Docker would present, from certs.d/HOST:PORT/*.cert + *.key.
    fn client_identity(&mut self) -> Option<Arc<rustls::sign::CertifiedKey>> {
        let dir = format!("/etc/docker/certs.d/{}", self.t().registry_name());
        let (cert, key) = clients::read_cert_dir(&self.fs, &dir)?.client_pair?;
        match crate::tls::server::load_cert_key(&self.fs.path(&cert), &self.fs.path(&key)) {
            Ok(k) => Some(Arc::new(k)),
            Err(e) => {
                self.push(Step::warn("client-certificate", format!("{cert} cannot be used: {e}")));
                None
            }
        }
    }
}

/// `--ip X` or `--dns X` for `wharf cert issue`, as the target requires.
fn cert_names(t: &Target) -> String {
    match t.ip {
        Some(ip) => format!("--ip {ip}"),
        None => format!("--dns {}", t.host),
    }
}
