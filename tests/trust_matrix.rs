//! Issue 12's matrix: every seed's certificate recipe × every installed real client, against
//! `wharf serve` (with an htpasswd login) on a test host's non-loopback address.
//!
//! Recipes, made with the seeds' own `openssl` commands: 000 IP SAN self-signed, 001 the
//! openssl.cnf `alt_names` edit, 002 DNS SAN, 003 CN only, 004 an EC certificate signed by a CA
//! of the user's own with the seed's exact extensions, plus a clientAuth-only EKU and an
//! expired one (both from such a CA; the expired one by `openssl ca -startdate/-enddate`);
//! then seed 003's certificate as the seed has it, on 127.0.0.1 (Docker does not verify
//! loopback registries; containerd speaks plain HTTP to them without a hosts.toml), and 003,
//! clientAuth-only and expired with the CA already copied by hand where each client reads it
//! (Go refuses all three; curl, with OpenSSL's rules, accepts the CN-only one).
//! Clients: Docker, containerd through the CRI (kubelet's PullImage with the pull secret's
//! credentials), ctr (`--hosts-dir`), podman, skopeo, curl.
//!
//! The client machine is a fake root directory (etc/docker, etc/containerd with Debian's
//! config.toml, etc/containers, etc/ssl/certs, usr/local/share/ca-certificates, etc/hosts)
//! that every client, daemon and `wharf doctor` process sees at the real paths, through bind
//! mounts in a private mount namespace (common::cri::MountView): the host's files stay
//! untouched, and doctor reads the same files with `--root`. One dockerd and one containerd
//! serve every recipe. Registry names that are DNS names (002's `image-registry`, 004's
//! `dkr-registry.kloud.lan`) resolve through the view's /etc/hosts.
//!
//! For each recipe, rounds of: run each client for real (pull an image pushed before) and
//! record accept or refuse; run `wharf doctor` for that registry and read its verdict for that
//! client; when a client refused, follow doctor's printed fix as printed (the `wharf trust`
//! line, then what it says to run; or the `wharf cert issue` line, then serving the new files
//! the way it says). The placeholders are filled as the printed text says: `ca.crt` is the
//! user's CA file, CA_FINGERPRINT its openssl fingerprint, CA_DIR their CA directory (or one
//! `wharf cert ca` makes, when they have none), CERT_DIR a new directory; `--root` is added.
//! Every verdict must equal the client's outcome — both accept, or both refuse for the same
//! reason (unknown authority, CN only, expired, key usage, plain HTTP to TLS) — and every
//! client must succeed at the end. The matrix is printed to stderr (see it with --nocapture).

mod common;

use common::cri::{grpc_tools_present, Containerd, MountView, DEBIAN_CONFIG};
use common::dockerd::{Dockerd, DOCKER};
use common::images::{push_one_layer_image, run, run_unchecked, run_with_input_unchecked, wait_until};
use common::netns::TestHost;
use common::{require_tool, wharf_bin, write_htpasswd, Wharf};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const USER: &str = "matrix";
const PASSWORD: &str = "matrix-pass-12";
const REPO: &str = "team/app";
/// Rounds of client runs per recipe: before any fix, and after each fix followed.
const ROUNDS: usize = 5;

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Client {
    Docker,
    Cri,
    Ctr,
    Podman,
    Skopeo,
    Curl,
}

const CLIENTS: [Client; 6] = [
    Client::Docker,
    Client::Cri,
    Client::Ctr,
    Client::Podman,
    Client::Skopeo,
    Client::Curl,
];

impl Client {
    fn label(self) -> &'static str {
        match self {
            Client::Docker => "docker",
            Client::Cri => "containerd CRI",
            Client::Ctr => "ctr",
            Client::Podman => "podman",
            Client::Skopeo => "skopeo",
            Client::Curl => "curl",
        }
    }

    /// Doctor's step for this client.
    fn step(self) -> &'static str {
        match self {
            Client::Docker => "trust.docker",
            Client::Cri | Client::Ctr => "trust.containerd",
            Client::Podman | Client::Skopeo => "trust.containers",
            Client::Curl => "trust.system",
        }
    }

    fn tool(self) -> &'static str {
        match self {
            Client::Docker => "dockerd",
            Client::Cri => "containerd",
            Client::Ctr => "ctr",
            Client::Podman => "podman",
            Client::Skopeo => "skopeo",
            Client::Curl => "curl",
        }
    }
}

/// What a client did, or what doctor said it would do.
#[derive(Clone, Debug)]
struct Verdict {
    accepts: bool,
    why: String,
}

impl Verdict {
    fn short(&self) -> String {
        if self.accepts {
            "accept".into()
        } else {
            format!("refuse ({})", reason(&self.why))
        }
    }
}

