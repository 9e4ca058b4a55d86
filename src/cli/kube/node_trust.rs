//! `wharf kube node-trust`: what the node-trust DaemonSet runs on every node, with the node's
//! /etc mounted under `--root`. It is `wharf trust REGISTRY --ca FILE --root DIR` for each
//! registry (the same code, so a node ends up exactly as after `wharf trust` there), run on
//! start and again whenever the CA file changes (a Secret volume is updated in place when the
//! Secret changes), plus the registry's names in /etc/hosts. On SIGTERM — the DaemonSet
//! deleted, or the pod replaced — it removes what it installed, so uninstalling leaves the
//! nodes as they were; a replacement pod installs it again on start.

use crate::cli::trust::{self, TrustArgs};
use crate::kube::hosts;
use anyhow::{bail, Context};
use clap::Parser;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct NodeTrustArgs {
    /// The registries to trust, as `wharf trust` takes them (HOST:PORT).
    #[arg(required = true, value_name = "REGISTRY")]
    pub registries: Vec<String>,
    /// The CA certificate to install (the mounted Secret's ca.crt).
    #[arg(long, value_name = "FILE")]
    pub ca: PathBuf,
    /// The node's root filesystem as mounted in the container.
    #[arg(long, value_name = "DIR", default_value = crate::kube::HOST_ROOT)]
    pub root: PathBuf,
    /// Map HOST to IP in the node's /etc/hosts (repeatable).
    #[arg(long = "hosts-entry", value_name = "HOST=IP")]
    pub hosts_entries: Vec<String>,
    /// Seconds between checks of the CA file.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub interval: u64,
    /// Install once and exit, without watching or removing.
    #[arg(long, conflicts_with = "remove")]
    pub once: bool,
    /// Remove what node-trust installed and exit.
    #[arg(long)]
    pub remove: bool,
}

/// `wharf trust`'s own argument parser, so its options are checked the same way.
#[derive(Parser)]
struct TrustCommand {
    #[command(flatten)]
    args: TrustArgs,
}

pub fn run(args: NodeTrustArgs) -> anyhow::Result<()> {
    let entries = parse_entries(&args.hosts_entries)?;
    if args.remove {
        return remove(&args);
    }
    if args.once {
        let ca = read_ca(&args.ca)?.with_context(|| format!("{} does not exist", args.ca.display()))?;
        install(&args, &ca, &entries)?;
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(watch(&args, &entries))?;
    remove(&args)
}

/// Installs on every change of the CA until SIGTERM or SIGINT.
async fn watch(args: &NodeTrustArgs, entries: &[(String, IpAddr)]) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    let mut tick = tokio::time::interval(Duration::from_secs(args.interval.max(1)));
    let (mut installed, mut waiting_said) = (None::<String>, false);
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = tick.tick() => {}
        }
        match read_ca(&args.ca) {
            Ok(None) => {
                if !waiting_said {
                    println!("wharf: waiting for {} (the TLS Secret's ca.crt)", args.ca.display());
                    waiting_said = true;
                }
            }
            Ok(Some(ca)) if installed.as_deref() != Some(&ca) => {
                if installed.is_some() {
                    println!("wharf: {} changed: installing the new CA", args.ca.display());
                }
                // A failure (a read-only /etc, a CA that does not match the registry) is
                // reported and tried again on the next tick rather than crash-looping the pod.
                match install(args, &ca, entries) {
                    Ok(()) => installed = Some(ca),
                    Err(e) => eprintln!("wharf: {e:#}; trying again in {}s", args.interval),
                }
            }
            Ok(Some(_)) => {
                // Someone may have edited /etc/hosts: put the entries back.
                if let Err(e) = hosts::apply(&args.root, entries) {
                    eprintln!("wharf: {e:#}");
                }
            }
            Err(e) => eprintln!("wharf: {e:#}"),
        }
    }
    println!("wharf: stopping: removing what node-trust installed");
    Ok(())
}

/// The CA file's text, or None while the Secret has no ca.crt yet.
fn read_ca(path: &Path) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) if text.trim().is_empty() => Ok(None),
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn install(args: &NodeTrustArgs, ca_pem: &str, entries: &[(String, IpAddr)]) -> anyhow::Result<()> {
    // The CA comes from the cluster's Secret, which is what this node is told to trust: its
    // own fingerprint is the confirmation `wharf trust` asks for.
    let fingerprint = crate::tls::certs::fingerprint_sha256(ca_pem).context("the CA file")?;
    let ca = args.ca.display().to_string();
    let root = args.root.display().to_string();
    let mut failed = Vec::new();
    for registry in &args.registries {
        let argv = ["wharf trust", registry, "--ca", &ca, "--fingerprint", &fingerprint, "--root", &root];
        if let Err(e) = run_trust(&argv) {
            eprintln!("wharf: {registry}: {e:#}");
            failed.push(registry.as_str());
        }
    }
    if hosts::apply(&args.root, entries)? {
        for (host, ip) in entries {
            println!("{:<11}{host} -> {ip} in {}", "hosts", args.root.join(hosts::HOSTS).display());
        }
    }
    if !failed.is_empty() {
        bail!("trusting {} failed", failed.join(", "));
    }
    Ok(())
}

fn remove(args: &NodeTrustArgs) -> anyhow::Result<()> {
    let root = args.root.display().to_string();
    let mut failed = Vec::new();
    for registry in &args.registries {
        if let Err(e) = run_trust(&["wharf trust", registry, "--remove", "--root", &root]) {
            eprintln!("wharf: {registry}: {e:#}");
            failed.push(registry.as_str());
        }
    }
    if hosts::apply(&args.root, &[])? {
        println!(
            "{:<11}removed wharf's entries from {}",
            "hosts",
            args.root.join(hosts::HOSTS).display()
        );
    }
    if !failed.is_empty() {
        bail!("removing {} failed", failed.join(", "));
    }
    Ok(())
}

/// `wharf trust` with these arguments. It runs on a thread of its own: it starts its own async
/// runtime, which cannot nest in the watcher's.
fn run_trust(argv: &[&str]) -> anyhow::Result<()> {
    let cmd = TrustCommand::try_parse_from(argv).map_err(|e| anyhow::anyhow!("{e}"))?;
    std::thread::scope(|s| s.spawn(|| trust::run(cmd.args)).join()).unwrap_or_else(|_| bail!("wharf trust panicked"))
}

fn parse_entries(raw: &[String]) -> anyhow::Result<Vec<(String, IpAddr)>> {
    let mut entries = Vec::new();
    for e in raw {
        let Some((host, ip)) = e.split_once('=') else {
            bail!("--hosts-entry {e:?}: give HOST=IP");
        };
        if ip.starts_with("$(") {
            // Kubernetes leaves $(NAME_SERVICE_HOST) as it is when the Service did not exist
            // when the pod was created.
            bail!(
                "--hosts-entry {e}: {ip} was not expanded: the registry's Service did not exist when this pod started. \
                 Apply the Service, then delete this pod so the DaemonSet starts it again."
            );
        }
        let ip: IpAddr = ip
            .parse()
            .with_context(|| format!("--hosts-entry {e:?}: {ip:?} is not an IP address"))?;
        crate::tls::certs::validate_dns_name(host).map_err(|err| anyhow::anyhow!("--hosts-entry {e:?}: {err}"))?;
        entries.push((host.to_ascii_lowercase(), ip));
    }
    Ok(entries)
}
