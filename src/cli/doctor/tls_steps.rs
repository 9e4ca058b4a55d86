//! Steps 4 and 5: what the port speaks (TLS, plain HTTP, something else), the certificate,
//! and whether each client on this machine trusts it.

use super::api::Endpoint;
use super::clients::{self, Root, CONTAINERD_CERTS_D, DAEMON_JSON};
use super::go_x509::Names;
use super::installed;
use super::probe::{self, Handshake, PlainAnswer, TlsClient};
use super::report::{Status, Step};
use super::target::Scheme;
use super::trust::{self, Verdict};
use super::{cert_names, Doctor};
use crate::autosecure::CA_PATH;
use crate::tls::certs::fingerprint_der;
use crate::tls::inspect::{self, Severity};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::AlertDescription;
use std::net::{IpAddr, SocketAddr};

pub enum Protocol {
    Tls,
    Plain,
    /// Nothing further can be learned.
    Stop,
}

impl Doctor {
    /// Step 4.
    pub(super) async fn protocol(&mut self, addr: SocketAddr, client: &TlsClient, ips: &[IpAddr]) -> Protocol {
        match probe::handshake(addr, client, self.timeout).await {
            Handshake::Tls { version, cipher, alpn } => {
                let mut step = Step::ok("protocol", format!("TLS: {version}, {cipher}"));
                if let Some(alpn) = alpn {
                    step = step.detail(format!("ALPN: {alpn}"));
                }
                if client.client_cert_requested() {
                    let offered = if client.client_cert_offered() {
                        "the one in /etc/docker/certs.d was offered"
                    } else {
                        "none is installed for this registry"
                    };
                    step = step.detail(format!("the server asks for a client certificate (mutual TLS); {offered}"));
                }
                self.push(step);
                self.reverse_case(addr).await;
                Protocol::Tls
            }
            Handshake::PlainHttp { first_line } => {
                self.plain_http(ips, &format!("the server answered the TLS handshake with \"{first_line}\""));
                Protocol::Plain
            }
            Handshake::NotTls { preview } => {
                let hp = self.t().host_port();
                self.push(
                    Step::fail("protocol", format!("{hp} speaks neither TLS nor HTTP: it sent \"{preview}\""))
                        .fix("this port belongs to another service: check the registry's port (ss -ltnp on its machine)"),
                );
                Protocol::Stop
            }
            Handshake::Alert { alert, error } => {
                self.push(alert_step(alert, &error, &self.t().registry_name()));
                Protocol::Stop
            }
            failure => self.handshake_failed(addr, ips, failure).await,
        }
    }

    /// The handshake died without an answer: a plain HTTP server that hangs up on a
    /// ClientHello looks like this, so ask it in plain HTTP before concluding.
    async fn handshake_failed(&mut self, addr: SocketAddr, ips: &[IpAddr], failure: Handshake) -> Protocol {
        let why = match failure {
            Handshake::Closed { error } | Handshake::Failed { error } => error,
            Handshake::Timeout => format!("no TLS answer within {}s", self.timeout.as_secs()),
            other => format!("{other:?}"),
        };
        match probe::plain_probe(addr, &self.t().host_port(), self.timeout).await {
            PlainAnswer::Http { status_line, .. } => {
                let seen = format!("the TLS handshake failed ({why}), and a plain HTTP request got \"{status_line}\"");
                self.plain_http(ips, &seen);
                Protocol::Plain
            }
            other => {
                self.push(
                    Step::fail("protocol", format!("TLS handshake with {} failed: {why}", self.t().host_port()))
                        .detail(format!("a plain HTTP request got: {}", describe_plain(&other)))
                        .fix("look at the registry's log for the handshake error; a TCP proxy or load balancer in front of it may cut connections"),
                );
                Protocol::Stop
            }
        }
    }