/// Doctor agrees with the client: both accept, or both refuse for the same reason.
fn agree(client: &Verdict, doctor: &Verdict) -> bool {
    client.accepts == doctor.accepts && (client.accepts || reason(&client.why) == reason(&doctor.why))
}

/// The reason in a few words, from a client's or doctor's text.
fn reason(t: &str) -> &'static str {
    let t = t.to_ascii_lowercase();
    if t.contains("unknown authority") || t.contains("unable to get local issuer") || t.contains("self-signed certificate") {
        "unknown authority"
    } else if t.contains("legacy common name") {
        "CN only"
    } else if t.contains("expired") {
        "expired"
    } else if t.contains("key usage") || t.contains("purpose") {
        "key usage"
    } else if t.contains("not valid for") || t.contains("does not match") || t.contains("no alternative certificate subject name") {
        "name mismatch"
    } else if t.contains("malformed http response") {
        "plain HTTP to TLS"
    } else if t.contains("timed out") || t.contains("timeout") {
        "timeout"
    } else {
        "other"
    }
}

/// The client machine: a fake root that the daemons, the clients and doctor see as `/`.
/// The daemons come first: they stop (on drop, in field order) before the root they see goes.
struct Machine {
    dockerd: Option<Dockerd>,
    containerd: Option<Containerd>,
    view: MountView,
    podman_store: tempfile::TempDir,
    clients: Vec<Client>,
    root: tempfile::TempDir,
}

impl Machine {
    fn new(clients: Vec<Client>) -> Machine {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        for d in ["etc/docker", "etc/containerd", "etc/ssl", "usr/local/share/ca-certificates"] {
            std::fs::create_dir_all(r.join(d)).unwrap();
        }
        std::fs::write(r.join("etc/containerd/config.toml"), DEBIAN_CONFIG).unwrap();
        // The host's podman configuration (policy.json, registries.conf) and CA bundle, so the
        // clients work as they do here; certs.d directories start empty.
        for dir in ["etc/containers", "etc/ssl/certs"] {
            let host_dir = Path::new("/").join(dir);
            if host_dir.is_dir() {
                run(Command::new("cp").arg("-a").arg(&host_dir).arg(r.join(dir)));
            } else {
                std::fs::create_dir_all(r.join(dir)).unwrap();
            }
        }
        std::fs::copy("/etc/hosts", r.join("etc/hosts")).unwrap();
        // A bind mount needs its target: a directory this host lacks is one no client here reads.
        let shown = [
            "etc/docker",
            "etc/containerd",
            "etc/containers",
            "etc/ssl/certs",
            "usr/local/share/ca-certificates",
            "etc/hosts",
        ];
        let view = shown
            .iter()
            .filter(|p| Path::new("/").join(p).exists())
            .fold(MountView::new(), |v, p| v.bind(r.join(p), Path::new("/").join(p)));
        let mut m = Machine {
            dockerd: None,
            containerd: None,
            view,
            podman_store: tempfile::tempdir().unwrap(),
            clients,
            root,
        };
        if m.clients.contains(&Client::Docker) {
            let prefix = m.view.prefix();
            let prefix: Vec<&str> = prefix.iter().map(String::as_str).collect();
            m.dockerd = Dockerd::start_wrapped(&prefix);
            if m.dockerd.is_none() {
                m.clients.retain(|c| *c != Client::Docker);
            }
        }
        if m.clients.iter().any(|c| matches!(c, Client::Cri | Client::Ctr)) {
            m.containerd = Some(Containerd::start_in(m.view.clone()));
        }
        m
    }

    fn root(&self) -> &Path {
        self.root.path()
    }

    /// Names `name` as `ip` in the machine's /etc/hosts (written in place: it is bind-mounted).
    fn add_host(&self, ip: &str, name: &str) {
        let path = self.root().join("etc/hosts");
        let mut hosts = std::fs::read_to_string(&path).unwrap();
        hosts.push_str(&format!("{ip} {name}\n"));
        std::fs::write(path, hosts).unwrap();
    }

    /// The user's CA file copied where each client reads CAs for `registry`, by hand (no
    /// hosts.toml for containerd, which then reads the directory's *.crt), and added to the
    /// system store.
    fn install_by_hand(&self, registry: &str, ca: &Path) {
        for dir in ["etc/docker/certs.d", "etc/containerd/certs.d", "etc/containers/certs.d"] {
            let dir = self.root().join(dir).join(registry);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::copy(ca, dir.join("ca.crt")).unwrap();
        }
        let anchor = format!("usr/local/share/ca-certificates/{}.crt", registry.replace(':', "_"));
        std::fs::copy(ca, self.root().join(anchor)).unwrap();
        let out = run_unchecked(&mut self.view.command("update-ca-certificates"));
        assert!(out.status.success(), "update-ca-certificates: {}", text(&out));
    }

