//! `wharf trust REGISTRY`: make every container runtime on this machine trust a registry's CA —
//! the `mkdir -p /etc/docker/certs.d/HOST:PORT && scp ...` step every registry guide repeats
//! per client, for Docker, containerd, podman/CRI-O and the system store at once.
//!
//! The CA comes from the registry itself (wharf publishes it at `autosecure::CA_PATH`) or from
//! `--ca FILE`. Before anything is installed, the registry's certificate must verify against
//! that CA for the address given, and the CA's fingerprint must match `--fingerprint` (or be
//! confirmed on the terminal): fetching a CA over an unverified connection proves nothing by
//! itself.

mod ca;
pub mod containerd;
mod fetch;
mod k3s;
mod login;
pub mod plan;
mod record;
mod script;
mod target;

use crate::autosecure::CA_PATH;
use anyhow::{anyhow, bail, Context};
use ca::Ca;
pub use plan::Runtime;
use plan::{Ctx, FileSpec, Outcome, Plan, Store};
use record::Record;
use std::path::{Path, PathBuf};
use target::Target;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  sudo wharf trust 10.0.0.5:5000 --fingerprint AB:CD:...        # the fingerprint `wharf serve` printed
  sudo wharf trust registry.lan:5000 --login admin               # also store the password for docker/podman
  wharf trust 10.0.0.5 --fingerprint AB:CD:... --script | ssh root@device sh
  wharf trust 10.0.0.5:5000 --ca ca.crt --root /mnt/image       # prepare another root filesystem")]
pub struct TrustArgs {
    /// The registry: HOST, HOST:PORT, [IPv6]:PORT or https://HOST:PORT (port 5000 when omitted).
    #[arg(value_name = "REGISTRY")]
    pub registry: String,
    /// The CA's SHA-256 fingerprint, as `wharf serve` printed it (case and colons do not matter).
    #[arg(long, value_name = "FP")]
    pub fingerprint: Option<String>,
    /// Install this CA file instead of fetching the CA from the registry.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Trust the CA without confirming its fingerprint (prefer --fingerprint).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Show every action without changing anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Remove what `wharf trust` installed for this registry (and, with --login, the stored password).
    #[arg(long)]
    pub remove: bool,
    /// Install under DIR instead of / (another root filesystem; system commands are printed, not run).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Print a POSIX sh script that does the same, for machines without wharf.
    #[arg(long, conflicts_with_all = ["dry_run", "login", "keep_containerd_config"])]
    pub script: bool,
    /// Also log in as USER: check the password against the registry and store it in ~/.docker/config.json.
    #[arg(long, value_name = "USER")]
    pub login: Option<String>,
    /// Read the --login password from standard input.
    #[arg(long, requires = "login")]
    pub password_stdin: bool,
    /// Trust stores to update.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        value_name = "LIST",
        default_value = "docker,containerd,containers,system"
    )]
    pub runtimes: Vec<Runtime>,
    /// Leave /etc/containerd/config.toml alone (only report whether its config_path covers
    /// certs.d). By default wharf sets config_path when it does not, without which
    /// containerd's CRI plugin (Kubernetes) ignores certs.d, and then restarts containerd.
    #[arg(long)]
    pub keep_containerd_config: bool,
    /// What wharf does by default now; kept so that older scripts still run.
    #[arg(long, hide = true, conflicts_with = "keep_containerd_config")]
    pub configure_containerd: bool,
}

