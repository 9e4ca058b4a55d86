//! `wharf kube`: the registry in a Kubernetes cluster without a step on each node — the
//! manifests, the kustomize base, `imagePullSecrets`, and the node-trust loop its DaemonSet runs.

mod node_trust;

use crate::kube::pull_secret::{self, PullSecret};
use crate::kube::{self, secrets, Options};
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(Subcommand, Debug)]
pub enum KubeCommand {
    /// Print every object the registry needs, for `kubectl apply -f -`.
    Manifests(ManifestsArgs),
    /// Write the same objects as a kustomize base (what deploy/kubernetes/ holds).
    Base(BaseArgs),
    /// Create (or reuse) the files the Secrets carry: CA, certificate, htpasswd.
    Secrets(SecretsArgs),
    /// Print the `kubernetes.io/dockerconfigjson` Secret pods name in imagePullSecrets.
    PullSecret(PullSecretArgs),
    /// Keep a node trusting the registry (what the node-trust DaemonSet runs).
    NodeTrust(node_trust::NodeTrustArgs),
}

#[derive(Args, Debug, Clone)]
pub struct Deployment {
    /// Base name of the objects.
    #[arg(long, default_value = "wharf")]
    pub name: String,
    /// Namespace to deploy into.
    #[arg(long, short = 'n', default_value = "wharf")]
    pub namespace: String,
    /// The wharf image (it runs both the registry and the node-trust loop).
    #[arg(long, default_value = "wharf:latest")]
    pub image: String,
    /// Another host name clients use for the registry (repeatable): in the certificate,
    /// trusted on every node and mapped to the Service there.
    #[arg(long = "host", value_name = "NAME")]
    pub hosts: Vec<String>,
    /// Also expose the registry on this port of every node (NodePort), for machines outside the cluster.
    #[arg(long, value_name = "PORT")]
    pub node_port: Option<u16>,
    /// StorageClass of the data volume (default: the cluster's default class).
    #[arg(long, value_name = "CLASS")]
    pub storage_class: Option<String>,
    /// Size of the data volume.
    #[arg(long, value_name = "SIZE", default_value = "10Gi")]
    pub storage_size: String,
    /// Have cert-manager issue the certificate: KIND/NAME of an Issuer or ClusterIssuer.
    #[arg(long, value_name = "KIND/NAME")]
    pub cert_manager_issuer: Option<String>,
}

impl Deployment {
    fn options(&self) -> anyhow::Result<Options> {
        let cert_manager_issuer = match &self.cert_manager_issuer {
            None => None,
            Some(s) => match s.split_once('/') {
                Some((kind, name)) => Some((kind.to_string(), name.to_string())),
                None => Some(("Issuer".to_string(), s.clone())),
            },
        };
        let o = Options {
            name: self.name.clone(),
            namespace: self.namespace.clone(),
            image: self.image.clone(),
            extra_hosts: self.hosts.iter().map(|h| h.trim_end_matches('.').to_ascii_lowercase()).collect(),
            node_port: self.node_port,
            storage_class: self.storage_class.clone(),
            storage_size: self.storage_size.clone(),
            cert_manager_issuer,
        };
        o.validate()?;
        Ok(o)
    }
}

#[derive(Args, Debug)]
pub struct ManifestsArgs {
    #[command(flatten)]
    pub deployment: Deployment,
    /// Directory with the Secrets' files (created on first use; keep it: it holds the CA key).
    #[arg(long, value_name = "DIR", default_value = "wharf-kube")]
    pub secrets_dir: PathBuf,
}

