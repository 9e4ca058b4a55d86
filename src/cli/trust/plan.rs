//! What `wharf trust` installs for a registry, and installing or removing it.
//!
//! Every runtime has its own place for a registry's CA, keyed by the registry's name as image
//! references write it (`HOST:PORT`):
//! - Docker (and balenaEngine): `/etc/docker/certs.d/HOST:PORT/ca.crt`, read on every
//!   connection, so no restart is needed;
//! - containerd: `/etc/containerd/certs.d/HOST:PORT/` with `hosts.toml` naming the CA;
//! - podman, CRI-O, skopeo, buildah (containers/image): `/etc/containers/certs.d/HOST:PORT/ca.crt`;
//! - the system store, for everything else (curl, Go programs, Docker's fallback).

use super::containerd;
use super::record::Record;
use super::target::Target;
use clap::ValueEnum;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    /// /etc/docker/certs.d (Docker, balenaEngine).
    Docker,
    /// /etc/containerd/certs.d (containerd's CRI for Kubernetes, ctr, nerdctl).
    Containerd,
    /// /etc/containers/certs.d (podman, CRI-O, skopeo, buildah).
    #[value(alias = "podman", alias = "cri-o", alias = "crio")]
    Containers,
    /// The operating system's CA store (update-ca-certificates / update-ca-trust).
    System,
}

impl Runtime {
    pub fn label(self) -> &'static str {
        match self {
            Runtime::Docker => "docker",
            Runtime::Containerd => "containerd",
            Runtime::Containers => "containers",
            Runtime::System => "system",
        }
    }
}

pub const FILE_MODE: u32 = 0o644;
pub const DIR_MODE: u32 = 0o755;

/// One file `wharf trust` owns.
#[derive(Debug, Clone)]
pub struct FileSpec {
    pub runtime: Runtime,
    /// Absolute path on the system being configured (before any `--root`).
    pub path: PathBuf,
    pub content: String,
    /// Files shared with the user (hosts.toml) carry this line: without it, wharf neither
    /// overwrites nor deletes them.
    pub marker: Option<&'static str>,
    /// The parent directory exists only for this registry: removed with the last file in it.
    pub own_dir: bool,
}

/// A system CA store layout: its anchors directory (present when the store is) and the
/// command that rebuilds the bundle programs read.
#[derive(Debug, Clone, Copy)]
pub struct Store {
    pub distro: &'static str,
    pub anchors: &'static str,
    pub update: &'static str,
}

pub const STORES: &[Store] = &[
    Store {
        distro: "Debian/Ubuntu/Alpine",
        anchors: "/usr/local/share/ca-certificates",
        update: "update-ca-certificates",
    },
    Store {
        distro: "RHEL/Fedora/CentOS",
        anchors: "/etc/pki/ca-trust/source/anchors",
        update: "update-ca-trust",
    },
    Store {
        distro: "SUSE",
        anchors: "/etc/pki/trust/anchors",
        update: "update-ca-certificates",
    },
    Store {
        distro: "Arch",
        anchors: "/etc/ca-certificates/trust-source/anchors",
        update: "update-ca-trust",
    },
];

/// Everything to install for one registry. `ca_pem` is empty when only removing.
pub struct Plan {
    pub files: Vec<FileSpec>,
    /// Each known store with the file it would receive; which exist is decided on the target.
    pub stores: Vec<(Store, FileSpec)>,
}

impl Plan {
    pub fn new(target: &Target, ca_pem: &str, runtimes: &[Runtime]) -> Plan {
        let mut files = Vec::new();
        for name in target.names() {
            let ca_in = |runtime, dir: &str| FileSpec {
                runtime,
                path: Path::new(dir).join(&name).join("ca.crt"),
                content: ca_pem.to_string(),
                marker: None,
                own_dir: true,
            };
            if runtimes.contains(&Runtime::Docker) {
                files.push(ca_in(Runtime::Docker, "/etc/docker/certs.d"));
            }
            if runtimes.contains(&Runtime::Containerd) {
                let ca = ca_in(Runtime::Containerd, containerd::CERTS_D);
                let hosts = FileSpec {
                    runtime: Runtime::Containerd,
                    path: Path::new(containerd::CERTS_D).join(&name).join("hosts.toml"),
                    content: containerd::hosts_toml(target, &ca.path),
                    marker: Some(containerd::MARKER),
                    own_dir: true,
                };
                files.push(ca);
                files.push(hosts);
            }
            if runtimes.contains(&Runtime::Containers) {
                files.push(ca_in(Runtime::Containers, "/etc/containers/certs.d"));
            }
        }
        let stores = if runtimes.contains(&Runtime::System) {
            STORES
                .iter()
                .map(|s| {
                    let spec = FileSpec {
                        runtime: Runtime::System,
                        path: Path::new(s.anchors).join(format!("{}.crt", target.file_stem())),
                        content: ca_pem.to_string(),
                        marker: None,
                        own_dir: false,
                    };
                    (*s, spec)
                })
                .collect()
        } else {
            Vec::new()
        };
        Plan { files, stores }
    }
}

