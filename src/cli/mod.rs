//! The command line: one file per subcommand.

pub mod cert;
pub mod config;
pub mod doctor;
pub mod htpasswd;
pub mod kube;
pub mod serve;
pub mod token;
pub mod trust;

use clap::{Parser, Subcommand};
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
    /// Manage htpasswd files (bcrypt; read by registry:2 and Apache too).
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
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Cert(cmd) => cert::run(cmd),
        Command::Serve(args) => serve::run(args),
        Command::Config(cmd) => config::run(cmd),
        Command::Htpasswd(cmd) => htpasswd::run(cmd),
        Command::Token(cmd) => token::run(cmd),
        Command::Trust(args) => trust::run(args),
        Command::Doctor(args) => doctor::run(args),
        Command::Kube(cmd) => kube::run(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wharf: {e:#}");
            ExitCode::FAILURE
        }
    }
}
