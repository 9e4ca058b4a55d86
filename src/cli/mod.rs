//! The command line: one file per subcommand.

pub mod cert;
pub mod config;
pub mod control;
pub mod doctor;
pub mod du;
pub mod entrypoint;
pub mod gc;
pub mod healthcheck;
pub mod htpasswd;
pub mod kube;
pub mod serve;
pub mod token;
pub mod trust;

use clap::{CommandFactory, Parser, Subcommand};
use std::ffi::OsString;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "wharf",
    version,
    about = "A private container image registry (OCI Distribution / Docker Registry v2)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the registry.
    Serve(serve::ServeArgs),
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Make a CA and the registry's TLS certificates; explain what clients reject about a certificate.
    #[command(subcommand)]
    Cert(cert::CertCommand),
    /// Manage htpasswd files (bcrypt; read by registry:2 and Apache too). Apache's command line
    /// works as well: `wharf htpasswd -Bbn USER PASS`, `wharf htpasswd -Bc FILE USER`.
    #[command(subcommand)]
    Htpasswd(htpasswd::HtpasswdCommand),
    /// The signing key of wharf's own token server: show it, rotate it.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Make Docker, containerd, podman and the system store on this machine trust a registry's CA.
    Trust(trust::TrustArgs),
    /// Diagnose a client's connection to a registry step by step, with the fix for each failure.
    Doctor(doctor::DoctorArgs),
    /// Run the registry in Kubernetes: manifests, kustomize base, pull secrets, node trust.
    #[command(subcommand)]
    Kube(kube::KubeCommand),
    /// Disk usage per repository: bytes it alone holds, bytes shared with others, tags, last push and pull.
    Du(du::DuArgs),
    /// Delete blobs and manifests nothing references (registry:2's command line), through the
    /// running server when there is one.
    GarbageCollect(gc::GcArgs),
    /// Exit 0 when the local server answers GET /v2/ (the container image's health check).
    Healthcheck(healthcheck::HealthcheckArgs),
}

/// The binary answers to other names in the container image: `htpasswd` is Apache's command
/// line, the entrypoint follows registry:2's entrypoint rules, and `registry` (registry:2's
/// program name) is wharf as run from the entrypoint.
pub fn main() -> ExitCode {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    let program = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut from_entrypoint = program == "registry";
    if program == "htpasswd" {
        return htpasswd::apache::main(&args[1..]);
    }
    if entrypoint::NAMES.contains(&program.as_str()) {
        let commands: Vec<String> = Cli::command().get_subcommands().map(|c| c.get_name().to_string()).collect();
        let commands: Vec<&str> = commands.iter().map(String::as_str).collect();
        match entrypoint::plan(&args[1..], &commands) {
            entrypoint::Plan::Exec(command) => return entrypoint::exec(&command),
            entrypoint::Plan::Wharf(rest) => {
                args = std::iter::once(OsString::from("wharf")).chain(rest).collect();
                from_entrypoint = true;
            }
        }
    }
    if args.get(1).is_some_and(|a| a == "htpasswd") && htpasswd::apache::is_apache_form(&args[2..], htpasswd::SUBCOMMANDS) {
        return htpasswd::apache::main(&args[2..]);
    }
    let cli = Cli::parse_from(args);
    if let (true, Command::Serve(serve_args)) = (from_entrypoint, &cli.command) {
        entrypoint::before_serve(serve_args);
    }
    let result = match cli.command {
        Command::Cert(cmd) => cert::run(cmd),
        Command::Serve(args) => serve::run(args),
        Command::Config(cmd) => config::run(cmd),
        Command::Htpasswd(cmd) => htpasswd::run(cmd),
        Command::Token(cmd) => token::run(cmd),
        Command::Trust(args) => trust::run(args),
        Command::Doctor(args) => doctor::run(args),
        Command::Kube(cmd) => kube::run(cmd),
        Command::Healthcheck(args) => healthcheck::run(args),
        Command::Du(args) => du::run(args),
        Command::GarbageCollect(args) => gc::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wharf: {e:#}");
            ExitCode::FAILURE
        }
    }
}