    /// The registry serves plain HTTP: Go clients print "http: server gave HTTP response to
    /// HTTPS client". Docker still accepts it for 127.0.0.0/8 and insecure-registries.
    fn plain_http(&mut self, ips: &[IpAddr], seen: &str) {
        let t = self.t().clone();
        let name = t.registry_name();
        let daemon = clients::docker_daemon(&self.fs);
        let docker_reason = daemon.insecure_reason(&t, ips);
        let containerd = clients::containerd(&self.fs, &t);
        let containers = clients::containers(&self.fs, &t);
        let message = format!(
            "http: server gave HTTP response to HTTPS client — {} serves plain HTTP, and clients speak HTTPS unless told otherwise",
            t.host_port()
        );
        let status = if docker_reason.is_some() { Status::Warn } else { Status::Fail };
        let mut step = Step::new("protocol", status, message).detail(seen.to_string());
        step = step.detail(match &docker_reason {
            Some(r) => format!("docker: accepts it: {r}"),
            None => format!("docker: refuses it: {name} is not in \"insecure-registries\" ({DAEMON_JSON})"),
        });
        if let Some(p) = &daemon.problem {
            step = step.detail(format!("docker: {p}"));
        }
        step = step.detail(if containerd.plain_http {
            "containerd: configured to use plain HTTP for it".to_string()
        } else {
            format!(
                "containerd (ctr, nerdctl, Kubernetes): refuses it unless {CONTAINERD_CERTS_D}/{name}/hosts.toml has a \
                 [host.\"http://{name}\"] section with capabilities (ctr: --plain-http)"
            )
        });
        step = step.detail(match &containers.insecure {
            Some(r) => format!("podman, skopeo, buildah: accept it: {r}"),
            None => "podman, skopeo, buildah: refuse it unless --tls-verify=false or registries.conf marks it insecure".to_string(),
        });
        let fix = format!(
            "serve HTTPS (recommended: otherwise passwords and images cross the network in clear):\n\
             - wharf serve on a non-loopback address (e.g. --addr 0.0.0.0:{port}) sets up TLS and a login by itself\n\
             - or give it a certificate: wharf cert ca --out CA_DIR; wharf cert issue --ca CA_DIR --out CERT_DIR {names}\n  \
             then set http.tls.certificate / http.tls.key (REGISTRY_HTTP_TLS_CERTIFICATE / REGISTRY_HTTP_TLS_KEY) to \
             CERT_DIR/server.crt and CERT_DIR/server.key\n\
             or let each client use plain HTTP:\n\
             - Docker: add \"{name}\" to \"insecure-registries\" in {DAEMON_JSON} (Docker Desktop: Settings > Docker Engine), \
             then restart dockerd\n\
             - containerd (a [host] section with capabilities: containerd 1.6 ignores a bare server = line): \
             sudo mkdir -p {CONTAINERD_CERTS_D}/{name} && printf 'server = \"http://{name}\"\\n\\n[host.\"http://{name}\"]\\n  \
             capabilities = [\"pull\", \"resolve\", \"push\"]\\n' | sudo tee {CONTAINERD_CERTS_D}/{name}/hosts.toml; Kubernetes (CRI) \
             also needs config_path = \"{CONTAINERD_CERTS_D}\" in /etc/containerd/config.toml and a containerd restart (ctr: --plain-http)\n\
             - podman, skopeo, buildah: --tls-verify=false, or in /etc/containers/registries.conf: \
             [[registry]] location = \"{name}\" insecure = true",
            port = t.port,
            names = cert_names(&t),
        );
        self.push(step.fix(fix));
    }

