//! Crash-safe file operations. The rule everywhere: write a temporary file on the same
//! filesystem, fsync it, rename it into place, fsync the directory. A reader therefore sees the
//! old content or the new, never a torn file, and a rename that returned is on disk.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// fsync a directory so that entries created or renamed in it survive a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir` and any missing parents, fsyncing each parent that gained an entry, so the new
/// directories themselves survive a crash.
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dir_all(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {
            if let Some(parent) = dir.parent() {
                sync_dir(parent)?;
            }
            Ok(())
        }
        // Another writer made it first: fine, it fsyncs the parent itself.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// A fresh name for staging in the temporary directory. It starts with the creation time in
/// milliseconds, so leftovers of a crash can be aged by name alone (a directory renamed into the
/// temporary area keeps its old mtime).
pub fn temp_name() -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!("{millis}-{}.tmp", uuid::Uuid::new_v4().simple())
}

/// When a `temp_name` was made, if `name` is one.
pub fn temp_name_created(name: &str) -> Option<std::time::SystemTime> {
    let millis: u64 = name.split_once('-')?.0.parse().ok()?;
    std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_millis(millis))
}

/// Atomically replaces `target` with `content`, using `tmp_dir` (same filesystem) for staging.
/// The target's directories are made only once the content is safely staged, so a write that
/// fails (a full disk) leaves no empty directory behind where the target would have been.
pub fn write_file(tmp_dir: &Path, target: &Path, content: &[u8]) -> io::Result<()> {
    let dir = target.parent().ok_or_else(|| io::Error::other("target has no parent directory"))?;
    create_dir_all(tmp_dir)?;
    let tmp = tmp_dir.join(temp_name());
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(content)?;
        f.sync_all()?;
        create_dir_all(dir)?;
        fs::rename(&tmp, target)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Moves a file that has already been fsynced into place and makes the rename durable.
pub fn rename_into(src: &Path, target: &Path) -> io::Result<()> {
    let dir = target.parent().ok_or_else(|| io::Error::other("target has no parent directory"))?;
    create_dir_all(dir)?;
    fs::rename(src, target)?;
    sync_dir(dir)
}

/// Removes a directory tree if it exists; true if it did. The parent is fsynced so the removal
/// is not undone by a crash.
pub fn remove_dir_all(dir: &Path) -> io::Result<bool> {
    match fs::remove_dir_all(dir) {
        Ok(()) => {
            if let Some(parent) = dir.parent() {
                sync_dir(parent)?;
            }
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_file_replaces_atomically_and_leaves_no_temp() {
        let t = tempfile::tempdir().unwrap();
        let tmp = t.path().join("tmp");
        let target = t.path().join("a/b/link");
        write_file(&tmp, &target, b"one").unwrap();
        write_file(&tmp, &target, b"two").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"two");
        assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0);
    }

    #[test]
    fn temp_names_carry_their_creation_time() {
        let before = std::time::SystemTime::now() - std::time::Duration::from_millis(1);
        let created = temp_name_created(&temp_name()).expect("a temp name has a time");
        assert!(created >= before && created <= std::time::SystemTime::now());
        assert_eq!(temp_name_created("0123abcd.tmp"), None);
    }

    #[test]
    fn remove_reports_whether_it_existed() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("x/y");
        create_dir_all(&d).unwrap();
        assert!(remove_dir_all(&d).unwrap());
        assert!(!remove_dir_all(&d).unwrap());
    }
}
