//! Object keys in registry:2's S3 layout: the filesystem layout's paths, under `rootdirectory`,
//! without a leading `/` (distribution's `s3Path`: `TrimLeft(TrimRight(root, "/") + path, "/")`).
//! Reusing [`Layout`] keeps both backends on one definition of where things live.

use crate::oci::{Algorithm, Digest, RepoName, Tag};
use crate::store::paths::{Layout, Link, LinkSet};
use object_store::path::Path as Key;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Keys {
    layout: Layout,
}

impl Keys {
    pub fn new(rootdirectory: &str) -> Keys {
        let root = format!("/{}", rootdirectory.trim_matches('/'));
        Keys {
            layout: Layout::new(Path::new(&root)),
        }
    }

    /// A file's key, or a directory's: the prefix its objects share.
    fn key(path: PathBuf) -> Key {
        let text = path.to_string_lossy().into_owned();
        Key::from(text.trim_start_matches('/'))
    }

    pub fn blob(&self, d: &Digest) -> Key {
        Self::key(self.layout.blob_data(d))
    }

    pub fn blob_dir(&self, d: &Digest) -> Key {
        Self::key(self.layout.blob_dir(d))
    }

    pub fn blobs(&self) -> Key {
        Self::key(self.layout.blobs())
    }

    pub fn repositories(&self) -> Key {
        Self::key(self.layout.repositories())
    }

    pub fn repo(&self, repo: &RepoName) -> Key {
        Self::key(self.layout.repo(repo))
    }

    pub fn upload_dir(&self, repo: &RepoName, id: &str) -> Key {
        Self::key(self.layout.upload_dir(repo, id))
    }

    /// Where the session's bytes become one object: registry:2's `_uploads/<id>/data`, the key
    /// its own multipart uploads use too.
    pub fn upload_data(&self, repo: &RepoName, id: &str) -> Key {
        Self::key(self.layout.upload_dir(repo, id).join("data"))
    }

    /// registry:2's start time of the session (its purge reads it).
    pub fn upload_started(&self, repo: &RepoName, id: &str) -> Key {
        Self::key(self.layout.upload_dir(repo, id).join("startedat"))
    }

    /// wharf's session state (see `uploads::Session`); registry:2 ignores unknown files there.
    pub fn upload_state(&self, repo: &RepoName, id: &str) -> Key {
        Self::key(self.layout.upload_dir(repo, id).join("wharf-session"))
    }

    /// The bytes received after the last full part, kept in the bucket so that any replica can
    /// continue the session.
    pub fn upload_tail(&self, repo: &RepoName, id: &str) -> Key {
        Self::key(self.layout.upload_dir(repo, id).join("wharf-tail"))
    }

    pub fn hash_states(&self, repo: &RepoName, id: &str, alg: Algorithm) -> Key {
        Self::key(self.layout.upload_hash_states(repo, id, alg))
    }

    pub fn hash_state(&self, repo: &RepoName, id: &str, alg: Algorithm, offset: u64) -> Key {
        Self::key(self.layout.upload_hash_states(repo, id, alg).join(offset.to_string()))
    }

    pub fn link(&self, link: &Link) -> Key {
        Self::key(self.layout.link(link))
    }

    /// The prefix a link's own objects share (`<...>/<alg>/<hex>/`, a tag's `current/`).
    pub fn link_dir(&self, link: &Link) -> Key {
        let path = self.layout.link(link);
        Self::key(path.parent().map(Path::to_path_buf).unwrap_or(path))
    }

    pub fn link_set(&self, set: &LinkSet) -> Key {
        Self::key(self.layout.link_set(set))
    }

    pub fn tags(&self, repo: &RepoName) -> Key {
        Self::key(self.layout.tags_dir(repo))
    }

    pub fn tag_dir(&self, repo: &RepoName, tag: &Tag) -> Key {
        Self::key(self.layout.tag_dir(repo, tag))
    }
}

/// The parts of `key` after `prefix`, or None if it is not under it.
pub fn below<'k>(key: &'k Key, prefix: &Key) -> Option<Vec<&'k str>> {
    let rest = key.as_ref().strip_prefix(prefix.as_ref())?;
    let rest = if prefix.as_ref().is_empty() {
        rest
    } else {
        rest.strip_prefix('/')?
    };
    Some(rest.split('/').collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_distributions_s3_path() {
        let d = Digest::sha256_of(b"");
        let hex = d.hex().to_string();
        let repo = RepoName::parse("a/b").unwrap();
        for root in ["", "/", "/reg/", "reg"] {
            let k = Keys::new(root);
            let base = if root.trim_matches('/').is_empty() {
                String::new()
            } else {
                "reg/".into()
            };
            assert_eq!(k.blob(&d).as_ref(), format!("{base}docker/registry/v2/blobs/sha256/e3/{hex}/data"));
            assert_eq!(
                k.upload_data(&repo, "u1").as_ref(),
                format!("{base}docker/registry/v2/repositories/a/b/_uploads/u1/data")
            );
            assert_eq!(
                k.link_dir(&Link::Layer(repo.clone(), d.clone())).as_ref(),
                format!("{base}docker/registry/v2/repositories/a/b/_layers/sha256/{hex}")
            );
        }
    }
}