pub fn run(args: TrustArgs) -> anyhow::Result<()> {
    let target = Target::parse(&args.registry)?;
    let mut runtimes = args.runtimes.clone();
    runtimes.dedup();
    let ctx = Ctx {
        root: args.root.clone().unwrap_or_else(|| PathBuf::from("/")),
        dry_run: args.dry_run,
    };
    let mut out = Report {
        script: args.script,
        dry_run: args.dry_run,
        failures: Vec::new(),
    };
    if args.remove {
        return remove_all(&args, &target, &runtimes, &ctx, &mut out);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let ca = obtain_ca(&rt, &args, &target, &out)?;
    let plan = Plan::new(&target, &ca.pem, &runtimes);
    if args.script {
        let root = args.root.as_deref().map(|r| r.display().to_string());
        print!("{}", script::install(&target, &plan, &ca.pem, &ca.fingerprint, root.as_deref()));
        return Ok(());
    }
    // The password is checked before anything is installed: a typo leaves the machine as it was.
    let credentials = match &args.login {
        Some(user) => Some(prepare_login(&rt, &args, &target, &ca, user, &ctx)?),
        None => None,
    };
    let mut record = Record::load(&ctx, &target)?;
    install_files(&plan, &ctx, &mut record, &mut out);
    install_system(&plan, &ctx, &mut record, &mut out);
    if let Err(e) = record.save(&ctx, &target) {
        out.fail("record", format!("{e:#}"));
    }
    if runtimes.contains(&Runtime::Containerd) {
        containerd_config(&args, &ctx, &mut out);
        k3s_registries(&target, &ctx, &mut out);
    }
    if let Some(c) = credentials {
        store_login(c, &target, &ctx, &mut out);
    }
    print_tests(&target, &plan, args.login.as_deref());
    out.finish()
}

/// The runtimes `wharf trust` configures by default.
const DEFAULT_RUNTIMES: [Runtime; 4] = [Runtime::Docker, Runtime::Containerd, Runtime::Containers, Runtime::System];

/// What `wharf trust HOST_PORT --script` prints for a registry whose CA is `ca_pem` (with this
/// SHA-256 fingerprint): `wharf serve` hands it to clients that reached it as `HOST_PORT` (a
/// Host header, so without a port it is HTTPS's 443). `None` when that is no registry address.
pub fn script_for(host_port: &str, ca_pem: &str, fingerprint: &str) -> Option<String> {
    let has_port = match host_port.strip_prefix('[') {
        Some(rest) => rest.contains("]:"),
        None => host_port.contains(':'),
    };
    let input = if has_port {
        host_port.to_string()
    } else {
        format!("{host_port}:443")
    };
    let target = Target::parse(&input).ok()?;
    let plan = Plan::new(&target, ca_pem, &DEFAULT_RUNTIMES);
    Some(script::install(&target, &plan, ca_pem, fingerprint, None))
}

/// Where lines go: stdout, except while stdout carries a script.
struct Report {
    script: bool,
    dry_run: bool,
    failures: Vec<String>,
}

impl Report {
    fn note(&self, msg: &str) {
        if self.script {
            eprintln!("{msg}");
        } else {
            println!("{msg}");
        }
    }

    fn line(&self, label: &str, outcome: &Outcome, path: &Path, note: &str) {
        let note = if note.is_empty() { String::new() } else { format!(" ({note})") };
        println!("{label:<11}{} {}{note}", outcome.verb(self.dry_run), path.display());
    }

    fn fail(&mut self, label: &str, what: String) {
        println!("{label:<11}FAILED: {what}");
        self.failures.push(what);
    }

    fn finish(&self) -> anyhow::Result<()> {
        if self.failures.is_empty() {
            return Ok(());
        }
        let hint = if self.failures.iter().any(|f| f.contains("ermission denied")) {
            " (writing under /etc needs root: run it with sudo)"
        } else {
            ""
        };
        bail!("{} step(s) failed{hint}", self.failures.len())
    }
}

/// Gets the CA, verifies the registry's certificate against it, and has it approved.
fn obtain_ca(rt: &tokio::runtime::Runtime, args: &TrustArgs, target: &Target, out: &Report) -> anyhow::Result<Ca> {
    let name = target.name();
    let (ca, chain, source) = match &args.ca {
        Some(file) => {
            let pem = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
            let ca = Ca::from_pem(&pem, &file.display().to_string())?;
            let chain = match rt.block_on(fetch::connect(target)) {
                Ok(conn) => Some(conn.chain),
                Err(e) => {
                    eprintln!(
                        "wharf: warning: {e:#}\nwharf: warning: installing {} without checking that {name}'s certificate chains to it",
                        file.display()
                    );
                    None
                }
            };
            (ca, chain, file.display().to_string())
        }
        None => {
            let (ca, chain) = rt.block_on(fetch_published_ca(target))?;
            (ca, Some(chain), format!("{}{CA_PATH}", target.url()))
        }
    };
    out.note(&format!("wharf: registry {name}: CA from {source}"));
    out.note(&ca::describe(&ca));
    if let Some(fp) = &args.fingerprint {
        ca::approve(&ca, &name, Some(fp), false)?;
        out.note("wharf: the fingerprint matches --fingerprint");
    }
    if let Some(chain) = chain {
        match fetch::verify_chain(&chain, &ca.der, target) {
            Ok(fetch::Verified::Chain) => out.note(&format!(
                "wharf: {name}'s certificate chains to this CA and is valid for {}",
                target.host
            )),
            Ok(fetch::Verified::SelfSigned) => out.note(&format!(
                "wharf: {name}'s certificate is this self-signed certificate and is valid for {}",
                target.host
            )),
            Err(e) => bail!(
                "refusing to trust this CA: {e}.\nClients would still reject {name} with it installed; if the registry should be using it, \
                 the connection may also be intercepted. Nothing was installed."
            ),
        }
    }
    if args.fingerprint.is_none() {
        ca::approve(&ca, &name, None, args.yes)?;
    }
    Ok(ca)
}

async fn fetch_published_ca(target: &Target) -> anyhow::Result<(Ca, Vec<rustls_pki_types::CertificateDer<'static>>)> {
    let url = format!("{}{CA_PATH}", target.url());
    let conn = fetch::connect(target).await?;
    let chain = conn.chain.clone();
    let (status, body) = fetch::get(conn, target, CA_PATH, None).await?;
    match status {
        200 => {}
        404 => bail!(
            "{} does not publish its CA at {CA_PATH}: only a wharf registry that made its own CA (or has http.tls.cafile) does. \
             Get the CA certificate from the registry's operator and run: wharf trust {} --ca FILE",
            target.name(),
            target.name()
        ),
        s => bail!("GET {url} answered {s}"),
    }
    let text = String::from_utf8(body.to_vec()).map_err(|_| anyhow!("{url} is not a PEM certificate"))?;
    Ok((Ca::from_pem(&text, &url)?, chain))
}

fn install_files(plan: &Plan, ctx: &Ctx, record: &mut Record, out: &mut Report) {
    let mut noted = Vec::new();
    for spec in &plan.files {
        let real = ctx.real(&spec.path);
        match plan::install(spec, ctx, record) {
            Ok(o) => {
                let note = if noted.contains(&spec.runtime) { "" } else { runtime_note(spec) };
                noted.push(spec.runtime);
                out.line(spec.runtime.label(), &o, &real, note);
                if o == Outcome::Kept {
                    out.note(&format!(
                        "{:<11}  add to it: [host.\"https://...\"] ca = \"{}\"",
                        spec.runtime.label(),
                        spec.path.with_file_name("ca.crt").display()
                    ));
                }
            }
            Err(e) => out.fail(spec.runtime.label(), format!("{e:#}")),
        }
    }
}

fn runtime_note(spec: &FileSpec) -> &'static str {
    match spec.runtime {
        Runtime::Docker => "Docker reads certs.d on each connection: no restart needed",
        Runtime::Containerd => "read on each pull: no restart needed",
        Runtime::Containers => "podman, CRI-O, skopeo, buildah",
        Runtime::System => "",
    }
}