    /// A client set up for plain HTTP against this TLS port: Go's server answers "client sent
    /// an HTTP request to an HTTPS server", others a TLS alert. Checked when the address was
    /// given as http:// or containerd is configured that way.
    async fn reverse_case(&mut self, addr: SocketAddr) {
        let t = self.t().clone();
        let name = t.registry_name();
        let containerd = clients::containerd(&self.fs, &t);
        let who = if t.scheme == Some(Scheme::Http) {
            format!("http://{}", t.host_port())
        } else if containerd.plain_http {
            format!("containerd (configured with http://{name})")
        } else {
            return;
        };
        let answer = probe::plain_probe(addr, &t.host_port(), self.timeout).await;
        self.push(
            Step::fail(
                "plain-http",
                format!("client sent an HTTP request to an HTTPS server — {who} speaks plain HTTP to a port that serves TLS"),
            )
            .detail(format!("a plain HTTP request got: {}", describe_plain(&answer)))
            .fix(format!(
                "the registry serves HTTPS: use https://{hp} (curl, browsers); Docker and podman use HTTPS by themselves; for \
                 containerd write server = \"https://{name}\" in {CONTAINERD_CERTS_D}/{name}/hosts.toml (with \
                 [host.\"https://{name}\"] and its ca), remove http:// endpoints from /etc/containerd/config.toml, and do not pass \
                 --plain-http to ctr",
                hp = t.host_port()
            )),
        );
    }

    /// Step 5: the certificate itself, then trust per client. Returns whether a client here
    /// verifies the server completely (so that a password may be sent to it).
    pub(super) async fn certificate(&mut self, endpoint: &Endpoint, client: &TlsClient, ips: &[IpAddr]) -> bool {
        let chain = client.chain();
        if chain.is_empty() {
            self.push(Step::fail("certificate", "the server presented no certificate"));
            return false;
        }
        let t = self.t().clone();
        let report = match inspect::inspect(&to_pem(&chain), Some(&t.host_port())) {
            Ok(r) => r,
            Err(e) => {
                self.push(Step::fail("certificate", format!("the server's certificate cannot be read: {e}")));
                return false;
            }
        };
        let leaf = &report.certificates[0];
        let names: Vec<String> = leaf
            .dns_names
            .iter()
            .cloned()
            .chain(leaf.ip_addresses.iter().map(|ip| format!("IP {ip}")))
            .collect();
        self.push(
            Step::ok("certificate", format!("{} certificate(s) presented", chain.len())).details([
                format!("subject: {}", leaf.subject),
                format!("issuer: {}", leaf.issuer),
                format!(
                    "names: {}",
                    if names.is_empty() {
                        "(no subjectAltName)".into()
                    } else {
                        names.join(", ")
                    }
                ),
                format!("valid until: {}", inspect::fmt_time(leaf.not_after)),
                format!("SHA-256: {}", leaf.fingerprint_sha256),
            ]),
        );
        for f in &report.findings {
            let status = if f.severity == Severity::Error {
                Status::Fail
            } else {
                Status::Warn
            };
            self.push(Step::new("certificate", status, f.problem.clone()).fix(f.fix.clone()));
        }
        let published = self.published_ca(endpoint).await;
        let verified = self.trust_steps(&chain, published, ips, report.has_errors());
        verified && !report.has_errors()
    }

    /// The CA a wharf server that made its own publishes at /.well-known/wharf/ca.crt.
    async fn published_ca(&self, endpoint: &Endpoint) -> Option<Vec<CertificateDer<'static>>> {
        let answer = endpoint.get(CA_PATH, None).await.ok().filter(|a| a.status == 200)?;
        let ders = CertificateDer::pem_slice_iter(&answer.body).collect::<Result<Vec<_>, _>>().ok()?;
        (!ders.is_empty()).then_some(ders)
    }

    /// One step per client: Docker, containerd, podman/skopeo/buildah, the system store.
    /// `unusable`: the certificate step failed, so the certificate must be re-issued before a
    /// CA is worth installing (and `wharf trust` refuses to install one for it).
    fn trust_steps(
        &mut self,
        chain: &[CertificateDer<'static>],
        published: Option<Vec<CertificateDer<'static>>>,
        ips: &[IpAddr],
        unusable: bool,
    ) -> bool {
        let t = self.t().clone();
        if let Err(e) = probe::server_name(&t) {
            self.push(Step::fail("trust", e));
            return false;
        }
        let host = t.ip.map_or_else(|| t.host.clone(), |ip| ip.to_string());
        let advice = if unusable {
            CaAdvice::reissue_first()
        } else {
            ca_advice(chain, published.as_deref(), &t.host_port())
        };
        let views = runtime_views(&self.fs, &t, ips);
        let mut verified = false;
        let mut advised = false;
        for v in views {
            // curl and other OpenSSL programs read the system store, and still match a CN.
            let names = if v.id == "trust.system" {
                Names::CommonNameFallback
            } else {
                Names::Go
            };
            let check = trust::check_names(chain, &v.roots, &host, names);
            verified |= v.present && check.fully_verified();
            let step = judge(&v, &check, &advice, advised);
            // `wharf trust` installs for every client at once: explain it in full once.
            advised |= step.fix.as_deref().is_some_and(|f| f.starts_with("wharf trust"));
            self.push(step);
        }
        verified
    }
}

