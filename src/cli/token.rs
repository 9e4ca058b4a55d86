//! `wharf token`: the signing key of wharf's own token server (`auth.token.htpasswd`).
//!
//! The key lives in a file (`auth.token.signingkey`, by default
//! `<storage root>/wharf/token-signing.key`), made on the first start, so a restart keeps every
//! token valid. It changes only when asked: `wharf token rotate-key` writes a new key, and the
//! server uses it from its next SIGHUP or restart on, refusing every token signed before.

use crate::auth::token::TokenIssuer;
use crate::config::{self, Config};
use anyhow::Context;
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Replace the token signing key. Send the server SIGHUP (or restart it) afterwards: tokens
    /// signed with the old key are refused from then on, and clients log in again.
    RotateKey(KeyArgs),
    /// Print where the signing key is and its key ID (the `kid` of the tokens it signs).
    ShowKey(KeyArgs),
}

#[derive(Args, Debug)]
pub struct KeyArgs {
    /// registry:2 configuration file of the server (default: $REGISTRY_CONFIGURATION_PATH).
    pub config: Option<PathBuf>,
    /// Storage root of the server (overrides storage.filesystem.rootdirectory).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// The key file itself (overrides auth.token.signingkey and the storage root).
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
}

pub fn run(cmd: TokenCommand) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::RotateKey(args) => {
            let path = key_path_of(&args)?;
            ensure_private_dir(&path)?;
            let issuer = TokenIssuer::rotate(&path)?;
            println!("wharf: new token signing key in {} (key ID {})", path.display(), issuer.key_id());
            println!("wharf: send the server SIGHUP or restart it; tokens signed with the old key are refused from then on");
            Ok(())
        }
        TokenCommand::ShowKey(args) => {
            let path = key_path_of(&args)?;
            let issuer = load_or_create(&path)?;
            println!("{} {}", path.display(), issuer.key_id());
            Ok(())
        }
    }
}

fn key_path_of(args: &KeyArgs) -> anyhow::Result<PathBuf> {
    if let Some(key) = &args.key {
        return Ok(key.clone());
    }
    let mut cfg = config::load(args.config.as_deref())?.config;
    if let Some(root) = &args.root {
        cfg.storage.filesystem = Some(config::FilesystemStorage {
            rootdirectory: root.clone(),
        });
    }
    Ok(signing_key_path(&cfg))
}

/// Where the token server's signing key is: `auth.token.signingkey`, else beside wharf's other
/// files under the storage root (registry:2 never looks there).
pub fn signing_key_path(cfg: &Config) -> PathBuf {
    match cfg.auth.token.as_ref().map(|t| &t.signingkey).filter(|p| !p.as_os_str().is_empty()) {
        Some(p) => p.clone(),
        None => crate::autosecure::dir_for(&cfg.root_directory()).join("token-signing.key"),
    }
}

/// The key at `path`, made (with its directory) on first use.
pub fn load_or_create(path: &Path) -> anyhow::Result<TokenIssuer> {
    ensure_private_dir(path)?;
    Ok(TokenIssuer::load_or_create(path)?)
}

/// The key's directory, made private (0700) if it has to be made.
fn ensure_private_dir(key: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let Some(dir) = key.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) else {
        return Ok(());
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}