fn install_system(plan: &Plan, ctx: &Ctx, record: &mut Record, out: &mut Report) {
    if plan.stores.is_empty() {
        return;
    }
    let present: Vec<&(Store, FileSpec)> = plan
        .stores
        .iter()
        .filter(|(s, _)| ctx.real(Path::new(s.anchors)).is_dir())
        .collect();
    if present.is_empty() {
        let looked: Vec<&str> = plan.stores.iter().map(|(s, _)| s.anchors).collect();
        println!(
            "{:<11}no system trust store found (looked for {}): skipped",
            "system",
            looked.join(", ")
        );
        return;
    }
    for (store, spec) in present {
        match plan::install(spec, ctx, record) {
            Ok(o) => {
                out.line("system", &o, &ctx.real(&spec.path), store.distro);
                if matches!(o, Outcome::Wrote | Outcome::Replaced) {
                    refresh_store(store, ctx, out);
                }
            }
            Err(e) => out.fail("system", format!("{e:#}")),
        }
    }
}

/// Rebuilds the system bundle, only on the running system itself.
fn refresh_store(store: &Store, ctx: &Ctx, out: &mut Report) {
    let cmd = store.update;
    if ctx.dry_run {
        println!("{:<11}would run {cmd}", "system");
    } else if ctx.root != Path::new("/") {
        println!(
            "{:<11}run inside {}: {cmd}  (e.g. chroot {} {cmd})",
            "system",
            ctx.root.display(),
            ctx.root.display()
        );
    } else if !plan::on_path(cmd) {
        println!("{:<11}{cmd} not found: run it once it is installed", "system");
    } else {
        match std::process::Command::new(cmd).output() {
            Ok(o) if o.status.success() => println!("{:<11}ran {cmd}", "system"),
            Ok(o) => out.fail(
                "system",
                format!("{cmd} failed ({}): {}", o.status, String::from_utf8_lossy(&o.stderr).trim()),
            ),
            Err(e) => out.fail("system", format!("running {cmd}: {e}")),
        }
    }
    if ctx.may_run_commands() {
        println!("{:<11}programs already running keep the old store until restarted", "system");
    }
}

