//! `wharf config check`: print the effective configuration, warn about what wharf ignores,
//! check that every file it names can be read, and that the storage can be used: a
//! filesystem root written to, an S3 bucket reached, written, read back and cleaned (see
//! [`crate::store::object::probe`]).

use crate::config::{Config, ObjectStorage};
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
    let problems = file_problems(&loaded.config);
    for p in &problems {
        writeln!(err, "wharf: error: {p}")?;
    }
    if !problems.is_empty() {
        anyhow::bail!(
            "{} file{} named by the configuration cannot be used",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" }
        );
    }
    match storage_check(&loaded.config) {
        Ok(done) => writeln!(err, "wharf: storage: {done}")?,
        Err(e) => {
            writeln!(err, "wharf: error: storage: {e:#}")?;
            anyhow::bail!("the storage cannot be used");
        }
    }
    Ok(())
}

/// How long each request to the bucket may take, its retry included.
const BUCKET_CHECK_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Uses the storage as `serve` would, and says what was done.
fn storage_check(cfg: &Config) -> anyhow::Result<String> {
    let Some(object) = cfg.storage.object() else {
        return filesystem_check(&cfg.root_directory());
    };
    let probe = crate::store::object::probe::BucketProbe::new(object, BUCKET_CHECK_LIMIT)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let key = runtime.block_on(probe.read_write())?;
    let endpoint = match object {
        ObjectStorage::S3(s3) if s3.regionendpoint.is_empty() => "AWS".to_string(),
        ObjectStorage::S3(s3) => s3.regionendpoint.clone(),
        ObjectStorage::Azure(a) => crate::store::object::azure::service_url(a),
    };
    Ok(format!(
        "{} at {endpoint}: listed, wrote, read back and deleted {key}",
        object.shown()
    ))
}

/// The root is written to (a file made and removed); a root not made yet must be creatable
/// in the nearest directory that exists, as `serve` makes it.
fn filesystem_check(root: &Path) -> anyhow::Result<String> {
    let existing = root.ancestors().find(|p| p.exists()).unwrap_or(Path::new("."));
    if !existing.is_dir() {
        anyhow::bail!("filesystem root {}: {} is not a directory", root.display(), existing.display());
    }
    let probe = existing.join(format!(".wharf-config-check-{}", std::process::id()));
    std::fs::write(&probe, b"probe\n")
        .map_err(|e| anyhow::anyhow!("filesystem root {}: {} cannot be written: {e}", root.display(), existing.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(if existing == root {
        format!("filesystem root {} is writable", root.display())
    } else {
        format!(
            "filesystem root {} does not exist yet; {} is writable, serve will make it",
            root.display(),
            existing.display()
        )
    })
}

/// The files the configuration names, by key.
fn named_files(cfg: &Config) -> Vec<(String, PathBuf)> {
    let mut files = Vec::new();
    if let Some(t) = &cfg.http.tls {
        for (key, value) in [("certificate", &t.certificate), ("key", &t.key), ("cafile", &t.cafile)] {
            files.push((format!("http.tls.{key}"), PathBuf::from(value)));
        }
        for (i, ca) in t.clientcas.iter().enumerate() {
            files.push((format!("http.tls.clientcas.{i}"), PathBuf::from(ca)));
        }
    }
    if let Some(h) = &cfg.auth.htpasswd {
        files.push(("auth.htpasswd.path".into(), h.path.clone()));
    }
    if let Some(t) = &cfg.auth.token {
        files.push(("auth.token.rootcertbundle".into(), t.rootcertbundle.clone()));
        files.push(("auth.token.htpasswd".into(), t.htpasswd.clone()));
    }
    files.retain(|(_, p)| !p.as_os_str().is_empty());
    files
}

/// Each named file that does not exist, is not a regular file, or cannot be read, as
/// `key: path: why`.
fn file_problems(cfg: &Config) -> Vec<String> {
    named_files(cfg)
        .into_iter()
        .filter_map(|(key, path)| {
            let why = match std::fs::metadata(&path) {
                Err(e) => e.to_string(),
                Ok(m) if m.is_dir() => "is a directory, not a file".into(),
                Ok(_) => match std::fs::File::open(&path).and_then(|mut f| std::io::Read::read(&mut f, &mut [0u8; 1])) {
                    Ok(_) => return None,
                    Err(e) => format!("cannot be read: {e}"),
                },
            };
            Some(format!("{key}: {}: {why}", path.display()))
        })
        .collect()
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
