//! Saved hash states of upload sessions, where registry:2 keeps them:
//! `_uploads/<id>/hashstates/<alg>/<offset>`, each file the state of the digester after the
//! session's first `<offset>` bytes, in Go's `MarshalBinary` format.
//!
//! The one rule: a state is never ahead of the data. The data is flushed to disk before a state
//! naming its length becomes visible, so after a crash a state either describes durable bytes
//! or is missing (and the digest is recomputed from the data). The state file itself needs no
//! fsync: a torn one fails the magic and size checks on restore and is ignored the same way,
//! and a wrong state could only make the final digest check fail, never commit wrong bytes.

use super::durable;
use super::paths::Layout;
use crate::oci::{Algorithm, RepoName};
use std::fs::{self, File};
use std::io;

/// Saves `state` for the first `offset` bytes of the session and drops the states of other
/// offsets (only the current one can ever be resumed from). Returns false, saving nothing,
/// when the session no longer holds exactly `offset` bytes.
pub fn save(layout: &Layout, repo: &RepoName, id: &str, algorithm: Algorithm, offset: u64, state: &[u8]) -> io::Result<bool> {
    let data = File::open(layout.upload_dir(repo, id).join("data"))?;
    if data.metadata()?.len() != offset {
        return Ok(false);
    }
    data.sync_data()?;
    let dir = layout.upload_hash_states(repo, id, algorithm);
    fs::create_dir_all(&dir)?;
    let tmp_dir = layout.tmp_dir();
    durable::create_dir_all(&tmp_dir)?;
    // Staged outside `hashstates/`: registry:2 lists that directory and parses every name.
    let staged = tmp_dir.join(durable::temp_name());
    let name = offset.to_string();
    let written = fs::write(&staged, state).and_then(|()| fs::rename(&staged, dir.join(&name)));
    if written.is_err() {
        let _ = fs::remove_file(&staged);
    }
    written?;
    for entry in fs::read_dir(&dir)? {
        let entry = entry?;
        if entry.file_name().to_str() != Some(name.as_str()) {
            // Best effort: a leftover state is never used, as its offset is not the data's.
            let _ = fs::remove_file(entry.path());
        }
    }
    Ok(true)
}

/// The state saved for exactly `offset` bytes of the session, if there is one.
pub fn load(layout: &Layout, repo: &RepoName, id: &str, algorithm: Algorithm, offset: u64) -> io::Result<Option<Vec<u8>>> {
    let path = layout.upload_hash_states(repo, id, algorithm).join(offset.to_string());
    match fs::read(path) {
        Ok(state) => Ok(Some(state)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_is_kept_only_for_the_datas_length() {
        let t = tempfile::tempdir().unwrap();
        let layout = Layout::new(t.path());
        let repo = RepoName::parse("a/b").unwrap();
        let dir = layout.upload_dir(&repo, "s1");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("data"), b"12345").unwrap();
        assert!(!save(&layout, &repo, "s1", Algorithm::Sha256, 4, b"ahead").unwrap());
        assert!(save(&layout, &repo, "s1", Algorithm::Sha256, 5, b"five").unwrap());
        assert_eq!(
            load(&layout, &repo, "s1", Algorithm::Sha256, 5).unwrap().as_deref(),
            Some(&b"five"[..])
        );
        assert_eq!(load(&layout, &repo, "s1", Algorithm::Sha512, 5).unwrap(), None);
        // registry:2's path, and older offsets dropped once a newer state is saved.
        fs::write(dir.join("data"), b"1234567").unwrap();
        assert!(save(&layout, &repo, "s1", Algorithm::Sha256, 7, b"seven").unwrap());
        let names: Vec<_> = fs::read_dir(dir.join("hashstates/sha256"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("7")]);
        assert_eq!(load(&layout, &repo, "s1", Algorithm::Sha256, 5).unwrap(), None);
    }
}