    /// `timeout SECS PROGRAM` in the machine's view.
    fn command(&self, program: &str) -> Command {
        let mut c = self.view.command("timeout");
        c.args(["90", program]);
        c
    }

    fn docker(&self) -> Command {
        let d = self.dockerd.as_ref().expect("dockerd");
        let mut c = Command::new("timeout");
        c.args(["90", DOCKER, "-H", &d.host]).env("DOCKER_CONFIG", &d.client_config);
        c
    }

    fn run_client(&self, client: Client, registry: &str) -> Verdict {
        let image = format!("{registry}/{REPO}:v1");
        let creds = format!("{USER}:{PASSWORD}");
        let out = match client {
            Client::Docker => {
                let login = run_with_input_unchecked(self.docker().args(["login", "-u", USER, "--password-stdin", registry]), PASSWORD);
                if !login.status.success() {
                    return Verdict {
                        accepts: false,
                        why: text(&login),
                    };
                }
                let pull = run_unchecked(self.docker().args(["pull", &image]));
                let _ = run_unchecked(self.docker().args(["rmi", &image]));
                pull
            }
            Client::Cri => self.containerd.as_ref().unwrap().cri_pull(&image, USER, PASSWORD),
            Client::Ctr => {
                let sock = self.containerd.as_ref().unwrap().socket();
                run_unchecked(
                    self.command("ctr")
                        .arg("--address")
                        .arg(sock)
                        .args(["--namespace", "matrix", "images", "pull", "--user", &creds])
                        .args(["--hosts-dir", "/etc/containerd/certs.d", &image]),
                )
            }
            Client::Podman => {
                let store = self.podman_store.path();
                run_unchecked(
                    self.command("podman")
                        .arg("--root")
                        .arg(store.join("root"))
                        .arg("--runroot")
                        .arg(store.join("run"))
                        .args(["--storage-driver", "vfs", "--events-backend", "none", "pull", "--quiet", "--creds"])
                        .arg(&creds)
                        .arg(&image),
                )
            }
            Client::Skopeo => run_unchecked(
                self.command("skopeo")
                    .args(["inspect", "--creds", &creds])
                    .arg(format!("docker://{image}")),
            ),
            Client::Curl => run_unchecked(
                self.command("curl")
                    .args(["-sS", "--fail", "-o", "/dev/null", "-u", &creds])
                    .args(["-H", "Accept: application/vnd.oci.image.manifest.v1+json"])
                    .arg(format!("https://{registry}/v2/{REPO}/manifests/v1")),
            ),
        };
        Verdict {
            accepts: out.status.success(),
            why: text(&out),
        }
    }

    /// `wharf doctor REGISTRY --root ROOT --json`, in the view (for its /etc/hosts).
    fn doctor(&self, registry: &str) -> Doctor {
        let out = run_unchecked(
            self.view
                .command("timeout")
                .args(["120", wharf_bin(), "doctor", registry, "--json", "--timeout", "10", "--root"])
                .arg(self.root())
                .env("HOME", "/root")
                .env_remove("DOCKER_CONFIG")
                .env_remove("XDG_RUNTIME_DIR"),
        );
        let doc: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("wharf doctor {registry} --json: {e}\n{}", text(&out)));
        Doctor {
            steps: doc["steps"].as_array().cloned().unwrap_or_default(),
        }
    }
}

struct Doctor {
    steps: Vec<serde_json::Value>,
}

impl Doctor {
    fn find(&self, name: &str) -> Option<&serde_json::Value> {
        self.steps.iter().find(|s| s["step"] == name)
    }

    /// Everything doctor printed, for failure messages.
    fn dump(&self) -> String {
        serde_json::to_string_pretty(&self.steps).unwrap_or_default()
    }

    /// Doctor's verdict for `client`: its step is ok, or (for ctr) the containerd step's
    /// warning that ctr --hosts-dir trusts it while the CRI does not.
    fn verdict(&self, client: Client) -> Verdict {
        let Some(step) = self.find(client.step()) else {
            return Verdict {
                accepts: false,
                why: format!("no {} step", client.step()),
            };
        };
        let status = step["status"].as_str().unwrap_or_default();
        let message = step["message"].as_str().unwrap_or_default().to_string();
        let accepts = status == "ok" || (client == Client::Ctr && status == "warn" && message.contains("ctr --hosts-dir trusts it"));
        Verdict { accepts, why: message }
    }

    fn fix(&self, name: &str) -> Option<String> {
        self.find(name).and_then(|s| s["fix"].as_str()).map(str::to_owned)
    }