/// How to obtain and install the CA, for the "unknown authority" fix.
struct CaAdvice {
    /// A `wharf trust` command line.
    command: String,
    /// Where the fingerprint comes from.
    origin: String,
}

impl CaAdvice {
    /// No CA to install yet: clients refuse the certificate itself, and `wharf trust` refuses to
    /// install a CA for a server certificate clients reject (a CN-only, expired or
    /// clientAuth-only one).
    fn reissue_first() -> CaAdvice {
        CaAdvice {
            command: String::new(),
            origin: String::new(),
        }
    }

    fn is_reissue_first(&self) -> bool {
        self.command.is_empty()
    }
}

/// `wharf trust` fetches the CA itself from a wharf server that publishes it; otherwise it
/// needs the CA file (`--ca`), whose fingerprint must then match the chain's top certificate.
fn ca_advice(chain: &[CertificateDer<'static>], published: Option<&[CertificateDer<'static>]>, hp: &str) -> CaAdvice {
    if let Some(published) = published {
        let roots: Vec<Root> = published
            .iter()
            .map(|d| Root {
                source: CA_PATH.into(),
                der: d.clone(),
            })
            .collect();
        if trust::anchor(chain, &roots).is_some() {
            return CaAdvice {
                command: format!("wharf trust {hp} --fingerprint {}", fingerprint_der(&published[0])),
                origin: format!("the CA the server publishes at https://{hp}{CA_PATH}"),
            };
        }
    }
    let top = trust::top_of_chain(chain).expect("chain is not empty");
    let ca_file = format!(
        "(ca.crt: the registry's CA certificate file, e.g. CA_DIR/ca.crt from wharf cert ca; this server does not publish it at {CA_PATH})"
    );
    if trust::is_self_signed(top) {
        return CaAdvice {
            command: format!("wharf trust {hp} --ca ca.crt --fingerprint {}\n{ca_file}", fingerprint_der(top)),
            origin: "the root certificate the server sends".to_string(),
        };
    }
    // The server does not send its root: the fingerprint to give is that of the user's CA
    // file, which doctor has never seen (the last certificate sent is not it).
    let issuer = inspect::cert_info_der(top).map(|c| c.issuer).unwrap_or_default();
    CaAdvice {
        command: format!(
            "wharf trust {hp} --ca ca.crt --fingerprint CA_FINGERPRINT\n{ca_file}\n(CA_FINGERPRINT: the SHA-256 fingerprint of \
             your ca.crt, which the server does not send — wharf cert inspect ca.crt or openssl x509 -in ca.crt -noout \
             -fingerprint -sha256 shows it; ca.crt must be the certificate of {issuer}, the issuer of the server's certificate)"
        ),
        origin: "your ca.crt".to_string(),
    }
}

/// What one client reads to decide whether to trust the registry.
struct RuntimeView {
    id: &'static str,
    label: &'static str,
    /// Configured on this machine (its /etc directory exists); Docker counts as present when
    /// no client is, as the reference.
    present: bool,
    roots: Vec<Root>,
    /// Where the CA is read from, for the message when it is missing.
    looked_in: Vec<String>,
    /// Verification is off, and why.
    insecure: Option<Insecure>,
    /// Configuration errors that make the client refuse the registry outright.
    problems: Vec<String>,
    notes: Vec<String>,
    /// Why Kubernetes (the CRI) does not read the files this client's verdict rests on.
    cri_ignores: Option<String>,
    /// The client speaks plain HTTP to this TLS registry, and why.
    plain_http: Option<String>,
    /// Installing the CA by hand.
    install: String,
}