/// Where and how to act.
pub struct Ctx {
    /// `--root`, or `/`.
    pub root: PathBuf,
    pub dry_run: bool,
}

impl Ctx {
    /// The real path of `path` on this machine: `path` under the root.
    pub fn real(&self, path: &Path) -> PathBuf {
        self.root.join(path.strip_prefix("/").unwrap_or(path))
    }

    /// Commands like update-ca-certificates only make sense on the running system itself.
    pub fn may_run_commands(&self) -> bool {
        !self.dry_run && self.root == Path::new("/")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Wrote,
    Replaced,
    Unchanged,
    /// Same content, but the mode was not 0644.
    ModeFixed,
    /// Exists and was not written by wharf: left alone.
    Kept,
    Removed,
    /// Removed, and the file wharf had replaced put back.
    Restored,
    Absent,
}

impl Outcome {
    /// The verb for the report line, in the conditional under `--dry-run`.
    pub fn verb(&self, dry_run: bool) -> &'static str {
        match (self, dry_run) {
            (Outcome::Wrote, false) => "wrote",
            (Outcome::Wrote, true) => "would write",
            (Outcome::Replaced, false) => "replaced",
            (Outcome::Replaced, true) => "would replace",
            (Outcome::ModeFixed, false) => "set mode 0644 on",
            (Outcome::ModeFixed, true) => "would set mode 0644 on",
            (Outcome::Removed, false) => "removed",
            (Outcome::Removed, true) => "would remove",
            (Outcome::Restored, false) => "put back the original of",
            (Outcome::Restored, true) => "would put back the original of",
            (Outcome::Unchanged, _) => "unchanged",
            (Outcome::Kept, _) => "left alone (not written by wharf trust)",
            (Outcome::Absent, _) => "absent",
        }
    }
}

/// Writes `spec` unless it is already there; never touches a shared file wharf did not write.
/// What it writes, and the directories it creates, go into `record`; a file of someone else's
/// that it replaces is kept aside first (`NAME.before-wharf`), to be put back on removal.
pub fn install(spec: &FileSpec, ctx: &Ctx, record: &mut Record) -> anyhow::Result<Outcome> {
    let real = ctx.real(&spec.path);
    let outcome = match std::fs::read(&real) {
        Ok(existing) if existing == spec.content.as_bytes() => {
            let mode = std::fs::metadata(&real)?.permissions().mode() & 0o7777;
            if mode == FILE_MODE {
                return Ok(Outcome::Unchanged);
            }
            Outcome::ModeFixed
        }
        Ok(existing) if spec.marker.is_some_and(|m| !contains(&existing, m)) => return Ok(Outcome::Kept),
        Ok(_) => Outcome::Replaced,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Outcome::Wrote,
        Err(e) => return Err(anyhow::anyhow!("reading {}: {e}", real.display())),
    };
    if ctx.dry_run {
        return Ok(outcome);
    }
    if outcome == Outcome::ModeFixed {
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(FILE_MODE))?;
        return Ok(outcome);
    }
    let parent = spec.path.parent().expect("absolute path has a parent");
    let missing: Vec<PathBuf> = parent
        .ancestors()
        .filter(|d| !ctx.real(d).is_dir())
        .map(Path::to_path_buf)
        .collect();
    create_dirs(&ctx.real(parent))?;
    record.add_dirs(missing.into_iter().rev().collect());
    let theirs = outcome == Outcome::Replaced && spec.marker.is_none() && record.wrote(&spec.path).is_none();
    let original = if theirs {
        let name = spec.path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
        let aside = spec.path.with_file_name(format!("{name}.before-wharf"));
        std::fs::rename(&real, ctx.real(&aside)).map_err(|e| anyhow::anyhow!("keeping {} aside: {e}", real.display()))?;
        Some(aside)
    } else {
        None
    };
    write_atomic(&real, spec.content.as_bytes(), FILE_MODE)?;
    record.add_file(&spec.path, original);
    Ok(outcome)
}