    /// The `wharf trust ...` line of any step's fix (doctor explains it in full once).
    fn trust_command(&self) -> Option<String> {
        self.steps.iter().filter_map(|s| s["fix"].as_str()).find_map(|fix| {
            fix.lines()
                .map(|l| l.trim().trim_start_matches("sudo "))
                .find(|l| l.starts_with("wharf trust "))
                .map(|l| l.split("  (").next().unwrap_or(l).trim().to_string())
        })
    }

    /// The `wharf cert issue ...` command of a failed certificate step's fix.
    fn reissue_command(&self) -> Option<String> {
        self.steps
            .iter()
            .filter(|s| s["step"] == "certificate" && s["status"] == "fail")
            .filter_map(|s| s["fix"].as_str())
            .find_map(|fix| {
                let at = fix.find("wharf cert issue ")?;
                Some(fix[at..].split(" (").next().unwrap_or_default().trim().to_string())
            })
    }
}

/// A certificate as the user holds it: the files the registry serves, the file the user
/// would install as "ca.crt", and the CA directory (ca.crt, ca.key) when they have one.
struct Certs {
    cert: PathBuf,
    key: PathBuf,
    user_ca: PathBuf,
    ca_dir: Option<PathBuf>,
}

/// Runs `openssl ARGS` in `dir`, as the seeds' recipes do.
fn openssl(dir: &Path, args: &[&str]) {
    let out = run_unchecked(Command::new("openssl").args(args).current_dir(dir));
    assert!(out.status.success(), "openssl {args:?}: {}", text(&out));
}

fn self_signed(dir: &Path, args: &[&str]) -> Certs {
    let mut all = vec![
        "req",
        "-newkey",
        "rsa:2048",
        "-x509",
        "-sha256",
        "-days",
        "365",
        "-nodes",
        "-out",
        "domain.crt",
        "-keyout",
        "domain.key",
    ];
    all.extend_from_slice(args);
    openssl(dir, &all);
    Certs {
        cert: dir.join("domain.crt"),
        key: dir.join("domain.key"),
        user_ca: dir.join("domain.crt"),
        ca_dir: None,
    }
}

/// A CA of the user's own, as openssl makes one (PKCS#8 EC key, OpenSSL's v3_ca extensions).
fn user_ca(dir: &Path) -> PathBuf {
    let ca = dir.join("ca");
    std::fs::create_dir_all(&ca).unwrap();
    openssl(
        &ca,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "ca.key",
        ],
    );
    openssl(
        &ca,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "ca.key",
            "-sha256",
            "-days",
            "365",
            "-subj",
            "/CN=kubernetes",
            "-out",
            "ca.crt",
        ],
    );
    ca
}

fn ca_signed(dir: &Path, ca: PathBuf) -> Certs {
    Certs {
        cert: dir.join("repo.crt"),
        key: dir.join("repo-key.pem"),
        user_ca: ca.join("ca.crt"),
        ca_dir: Some(ca),
    }
}

/// `openssl x509 -req`: the CA signs repo-csr.pem into repo.crt, with `extra` options.
fn sign(dir: &Path, ca: &Path, extra: &[&str]) {
    let (ca_crt, ca_key) = (ca.join("ca.crt").display().to_string(), ca.join("ca.key").display().to_string());
    let mut args = vec![
        "x509",
        "-req",
        "-in",
        "repo-csr.pem",
        "-CA",
        &ca_crt,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
    ];
    args.extend_from_slice(&["-days", "365", "-sha256", "-out", "repo.crt"]);
    args.extend_from_slice(extra);
    openssl(dir, &args);
}

/// An EC key (repo-key.pem) and a CSR (repo-csr.pem) for `subject`, as seed 004 makes them.
fn csr(dir: &Path, subject: &str, extensions: &[&str]) {
    openssl(dir, &["ecparam", "-name", "prime256v1", "-genkey", "-out", "repo-key.pem"]);
    let mut args = vec!["req", "-new", "-sha256", "-key", "repo-key.pem", "-subj", subject];
    args.extend_from_slice(extensions);
    args.extend_from_slice(&["-out", "repo-csr.pem"]);
    openssl(dir, &args);
}

/// Seed 004: the EC key and CSR exactly as the seed makes them, signed by the CA with the
/// CSR's extensions (as the kubelet-serving signer keeps them).
fn seed_004(dir: &Path) -> Certs {
    let ca = user_ca(dir);
    csr(
        dir,
        "/C=CA/ST=QC/L=Montreal/O=system:nodes/OU=IT/CN=system:node:",
        &[
            "-addext",
            "subjectAltName = DNS:localhost,DNS:*.localhost,DNS:dkr-registry.kloud.lan",
            "-addext",
            "keyUsage = digitalSignature, keyEncipherment",
            "-addext",
            "basicConstraints = CA:FALSE",
            "-addext",
            "extendedKeyUsage = serverAuth",
            "-addext",
            "subjectKeyIdentifier = hash",
        ],
    );
    sign(dir, &ca, &["-copy_extensions", "copyall"]);
    ca_signed(dir, ca)
}