struct Insecure {
    reason: String,
    /// Loopback: no one can sit in the middle, so this is fine.
    harmless: bool,
}

fn runtime_views(fs: &clients::ClientFs, t: &super::target::Target, ips: &[IpAddr]) -> Vec<RuntimeView> {
    let name = t.registry_name();
    let system = clients::system_roots(fs);
    let system_roots: Vec<Root> = system.as_ref().map(|(_, r)| r.clone()).unwrap_or_default();
    let system_label = system.as_ref().map(|(p, _)| p.clone());
    let with_system = |extra: Vec<Root>| system_roots.iter().cloned().chain(extra).collect::<Vec<_>>();
    let any_present = ["/etc/docker", "/etc/containerd", "/etc/containers"].iter().any(|d| fs.exists(d));

    let docker_dir = format!("/etc/docker/certs.d/{name}");
    let docker_certs = clients::read_cert_dir(fs, &docker_dir);
    let daemon = clients::docker_daemon(fs);
    let mut docker_problems: Vec<String> = daemon.problem.clone().into_iter().collect();
    docker_problems.extend(docker_certs.as_ref().map(|c| c.problems.clone()).unwrap_or_default());
    let docker = RuntimeView {
        id: "trust.docker",
        label: "Docker",
        present: fs.exists("/etc/docker") || !any_present,
        roots: with_system(docker_certs.map(|c| c.roots).unwrap_or_default()),
        looked_in: vec![format!("{docker_dir}/*.crt")],
        insecure: daemon.insecure_reason(t, ips).map(|reason| Insecure {
            reason,
            harmless: ips.iter().all(IpAddr::is_loopback),
        }),
        problems: docker_problems,
        notes: clients::near_misses(fs, "/etc/docker/certs.d", t),
        cri_ignores: None,
        plain_http: None,
        install: docker_install(&name),
    };

    let cd = clients::containerd(fs, t);
    let containerd_dir = format!("{CONTAINERD_CERTS_D}/{name}");
    let containerd = RuntimeView {
        id: "trust.containerd",
        label: "containerd (ctr, nerdctl, Kubernetes)",
        present: installed::containerd(fs),
        roots: with_system(cd.roots),
        looked_in: vec![cd
            .dir
            .clone()
            .map_or(format!("{containerd_dir}/ (missing)"), |d| format!("{d}/hosts.toml or {d}/*.crt"))],
        insecure: cd.skip_verify.then(|| Insecure {
            reason: "hosts.toml sets skip_verify = true".into(),
            harmless: false,
        }),
        problems: cd.problems,
        notes: cd.notes,
        cri_ignores: cd.cri_ignores_certs_d,
        plain_http: cd.loopback_http.then(|| {
            format!(
                "speaks plain HTTP to {name}, a loopback registry without {containerd_dir}/hosts.toml, and this port serves \
                 TLS: failed to do request: Head \"http://{name}/v2/...\": net/http: HTTP/1.x transport connection broken: \
                 malformed HTTP response"
            )
        }),
        install: format!(
            "sudo mkdir -p {containerd_dir} && sudo cp ca.crt {containerd_dir}/ca.crt (when {containerd_dir}/hosts.toml exists, \
             also add ca = \"{containerd_dir}/ca.crt\" to it)"
        ),
    };

    let ct = clients::containers(fs, t);
    let containers = RuntimeView {
        id: "trust.containers",
        label: "podman, skopeo, buildah",
        present: installed::containers(fs),
        looked_in: vec![ct.cert_dir.as_ref().map_or(
            format!("/etc/containers/certs.d/{name}/*.crt and /etc/docker/certs.d/{name}/*.crt (both missing)"),
            |c| format!("{}/*.crt", c.dir),
        )],
        problems: ct.cert_dir.as_ref().map(|c| c.problems.clone()).unwrap_or_default(),
        roots: with_system(ct.cert_dir.map(|c| c.roots).unwrap_or_default()),
        insecure: ct.insecure.map(|reason| Insecure { reason, harmless: false }),
        notes: Vec::new(),
        cri_ignores: None,
        plain_http: None,
        install: format!("sudo mkdir -p /etc/containers/certs.d/{name} && sudo cp ca.crt /etc/containers/certs.d/{name}/ca.crt"),
    };

    let store = RuntimeView {
        id: "trust.system",
        label: "the system trust store (curl, and every client above)",
        present: system_label.is_some(),
        roots: system_roots.clone(),
        looked_in: vec![system_label
            .clone()
            .unwrap_or_else(|| "/etc/ssl/certs/ca-certificates.crt (missing)".into())],
        insecure: None,
        problems: Vec::new(),
        notes: Vec::new(),
        cri_ignores: None,
        plain_http: None,
        install: system_install(system_label.as_deref(), &t.host),
    };
    vec![docker, containerd, containers, store]
}