#[derive(Args, Debug)]
pub struct BaseArgs {
    #[command(flatten)]
    pub deployment: Deployment,
    /// Directory to write the base to.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

#[derive(Args, Debug)]
pub struct SecretsArgs {
    #[command(flatten)]
    pub deployment: Deployment,
    /// Directory for the files (a kustomize base reads them from its secrets/).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
}

#[derive(Args, Debug)]
pub struct PullSecretArgs {
    /// The registry as image references name it: HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    pub server: String,
    #[arg(long, value_name = "USER")]
    pub username: String,
    /// Read the password from standard input (it never appears on a command line).
    #[arg(long, required = true)]
    pub password_stdin: bool,
    #[arg(long, value_name = "EMAIL")]
    pub email: Option<String>,
    /// Name of the Secret.
    #[arg(long, default_value = "wharf-pull")]
    pub name: String,
    /// Namespace of the Secret (the pods' namespace; kubectl's current one when omitted).
    #[arg(long, short = 'n', value_name = "NS")]
    pub namespace: Option<String>,
    /// yaml, or json as `kubectl create secret docker-registry -o json` prints it.
    #[arg(long, short = 'o', default_value = "yaml", value_parser = ["yaml", "json"])]
    pub output: String,
}

pub fn run(cmd: KubeCommand) -> anyhow::Result<()> {
    match cmd {
        KubeCommand::Manifests(args) => manifests(args),
        KubeCommand::Base(args) => base(args),
        KubeCommand::Secrets(args) => make_secrets(args),
        KubeCommand::PullSecret(args) => pull_secret(args),
        KubeCommand::NodeTrust(args) => node_trust::run(args),
    }
}

fn manifests(args: ManifestsArgs) -> anyhow::Result<()> {
    let o = args.deployment.options()?;
    let prepared = secrets::prepare(&args.secrets_dir, &o, o.cert_manager_issuer.is_none())?;
    report_secrets(&prepared, &o);
    print!("{}", kube::stream(&kube::documents(&o, Some(&prepared.files))));
    Ok(())
}

/// Notes go to standard error: standard output is the YAML piped into kubectl.
fn report_secrets(p: &secrets::Prepared, o: &Options) {
    for note in &p.notes {
        eprintln!("wharf: {note}");
    }
    if let Some(pw) = &p.new_password {
        eprintln!("wharf: created user admin with password {pw}   (shown once; change it with: wharf htpasswd set)");
    }
    if let Some(fp) = &p.ca_fingerprint {
        eprintln!("wharf: CA fingerprint (SHA-256): {fp}");
    }
    eprintln!(
        "wharf: nodes pull from {}:{}; outside the cluster: wharf trust HOST:PORT --ca CA.crt",
        o.node_host(),
        kube::REGISTRY_PORT
    );
}

fn base(args: BaseArgs) -> anyhow::Result<()> {
    let o = args.deployment.options()?;
    write_base(&o, &args.out)?;
    println!("wrote the kustomize base to {}", args.out.display());
    println!(
        "next: wharf kube secrets --dir {}/secrets && kubectl apply -k {}",
        args.out.display(),
        args.out.display()
    );
    Ok(())
}

/// The base's files; `secrets/` is left to the operator (and ignored by git).
pub fn write_base(o: &Options, out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let docs = kube::documents(o, None);
    for d in &docs {
        std::fs::write(out.join(d.file), &d.yaml).with_context(|| format!("writing {}", d.file))?;
    }
    std::fs::write(out.join("kustomization.yaml"), kube::kustomization(o, &docs)).context("writing kustomization.yaml")?;
    std::fs::write(
        out.join(".gitignore"),
        "# The Secrets' files: the CA key and the password hashes stay out of git.\nsecrets/\n",
    )
    .context("writing .gitignore")?;
    Ok(())
}

fn make_secrets(args: SecretsArgs) -> anyhow::Result<()> {
    let o = args.deployment.options()?;
    let prepared = secrets::prepare(&args.dir, &o, o.cert_manager_issuer.is_none())?;
    report_secrets(&prepared, &o);
    Ok(())
}

fn pull_secret(args: PullSecretArgs) -> anyhow::Result<()> {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .context("reading the password from standard input")?;
    let secret = PullSecret {
        name: args.name,
        namespace: args.namespace,
        server: args.server,
        username: args.username,
        password: pull_secret::trim_password(&input).to_string(),
        email: args.email,
    };
    secret.validate()?;
    if secret.password.contains('\n') {
        bail!("the password read from standard input spans several lines");
    }
    match args.output.as_str() {
        "json" => print!("{}", secret.to_json()),
        _ => print!("{}", secret.to_yaml()),
    }
    Ok(())
}