/// Deletes `spec` if wharf wrote it: recorded in `record`, or (hosts.toml) carrying wharf's
/// marker; a file it had replaced gets its original back. Everything else stays.
pub fn remove(spec: &FileSpec, ctx: &Ctx, record: &mut Record) -> anyhow::Result<Outcome> {
    let real = ctx.real(&spec.path);
    let existing = match std::fs::read(&real) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            record.forget_file(&spec.path);
            return Ok(Outcome::Absent);
        }
        Err(e) => return Err(anyhow::anyhow!("reading {}: {e}", real.display())),
    };
    let written = record.wrote(&spec.path).cloned();
    let ours = match spec.marker {
        Some(m) => contains(&existing, m),
        None => written.is_some(),
    };
    if !ours {
        return Ok(Outcome::Kept);
    }
    let original = written.and_then(|w| w.original).filter(|o| ctx.real(o).is_file());
    if ctx.dry_run {
        return Ok(if original.is_some() { Outcome::Restored } else { Outcome::Removed });
    }
    let outcome = match original {
        Some(o) => {
            std::fs::rename(ctx.real(&o), &real).map_err(|e| anyhow::anyhow!("putting back {}: {e}", real.display()))?;
            Outcome::Restored
        }
        None => {
            std::fs::remove_file(&real).map_err(|e| anyhow::anyhow!("removing {}: {e}", real.display()))?;
            Outcome::Removed
        }
    };
    record.forget_file(&spec.path);
    Ok(outcome)
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Creates missing directories with mode 0755 whatever the umask.
pub fn create_dirs(dir: &Path) -> anyhow::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dirs(parent)?;
    }
    match std::fs::DirBuilder::new().mode(DIR_MODE).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(anyhow::anyhow!("creating {}: {e}", dir.display())),
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DIR_MODE)).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))
}

/// Temporary file in the same directory, fsync, exact mode, rename: readers (a pulling
/// daemon) see the old file or the new one, never half of one.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().expect("absolute path has a parent");
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.wharf-{:016x}", rand::random::<u64>()));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
        f.write_all(bytes)?;
        // The umask may have narrowed the mode given to open.
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow::anyhow!("writing {}: {e}", path.display())
    })
}