fn docker_install(name: &str) -> String {
    let mut s = format!("sudo mkdir -p /etc/docker/certs.d/{name} && sudo cp ca.crt /etc/docker/certs.d/{name}/ca.crt (no restart needed)");
    if cfg!(target_os = "macos") {
        s.push_str(
            "; Docker Desktop for Mac: security add-trusted-cert -d -r trustRoot -k ~/Library/Keychains/login.keychain ca.crt, \
             then restart Docker Desktop",
        );
    }
    s
}

fn system_install(bundle: Option<&str>, host: &str) -> String {
    let file = host.replace(':', "_");
    if bundle == Some("/etc/pki/tls/certs/ca-bundle.crt") {
        format!("sudo cp ca.crt /etc/pki/ca-trust/source/anchors/{file}.crt && sudo update-ca-trust, then restart dockerd and containerd")
    } else {
        format!("sudo cp ca.crt /usr/local/share/ca-certificates/{file}.crt && sudo update-ca-certificates, then restart dockerd and containerd")
    }
}

/// The step for one client.
fn judge(v: &RuntimeView, check: &trust::Check, advice: &CaAdvice, advised: bool) -> Step {
    if !v.present {
        let why = match v.id {
            "trust.containerd" => installed::CONTAINERD_MISSING,
            "trust.containers" => installed::CONTAINERS_MISSING,
            "trust.system" => "no CA bundle found (/etc/ssl/certs/ca-certificates.crt, /etc/pki/tls/certs/ca-bundle.crt)",
            _ => "not set up on this machine",
        };
        return Step::skip(v.id, format!("{}: {why}", v.label));
    }
    if !v.problems.is_empty() {
        return Step::fail(v.id, format!("{}: {}", v.label, v.problems[0]))
            .details(v.problems[1..].iter().cloned())
            .details(v.notes.iter().cloned())
            .fix(format!("correct the files named above; to install a CA certificate: {}", v.install));
    }
    if let Some(why) = &v.plain_http {
        // A hosts.toml with an https:// server and the CA (what wharf trust writes) fixes it.
        let fix = if advice.is_reissue_first() {
            REISSUE_FIRST.to_string()
        } else if advised {
            "the wharf trust command above writes the hosts.toml (https:// and the CA) for this client too".to_string()
        } else {
            advice_line(advice)
        };
        return Step::fail(v.id, format!("{}: {why}", v.label)).fix(fix);
    }
    if let Some(ins) = &v.insecure {
        let status = if ins.harmless { Status::Ok } else { Status::Warn };
        let what = match &check.verdict {
            Verdict::Trusted { by } => format!("it would verify with the CA from {by}"),
            Verdict::UnknownAuthority => "it would not verify: x509: certificate signed by unknown authority".into(),
        };
        let step = Step::new(
            v.id,
            status,
            format!("{}: does not verify the certificate ({}); {what}", v.label, ins.reason),
        );
        return if ins.harmless {
            step
        } else {
            step.fix(format!(
                "any certificate is accepted, a man in the middle's too: install the CA ({}) and remove the insecure setting",
                v.install
            ))
        };
    }
    match &check.verdict {
        Verdict::Trusted { by } if by.starts_with(CONTAINERD_CERTS_D) && v.cri_ignores.is_some() => {
            // ctr --hosts-dir and nerdctl read certs.d; the CRI plugin kubelet pulls through
            // does not, and falls back to the system store, which lacks this CA.
            let why = v.cri_ignores.as_deref().unwrap_or_default();
            Step::new(
                v.id,
                Status::Warn,
                format!(
                    "{}: ctr --hosts-dir trusts it (CA from {by}), but Kubernetes (CRI) refuses it: x509: certificate signed by \
                     unknown authority, because {why}",
                    v.label
                ),
            )
            .details(v.notes.iter().cloned())
            .fix(format!(
                "sudo wharf trust {} --ca {by}  (sets config_path = \"{CONTAINERD_CERTS_D}\" and restarts containerd)",
                by.trim_start_matches(CONTAINERD_CERTS_D)
                    .trim_start_matches('/')
                    .split('/')
                    .next()
                    .unwrap_or_default()
            ))
        }
        // Anchored, yet the client refuses the certificate itself (name, dates, key usage):
        // what it prints is the refusal, not "trusted".
        Verdict::Trusted { by } if check.refusal.is_some() => {
            let e = check.refusal.as_deref().unwrap_or_default();
            Step::fail(v.id, format!("{}: {e}", v.label))
                .detail(format!(
                    "the chain is trusted (CA from {by}), but the certificate itself is refused"
                ))
                .details(v.notes.iter().cloned())
                .fix("re-issue the server certificate, as the failed certificate step above says")
        }
        Verdict::Trusted { by } => Step::ok(v.id, format!("{}: trusted (CA from {by})", v.label)).details(v.notes.iter().cloned()),
        Verdict::UnknownAuthority => {
            let status = if v.id == "trust.system" { Status::Warn } else { Status::Fail };
            // Go checks the server certificate's dates and name before the chain, and prints
            // that error first; OpenSSL (curl, the system store's user) the chain first.
            let error = match &check.refusal {
                Some(e) if v.id != "trust.system" => e.clone(),
                _ => "x509: certificate signed by unknown authority".to_string(),
            };
            if advice.is_reissue_first() {
                return Step::new(v.id, status, format!("{}: {error}", v.label))
                    .details(v.looked_in.iter().map(|l| format!("looked for the CA in {l}")))
                    .fix(REISSUE_FIRST);
            }
            let hp_line = if advised {
                "the wharf trust command above installs the CA for this client too".to_string()
            } else {
                advice_line(advice)
            };
            Step::new(v.id, status, format!("{}: x509: certificate signed by unknown authority", v.label))
                .details(v.looked_in.iter().map(|l| format!("looked for the CA in {l}")))
                .details(v.notes.iter().cloned())
                .fix(format!("{hp_line}\nor by hand, with the CA certificate file: {}", v.install))
        }
    }
}