/// A CA-signed certificate for `ip` whose only extendedKeyUsage is clientAuth (seed 004's FAQ).
fn client_auth_only(dir: &Path, ip: &str) -> Certs {
    let ca = user_ca(dir);
    csr(dir, &format!("/CN={ip}"), &[]);
    std::fs::write(
        dir.join("ext.cnf"),
        format!("subjectAltName = IP:{ip}\nextendedKeyUsage = clientAuth\nkeyUsage = digitalSignature\nbasicConstraints = CA:FALSE\n"),
    )
    .unwrap();
    sign(dir, &ca, &["-extfile", "ext.cnf"]);
    ca_signed(dir, ca)
}

/// A CA-signed certificate for `ip` that expired: `openssl ca` dates it in the past.
fn expired(dir: &Path, ip: &str) -> Certs {
    let ca = user_ca(dir);
    std::fs::create_dir_all(dir.join("newcerts")).unwrap();
    std::fs::write(dir.join("index.txt"), "").unwrap();
    std::fs::write(dir.join("serial"), "1000\n").unwrap();
    std::fs::write(
        dir.join("ca.cnf"),
        format!(
            "[ca]\ndefault_ca = own\n[own]\ndir = {d}\ndatabase = {d}/index.txt\nnew_certs_dir = {d}/newcerts\nserial = {d}/serial\n\
             default_md = sha256\npolicy = any\nunique_subject = no\n[any]\ncommonName = supplied\n[server]\n\
             subjectAltName = IP:{ip}\nextendedKeyUsage = serverAuth\nkeyUsage = digitalSignature\nbasicConstraints = CA:FALSE\n",
            d = dir.display()
        ),
    )
    .unwrap();
    csr(dir, &format!("/CN={ip}"), &[]);
    let ca_crt = ca.join("ca.crt").display().to_string();
    let ca_key = ca.join("ca.key").display().to_string();
    openssl(
        dir,
        &[
            "ca",
            "-batch",
            "-config",
            "ca.cnf",
            "-cert",
            &ca_crt,
            "-keyfile",
            &ca_key,
            "-in",
            "repo-csr.pem",
            "-extensions",
            "server",
            "-startdate",
            "20250101000000Z",
            "-enddate",
            "20250401000000Z",
            "-out",
            "repo.crt",
        ],
    );
    ca_signed(dir, ca)
}