fn containerd_config(args: &TrustArgs, ctx: &Ctx, out: &mut Report) {
    let label = "containerd";
    let real = ctx.real(Path::new(containerd::CONFIG));
    let dir = containerd::CERTS_D;
    let text = match std::fs::read_to_string(&real) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!(
                "{label:<11}{} does not exist: containerd 2.x reads {dir} by default; containerd 1.x's CRI (Kubernetes) only \
                 with config_path = \"{dir}\" there (containerd config default > {}, then run wharf trust again)",
                real.display(),
                containerd::CONFIG
            );
            return;
        }
        Err(e) => return out.fail(label, format!("reading {}: {e}", real.display())),
    };
    if args.keep_containerd_config {
        report_config(&text, &real, label);
    } else {
        match containerd::config::configure(&text) {
            Ok(None) => out.line(
                label,
                &Outcome::Unchanged,
                &real,
                &format!("config_path includes {dir}: no restart needed"),
            ),
            Ok(Some(edit)) => apply_config_edit(&edit, &text, &real, ctx, out),
            Err(e) => out.fail(label, format!("{}: {e:#}", real.display())),
        }
    }
    println!("{label:<11}ctr needs --hosts-dir {dir} (nerdctl reads it by default)");
}

/// `--keep-containerd-config`: only says whether the CRI will read certs.d.
fn report_config(text: &str, real: &Path, label: &str) {
    use containerd::config::Status;
    let dir = containerd::CERTS_D;
    let msg = match containerd::config::status(Some(text)) {
        Status::Includes(v) => format!("{} has config_path = \"{v}\": Kubernetes (CRI) uses these files", real.display()),
        Status::NoFile => unreachable!("the file was read"),
        Status::Invalid(e) => format!("{} is not valid TOML: {e}", real.display()),
        Status::Unset => format!(
            "{} does not set config_path: Kubernetes (CRI) will NOT use these files until it is config_path = \"{dir}\" \
             (run again without --keep-containerd-config)",
            real.display()
        ),
        Status::Elsewhere(v) => format!(
            "{} sets config_path = \"{v}\", which leaves out {dir}: Kubernetes (CRI) will NOT use these files \
             (run again without --keep-containerd-config)",
            real.display()
        ),
    };
    println!("{label:<11}{msg}");
}