/// The fix for an unknown authority when the certificate itself is one clients refuse.
const REISSUE_FIRST: &str = "re-issue the server certificate first, as the failed certificate step above says: clients refuse \
     this one even with its CA installed, and wharf trust refuses to install a CA for it; then run wharf doctor again for the \
     command that installs the CA";

fn advice_line(a: &CaAdvice) -> String {
    format!(
        "{command}\n(the fingerprint is that of {origin}; compare it with the CA fingerprint the \
         registry's operator has — wharf serve prints it at set-up, wharf cert inspect CA_DIR/ca.crt shows it — a different \
         value means a different certificate than expected)",
        command = a.command,
        origin = a.origin
    )
}

fn alert_step(alert: AlertDescription, error: &str, name: &str) -> Step {
    let step = Step::fail("protocol", format!("TLS handshake failed: {error}"));
    match alert {
        AlertDescription::CertificateRequired | AlertDescription::BadCertificate | AlertDescription::UnknownCA => {
            step.fix(client_cert_fix(name))
        }
        AlertDescription::ProtocolVersion | AlertDescription::HandshakeFailure | AlertDescription::InsufficientSecurity => step.fix(
            "no TLS version or cipher suite in common: clients need TLS 1.2 or 1.3 with modern ciphers; check http.tls.minimumtls \
             and the TLS settings of any proxy in front of the registry",
        ),
        _ => step.fix("look at the registry's log for the reason it refused the handshake"),
    }
}