/// Seed 001: /etc/ssl/openssl.cnf copied and edited as the seed says (req_extensions
/// uncommented, v3_req as shown, an alt_names section), then `openssl req -x509 -config`.
fn seed_001(dir: &Path, ip: &str) -> Certs {
    let cnf = std::fs::read_to_string("/etc/ssl/openssl.cnf").expect("/etc/ssl/openssl.cnf");
    let mut out = String::new();
    let mut in_v3_req = false;
    for line in cnf.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('[') {
            in_v3_req = trimmed.replace(' ', "") == "[v3_req]";
            out.push_str(line);
            out.push('\n');
            if in_v3_req {
                out.push_str(
                    "\n# Extensions to add to a certificate request\n\nbasicConstraints = CA:FALSE\n\
                     keyUsage = nonRepudiation, digitalSignature, keyEncipherment\nsubjectAltName=@alt_names\n\n",
                );
            }
            continue;
        }
        if in_v3_req {
            continue;
        }
        if trimmed.starts_with("# req_extensions") {
            out.push_str(trimmed.trim_start_matches("# "));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out.push_str(&format!("\n[alt_names]\nIP.1 = {ip}\n"));
    std::fs::write(dir.join("openssl.cnf"), out).unwrap();
    self_signed(dir, &["-config", "openssl.cnf", "-subj", &format!("/CN={ip}")])
}

/// One row of the matrix: how its certificate is made and the name clients use.
struct Recipe {
    row: &'static str,
    /// The registry's host name (`None`: the test host's IP address).
    dns: Option<&'static str>,
    /// On 127.0.0.1 instead of the test host (seed 003 as written: its CN is 127.0.0.1).
    loopback: bool,
    /// The user copied their CA file into every client's place by hand before (seed 003
    /// copies domain.crt to certs.d; seed 004's nodes get the cluster CA).
    by_hand: bool,
    make: fn(&Path, &str) -> Certs,
}

fn recipes() -> Vec<Recipe> {
    vec![
        Recipe {
            row: "000 IP SAN self-signed",
            dns: None,
            by_hand: false,
            loopback: false,
            // The prompts answered with Enter: OpenSSL's default subject.
            make: |d, ip| {
                self_signed(
                    d,
                    &[
                        "-subj",
                        "/C=AU/ST=Some-State/O=Internet Widgits Pty Ltd",
                        "-addext",
                        &format!("subjectAltName = IP:{ip}"),
                    ],
                )
            },
        },
        Recipe {
            row: "001 openssl.cnf alt_names",
            dns: None,
            by_hand: false,
            loopback: false,
            make: seed_001,
        },
        Recipe {
            row: "002 DNS SAN",
            dns: Some("image-registry"),
            by_hand: false,
            loopback: false,
            make: |d, _| {
                self_signed(
                    d,
                    &["-subj", "/CN=image-registry", "-addext", "subjectAltName = DNS:image-registry"],
                )
            },
        },
        Recipe {
            row: "003 CN only",
            dns: None,
            by_hand: false,
            loopback: false,
            make: |d, ip| self_signed(d, &["-subj", &format!("/C=CO/ST=Some-State/O=xXDrackleroXx/CN={ip}")]),
        },
        Recipe {
            row: "004 CA-signed EC",
            dns: Some("dkr-registry.kloud.lan"),
            by_hand: false,
            loopback: false,
            make: |d, _| seed_004(d),
        },
        Recipe {
            row: "clientAuth-only EKU",
            dns: None,
            by_hand: false,
            loopback: false,
            make: client_auth_only,
        },
        Recipe {
            row: "expired",
            dns: None,
            by_hand: false,
            loopback: false,
            make: expired,
        },
        Recipe {
            // Docker does not verify 127.0.0.0/8 registries at all; every other client does.
            row: "003 CN only on 127.0.0.1, as the seed has it",
            dns: None,
            by_hand: false,
            loopback: true,
            make: |d, ip| self_signed(d, &["-subj", &format!("/C=CO/ST=Some-State/O=xXDrackleroXx/CN={ip}")]),
        },
        Recipe {
            row: "003 CN only, domain.crt copied by hand",
            dns: None,
            by_hand: true,
            loopback: false,
            make: |d, ip| self_signed(d, &["-subj", &format!("/C=CO/ST=Some-State/O=xXDrackleroXx/CN={ip}")]),
        },
        Recipe {
            row: "clientAuth-only EKU, CA copied by hand",
            dns: None,
            by_hand: true,
            loopback: false,
            make: client_auth_only,
        },
        Recipe {
            row: "expired, CA copied by hand",
            dns: None,
            by_hand: true,
            loopback: false,
            make: expired,
        },
    ]
}

/// Where a registry listens: on the test host (a network namespace), or on this machine's
/// loopback.
struct Place {
    /// Runs wharf there (`ip netns exec NS`, or nothing).
    prefix: Vec<String>,
    /// The address clients connect to.
    ip: String,
}

impl Place {
    fn test_host(host: &TestHost) -> Place {
        Place {
            prefix: host.prefix().iter().map(|s| s.to_string()).collect(),
            ip: host.ip.clone(),
        }
    }

    fn loopback() -> Place {
        Place {
            prefix: Vec::new(),
            ip: "127.0.0.1".into(),
        }
    }
}

/// wharf serving one recipe's files.
struct Registry {
    wharf: Option<Wharf>,
    dir: tempfile::TempDir,
    place: Place,
    port: u16,
}

impl Registry {
    fn config(&self, certs: &Certs) -> PathBuf {
        let d = self.dir.path();
        let config = d.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {}:{}\n  tls:\n    certificate: {}\n    \
                 key: {}\nauth:\n  htpasswd:\n    realm: matrix\n    path: {}\n",
                d.join("data").display(),
                self.place.ip,
                self.port,
                certs.cert.display(),
                certs.key.display(),
                d.join("htpasswd").display()
            ),
        )
        .unwrap();
        config
    }

    fn start(place: Place, port: u16, certs: &Certs) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        write_htpasswd(&dir.path().join("htpasswd"), &[(USER, PASSWORD)]);
        let mut r = Registry {
            wharf: None,
            dir,
            place,
            port,
        };
        r.launch(certs, &[]);
        r
    }

    fn addr(&self) -> String {
        format!("{}:{}", self.place.ip, self.port)
    }

    fn launch(&mut self, certs: &Certs, env: &[(&str, &str)]) {
        if let Some(mut w) = self.wharf.take() {
            w.stop();
        }
        let config = self.config(certs);
        let prefix: Vec<&str> = self.place.prefix.iter().map(String::as_str).collect();
        self.wharf = Some(Wharf::launch_args(&prefix, &[config.to_str().unwrap()], env));
        let addr = self.addr();
        assert!(
            wait_until(Duration::from_secs(20), || std::net::TcpStream::connect(&addr).is_ok()),
            "the registry on {addr} never accepted connections"
        );
    }

    /// Pushes a one-layer image (setup, so without verifying TLS).
    fn push(&self) {
        push_one_layer_image(
            &format!("docker://{}/{REPO}:v1", self.addr()),
            &format!("{USER}:{PASSWORD}"),
            &["--dest-tls-verify=false"],
        );
    }
}