/// Whether `program` is on PATH.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| {
            let p = dir.join(program);
            std::fs::metadata(&p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target::parse("10.0.0.5:5000").unwrap()
    }

    #[test]
    fn plan_paths() {
        let all = [Runtime::Docker, Runtime::Containerd, Runtime::Containers, Runtime::System];
        let plan = Plan::new(&target(), "PEM", &all);
        let paths: Vec<String> = plan.files.iter().map(|f| f.path.display().to_string()).collect();
        assert_eq!(
            paths,
            [
                "/etc/docker/certs.d/10.0.0.5:5000/ca.crt",
                "/etc/containerd/certs.d/10.0.0.5:5000/ca.crt",
                "/etc/containerd/certs.d/10.0.0.5:5000/hosts.toml",
                "/etc/containers/certs.d/10.0.0.5:5000/ca.crt",
            ]
        );
        assert_eq!(
            plan.stores[0].1.path,
            Path::new("/usr/local/share/ca-certificates/wharf-10.0.0.5-5000.crt")
        );
        assert_eq!(
            plan.stores[1].1.path,
            Path::new("/etc/pki/ca-trust/source/anchors/wharf-10.0.0.5-5000.crt")
        );
        let docker_only = Plan::new(&target(), "PEM", &[Runtime::Docker]);
        assert_eq!(docker_only.files.len(), 1);
        assert!(docker_only.stores.is_empty());
        let port_443 = Plan::new(&Target::parse("reg.lan:443").unwrap(), "PEM", &[Runtime::Docker]);
        assert_eq!(port_443.files[1].path, Path::new("/etc/docker/certs.d/reg.lan/ca.crt"));
    }

    #[test]
    fn install_is_idempotent_and_remove_is_exact() {
        let tmp = tempfile::tempdir().unwrap();
        let ctx = Ctx {
            root: tmp.path().to_path_buf(),
            dry_run: false,
        };
        let mut record = Record::default();
        let plan = Plan::new(&target(), "PEM\n", &[Runtime::Docker, Runtime::Containerd]);
        for f in &plan.files {
            assert_eq!(install(f, &ctx, &mut record).unwrap(), Outcome::Wrote);
            assert_eq!(install(f, &ctx, &mut record).unwrap(), Outcome::Unchanged);
        }
        assert_eq!(record.files.len(), 3);
        assert!(record.dirs.contains(&PathBuf::from("/etc/docker")), "{:?}", record.dirs);
        let ca = ctx.real(&plan.files[0].path);
        std::fs::set_permissions(&ca, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(install(&plan.files[0], &ctx, &mut record).unwrap(), Outcome::ModeFixed);
        assert_eq!(std::fs::metadata(&ca).unwrap().permissions().mode() & 0o777, 0o644);
        std::fs::write(&ca, "OLD").unwrap();
        assert_eq!(install(&plan.files[0], &ctx, &mut record).unwrap(), Outcome::Replaced);

        // A hosts.toml someone else wrote is neither replaced nor deleted.
        let hosts = ctx.real(&plan.files[2].path);
        std::fs::write(&hosts, "server = \"https://elsewhere\"\n").unwrap();
        assert_eq!(install(&plan.files[2], &ctx, &mut record).unwrap(), Outcome::Kept);
        assert_eq!(remove(&plan.files[2], &ctx, &mut record).unwrap(), Outcome::Kept);
        assert!(hosts.exists());

        for f in &plan.files[..2] {
            assert_eq!(remove(f, &ctx, &mut record).unwrap(), Outcome::Removed);
            assert_eq!(remove(f, &ctx, &mut record).unwrap(), Outcome::Absent);
        }
        let removed = record.remove_empty_dirs(&ctx);
        assert!(removed.contains(&ctx.real(Path::new("/etc/docker"))), "{removed:?}");
        assert!(!ctx.real(Path::new("/etc/docker")).exists(), "wharf's empty directories go");
        assert!(
            ctx.real(Path::new("/etc/containerd/certs.d/10.0.0.5:5000")).is_dir(),
            "the kept hosts.toml keeps its directory"
        );
    }

    #[test]
    fn a_hand_placed_ca_is_kept_or_put_back() {
        let tmp = tempfile::tempdir().unwrap();
        let ctx = Ctx {
            root: tmp.path().to_path_buf(),
            dry_run: false,
        };
        let plan = Plan::new(&target(), "PEM\n", &[Runtime::Docker]);
        let ca = ctx.real(&plan.files[0].path);
        create_dirs(ca.parent().unwrap()).unwrap();

        // The same CA, placed by hand: unchanged, not recorded, so never removed.
        std::fs::write(&ca, "PEM\n").unwrap();
        std::fs::set_permissions(&ca, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut record = Record::default();
        assert_eq!(install(&plan.files[0], &ctx, &mut record).unwrap(), Outcome::Unchanged);
        assert_eq!(remove(&plan.files[0], &ctx, &mut record).unwrap(), Outcome::Kept);
        assert_eq!(std::fs::read_to_string(&ca).unwrap(), "PEM\n");

        // Another CA placed by hand: replaced, kept aside, and put back on removal.
        std::fs::write(&ca, "HAND\n").unwrap();
        assert_eq!(install(&plan.files[0], &ctx, &mut record).unwrap(), Outcome::Replaced);
        assert_eq!(std::fs::read_to_string(&ca).unwrap(), "PEM\n");
        assert_eq!(remove(&plan.files[0], &ctx, &mut record).unwrap(), Outcome::Restored);
        assert_eq!(std::fs::read_to_string(&ca).unwrap(), "HAND\n");
        assert!(record.files.is_empty());
        assert!(record.remove_empty_dirs(&ctx).is_empty(), "wharf created no directory here");
    }

    #[test]
    fn dirs_get_0755() {
        // (The integration test runs the binary under umask 077 to check the umask is overridden.)
        let tmp = tempfile::tempdir().unwrap();
        create_dirs(&tmp.path().join("a/b/c")).unwrap();
        for d in ["a", "a/b", "a/b/c"] {
            assert_eq!(
                std::fs::metadata(tmp.path().join(d)).unwrap().permissions().mode() & 0o777,
                0o755,
                "{d}"
            );
        }
    }
}
