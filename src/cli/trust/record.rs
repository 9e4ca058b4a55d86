//! What `wharf trust` wrote for one registry, so that `--remove` takes away exactly that: the
//! files it wrote (a file it replaced gets its original back), and the directories it created
//! once they are empty. A `ca.crt` someone put in place by hand is not in the record and stays.
//!
//! One JSON file per registry under [`DIR`] (in /etc, so that a node's /etc mounted into the
//! node-trust DaemonSet carries it too). Paths are as on the configured system (before
//! `--root`).

use super::plan::{self, Ctx};
use super::target::Target;
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const DIR: &str = "/etc/wharf/trust";

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub files: Vec<Written>,
    /// Directories wharf created, parents first.
    pub dirs: Vec<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Written {
    pub path: PathBuf,
    /// Where the file that was there before is kept, to be put back on `--remove`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<PathBuf>,
}

impl Record {
    fn path(target: &Target) -> PathBuf {
        Path::new(DIR).join(format!("{}.json", target.file_stem()))
    }

    /// The record for `target`; empty when there is none (nothing recorded yet).
    pub fn load(ctx: &Ctx, target: &Target) -> anyhow::Result<Record> {
        let real = ctx.real(&Self::path(target));
        match std::fs::read(&real) {
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| format!("reading {}", real.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Record::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", real.display())),
        }
    }

    /// Writes the record, or deletes it (and wharf's empty record directories) when empty.
    pub fn save(&self, ctx: &Ctx, target: &Target) -> anyhow::Result<()> {
        if ctx.dry_run {
            return Ok(());
        }
        let real = ctx.real(&Self::path(target));
        if self.files.is_empty() && self.dirs.is_empty() {
            match std::fs::remove_file(&real) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("removing {}", real.display())),
            }
            for dir in [DIR, "/etc/wharf"] {
                // Only while empty: other registries' records, or the user's files, keep it.
                let _ = std::fs::remove_dir(ctx.real(Path::new(dir)));
            }
            return Ok(());
        }
        let json = serde_json::to_vec_pretty(self).expect("a record serializes");
        if std::fs::read(&real).is_ok_and(|old| old == json) {
            return Ok(());
        }
        plan::create_dirs(real.parent().expect("absolute path"))?;
        plan::write_atomic(&real, &json, 0o644)
    }

    pub fn wrote(&self, path: &Path) -> Option<&Written> {
        self.files.iter().find(|w| w.path == path)
    }

    pub fn add_file(&mut self, path: &Path, original: Option<PathBuf>) {
        if self.wrote(path).is_none() {
            self.files.push(Written {
                path: path.to_path_buf(),
                original,
            });
        }
    }

    pub fn forget_file(&mut self, path: &Path) {
        self.files.retain(|w| w.path != path);
    }

    pub fn add_dirs(&mut self, dirs: Vec<PathBuf>) {
        for d in dirs {
            if !self.dirs.contains(&d) {
                self.dirs.push(d);
            }
        }
    }

    /// Removes the recorded directories that are empty now, deepest first; returns them.
    /// Directories holding a file still recorded stay in the record; ones holding only other
    /// people's files stay on disk and leave the record.
    pub fn remove_empty_dirs(&mut self, ctx: &Ctx) -> Vec<PathBuf> {
        let mut dirs = std::mem::take(&mut self.dirs);
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        let mut removed = Vec::new();
        for d in dirs {
            if self.files.iter().any(|w| w.path.starts_with(&d)) {
                self.dirs.push(d);
                continue;
            }
            let real = ctx.real(&d);
            let empty = std::fs::read_dir(&real).is_ok_and(|mut entries| entries.next().is_none());
            if empty && (ctx.dry_run || std::fs::remove_dir(&real).is_ok()) {
                removed.push(real);
            }
        }
        self.dirs.reverse();
        removed
    }
}