/// Mutual TLS: where Docker, containerd and podman look for a client certificate.
pub fn client_cert_fix(name: &str) -> String {
    format!(
        "the registry requires a client certificate (http.tls.clientcas): issue one with the CA it trusts and install it where \
         clients look for it:\nwharf cert client --ca CA_DIR --out /etc/docker/certs.d/{name} --name CLIENT_NAME \
         (writes client.cert and client.key; podman reads the same directory, containerd needs client = \
         [\"/etc/docker/certs.d/{name}/client.cert\", \"/etc/docker/certs.d/{name}/client.key\"] in its hosts.toml)"
    )
}

fn describe_plain(a: &PlainAnswer) -> String {
    match a {
        PlainAnswer::Http { status_line, text } if text.contains("HTTP request to an HTTPS server") => {
            format!("\"{status_line}\" saying \"Client sent an HTTP request to an HTTPS server\"")
        }
        PlainAnswer::Http { status_line, .. } => format!("\"{status_line}\""),
        PlainAnswer::TlsAlert => "a TLS alert record (\\x15\\x03...) instead of an HTTP response".into(),
        PlainAnswer::Closed => "the connection closed without an answer".into(),
        PlainAnswer::Other { preview } => format!("non-HTTP bytes \"{preview}\""),
        PlainAnswer::Timeout => "no answer".into(),
        PlainAnswer::Error(e) => e.clone(),
    }
}

fn to_pem(chain: &[CertificateDer<'static>]) -> String {
    use base64::Engine;
    let mut out = String::new();
    for der in chain {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(line).unwrap_or_default());
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::certs;

    fn ders(pem: &str) -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_slice_iter(pem.as_bytes()).collect::<Result<_, _>>().unwrap()
    }

    #[test]
    fn trust_advice_uses_the_published_ca_only_when_it_signed_the_chain() {
        let ca = certs::new_ca("A", 10).unwrap();
        let server = certs::issue_server(&ca, &["10.0.0.5".parse().unwrap()], &[], 10).unwrap();
        let chain = ders(&server.cert_pem);
        let fp = certs::fingerprint_sha256(&ca.cert_pem).unwrap();

        let a = ca_advice(&chain, Some(&ders(&ca.cert_pem)), "10.0.0.5:5000");
        assert_eq!(a.command, format!("wharf trust 10.0.0.5:5000 --fingerprint {fp}"));
        assert!(a.origin.contains(CA_PATH));

        // A published CA that did not sign the chain is ignored; the chain's root is used.
        let other = certs::new_ca("B", 10).unwrap();
        let a = ca_advice(&chain, Some(&ders(&other.cert_pem)), "10.0.0.5:5000");
        assert!(
            a.command
                .starts_with(&format!("wharf trust 10.0.0.5:5000 --ca ca.crt --fingerprint {fp}")),
            "{}",
            a.command
        );
        assert!(a.origin.contains("root certificate"));

        // Only the server certificate sent: never its fingerprint, which `wharf trust --ca`
        // would refuse as a mismatch; the user's CA file's instead.
        let a = ca_advice(&chain[..1], None, "10.0.0.5:5000");
        assert!(!a.command.contains(&fingerprint_der(&chain[0])), "{}", a.command);
        assert!(a
            .command
            .starts_with("wharf trust 10.0.0.5:5000 --ca ca.crt --fingerprint CA_FINGERPRINT\n"));
        assert!(a.command.contains("CN=A"), "{}", a.command);
    }

    #[test]
    fn pem_round_trip() {
        let ca = certs::new_ca("A", 10).unwrap();
        let chain = ders(&ca.cert_pem);
        assert_eq!(ders(&to_pem(&chain)), chain);
    }
}