/// One client's rounds for one recipe: (client's outcome, doctor's verdict).
type Cell = Vec<(Verdict, Verdict)>;

/// One recipe under test: the registry, the certificate the user holds, their scratch dir.
struct Subject {
    /// `HOST:PORT` as clients name the registry.
    name: String,
    certs: Certs,
    reg: Registry,
    work: tempfile::TempDir,
}

/// Follows the fix doctor printed for the clients that refused; returns what was done.
fn follow_fix(m: &mut Machine, doctor: &Doctor, refusing: &[Client], subject: &mut Subject) -> String {
    let Subject {
        name: registry_name,
        certs,
        reg,
        work,
    } = subject;
    let work = work.path();
    // The fixes printed for these clients: a `wharf trust` line (or a pointer to the one
    // printed for another client), else re-issuing the certificate.
    let fixes: Vec<String> = refusing.iter().filter_map(|c| doctor.fix(c.step())).collect();
    let says_trust = fixes.iter().any(|f| {
        f.contains("the wharf trust command above") || f.lines().any(|l| l.trim().trim_start_matches("sudo ").starts_with("wharf trust "))
    });
    if says_trust {
        let printed = doctor
            .trust_command()
            .unwrap_or_else(|| panic!("doctor printed no wharf trust command for {refusing:?}:\n{}", doctor.dump()));
        return run_trust(m, &printed, certs);
    }
    let reissue = doctor
        .reissue_command()
        .unwrap_or_else(|| panic!("doctor printed no fix for {refusing:?} (fixes: {fixes:?}):\n{}", doctor.dump()));
    // "CA_DIR holds ca.crt and ca.key; make one with: wharf cert ca --out CA_DIR"
    let ca_dir = match &certs.ca_dir {
        Some(d) => d.clone(),
        None => {
            let d = work.join(format!("wharf-ca-{}", registry_name.replace(':', "_")));
            run(Command::new(wharf_bin()).args(["cert", "ca", "--out"]).arg(&d));
            d
        }
    };
    let cert_dir = work.join("reissued");
    let line = reissue
        .replace("CA_DIR", ca_dir.to_str().unwrap())
        .replace("CERT_DIR", cert_dir.to_str().unwrap());
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words[0], "wharf", "{line}");
    let out = run_unchecked(Command::new(wharf_bin()).args(&words[1..]));
    assert!(out.status.success(), "doctor's {line:?} failed as printed: {}", text(&out));
    *certs = Certs {
        cert: cert_dir.join("server.crt"),
        key: cert_dir.join("server.key"),
        user_ca: ca_dir.join("ca.crt"),
        ca_dir: Some(ca_dir),
    };
    // "then point REGISTRY_HTTP_TLS_CERTIFICATE / REGISTRY_HTTP_TLS_KEY at CERT_DIR/server.crt and ..."
    let (c, k) = (certs.cert.display().to_string(), certs.key.display().to_string());
    reg.launch(certs, &[("REGISTRY_HTTP_TLS_CERTIFICATE", &c), ("REGISTRY_HTTP_TLS_KEY", &k)]);
    format!("{line}, registry restarted with it")
}

/// Runs the printed `wharf trust ...` line: `ca.crt` is the user's CA file, CA_FINGERPRINT its
/// fingerprint as the printed text says to get it (openssl x509 -fingerprint -sha256), and
/// `--root` the machine's. Then what it says to do: restart containerd, update-ca-certificates.
fn run_trust(m: &mut Machine, printed: &str, certs: &Certs) -> String {
    let ca = certs.user_ca.to_str().unwrap().to_string();
    let fingerprint = {
        let out = run(Command::new("openssl").args(["x509", "-noout", "-fingerprint", "-sha256", "-in", &ca]));
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .split_once('=')
            .expect("fingerprint line")
            .1
            .to_string()
    };
    let words: Vec<String> = printed
        .split_whitespace()
        .map(|w| match w {
            "ca.crt" => ca.clone(),
            "CA_FINGERPRINT" => fingerprint.clone(),
            w => w.to_string(),
        })
        .collect();
    assert_eq!(words[0], "wharf", "{printed}");
    let out = run_unchecked(m.view.command(wharf_bin()).args(&words[1..]).arg("--root").arg(m.root()));
    let said = text(&out);
    assert!(out.status.success(), "{printed:?} failed as printed:\n{said}");
    let mut done = printed.to_string();
    if said.contains("restart containerd") {
        if let Some(c) = m.containerd.as_mut() {
            c.restart();
            done.push_str(", containerd restarted");
        }
    }
    if said.contains("update-ca-certificates") {
        let out = run_unchecked(&mut m.view.command("update-ca-certificates"));
        assert!(out.status.success(), "update-ca-certificates: {}", text(&out));
        done.push_str(", update-ca-certificates");
    }
    done
}

