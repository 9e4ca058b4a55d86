//! `wharf config check`: print the effective configuration.

use clap::Subcommand;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Load the configuration (file, then REGISTRY_* variables), validate it and print the result.
    Check {
        /// Configuration file; defaults to REGISTRY_CONFIGURATION_PATH when set.
        path: Option<PathBuf>,
    },
}

pub fn run(cmd: ConfigCommand) -> anyhow::Result<()> {
    match cmd {
        ConfigCommand::Check { path } => check(path.as_deref(), &mut std::io::stdout().lock(), &mut std::io::stderr().lock()),
    }
}

/// Writes warnings to `err` and the effective configuration, secrets redacted, to `out` as
/// YAML that wharf and registry:2 can read back.
fn check(path: Option<&Path>, out: &mut impl Write, err: &mut impl Write) -> anyhow::Result<()> {
    let loaded = crate::config::load(path)?;
    for warning in &loaded.warnings {
        writeln!(err, "wharf: warning: {warning}")?;
    }
    out.write_all(loaded.config.redacted_yaml().as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_check(yaml: &str) -> (anyhow::Result<()>, String, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yml");
        std::fs::write(&path, yaml).unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let result = check(Some(&path), &mut out, &mut err);
        (result, String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap())
    }

    #[test]
    fn prints_effective_config_and_warnings() {
        let yaml = "version: 0.1\nhttp:\n  addr: :5000\n  secret: topsecret\n  bogus: 1\n";
        let (result, out, err) = run_check(yaml);
        result.unwrap();
        assert!(out.contains("addr: :5000") && out.contains("rootdirectory: ./data"), "{out}");
        assert!(out.contains("secret: <redacted>") && !out.contains("topsecret"), "{out}");
        assert!(err.contains("warning") && err.contains("http.bogus"), "{err}");
    }

    #[test]
    fn invalid_config_fails_naming_the_key() {
        let (result, out, _) = run_check("version: 0.1\nlog:\n  level: loud\n");
        let e = format!("{:#}", result.unwrap_err());
        assert!(e.contains("log.level") && e.contains("loud"), "{e}");
        assert!(out.is_empty());
    }
}