/// Writes the moved hosts.toml files, then config.toml, then restarts containerd (or says how).
fn apply_config_edit(edit: &containerd::config::Edit, old: &str, real: &Path, ctx: &Ctx, out: &mut Report) {
    let label = "containerd";
    let moved: Vec<(PathBuf, &containerd::config::HostsFile)> = edit
        .moved
        .iter()
        .map(|m| (ctx.real(&Path::new(containerd::CERTS_D).join(&m.dir).join("hosts.toml")), m))
        .collect();
    if let Some((path, m)) = moved.iter().find(|(p, _)| p.exists()) {
        return out.fail(
            label,
            format!(
                "{} has {} (containerd refuses it together with config_path), and {} exists already: merge them by hand; nothing was changed",
                real.display(),
                m.from.join(", "),
                path.display()
            ),
        );
    }
    for (path, m) in &moved {
        let result = if ctx.dry_run {
            Ok(())
        } else {
            plan::create_dirs(path.parent().expect("absolute path"))
                .and_then(|()| plan::write_atomic(path, m.content.as_bytes(), plan::FILE_MODE))
        };
        match result {
            Ok(()) => out.line(
                label,
                &Outcome::Wrote,
                path,
                &format!("moved from config.toml: {}", m.from.join(", ")),
            ),
            Err(e) => return out.fail(label, format!("{e:#}")),
        }
    }
    if let Err(e) = write_config(real, Some(old), &edit.text, ctx) {
        return out.fail(label, format!("{e:#}"));
    }
    let what = if edit.config_path_set {
        format!("config_path now includes {}", containerd::CERTS_D)
    } else {
        "old-style registry blocks moved out".to_string()
    };
    out.line(
        label,
        &Outcome::Replaced,
        real,
        &format!("{what}; the original is kept as config.toml.before-wharf"),
    );
    match containerd::restart::after_config_change(ctx) {
        Ok(line) => println!("{label:<11}{line}"),
        Err(e) => out.fail(label, e),
    }
}