/// The clients installed here; outside CI a missing one is left out of the matrix.
fn installed_clients() -> Vec<Client> {
    CLIENTS
        .into_iter()
        .filter(|c| require_tool(c.tool()))
        .filter(|c| *c != Client::Cri || grpc_tools_present())
        .collect()
}

#[test]
fn every_seed_certificate_times_every_client_doctor_agrees_and_its_fix_works() {
    let started = Instant::now();
    for tool in ["openssl", "unshare", "skopeo", "update-ca-certificates"] {
        if !require_tool(tool) {
            return;
        }
    }
    let Some(host) = TestHost::create() else { return };
    let clients = installed_clients();
    let mut m = Machine::new(clients);
    let clients = m.clients.clone();
    let mut table: Vec<Line> = Vec::new();
    let mut disagreements = Vec::new();
    let mut still_refused = Vec::new();
    for (i, recipe) in recipes().into_iter().enumerate() {
        let work = tempfile::tempdir().unwrap();
        let (place, port) = if recipe.loopback {
            (Place::loopback(), common::free_port())
        } else {
            (Place::test_host(&host), 5000 + i as u16)
        };
        let certs = (recipe.make)(work.path(), &place.ip);
        let name = match recipe.dns {
            Some(dns) => {
                m.add_host(&place.ip, dns);
                format!("{dns}:{port}")
            }
            None => format!("{}:{port}", place.ip),
        };
        if recipe.by_hand {
            m.install_by_hand(&name, &certs.user_ca);
        }
        let reg = Registry::start(place, port, &certs);
        reg.push();
        let mut subject = Subject { name, certs, reg, work };
        let mut cells: Vec<(Client, Cell)> = clients.iter().map(|c| (*c, Vec::new())).collect();
        let mut fixes = Vec::new();
        for round in 0..ROUNDS {
            let outcomes: Vec<Verdict> = clients.iter().map(|c| m.run_client(*c, &subject.name)).collect();
            let doctor = m.doctor(&subject.name);
            let mut refusing = Vec::new();
            for ((client, cell), outcome) in cells.iter_mut().zip(&outcomes) {
                let said = doctor.verdict(*client);
                if !agree(outcome, &said) {
                    disagreements.push(format!(
                        "{} × {} (round {round}): the client {}, doctor says {}:\nclient: {}\ndoctor: {}",
                        recipe.row,
                        client.label(),
                        outcome.short(),
                        said.short(),
                        outcome.why.trim(),
                        said.why
                    ));
                }
                if !outcome.accepts {
                    refusing.push(*client);
                }
                cell.push((outcome.clone(), said));
            }
            if refusing.is_empty() {
                break;
            }
            if round + 1 == ROUNDS {
                still_refused.push(format!("{}: {refusing:?} still refuse after {} fixes", recipe.row, ROUNDS - 1));
                break;
            }
            fixes.push(follow_fix(&mut m, &doctor, &refusing, &mut subject));
        }
        table.push(Line {
            row: format!("{} ({})", recipe.row, subject.name),
            fixes,
            cells,
        });
    }
    eprintln!("{}", render(&table, started.elapsed()));
    assert!(
        disagreements.is_empty(),
        "doctor disagrees with the client:\n{}",
        disagreements.join("\n\n")
    );
    assert!(still_refused.is_empty(), "{}", still_refused.join("\n"));
}

/// recipe × client: each round's outcome / doctor's verdict, then the fixes followed.
/// One recipe's row of the printed matrix.
struct Line {
    row: String,
    fixes: Vec<String>,
    cells: Vec<(Client, Cell)>,
}

fn render(table: &[Line], took: Duration) -> String {
    let mut out = format!("\ncertificate recipe × client: outcome / doctor's verdict, per round (→ after each fix) — {took:.0?}\n");
    for Line { row, fixes, cells } in table {
        out.push_str(&format!("\n{row}\n"));
        for (client, cell) in cells {
            let rounds: Vec<String> = cell
                .iter()
                .map(|(o, d)| {
                    let mark = if agree(o, d) { "" } else { " ✗DISAGREE" };
                    format!("{} / doctor: {}{mark}", o.short(), d.short())
                })
                .collect();
            out.push_str(&format!("  {:<15} {}\n", client.label(), rounds.join("  →  ")));
        }
        for (i, f) in fixes.iter().enumerate() {
            out.push_str(&format!("  fix {}: {f}\n", i + 1));
        }
    }
    out
}