/// Replaces config.toml atomically, keeping its mode and, once, a copy of the original.
fn write_config(real: &Path, old: Option<&str>, new: &str, ctx: &Ctx) -> anyhow::Result<()> {
    if ctx.dry_run {
        return Ok(());
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(real)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(plan::FILE_MODE);
    if let Some(old) = old {
        let backup = real.with_extension("toml.before-wharf");
        if !backup.exists() {
            plan::write_atomic(&backup, old.as_bytes(), mode)?;
        }
    }
    plan::create_dirs(real.parent().expect("absolute path"))?;
    plan::write_atomic(real, new.as_bytes(), mode)
}

/// A verified password, ready to store once the CA is installed.
struct Credentials {
    config: login::DockerConfig,
    doc: serde_json::Map<String, serde_json::Value>,
    user: String,
    password: String,
}

fn prepare_login(
    rt: &tokio::runtime::Runtime,
    args: &TrustArgs,
    target: &Target,
    ca: &Ca,
    user: &str,
    ctx: &Ctx,
) -> anyhow::Result<Credentials> {
    let config = login::docker_config()?;
    let doc = login::load(&ctx.real(&config.path), &target.names(), true)?;
    let password = login::read_password(user, args.password_stdin)?;
    rt.block_on(login::check(target, ca, user, &password))?;
    println!("{:<11}{user}'s password is accepted by {}", "login", target.name());
    Ok(Credentials {
        config,
        doc,
        user: user.to_string(),
        password,
    })
}

fn store_login(mut c: Credentials, target: &Target, ctx: &Ctx, out: &mut Report) {
    let real = ctx.real(&c.config.path);
    let result = login::store(&mut c.doc, &target.names(), &c.user, &c.password).and_then(|changed| {
        if changed && !ctx.dry_run {
            login::save(&real, &c.doc, c.config.owner)?;
        }
        Ok(changed)
    });
    match result {
        Ok(changed) => out.line(
            "login",
            &login::outcome(changed, false),
            &real,
            "docker, podman, skopeo and buildah read it",
        ),
        Err(e) => out.fail("login", format!("{e:#}")),
    }
}

fn remove_all(args: &TrustArgs, target: &Target, runtimes: &[Runtime], ctx: &Ctx, out: &mut Report) -> anyhow::Result<()> {
    let plan = Plan::new(target, "", runtimes);
    if args.script {
        let root = args.root.as_deref().map(|r| r.display().to_string());
        print!("{}", script::remove(target, &plan, root.as_deref()));
        return Ok(());
    }
    let mut record = Record::load(ctx, target)?;
    for spec in &plan.files {
        match plan::remove(spec, ctx, &mut record) {
            Ok(o) => out.line(spec.runtime.label(), &o, &ctx.real(&spec.path), ""),
            Err(e) => out.fail(spec.runtime.label(), format!("{e:#}")),
        }
    }
    let mut found = false;
    for (store, spec) in &plan.stores {
        match plan::remove(spec, ctx, &mut record) {
            Ok(Outcome::Absent) => {}
            Ok(o) => {
                found = true;
                out.line("system", &o, &ctx.real(&spec.path), store.distro);
                if matches!(o, Outcome::Removed | Outcome::Restored) {
                    refresh_store(store, ctx, out);
                }
            }
            Err(e) => out.fail("system", format!("{e:#}")),
        }
    }
    if !found && !plan.stores.is_empty() {
        println!("{:<11}no wharf CA for {} in a system trust store", "system", target.name());
    }
    for dir in record.remove_empty_dirs(ctx) {
        println!(
            "{:<11}{} {} (created by wharf trust, now empty)",
            "dirs",
            Outcome::Removed.verb(ctx.dry_run),
            dir.display()
        );
    }
    if let Err(e) = record.save(ctx, target) {
        out.fail("record", format!("{e:#}"));
    }
    if runtimes.contains(&Runtime::Containerd) {
        restore_containerd_config(ctx, out);
        k3s_forget(target, ctx, out);
    }
    if args.login.is_some() {
        forget_login(target, ctx, out);
    }
    out.finish()
}

/// On a k3s node: the registry in registries.yaml, with the CA written for containerd.
fn k3s_registries(target: &Target, ctx: &Ctx, out: &mut Report) {
    if !ctx.real(Path::new(k3s::DIR)).is_dir() {
        return;
    }
    let label = "k3s";
    let real = ctx.real(Path::new(k3s::REGISTRIES));
    let existing = std::fs::read_to_string(&real).ok();
    let ca = Path::new(containerd::CERTS_D).join(target.name()).join("ca.crt");
    match k3s::with_ca(existing.as_deref(), &target.names(), &ca.display().to_string()) {
        Ok(k3s::Edit::Unchanged) => out.line(label, &Outcome::Unchanged, &real, "no restart needed"),
        Ok(k3s::Edit::NotOurs(add)) => {
            out.line(label, &Outcome::Kept, &real, "");
            println!(
                "{label:<11}add to it, then {}:
{add}",
                k3s::RESTART
            );
        }
        Ok(k3s::Edit::Write(text)) => {
            let o = if existing.is_some() { Outcome::Replaced } else { Outcome::Wrote };
            if !ctx.dry_run {
                if let Err(e) = plan::write_atomic(&real, text.as_bytes(), 0o600) {
                    return out.fail(label, format!("{e:#}"));
                }
            }
            out.line(label, &o, &real, "k3s's containerd reads it, not /etc/containerd");
            println!("{label:<11}restart k3s for it to read registries.yaml: {}", k3s::RESTART);
        }
        Err(e) => out.fail(label, format!("{e:#}")),
    }
}

fn k3s_forget(target: &Target, ctx: &Ctx, out: &mut Report) {
    let label = "k3s";
    let real = ctx.real(Path::new(k3s::REGISTRIES));
    let Ok(existing) = std::fs::read_to_string(&real) else { return };
    let result = match k3s::without(&existing, &target.names()) {
        Ok(None) => return,
        Ok(Some(_)) if ctx.dry_run => Ok(()),
        Ok(Some(left)) if left.is_empty() => std::fs::remove_file(&real).map_err(anyhow::Error::from),
        Ok(Some(left)) => plan::write_atomic(&real, left.as_bytes(), 0o600),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => {
            out.line(label, &Outcome::Removed, &real, &format!("{}'s entry", target.name()));
            println!("{label:<11}restart k3s for it to read registries.yaml: {}", k3s::RESTART);
        }
        Err(e) => out.fail(label, format!("{e:#}")),
    }
}

/// Once no registry trusted by wharf is left, puts back the config.toml wharf edited — when
/// it is still exactly what wharf made of the original (otherwise someone has edited it
/// since, and it stays).
fn restore_containerd_config(ctx: &Ctx, out: &mut Report) {
    let label = "containerd";
    let others = std::fs::read_dir(ctx.real(Path::new(record::DIR))).is_ok_and(|mut d| d.next().is_some());
    let real = ctx.real(Path::new(containerd::CONFIG));
    let backup = real.with_extension("toml.before-wharf");
    let (Ok(now), Ok(original)) = (std::fs::read_to_string(&real), std::fs::read_to_string(&backup)) else {
        return;
    };
    let ours = matches!(containerd::config::configure(&original), Ok(Some(edit)) if edit.moved.is_empty() && edit.text == now);
    if others || !ours {
        return;
    }
    if !ctx.dry_run {
        if let Err(e) = std::fs::rename(&backup, &real) {
            return out.fail(label, format!("putting back {}: {e}", real.display()));
        }
    }
    out.line(label, &Outcome::Restored, &real, "as it was before wharf trust");
    match containerd::restart::after_config_change(ctx) {
        Ok(line) => println!("{label:<11}{line}"),
        Err(e) => out.fail(label, e),
    }
}

fn forget_login(target: &Target, ctx: &Ctx, out: &mut Report) {
    let result = (|| -> anyhow::Result<(bool, PathBuf)> {
        let config = login::docker_config()?;
        let real = ctx.real(&config.path);
        let mut doc = login::load(&real, &target.names(), false)?;
        let changed = login::forget(&mut doc, &target.names());
        if changed && !ctx.dry_run {
            login::save(&real, &doc, config.owner)?;
        }
        Ok((changed, real))
    })();
    match result {
        Ok((changed, real)) => out.line("login", &login::outcome(changed, true), &real, "stored password"),
        Err(e) => out.fail("login", format!("{e:#}")),
    }
}

/// The commands that prove it worked, with the paths as the target system sees them.
fn print_tests(target: &Target, plan: &Plan, user: Option<&str>) {
    let name = target.name();
    println!("Test with:");
    println!("  docker pull {name}/IMAGE");
    if plan.files.iter().any(|f| f.runtime == Runtime::Containers) {
        println!("  podman pull {name}/IMAGE");
    }
    if plan.files.iter().any(|f| f.runtime == Runtime::Containerd) {
        println!("  ctr images pull --hosts-dir {} {name}/IMAGE", containerd::CERTS_D);
    }
    let ca = plan
        .files
        .iter()
        .find(|f| f.marker.is_none())
        .or(plan.stores.first().map(|(_, f)| f));
    if let Some(ca) = ca {
        let glob = if target.host.contains(':') { " -g" } else { "" };
        let user = user.unwrap_or("USER");
        println!("  curl{glob} --cacert {} {}/v2/_catalog -u {user}", ca.path.display(), target.url());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_served_script_is_for_the_address_the_client_used() {
        let ca = crate::tls::certs::new_ca("test CA", 30).unwrap();
        let fp = crate::tls::certs::fingerprint_sha256(&ca.cert_pem).unwrap();
        let script = script_for("10.0.0.5:5001", &ca.cert_pem, &fp).unwrap();
        assert!(script.contains("'/etc/docker/certs.d/10.0.0.5:5001/ca.crt'"), "{script}");
        assert!(script.contains(&format!("FINGERPRINT='{fp}'")));
        // A Host header without a port is HTTPS's default port, which image names leave out.
        let default_port = script_for("reg.example.com", &ca.cert_pem, &fp).unwrap();
        assert!(default_port.contains("'/etc/docker/certs.d/reg.example.com:443/ca.crt'"));
        assert!(default_port.contains("'/etc/docker/certs.d/reg.example.com/ca.crt'"));
        let v6 = script_for("[fe80::1]:5000", &ca.cert_pem, &fp).unwrap();
        assert!(v6.contains("'/etc/docker/certs.d/[fe80::1]:5000/ca.crt'"));
        assert!(script_for("[fe80::1]", &ca.cert_pem, &fp).unwrap().contains("[fe80::1]:443"));
        assert!(script_for("bad host!", &ca.cert_pem, &fp).is_none());
    }
}
